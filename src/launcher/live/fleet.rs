//! One live window of the fleet: every task's window added up exactly (counts summed by code,
//! histograms added), and the run's totals so far.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::launcher::gate::LiveValues;
use crate::model::live::{FleetWindowRecord, LiveWindow};
use crate::model::report::{decode_histogram, new_histogram, Counts, Percentiles};

/// The fleet's window `window`, as far as it was read.
pub(super) struct FleetWindow {
    pub(super) window: u64,
    pub(super) interval_s: u64,
    /// Tasks whose window was read, producers and consumers.
    pub(super) reporting: BTreeSet<String>,
    pub(super) counts: Counts,
    pub(super) bytes: u64,
    pub(super) behind: u64,
    pub(super) latency: Histogram<u64>,
    /// Whether any consumer's window was read.
    pub(super) consumers: bool,
    pub(super) e2e: Histogram<u64>,
    pub(super) seen: u64,
    pub(super) duplicates: u64,
    /// Windows that could not be added (a histogram that does not decode): named, not counted.
    pub(super) unreadable: Vec<String>,
}

impl FleetWindow {
    pub(super) fn new(window: u64, interval_s: u64) -> Self {
        FleetWindow {
            window,
            interval_s,
            reporting: BTreeSet::new(),
            counts: Counts::default(),
            bytes: 0,
            behind: 0,
            latency: new_histogram(),
            consumers: false,
            e2e: new_histogram(),
            seen: 0,
            duplicates: 0,
            unreadable: Vec::new(),
        }
    }

    /// Adds one task's window. A window whose histograms do not decode is left out whole (its
    /// counts too), so the counts and the percentiles always rest on the same windows.
    pub(super) fn add(&mut self, w: &LiveWindow) {
        let latency = if w.latency.is_empty() {
            Ok(new_histogram())
        } else {
            decode_histogram(&w.latency)
        };
        let e2e = w
            .consumer
            .as_ref()
            .map(|c| decode_histogram(&c.latency))
            .transpose();
        let (latency, e2e) = match (latency, e2e) {
            (Ok(l), Ok(e)) => (l, e),
            (Err(e), _) | (_, Err(e)) => {
                self.unreadable.push(format!("{}: {e:#}", w.task_id));
                return;
            }
        };
        let fits = |h: &Histogram<u64>| h.max() <= self.latency.high();
        if !fits(&latency) || !e2e.as_ref().map_or(true, fits) {
            self.unreadable
                .push(format!("{}: a histogram beyond an hour", w.task_id));
            return;
        }
        // Within the bounds checked above: adding cannot fail.
        let _ = self.latency.add(&latency);
        if let Some(e) = &e2e {
            let _ = self.e2e.add(e);
        }
        self.reporting.insert(w.task_id.clone());
        self.counts.add(&w.counts);
        self.bytes += w.bytes;
        self.behind += w.behind;
        if let Some(c) = &w.consumer {
            self.consumers = true;
            self.seen += c.seen;
            self.duplicates += c.duplicates;
        }
    }

    /// Seconds of the window that were production time (the producers' planned duration).
    fn production_seconds(&self, production: Duration) -> f64 {
        let from = (self.window * self.interval_s) as f64;
        let to = ((self.window + 1) * self.interval_s) as f64;
        (to.min(production.as_secs_f64()) - from).max(0.0)
    }

    /// The window's numbers as shown and kept; `expected` and `stale` say who reported.
    pub(super) fn record(
        &self,
        production: Duration,
        paced: bool,
        expected: u64,
        stale: Vec<String>,
        lost_so_far: Option<u64>,
    ) -> FleetWindowRecord {
        let seconds = self.production_seconds(production);
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        FleetWindowRecord {
            window: self.window,
            from_second: self.window * self.interval_s,
            to_second: (self.window + 1) * self.interval_s,
            tasks_reporting: self.reporting.len() as u64,
            tasks_expected: expected,
            stale,
            counts: self.counts.clone(),
            bytes: self.bytes,
            behind: self.behind,
            target_rate: if paced {
                per_second(self.counts.planned)
            } else {
                0.0
            },
            achieved_rate: per_second(self.counts.acknowledged),
            latency_ms: Percentiles::of(&self.latency),
            e2e_latency_ms: self.consumers.then(|| Percentiles::of(&self.e2e)),
            lost_so_far,
        }
    }

    /// What the live thresholds judge in this window. Rates only over production seconds: a
    /// window of the drain after production holds acknowledgements but no production time.
    pub(super) fn values(&self, production: Duration, lost: Option<(u64, u64)>) -> LiveValues {
        let seconds = self.production_seconds(production);
        let c = &self.counts;
        LiveValues {
            rate: (seconds > 0.0).then(|| c.acknowledged as f64 / seconds),
            error_rate: (c.attempted > 0).then(|| c.error_rate()),
            throttled: (c.attempted + c.retried > 0).then(|| c.throttle_ratio()),
            latency: (!self.latency.is_empty()).then(|| Percentiles::of(&self.latency)),
            e2e_latency: (self.consumers && !self.e2e.is_empty())
                .then(|| Percentiles::of(&self.e2e)),
            lost: lost.map(|(lost, _)| lost),
            lost_of: lost.map_or(0, |(_, of)| of),
        }
    }
}

/// Everything read so far, every window of every task once: the counters the metrics carry,
/// and what "lost so far" is worked out from.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) counts: Counts,
    pub(super) bytes: u64,
    pub(super) seen: u64,
    pub(super) duplicates: u64,
    /// Producers' acknowledgements by the window of their intended send time.
    acknowledged_by_intended: BTreeMap<u64, u64>,
    /// Consumers' first sightings by the window of the event's intended send time.
    unique_by_intended: BTreeMap<u64, u64>,
}

impl Totals {
    pub(super) fn add(&mut self, w: &LiveWindow) {
        self.counts.add(&w.counts);
        self.bytes += w.bytes;
        for (k, n) in &w.acknowledged_by_intended {
            *self.acknowledged_by_intended.entry(*k).or_default() += n;
        }
        if let Some(c) = &w.consumer {
            self.seen += c.seen;
            self.duplicates += c.duplicates;
            for (k, n) in &c.unique_by_intended {
                *self.unique_by_intended.entry(*k).or_default() += n;
            }
        }
    }

    /// Acknowledged events intended in windows that ended at least `settle` before `now_s`
    /// (seconds from the planned start) that no consumer had seen, and how many acknowledged
    /// events those windows hold: `(lost, of)`. An event younger than that may still be on
    /// its way through the system under test.
    pub(super) fn lost_so_far(&self, interval_s: u64, settle: Duration, now_s: u64) -> (u64, u64) {
        let mut lost = 0u64;
        let mut of = 0u64;
        for (&window, &acknowledged) in &self.acknowledged_by_intended {
            let end = (window + 1) * interval_s;
            if end + settle.as_secs() > now_s {
                continue;
            }
            let seen = self.unique_by_intended.get(&window).copied().unwrap_or(0);
            lost += acknowledged.saturating_sub(seen);
            of += acknowledged;
        }
        (lost, of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::live::{ConsumerWindow, LIVE_SCHEMA_VERSION};
    use crate::model::report::encode_histogram;

    fn window(task: &str, window: u64, latencies_us: &[u64], acknowledged: u64) -> LiveWindow {
        let mut h = new_histogram();
        for &v in latencies_us {
            h.record(v).unwrap();
        }
        LiveWindow {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: "r".into(),
            task_id: task.into(),
            role: "produce".into(),
            window,
            interval_s: 10,
            last: false,
            written_at: chrono::Utc::now(),
            counts: Counts {
                planned: acknowledged,
                attempted: acknowledged,
                acknowledged,
                ..Counts::default()
            },
            bytes: acknowledged * 100,
            behind: 0,
            latency: encode_histogram(&h),
            acknowledged_by_intended: BTreeMap::from([(window, acknowledged)]),
            consumer: None,
            publish_failures: 0,
        }
    }

    #[test]
    fn a_fleet_window_adds_histograms_and_never_averages_percentiles() {
        // Task a: 99 fast events; task b: one slow one. Averaging the two p99s would say
        // ~1000 ms; the union says the 99th percentile is a fast event.
        let a = window("a", 2, &[1_000; 99], 99);
        let b = window("b", 2, &[1_000_000], 1);
        let mut f = FleetWindow::new(2, 10);
        f.add(&a);
        f.add(&b);
        let r = f.record(Duration::from_secs(60), true, 2, Vec::new(), None);
        assert_eq!(r.counts.acknowledged, 100);
        assert_eq!(r.tasks_reporting, 2);
        assert!((r.latency_ms.p99 - 1.0).abs() < 0.01, "{:?}", r.latency_ms);
        assert!(
            (r.latency_ms.max - 1000.0).abs() < 1.0,
            "{:?}",
            r.latency_ms
        );
        assert!((r.achieved_rate - 10.0).abs() < 1e-9);
        // Past the production's end, no rate is judged.
        let v = f.values(Duration::from_secs(20), None);
        assert_eq!(v.rate, None);
        assert!(v.latency.is_some());
    }

    #[test]
    fn a_window_whose_histogram_does_not_decode_is_left_out_whole() {
        let mut bad = window("bad", 0, &[5], 7);
        bad.latency = "not base64!".into();
        let mut f = FleetWindow::new(0, 10);
        f.add(&window("good", 0, &[5], 3));
        f.add(&bad);
        assert_eq!(f.counts.acknowledged, 3);
        assert_eq!(f.unreadable.len(), 1);
        assert!(f.unreadable[0].starts_with("bad:"));
    }

    #[test]
    fn lost_so_far_counts_only_events_old_enough_to_have_been_read() {
        let mut t = Totals::default();
        t.add(&window("p", 0, &[5], 100));
        t.add(&window("p", 1, &[5], 100));
        let mut c = window("c", 1, &[], 0);
        c.counts = Counts::default();
        c.acknowledged_by_intended.clear();
        c.consumer = Some(ConsumerWindow {
            seen: 97,
            latency: encode_histogram(&new_histogram()),
            unique_by_intended: BTreeMap::from([(0, 97)]),
            ..ConsumerWindow::default()
        });
        t.add(&c);
        // At second 24 with a 5 s settle, window 0 (ended at 10) is old enough, window 1
        // (ended at 20) is not; at 25 it is.
        assert_eq!(t.lost_so_far(10, Duration::from_secs(5), 24), (3, 100));
        assert_eq!(t.lost_so_far(10, Duration::from_secs(5), 25), (103, 200));
        assert_eq!(t.lost_so_far(10, Duration::from_secs(5), 14), (0, 0));
    }
}
