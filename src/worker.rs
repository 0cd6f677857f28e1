//! One task of a run, from a validated scenario to a stored report.
//!
//! Preflight (report location writable, target present) → wait for the run's start instant →
//! produce on the schedule until the duration ends or a stop signal arrives → wait briefly for
//! in-flight acknowledgements → write the report. Every path out writes a report: a failed
//! preflight and an interrupted run too.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::pacing::Schedule;
use crate::payload::{splitmix64, Generator};
use crate::report::{
    encode_histogram, timeseries_csv, write_hlog, Counts, Histograms, Outcome, Percentiles,
    Summary, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::scenario::Scenario;
use crate::stats::{Measurements, Recorder, SharedRecorder};
use crate::store::{task_dir, ReportStore};
use crate::target::{Event, Sink, Target};

/// How long in-flight events may take to be acknowledged once production stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a progress line is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Beyond the planned end, how long a task may take to drain and store its report before the
/// hard deadline ends the process whatever the target is doing.
pub const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(180);
/// Events generated between two looks at the clock and the stop signal.
const BURST: u64 = 1024;

/// How the worker process ends; the code is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Produced for the whole duration and stored the report.
    Completed,
    /// The run failed after it started (the report says why).
    Failed,
    /// The scenario is invalid; nothing was sent.
    BadConfig,
    /// The target or the report location is not usable; nothing was sent.
    PreflightFailed,
    /// The report could not be stored; it was printed to stdout instead.
    ReportNotStored,
    /// Stopped by a signal; the report (outcome `interrupted`) was stored.
    Interrupted(&'static str),
}

impl WorkerExit {
    /// The process exit code: 0, 1, 2, 3, 4, or 128 + the signal number when interrupted.
    pub fn code(self) -> u8 {
        match self {
            WorkerExit::Completed => 0,
            WorkerExit::Failed => 1,
            WorkerExit::BadConfig => 2,
            WorkerExit::PreflightFailed => 3,
            WorkerExit::ReportNotStored => 4,
            WorkerExit::Interrupted("SIGINT") => 130,
            WorkerExit::Interrupted(_) => 143,
        }
    }
}

/// The exit code used when the hard deadline ends a task.
pub const HARD_DEADLINE_EXIT: u8 = 5;

/// A stop request: the name of the signal that asked for it.
pub type StopSignal = watch::Receiver<Option<&'static str>>;

/// What a finished task produced.
#[derive(Debug)]
pub struct TaskResult {
    /// How the process should exit.
    pub exit: WorkerExit,
    /// The report, as stored (or printed).
    pub summary: Summary,
    /// Where the summary was stored, if it was.
    pub stored_at: Option<String>,
}

/// This task's id: `FLEETLOAD_TASK_ID`, else the ECS task id from the task metadata endpoint,
/// else `hostname-pid`.
pub async fn resolve_task_id(scenario: &Scenario) -> String {
    if let Some(id) = &scenario.task_id {
        return id.clone();
    }
    if let Some(id) = ecs_task_id().await {
        return id;
    }
    let host = hostname();
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!(
        "{}-{}",
        if safe.is_empty() { "task" } else { &safe },
        std::process::id()
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The ECS task id from `$ECS_CONTAINER_METADATA_URI_V4/task` (`TaskARN`'s last segment).
async fn ecs_task_id() -> Option<String> {
    use http_body_util::BodyExt;
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("{}/task", base.trim_end_matches('/'))
        .parse()
        .ok()?;
    let fetch = async {
        let response = client.get(uri).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v.get("TaskARN")?
            .as_str()?
            .rsplit('/')
            .next()
            .map(str::to_string)
    };
    match tokio::time::timeout(Duration::from_secs(3), fetch).await {
        Ok(Some(id)) => Some(id),
        _ => {
            warn!("ECS_CONTAINER_METADATA_URI_V4 is set but the task id could not be read from it; using hostname-pid");
            None
        }
    }
}

struct ReportContext<'a> {
    scenario: &'a Scenario,
    task_id: &'a str,
    planned_start: DateTime<Utc>,
}

impl ReportContext<'_> {
    fn summary(
        &self,
        outcome: Outcome,
        actual_start: Option<DateTime<Utc>>,
        late_ns: u64,
        duration: Duration,
        m: Option<&Measurements>,
    ) -> Summary {
        let profile = &self.scenario.profile;
        let target_rate = profile
            .planned_events()
            .map(|n| n as f64 / profile.total_duration().as_secs_f64());
        let (counts, bytes, latency, service, histograms, errors) = match m {
            Some(m) => (
                m.counts.clone(),
                m.bytes,
                Percentiles::of(&m.latency),
                Percentiles::of(&m.service),
                Histograms {
                    unit: "microseconds".into(),
                    latency: encode_histogram(&m.latency),
                    service_time: encode_histogram(&m.service),
                },
                m.errors_timeline.clone(),
            ),
            None => {
                let empty = encode_histogram(&crate::report::new_histogram());
                (
                    Counts::default(),
                    0,
                    Percentiles::default(),
                    Percentiles::default(),
                    Histograms {
                        unit: "microseconds".into(),
                        latency: empty.clone(),
                        service_time: empty,
                    },
                    Default::default(),
                )
            }
        };
        let secs = duration.as_secs_f64();
        Summary {
            schema_version: SCHEMA_VERSION,
            run_id: self.scenario.run_id.clone(),
            task_id: self.task_id.to_string(),
            target: self.scenario.target.kind().to_string(),
            scenario: self.scenario.shown.clone(),
            fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
            planned_start: self.planned_start,
            actual_start,
            end: actual_start.map(|s| s + chrono::Duration::from_std(duration).unwrap_or_default()),
            late_start_ms: late_ns / 1_000_000,
            duration_s: (secs * 1000.0).round() / 1000.0,
            outcome,
            achieved_rate: if secs > 0.0 {
                (counts.acknowledged as f64 / secs * 100.0).round() / 100.0
            } else {
                0.0
            },
            counts,
            bytes,
            target_rate,
            latency_ms: latency,
            service_time_ms: service,
            histograms,
            errors_timeline: errors,
            merge: None,
        }
    }
}

/// Runs one task to the end and stores its report. Never panics on bad targets or stores: every
/// failure becomes the report's outcome and the returned exit.
pub async fn run(scenario: Scenario, mut stop: StopSignal) -> TaskResult {
    let task_id = resolve_task_id(&scenario).await;
    // Without FLEETLOAD_START_AT the task starts when its preflight is done; until then "now"
    // stands in for the planned start.
    let mut planned_start = scenario.start_at.unwrap_or_else(Utc::now);
    info!(
        run_id = %scenario.run_id,
        task_id = %task_id,
        target = scenario.target.kind(),
        scenario = ?scenario.shown,
        kafka = ?scenario.redacted_kafka(),
        "fleetload worker {}", env!("CARGO_PKG_VERSION")
    );
    let mut ctx = ReportContext {
        scenario: &scenario,
        task_id: &task_id,
        planned_start,
    };
    let dir = task_dir(&scenario.run_id, &task_id);

    // Preflight 1: the report location. A report nobody can read makes the run worthless.
    let store = match ReportStore::open(&scenario.report_url).await {
        Ok(store) => store,
        Err(e) => {
            return not_stored(
                ctx.summary(
                    failed(format!(
                        "report location {} is not usable: {e:#}",
                        scenario.report_url
                    )),
                    None,
                    0,
                    Duration::ZERO,
                    None,
                ),
                WorkerExit::PreflightFailed,
            )
        }
    };
    let marker = serde_json::json!({"run_id": scenario.run_id, "task_id": task_id, "planned_start": planned_start, "preflight_at": Utc::now()});
    if let Err(e) = store
        .put(
            &format!("{dir}/started.json"),
            serde_json::to_vec_pretty(&marker).unwrap_or_default(),
            "application/json",
        )
        .await
    {
        let reason = format!(
            "report location {} is not writable: {e:#}",
            store.display_url(&dir)
        );
        return not_stored(
            ctx.summary(failed(reason), None, 0, Duration::ZERO, None),
            WorkerExit::PreflightFailed,
        );
    }

    // Preflight 2: the target.
    let recorder = SharedRecorder::new(Recorder::new(Instant::now(), 0));
    let mut target = match Target::connect(&scenario, &task_id, recorder.clone()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("preflight failed: {e}");
            let summary = ctx.summary(
                failed(format!("preflight: {e}")),
                None,
                0,
                Duration::ZERO,
                None,
            );
            return store_report(&store, &dir, summary, None, WorkerExit::PreflightFailed).await;
        }
    };

    // Wait for the run's start instant, unless a signal comes first.
    let wait = (planned_start - Utc::now()).to_std().unwrap_or_default();
    if !wait.is_zero() {
        info!(start_at = %planned_start.to_rfc3339(), "waiting {:.1}s for the run's start", wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            signal = wait_for_stop(&mut stop) => {
                let summary = ctx.summary(Outcome::Interrupted { signal: signal.to_string() }, None, 0, Duration::ZERO, None);
                return store_report(&store, &dir, summary, None, WorkerExit::Interrupted(signal)).await;
            }
        }
    }
    let actual_start = Utc::now();
    if scenario.start_at.is_none() {
        planned_start = actual_start;
        ctx.planned_start = actual_start;
    }
    let late_ns = (actual_start - planned_start)
        .num_nanoseconds()
        .unwrap_or(0)
        .max(0) as u64;
    if late_ns >= 1_000_000_000 {
        warn!(
            late_ms = late_ns / 1_000_000,
            "the run's start instant had passed; starting now"
        );
    }
    let origin = Instant::now();
    recorder.lock().start_clock(origin, late_ns);

    let progress = tokio::spawn(progress_lines(recorder.clone()));
    let key_namespace = if scenario.seed_given {
        splitmix64(scenario.seed)
    } else {
        splitmix64(fnv(&scenario.run_id))
    };
    let mut generator = Generator::new(
        &scenario.payload,
        scenario.keys,
        scenario.seed,
        key_namespace,
    );
    let epoch_origin_ms = actual_start.timestamp_millis() as u64;
    let outcome = produce(
        &mut target,
        Schedule::new(scenario.profile.clone()),
        &mut generator,
        &recorder,
        origin,
        epoch_origin_ms,
        &mut stop,
    )
    .await;
    let produced_for = origin.elapsed().min(scenario.profile.total_duration());
    recorder.lock().cover_until(produced_for.as_nanos() as u64);
    info!(
        outcome = outcome.status(),
        "production stopped after {:.1}s; waiting up to {}s for acknowledgements",
        produced_for.as_secs_f64(),
        DRAIN_TIMEOUT.as_secs()
    );
    tokio::select! {
        _ = target.drain(Instant::now() + DRAIN_TIMEOUT) => {}
        // A second signal cuts the wait short: what is unanswered counts as unacknowledged.
        _ = signalled(&mut stop) => {}
    }
    progress.abort();
    let measurements = {
        let mut r = recorder.lock();
        let end = r.now_ns();
        r.finish(end)
    };
    drop(target);
    let summary = ctx.summary(
        outcome.clone(),
        Some(actual_start),
        late_ns,
        produced_for,
        Some(&measurements),
    );
    info!(
        outcome = summary.outcome.status(),
        attempted = summary.counts.attempted,
        acknowledged = summary.counts.acknowledged,
        failed = summary.counts.failed,
        failed_by_code = ?summary.counts.failed_by_code,
        retried = summary.counts.retried,
        achieved_rate = summary.achieved_rate,
        p50_ms = summary.latency_ms.p50,
        p99_ms = summary.latency_ms.p99,
        max_ms = summary.latency_ms.max,
        "summary"
    );
    let exit = match &outcome {
        Outcome::Completed => WorkerExit::Completed,
        Outcome::Interrupted { signal } => WorkerExit::Interrupted(if signal == "SIGINT" {
            "SIGINT"
        } else {
            "SIGTERM"
        }),
        Outcome::Failed { .. } => WorkerExit::Failed,
    };
    let files = TaskFiles {
        measurements,
        late_ns,
    };
    store_report(&store, &dir, summary, Some((&scenario, files)), exit).await
}

struct TaskFiles {
    measurements: Measurements,
    late_ns: u64,
}

fn failed(reason: String) -> Outcome {
    Outcome::Failed { reason }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

async fn wait_for_stop(stop: &mut StopSignal) -> &'static str {
    loop {
        if let Some(signal) = *stop.borrow_and_update() {
            return signal;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: no signal can come any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Prints the summary on stdout (the container's log) when it cannot be stored.
fn not_stored(summary: Summary, exit: WorkerExit) -> TaskResult {
    if let Outcome::Failed { reason } = &summary.outcome {
        tracing::error!("{reason}");
    }
    println!("{}", String::from_utf8_lossy(&summary.to_json()));
    TaskResult {
        exit,
        summary,
        stored_at: None,
    }
}

async fn store_report(
    store: &ReportStore,
    dir: &str,
    summary: Summary,
    files: Option<(&Scenario, TaskFiles)>,
    exit: WorkerExit,
) -> TaskResult {
    let result: anyhow::Result<()> = async {
        if let Some((scenario, files)) = files {
            let mut rows = files.measurements.rows;
            let late = files.late_ns as f64 / 1e9;
            for row in &mut rows {
                let from = row.second as f64 - late;
                row.target_rate =
                    (scenario.profile.events_between(from, from + 1.0) * 100.0).round() / 100.0;
            }
            store
                .put(
                    &format!("{dir}/{TIMESERIES_FILE}"),
                    timeseries_csv(&rows),
                    "text/csv",
                )
                .await?;
            store
                .put(
                    &format!("{dir}/{HLOG_FILE}"),
                    write_hlog(summary.planned_start, &files.measurements.per_second),
                    "text/plain",
                )
                .await?;
        }
        // The summary goes last: its presence means the task's report is complete.
        store
            .put(
                &format!("{dir}/{SUMMARY_FILE}"),
                summary.to_json(),
                "application/json",
            )
            .await
    }
    .await;
    match result {
        Ok(()) => {
            let at = store.display_url(&format!("{dir}/{SUMMARY_FILE}"));
            info!(report = %at, "report stored");
            TaskResult {
                exit,
                summary,
                stored_at: Some(at),
            }
        }
        Err(e) => {
            tracing::error!(
                "the report could not be stored at {}: {e:#}; printing the summary on stdout",
                store.display_url(dir)
            );
            not_stored(summary, WorkerExit::ReportNotStored)
        }
    }
}

async fn progress_lines(recorder: SharedRecorder) {
    let mut last = 0u64;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (ack, failed, retried, p99) = {
            let r = recorder.lock();
            (
                r.counts().acknowledged,
                r.counts().failed,
                r.counts().retried,
                r.p99_ms(),
            )
        };
        info!(
            rate = ((ack - last) as f64 / PROGRESS_EVERY.as_secs_f64()).round(),
            acknowledged = ack,
            failed,
            retried,
            p99_ms = p99,
            "progress"
        );
        last = ack;
    }
}

/// The producing loop: hands every due event to the target until the schedule ends or a stop
/// signal arrives. Open loop: event `n` is due at its scheduled instant whatever happened to
/// event `n - 1`; if sending falls behind, later events carry their original intended times.
pub async fn produce<S: Sink>(
    target: &mut S,
    mut schedule: Schedule,
    generator: &mut Generator,
    recorder: &SharedRecorder,
    origin: Instant,
    epoch_origin_ms: u64,
    stop: &mut StopSignal,
) -> Outcome {
    let end = origin + schedule.duration();
    let (mut key, mut value) = (Vec::with_capacity(64), Vec::with_capacity(256));
    loop {
        if let Some(signal) = *stop.borrow() {
            target.flush().await;
            return Outcome::Interrupted {
                signal: signal.to_string(),
            };
        }
        let now = Instant::now();
        let now_ns = (now - origin).as_nanos() as u64;
        let timestamp_ms = epoch_origin_ms + now_ns / 1_000_000;
        let mut burst = 0u64;
        if schedule.is_unpaced() {
            if now >= end {
                target.flush().await;
                return Outcome::Completed;
            }
            while burst < BURST {
                generator.next_event(timestamp_ms, &mut key, &mut value);
                schedule.take_unpaced();
                target
                    .send(Event {
                        intended_ns: now_ns,
                        sent_ns: now_ns,
                        key: &key,
                        value: &value,
                    })
                    .await;
                burst += 1;
            }
            recorder.lock().attempted(now_ns, burst);
            tokio::task::yield_now().await;
            continue;
        }
        // Every event whose intended time has come, up to a burst; the schedule itself ends
        // before `end`, so the last events are sent even when the wake-up comes late.
        while let Some(t) = schedule.peek() {
            let intended_ns = t.as_nanos() as u64;
            if intended_ns > now_ns || burst >= BURST {
                break;
            }
            schedule.next_due();
            generator.next_event(timestamp_ms, &mut key, &mut value);
            target
                .send(Event {
                    intended_ns,
                    sent_ns: now_ns,
                    key: &key,
                    value: &value,
                })
                .await;
            burst += 1;
        }
        if burst > 0 {
            recorder.lock().attempted(now_ns, burst);
            if burst >= BURST {
                // More may be due: look at the clock and the stop signal again first.
                continue;
            }
            target.flush().await;
        }
        let wake = match schedule.peek() {
            Some(t) => origin + t,
            None if now >= end => return Outcome::Completed,
            None => end,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = signalled(stop) => {}
        }
    }
}

/// Resolves when the stop signal changes; never, once nobody can send one.
async fn signalled(stop: &mut StopSignal) {
    if stop.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The worker process from start to exit: logging, the scenario from the environment, the
/// runtime, signals and the hard deadline. The `worker` binary is this function; the launcher's
/// local backend runs it too (`launcher __worker`), so a local run needs one executable only.
pub fn process_main() -> std::process::ExitCode {
    use std::process::ExitCode;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let scenario = match Scenario::from_env(vars) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fleetload worker: {e}");
            return ExitCode::from(WorkerExit::BadConfig.code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetload worker: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    start_hard_deadline(&scenario);
    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(forward_signals(tx));
        run(scenario, rx).await
    });
    // Dropping the runtime could wait on a target's blocked I/O; the report is stored, so leave.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(result.exit.code())
}

/// No task may run on forever and cost money: past the planned end plus a grace period the
/// process ends, whatever the target or the report store is doing.
fn start_hard_deadline(scenario: &Scenario) {
    let wait_for_start = scenario
        .start_at
        .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    let deadline = wait_for_start + scenario.profile.total_duration() + HARD_DEADLINE_GRACE;
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!(
            "fleetload worker: hard deadline reached ({}s after start); exiting",
            deadline.as_secs()
        );
        std::process::exit(HARD_DEADLINE_EXIT as i32);
    });
}

/// SIGTERM (ECS stopping the task) and SIGINT (Ctrl-C) both ask the worker to stop producing,
/// drain, and store its report.
async fn forward_signals(tx: tokio::sync::watch::Sender<Option<&'static str>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if tx.borrow().is_some() {
            tracing::warn!("{name} again: no longer waiting for acknowledgements");
        } else {
            tracing::warn!("{name}: stopping production, then storing the report");
        }
        // Every signal is a change, so a second one cuts the wait for acknowledgements short.
        tx.send_modify(|v| *v = Some(v.unwrap_or(name)));
    }
}
