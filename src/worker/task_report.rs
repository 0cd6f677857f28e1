//! The task's report: its summary built from the measurements, and the report files written
//! through the store (or printed on stdout when they cannot be stored).

use anyhow::Context as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::info;

use crate::model::delivery::encode_set;
use crate::model::measure::{Measurements, Pace};
use crate::model::report::{
    encode_histogram, saturation_words, timeseries_csv, Counts, Histograms, Outcome, Percentiles,
    Saturation, SpooledLog, Summary, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::model::report::{EndToEndReport, TraceReport};
use crate::model::scenario::Scenario;
use crate::model::trace::TraceWriter;
use crate::store::ReportStore;
use crate::worker::exit::{TaskResult, WorkerExit};

pub(crate) struct ReportContext<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) task_id: &'a str,
    pub(crate) planned_start: DateTime<Utc>,
}

impl ReportContext<'_> {
    pub(crate) fn summary(
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
                let empty = encode_histogram(&crate::model::report::new_histogram());
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
            // Reasons quote what libraries and services said, which may echo a secret value.
            outcome: match outcome {
                Outcome::Failed { reason } => Outcome::Failed {
                    reason: self.scenario.redact(&reason),
                },
                other => other,
            },
            achieved_rate: (counts.achieved_rate(secs) * 100.0).round() / 100.0,
            counts,
            bytes,
            target_rate,
            latency_ms: latency,
            service_time_ms: service,
            histograms,
            errors_timeline: errors,
            by_shard: m.map(|m| m.by_shard.clone()).unwrap_or_default(),
            kinesis: m.and_then(|m| m.kinesis.clone()),
            saturation: m.map(|m| saturation(&m.pace, profile.is_unpaced())),
            cost: None,
            merge: None,
            end_to_end: self.producer_end_to_end(m),
            live: None,
            aborted: None,
        }
    }

    /// A producer's role and, when its events carry a trace, which of them failed.
    fn producer_end_to_end(&self, m: Option<&Measurements>) -> EndToEndReport {
        let e2e = &self.scenario.end_to_end;
        EndToEndReport {
            role: Some(e2e.role.as_str().to_string()),
            trace: e2e.trace.then(|| {
                let empty = roaring::RoaringTreemap::new();
                let failed = m.map_or(&empty, |m| &m.not_acknowledged);
                TraceReport {
                    field: e2e.field.clone(),
                    task: TraceWriter::new(&e2e.field, self.task_id)
                        .task()
                        .to_string(),
                    attempted: m.map_or(0, |m| m.counts.attempted),
                    not_acknowledged: encode_set(failed),
                    not_acknowledged_named: failed.len(),
                }
            }),
            e2e: None,
        }
    }
}

/// Whether production kept up with its schedule, and which side held it back if not.
fn saturation(pace: &Pace, unpaced: bool) -> Saturation {
    let blocked = (pace.blocked_on_target_ns as f64 / 1e6).round() / 1e3;
    let behind = (pace.behind_schedule_ns as f64 / 1e6).round() / 1e3;
    // An unpaced run is limited by the target by definition: it has no schedule to be behind.
    let behind_from_second = if unpaced {
        None
    } else {
        pace.behind_from_second
    };
    Saturation {
        behind_from_second,
        blocked_on_target_s: blocked,
        behind_schedule_s: behind,
        cause: behind_from_second.map(|_| Saturation::cause_of(blocked, behind).to_string()),
    }
}

pub(crate) fn failed(reason: String) -> Outcome {
    Outcome::Failed { reason }
}

/// Prints the summary on stdout (the container's log) when it cannot be stored.
pub(crate) fn not_stored(summary: Summary, exit: WorkerExit) -> TaskResult {
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

pub(crate) async fn store_report(
    store: &ReportStore,
    dir: &str,
    summary: Summary,
    files: Option<Measurements>,
    exit: WorkerExit,
) -> TaskResult {
    let result: anyhow::Result<()> = async {
        if let Some(files) = files {
            store
                .put(
                    &format!("{dir}/{TIMESERIES_FILE}"),
                    timeseries_csv(&files.rows),
                    "text/csv",
                )
                .await?;
            let key = format!("{dir}/{HLOG_FILE}");
            match files
                .hlog
                .context("could not write the interval log to a temporary file")?
            {
                SpooledLog::Memory(bytes) => store.put(&key, bytes, "text/plain").await?,
                SpooledLog::File(file) => store.put_file(&key, file.path(), "text/plain").await?,
            }
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
            // The last line of the log says it when production did not keep up.
            match saturation_words(&summary) {
                Some(words) => tracing::warn!(report = %at, "report stored; {words}"),
                None => info!(report = %at, "report stored"),
            }
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
