//! A task's live windows (`FLEETLOAD_LIVE_INTERVAL`): taken from its recorder at the end of every
//! window and written to the report store by an uploader of their own.
//!
//! Production never waits on the store: a window is handed to the uploader through a bounded
//! queue and written there; a window that cannot be written (the store refused, timed out, or
//! the queue is full because it has not answered for minutes) is counted, logged, and the next
//! one goes on. At the end the final windows get a short, bounded wait before the report is
//! stored, and the report says how many windows were written and how many were not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::live::{ConsumerTally, ConsumerWindow, LiveWindow, LIVE_SCHEMA_VERSION};
use crate::model::measure::{SharedRecorder, TakenWindow};
use crate::model::report::{encode_histogram, LiveReport};
use crate::store::{live_window_key, ReportStore};

/// Windows waiting to be written beyond which a new one is dropped (and counted as not
/// written): at 10 s windows, ten minutes of a store that does not answer.
const MAX_QUEUED: usize = 60;
/// At the end, how long the final windows may take to be written before the report goes: the
/// report matters more, and a task stopped by ECS has a stop timeout to keep.
pub(crate) const FINAL_WINDOW_WAIT: Duration = Duration::from_secs(3);
/// After a window's end, how long before it is taken: acknowledgements timed just before the
/// boundary are recorded by then.
const TAKE_AFTER: Duration = Duration::from_millis(50);

/// What became of the windows so far.
#[derive(Debug, Default)]
struct Stats {
    /// Queued to be written.
    queued: u64,
    written: u64,
    /// Refused by the store (or timed out).
    refused: u64,
    /// Dropped because the queue was full.
    dropped: u64,
    last_error: Option<String>,
}

/// Writes one task's live windows to the report store, in order, off the producing path.
pub(crate) struct Publisher {
    tx: mpsc::Sender<LiveWindow>,
    uploader: JoinHandle<()>,
    stats: Arc<Mutex<Stats>>,
    run_id: String,
    task_id: String,
    role: &'static str,
    interval_s: u64,
}

impl Publisher {
    /// Starts the uploader of task `task_id`'s windows of `interval` (a whole number of seconds)
    /// in `role` (`produce` or `consume`).
    pub(crate) fn start(
        store: ReportStore,
        run_id: &str,
        task_id: &str,
        role: &'static str,
        interval: Duration,
    ) -> Publisher {
        let (tx, mut rx) = mpsc::channel::<LiveWindow>(MAX_QUEUED);
        let stats = Arc::new(Mutex::new(Stats::default()));
        let uploader = {
            let stats = stats.clone();
            tokio::spawn(async move {
                while let Some(window) = rx.recv().await {
                    let key = live_window_key(&window.run_id, window.window, &window.task_id);
                    let written = store.put(&key, window.to_json(), "application/json").await;
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    match written {
                        Ok(()) => s.written += 1,
                        Err(e) => {
                            s.refused += 1;
                            // Every failure is counted; the first and then every tenth is logged.
                            if s.refused == 1 || s.refused % 10 == 0 {
                                tracing::warn!(
                                    window = window.window,
                                    failed = s.refused,
                                    "a live window could not be written (production goes on): {e:#}"
                                );
                            }
                            s.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
            })
        };
        Publisher {
            tx,
            uploader,
            stats,
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            role,
            interval_s: interval.as_secs().max(1),
        }
    }

    fn failures(&self) -> u64 {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.refused + s.dropped
    }

    fn window(&self, window: u64, last: bool) -> LiveWindow {
        LiveWindow {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            task_id: self.task_id.clone(),
            role: self.role.to_string(),
            window,
            interval_s: self.interval_s,
            last,
            written_at: Utc::now(),
            counts: Default::default(),
            bytes: 0,
            behind: 0,
            latency: String::new(),
            acknowledged_by_intended: Default::default(),
            consumer: None,
            publish_failures: self.failures(),
        }
    }

    /// A producer's window, encoded.
    pub(crate) fn producer_window(&self, taken: TakenWindow) -> LiveWindow {
        let mut w = self.window(taken.window, taken.last);
        w.latency = encode_histogram(&taken.tally.latency);
        w.counts = taken.tally.counts;
        w.bytes = taken.tally.bytes;
        w.behind = taken.behind;
        w.acknowledged_by_intended = taken.tally.acknowledged_by_intended;
        w
    }

    /// A consumer's window, encoded.
    pub(crate) fn consumer_window(
        &self,
        window: u64,
        tally: ConsumerTally,
        last: bool,
    ) -> LiveWindow {
        let mut w = self.window(window, last);
        w.latency = encode_histogram(&crate::model::report::new_histogram());
        w.consumer = Some(ConsumerWindow {
            seen: tally.seen,
            duplicates: tally.duplicates,
            foreign: tally.foreign,
            latency: encode_histogram(&tally.latency),
            unique_by_intended: tally.unique_by_intended,
        });
        w
    }

    /// Queues a window to be written; never waits (callable from a blocking thread). A full
    /// queue drops it, counted as not written.
    pub(crate) fn send(&self, window: LiveWindow) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if self.tx.try_send(window).is_ok() {
            s.queued += 1;
        } else {
            s.dropped += 1;
            s.last_error = Some(format!(
                "{MAX_QUEUED} windows were waiting to be written: the store is not answering"
            ));
            tracing::warn!(
                dropped = s.dropped,
                "a live window was dropped: the store is not answering"
            );
        }
    }

    /// Lets the queued windows be written for at most `wait`, then says how it went.
    pub(crate) async fn finish(self, wait: Duration) -> LiveReport {
        let Publisher {
            tx,
            mut uploader,
            stats,
            interval_s,
            ..
        } = self;
        drop(tx);
        if tokio::time::timeout(wait, &mut uploader).await.is_err() {
            uploader.abort();
        }
        let s = stats.lock().unwrap_or_else(|p| p.into_inner());
        // Windows still queued when the wait ended were never written.
        let unwritten = s.queued.saturating_sub(s.written + s.refused);
        LiveReport {
            interval_s,
            windows: s.written,
            publish_failures: s.refused + s.dropped + unwritten,
            last_error: s.last_error.clone(),
            ..LiveReport::default()
        }
    }
}

/// Takes a producer's windows from `recorder` at the end of each and queues them, until
/// aborted. `origin` is the recorder's clock origin, `late_ns` how long after the planned
/// start it began. Taking and queueing happen with no await in between, so an abort lands only
/// in the wait and never loses a window taken.
pub(crate) async fn producer_windows(
    recorder: SharedRecorder,
    publisher: Arc<Publisher>,
    origin: Instant,
    late_ns: u64,
) {
    let interval_ns = publisher.interval_s * 1_000_000_000;
    let mut window = late_ns / interval_ns;
    loop {
        // Window `window` ends (k + 1) intervals after the planned start: in the task's clock,
        // `late_ns` earlier.
        let end_ns = ((window + 1) * interval_ns).saturating_sub(late_ns);
        let at = origin + Duration::from_nanos(end_ns) + TAKE_AFTER;
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        let taken = {
            let mut r = recorder.lock();
            let now = r.now_ns();
            r.take_live_windows(now)
        };
        if taken.is_empty() {
            window += 1;
        }
        for t in taken {
            window = window.max(t.window + 1);
            publisher.send(publisher.producer_window(t));
        }
    }
}
