//! Decoded task reports folded into the merged one: histograms added, counts summed by code,
//! rows lined up by second, coverage (missing, not completed, unreadable tasks) said.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::report::{
    add_by_shard, encode_histogram, Counts, EndToEndReport, Histograms, KinesisCounts, LiveReport,
    MergeInfo, Outcome, Percentiles, Saturation, SecondRow, ShardCounts, Summary, TaskProblem,
    TaskRow, SCHEMA_VERSION,
};

use super::decode::{Decoded, SLOT_LATENCY, SLOT_SERVICE};
use super::e2e::merge_e2e;
use super::hdr::{Accumulator, Batch};
use super::hdr_encode::SecondStats;
use super::merged::{Merged, MergedSeconds, MERGED_TASK_ID, REASON_IDS};

/// Sums of one second across tasks.
#[derive(Debug, Default, Clone)]
pub(super) struct RowSum {
    pub(super) present: bool,
    pub(super) target_rate: f64,
    pub(super) attempted: u64,
    pub(super) unsent: u64,
    pub(super) acknowledged: u64,
    pub(super) failed: u64,
    pub(super) bytes: u64,
}

/// What is known of one task that reported: its summary, or why its report is unreadable.
pub(super) struct TaskState {
    pub(super) task_id: String,
    pub(super) report: Result<Summary, String>,
}

/// Folds decoded task reports into the merged one.
pub(super) struct Merger {
    pub(super) run_id: String,
    pub(super) tasks: Vec<TaskState>,
    pub(super) latency: Accumulator,
    pub(super) service: Accumulator,
    pub(super) rows: Vec<RowSum>,
    pub(super) counts: Counts,
    pub(super) bytes: u64,
    pub(super) errors: BTreeMap<String, BTreeMap<u64, u64>>,
    pub(super) planned_start: Option<DateTime<Utc>>,
    pub(super) actual_start: Option<DateTime<Utc>>,
    pub(super) end: Option<DateTime<Utc>>,
    pub(super) late_start_ms: u64,
    pub(super) target_rate: Option<f64>,
    pub(super) targets: BTreeSet<String>,
    pub(super) scenario: Option<BTreeMap<String, String>>,
    pub(super) saturation: Option<Saturation>,
    /// Per-shard counts summed across tasks (tasks writing to one stream share its shards).
    pub(super) by_shard: BTreeMap<String, ShardCounts>,
    /// Kinesis records and PutRecords calls summed across the tasks that report them (reports
    /// written before they were counted have none, and still merge).
    pub(super) kinesis: Option<KinesisCounts>,
}

impl Merger {
    pub(super) fn new(run_id: &str) -> Self {
        Merger {
            run_id: run_id.to_string(),
            tasks: Vec::new(),
            latency: Accumulator::default(),
            service: Accumulator::default(),
            rows: Vec::new(),
            counts: Counts::default(),
            bytes: 0,
            errors: BTreeMap::new(),
            planned_start: None,
            actual_start: None,
            end: None,
            late_start_ms: 0,
            target_rate: None,
            targets: BTreeSet::new(),
            scenario: None,
            saturation: None,
            by_shard: BTreeMap::new(),
            kinesis: None,
        }
    }

    /// Adds one task: its summary and rows, and, when its report is readable, the whole-run
    /// histograms that `batch` holds for it. Empties `batch`.
    pub(super) fn add_with(&mut self, task: Decoded, batch: &mut Batch) {
        if task.report.is_ok() {
            for (slot, layout, entries) in batch.histograms() {
                match slot {
                    SLOT_LATENCY => self.latency.add(layout, entries),
                    SLOT_SERVICE => self.service.add(layout, entries),
                    _ => unreachable!("a summary holds two histograms"),
                }
            }
        }
        batch.clear();
        self.add(task);
    }

    /// Adds one task's summary and rows (its histograms are added by [`Merger::add_with`]).
    pub(super) fn add(&mut self, task: Decoded) {
        let report = match task.report {
            Ok(report) => report,
            Err(reason) => {
                self.tasks.push(TaskState {
                    task_id: task.task_id,
                    report: Err(format!("unreadable report: {reason}")),
                });
                return;
            }
        };
        let s = &report.summary;
        if s.end_to_end.is_consumer() {
            // A consumer's report is end to end only (`e2e::merge_e2e`): it produced nothing,
            // so it adds no counts, rows, times or scenario to the producers'.
            self.tasks.push(TaskState {
                task_id: task.task_id,
                report: Ok(report.summary),
            });
            return;
        }
        // Counts and bytes are summed in checked arithmetic: a report claiming more than the
        // merged sums can hold is named as unreadable (the fleet failed, exit 3), never wrapped.
        let (Some(counts), Some(bytes)) = (
            self.counts.checked_sum(&s.counts),
            self.bytes.checked_add(s.bytes),
        ) else {
            self.tasks.push(TaskState {
                task_id: task.task_id,
                report: Err(format!(
                    "unreadable report: its counts or bytes (attempted {}, bytes {}) added to \
                     the other tasks' pass the largest count, {}",
                    s.counts.attempted,
                    s.bytes,
                    u64::MAX
                )),
            });
            return;
        };
        self.counts = counts;
        self.bytes = bytes;
        for r in &report.rows {
            let i = r.second as usize;
            if self.rows.len() <= i {
                self.rows.resize(i + 1, RowSum::default());
            }
            let sum = &mut self.rows[i];
            sum.present = true;
            sum.target_rate += r.target_rate;
            // Rows are bounded by the summary's checked totals in a sound report; a corrupt row
            // saturates rather than wrapping.
            sum.attempted = sum.attempted.saturating_add(r.attempted);
            sum.unsent = sum.unsent.saturating_add(r.unsent);
            sum.acknowledged = sum.acknowledged.saturating_add(r.acknowledged);
            sum.failed = sum.failed.saturating_add(r.failed);
            sum.bytes = sum.bytes.saturating_add(r.bytes);
        }
        add_by_shard(&mut self.by_shard, &s.by_shard);
        if let Some(k) = &s.kinesis {
            match &mut self.kinesis {
                Some(sum) => sum.add(k),
                None => self.kinesis = Some(k.clone()),
            }
        }
        if let Some(t) = &s.saturation {
            // Times summed across tasks; the first second any task fell behind.
            let m = self.saturation.get_or_insert_with(Saturation::default);
            m.blocked_on_target_s += t.blocked_on_target_s;
            m.behind_schedule_s += t.behind_schedule_s;
            m.behind_from_second = match (m.behind_from_second, t.behind_from_second) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for (code, points) in &s.errors_timeline {
            let merged = self.errors.entry(code.clone()).or_default();
            for &(second, events) in points {
                let slot = merged.entry(second).or_default();
                *slot = slot.saturating_add(events);
            }
        }
        self.planned_start = min_time(self.planned_start, Some(s.planned_start));
        self.actual_start = min_time(self.actual_start, s.actual_start);
        self.end = self.end.max(s.end);
        self.late_start_ms = self.late_start_ms.max(s.late_start_ms);
        if let Some(rate) = s.target_rate {
            *self.target_rate.get_or_insert(0.0) += rate;
        }
        if !s.target.is_empty() {
            self.targets.insert(s.target.clone());
        }
        // The merged scenario shows what every task had in common (not FLEETLOAD_TASK_ID).
        match &mut self.scenario {
            None => self.scenario = Some(s.scenario.clone()),
            Some(common) => common.retain(|k, v| s.scenario.get(k) == Some(v)),
        }
        // The task's timeline is in the merged one now; kept per task it would make the merge's
        // memory grow with tasks × seconds (a throttled day-long run has an entry a second).
        let mut summary = report.summary;
        summary.errors_timeline.clear();
        self.tasks.push(TaskState {
            task_id: task.task_id,
            report: Ok(summary),
        });
    }

    /// The run's first planned start among the tasks added so far: where the merged interval
    /// log counts its seconds from.
    pub(super) fn planned_start(&self) -> DateTime<Utc> {
        self.planned_start.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// The merged report, with `per_second` (the merged interval log) and `stats` (each merged
    /// second's percentiles) from the per-second merge.
    pub(super) fn finish(
        mut self,
        expected: Option<Vec<String>>,
        expected_count: Option<u64>,
        per_second: MergedSeconds,
        stats: Vec<(u64, SecondStats)>,
    ) -> Merged {
        self.tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let reported: BTreeSet<&str> = self.tasks.iter().map(|t| t.task_id.as_str()).collect();

        // Which tasks should have reported, and which did not. Expected tasks that never got an
        // id (a count above the list) are named by placeholders.
        let placeholders = |n: u64| (1..=n).map(|k| format!("missing-{k}")).collect::<Vec<_>>();
        let (tasks_expected, tasks_missing, reported_of_expected) =
            match (&expected, expected_count) {
                (Some(ids), count) => {
                    let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                    let mut missing: Vec<String> = ids
                        .iter()
                        .filter(|id| !reported.contains(*id))
                        .map(|id| id.to_string())
                        .collect();
                    let found = (ids.len() - missing.len()) as u64;
                    let unnamed = count.unwrap_or(0).saturating_sub(ids.len() as u64);
                    missing.extend(placeholders(unnamed));
                    (ids.len() as u64 + unnamed, missing, found)
                }
                (None, Some(count)) => {
                    let found = (reported.len() as u64).min(count);
                    (count, placeholders(count - found), found)
                }
                (None, None) => (reported.len() as u64, Vec::new(), reported.len() as u64),
            };
        let coverage = if tasks_expected == 0 {
            0.0
        } else {
            reported_of_expected as f64 / tasks_expected as f64
        };

        let mut tasks_not_completed = Vec::new();
        let mut task_rows = Vec::new();
        for t in &self.tasks {
            match &t.report {
                Ok(s) => {
                    if s.outcome != Outcome::Completed {
                        tasks_not_completed.push(TaskProblem {
                            task_id: t.task_id.clone(),
                            outcome: s.outcome.clone(),
                        });
                    }
                    task_rows.push(TaskRow {
                        task_id: t.task_id.clone(),
                        outcome: s.outcome.status().to_string(),
                        acknowledged: s.counts.acknowledged,
                        failed: s.counts.failed,
                        achieved_rate: s.achieved_rate,
                        p99_ms: s.latency_ms.p99,
                        max_ms: s.latency_ms.max,
                    });
                }
                Err(reason) => {
                    let outcome = Outcome::Failed {
                        reason: reason.clone(),
                    };
                    tasks_not_completed.push(TaskProblem {
                        task_id: t.task_id.clone(),
                        outcome: outcome.clone(),
                    });
                    task_rows.push(TaskRow {
                        task_id: t.task_id.clone(),
                        outcome: outcome.status().to_string(),
                        acknowledged: 0,
                        failed: 0,
                        achieved_rate: 0.0,
                        p99_ms: 0.0,
                        max_ms: 0.0,
                    });
                }
            }
        }

        let outcome = if self.tasks.is_empty() {
            Outcome::Failed {
                reason: if tasks_expected == 0 {
                    "no task reported".to_string()
                } else {
                    format!("none of the {tasks_expected} expected tasks reported")
                },
            }
        } else if tasks_missing.is_empty() && tasks_not_completed.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Failed {
                reason: failure_reason(tasks_expected, &tasks_missing, &tasks_not_completed),
            }
        };

        // Per-second rows, with exact percentiles from the summed per-second counters.
        let seconds = self
            .rows
            .len()
            .max(stats.last().map_or(0, |(s, _)| *s as usize + 1));
        let mut rows: Vec<SecondRow> = (0..seconds)
            .map(|s| {
                let sum = self.rows.get(s).cloned().unwrap_or_default();
                SecondRow {
                    second: s as u64,
                    target_rate: sum.target_rate,
                    attempted: sum.attempted,
                    acknowledged: sum.acknowledged,
                    failed: sum.failed,
                    bytes: sum.bytes,
                    unsent: sum.unsent,
                    ..SecondRow::default()
                }
            })
            .collect();
        let ms = |us: u64| us as f64 / 1000.0;
        for (s, st) in stats {
            let row = &mut rows[s as usize];
            row.p50_ms = ms(st.p50_us);
            row.p99_ms = ms(st.p99_us);
            row.max_ms = ms(st.max_us);
        }

        let latency = self.latency.to_histogram(true);
        let service = self.service.to_histogram(true);
        let duration_s = match (self.actual_start, self.end) {
            (Some(start), Some(end)) if end > start => {
                (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6
            }
            _ => 0.0,
        };
        let achieved_rate = self.counts.achieved_rate(duration_s);
        let summary = Summary {
            schema_version: SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            task_id: MERGED_TASK_ID.to_string(),
            target: self.targets.iter().cloned().collect::<Vec<_>>().join(","),
            scenario: self.scenario.take().unwrap_or_default(),
            fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
            planned_start: self.planned_start(),
            actual_start: self.actual_start,
            end: self.end,
            late_start_ms: self.late_start_ms,
            duration_s,
            outcome,
            counts: self.counts.clone(),
            bytes: self.bytes,
            target_rate: self.target_rate,
            achieved_rate,
            latency_ms: Percentiles::of(&latency),
            service_time_ms: Percentiles::of(&service),
            histograms: Histograms {
                unit: "microseconds".to_string(),
                latency: encode_histogram(&latency),
                service_time: encode_histogram(&service),
            },
            errors_timeline: std::mem::take(&mut self.errors)
                .into_iter()
                .map(|(code, points)| (code, points.into_iter().collect()))
                .collect(),
            by_shard: std::mem::take(&mut self.by_shard),
            kinesis: self.kinesis.take(),
            saturation: self.saturation.take().map(|mut s| {
                s.blocked_on_target_s = (s.blocked_on_target_s * 1e3).round() / 1e3;
                s.behind_schedule_s = (s.behind_schedule_s * 1e3).round() / 1e3;
                s.cause = s.behind_from_second.map(|_| {
                    Saturation::cause_of(s.blocked_on_target_s, s.behind_schedule_s).to_string()
                });
                s
            }),
            cost: None,
            merge: Some(MergeInfo {
                tasks_expected,
                tasks_reported: self.tasks.len() as u64,
                coverage,
                tasks_missing,
                tasks_not_completed,
                tasks: task_rows,
            }),
            end_to_end: EndToEndReport {
                role: None,
                trace: None,
                e2e: merge_e2e(self.tasks.iter().filter_map(|t| t.report.as_ref().ok())),
            },
            live: merge_live(self.tasks.iter().filter_map(|t| t.report.as_ref().ok())),
            aborted: None,
        };
        Merged {
            summary,
            latency,
            service,
            rows,
            per_second,
            tasks: self
                .tasks
                .into_iter()
                .filter_map(|t| t.report.ok())
                .collect(),
        }
    }
}

pub(super) fn min_time(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One line saying which tasks are missing or did not complete, by id.
pub(super) fn failure_reason(
    expected: u64,
    missing: &[String],
    not_completed: &[TaskProblem],
) -> String {
    let ids = |ids: Vec<String>| {
        let n = ids.len();
        let mut text = ids
            .into_iter()
            .take(REASON_IDS)
            .collect::<Vec<_>>()
            .join(", ");
        if n > REASON_IDS {
            text.push_str(&format!(" and {} more", n - REASON_IDS));
        }
        text
    };
    let of_status = |status: &str| -> Vec<String> {
        not_completed
            .iter()
            .filter(|p| p.outcome.status() == status)
            .map(|p| match &p.outcome {
                Outcome::Interrupted { signal } => format!("{} ({signal})", p.task_id),
                Outcome::Failed { reason } => format!("{} ({reason})", p.task_id),
                Outcome::Completed => p.task_id.clone(),
            })
            .collect()
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing: {}", ids(missing.to_vec())));
    }
    for status in ["failed", "interrupted"] {
        let list = of_status(status);
        if !list.is_empty() {
            parts.push(format!("{status}: {}", ids(list)));
        }
    }
    format!(
        "{} of {expected} tasks did not complete; {}",
        missing.len() + not_completed.len(),
        parts.join("; ")
    )
}

/// The tasks' live windows in one line: the interval, the most windows a task wrote, and every
/// window that could not be written (the launcher adds what it saw: stale tasks, the abort).
fn merge_live<'a>(reports: impl Iterator<Item = &'a Summary>) -> Option<LiveReport> {
    let mut merged: Option<LiveReport> = None;
    for live in reports.filter_map(|r| r.live.as_ref()) {
        let m = merged.get_or_insert_with(|| LiveReport {
            interval_s: live.interval_s,
            ..LiveReport::default()
        });
        m.windows = m.windows.max(live.windows);
        m.publish_failures = m.publish_failures.saturating_add(live.publish_failures);
    }
    merged
}
