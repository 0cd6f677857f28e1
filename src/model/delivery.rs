//! End-to-end measurement: what a consumer task saw, and how the merge turns the consumers'
//! sets and the producers' counts into `seen`, `unique`, `lost`, `duplicates` and
//! `unacknowledged_seen`.
//!
//! Delivery is kept exactly, per producer task, as the set of sequence numbers seen (a
//! compressed bitmap: `roaring`'s 64-bit treemap, whose runs of consecutive numbers cost a few
//! bytes), plus the number of records read. Sets of several consumers are OR-ed, so an event
//! read by two consumers counts once in `unique` and once in `duplicates`.
//!
//! Latency is from the event's intended send time (its trace) to the moment the consumer read
//! it, both wall clocks: on one host they are the same clock; on ECS they are the tasks' clocks,
//! kept by NTP (Amazon Time Sync), which is the error bar of every end-to-end number.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::Histogram;
use roaring::RoaringTreemap;

use crate::model::live::{ConsumerTally, Windows};
use crate::model::report::{new_histogram, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};
use crate::model::trace::{Trace, TraceFinder};

/// How far behind the newest second a per-second histogram stays open before it is encoded.
const OPEN_SECONDS: u64 = 10;
/// A trace intended this long before the run's planned start belongs to an earlier run (a
/// stream keeps records for a day): it counts as foreign.
const EARLIER_RUN_US: u64 = 1_000_000;

/// Encodes a sequence-number set as base64 of the zlib-deflated portable serialization of a
/// roaring treemap. Deflate matters: this roaring version writes no run containers, so a set of
/// consecutive numbers is 8 KiB per 65,536 before it, and a few bytes after.
pub fn encode_set(set: &RoaringTreemap) -> String {
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(set.serialized_size() / 16 + 64),
        flate2::Compression::fast(),
    );
    set.serialize_into(&mut z)
        .expect("serializing into memory cannot fail");
    let bytes = z
        .flush_finish()
        .expect("compressing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`encode_set`].
pub fn decode_set(text: &str) -> anyhow::Result<RoaringTreemap> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("sequence-number set is not base64")?;
    RoaringTreemap::deserialize_from(flate2::read::ZlibDecoder::new(bytes.as_slice()))
        .context("sequence-number set is not a deflated roaring treemap")
}

/// What a consumer task measured.
#[derive(Debug)]
pub struct ConsumerMeasurements {
    /// Records read that carried a trace of this run.
    pub seen: u64,
    /// Of those, records whose event this task had already seen.
    pub duplicates: u64,
    /// Records without a trace (or with one from an earlier run).
    pub foreign: u64,
    /// Per producer task (the id in the traces), the sequence numbers seen.
    pub delivered: BTreeMap<String, RoaringTreemap>,
    /// End-to-end latency, µs.
    pub latency: Histogram<u64>,
    /// The per-second latency histograms, by second of the intended send time from the
    /// planned start.
    pub per_second: Vec<(u64, Histogram<u64>)>,
}

/// Records what a consumer task reads: one per task (a Kinesis consumer's shard readers share
/// it behind a lock, a Kafka consumer has one reading thread).
pub struct ConsumerRecorder {
    finder: TraceFinder,
    planned_start_us: u64,
    producers: HashMap<Vec<u8>, RoaringTreemap>,
    seen: u64,
    duplicates: u64,
    foreign: u64,
    latency: Histogram<u64>,
    open: BTreeMap<u64, Histogram<u64>>,
    closed: BTreeMap<u64, Histogram<u64>>,
    newest_second: u64,
    /// Live windows by the second a record was read, when the task publishes them.
    live: Option<Windows<ConsumerTally>>,
}

impl std::fmt::Debug for ConsumerRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRecorder")
            .field("seen", &self.seen)
            .field("foreign", &self.foreign)
            .finish_non_exhaustive()
    }
}

impl ConsumerRecorder {
    /// A recorder finding traces with `finder`, for a run planned to start at
    /// `planned_start_us` (epoch µs).
    pub fn new(finder: TraceFinder, planned_start_us: u64) -> Self {
        ConsumerRecorder {
            finder,
            planned_start_us,
            producers: HashMap::new(),
            seen: 0,
            duplicates: 0,
            foreign: 0,
            latency: new_histogram(),
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            newest_second: 0,
            live: None,
        }
    }

    /// Keeps live windows of `interval_s` seconds, by the second each record is read (from
    /// the planned start), to be taken with [`ConsumerRecorder::take_live_windows`].
    pub fn live_windows(&mut self, interval_s: u64) {
        self.live = Some(Windows::new(interval_s));
    }

    /// The second from the planned start of an instant `at_us` (epoch µs).
    fn second_of(&self, at_us: u64) -> u64 {
        at_us.saturating_sub(self.planned_start_us) / 1_000_000
    }

    /// The live windows that ended by `now_us` (epoch µs), in order, as `(window, tally)`;
    /// empty when live windows are off. Cheap when none ended: readers call it after every poll.
    pub fn take_live_windows(&mut self, now_us: u64) -> Vec<(u64, ConsumerTally)> {
        let now_s = self.second_of(now_us);
        let mut taken = Vec::new();
        if let Some(live) = &mut self.live {
            while (live.floor() + 1) * live.interval_s() <= now_s {
                taken.push(live.take());
            }
        }
        taken
    }

    /// At the end: every window not taken yet, up to the one holding `now_us` (epoch µs), the
    /// last of them the task's final window. Empty when live windows are off.
    pub fn take_final_windows(&mut self, now_us: u64) -> Vec<(u64, ConsumerTally)> {
        let now_s = self.second_of(now_us);
        let mut taken = Vec::new();
        if let Some(live) = &mut self.live {
            let last = live.last_open().max(live.window_of(now_s));
            while live.floor() <= last {
                taken.push(live.take());
            }
        }
        taken
    }

    /// Records one record read at `read_at_us` (epoch µs).
    pub fn record(&mut self, record: &[u8], read_at_us: u64) {
        match self.finder.find(record) {
            Some(trace) if trace.intended_us + EARLIER_RUN_US >= self.planned_start_us => {
                self.seen_trace(trace, read_at_us)
            }
            _ => {
                self.foreign += 1;
                let second = self.second_of(read_at_us);
                if let Some(live) = &mut self.live {
                    live.at(second).foreign += 1;
                }
            }
        }
    }

    fn seen_trace(&mut self, trace: Trace<'_>, read_at_us: u64) {
        self.seen += 1;
        let set = match self.producers.get_mut(trace.task) {
            Some(set) => set,
            None => self.producers.entry(trace.task.to_vec()).or_default(),
        };
        let new = set.insert(trace.seq);
        if !new {
            self.duplicates += 1;
        }
        let us = read_at_us
            .saturating_sub(trace.intended_us)
            .clamp(1, HISTOGRAM_MAX_US);
        self.latency.saturating_record(us);
        let read_second = self.second_of(read_at_us);
        if let Some(live) = &mut self.live {
            let intended_window = trace.intended_us.saturating_sub(self.planned_start_us)
                / 1_000_000
                / live.interval_s();
            let w = live.at(read_second);
            w.seen += 1;
            w.latency.saturating_record(us);
            if new {
                *w.unique_by_intended.entry(intended_window).or_default() += 1;
            } else {
                w.duplicates += 1;
            }
        }
        let second = trace.intended_us.saturating_sub(self.planned_start_us) / 1_000_000;
        let h = match self.open.get_mut(&second) {
            Some(h) => h,
            None => {
                // A late record for a second already closed reopens it.
                let h = self.closed.remove(&second).unwrap_or_else(new_histogram);
                self.open.entry(second).or_insert(h)
            }
        };
        h.saturating_record(us);
        if second > self.newest_second {
            self.newest_second = second;
            self.close_old();
        }
    }

    /// Closed seconds are kept compact: an empty HdrHistogram is ~180 KB, and a one-hour run
    /// has 3,600 seconds; a closed one is shrunk to what it holds.
    fn close_old(&mut self) {
        while let Some((&second, _)) = self.open.first_key_value() {
            if second + OPEN_SECONDS > self.newest_second {
                break;
            }
            let h = self.open.remove(&second).expect("present");
            let mut compact = Histogram::new_with_bounds(1, h.max().max(2), HISTOGRAM_SIGFIG)
                .expect("valid bounds");
            compact.add(&h).expect("within the bounds of its maximum");
            compact.auto(true);
            self.closed.insert(second, compact);
        }
    }

    /// What was measured.
    pub fn finish(mut self) -> ConsumerMeasurements {
        let mut seconds: BTreeMap<u64, Histogram<u64>> = std::mem::take(&mut self.closed);
        for (second, h) in std::mem::take(&mut self.open) {
            match seconds.get_mut(&second) {
                Some(c) => {
                    c.auto(true);
                    let _ = c.add(&h);
                }
                None => {
                    seconds.insert(second, h);
                }
            }
        }
        ConsumerMeasurements {
            seen: self.seen,
            duplicates: self.duplicates,
            foreign: self.foreign,
            delivered: self
                .producers
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect(),
            latency: self.latency,
            per_second: seconds.into_iter().collect(),
        }
    }
}

/// What one producer task says about its traced events.
#[derive(Debug, Clone)]
pub struct ProducerDelivery {
    /// Events it handed over: sequence numbers `0..attempted`.
    pub attempted: u64,
    /// Of those, acknowledged by the target.
    pub acknowledged: u64,
    /// The sequence numbers it knows were not acknowledged (failed, unanswered).
    pub not_acknowledged: RoaringTreemap,
}

/// Delivery, reconciled across a run's producers and consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Records read that carried a trace of this run (every copy).
    pub seen: u64,
    /// Acknowledged events seen at least once.
    pub unique: u64,
    /// Acknowledged events never seen: `unique + lost = acknowledged`.
    pub lost: u64,
    /// Copies beyond the first: `seen - distinct events seen`.
    pub duplicates: u64,
    /// Events seen although their producer counted them failed or unanswered.
    pub unacknowledged_seen: u64,
    /// Distinct events seen whose producer task has no report (or did not trace): they cannot
    /// be told acknowledged or not, and are in neither `unique` nor `lost`.
    pub from_unknown_producers: u64,
    /// Failed events the producers could not name by sequence number (their outcome was
    /// recorded without it): `lost` and `unacknowledged_seen` may each be off by at most this.
    pub unidentified_failures: u64,
}

/// Reconciles the OR of the consumers' sets (`delivered`, with `seen` records in all) with the
/// producers' counts.
pub fn reconcile(
    seen: u64,
    delivered: &BTreeMap<String, RoaringTreemap>,
    producers: &BTreeMap<String, ProducerDelivery>,
) -> Reconciled {
    let mut out = Reconciled {
        seen,
        ..Reconciled::default()
    };
    let mut distinct = 0u64;
    for (task, set) in delivered {
        distinct += set.len();
        if !producers.contains_key(task) {
            out.from_unknown_producers += set.len();
        }
    }
    out.duplicates = seen.saturating_sub(distinct);
    for (task, p) in producers {
        let empty = RoaringTreemap::new();
        let set = delivered.get(task).unwrap_or(&empty);
        let mut attempted = RoaringTreemap::new();
        if p.attempted > 0 {
            attempted.insert_range(0..p.attempted);
        }
        let not_acked = &p.not_acknowledged & &attempted;
        let failed = p.attempted.saturating_sub(p.acknowledged);
        out.unidentified_failures += failed.saturating_sub(not_acked.len());
        let seen_attempted = set & &attempted;
        let unack_seen = (&seen_attempted & &not_acked).len();
        out.unacknowledged_seen += unack_seen;
        // Seen numbers beyond what the task attempted cannot come from it: counted as unknown.
        out.from_unknown_producers += set.len() - seen_attempted.len();
        let unique = (seen_attempted.len() - unack_seen).min(p.acknowledged);
        out.unique += unique;
        out.lost += p.acknowledged - unique;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trace::{EndToEnd, TraceWriter};

    fn set(values: impl IntoIterator<Item = u64>) -> RoaringTreemap {
        values.into_iter().collect()
    }

    #[test]
    fn sets_round_trip_and_runs_stay_small() {
        let s = set(0..1_000_000);
        let text = encode_set(&s);
        // 128 KiB of bitmap containers before deflate.
        assert!(text.len() < 2_000, "{} bytes", text.len());
        assert_eq!(decode_set(&text).unwrap(), s);
        assert!(decode_set("!!").is_err());
    }

    #[test]
    fn the_consumer_counts_seen_duplicates_foreign_and_latency() {
        let start_us = 1_700_000_000_000_000;
        let mut r = ConsumerRecorder::new(TraceFinder::new(&EndToEnd::default()), start_us);
        let mut w = TraceWriter::new("fleetload_trace", "p1");
        let mut events = Vec::new();
        for i in 0..5u64 {
            let mut v = b"{\"a\":1}".to_vec();
            w.append(&mut v, start_us + i * 1_000_000);
            events.push(v);
        }
        for (i, e) in events.iter().enumerate() {
            r.record(e, start_us + i as u64 * 1_000_000 + 2_000);
        }
        r.record(&events[3], start_us + 3_000_000 + 9_000);
        r.record(b"{\"other\":true}", start_us);
        // A trace from long before the start belongs to an earlier run.
        r.record(br#"{"fleetload_trace":"p1:0:1600000000000000"}"#, start_us);
        let m = r.finish();
        assert_eq!((m.seen, m.duplicates, m.foreign), (6, 1, 2));
        assert_eq!(m.delivered["p1"], set(0..5));
        assert_eq!(m.latency.len(), 6);
        assert!(m.latency.min() >= 2_000 && m.latency.max() < 9_100);
        assert_eq!(
            m.per_second
                .iter()
                .map(|(s, h)| (*s, h.len()))
                .collect::<Vec<_>>(),
            [(0, 1), (1, 1), (2, 1), (3, 2), (4, 1)]
        );
    }

    #[test]
    fn reconcile_counts_lost_duplicates_and_unacknowledged_seen() {
        let producers = BTreeMap::from([(
            "p".to_string(),
            ProducerDelivery {
                attempted: 10,
                acknowledged: 8,
                not_acknowledged: set([3, 4]),
            },
        )]);
        // Seen: 0..=5 except 2 (lost), 3 seen although failed, 5 twice; 7, 8, 9 never.
        let delivered = BTreeMap::from([("p".to_string(), set([0, 1, 3, 5, 6]))]);
        let r = reconcile(6, &delivered, &producers);
        assert_eq!(
            r,
            Reconciled {
                seen: 6,
                unique: 4,
                lost: 4,
                duplicates: 1,
                unacknowledged_seen: 1,
                from_unknown_producers: 0,
                unidentified_failures: 0,
            }
        );
        assert_eq!(r.unique + r.lost, 8);
        // An unknown producer's events are neither unique nor lost.
        let more = BTreeMap::from([
            ("p".to_string(), set([0, 1, 3, 5, 6])),
            ("q".to_string(), set([0, 1])),
        ]);
        let r = reconcile(8, &more, &producers);
        assert_eq!((r.unique, r.lost, r.from_unknown_producers), (4, 4, 2));
    }

    proptest::proptest! {
        /// Events spread over consumers, some read twice (by one consumer or by two), some
        /// never: the OR of the consumers' encoded sets reconciles to exactly the brute-force
        /// count, whatever the split.
        #[test]
        fn the_or_merge_of_consumer_sets_is_exact(
            reads in proptest::collection::vec((0u64..300, 0usize..3), 0..600),
            failed in proptest::collection::btree_set(0u64..300, 0..20),
        ) {
            let start_us = 1_700_000_000_000_000;
            let mut consumers: Vec<ConsumerRecorder> = (0..3)
                .map(|_| ConsumerRecorder::new(TraceFinder::new(&EndToEnd::default()), start_us))
                .collect();
            for (seq, c) in &reads {
                let record = format!("{{\"fleetload_trace\":\"p:{seq}:{start_us}\"}}");
                consumers[*c].record(record.as_bytes(), start_us + 5);
            }
            let mut seen = 0;
            let mut delivered: BTreeMap<String, RoaringTreemap> = BTreeMap::new();
            for c in consumers {
                let m = c.finish();
                seen += m.seen;
                for (task, set) in &m.delivered {
                    *delivered.entry(task.clone()).or_default() |= decode_set(&encode_set(set)).unwrap();
                }
            }
            let producers = BTreeMap::from([(
                "p".to_string(),
                ProducerDelivery {
                    attempted: 300,
                    acknowledged: 300 - failed.len() as u64,
                    not_acknowledged: failed.iter().copied().collect(),
                },
            )]);
            let r = reconcile(seen, &delivered, &producers);
            let distinct: std::collections::BTreeSet<u64> = reads.iter().map(|(s, _)| *s).collect();
            proptest::prop_assert_eq!(r.seen, reads.len() as u64);
            proptest::prop_assert_eq!(r.duplicates, (reads.len() - distinct.len()) as u64);
            let unack_seen = distinct.intersection(&failed).count() as u64;
            proptest::prop_assert_eq!(r.unacknowledged_seen, unack_seen);
            proptest::prop_assert_eq!(r.unique, distinct.len() as u64 - unack_seen);
            proptest::prop_assert_eq!(r.unique + r.lost, 300 - failed.len() as u64);
        }
    }
}
