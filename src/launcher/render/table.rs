//! The human summary of a merged run, as the launcher prints it: plain text in aligned columns,
//! readable in a terminal and in a CI log (no colour, no box drawing).

use std::fmt::Write;

use crate::launcher::gate::ThresholdResult;
use crate::launcher::render::format::{rate, thousands};
use crate::model::live::clock;
use crate::model::report::{
    hot_shard, saturation_words, E2e, KinesisCounts, LiveReport, Outcome, Percentiles, Summary,
};

/// How many task ids one line lists before saying how many more there are.
const IDS_PER_LIST: usize = 20;
/// Width of the label column.
const LABEL: usize = 14;
/// The widest line the table prints (a value too long for it goes on under its label), so that
/// it reads in an 100-column terminal and a CI log alike. Only a single word longer than a line
/// (a long report location) goes past it.
pub(crate) const WIDTH: usize = 100;

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
/// interrupted, by id), counts by error code, achieved rate against the target, end to end
/// (the delivery funnel, loss and duplicates, how the clocks relate), latency, service-time and
/// end-to-end percentiles, thresholds with their measured values, and where the report is.
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
    if c.throttled() > 0 {
        line(
            w,
            "throttled",
            &format!(
                "{:.4}% of tries ({} refused for throughput)",
                c.throttle_ratio() * 100.0,
                thousands(c.throttled())
            ),
        );
    }

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
    if summary.counts.acknowledged_in_drain > 0 {
        line(
            w,
            "  drain",
            &format!(
                "{} more acknowledged after production ended, while the task waited for the \
                 answers it was owed: in the target, not in the rate",
                thousands(summary.counts.acknowledged_in_drain)
            ),
        );
    }
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

    if let Some(cost) = &summary.cost {
        line(w, "cost", &crate::launcher::cost::line(cost));
    }
    if let Some(a) = &summary.aborted {
        line(w, "aborted", &a.reason);
    }
    if let Some(live) = &summary.live {
        live_lines(w, live);
    }

    let e2e = summary.end_to_end.e2e.as_ref();
    if let Some(e) = e2e {
        end_to_end(w, summary, e);
    }

    // Latency.
    let _ = writeln!(
        w,
        "{:<LABEL$} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    percentiles(w, "  intended", &summary.latency_ms);
    percentiles(w, "  service", &summary.service_time_ms);
    if let Some(e) = e2e {
        percentiles(w, "  end to end", &e.latency_ms);
    }

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

/// The end-to-end lines: who read, the delivery funnel from planned to seen, what was lost or
/// duplicated (or why loss is unknown), and how the clocks relate.
fn end_to_end(w: &mut String, s: &Summary, e: &E2e) {
    let coverage = e.coverage.as_ref();
    let reported = coverage.map_or(0, |c| c.consumers_reported.len());
    let missing = coverage.map_or(0, |c| c.consumers_missing.len());
    line(
        w,
        "end to end",
        &format!(
            "{reported} of {} consumer task(s) reported",
            reported + missing
        ),
    );
    let c = &s.counts;
    let mut funnel = Vec::new();
    if s.target_rate.is_some() || c.unsent > 0 {
        funnel.push(format!("planned {}", thousands(c.planned)));
    }
    funnel.push(format!("sent {}", thousands(c.attempted)));
    funnel.push(format!("acknowledged {}", thousands(c.acknowledged)));
    funnel.push(format!(
        "seen {}{}",
        thousands(e.unique.unwrap_or(0)),
        if e.seen != e.unique.unwrap_or(0) {
            format!(" ({} read in all)", thousands(e.seen))
        } else {
            String::new()
        }
    ));
    line(w, "  funnel", &funnel.join(" → "));
    let lost = match (e.lost, coverage) {
        (Some(n), _) => format!("lost {}", thousands(n)),
        (None, Some(c)) if !c.consumers_missing.is_empty() => format!(
            "lost unknown: {} did not report (what they would have read is not counted as lost)",
            ids(c.consumers_missing.iter().cloned())
        ),
        (None, _) => "lost unknown: no consumer task reported".to_string(),
    };
    line(
        w,
        "  delivery",
        &format!(
            "{lost}   duplicates {}   unacknowledged seen {}   foreign {}",
            thousands(e.duplicates),
            e.unacknowledged_seen.map_or("unknown".into(), thousands),
            thousands(e.foreign)
        ),
    );
    if !e.clock.is_empty() {
        line(w, "  clock", &short_clock(&e.clock));
    }
    for note in coverage.map_or(&[][..], |c| &c.notes[..]) {
        // The missing consumers were said above, with what they mean for `lost`.
        if !note.starts_with("lost is unknown") {
            line(w, "  note", note);
        }
    }
}

/// How the live windows went: how many were shown, which tasks were stale in which, what
/// could not be written or sent.
fn live_lines(w: &mut String, live: &LiveReport) {
    let mut text = format!("{} windows of {}s", live.windows, live.interval_s);
    if live.publish_failures > 0 {
        text.push_str(&format!(
            "; {} could not be written by the tasks",
            thousands(live.publish_failures)
        ));
    }
    line(w, "live", &text);
    if !live.stale.is_empty() {
        let list: Vec<String> = live
            .stale
            .iter()
            .map(|s| format!("{} at {}", s.tasks.join(", "), clock(s.from_second)))
            .collect();
        line(w, "  stale", &ids(list.into_iter()));
    }
    for failure in &live.metric_failures {
        line(w, "  metrics", failure);
    }
}

/// The clock note's first clause (where latency ends), without the explanation that follows it
/// (why that end, how hosts' clocks relate): that is on the page and in the README.
fn short_clock(clock: &str) -> String {
    let end = [" (", "; "]
        .iter()
        .filter_map(|sep| clock.find(sep))
        .min()
        .unwrap_or(clock.len());
    format!("{}; how the clocks relate: the report page", &clock[..end])
}

/// `label` and `value`, the value word-wrapped to [`WIDTH`] under its column.
fn line(w: &mut String, label: &str, value: &str) {
    let mut current = format!("{label:<LABEL$}");
    let mut empty = true;
    for word in value.split(' ') {
        let len = current.chars().count();
        if !empty && len + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(w, "{}", current.trim_end());
            current = " ".repeat(LABEL);
        }
        current.push(' ');
        current.push_str(word);
        empty = false;
    }
    let _ = writeln!(w, "{}", current.trim_end());
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
                acknowledged_in_drain: 0,
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
            cost: None,
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
            live: None,
            aborted: None,
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

    /// A merged run of 2 producers and 2 consumers: the delivery funnel, loss and duplicates,
    /// the clocks, and end-to-end percentiles beside the producers'.
    fn e2e_run(lost: Option<u64>, missing: &[&str]) -> Summary {
        use crate::model::report::{E2e, E2eCoverage};
        let mut s: Summary = serde_json::from_value(serde_json::json!({
            "schema_version": SCHEMA_VERSION, "run_id": "run-e2e", "task_id": "merged",
            "target": "kafka", "scenario": {}, "fleetload_version": "0",
            "planned_start": "2026-03-01T12:00:00Z", "actual_start": null, "end": null,
            "late_start_ms": 0, "duration_s": 10.0, "outcome": {"status": "completed"},
            "counts": {"planned": 20000, "unsent": 0, "attempted": 20000,
                       "acknowledged": 19990, "failed": 10, "failed_by_code": {"MessageTimedOut": 10},
                       "retried": 0, "retried_by_code": {}},
            "bytes": 0, "target_rate": 2000.0, "achieved_rate": 1999.0,
            "latency_ms": {"count": 19990, "p50": 1.0, "p90": 2.0, "p99": 3.0, "p99_9": 4.0,
                           "max": 5.0, "mean": 1.5},
            "service_time_ms": {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0,
                                "max": 0.0, "mean": 0.0},
            "histograms": {"unit": "microseconds", "latency": "", "service_time": ""},
            "errors_timeline": {}
        }))
        .unwrap();
        s.end_to_end.e2e = Some(E2e {
            seen: 19_991,
            unique: Some(19_985),
            lost,
            duplicates: 4,
            unacknowledged_seen: Some(2),
            foreign: 0,
            latency_ms: Percentiles {
                count: 19_991,
                p50: 12.5,
                p90: 20.0,
                p99: 48.25,
                p99_9: 90.0,
                max: 130.0,
                mean: 14.0,
            },
            clock: "the consumer read on host h: producers on the same host share its clock".into(),
            coverage: Some(E2eCoverage {
                consumers_reported: vec!["local-consumer-01".into()],
                consumers_missing: missing.iter().map(|m| m.to_string()).collect(),
                notes: missing
                    .iter()
                    .map(|m| format!("lost is unknown: {m} did not report"))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
        s
    }

    /// Every line within [`WIDTH`] columns.
    fn assert_fits(text: &str) {
        for l in text.lines() {
            assert!(
                l.chars().count() <= WIDTH,
                "{} columns: {l}",
                l.chars().count()
            );
        }
    }

    /// The table with each wrapped value joined back onto its label's line.
    fn unwrapped(text: &str) -> String {
        let mut out = String::new();
        for l in text.lines() {
            match l.strip_prefix(&" ".repeat(LABEL + 1)) {
                Some(rest) if !out.is_empty() && !rest.starts_with(' ') => {
                    out.pop();
                    out.push(' ');
                    out.push_str(rest);
                }
                _ => out.push_str(l),
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_clock_line_keeps_where_latency_ends_and_every_line_fits_100_columns() {
        let mut s = e2e_run(Some(0), &[]);
        let note = format!(
            "{}; the consumer read on host vm: producers on the same host share its clock",
            crate::worker::consume::KINESIS_CLOCK_NOTE
        );
        s.end_to_end.e2e.as_mut().unwrap().clock = note.clone();
        assert!(note.chars().count() > 300, "{note}");
        let text = render(&s, &[], "r");
        assert_fits(&text);
        assert!(
            text.contains(
                "  clock        latency runs from the producer's intended send time to the record's \
                 arrival in"
            ),
            "{text}"
        );
        assert!(!text.contains("ApproximateArrivalTimestamp"), "{text}");
    }

    #[test]
    fn renders_the_end_to_end_funnel_loss_clocks_and_percentiles() {
        let s = e2e_run(Some(5), &[]);
        let results = evaluate(&parse_all(&["lost==0", "e2e_p99<1s"]).unwrap(), &s);
        let printed = render(&s, &results, "r");
        assert_fits(&printed);
        let text = unwrapped(&printed);
        for expected in [
            "end to end     1 of 1 consumer task(s) reported",
            "  funnel       planned 20,000 → sent 20,000 → acknowledged 19,990 → seen 19,985 (19,991 read in all)",
            "  delivery     lost 5   duplicates 4   unacknowledged seen 2   foreign 0",
            "  clock        the consumer read on host h: producers on the same host share its clock; how the clocks relate: the report page",
            "  intended          1.000      2.000      3.000      4.000      5.000      1.500",
            "  end to end       12.500     20.000     48.250     90.000    130.000     14.000",
            "  BROKEN lost==0      measured 5",
            "  held   e2e_p99<1s   measured 48.25ms",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // The funnel comes before the latency table, the end-to-end row inside it.
        assert!(text.find("  funnel").unwrap() < text.find("latency (ms)").unwrap());
    }

    #[test]
    fn a_missing_consumer_says_loss_is_unknown_instead_of_showing_loss() {
        let s = e2e_run(None, &["local-consumer-02 (no report)"]);
        let printed = render(&s, &[], "r");
        assert_fits(&printed);
        let text = unwrapped(&printed);
        assert!(
            text.contains("end to end     1 of 2 consumer task(s) reported"),
            "{text}"
        );
        assert!(
            text.contains(
                "  delivery     lost unknown: local-consumer-02 (no report) did not report (what \
                 they would have read is not counted as lost)   duplicates 4"
            ),
            "{text}"
        );
        assert!(!text.contains("lost 0"), "{text}");
        // Said once, not again as a note.
        assert_eq!(text.matches("did not report").count(), 1, "{text}");
    }
}
