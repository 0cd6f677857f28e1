//! The list prices a cost is estimated with: the table committed next to this file
//! (`prices.json`: its source, the date it was read, and per region the price of each unit), a
//! table of the user's (`--prices FILE`, same shape, whose prices win) and single prices
//! (`--price NAME=USD`, for the run's region). Every name is checked against [`NAMES`], so a
//! typo is refused before any task starts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The committed table.
const COMMITTED: &str = include_str!("prices.json");

/// Every price a table may hold, with its unit.
pub const NAMES: [(&str, &str); 11] = [
    (
        "fargate_x86_vcpu_hour",
        "Fargate Linux/X86_64, per vCPU-hour",
    ),
    (
        "fargate_x86_gb_hour",
        "Fargate Linux/X86_64, per GB-hour of memory",
    ),
    (
        "fargate_arm_vcpu_hour",
        "Fargate Linux/ARM64, per vCPU-hour",
    ),
    (
        "fargate_arm_gb_hour",
        "Fargate Linux/ARM64, per GB-hour of memory",
    ),
    (
        "fargate_ephemeral_gb_hour",
        "Fargate ephemeral storage beyond 20 GB, per GB-hour",
    ),
    ("kinesis_shard_hour", "Kinesis provisioned, per shard-hour"),
    (
        "kinesis_million_put_payload_units",
        "Kinesis provisioned, per million PUT payload units (25 KB each)",
    ),
    (
        "kinesis_on_demand_stream_hour",
        "Kinesis on demand, per stream-hour",
    ),
    (
        "kinesis_on_demand_gb_ingested",
        "Kinesis on demand, per GB ingested",
    ),
    (
        "s3_thousand_put_requests",
        "S3 Standard, per 1,000 PUT, COPY, POST or LIST requests",
    ),
    (
        "s3_thousand_get_requests",
        "S3 Standard, per 1,000 GET requests",
    ),
];

/// A price table as written in `prices.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    regions: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The prices a run is estimated with.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Where the prices come from.
    pub source: String,
    /// When they were read there.
    pub date: String,
    regions: BTreeMap<String, BTreeMap<String, f64>>,
    /// `--price NAME=USD`: for whatever region is priced.
    flags: BTreeMap<String, f64>,
    /// Names (`REGION/NAME`) the `--prices` file set.
    from_file: BTreeMap<String, f64>,
}

/// The prices of one region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionPrices {
    /// The region.
    pub region: String,
    prices: BTreeMap<String, f64>,
    /// Which of them were given instead of the committed table's.
    pub overridden: BTreeMap<String, f64>,
}

impl RegionPrices {
    /// The price `name`, or why there is none.
    pub fn get(&self, name: &str) -> Result<f64, String> {
        self.prices.get(name).copied().ok_or_else(|| {
            format!(
                "no price {name} for {} (give it with --price {name}=USD or --prices FILE)",
                self.region
            )
        })
    }
}

fn check(name: &str, usd: f64, whence: &str) -> anyhow::Result<()> {
    if !NAMES.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        anyhow::bail!(
            "{whence}: unknown price {name:?}; accepted: {}",
            known.join(", ")
        );
    }
    if !(usd.is_finite() && usd >= 0.0) {
        anyhow::bail!("{whence}: price {name} = {usd} is not a non-negative number of USD");
    }
    Ok(())
}

fn parse_table(text: &str, whence: &str) -> anyhow::Result<Table> {
    let table: Table = serde_json::from_str(text).with_context(|| {
        format!(
            "{whence} is not a price table (accepted: JSON with \"source\", \"date\" and \
             \"regions\": {{\"REGION\": {{\"NAME\": USD, …}}}}, as in \
             src/launcher/cost/prices.json)"
        )
    })?;
    for (region, prices) in &table.regions {
        for (name, usd) in prices {
            check(name, *usd, &format!("{whence}, region {region}"))?;
        }
    }
    Ok(table)
}

impl Prices {
    /// The committed table.
    pub fn committed() -> Prices {
        let table = parse_table(COMMITTED, "prices.json").expect("the committed table is valid");
        Prices {
            source: table.source.unwrap_or_default(),
            date: table.date.unwrap_or_default(),
            regions: table.regions,
            flags: BTreeMap::new(),
            from_file: BTreeMap::new(),
        }
    }

    /// The committed table with the prices of `file` (`--prices`) and `flags` (`--price
    /// NAME=USD`) on top; a bad file, name or value is an error naming it.
    pub fn load(file: Option<&Path>, flags: &[(String, String)]) -> anyhow::Result<Prices> {
        let mut prices = Prices::committed();
        if let Some(path) = file {
            let whence = format!("--prices {}", path.display());
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{whence}: cannot be read"))?;
            let table = parse_table(&text, &whence)?;
            if let Some(source) = table.source {
                prices.source = source;
            } else {
                prices.source = format!("{} (file {})", prices.source, path.display());
            }
            if let Some(date) = table.date {
                prices.date = date;
            }
            for (region, list) in table.regions {
                for (name, usd) in list {
                    prices.from_file.insert(format!("{region}/{name}"), usd);
                    prices
                        .regions
                        .entry(region.clone())
                        .or_default()
                        .insert(name, usd);
                }
            }
        }
        for (name, value) in flags {
            let whence = format!("--price {name}={value}");
            let usd: f64 = value
                .trim()
                .trim_start_matches('$')
                .parse()
                .map_err(|_| anyhow::anyhow!("{whence}: {value:?} is not a number of USD"))?;
            check(name, usd, &whence)?;
            prices.flags.insert(name.clone(), usd);
        }
        Ok(prices)
    }

    /// The prices of `region` (the committed ones, the file's, the flags'), or `None` when the
    /// table has no price at all for it and none was given.
    pub fn region(&self, region: &str) -> Option<RegionPrices> {
        let mut prices = self.regions.get(region).cloned().unwrap_or_default();
        let mut overridden = BTreeMap::new();
        for (key, usd) in &self.from_file {
            if let Some(name) = key.strip_prefix(&format!("{region}/")) {
                overridden.insert(name.to_string(), *usd);
            }
        }
        for (name, usd) in &self.flags {
            prices.insert(name.clone(), *usd);
            overridden.insert(name.clone(), *usd);
        }
        (!prices.is_empty()).then(|| RegionPrices {
            region: region.to_string(),
            prices,
            overridden,
        })
    }

    /// The regions the table has prices for.
    pub fn regions(&self) -> Vec<&str> {
        self.regions.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_table_has_every_price_of_its_regions_a_date_and_a_source() {
        let p = Prices::committed();
        assert!(p.date.len() == 10 && p.date.starts_with("20"), "{}", p.date);
        assert!(p.source.contains("https://aws.amazon.com/fargate/pricing/"));
        for region in p.regions() {
            let r = p.region(region).unwrap();
            for (name, _) in NAMES {
                assert!(r.get(name).is_ok(), "{region} lacks {name}");
            }
            assert!(r.overridden.is_empty());
        }
        assert!(p.region("eu-north-9").is_none());
    }

    #[test]
    fn flags_and_files_override_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(
            &file,
            r#"{"date": "2026-01-01", "regions": {"eu-west-1": {"kinesis_shard_hour": 0.017}}}"#,
        )
        .unwrap();
        let p = Prices::load(
            Some(&file),
            &[("fargate_x86_vcpu_hour".into(), "0.05".into())],
        )
        .unwrap();
        assert_eq!(p.date, "2026-01-01");
        let eu = p.region("eu-west-1").unwrap();
        assert_eq!(eu.get("kinesis_shard_hour"), Ok(0.017));
        assert_eq!(eu.get("fargate_x86_vcpu_hour"), Ok(0.05));
        assert!(eu
            .get("s3_thousand_get_requests")
            .unwrap_err()
            .contains("--price"));
        assert_eq!(eu.overridden.len(), 2);
        let us = p.region("us-east-1").unwrap();
        assert_eq!(us.get("fargate_x86_vcpu_hour"), Ok(0.05));
        assert_eq!(us.get("kinesis_shard_hour"), Ok(0.015));
        for (flags, why) in [
            (
                vec![("fargate_vcpu".to_string(), "1".to_string())],
                "unknown price",
            ),
            (
                vec![("kinesis_shard_hour".to_string(), "cheap".to_string())],
                "not a number",
            ),
            (
                vec![("kinesis_shard_hour".to_string(), "-1".to_string())],
                "non-negative",
            ),
        ] {
            let e = Prices::load(None, &flags).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        std::fs::write(&file, r#"{"regions": {"us-east-1": {"nope": 1}}}"#).unwrap();
        let e = format!("{:#}", Prices::load(Some(&file), &[]).unwrap_err());
        assert!(e.contains("unknown price \"nope\""), "{e}");
    }
}
