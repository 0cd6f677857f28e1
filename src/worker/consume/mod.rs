//! A consumer task (`FLEETLOAD_ROLE=consume`): reads the output of the system under test from
//! the run's start until the producers' planned end plus `FLEETLOAD_SETTLE`, finds each record's
//! trace, and stores what it saw (per producer task the sequence numbers seen, end-to-end
//! latency) as its report, beside the producers' reports.
//!
//! [`kafka`] reads a topic and [`kinesis`] every shard of a stream (following resharding),
//! from the start instant, the partitions or shards shared among the run's consumer tasks by
//! index. Either ends at the deadline or a stop signal; the report is written on every
//! path out.

mod kafka;
mod kinesis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::model::delivery::{encode_set, ConsumerMeasurements, ConsumerRecorder};
use crate::model::report::{encode_histogram, E2e, EndToEndReport, Outcome, Percentiles, Summary};
use crate::model::scenario::Scenario;
use crate::model::target::TargetConfig;
use crate::model::trace::{Role, TraceFinder};
use crate::store::ReportStore;
use crate::worker::exit::{TaskResult, WorkerExit};
use crate::worker::live::{Publisher, FINAL_WINDOW_WAIT};
use crate::worker::produce::StopSignal;
use crate::worker::task_id::hostname;
use crate::worker::task_report::{failed, store_report, ReportContext};

/// Where the latency of a record read from Kafka ends.
pub(crate) const CLOCK_NOTE: &str =
    "latency runs from the producer's intended send time to the consumer's read";
/// Where the latency of a record read from Kinesis ends: its arrival in the stream rather than
/// the moment a poll found it.
pub(crate) const KINESIS_CLOCK_NOTE: &str = "latency runs from the producer's intended send time to the record's arrival in the stream read (Kinesis's ApproximateArrivalTimestamp, kept between the consumer's last poll that found the shard caught up and the read that returned it, so the consumer's polling interval does not add to it, and any disagreement of Kinesis's clock beyond the poll interval is cut off by those bounds)";
/// The clock note of a consumer on ECS: two tasks, two clocks, each kept by NTP.
const ECS_CLOCK: &str = "producers and consumers ran as ECS tasks, each on its own clock kept by NTP (the Amazon Time Sync Service, typically within about 1 ms of UTC): read every end-to-end latency as ±2 ms";

/// How this consumer's clock relates to the producers': latency runs from the producer's
/// intended send time to this consumer's read, on two wall clocks, so their offset is the error
/// bar of every end-to-end latency. ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every task.
fn clock_note() -> String {
    let on_ecs = [
        "ECS_CONTAINER_METADATA_URI_V4",
        "ECS_CONTAINER_METADATA_URI",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some());
    if on_ecs {
        ECS_CLOCK.to_string()
    } else {
        format!(
            "the consumer read on host {}: producers on the same host (the local backend runs every task there) share its clock, so end-to-end latency has no clock error; producers on other hosts add their clock's offset from it",
            hostname()
        )
    }
}

/// Epoch microseconds now (the consumer's read time).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a reader hands back: the measurements, what it read, how it ended.
pub(crate) struct Read {
    pub(crate) recorder: ConsumerRecorder,
    pub(crate) source: String,
    pub(crate) outcome: Outcome,
    /// Where the measured latency ends, and which clocks it rests on.
    pub(crate) clock: &'static str,
}

/// Runs a consumer task and stores its report.
pub(crate) async fn run(
    scenario: &Scenario,
    task_id: &str,
    store: &ReportStore,
    dir: &str,
    planned_start: DateTime<Utc>,
    stop: StopSignal,
) -> TaskResult {
    let e2e = &scenario.end_to_end;
    let ctx = ReportContext {
        scenario,
        task_id,
        planned_start,
    };
    let deadline = planned_start
        + chrono::Duration::from_std(scenario.profile.total_duration() + e2e.settle)
            .unwrap_or_default();
    let mut recorder = ConsumerRecorder::new(
        TraceFinder::new(e2e),
        planned_start.timestamp_micros().max(0) as u64,
    );
    let publisher = scenario.live_interval.map(|interval| {
        recorder.live_windows(interval.as_secs());
        Arc::new(Publisher::start(
            store.clone(),
            &scenario.run_id,
            task_id,
            Role::Consume.as_str(),
            interval,
        ))
    });
    info!(
        run_id = %scenario.run_id,
        task_id,
        until = %deadline.to_rfc3339(),
        pointer = %e2e.pointer_text,
        "consumer {}/{}: reading from {}",
        e2e.consumer_index,
        e2e.consumers,
        planned_start.to_rfc3339()
    );
    let actual_start = Utc::now();
    let read = match &scenario.target {
        TargetConfig::Kafka { topic, properties } => {
            kafka::read(
                topic,
                properties,
                &scenario.run_id,
                task_id,
                e2e,
                planned_start,
                deadline,
                recorder,
                publisher.clone(),
                stop,
            )
            .await
        }
        TargetConfig::Kinesis { stream, .. } => {
            kinesis::read(
                stream,
                e2e,
                planned_start,
                deadline,
                recorder,
                publisher.clone(),
                stop,
            )
            .await
        }
        TargetConfig::Null => Err("a consumer needs kinesis or kafka to read from".to_string()),
    };
    let mut read = match read {
        Ok(read) => read,
        Err(reason) => {
            tracing::error!("preflight failed: {reason}");
            let mut summary = ctx.summary(
                failed(format!("preflight: {reason}")),
                None,
                0,
                Duration::ZERO,
                None,
            );
            summary.end_to_end = EndToEndReport {
                role: Some("consume".into()),
                ..Default::default()
            };
            return store_report(store, dir, summary, None, WorkerExit::PreflightFailed).await;
        }
    };
    let duration = (Utc::now() - actual_start).to_std().unwrap_or_default();
    let outcome = read.outcome.clone();
    let finals = read.recorder.take_final_windows(now_us());
    let live = match publisher.and_then(Arc::into_inner) {
        Some(publisher) => {
            let last = finals.len();
            for (i, (window, tally)) in finals.into_iter().enumerate() {
                publisher.send(publisher.consumer_window(window, tally, i + 1 == last));
            }
            Some(publisher.finish(FINAL_WINDOW_WAIT).await)
        }
        None => None,
    };
    let measured = read.recorder.finish();
    let mut summary = consumer_summary(
        ctx.summary(outcome.clone(), Some(actual_start), 0, duration, None),
        &read.source,
        read.clock,
        measured,
    );
    summary.live = live;
    if let Some(e) = &summary.end_to_end.e2e {
        info!(
            seen = e.seen,
            duplicates = e.duplicates,
            foreign = e.foreign,
            p50_ms = e.latency_ms.p50,
            p99_ms = e.latency_ms.p99,
            max_ms = e.latency_ms.max,
            "consumer summary"
        );
    }
    let exit = match &outcome {
        Outcome::Completed => WorkerExit::Completed,
        Outcome::Interrupted { signal } => {
            warn!("stopped by {signal} before the deadline");
            WorkerExit::Interrupted(if signal == "SIGINT" {
                "SIGINT"
            } else {
                "SIGTERM"
            })
        }
        Outcome::Failed { .. } => WorkerExit::Failed,
    };
    store_report(store, dir, summary, None, exit).await
}

/// A consumer's summary: the task's fields with no produced counts, and its `e2e` object.
fn consumer_summary(
    mut summary: Summary,
    source: &str,
    clock: &str,
    m: ConsumerMeasurements,
) -> Summary {
    summary.target_rate = None;
    summary.saturation = None;
    summary.end_to_end = EndToEndReport {
        role: Some("consume".into()),
        trace: None,
        e2e: Some(E2e {
            seen: m.seen,
            unique: None,
            lost: None,
            duplicates: m.duplicates,
            unacknowledged_seen: None,
            foreign: m.foreign,
            latency_ms: Percentiles::of(&m.latency),
            histogram: encode_histogram(&m.latency),
            clock: format!("{clock}; {}", clock_note()),
            source: Some(source.to_string()),
            delivered: m
                .delivered
                .iter()
                .map(|(task, set)| (task.clone(), encode_set(set)))
                .collect(),
            per_second: m
                .per_second
                .iter()
                .map(|(s, h)| (*s, encode_histogram(h)))
                .collect(),
            timeline: Vec::new(),
            coverage: None,
        }),
    };
    summary
}

/// Resolves when a stop signal arrives (or never); the name of the signal.
pub(crate) async fn stopped(mut stop: StopSignal) -> &'static str {
    crate::worker::produce::wait_for_stop(&mut stop).await
}
