//! What the merge takes and gives: one task's files as read, and the merged report.

use hdrhistogram::Histogram;

use crate::model::report::{SecondRow, Summary};

/// Task id of the merged summary.
pub const MERGED_TASK_ID: &str = "merged";
/// A report with a second beyond this (a week) is malformed: no run lasts that long
/// (scenarios are capped at a day), and the merge must not allocate rows for it.
pub const MAX_SECOND: u64 = 7 * 24 * 3600;
/// How many task ids a one-line reason lists before saying "and N more".
pub(super) const REASON_IDS: usize = 10;

/// One task's report files as read from the store; `None` for a file that is absent.
#[derive(Debug, Clone, Default)]
pub struct TaskInput {
    /// The task id: the name of its directory under `<run_id>/tasks/`.
    pub task_id: String,
    /// `summary.json`.
    pub summary: Option<Vec<u8>>,
    /// `timeseries.csv`.
    pub timeseries: Option<Vec<u8>>,
    /// `histograms.hlog`.
    pub hlog: Option<Vec<u8>>,
}

/// The merged report of a run.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merged `summary.json` (task id `merged`, with [`MergeInfo`](crate::model::report::MergeInfo)).
    pub summary: Summary,
    /// The summed latency histogram (from the intended send time), as encoded in `summary`.
    pub latency: Histogram<u64>,
    /// The summed service-time histogram, as encoded in `summary`.
    pub service: Histogram<u64>,
    /// The merged `timeseries.csv`: one row per second from the planned start.
    pub rows: Vec<SecondRow>,
    /// Per-second latency histograms summed across tasks, as `histograms.hlog` holds them:
    /// encoded, a few KB a second (a decoded one is up to ~180 KB, 600 MB per hour of run).
    pub per_second: Vec<MergedSecond>,
    /// The summaries of the tasks whose report was readable, sorted by task id.
    pub tasks: Vec<Summary>,
}

/// One second of the merged interval log.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSecond {
    /// The second, from the planned start.
    pub second: u64,
    /// The largest latency of the second, µs.
    pub max_us: u64,
    /// The summed histogram, HdrHistogram V2 deflate (as `histograms.hlog` carries it).
    pub encoded: Vec<u8>,
}

impl MergedSecond {
    /// The summed histogram, decoded.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        use hdrhistogram::serialization::Deserializer;
        Deserializer::new()
            .deserialize(&mut &self.encoded[..])
            .map_err(|e| anyhow::anyhow!("merged histogram of second {}: {e:?}", self.second))
    }
}
