//! The live view of a run: while the fleet runs, the launcher reads the tasks' live windows from
//! the report store, merges each window exactly across the fleet (counts summed by code,
//! histograms added, never averaged), shows it (a table under the progress bar on a terminal, a
//! line per window in a CI log), judges the thresholds that can be judged live
//! (`--abort-on-fail`), and sends the fleet's numbers to dashboards (`--metrics`).
//!
//! It must never stall or fail the run: it reads nothing from the tasks but the store, a window
//! that is not there in time names its task stale (and is folded into the totals when it comes),
//! a window it cannot read is named, and a metric it cannot send is retried and reported once.
//!
//! What it costs, per window shown: one listing of the window's prefix and one read per task
//! that wrote it (plus one listing of the window before when tasks were stale in it); after
//! the run one listing of the run's live prefix and a read per window not read yet.

mod abort;
mod fleet;
pub(crate) mod metrics;
mod read;
mod screen;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::launcher::gate::Threshold;
use crate::launcher::progress::LiveOutput;
use crate::model::live::{Aborted, FleetWindowRecord, LiveRecord, LiveWindow};
use crate::store::{live_view_key, ReportStore};

pub use abort::{AbortRule, DEFAULT_ABORT_AFTER, DEFAULT_ABORT_GRACE};
pub use metrics::{Labels, MetricsTarget};

use self::abort::AbortJudge;
use self::fleet::{FleetWindow, Totals};
use self::metrics::{Exporters, Snapshot};
use self::read::WindowReader;

/// After the run, how long the last metric sends may take.
const METRICS_FINAL_WAIT: Duration = Duration::from_secs(10);
/// After the run, how long the live view may take to read the last windows and send the last
/// metrics before the run goes on to its merge without them: a store that does not answer must
/// not hold the run.
const FINISH_WAIT: Duration = Duration::from_secs(15);
/// How long writing `live/view.json` may take.
const RECORD_WRITE_WAIT: Duration = Duration::from_secs(10);

/// How a run's live view is set up.
#[derive(Debug, Clone)]
pub(crate) struct LiveSettings {
    /// The windows' length (`FLEETLOAD_LIVE_INTERVAL`).
    pub(crate) interval: Duration,
    /// The producers' planned production time.
    pub(crate) production: Duration,
    /// Whether the producers follow a schedule (a target rate to show).
    pub(crate) paced: bool,
    /// With consumers: how long after an event's window it may still be read (their settle
    /// time): older events not seen by then count as lost so far.
    pub(crate) settle: Option<Duration>,
    /// The run's thresholds; those that can be judged live stop the run with `abort`.
    pub(crate) thresholds: Vec<Threshold>,
    /// `--abort-on-fail`: when a live threshold stops the run.
    pub(crate) abort: Option<AbortRule>,
    /// `--metrics` destinations.
    pub(crate) metrics: Vec<MetricsTarget>,
    /// The labels every metric carries.
    pub(crate) labels: Labels,
}

/// How long after a window's end it is read: the tasks write it at its end, and a store
/// answers within a second; at most half a window, so a window is shown before the next ends.
fn read_delay(interval: Duration) -> Duration {
    (interval / 5)
        .clamp(Duration::from_millis(500), Duration::from_secs(3))
        .min(interval / 2)
}

/// A running live view.
pub(crate) struct LiveWatch {
    task: JoinHandle<LiveRecord>,
    /// What the view has shown so far (the abort among it), kept outside the task: when the
    /// task cannot finish in time, this is what the run keeps.
    shown: Arc<Mutex<LiveRecord>>,
    end: watch::Sender<bool>,
    tasks: watch::Sender<Vec<String>>,
    aborted: watch::Receiver<Option<Aborted>>,
    store: ReportStore,
    run_id: String,
}

impl LiveWatch {
    /// Starts watching run `run_id`, whose windows count from `start_at`, showing on `output`.
    pub(crate) fn start(
        store: ReportStore,
        run_id: &str,
        start_at: DateTime<Utc>,
        settings: LiveSettings,
        output: LiveOutput,
    ) -> LiveWatch {
        let (end, end_rx) = watch::channel(false);
        let (tasks, tasks_rx) = watch::channel(Vec::new());
        let (abort_tx, aborted) = watch::channel(None);
        let shown = Arc::new(Mutex::new(LiveRecord {
            interval_s: settings.interval.as_secs().max(1),
            ..LiveRecord::default()
        }));
        let task = tokio::spawn(watch_run(
            store.clone(),
            run_id.to_string(),
            start_at,
            settings,
            output,
            Channels {
                end: end_rx,
                tasks: tasks_rx,
                abort: abort_tx,
                shown: shown.clone(),
            },
        ));
        LiveWatch {
            task,
            shown,
            end,
            tasks,
            aborted,
            store,
            run_id: run_id.to_string(),
        }
    }

    /// The tasks whose windows are expected (their ids, as their reports are named).
    pub(crate) fn expect(&self, ids: Vec<String>) {
        let _ = self.tasks.send(ids);
    }

    /// Tells of an abort: holds `Some` once a live threshold has stopped the run.
    pub(crate) fn aborts(&self) -> watch::Receiver<Option<Aborted>> {
        self.aborted.clone()
    }

    /// The fleet phase is over: reads what is left, sends the last metrics, writes the record
    /// (`live/view.json`) and returns it.
    /// Bounded by [`FINISH_WAIT`]: past it the run keeps what was shown (the abort included).
    pub(crate) async fn finish(mut self) -> LiveRecord {
        let _ = self.end.send(true);
        let record = match tokio::time::timeout(FINISH_WAIT, &mut self.task).await {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => {
                eprintln!("live view: ended unexpectedly ({e}); the run's report is not affected");
                self.shown.lock().unwrap_or_else(|p| p.into_inner()).clone()
            }
            Err(_) => {
                self.task.abort();
                eprintln!(
                    "live view: the last windows could not be read within {}s (the store is \
                     slow); the merge goes on without them",
                    FINISH_WAIT.as_secs()
                );
                self.shown.lock().unwrap_or_else(|p| p.into_inner()).clone()
            }
        };
        let key = live_view_key(&self.run_id);
        let write = self.store.put(&key, record.to_json(), "application/json");
        match tokio::time::timeout(RECORD_WRITE_WAIT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "live view: could not write {}: {e:#}",
                self.store.display_url(&key)
            ),
            Err(_) => eprintln!(
                "live view: {} was not written within {}s",
                self.store.display_url(&key),
                RECORD_WRITE_WAIT.as_secs()
            ),
        }
        record
    }
}

/// How the live view's task talks to the run.
struct Channels {
    /// Set when the fleet phase is over.
    end: watch::Receiver<bool>,
    /// The tasks expected.
    tasks: watch::Receiver<Vec<String>>,
    /// Where an abort is said.
    abort: watch::Sender<Option<Aborted>>,
    /// What was shown so far, for a view that cannot finish.
    shown: Arc<Mutex<LiveRecord>>,
}

/// What the live view knows as it goes.
struct View {
    settings: LiveSettings,
    start_at: DateTime<Utc>,
    interval_s: u64,
    output: LiveOutput,
    exporters: Exporters,
    totals: Totals,
    record: LiveRecord,
    /// Tasks whose final window was read: the window it was.
    ended: BTreeMap<String, u64>,
    shown: Arc<Mutex<LiveRecord>>,
}

impl View {
    /// Keeps `f` applied to the record in the copy the run keeps too.
    fn keep(&mut self, f: impl Fn(&mut LiveRecord)) {
        f(&mut self.record);
        f(&mut self.shown.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Counts a window read (in the totals, and its task as ended when it is its last).
    fn count(&mut self, w: &LiveWindow) {
        self.totals.add(w);
        if w.last {
            self.ended.insert(w.task_id.clone(), w.window);
        }
    }

    /// Shows window `fleet` (every task's window read so far) of the tasks `expecting`,
    /// sends it to the dashboards and keeps it; its record and stale tasks.
    fn show(&mut self, fleet: &FleetWindow, expecting: &[String]) -> Option<FleetWindowRecord> {
        let number = fleet.window;
        // Tasks that ended in an earlier window are no longer expected.
        let expected: Vec<&String> = expecting
            .iter()
            .filter(|id| self.ended.get(*id).map_or(true, |&last| last >= number))
            .collect();
        if expected.is_empty() && fleet.reporting.is_empty() {
            return None;
        }
        let stale: Vec<String> = expected
            .iter()
            .filter(|id| !fleet.reporting.contains(**id))
            .map(|id| id.to_string())
            .collect();
        let to_second = (number + 1) * self.interval_s;
        let lost = self.lost(&stale, to_second);
        let shown = fleet.record(
            self.settings.production,
            self.settings.paced,
            expected.len() as u64,
            stale,
            lost.map(|(n, _)| n),
        );
        self.output.show(
            &screen::table(&shown, self.settings.paced),
            &screen::line(&shown, self.settings.paced),
        );
        self.exporters.send(&Snapshot {
            at: self.start_at + chrono::Duration::seconds(to_second as i64),
            window: Some(shown.clone()),
            totals: self.totals.counts.clone(),
            bytes: self.totals.bytes,
        });
        self.keep(|r| r.windows.push(shown.clone()));
        Some(shown)
    }

    /// Lost so far at `to_second`, when the run has consumers and no task is stale.
    fn lost(&self, stale: &[String], to_second: u64) -> Option<(u64, u64)> {
        self.settings
            .settle
            .filter(|_| stale.is_empty())
            .map(|settle| self.totals.lost_so_far(self.interval_s, settle, to_second))
    }
}

async fn watch_run(
    store: ReportStore,
    run_id: String,
    start_at: DateTime<Utc>,
    settings: LiveSettings,
    output: LiveOutput,
    channels: Channels,
) -> LiveRecord {
    let Channels {
        mut end,
        tasks,
        abort: abort_tx,
        shown,
    } = channels;
    let interval_s = settings.interval.as_secs().max(1);
    let mut reader = WindowReader::new(store, &run_id);
    let mut judge = settings
        .abort
        .clone()
        .map(|rule| AbortJudge::new(rule, &settings.thresholds));
    let delay = read_delay(settings.interval);
    let mut view = View {
        exporters: Exporters::start(&settings.metrics, settings.labels.clone()).await,
        settings,
        start_at,
        interval_s,
        output,
        totals: Totals::default(),
        record: LiveRecord {
            interval_s,
            ..LiveRecord::default()
        },
        ended: BTreeMap::new(),
        shown,
    };
    let mut restale: Option<u64> = None;
    let mut window = 0u64;
    loop {
        let show_at = start_at
            + chrono::Duration::from_std(Duration::from_secs((window + 1) * interval_s) + delay)
                .unwrap_or_default();
        let wait = (show_at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = end.changed() => break,
        }
        // The window before, when tasks were stale in it: what came late counts in the totals.
        if let Some(before) = restale.take() {
            let (late, _) = reader.read_window(before).await;
            for w in &late {
                view.count(w);
            }
        }
        let (windows, problems) = reader.read_window(window).await;
        let mut fleet = FleetWindow::new(window, interval_s);
        for w in &windows {
            fleet.add(w);
            view.count(w);
        }
        for p in problems.iter().chain(&fleet.unreadable) {
            view.output
                .note(&format!("live view: a window could not be read: {p}"));
        }
        let expecting = tasks.borrow().clone();
        if let Some(shown) = view.show(&fleet, &expecting) {
            if let Some(j) = &mut judge {
                let lost = view.lost(&shown.stale, shown.to_second);
                let values = fleet.values(view.settings.production, lost);
                if let Some(a) = j.judge(window, shown.to_second, &values) {
                    view.output.note(&format!("{}: stopping the run", a.reason));
                    let _ = abort_tx.send(Some(a.clone()));
                    view.keep(|r| r.aborted = Some(a.clone()));
                    judge = None;
                }
            }
            if !shown.stale.is_empty() {
                restale = Some(window);
            }
        }
        window += 1;
    }
    // The fleet phase is over: the final windows, and any that came late. The windows not shown
    // yet (the last ones end after the tasks stopped) are shown now, in order.
    let (rest, problems) = reader.read_rest().await;
    for p in problems {
        view.output
            .note(&format!("live view: a window could not be read: {p}"));
    }
    let mut unshown: BTreeMap<u64, FleetWindow> = BTreeMap::new();
    for w in &rest {
        view.count(w);
        if w.window >= window {
            unshown
                .entry(w.window)
                .or_insert_with(|| FleetWindow::new(w.window, interval_s))
                .add(w);
        }
    }
    let expecting = tasks.borrow().clone();
    for fleet in unshown.values() {
        view.show(fleet, &expecting);
    }
    view.exporters.send(&Snapshot {
        at: Utc::now(),
        window: None,
        totals: view.totals.counts.clone(),
        bytes: view.totals.bytes,
    });
    let mut record = view.record;
    record.metric_failures = view.exporters.finish(METRICS_FINAL_WAIT).await;
    record.totals = view.totals.counts;
    record.requests = reader.lists + reader.gets;
    record
}
