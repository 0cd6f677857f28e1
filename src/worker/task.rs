//! One task of a run, from a validated scenario to a stored report.
//!
//! Preflight (report location writable, target present) → wait for the run's start instant →
//! produce on the schedule until the duration ends or a stop signal arrives → wait briefly for
//! in-flight acknowledgements → write the report. Every path out writes a report: a failed
//! preflight and an interrupted run too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{info, warn};

use crate::model::measure::{Recorder, SharedRecorder};
use crate::model::payload::{key_namespace, Generator};
use crate::model::profile::Schedule;
use crate::model::report::Outcome;
use crate::model::scenario::Scenario;
use crate::model::trace::{EndToEnd, Role, TraceFinder, TraceWriter};
use crate::store::{task_dir, ReportStore};
use crate::worker::exit::{TaskResult, WorkerExit, DRAIN_TIMEOUT, PROGRESS_EVERY};
use crate::worker::live::{producer_windows, Publisher, FINAL_WINDOW_WAIT};
use crate::worker::produce::{produce, signalled, wait_for_stop, StopSignal};
use crate::worker::sink::{Sink, Target};
use crate::worker::task_id::resolve_task_id;
use crate::worker::task_report::{failed, not_stored, store_report, ReportContext};

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

    // A consumer task reads the system under test's output instead of producing.
    if scenario.end_to_end.role == Role::Consume {
        return crate::worker::consume::run(&scenario, &task_id, &store, &dir, planned_start, stop)
            .await;
    }

    // Preflight 2: the target.
    let recorder = SharedRecorder::new(Recorder::new(Instant::now(), 0));
    let mut target = match Target::connect(&scenario, &task_id, recorder.clone()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("preflight failed: {}", scenario.redact(&e.to_string()));
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
    recorder
        .lock()
        .start_clock(origin, late_ns, planned_start, &scenario.profile);
    let live = scenario.live_interval.map(|interval| {
        recorder
            .lock()
            .live_windows(interval.as_secs(), scenario.end_to_end.trace);
        let publisher = Arc::new(Publisher::start(
            store.clone(),
            &scenario.run_id,
            &task_id,
            Role::Produce.as_str(),
            interval,
        ));
        let windows = tokio::spawn(producer_windows(
            recorder.clone(),
            publisher.clone(),
            origin,
            late_ns,
        ));
        (publisher, windows)
    });

    let progress = tokio::spawn(progress_lines(recorder.clone()));
    let key_namespace = key_namespace(
        scenario.seed_given.then_some(scenario.seed),
        &scenario.run_id,
    );
    let mut generator = Generator::new(
        &scenario.payload,
        scenario.keys,
        scenario.seed,
        key_namespace,
    )
    .with_key_distribution(&scenario.key_distribution);
    let epoch_origin_us = actual_start.timestamp_micros() as u64;
    let e2e = &scenario.end_to_end;
    let mut trace = e2e.trace.then(|| TraceWriter::new(&e2e.field, &task_id));
    if trace.is_some() {
        // A failed Kafka delivery hands the payload back: its trace names the event.
        recorder.lock().trace_failures(TraceFinder::new(&EndToEnd {
            pointer: vec![e2e.field.clone()],
            pointer_text: format!("/{}", e2e.field),
            ..e2e.clone()
        }));
    }
    let outcome = produce(
        &mut target,
        Schedule::new(scenario.profile.clone()),
        &mut generator,
        &recorder,
        origin,
        epoch_origin_us,
        trace.as_mut(),
        &mut stop,
    )
    .await;
    let produced_for = origin.elapsed().min(scenario.profile.total_duration());
    {
        let mut r = recorder.lock();
        r.production_ended();
        r.cover_until(produced_for.as_nanos() as u64);
    }
    info!(
        outcome = outcome.status(),
        "production stopped after {:.1}s; waiting up to {}s for acknowledgements",
        produced_for.as_secs_f64(),
        DRAIN_TIMEOUT.as_secs()
    );
    {
        // One signal waits for the acknowledgements (the producing loop has seen a signal that
        // stopped it); a second cuts the wait short: what is unanswered counts as
        // unacknowledged.
        let mut signals = u32::from(matches!(outcome, Outcome::Interrupted { .. }));
        let drain = target.drain(Instant::now() + DRAIN_TIMEOUT);
        tokio::pin!(drain);
        loop {
            tokio::select! {
                _ = &mut drain => break,
                _ = signalled(&mut stop) => {
                    signals += 1;
                    if signals >= 2 {
                        warn!("stopped waiting for acknowledgements");
                        break;
                    }
                }
            }
        }
    }
    progress.abort();
    // The live loop stops first, so that the windows it has not taken are the final ones.
    let live = match live {
        Some((publisher, windows)) => {
            windows.abort();
            let _ = windows.await;
            Some(publisher)
        }
        None => None,
    };
    let (measurements, finals) = {
        let mut r = recorder.lock();
        let end = r.now_ns();
        let measurements = r.finish(end);
        (measurements, r.take_final_windows(end))
    };
    drop(target);
    let live = match live.and_then(Arc::into_inner) {
        Some(publisher) => {
            for t in finals {
                publisher.send(publisher.producer_window(t));
            }
            Some(publisher.finish(FINAL_WINDOW_WAIT).await)
        }
        None => None,
    };
    let mut summary = ctx.summary(
        outcome.clone(),
        Some(actual_start),
        late_ns,
        produced_for,
        Some(&measurements),
    );
    summary.live = live;
    info!(
        outcome = summary.outcome.status(),
        planned = summary.counts.planned,
        unsent = summary.counts.unsent,
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
    store_report(&store, &dir, summary, Some(measurements), exit).await
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
