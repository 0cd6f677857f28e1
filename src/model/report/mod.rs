//! The report files: `summary.json`, `timeseries.csv` and `histograms.hlog`, their schema and
//! the HdrHistogram encoding they carry.
//!
//! A task's report and the merged report share one schema ([`Summary`]); the merged one adds
//! [`MergeInfo`]. Histograms travel as base64 of the standard HdrHistogram V2 deflate encoding,
//! so any HdrHistogram library reads them and the merge adds them exactly.
//!
//! Each file has one writer and one reader here, used by the worker, the merge, the HTML page
//! and the tests alike: `histogram` (the V2 encoding), `timeseries` (`timeseries.csv`) and
//! `hlog` (`histograms.hlog`).

mod cost;
mod histogram;
mod hlog;
mod timeseries;

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::model::live::Aborted;

pub use cost::{Cost, CostItem, CostPart, CostParts, PricesUsed, NOT_CHARGED, PRICED, UNKNOWN};

pub use histogram::{decode_histogram, encode_histogram, new_histogram, V2StoredSerializer};
pub use hlog::{
    malformed_hlog, next_hlog_line, parse_hlog, read_hlog, write_hlog, HlogLine, HlogSpool,
    HlogWriter, SpooledLog,
};
pub use timeseries::{parse_timeseries, timeseries_csv, SecondRow};

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
/// Name of the merged per-second end-to-end latency histograms (an interval log, like
/// [`HLOG_FILE`]; seconds of the intended send time from the planned start).
pub const E2E_HLOG_FILE: &str = "e2e.hlog";
/// The exact header of `timeseries.csv`; new columns are only ever added at the end.
pub const TIMESERIES_HEADER: &str =
    "second,target_rate,attempted,acknowledged,failed,bytes,p50_ms,p99_ms,max_ms,unsent";
/// The header of reports written before the `unsent` column; read with `unsent` 0.
pub const TIMESERIES_HEADER_V1: &str =
    "second,target_rate,attempted,acknowledged,failed,bytes,p50_ms,p99_ms,max_ms";

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
    /// Events the load profile called for until production ended: `attempted + unsent`.
    /// Unpaced runs plan what they attempt. Reports written before this field read as
    /// `attempted + unsent`.
    #[serde(default)]
    pub planned: u64,
    /// Events the schedule called for but never handed to the target, because it pushed back
    /// (or the generator could not keep up) until production ended.
    #[serde(default)]
    pub unsent: u64,
    /// Events generated and handed to the target (first attempts).
    pub attempted: u64,
    /// Events the target confirmed (a Kinesis sequence number, a Kafka delivery report without error).
    pub acknowledged: u64,
    /// Of `acknowledged`, those confirmed after production ended, while the task waited for
    /// the answers still owed (the drain: a backlog in the client's queue, retries). They are in
    /// the target, but not in the achieved rate, which is what the target took while production
    /// ran. Reports written before this field read as 0.
    #[serde(default)]
    pub acknowledged_in_drain: u64,
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
    /// These counts plus `other`'s, or `None` when a sum would pass `u64::MAX` (a report that
    /// claims more events than can be counted is refused, never wrapped).
    pub fn checked_sum(&self, other: &Counts) -> Option<Counts> {
        let add_map = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            let mut out = a.clone();
            for (k, v) in b {
                let slot = out.entry(k.clone()).or_default();
                *slot = slot.checked_add(*v)?;
            }
            Some(out)
        };
        Some(Counts {
            planned: self.planned.checked_add(other.planned)?,
            unsent: self.unsent.checked_add(other.unsent)?,
            attempted: self.attempted.checked_add(other.attempted)?,
            acknowledged: self.acknowledged.checked_add(other.acknowledged)?,
            acknowledged_in_drain: self
                .acknowledged_in_drain
                .checked_add(other.acknowledged_in_drain)?,
            failed: self.failed.checked_add(other.failed)?,
            retried: self.retried.checked_add(other.retried)?,
            failed_by_code: add_map(&self.failed_by_code, &other.failed_by_code)?,
            retried_by_code: add_map(&self.retried_by_code, &other.retried_by_code)?,
        })
    }

    /// Adds another task's counts.
    pub fn add(&mut self, other: &Counts) {
        self.planned += other.planned;
        self.unsent += other.unsent;
        self.attempted += other.attempted;
        self.acknowledged += other.acknowledged;
        self.acknowledged_in_drain += other.acknowledged_in_drain;
        self.failed += other.failed;
        self.retried += other.retried;
        for (k, v) in &other.failed_by_code {
            *self.failed_by_code.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.retried_by_code {
            *self.retried_by_code.entry(k.clone()).or_default() += v;
        }
    }

    /// Attempts the target refused for throughput, retried or not: the tries counted under
    /// one of [`THROTTLE_CODES`] in `failed_by_code` and `retried_by_code`.
    pub fn throttled(&self) -> u64 {
        THROTTLE_CODES
            .iter()
            .map(|code| {
                let failed = self.failed_by_code.get(*code).copied().unwrap_or(0);
                let retried = self.retried_by_code.get(*code).copied().unwrap_or(0);
                failed.saturating_add(retried)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// [`Counts::throttled`] as a share of every try (first attempts and retries: an event
    /// refused twice and then taken is two refused tries of three), so it stays within 0–1;
    /// 0 when nothing was tried.
    pub fn throttle_ratio(&self) -> f64 {
        let tries = self.attempted.saturating_add(self.retried);
        if tries == 0 {
            0.0
        } else {
            (self.throttled() as f64 / tries as f64).min(1.0)
        }
    }

    /// What was acknowledged while production ran: the events the achieved rate counts.
    pub fn acknowledged_in_production(&self) -> u64 {
        self.acknowledged.saturating_sub(self.acknowledged_in_drain)
    }

    /// The achieved rate: what was acknowledged while production ran, per second of it (0 for
    /// no production time). Acknowledgements of the drain after it are not the target's pace.
    pub fn achieved_rate(&self, production_s: f64) -> f64 {
        if production_s > 0.0 {
            self.acknowledged_in_production() as f64 / production_s
        } else {
            0.0
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

/// What Kinesis answered for the records of one shard (`by_shard` in `summary.json`).
///
/// Counted from the PutRecords answers record by record: an acknowledged record by the
/// `ShardId` Kinesis returned, a failed one by the shard its error message names (a throttled
/// record: `Rate exceeded for shard …`), else by the shard its hash key belongs to in the
/// stream's shard map. Whole requests that failed (HTTP 5xx, timeouts) belong to no shard, and
/// neither do events still unanswered at the end, so the shards' sums can be below the task's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardCounts {
    /// Events acknowledged by this shard.
    pub acknowledged: u64,
    /// Final failures on this shard by error code.
    #[serde(default)]
    pub failed_by_code: BTreeMap<String, u64>,
    /// Retries after a failure on this shard, by error code (a throttled shard shows
    /// `ProvisionedThroughputExceededException` here first).
    #[serde(default)]
    pub retried_by_code: BTreeMap<String, u64>,
}

impl ShardCounts {
    /// Adds another task's counts for the same shard. In a sound report they are bounded by
    /// the summary's totals, which the merge adds in checked arithmetic; a corrupt report's
    /// shard counts saturate rather than wrap.
    pub fn add(&mut self, other: &ShardCounts) {
        self.acknowledged = self.acknowledged.saturating_add(other.acknowledged);
        for (k, v) in &other.failed_by_code {
            let slot = self.failed_by_code.entry(k.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
        for (k, v) in &other.retried_by_code {
            let slot = self.retried_by_code.entry(k.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
    }

    /// Events throttled on this shard (`ProvisionedThroughputExceededException`), retried or
    /// finally failed.
    pub fn throttled(&self) -> u64 {
        self.failed_by_code
            .get(THROTTLED_CODE)
            .copied()
            .unwrap_or(0)
            .saturating_add(
                self.retried_by_code
                    .get(THROTTLED_CODE)
                    .copied()
                    .unwrap_or(0),
            )
    }
}

/// Kinesis only: how the user records (what `counts` counts) travelled, in Kinesis records and
/// PutRecords calls (`kinesis` in `summary.json`; summed by the merge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KinesisCounts {
    /// `on` when user records were packed into KPL aggregated records
    /// (`FLEETLOAD_KINESIS_AGGREGATE=on`), `off` when each was a Kinesis record of its own;
    /// `mixed` in a merge of tasks that differed.
    pub aggregation: String,
    /// Kinesis records acknowledged: with aggregation off one per acknowledged user record,
    /// with it on each carrying one or more (`counts.acknowledged / kinesis_records` user
    /// records per Kinesis record).
    pub kinesis_records: u64,
    /// PutRecords calls made, retries included.
    pub put_records_calls: u64,
}

impl KinesisCounts {
    /// Adds another task's: the counts saturate (they are bounded by the checked totals in a
    /// sound report), and the aggregation reads `mixed` when the two differ.
    pub fn add(&mut self, other: &KinesisCounts) {
        self.kinesis_records = self.kinesis_records.saturating_add(other.kinesis_records);
        self.put_records_calls = self
            .put_records_calls
            .saturating_add(other.put_records_calls);
        if self.aggregation != other.aggregation {
            self.aggregation = "mixed".to_string();
        }
    }

    /// User records per acknowledged Kinesis record, given the user records acknowledged.
    pub fn per_record(&self, acknowledged: u64) -> f64 {
        if self.kinesis_records == 0 {
            0.0
        } else {
            acknowledged as f64 / self.kinesis_records as f64
        }
    }
}

/// The Kinesis error code of a record refused because its shard was over its limits.
pub const THROTTLED_CODE: &str = "ProvisionedThroughputExceededException";

/// The codes of tries a target refused for throughput (the `throttled` threshold): Kinesis's
/// per-shard limit on records and whole requests throttled by the service or by KMS; Kafka's
/// local queue full because the brokers do not take messages as fast as they come
/// (`QueueFull`, retried until there is room) and a broker's quota refusal.
pub const THROTTLE_CODES: &[&str] = &[
    THROTTLED_CODE,
    "ThrottlingException",
    "KMSThrottlingException",
    "QueueFull",
    "ThrottlingQuotaExceeded",
];

/// The shard that took the most throttling, when any was throttled: its id, its throttled
/// events and its share of all throttled events.
pub fn hot_shard(by_shard: &BTreeMap<String, ShardCounts>) -> Option<(&str, u64, f64)> {
    let total: u64 = by_shard.values().map(ShardCounts::throttled).sum();
    let (id, c) = by_shard.iter().max_by_key(|(_, c)| c.throttled())?;
    let throttled = c.throttled();
    (throttled > 0).then(|| (id.as_str(), throttled, throttled as f64 / total as f64))
}

/// Adds per-shard counts into `into`.
pub fn add_by_shard(
    into: &mut BTreeMap<String, ShardCounts>,
    other: &BTreeMap<String, ShardCounts>,
) {
    for (shard, c) in other {
        into.entry(shard.clone()).or_default().add(c);
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
    /// Kinesis only: what each shard answered, by shard id (see [`ShardCounts`]); summed by
    /// the merge. Absent for other targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_shard: BTreeMap<String, ShardCounts>,
    /// Kinesis only: the Kinesis records and PutRecords calls that carried the user records
    /// (see [`KinesisCounts`]); summed by the merge. Absent for other targets and in reports
    /// written before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisCounts>,
    /// Whether production kept up with the schedule, and if not, why (`None` in reports
    /// written before it was measured, and for tasks that never produced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Saturation>,
    /// Set on merged summaries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeInfo>,
    /// Merged summaries only: what the run cost, estimated from list prices (absent in reports
    /// written before it was estimated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// End to end: the task's role, a producer's trace, a consumer's or the run's delivery
    /// (`role`, `trace` and `e2e` at the top level of the file; absent in reports written
    /// before them).
    #[serde(flatten)]
    pub end_to_end: EndToEndReport,
    /// Live windows: how a task wrote them, or what the launcher saw of them (merged summary);
    /// absent when they were off and in reports written before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveReport>,
    /// Merged summary of a run a live threshold stopped (`--abort-on-fail`): which threshold,
    /// when, and the windows that broke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
}

/// How live windows went: a task's (`live` in its `summary.json`), or the run's (merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    /// The windows' length in seconds.
    pub interval_s: u64,
    /// Windows written (a task), or windows the launcher showed (merged).
    pub windows: u64,
    /// Windows that could not be written (summed over the tasks in a merged summary).
    pub publish_failures: u64,
    /// The last reason a window could not be written (a task's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Merged summary: the windows in which tasks were stale (their window was not there when
    /// the launcher showed it), by window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleWindow>,
    /// Merged summary: metric sends (Prometheus, CloudWatch) that failed for good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_failures: Vec<String>,
}

/// The tasks that were stale in one live window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaleWindow {
    /// The window's number.
    pub window: u64,
    /// Its first second from the planned start.
    pub from_second: u64,
    /// The tasks, by id.
    pub tasks: Vec<String>,
}

/// The end-to-end parts of a summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndToEndReport {
    /// `produce` or `consume` (a report without it is a producer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A producer's trace: which events carried one and which of them failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceReport>,
    /// A consumer's measurements, or the run's reconciled delivery (merged summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2e>,
}

impl EndToEndReport {
    /// Whether this is a consumer task's report.
    pub fn is_consumer(&self) -> bool {
        self.role.as_deref() == Some("consume")
    }
}

/// What a producer that traced its events says about them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The trace field's name.
    pub field: String,
    /// The task id as written in the traces.
    pub task: String,
    /// The traced events are sequence numbers `0..attempted`.
    pub attempted: u64,
    /// Sequence numbers of the events that failed, as far as the sink could name them:
    /// base64 of a zlib-deflated roaring treemap (portable serialization).
    pub not_acknowledged: String,
    /// How many failed events are named in `not_acknowledged` (`counts.failed` minus this
    /// could not be named: unanswered at the end, or lost with a panicked send).
    pub not_acknowledged_named: u64,
}

/// End to end: what consumer tasks read of the system under test's output. In a consumer
/// task's summary `unique`, `lost` and `unacknowledged_seen` are absent (they need the
/// producers' reports); in the merged summary they reconcile: `unique + lost =
/// counts.acknowledged` of the producers that traced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct E2e {
    /// Records read that carried a trace of this run, every copy.
    pub seen: u64,
    /// Acknowledged events seen at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<u64>,
    /// Acknowledged events never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Copies beyond the first of an event.
    pub duplicates: u64,
    /// Events seen although their producer counted them failed or unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacknowledged_seen: Option<u64>,
    /// Records without a trace of this run.
    pub foreign: u64,
    /// Latency from the intended send time to the moment a consumer read the record, ms.
    pub latency_ms: Percentiles,
    /// That latency's histogram: base64 of HdrHistogram V2 deflate, µs.
    pub histogram: String,
    /// How the producers' and consumers' clocks relate: the error bar of the latency.
    pub clock: String,
    /// Consumer task: what it read (stream or topic, shards or partitions, the pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Consumer task: per producer task (the id in the traces), the sequence numbers seen, as
    /// [`TraceReport::not_acknowledged`] is encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delivered: BTreeMap<String, String>,
    /// Consumer task: per second of the intended send time (from the planned start), the
    /// latency histogram (base64 V2 deflate). The merge writes them as `merged/e2e.hlog`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_second: Vec<(u64, String)>,
    /// Merged summary: per second of the intended send time, `[second, seen, p50_ms, p99_ms,
    /// max_ms]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<E2eSecond>,
    /// Merged summary: which reports the numbers rest on, and what they cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<E2eCoverage>,
}

/// One second of end-to-end latency in the merged summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct E2eSecond {
    /// Second of the intended send time, from the planned start.
    pub second: u64,
    /// Records read whose events were intended in that second.
    pub seen: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// Which reports the merged end-to-end numbers rest on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct E2eCoverage {
    /// Consumer tasks whose report was read.
    pub consumers_reported: Vec<String>,
    /// Consumer tasks expected but without a readable, completed report: what they would have
    /// read is unknown, so `lost` is not a loss of the pipeline until they are accounted for.
    pub consumers_missing: Vec<String>,
    /// Producer tasks whose events carried a trace.
    pub producers_traced: u64,
    /// Producer tasks that reported without a trace (their events cannot be matched).
    pub producers_untraced: Vec<String>,
    /// Distinct events seen from producer tasks with no report: neither unique nor lost.
    pub from_unknown_producers: u64,
    /// Failed events their producers could not name: `lost` and `unacknowledged_seen` may
    /// each be off by at most this.
    pub unidentified_failures: u64,
    /// The same, in sentences, for the table and the page.
    pub notes: Vec<String>,
}

/// What held production back, when it fell behind its schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// The first second (from the planned start) in which events were handed over late by more
    /// than [`BEHIND_AFTER_MS`], or were never handed over; `None` when production kept up.
    pub behind_from_second: Option<u64>,
    /// Seconds the producing loop spent waiting for the target to take events (in-flight
    /// limit reached, local queue full). Summed across tasks in a merged summary.
    pub blocked_on_target_s: f64,
    /// Seconds the producing loop spent more than [`BEHIND_AFTER_MS`] behind its schedule.
    /// Summed across tasks in a merged summary.
    pub behind_schedule_s: f64,
    /// `target` (the loop was mostly blocked on the target) or `generator` (events were late
    /// but the target was not blocking: the task itself could not generate fast enough);
    /// `None` when production kept up.
    pub cause: Option<String>,
}

/// How late an event may be handed over before production counts as behind its schedule.
pub const BEHIND_AFTER_MS: u64 = 100;

impl Saturation {
    /// Names the cause from the time blocked on the target and the time behind schedule.
    pub fn cause_of(blocked_on_target_s: f64, behind_schedule_s: f64) -> &'static str {
        if blocked_on_target_s >= 0.5 * behind_schedule_s {
            "target"
        } else {
            "generator"
        }
    }
}

/// In words, when production did not keep up with the schedule: what the target took of what
/// was planned, what was never sent, since when, and whether the target or the generator held it
/// back. `None` when it kept up (or the run was unpaced). The worker's last log line, the
/// launcher's table and the HTML verdict all say this.
pub fn saturation_words(s: &Summary) -> Option<String> {
    let sat = s.saturation.as_ref()?;
    let target_rate = s.target_rate?;
    sat.behind_from_second?;
    let mut words = match sat.cause.as_deref() {
        Some("generator") => format!(
            "the generator could not keep up: {} of {} events/s acknowledged",
            group(s.achieved_rate.round() as u64),
            group(target_rate.round() as u64)
        ),
        _ => format!(
            "the target took {}/s of {}/s",
            group(s.achieved_rate.round() as u64),
            group(target_rate.round() as u64)
        ),
    };
    if s.counts.unsent > 0 {
        words.push_str(&format!(
            "; {} events were never sent",
            group(s.counts.unsent)
        ));
    }
    if s.counts.acknowledged_in_drain > 0 {
        words.push_str(&format!(
            "; {} more were acknowledged after production ended (in the target, not in the rate)",
            group(s.counts.acknowledged_in_drain)
        ));
    }
    if let Some(second) = sat.behind_from_second {
        words.push_str(&format!("; behind from second {second}"));
    }
    words.push_str(&match sat.cause.as_deref() {
        Some("generator") => format!(
            " (the task was behind its schedule for {:.1}s but waited on the target for only {:.1}s: give it more CPU or spread the rate over more tasks)",
            sat.behind_schedule_s, sat.blocked_on_target_s
        ),
        _ => format!(
            " (production waited {:.1}s on the target pushing back)",
            sat.blocked_on_target_s
        ),
    });
    Some(words)
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// Parses `summary.json`, refusing other schema versions.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Summary> {
        let mut s: Summary = serde_json::from_slice(bytes)
            .context("summary.json does not match the report schema")?;
        // Written before `planned` was counted: what was planned is what was attempted (and
        // `unsent`, 0 then), so the sums of a merge of old and new reports still add up.
        if s.counts.planned < s.counts.attempted + s.counts.unsent {
            s.counts.planned = s.counts.attempted + s.counts.unsent;
        }
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

    /// Whether a live threshold stopped the run (`aborted`) and every task that did not complete
    /// was interrupted, as the abort asked, with none missing: then the tasks did what they were
    /// told, and the run's verdict is the threshold's, not a failed fleet.
    pub fn stopped_by_abort(&self) -> bool {
        self.aborted.is_some()
            && self.merge.as_ref().is_some_and(|m| {
                m.tasks_missing.is_empty()
                    && m.tasks_not_completed
                        .iter()
                        .all(|t| matches!(t.outcome, Outcome::Interrupted { .. }))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_past_u64_saturate_instead_of_wrapping() {
        let huge = ShardCounts {
            acknowledged: u64::MAX,
            failed_by_code: BTreeMap::from([(THROTTLED_CODE.to_string(), u64::MAX)]),
            retried_by_code: BTreeMap::from([(THROTTLED_CODE.to_string(), 5)]),
        };
        let mut into = BTreeMap::from([("shardId-0".to_string(), huge.clone())]);
        add_by_shard(
            &mut into,
            &BTreeMap::from([("shardId-0".to_string(), huge)]),
        );
        let merged = &into["shardId-0"];
        assert_eq!(merged.acknowledged, u64::MAX);
        assert_eq!(merged.failed_by_code[THROTTLED_CODE], u64::MAX);
        assert_eq!(merged.retried_by_code[THROTTLED_CODE], 10);
        assert_eq!(merged.throttled(), u64::MAX);
    }

    fn saturated(cause: &str) -> Summary {
        let mut s: Summary = serde_json::from_value(serde_json::json!({
            "schema_version": SCHEMA_VERSION, "run_id": "r", "task_id": "t", "target": "kinesis",
            "scenario": {}, "fleetload_version": "0", "planned_start": "2026-01-01T00:00:00Z",
            "actual_start": null, "end": null, "late_start_ms": 0, "duration_s": 10.0,
            "outcome": {"status": "completed"},
            "counts": {"attempted": 96300, "acknowledged": 96300, "failed": 0,
                       "failed_by_code": {}, "retried": 0, "retried_by_code": {}},
            "bytes": 0, "target_rate": 20000.0, "achieved_rate": 9630.0,
            "latency_ms": Percentiles::default(), "service_time_ms": Percentiles::default(),
            "histograms": Histograms::default(), "errors_timeline": {}
        }))
        .unwrap();
        s.counts.unsent = 103_700;
        s.counts.planned = 200_000;
        s.saturation = Some(Saturation {
            behind_from_second: Some(0),
            blocked_on_target_s: if cause == "target" { 9.5 } else { 0.2 },
            behind_schedule_s: 9.9,
            cause: Some(cause.into()),
        });
        s
    }

    #[test]
    fn saturation_in_words_names_what_held_production_back() {
        let words = saturation_words(&saturated("target")).unwrap();
        assert!(
            words.starts_with(
                "the target took 9,630/s of 20,000/s; 103,700 events were never sent; behind from second 0"
            ),
            "{words}"
        );
        assert!(words.contains("waited 9.5s on the target"), "{words}");
        let words = saturation_words(&saturated("generator")).unwrap();
        assert!(
            words.starts_with("the generator could not keep up"),
            "{words}"
        );
        assert!(words.contains("more CPU"), "{words}");
        // Kept up: nothing to say.
        let mut s = saturated("target");
        s.saturation.as_mut().unwrap().behind_from_second = None;
        assert_eq!(saturation_words(&s), None);
        s.saturation = None;
        assert_eq!(saturation_words(&s), None);
    }

    #[test]
    fn a_report_written_before_planned_was_counted_reads_as_planned_attempted() {
        let mut s = saturated("target");
        s.counts.unsent = 0;
        s.saturation = None;
        let mut json: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        let counts = json["counts"].as_object_mut().unwrap();
        counts.remove("planned");
        counts.remove("unsent");
        let old = Summary::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(old.counts.planned, 96_300);
        assert_eq!(old.counts.unsent, 0);
        assert_eq!(old.saturation, None);
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
