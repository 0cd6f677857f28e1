//! `histograms.hlog`: the per-second latency histograms as an HdrHistogram interval log (the
//! format of HdrHistogram's `HistogramLogProcessor`), so the merge computes exact per-second
//! percentiles across tasks and any HdrHistogram library reads the file.
//!
//! [`HlogWriter`] is the one writer: it takes a second's histogram either as a histogram or as
//! the V2-deflate bytes it was already compressed to when the second closed, so a task never
//! inflates what it kept compressed. [`read_hlog`] is the one reader: it hands each interval's
//! encoded histogram to the caller, who decodes it with whatever decoder fits (the merge's fast
//! one, or the hdrhistogram crate's in [`parse_hlog`]).

use std::fmt::Write as _;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::decode_histogram;

/// The comment that opens every log.
const COMMENT: &str = "fleetload per-second latency histograms, microseconds; interval start in \
                       seconds from the planned start";
/// Interval maxima are written in milliseconds, as HdrHistogram's tools expect for µs values.
const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// Writes an interval log, one second at a time.
pub struct HlogWriter {
    out: Vec<u8>,
    line: String,
    encoded: Vec<u8>,
    serializer: V2DeflateSerializer,
}

impl HlogWriter {
    /// A log whose interval starts count from `base` (the run's planned start).
    pub fn new(base: DateTime<Utc>) -> Self {
        let base_secs = base.timestamp_millis() as f64 / 1000.0;
        let mut line = String::new();
        for l in COMMENT.split('\n') {
            let _ = writeln!(line, "#{l}");
        }
        let _ = writeln!(line, "#[BaseTime: {base_secs:.3} (seconds since epoch)]");
        let _ = writeln!(line, "#[MaxValueDivisor: {MAX_VALUE_DIVISOR:.3}]");
        HlogWriter {
            out: line.into_bytes(),
            line: String::new(),
            encoded: Vec::new(),
            serializer: V2DeflateSerializer::new(),
        }
    }

    /// Adds second `second` from its V2-deflate encoding and its maximum (µs).
    pub fn push_encoded(&mut self, second: u64, max_us: u64, encoded: &[u8]) {
        self.line.clear();
        let _ = write!(
            self.line,
            "{:.3},{:.3},{:.3},",
            second as f64,
            1.0,
            max_us as f64 / MAX_VALUE_DIVISOR
        );
        base64::engine::general_purpose::STANDARD.encode_string(encoded, &mut self.line);
        self.line.push('\n');
        self.out.extend_from_slice(self.line.as_bytes());
    }

    /// Adds second `second` from its histogram.
    pub fn push(&mut self, second: u64, h: &Histogram<u64>) {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        self.serializer
            .serialize(h, &mut encoded)
            .expect("serializing into memory cannot fail");
        self.push_encoded(second, h.max(), &encoded);
        self.encoded = encoded;
    }

    /// The finished file.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

impl std::fmt::Debug for HlogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogWriter")
            .field("bytes", &self.out.len())
            .finish_non_exhaustive()
    }
}

/// Writes `(second, histogram)` pairs as one log.
pub fn write_hlog(base: DateTime<Utc>, seconds: &[(u64, Histogram<u64>)]) -> Vec<u8> {
    let mut w = HlogWriter::new(base);
    for (second, h) in seconds {
        w.push(*second, h);
    }
    w.finish()
}

/// Reads an interval log: calls `visit(second, base64_histogram)` for every interval, in order.
/// A malformed line, or an error from `visit`, ends the reading with that error.
pub fn read_hlog(
    bytes: &[u8],
    mut visit: impl FnMut(u64, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| anyhow::anyhow!("histograms.hlog is malformed: {e:?}"))? {
            LogEntry::Interval(ih) => {
                let second = ih.start_timestamp().as_secs_f64().round() as u64;
                visit(second, ih.encoded_histogram())?;
            }
            LogEntry::BaseTime(_) | LogEntry::StartTime(_) => {}
        }
    }
    Ok(())
}

/// Reads an interval log into `(second, histogram)` pairs.
pub fn parse_hlog(bytes: &[u8]) -> anyhow::Result<Vec<(u64, Histogram<u64>)>> {
    let mut out = Vec::new();
    read_hlog(bytes, |second, text| {
        let h =
            decode_histogram(text).with_context(|| format!("histograms.hlog, second {second}"))?;
        out.push((second, h));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::new_histogram;

    #[test]
    fn hlog_round_trip() {
        let mut a = new_histogram();
        a.record(1500).unwrap();
        let mut b = new_histogram();
        b.record_n(42, 3).unwrap();
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let log = write_hlog(base, &[(0, a.clone()), (7, b.clone())]);
        let back = parse_hlog(&log).unwrap();
        assert_eq!(back, vec![(0, a), (7, b)]);
    }

    #[test]
    fn writes_what_the_hdrhistogram_crate_writes() {
        use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
        let mut h = new_histogram();
        h.record_n(2_345, 7).unwrap();
        h.record(98_765).unwrap();
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut theirs = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut w = IntervalLogWriterBuilder::new()
                .add_comment(COMMENT)
                .with_base_time(
                    std::time::SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_secs_f64(
                            base.timestamp_millis() as f64 / 1000.0,
                        ),
                )
                .with_max_value_divisor(MAX_VALUE_DIVISOR)
                .begin_log_with(&mut theirs, &mut serializer)
                .unwrap();
            w.write_histogram(
                &h,
                std::time::Duration::from_secs(3),
                std::time::Duration::from_secs(1),
                None,
            )
            .unwrap();
        }
        assert_eq!(
            String::from_utf8(write_hlog(base, &[(3, h)])).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }
}
