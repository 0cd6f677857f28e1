//! `timeseries.csv`: one row per second from the planned start.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{TIMESERIES_HEADER, TIMESERIES_HEADER_V1};

/// One row of `timeseries.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds from the planned start.
    pub second: u64,
    /// Events per second the profile planned in this second.
    pub target_rate: f64,
    /// Events handed to the target in this second.
    pub attempted: u64,
    /// Events acknowledged in this second.
    pub acknowledged: u64,
    /// Events that finally failed in this second.
    pub failed: u64,
    /// Bytes acknowledged in this second.
    pub bytes: u64,
    /// Median latency of the events acknowledged in this second, ms.
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Maximum latency, ms.
    pub max_ms: f64,
    /// Events intended in this second that were never handed to the target (0 in files
    /// written before this column).
    #[serde(default)]
    pub unsent: u64,
}

/// Writes rows as `timeseries.csv`, with the exact header of the contract.
pub fn timeseries_csv(rows: &[SecondRow]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).expect("csv into memory");
    }
    w.into_inner().expect("csv into memory")
}

/// Reads `timeseries.csv`.
pub fn parse_timeseries(bytes: &[u8]) -> anyhow::Result<Vec<SecondRow>> {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r
        .headers()
        .context("timeseries.csv has no header")?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    anyhow::ensure!(
        header == TIMESERIES_HEADER || header == TIMESERIES_HEADER_V1,
        "timeseries.csv header is {header:?}, expected {TIMESERIES_HEADER:?}"
    );
    r.deserialize()
        .collect::<Result<Vec<SecondRow>, _>>()
        .context("timeseries.csv has a malformed row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeseries_header_is_the_contract() {
        let rows = vec![SecondRow {
            second: 0,
            target_rate: 10.0,
            attempted: 10,
            acknowledged: 9,
            failed: 1,
            bytes: 900,
            p50_ms: 1.5,
            p99_ms: 2.0,
            max_ms: 3.25,
            unsent: 4,
        }];
        let csv = timeseries_csv(&rows);
        let text = String::from_utf8(csv.clone()).unwrap();
        assert_eq!(text.lines().next().unwrap(), TIMESERIES_HEADER);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "0,10.0,10,9,1,900,1.5,2.0,3.25,4"
        );
        assert_eq!(parse_timeseries(&csv).unwrap(), rows);
        // A file written before the `unsent` column reads with 0 there.
        let old = format!("{TIMESERIES_HEADER_V1}\n0,10.0,10,9,1,900,1.5,2.0,3.25\n");
        assert_eq!(parse_timeseries(old.as_bytes()).unwrap()[0].unsent, 0);
        assert!(parse_timeseries(b"a,b\n1,2\n").is_err());
    }
}
