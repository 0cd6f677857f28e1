//! The report files: `summary.json`, `timeseries.csv` and `histograms.hlog`, their schema and
//! the HdrHistogram encoding they carry.
//!
//! A task's report and the merged report share one schema ([`Summary`]); the merged one adds
//! [`MergeInfo`]. Histograms travel as base64 of the standard HdrHistogram V2 deflate encoding,
//! so any HdrHistogram library reads them and the merge adds them exactly.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Version of the report schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Histograms record microseconds from 1 µs to one hour with 3 significant digits.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant digits kept by every histogram.
pub const HISTOGRAM_SIGFIG: u8 = 3;
/// Name of the summary file.
pub const SUMMARY_FILE: &str = "summary.json";
/// Name of the per-second time series file.
pub const TIMESERIES_FILE: &str = "timeseries.csv";
/// Name of the per-second latency histograms (HdrHistogram interval log).
pub const HLOG_FILE: &str = "histograms.hlog";
/// The exact header of `timeseries.csv`.
pub const TIMESERIES_HEADER: &str =
    "second,target_rate,attempted,acknowledged,failed,bytes,p50_ms,p99_ms,max_ms";

/// A new empty latency histogram (microseconds).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
        .expect("valid histogram bounds")
}

/// Encodes a histogram as base64 of the HdrHistogram V2 deflate encoding.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 of an HdrHistogram V2 (deflate or plain) encoding.
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("histogram is not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not an HdrHistogram V2 encoding: {e:?}"))
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Produced for the whole duration.
    Completed,
    /// Stopped early by a signal.
    Interrupted {
        /// `SIGTERM` or `SIGINT`.
        signal: String,
    },
    /// Could not run or finish.
    Failed {
        /// Why, in one message.
        reason: String,
    },
}

impl Outcome {
    /// `completed`, `interrupted` or `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Interrupted { .. } => "interrupted",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// What happened to the events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Events generated and handed to the target (first attempts).
    pub attempted: u64,
    /// Events the target confirmed (a Kinesis sequence number, a Kafka delivery report without error).
    pub acknowledged: u64,
    /// Events that finally failed: `attempted = acknowledged + failed`.
    pub failed: u64,
    /// Final failures by error code (`ProvisionedThroughputExceededException`, `MsgTimedOut`, …).
    pub failed_by_code: BTreeMap<String, u64>,
    /// Retries of events (one event retried twice counts 2).
    pub retried: u64,
    /// Retries by the error code that caused them.
    pub retried_by_code: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds another task's counts.
    pub fn add(&mut self, other: &Counts) {
        self.attempted += other.attempted;
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        self.retried += other.retried;
        for (k, v) in &other.failed_by_code {
            *self.failed_by_code.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.retried_by_code {
            *self.retried_by_code.entry(k.clone()).or_default() += v;
        }
    }

    /// Failed events as a share of attempted ones (0 when nothing was attempted).
    pub fn error_rate(&self) -> f64 {
        if self.attempted == 0 {
            0.0
        } else {
            self.failed as f64 / self.attempted as f64
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of recorded values.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of microseconds, in milliseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        }
    }
}

/// The histograms themselves, so that merges are exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Unit of the recorded values: always `microseconds`.
    pub unit: String,
    /// Latency from the intended send time to the acknowledgement.
    pub latency: String,
    /// Service time: from the actual send to the acknowledgement.
    pub service_time: String,
}

/// What the merge knows about the tasks of a run (merged summaries only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// Tasks the run started (or expected).
    pub tasks_expected: u64,
    /// Tasks whose report was found.
    pub tasks_reported: u64,
    /// `tasks_reported / tasks_expected`.
    pub coverage: f64,
    /// Ids of expected tasks with no report.
    pub tasks_missing: Vec<String>,
    /// Tasks that reported but did not complete.
    pub tasks_not_completed: Vec<TaskProblem>,
    /// One row per reported task.
    pub tasks: Vec<TaskRow>,
}

/// A task that reported an outcome other than `completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProblem {
    /// The task.
    pub task_id: String,
    /// What happened to it.
    pub outcome: Outcome,
}

/// One task in the merged summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    /// The task.
    pub task_id: String,
    /// `completed`, `interrupted` or `failed`.
    pub outcome: String,
    /// Events acknowledged.
    pub acknowledged: u64,
    /// Events failed.
    pub failed: u64,
    /// Acknowledged events per second.
    pub achieved_rate: f64,
    /// p99 latency in milliseconds.
    pub p99_ms: f64,
    /// Maximum latency in milliseconds.
    pub max_ms: f64,
}

/// `summary.json`: one task's result, or the merged result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The run.
    pub run_id: String,
    /// The task (`merged` for the merged summary).
    pub task_id: String,
    /// `kinesis`, `kafka` or `null`.
    pub target: String,
    /// The `FLEETLOAD_*` variables as given, secrets redacted.
    pub scenario: BTreeMap<String, String>,
    /// Version of the program that wrote the report.
    pub fleetload_version: String,
    /// When the run was planned to start.
    pub planned_start: DateTime<Utc>,
    /// When this task started producing (`None` if it never did).
    pub actual_start: Option<DateTime<Utc>>,
    /// When it stopped producing and measuring.
    pub end: Option<DateTime<Utc>>,
    /// How late after the planned start it started, in milliseconds (0 if on time).
    pub late_start_ms: u64,
    /// Seconds from the actual start to the end of production.
    pub duration_s: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// What happened to the events.
    pub counts: Counts,
    /// Bytes acknowledged (payload and key).
    pub bytes: u64,
    /// Mean events per second the profile planned (`None` when unpaced).
    pub target_rate: Option<f64>,
    /// Acknowledged events per second over the duration.
    pub achieved_rate: f64,
    /// Latency from the intended send time, ms.
    pub latency_ms: Percentiles,
    /// Service time from the actual send, ms.
    pub service_time_ms: Percentiles,
    /// The latency histograms, encoded.
    pub histograms: Histograms,
    /// Error codes over time (retried and final failures): code → `[[second, events], …]`.
    pub errors_timeline: BTreeMap<String, Vec<(u64, u64)>>,
    /// Set on merged summaries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeInfo>,
}

impl Summary {
    /// Parses `summary.json`, refusing other schema versions.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Summary> {
        let s: Summary = serde_json::from_slice(bytes)
            .context("summary.json does not match the report schema")?;
        anyhow::ensure!(
            s.schema_version == SCHEMA_VERSION,
            "summary.json has schema_version {}, this program reads {}",
            s.schema_version,
            SCHEMA_VERSION
        );
        Ok(s)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a summary always serializes");
        v.push(b'\n');
        v
    }

    /// Decodes the intended-time latency histogram.
    pub fn latency_histogram(&self) -> anyhow::Result<Histogram<u64>> {
        decode_histogram(&self.histograms.latency)
            .with_context(|| format!("latency histogram of task {}", self.task_id))
    }

    /// Decodes the service-time histogram.
    pub fn service_histogram(&self) -> anyhow::Result<Histogram<u64>> {
        decode_histogram(&self.histograms.service_time)
            .with_context(|| format!("service-time histogram of task {}", self.task_id))
    }
}

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
        header == TIMESERIES_HEADER,
        "timeseries.csv header is {header:?}, expected {TIMESERIES_HEADER:?}"
    );
    r.deserialize()
        .collect::<Result<Vec<SecondRow>, _>>()
        .context("timeseries.csv has a malformed row")
}

/// Per-second latency histograms: `(second, histogram)` written as an HdrHistogram interval log
/// (the format of HdrHistogram's `HistogramLogProcessor`), so the merge can compute exact
/// per-second percentiles across tasks.
pub fn write_hlog(base: DateTime<Utc>, seconds: &[(u64, Histogram<u64>)]) -> Vec<u8> {
    use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let base_secs = base.timestamp_millis() as f64 / 1000.0;
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("fleetload per-second latency histograms, microseconds; interval start in seconds from the planned start")
            .with_base_time(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(base_secs))
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)
            .expect("writing into memory");
        for (second, h) in seconds {
            writer
                .write_histogram(
                    h,
                    std::time::Duration::from_secs(*second),
                    std::time::Duration::from_secs(1),
                    None,
                )
                .expect("writing into memory");
        }
    }
    out
}

/// Reads an interval log written by [`write_hlog`]: `(second, histogram)` pairs.
pub fn parse_hlog(bytes: &[u8]) -> anyhow::Result<Vec<(u64, Histogram<u64>)>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut out = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| anyhow::anyhow!("histograms.hlog is malformed: {e:?}"))? {
            LogEntry::Interval(ih) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(ih.encoded_histogram())
                    .context("histograms.hlog holds a histogram that is not base64")?;
                let h: Histogram<u64> =
                    deserializer
                        .deserialize(&mut bytes.as_slice())
                        .map_err(|e| {
                            anyhow::anyhow!("histograms.hlog holds an undecodable histogram: {e:?}")
                        })?;
                out.push((ih.start_timestamp().as_secs_f64().round() as u64, h));
            }
            LogEntry::BaseTime(_) | LogEntry::StartTime(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trip_through_v2_deflate() {
        let mut h = new_histogram();
        for v in [
            1u64,
            5,
            17,
            250,
            1_000,
            12_345,
            999_999,
            3_000_000,
            HISTOGRAM_MAX_US,
        ] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode_histogram(&h);
        // The standard V2 compressed cookie (0x1c849314) is the first 4 bytes.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        assert_eq!(&raw[..4], &[0x1c, 0x84, 0x93, 0x14]);
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }

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
        }];
        let csv = timeseries_csv(&rows);
        let text = String::from_utf8(csv.clone()).unwrap();
        assert_eq!(text.lines().next().unwrap(), TIMESERIES_HEADER);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "0,10.0,10,9,1,900,1.5,2.0,3.25"
        );
        assert_eq!(parse_timeseries(&csv).unwrap(), rows);
        assert!(parse_timeseries(b"a,b\n1,2\n").is_err());
    }

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
    fn outcome_serialization() {
        let o = Outcome::Interrupted {
            signal: "SIGTERM".into(),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"status":"interrupted","signal":"SIGTERM"}"#
        );
        assert_eq!(
            serde_json::to_string(&Outcome::Completed).unwrap(),
            r#"{"status":"completed"}"#
        );
    }
}
