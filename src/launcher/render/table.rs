//! The human summary of a merged run, as the launcher prints it: plain text in aligned columns,
//! readable in a terminal and in a CI log (no colour, no box drawing).

use std::fmt::Write;

use crate::launcher::gate::ThresholdResult;
use crate::launcher::render::format::{rate, thousands};
use crate::model::report::{
    hot_shard, saturation_words, KinesisCounts, Outcome, Percentiles, Summary,
};

/// How many task ids one line lists before saying how many more there are.
const IDS_PER_LIST: usize = 20;
/// Width of the label column.
const LABEL: usize = 14;

/// How the acknowledged user records travelled: `in N Kinesis records (aggregated, X user
/// records each), M PutRecords calls`.
pub(crate) fn kinesis_words(k: &KinesisCounts, acknowledged: u64) -> String {
    let packing = match k.aggregation.as_str() {
        "on" => format!(
            "KPL-aggregated, {:.1} user records each",
            k.per_record(acknowledged)
        ),
        "off" => "one user record each".to_string(),
        other => format!(
            "aggregation {other}, {:.1} user records each",
            k.per_record(acknowledged)
        ),
    };
    format!(
        "{} records ({packing}), {} PutRecords calls",
        thousands(k.kinesis_records),
        thousands(k.put_records_calls)
    )
}

/// Renders the summary: run, tasks reported of expected (and which are missing, failed or
/// interrupted, by id), counts by error code, achieved rate against the target, latency and
/// service-time percentiles, thresholds with their measured values, and where the report is.
pub(crate) fn render(
    summary: &Summary,
    results: &[ThresholdResult],
    report_location: &str,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let target = if summary.target.is_empty() {
        String::new()
    } else {
        format!(" — target {}", summary.target)
    };
    let _ = writeln!(w, "fleetload run {}{target}", summary.run_id);

    // Tasks.
    match &summary.merge {
        Some(info) => {
            let completed = info
                .tasks
                .iter()
                .filter(|t| t.outcome == Outcome::Completed.status())
                .count();
            line(
                w,
                "tasks",
                &format!(
                    "{} of {} reported, {completed} completed",
                    info.tasks_reported, info.tasks_expected
                ),
            );
            if !info.tasks_missing.is_empty() {
                line(w, "  missing", &ids(info.tasks_missing.iter().cloned()));
            }
            for status in ["failed", "interrupted"] {
                let list: Vec<String> = info
                    .tasks_not_completed
                    .iter()
                    .filter(|p| p.outcome.status() == status)
                    .map(|p| match &p.outcome {
                        Outcome::Failed { reason } => format!("{} ({reason})", p.task_id),
                        Outcome::Interrupted { signal } => format!("{} ({signal})", p.task_id),
                        Outcome::Completed => p.task_id.clone(),
                    })
                    .collect();
                if !list.is_empty() {
                    line(w, &format!("  {status}"), &ids(list.into_iter()));
                }
            }
        }
        None => line(w, "outcome", summary.outcome.status()),
    }

    // Events.
    let c = &summary.counts;
    if c.unsent > 0 || summary.target_rate.is_some() {
        line(
            w,
            "planned",
            &format!(
                "{}   unsent {} (due but never handed to the target)",
                thousands(c.planned),
                thousands(c.unsent)
            ),
        );
    }
    line(
        w,
        "events",
        &format!(
            "attempted {}   acknowledged {}   failed {}   retried {}",
            thousands(c.attempted),
            thousands(c.acknowledged),
            thousands(c.failed),
            thousands(c.retried)
        ),
    );
    if !c.failed_by_code.is_empty() {
        let by_code: Vec<String> = c
            .failed_by_code
            .iter()
            .map(|(code, n)| format!("{code} {}", thousands(*n)))
            .collect();
        line(w, "  failed by", &by_code.join(", "));
    }
    if !c.retried_by_code.is_empty() {
        let by_code: Vec<String> = c
            .retried_by_code
            .iter()
            .map(|(code, n)| format!("{code} {}", thousands(*n)))
            .collect();
        line(w, "  retried by", &by_code.join(", "));
    }
    if !summary.by_shard.is_empty() {
        let n = summary.by_shard.len();
        let text = match hot_shard(&summary.by_shard) {
            Some((id, throttled, share)) => format!(
                "{n} answered; hot {id}: throttled {} ({:.1}% of all throttling)",
                thousands(throttled),
                share * 100.0
            ),
            None => format!("{n} answered, none throttled"),
        };
        line(w, "shards", &text);
    }
    if let Some(k) = &summary.kinesis {
        line(w, "kinesis", &kinesis_words(k, c.acknowledged));
    }
    line(
        w,
        "error rate",
        &format!("{:.4}%", summary.counts.error_rate() * 100.0),
    );

    // Rate.
    let achieved = format!("{}/s", rate(summary.achieved_rate));
    let rate_text = match summary.target_rate {
        Some(t) if t > 0.0 => format!(
            "{achieved} achieved of {}/s targeted ({:.1}%)",
            rate(t),
            summary.achieved_rate / t * 100.0
        ),
        _ => format!("{achieved} achieved (unpaced)"),
    };
    line(w, "rate", &rate_text);
    if let Some(words) = saturation_words(summary) {
        line(w, "saturated", &words);
    }
    line(
        w,
        "duration",
        &format!(
            "{:.1} s{}",
            summary.duration_s,
            if summary.late_start_ms > 0 {
                format!(
                    ", latest start {} ms after the planned start",
                    thousands(summary.late_start_ms)
                )
            } else {
                String::new()
            }
        ),
    );

    // Latency.
    let _ = writeln!(
        w,
        "{:<LABEL$} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    percentiles(w, "  intended", &summary.latency_ms);
    percentiles(w, "  service", &summary.service_time_ms);

    // Thresholds.
    if !results.is_empty() {
        let held = results.iter().filter(|r| r.held).count();
        line(
            w,
            "thresholds",
            &format!("{held} of {} held", results.len()),
        );
        let width = results
            .iter()
            .map(|r| r.expression.len())
            .max()
            .unwrap_or(0);
        for r in results {
            let _ = writeln!(
                w,
                "  {:<6} {:<width$}   measured {}",
                if r.held { "held" } else { "BROKEN" },
                r.expression,
                r.measured_text
            );
        }
    }

    line(w, "report", report_location);
    out
}

fn line(w: &mut String, label: &str, value: &str) {
    let _ = writeln!(w, "{label:<LABEL$} {value}");
}

fn percentiles(w: &mut String, label: &str, p: &Percentiles) {
    if p.count == 0 {
        let _ = writeln!(w, "{label:<LABEL$} (nothing measured)");
        return;
    }
    let _ = writeln!(
        w,
        "{label:<LABEL$} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
    );
}

/// Up to [`IDS_PER_LIST`] items, then how many more.
fn ids(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let mut text = items
        .iter()
        .take(IDS_PER_LIST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > IDS_PER_LIST {
        let _ = write!(
            text,
            " … and {} more (all are listed in merged/summary.json)",
            items.len() - IDS_PER_LIST
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::gate::{evaluate, parse_all};
    use crate::model::report::{
        Counts, Histograms, MergeInfo, TaskProblem, TaskRow, SCHEMA_VERSION,
    };

    #[test]
    fn renders_everything_a_ci_log_needs() {
        let row = |id: &str, outcome: &str| TaskRow {
            task_id: id.into(),
            outcome: outcome.into(),
            acknowledged: 0,
            failed: 0,
            achieved_rate: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
        };
        let s = Summary {
            schema_version: SCHEMA_VERSION,
            run_id: "run-42".into(),
            task_id: "merged".into(),
            target: "kinesis".into(),
            scenario: Default::default(),
            fleetload_version: "0".into(),
            planned_start: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            actual_start: None,
            end: None,
            late_start_ms: 1500,
            duration_s: 60.04,
            outcome: Outcome::Failed { reason: "x".into() },
            counts: Counts {
                planned: 0,
                unsent: 0,
                attempted: 1_200_000,
                acknowledged: 1_199_000,
                failed: 1000,
                failed_by_code: [("ProvisionedThroughputExceededException".to_string(), 1000)]
                    .into(),
                retried: 5,
                retried_by_code: Default::default(),
            },
            bytes: 0,
            target_rate: Some(20_000.0),
            achieved_rate: 19_983.3,
            latency_ms: Percentiles {
                count: 1_199_000,
                p50: 3.1,
                p90: 7.0,
                p99: 231.4,
                p99_9: 400.0,
                max: 1200.0,
                mean: 5.25,
            },
            service_time_ms: Percentiles::default(),
            histograms: Histograms::default(),
            errors_timeline: Default::default(),
            saturation: None,
            by_shard: [
                ("shardId-000000000000", 0),
                ("shardId-000000000001", 990),
                ("shardId-000000000002", 10),
            ]
            .into_iter()
            .map(|(id, failed)| {
                let mut c = crate::model::report::ShardCounts::default();
                c.failed_by_code
                    .insert("ProvisionedThroughputExceededException".into(), failed);
                (id.to_string(), c)
            })
            .collect(),
            kinesis: Some(KinesisCounts {
                aggregation: "on".into(),
                kinesis_records: 4_000,
                put_records_calls: 45,
            }),
            merge: Some(MergeInfo {
                tasks_expected: 4,
                tasks_reported: 3,
                coverage: 0.75,
                tasks_missing: vec!["t4".into()],
                tasks_not_completed: vec![
                    TaskProblem {
                        task_id: "t2".into(),
                        outcome: Outcome::Failed {
                            reason: "stream not found".into(),
                        },
                    },
                    TaskProblem {
                        task_id: "t3".into(),
                        outcome: Outcome::Interrupted {
                            signal: "SIGTERM".into(),
                        },
                    },
                ],
                tasks: vec![
                    row("t1", "completed"),
                    row("t2", "failed"),
                    row("t3", "interrupted"),
                ],
            }),
            end_to_end: Default::default(),
        };
        let results = evaluate(&parse_all(&["p99<250ms", "rate>=20k/s"]).unwrap(), &s);
        let text = render(&s, &results, "/tmp/runs/run-42/merged/summary.json");
        for expected in [
            "fleetload run run-42 — target kinesis",
            "tasks          3 of 4 reported, 1 completed",
            "  missing      t4",
            "  failed       t2 (stream not found)",
            "  interrupted  t3 (SIGTERM)",
            "attempted 1,200,000   acknowledged 1,199,000   failed 1,000   retried 5",
            "  failed by    ProvisionedThroughputExceededException 1,000",
            "shards         3 answered; hot shardId-000000000001: throttled 990 (99.0% of all throttling)",
            "kinesis        4,000 records (KPL-aggregated, 299.8 user records each), 45 PutRecords calls",
            "19,983.3/s achieved of 20,000.0/s targeted (99.9%)",
            "latest start 1,500 ms after the planned start",
            "  intended          3.100      7.000    231.400    400.000   1200.000      5.250",
            "  service      (nothing measured)",
            "thresholds     1 of 2 held",
            "  held   p99<250ms     measured 231.4ms",
            "  BROKEN rate>=20k/s   measured 19983.3/s",
            "report         /tmp/runs/run-42/merged/summary.json",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let many = ids((0..25).map(|i| format!("t{i}")));
        assert!(many.ends_with("t19 … and 5 more (all are listed in merged/summary.json)"));
    }
}
