//! Live measurement of a task: latency histograms, counts by error code and the per-second rows.
//!
//! Times are nanoseconds from the task's origin (the instant its schedule started). Seconds in
//! the time series are counted from the run's *planned* start, so a task that started late has
//! its rows shifted by its lateness and the rows of every task of a run line up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use crate::model::live::{WindowTally, Windows};
use crate::model::profile::LoadProfile;
use crate::model::report::{
    new_histogram, Counts, HlogSpool, HlogWriter, KinesisCounts, SecondRow, ShardCounts, SpooledLog,
};

/// Code of events sent and still unanswered when the task stopped waiting for them.
pub const UNACKNOWLEDGED: &str = "Unacknowledged";
/// Code of events that were waiting to be sent again (in a retry's backoff) when the task
/// stopped waiting: given up at shutdown, distinct from sent-and-unanswered.
pub const RETRY_ABANDONED: &str = "RetryAbandoned";
/// Code of events whose send task panicked: their outcome is unknown.
pub const SEND_PANICKED: &str = "SendPanicked";

#[derive(Debug, Default, Clone, Copy)]
struct RowCounts {
    attempted: u64,
    unsent: u64,
    acknowledged: u64,
    failed: u64,
    bytes: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Everything measured, as of [`Recorder::finish`].
#[derive(Debug)]
pub struct Measurements {
    /// Counts by outcome and error code.
    pub counts: Counts,
    /// Bytes acknowledged.
    pub bytes: u64,
    /// Latency from the intended send time, µs.
    pub latency: Histogram<u64>,
    /// Service time from the actual send, µs.
    pub service: Histogram<u64>,
    /// One row per second from the planned start, with the rate the profile planned in it.
    pub rows: Vec<SecondRow>,
    /// The per-second latency histograms as the finished `histograms.hlog` (in a temporary file
    /// once it is large), or why it could not be written.
    pub hlog: std::io::Result<SpooledLog>,
    /// Error codes over time: code → `(second, events)`.
    pub errors_timeline: BTreeMap<String, Vec<(u64, u64)>>,
    /// How production kept up with its schedule.
    pub pace: Pace,
    /// Kinesis: what each shard answered, by shard id.
    pub by_shard: BTreeMap<String, ShardCounts>,
    /// Kinesis: the Kinesis records and PutRecords calls that carried the events.
    pub kinesis: Option<KinesisCounts>,
    /// Sequence numbers of the events known to have failed (see [`Recorder::failed_seqs`]).
    pub not_acknowledged: roaring::RoaringTreemap,
}

/// Records outcomes as they arrive. Cheap to share: see [`SharedRecorder`].
pub struct Recorder {
    origin: Instant,
    late_ns: u64,
    counts: Counts,
    bytes: u64,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    rows: Vec<RowCounts>,
    open_second: u64,
    open: Histogram<u64>,
    /// Closed seconds, written into the interval log as they close, encoded (V2 deflate, in
    /// stored blocks, see `HlogWriter::for_task`): a histogram is ~180 KB in memory, and a
    /// one-hour run has 3,600 seconds. They are never decoded again, and past
    /// [`HLOG_IN_MEMORY`] bytes the log goes to a temporary file, so a run's memory does not
    /// grow with its length.
    hlog: HlogSpool,
    /// The first error writing the log's temporary file (a full disk).
    hlog_error: Option<std::io::Error>,
    errors: BTreeMap<String, BTreeMap<u64, u64>>,
    /// The load profile, for the target rate of each row.
    profile: Option<LoadProfile>,
    /// Events attempted, not yet answered, now sleeping in a retry's backoff.
    waiting_retry: u64,
    /// How production kept up with its schedule.
    pace: Pace,
    /// Kinesis: what each shard answered.
    by_shard: BTreeMap<String, ShardCounts>,
    /// Kinesis: the Kinesis records and PutRecords calls that carried the events.
    kinesis: Option<KinesisCounts>,
    /// Sequence numbers of failed events, as far as the sinks could name them: with the
    /// attempted range `0..attempted` this tells a consumer's `lost` from `unacknowledged_seen`.
    not_acknowledged: roaring::RoaringTreemap,
    /// Finds the trace in a failed event's payload (sinks that hand the payload back with a
    /// failure, as librdkafka's delivery report does); `None` when events carry no trace.
    trace_finder: Option<crate::model::trace::TraceFinder>,
    /// Live windows, when the task publishes them (see [`Recorder::live_windows`]).
    live: Option<LiveTallies>,
    /// Production has ended: what was planned is now `attempted + unsent`.
    production_ended: bool,
    finished: bool,
}

/// The live windows of a producer task and what was already taken of them.
///
/// Acknowledgements and bytes are not tallied per window: they are read from the per-second
/// rows when a window is taken (an acknowledgement is never recorded in a second before the
/// open one, so a taken window's rows do not change), which keeps the hot path as it is. The
/// rest (attempts per burst, failures, retries, unsent) is tallied per window as it comes.
#[derive(Debug)]
struct LiveTallies {
    windows: Windows<WindowTally>,
    /// Count acknowledgements by the window of their intended time (events carry a trace).
    by_intended: bool,
    /// Acknowledgements counted by intended window but not yet added to their window's tally:
    /// most fall in the same pair of windows as the one before, so they are counted with two
    /// comparisons and no division or map lookup.
    pending: PendingIntended,
    /// What the windows taken so far planned, and attempted or gave up, in all.
    planned: u64,
    done: u64,
}

/// A run of acknowledgements in one window (its seconds `[from_s, to_s)`) whose events were
/// intended in one window (`[from_ns, to_ns)` of the task's clock): `count` of them.
#[derive(Debug, Default, Clone, Copy)]
struct PendingIntended {
    from_s: u64,
    to_s: u64,
    intended_window: u64,
    from_ns: u64,
    to_ns: u64,
    count: u64,
}

impl LiveTallies {
    /// Adds the pending acknowledgements to their window's tally.
    fn flush_intended(&mut self) {
        let p = std::mem::take(&mut self.pending);
        if p.count > 0 {
            *self
                .windows
                .at(p.from_s)
                .acknowledged_by_intended
                .entry(p.intended_window)
                .or_default() += p.count;
        }
    }
}

/// A live window taken from the recorder, ready to be written.
#[derive(Debug)]
pub struct TakenWindow {
    /// The window's number (seconds `[window × interval, (window + 1) × interval)`).
    pub window: u64,
    /// What it holds; `counts.planned` is what the schedule called for in it.
    pub tally: WindowTally,
    /// Events due by its end and neither handed over nor given up then.
    pub behind: u64,
    /// Whether it is the task's last window.
    pub last: bool,
}

/// How the producing loop kept up with its schedule.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pace {
    /// Nanoseconds the loop waited on the target to take an event.
    pub blocked_on_target_ns: u64,
    /// Nanoseconds the loop spent behind its schedule by more than the threshold.
    pub behind_schedule_ns: u64,
    /// The first second (from the planned start) in which it was behind, or left events unsent.
    pub behind_from_second: Option<u64>,
}

/// Bytes of a task's interval log kept in memory before it goes to a temporary file: a few
/// minutes of a run (about 3.5 at 100,000 events/s on the null target).
pub const HLOG_IN_MEMORY: usize = 1 << 20;

/// A task's interval log from `planned_start`.
fn task_hlog(planned_start: DateTime<Utc>) -> HlogSpool {
    HlogSpool::new(
        HlogWriter::for_task(planned_start),
        HLOG_IN_MEMORY,
        "fleetload-task-",
    )
}

impl Recorder {
    /// A recorder whose clock starts at `origin`, `late_ns` after the run's planned start.
    pub fn new(origin: Instant, late_ns: u64) -> Self {
        Recorder {
            origin,
            late_ns,
            counts: Counts::default(),
            bytes: 0,
            latency: new_histogram(),
            service: new_histogram(),
            rows: Vec::new(),
            open_second: 0,
            open: new_histogram(),
            hlog: task_hlog(DateTime::<Utc>::UNIX_EPOCH),
            hlog_error: None,
            errors: BTreeMap::new(),
            profile: None,
            waiting_retry: 0,
            pace: Pace::default(),
            by_shard: BTreeMap::new(),
            kinesis: None,
            not_acknowledged: roaring::RoaringTreemap::new(),
            trace_finder: None,
            live: None,
            production_ended: false,
            finished: false,
        }
    }

    /// Keeps live windows of `interval_s` seconds from now on (call before production starts):
    /// every count and latency also goes into the window of its second, to be taken with
    /// [`Recorder::take_live_windows`]. With `by_intended` (events carry a trace),
    /// acknowledgements are also counted by the window of their intended send time.
    pub fn live_windows(&mut self, interval_s: u64, by_intended: bool) {
        self.live = Some(LiveTallies {
            windows: Windows::new(interval_s),
            by_intended,
            pending: PendingIntended::default(),
            planned: 0,
            done: 0,
        });
    }

    /// Production has ended: from now on what was planned is what was attempted or counted
    /// unsent (called once the producing loop returns).
    pub fn production_ended(&mut self) {
        self.production_ended = true;
    }

    /// The events planned from the start until `until_ns` (task clock): the schedule's count
    /// while production runs, exactly `attempted + unsent` once it has ended. Unpaced, 0: a
    /// window's planned is then what it attempted (`take_window` never plans less than was done).
    fn planned_until(&self, until_ns: u64) -> u64 {
        match &self.profile {
            _ if self.production_ended || self.finished => {
                self.counts.attempted + self.counts.unsent
            }
            Some(p) if !p.is_unpaced() => {
                p.events_before(Duration::from_nanos(until_ns).as_secs_f64())
            }
            _ => 0,
        }
    }

    /// Takes the floor window with `planned_cum` events planned from the start to its end;
    /// the last window takes every second from its first on.
    fn take_window(&mut self, planned_cum: u64, last: bool) -> Option<TakenWindow> {
        let live = self.live.as_mut()?;
        live.flush_intended();
        let (window, mut tally) = live.windows.take();
        let interval = live.windows.interval_s() as usize;
        let from = (window as usize * interval).min(self.rows.len());
        let to = if last {
            self.rows.len()
        } else {
            (from + interval).min(self.rows.len())
        };
        for row in &self.rows[from..to] {
            tally.counts.acknowledged += row.acknowledged;
            tally.bytes += row.bytes;
        }
        let done = live.done + tally.counts.attempted + tally.counts.unsent;
        // Never less than what was handed over or given up, and never decreasing.
        let planned = planned_cum.max(done).max(live.planned);
        tally.counts.planned = planned - live.planned;
        live.planned = planned;
        live.done = done;
        Some(TakenWindow {
            window,
            tally,
            behind: planned - done,
            last,
        })
    }

    /// The live windows that ended by `now_ns` (task clock), in order: each window's seconds
    /// are closed first (their histograms added into it, as into the interval log), and what
    /// comes later for a taken window counts in the next one. Empty when live windows are off.
    pub fn take_live_windows(&mut self, now_ns: u64) -> Vec<TakenWindow> {
        let mut taken = Vec::new();
        let now_s = self.second_of(now_ns);
        while let Some(live) = &self.live {
            let interval = live.windows.interval_s();
            let window = live.windows.floor();
            let end_s = (window + 1) * interval;
            if end_s > now_s {
                break;
            }
            if self.open_second < end_s {
                self.close_open_second();
                self.open_second = end_s;
            }
            let end_ns = (end_s * 1_000_000_000).saturating_sub(self.late_ns);
            let planned = self.planned_until(end_ns);
            taken.extend(self.take_window(planned, false));
        }
        taken
    }

    /// After [`Recorder::finish`]: every window not taken yet, up to the one holding `end_ns`
    /// (task clock), the last of them marked final; together with those taken before they
    /// add up to the final counts. Empty when live windows are off.
    pub fn take_final_windows(&mut self, end_ns: u64) -> Vec<TakenWindow> {
        let Some(live) = &self.live else {
            return Vec::new();
        };
        let interval = live.windows.interval_s();
        let last = live
            .windows
            .last_open()
            .max(live.windows.window_of(self.second_of(end_ns)));
        let final_planned = self.counts.attempted + self.counts.unsent;
        let mut taken = Vec::new();
        while let Some(live) = &self.live {
            let window = live.windows.floor();
            if window > last {
                break;
            }
            let planned = if window == last {
                final_planned
            } else {
                let end_s = (window + 1) * interval;
                let end_t =
                    Duration::from_nanos((end_s * 1_000_000_000).saturating_sub(self.late_ns));
                match &self.profile {
                    Some(p) if !p.is_unpaced() => {
                        p.events_before(end_t.as_secs_f64()).min(final_planned)
                    }
                    _ => 0,
                }
            };
            taken.extend(self.take_window(planned, window == last));
        }
        taken
    }

    /// Restarts the clock at `origin`, `late_ns` after the run's planned start `planned_start`,
    /// producing on `profile` (called when production begins, after the preflight and the wait
    /// for the start instant; nothing is recorded before).
    pub fn start_clock(
        &mut self,
        origin: Instant,
        late_ns: u64,
        planned_start: DateTime<Utc>,
        profile: &LoadProfile,
    ) {
        self.origin = origin;
        self.late_ns = late_ns;
        self.hlog = task_hlog(planned_start);
        self.profile = Some(profile.clone());
    }

    /// Nanoseconds from the origin to now.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The time-series second (from the planned start) of an instant `ns` after the origin.
    pub fn second_of(&self, ns: u64) -> u64 {
        (ns + self.late_ns) / 1_000_000_000
    }

    fn row(&mut self, second: u64) -> &mut RowCounts {
        let i = second as usize;
        if self.rows.len() <= i {
            self.rows.resize(i + 1, RowCounts::default());
        }
        &mut self.rows[i]
    }

    /// `n` events handed to the target at `at_ns`.
    pub fn attempted(&mut self, at_ns: u64, n: u64) {
        if self.finished {
            return;
        }
        self.counts.attempted += n;
        let s = self.second_of(at_ns);
        self.row(s).attempted += n;
        if let Some(live) = &mut self.live {
            live.windows.at(s).counts.attempted += n;
        }
    }

    /// `n` events the schedule intended at `intended_ns` that were never handed to the target.
    pub fn unsent(&mut self, intended_ns: u64, n: u64) {
        if self.finished || n == 0 {
            return;
        }
        self.counts.unsent += n;
        let s = self.second_of(intended_ns);
        self.row(s).unsent += n;
        self.behind_from(s);
        if let Some(live) = &mut self.live {
            live.windows.at(s).counts.unsent += n;
        }
    }

    /// The producing loop waited `ns` for the target to take an event.
    pub fn blocked_on_target(&mut self, ns: u64) {
        self.pace.blocked_on_target_ns += ns;
    }

    /// The producing loop was behind its schedule for `ns`, the first late event being
    /// intended at `intended_ns`.
    pub fn behind_schedule(&mut self, intended_ns: u64, ns: u64) {
        self.pace.behind_schedule_ns += ns;
        let s = self.second_of(intended_ns);
        self.behind_from(s);
    }

    fn behind_from(&mut self, second: u64) {
        let first = self.pace.behind_from_second.get_or_insert(second);
        *first = (*first).min(second);
    }

    /// `n` attempted events start waiting to be sent again.
    pub fn waiting_retry(&mut self, n: u64) {
        self.waiting_retry += n;
    }

    /// `n` events waiting to be sent again are sent (or given up) now.
    pub fn retry_resumed(&mut self, n: u64) {
        self.waiting_retry = self.waiting_retry.saturating_sub(n);
    }

    /// One event acknowledged at `at_ns`, intended at `intended_ns` and sent at `sent_ns`.
    pub fn acknowledged(&mut self, intended_ns: u64, sent_ns: u64, at_ns: u64, bytes: u64) {
        if self.finished {
            return;
        }
        let latency_us = (at_ns.saturating_sub(intended_ns) / 1000).max(1);
        let service_us = (at_ns.saturating_sub(sent_ns) / 1000).max(1);
        self.latency.saturating_record(latency_us);
        self.service.saturating_record(service_us);
        self.counts.acknowledged += 1;
        if self.production_ended {
            self.counts.acknowledged_in_drain += 1;
        }
        self.bytes += bytes;
        let mut s = self.second_of(at_ns);
        if s > self.open_second {
            self.close_open_second();
            self.open_second = s;
        } else {
            // An acknowledgement that raced a second boundary (its time read before another
            // thread's later one was recorded) lands in the open second, in the row as in the
            // histogram, so that a second's count is its histogram's.
            s = self.open_second;
        }
        self.open.saturating_record(latency_us);
        let row = self.row(s);
        row.acknowledged += 1;
        row.bytes += bytes;
        if let Some(live) = self.live.as_mut().filter(|l| l.by_intended) {
            let p = &live.pending;
            if s < p.from_s || s >= p.to_s || intended_ns < p.from_ns || intended_ns >= p.to_ns {
                live.flush_intended();
                let interval = live.windows.interval_s();
                let window = live.windows.window_of(s);
                let span = interval * 1_000_000_000;
                let intended_window = (intended_ns + self.late_ns) / span;
                live.pending = PendingIntended {
                    from_s: window * interval,
                    to_s: (window + 1) * interval,
                    intended_window,
                    from_ns: (intended_window * span).saturating_sub(self.late_ns),
                    to_ns: ((intended_window + 1) * span).saturating_sub(self.late_ns),
                    count: 0,
                };
            }
            live.pending.count += 1;
        }
    }

    fn close_open_second(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let s = self.open_second;
        let h = &self.open;
        let (p50, p99, max) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max());
        if let Err(e) = self.hlog.push(s, h) {
            self.hlog_error.get_or_insert(e);
        }
        if let Some(live) = &mut self.live {
            // The window's histogram is the sum of its seconds' (the interval log's) histograms.
            let _ = live.windows.at(s).latency.add(h);
        }
        let row = self.row(s);
        row.p50_ms = p50 as f64 / 1000.0;
        row.p99_ms = p99 as f64 / 1000.0;
        row.max_ms = max as f64 / 1000.0;
        self.open.reset();
    }

    /// `n` events finally failed with `code` at `at_ns`.
    pub fn failed(&mut self, code: &str, at_ns: u64, n: u64) {
        if self.finished || n == 0 {
            return;
        }
        self.counts.failed += n;
        *self
            .counts
            .failed_by_code
            .entry(code.to_string())
            .or_default() += n;
        let s = self.second_of(at_ns);
        self.row(s).failed += n;
        *self
            .errors
            .entry(code.to_string())
            .or_default()
            .entry(s)
            .or_default() += n;
        if let Some(live) = &mut self.live {
            let w = &mut live.windows.at(s).counts;
            w.failed += n;
            *w.failed_by_code.entry(code.to_string()).or_default() += n;
        }
    }

    /// Names failed events by their sequence numbers (called with [`Recorder::failed`] where
    /// the sink knows which events they were). Ignored once finished, like the counts.
    pub fn failed_seqs(&mut self, seqs: impl IntoIterator<Item = u64>) {
        if !self.finished {
            self.not_acknowledged.extend(seqs);
        }
    }

    /// Lets [`Recorder::failed_payload`] find the traces of failed events.
    pub fn trace_failures(&mut self, finder: crate::model::trace::TraceFinder) {
        self.trace_finder = Some(finder);
    }

    /// Names one failed event by the trace in its payload, when events carry one.
    pub fn failed_payload(&mut self, payload: &[u8]) {
        if let Some(seq) = self
            .trace_finder
            .as_ref()
            .and_then(|f| f.find(payload))
            .map(|t| t.seq)
        {
            self.failed_seqs([seq]);
        }
    }

    /// `n` events will be retried after `code` at `at_ns`.
    pub fn retried(&mut self, code: &str, at_ns: u64, n: u64) {
        if self.finished || n == 0 {
            return;
        }
        self.counts.retried += n;
        *self
            .counts
            .retried_by_code
            .entry(code.to_string())
            .or_default() += n;
        let s = self.second_of(at_ns);
        *self
            .errors
            .entry(code.to_string())
            .or_default()
            .entry(s)
            .or_default() += n;
        if let Some(live) = &mut self.live {
            let w = &mut live.windows.at(s).counts;
            w.retried += n;
            *w.retried_by_code.entry(code.to_string()).or_default() += n;
        }
    }

    /// The outcomes of one answer on shard `shard`: `acknowledged` events, and `failed` and
    /// `retried` ones by code. Only where the events go: the totals are counted by
    /// [`Recorder::acknowledged`], [`Recorder::failed`] and [`Recorder::retried`].
    pub fn on_shard(
        &mut self,
        shard: &str,
        acknowledged: u64,
        failed: &[(&str, u64)],
        retried: &[(&str, u64)],
    ) {
        if self.finished {
            return;
        }
        let c = match self.by_shard.get_mut(shard) {
            Some(c) => c,
            None => self.by_shard.entry(shard.to_string()).or_default(),
        };
        c.acknowledged += acknowledged;
        for &(code, n) in failed {
            *c.failed_by_code.entry(code.to_string()).or_default() += n;
        }
        for &(code, n) in retried {
            *c.retried_by_code.entry(code.to_string()).or_default() += n;
        }
    }

    /// The events go to Kinesis, packed into KPL aggregated records when `aggregated`: from now
    /// on the Kinesis records and PutRecords calls that carry them are counted.
    pub fn kinesis_records(&mut self, aggregated: bool) {
        self.kinesis = Some(KinesisCounts {
            aggregation: if aggregated { "on" } else { "off" }.to_string(),
            kinesis_records: 0,
            put_records_calls: 0,
        });
    }

    /// One PutRecords call answered (or failed), in which `acknowledged` Kinesis records got a
    /// sequence number.
    pub fn put_records_call(&mut self, acknowledged: u64) {
        if self.finished {
            return;
        }
        if let Some(k) = &mut self.kinesis {
            k.put_records_calls += 1;
            k.kinesis_records += acknowledged;
        }
    }

    /// Gives the time series a row for every second up to `end_ns` (the end of production), so
    /// seconds in which nothing happened show as zeros rather than missing.
    pub fn cover_until(&mut self, end_ns: u64) {
        if end_ns > 0 {
            let last = self.second_of(end_ns - 1);
            self.row(last);
        }
    }

    /// Events attempted but neither acknowledged nor failed yet.
    pub fn outstanding(&self) -> u64 {
        self.counts
            .attempted
            .saturating_sub(self.counts.acknowledged + self.counts.failed)
    }

    /// Counts so far (for progress lines).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// p99 latency so far in ms.
    pub fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }

    /// Stops recording: events still outstanding count as failed — `RetryAbandoned` those
    /// waiting to be sent again, `Unacknowledged` those sent and unanswered — and any outcome
    /// arriving later is ignored, so the report's counts always add up
    /// (`planned = attempted + unsent`, `attempted = acknowledged + failed`).
    pub fn finish(&mut self, end_ns: u64) -> Measurements {
        let outstanding = self.outstanding();
        let abandoned = self.waiting_retry.min(outstanding);
        self.failed(RETRY_ABANDONED, end_ns, abandoned);
        self.failed(UNACKNOWLEDGED, end_ns, outstanding - abandoned);
        self.waiting_retry = 0;
        self.counts.planned = self.counts.attempted + self.counts.unsent;
        self.close_open_second();
        self.finished = true;
        let late_s = self.late_ns as f64 / 1e9;
        let profile = self.profile.as_ref();
        let rows = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| SecondRow {
                second: i as u64,
                // The profile's clock starts at the task's actual start, `late_s` after the
                // planned start that the rows count from.
                target_rate: profile.map_or(0.0, |p| {
                    let from = i as f64 - late_s;
                    (p.events_between(from, from + 1.0) * 100.0).round() / 100.0
                }),
                attempted: r.attempted,
                acknowledged: r.acknowledged,
                failed: r.failed,
                bytes: r.bytes,
                p50_ms: r.p50_ms,
                p99_ms: r.p99_ms,
                max_ms: r.max_ms,
                unsent: r.unsent,
            })
            .collect();
        let hlog = std::mem::replace(&mut self.hlog, task_hlog(DateTime::<Utc>::UNIX_EPOCH));
        let hlog = match self.hlog_error.take() {
            Some(e) => Err(e),
            None => hlog.finish(),
        };
        Measurements {
            counts: self.counts.clone(),
            bytes: self.bytes,
            latency: self.latency.clone(),
            service: self.service.clone(),
            rows,
            hlog,
            errors_timeline: self
                .errors
                .iter()
                .map(|(k, m)| (k.clone(), m.iter().map(|(s, n)| (*s, *n)).collect()))
                .collect(),
            pace: self.pace,
            by_shard: self.by_shard.clone(),
            kinesis: self.kinesis.clone(),
            not_acknowledged: std::mem::take(&mut self.not_acknowledged),
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("counts", &self.counts)
            .field("open_second", &self.open_second)
            .finish_non_exhaustive()
    }
}

/// A recorder shared between the producing loop and the targets' completion paths.
#[derive(Debug, Clone)]
pub struct SharedRecorder(Arc<Mutex<Recorder>>);

impl SharedRecorder {
    /// Shares `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        SharedRecorder(Arc::new(Mutex::new(recorder)))
    }

    /// Locks it; a panic elsewhere never makes the measurements unreadable.
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::{Counts, THROTTLED_CODE as THROTTLE};

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_add_up_and_outstanding_become_unacknowledged() {
        let mut r = Recorder::new(Instant::now(), 0);
        r.attempted(0, 10);
        for i in 0..6 {
            r.acknowledged(i * 1000, i * 1000, i * 1000 + 2_000_000, 100);
        }
        r.retried("ProvisionedThroughputExceededException", S, 3);
        r.failed("ProvisionedThroughputExceededException", S + 5, 2);
        let m = r.finish(2 * S);
        assert_eq!(m.counts.attempted, 10);
        assert_eq!(m.counts.acknowledged, 6);
        assert_eq!(m.counts.failed, 4);
        assert_eq!(m.counts.failed_by_code[UNACKNOWLEDGED], 2);
        assert_eq!(
            m.counts.failed_by_code["ProvisionedThroughputExceededException"],
            2
        );
        assert_eq!(m.counts.retried, 3);
        assert_eq!(m.bytes, 600);
        assert_eq!(m.latency.len(), 6);
        assert_eq!(
            m.errors_timeline["ProvisionedThroughputExceededException"],
            vec![(1, 5)]
        );
        assert_eq!(m.counts.planned, 10);
        // Ignored after finish.
        r.acknowledged(0, 0, 1, 1);
        assert_eq!(r.counts().acknowledged, 6);
    }

    #[test]
    fn unsent_retry_abandoned_and_unacknowledged_are_distinct() {
        let mut r = Recorder::new(Instant::now(), 0);
        r.attempted(0, 10);
        r.acknowledged(0, 0, 1000, 1);
        r.retried("InternalFailure", 1000, 3);
        r.waiting_retry(3);
        r.unsent(S + 1, 5);
        r.unsent(2 * S + 1, 2);
        let m = r.finish(3 * S);
        assert_eq!(m.counts.planned, 17);
        assert_eq!(m.counts.unsent, 7);
        assert_eq!(m.counts.attempted, 10);
        assert_eq!(m.counts.failed_by_code[RETRY_ABANDONED], 3);
        assert_eq!(m.counts.failed_by_code[UNACKNOWLEDGED], 6);
        assert_eq!(m.rows[1].unsent, 5);
        assert_eq!(m.rows[2].unsent, 2);
        assert_eq!(m.pace.behind_from_second, Some(1));
    }

    #[test]
    fn rows_by_second_with_lateness() {
        // Started 1.5 s after the planned start: origin + 0.6 s is second 2 of the run.
        let mut r = Recorder::new(Instant::now(), 1_500_000_000);
        r.attempted(600_000_000, 4);
        r.acknowledged(600_000_000, 600_000_000, 610_000_000, 10);
        r.acknowledged(600_000_000, 600_000_000, 630_000_000, 10);
        r.acknowledged(600_000_000, 600_000_000, 1_600_000_000, 10);
        r.cover_until(1_700_000_000);
        let m = r.finish(1_700_000_000);
        assert_eq!(m.rows.len(), 4);
        assert_eq!(m.rows[2].attempted, 4);
        assert_eq!(m.rows[2].acknowledged, 2);
        assert_eq!(m.rows[3].acknowledged, 1);
        assert!((m.rows[2].max_ms - 30.0).abs() < 0.1, "{:?}", m.rows[2]);
        assert!((m.rows[3].p50_ms - 1000.0).abs() < 1.0, "{:?}", m.rows[3]);
        assert_eq!(
            crate::model::report::parse_hlog(&m.hlog.unwrap().read_all().unwrap())
                .unwrap()
                .iter()
                .map(|(s, h)| (*s, h.len()))
                .collect::<Vec<_>>(),
            vec![(2, 2), (3, 1)]
        );
        assert_eq!(m.counts.failed_by_code[UNACKNOWLEDGED], 1);
    }

    #[test]
    fn live_windows_add_up_to_the_final_counts_and_hold_their_seconds_histograms() {
        let profile = LoadProfile::parse_stages("10@10s").unwrap();
        let mut r = Recorder::new(Instant::now(), 0);
        r.start_clock(Instant::now(), 0, DateTime::<Utc>::UNIX_EPOCH, &profile);
        r.live_windows(3, true);
        let mut taken = Vec::new();
        for s in 0..10u64 {
            let at = s * S + 1;
            if s == 3 {
                // An answer timed in window 0 and recorded after it was taken: it counts in
                // the next window (and the open second's histogram), as late as it is.
                r.acknowledged(S, S, 2 * S, 7);
            }
            r.attempted(at, 10);
            // Second 1 leaves one event unanswered until second 3; second 4 has one failure.
            let answered = if s == 1 || s == 4 { 9 } else { 10 };
            for k in 0..answered {
                r.acknowledged(at, at, at + (s * 10 + k + 1) * 100_000, 7);
            }
            if s == 4 {
                r.retried("ProvisionedThroughputExceededException", at, 2);
                r.failed("InternalFailure", at, 1);
            }
            // The loop takes windows as they end (second 3, 6, 9).
            taken.extend(r.take_live_windows((s + 1) * S));
        }
        r.unsent(9 * S, 3);
        r.production_ended();
        let m = r.finish(11 * S);
        taken.extend(r.take_final_windows(11 * S));
        let windows: Vec<u64> = taken.iter().map(|t| t.window).collect();
        assert_eq!(windows, vec![0, 1, 2, 3]);
        assert!(taken.last().unwrap().last);
        assert!(taken[..3].iter().all(|t| !t.last));
        let mut sum = Counts::default();
        for t in &taken {
            sum.add(&t.tally.counts);
        }
        assert_eq!(sum, m.counts, "the windows add up to the final counts");
        assert_eq!(taken.iter().map(|t| t.tally.bytes).sum::<u64>(), m.bytes);
        // Window 1 holds seconds 3–5 of the interval log, and the late acknowledgement.
        let hlog = crate::model::report::parse_hlog(&m.hlog.unwrap().read_all().unwrap()).unwrap();
        let mut union = new_histogram();
        for (second, h) in &hlog {
            if (3..6).contains(second) {
                union.add(h).unwrap();
            }
        }
        assert_eq!(taken[1].tally.latency, union);
        assert_eq!(taken[1].tally.counts.acknowledged, 30);
        assert_eq!(taken[0].tally.counts.acknowledged, 29);
        assert_eq!(taken[1].tally.counts.retried_by_code[THROTTLE], 2);
        // Planned as the schedule called for it: 30 by the end of second 3, then per window.
        assert_eq!(taken[0].tally.counts.planned, 30);
        assert_eq!(taken[0].behind, 0);
        assert_eq!(taken[3].tally.counts.unsent, 3);
        // Events intended in window 0 and acknowledged then, or late in window 1.
        assert_eq!(taken[0].tally.acknowledged_by_intended[&0], 29);
        assert_eq!(taken[1].tally.acknowledged_by_intended[&0], 1);
    }

    #[test]
    fn a_window_taken_while_production_is_behind_says_how_far() {
        let profile = LoadProfile::parse_stages("100@10s").unwrap();
        let mut r = Recorder::new(Instant::now(), 0);
        r.start_clock(Instant::now(), 0, DateTime::<Utc>::UNIX_EPOCH, &profile);
        r.live_windows(2, false);
        r.attempted(1, 150);
        let taken = r.take_live_windows(2 * S);
        assert_eq!(taken.len(), 1);
        // 200 were due by the end of second 2; 150 handed over.
        assert_eq!(taken[0].tally.counts.planned, 200);
        assert_eq!(taken[0].behind, 50);
    }

    #[test]
    fn a_long_runs_interval_log_goes_to_a_temporary_file_holding_every_second() {
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut r = Recorder::new(Instant::now(), 0);
        // A small memory allowance stands in for HLOG_IN_MEMORY.
        r.hlog = HlogSpool::new(HlogWriter::for_task(start), 2_000, "fleetload-test-");
        let mut expected = Vec::new();
        for s in 0..40u64 {
            let at = s * S + 1;
            r.attempted(at, s + 1);
            for k in 0..=s {
                r.acknowledged(at, at, at + (k + 1) * 1_000_000, 10);
            }
            expected.push((s, s + 1));
        }
        let m = r.finish(40 * S);
        let log = m.hlog.unwrap();
        let SpooledLog::File(file) = &log else {
            panic!("the log should be in a temporary file by now: {log:?}")
        };
        let path = file.path().to_path_buf();
        let seconds = crate::model::report::parse_hlog(&log.read_all().unwrap()).unwrap();
        assert_eq!(
            seconds
                .iter()
                .map(|(s, h)| (*s, h.len()))
                .collect::<Vec<_>>(),
            expected
        );
        drop(log);
        assert!(!path.exists(), "the temporary file goes with the log");
    }
}
