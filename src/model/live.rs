//! Live windows: what a task did in each interval of the run while it runs, and what the
//! launcher saw of the fleet.
//!
//! Every `FLEETLOAD_LIVE_INTERVAL` a task writes one [`LiveWindow`] to the report store:
//! window `k` holds what happened in the seconds `[k × interval, (k + 1) × interval)` from the
//! run's *planned* start, so the windows of every task line up. An event counts in the window of
//! the second it happened in (an acknowledgement in the second it arrived, an attempt in the
//! second it was handed over), and its latency goes into the window's histogram exactly as it
//! goes into that second's histogram of `histograms.hlog`: a window's histogram is the sum of its
//! seconds' histograms. What happens after a window was written (an answer racing the boundary,
//! the events counted `unsent` at the end) counts in the next window written, and the last
//! window (`final`) holds everything up to the report. So a task's windows, summed, are its
//! final counts, and the launcher can add the windows of all tasks exactly (histograms added,
//! never averaged), as the merge adds the reports.
//!
//! [`WindowTally`] and [`Windows`] are the accumulators the recorders fill; [`LiveWindow`] is the
//! file; [`LiveRecord`] is what the launcher keeps of the run (`live/view.json`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::model::report::{new_histogram, Counts, Percentiles};

/// Version of the live window format; a reader refuses others.
pub const LIVE_SCHEMA_VERSION: u32 = 1;
/// `FLEETLOAD_LIVE_INTERVAL` when not given.
pub const DEFAULT_LIVE_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval: a window is a whole number of the seconds the time series has.
pub const MIN_LIVE_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval: beyond it nothing would be live.
pub const MAX_LIVE_INTERVAL: Duration = Duration::from_secs(3600);

/// What one window of one task holds so far.
#[derive(Debug, Clone)]
pub struct WindowTally {
    /// Counts as in `summary.json`, of this window (planned is set when it is taken).
    pub counts: Counts,
    /// Bytes acknowledged.
    pub bytes: u64,
    /// Latency from the intended send time, µs: the sum of the window's seconds' histograms.
    pub latency: Histogram<u64>,
    /// With a trace on the events: acknowledgements by the window of their *intended* send
    /// time, so the launcher can tell events old enough to have reached a consumer.
    pub acknowledged_by_intended: BTreeMap<u64, u64>,
}

impl Default for WindowTally {
    fn default() -> Self {
        WindowTally {
            counts: Counts::default(),
            bytes: 0,
            latency: new_histogram(),
            acknowledged_by_intended: BTreeMap::new(),
        }
    }
}

/// What one window of one consumer task holds so far (by the second it read a record).
#[derive(Debug, Clone)]
pub struct ConsumerTally {
    /// Records read that carried a trace of this run.
    pub seen: u64,
    /// Of those, records whose event this task had already seen.
    pub duplicates: u64,
    /// Records without a trace of this run.
    pub foreign: u64,
    /// End-to-end latency of the records read in this window, µs.
    pub latency: Histogram<u64>,
    /// Events seen for the first time, by the window of their intended send time.
    pub unique_by_intended: BTreeMap<u64, u64>,
}

impl Default for ConsumerTally {
    fn default() -> Self {
        ConsumerTally {
            seen: 0,
            duplicates: 0,
            foreign: 0,
            latency: new_histogram(),
            unique_by_intended: BTreeMap::new(),
        }
    }
}

/// The open windows of one task: the first not yet taken (`floor`) and those after it. An event
/// of a window already taken goes into the floor window, so nothing is counted twice or lost.
#[derive(Debug)]
pub struct Windows<T> {
    interval_s: u64,
    floor: u64,
    open: VecDeque<T>,
}

impl<T: Default> Windows<T> {
    /// Windows of `interval_s` seconds (at least 1).
    pub fn new(interval_s: u64) -> Self {
        Windows {
            interval_s: interval_s.max(1),
            floor: 0,
            open: VecDeque::new(),
        }
    }

    /// The window length in seconds.
    pub fn interval_s(&self) -> u64 {
        self.interval_s
    }

    /// The first window not yet taken.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The window an event of `second` (from the planned start) counts in: its own, or the
    /// first one not yet taken when its own was.
    #[inline]
    pub fn window_of(&self, second: u64) -> u64 {
        (second / self.interval_s).max(self.floor)
    }

    /// The tally of the window an event of `second` counts in.
    #[inline]
    pub fn at(&mut self, second: u64) -> &mut T {
        let i = (self.window_of(second) - self.floor) as usize;
        if i >= self.open.len() {
            self.open.resize_with(i + 1, T::default);
        }
        &mut self.open[i]
    }

    /// The tally of window `window` when it is not taken yet (for adding a closed second's
    /// histogram), else of the floor window.
    pub fn window(&mut self, window: u64) -> &mut T {
        self.at(window.saturating_mul(self.interval_s))
    }

    /// Takes the floor window: `(its number, its tally)`; from now on its events count in the
    /// next one.
    pub fn take(&mut self) -> (u64, T) {
        let window = self.floor;
        let tally = self.open.pop_front().unwrap_or_default();
        self.floor += 1;
        (window, tally)
    }

    /// The number of the last window holding anything (or the floor when none does).
    pub fn last_open(&self) -> u64 {
        self.floor + self.open.len().saturating_sub(1) as u64
    }
}

/// One task's live window: `<run>/live/w<window>/<task>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveWindow {
    /// [`LIVE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// `produce` or `consume`.
    pub role: String,
    /// The window's number: it holds the seconds `[window × interval_s, (window + 1) ×
    /// interval_s)` from the planned start.
    pub window: u64,
    /// The window's length in seconds.
    pub interval_s: u64,
    /// The task's last window: written with its report, holding everything up to it.
    #[serde(rename = "final")]
    pub last: bool,
    /// When the task wrote it.
    pub written_at: DateTime<Utc>,
    /// A producer's counts in this window, as in `summary.json`: `planned` is what the schedule
    /// called for in it, `unsent` what was given up (at the end of production: in the final
    /// window). Summed over the task's windows they are its final counts.
    pub counts: Counts,
    /// Bytes acknowledged in this window.
    pub bytes: u64,
    /// At the window's end, events the schedule had called for that were neither handed over
    /// nor given up yet: how far behind the task was (a gauge, not summed).
    pub behind: u64,
    /// The window's latency histogram (from the intended send time, µs): base64 of
    /// HdrHistogram V2 deflate.
    pub latency: String,
    /// With traced events: acknowledgements by the window of their intended send time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acknowledged_by_intended: BTreeMap<u64, u64>,
    /// A consumer task's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerWindow>,
    /// Windows of this task that could not be written so far (the store refused or timed out).
    #[serde(default)]
    pub publish_failures: u64,
}

/// What a consumer task read in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerWindow {
    /// Records read that carried a trace of this run.
    pub seen: u64,
    /// Of those, copies of an event this task had already seen.
    pub duplicates: u64,
    /// Records without a trace of this run.
    pub foreign: u64,
    /// End-to-end latency of the records read in this window (µs): base64 of HdrHistogram V2
    /// deflate.
    pub latency: String,
    /// Events seen for the first time, by the window of their intended send time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unique_by_intended: BTreeMap<u64, u64>,
}

impl LiveWindow {
    /// Parses a window, refusing other format versions and impossible values.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<LiveWindow> {
        let w: LiveWindow =
            serde_json::from_slice(bytes).context("not a live window of this format")?;
        anyhow::ensure!(
            w.schema_version == LIVE_SCHEMA_VERSION,
            "live window has schema_version {}, this program reads {LIVE_SCHEMA_VERSION}",
            w.schema_version
        );
        anyhow::ensure!(w.interval_s > 0, "live window has an interval of 0 s");
        Ok(w)
    }

    /// Compact JSON (a window is written every interval by every task).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a live window always serializes")
    }

    /// The first second of the window, from the planned start.
    pub fn from_second(&self) -> u64 {
        self.window * self.interval_s
    }
}

/// What the launcher saw of a run while it ran (`<run>/live/view.json`): every window as the
/// fleet's merged numbers, the tasks that were stale in it, and the abort when there was one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// The windows' length in seconds.
    pub interval_s: u64,
    /// Every window shown, in order.
    pub windows: Vec<FleetWindowRecord>,
    /// Why and when the run was stopped early, when a live threshold broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// Metric sends that failed for good (each said once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_failures: Vec<String>,
    /// Everything read of the run's windows by its end (every window of every task once): the
    /// producers' counts, which equal the merged report's when no window was lost.
    #[serde(default)]
    pub totals: Counts,
    /// Requests the live view made of the store (listings and reads).
    #[serde(default)]
    pub requests: u64,
}

impl LiveRecord {
    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a live record always serializes");
        v.push(b'\n');
        v
    }

    /// Parses `live/view.json`.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<LiveRecord> {
        serde_json::from_slice(bytes).context("live/view.json does not match its format")
    }

    /// The windows in which tasks were stale, for the merged summary.
    pub fn stale_windows(&self) -> Vec<crate::model::report::StaleWindow> {
        self.windows
            .iter()
            .filter(|w| !w.stale.is_empty())
            .map(|w| crate::model::report::StaleWindow {
                window: w.window,
                from_second: w.from_second,
                tasks: w.stale.clone(),
            })
            .collect()
    }
}

/// One window of the fleet, as the launcher merged and showed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetWindowRecord {
    /// The window's number.
    pub window: u64,
    /// Its first second from the planned start.
    pub from_second: u64,
    /// Its end (exclusive), seconds from the planned start.
    pub to_second: u64,
    /// Tasks whose window was read when it was shown.
    pub tasks_reporting: u64,
    /// Tasks expected then.
    pub tasks_expected: u64,
    /// Tasks expected whose window was not there when it was shown, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    /// The producers' counts in the window, summed.
    pub counts: Counts,
    /// Bytes acknowledged.
    pub bytes: u64,
    /// Events due and not yet handed over at the window's end, summed.
    pub behind: u64,
    /// The fleet's planned rate in the window (events/s over the window's production seconds).
    pub target_rate: f64,
    /// Acknowledged events per second of the window's production seconds.
    pub achieved_rate: f64,
    /// Latency percentiles of the window's merged histogram, ms.
    pub latency_ms: Percentiles,
    /// With consumers: end-to-end latency of the records read in the window, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_latency_ms: Option<Percentiles>,
    /// With consumers: acknowledged events old enough to have been read (intended at least the
    /// settle time before the window's end) that no consumer had seen by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_so_far: Option<u64>,
}

/// A run stopped by a live threshold (`aborted` in the merged `summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    /// The threshold as the user wrote it.
    pub threshold: String,
    /// The second (from the planned start) at which it was judged broken: the end of the last
    /// window that broke it.
    pub second: u64,
    /// The windows that broke it, in order, with what was measured in each.
    pub windows: Vec<AbortWindow>,
    /// The verdict in words: `error_rate 7.2 % ≥ 1 % for 3 windows`.
    pub reason: String,
}

/// One window that broke the threshold a run was stopped for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AbortWindow {
    /// The window's number.
    pub window: u64,
    /// What was measured, with its unit.
    pub measured: String,
}

/// `00:04:10` for a second count.
pub fn clock(second: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_a_taken_window_counts_in_the_first_open_one() {
        let mut w: Windows<u64> = Windows::new(10);
        *w.at(3) += 1;
        *w.at(12) += 2;
        *w.at(35) += 4;
        assert_eq!(w.last_open(), 3);
        assert_eq!(w.take(), (0, 1));
        // Second 5 belongs to window 0, which is taken: it counts in window 1.
        *w.at(5) += 8;
        assert_eq!(w.window_of(5), 1);
        assert_eq!(w.take(), (1, 10));
        assert_eq!(w.take(), (2, 0));
        assert_eq!(w.take(), (3, 4));
        assert_eq!(w.take(), (4, 0));
    }

    #[test]
    fn a_window_round_trips_and_other_versions_are_refused() {
        let w = LiveWindow {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: "r".into(),
            task_id: "t".into(),
            role: "produce".into(),
            window: 3,
            interval_s: 10,
            last: true,
            written_at: DateTime::<Utc>::UNIX_EPOCH,
            counts: Counts {
                planned: 5,
                attempted: 5,
                acknowledged: 4,
                failed: 1,
                failed_by_code: BTreeMap::from([("X".into(), 1)]),
                ..Counts::default()
            },
            bytes: 400,
            behind: 0,
            latency: crate::model::report::encode_histogram(&new_histogram()),
            acknowledged_by_intended: BTreeMap::from([(2, 1), (3, 3)]),
            consumer: None,
            publish_failures: 0,
        };
        let json = w.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"final\":true"));
        assert_eq!(LiveWindow::from_json(&json).unwrap(), w);
        assert_eq!(w.from_second(), 30);
        let mut old: serde_json::Value = serde_json::from_slice(&json).unwrap();
        old["schema_version"] = 99.into();
        let e = LiveWindow::from_json(&serde_json::to_vec(&old).unwrap()).unwrap_err();
        assert!(e.to_string().contains("schema_version 99"), "{e}");
        assert!(LiveWindow::from_json(b"{}").is_err());
    }

    #[test]
    fn clock_reads_hours_minutes_seconds() {
        assert_eq!(clock(250), "00:04:10");
        assert_eq!(clock(3 * 3600 + 61), "03:01:01");
    }
}
