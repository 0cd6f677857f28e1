//! The page's own checks, on a synthetic merged run: escaping, the charts' data against the
//! rows, an empty run, the size of a 1-hour page.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use super::*;
use crate::model::report::{
    encode_histogram, new_histogram, Counts, Histograms, MergeInfo, Outcome, Percentiles,
    SecondRow, TaskProblem, TaskRow, SCHEMA_VERSION,
};

fn render(merged: &Merged, thresholds: &[ThresholdResult]) -> String {
    render_with_fleet_problems(merged, thresholds, &[])
}

/// The merged latency and service-time histogram of the synthetic run, in microseconds.
fn histogram() -> Histogram<u64> {
    let mut h = new_histogram();
    for v in [800u64, 1200, 1500, 2500, 40_000] {
        h.record_n(v, 10).unwrap();
    }
    h
}

fn summary(rows: &[SecondRow]) -> Summary {
    let h = histogram();
    let planned = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Summary {
        schema_version: SCHEMA_VERSION,
        run_id: "run-<1>".into(),
        task_id: "merged".into(),
        target: "kinesis".into(),
        scenario: [
            ("FLEETLOAD_TARGET".to_string(), "kinesis".to_string()),
            (
                "FLEETLOAD_PAYLOAD".to_string(),
                "<script>alert('x')</script> & \"q\"".to_string(),
            ),
        ]
        .into(),
        fleetload_version: "0.1.0".into(),
        planned_start: planned,
        actual_start: Some(planned),
        end: Some(planned + chrono::Duration::seconds(rows.len() as i64)),
        late_start_ms: 0,
        duration_s: rows.len() as f64,
        outcome: Outcome::Failed {
            reason: "1 of 3 tasks did not complete; missing: t<3>".into(),
        },
        counts: Counts {
            planned: 0,
            unsent: 0,
            attempted: 100,
            acknowledged: 50,
            failed: 50,
            failed_by_code: [("Throttled</script>".to_string(), 50)].into(),
            retried: 0,
            retried_by_code: BTreeMap::new(),
            acknowledged_in_drain: 0,
        },
        bytes: 5000,
        target_rate: Some(10.0),
        achieved_rate: 5.0,
        latency_ms: Percentiles::of(&h),
        service_time_ms: Percentiles::of(&h),
        histograms: Histograms {
            unit: "microseconds".into(),
            latency: encode_histogram(&h),
            service_time: encode_histogram(&h),
        },
        errors_timeline: [("Throttled</script>".to_string(), vec![(2, 20), (3, 30)])].into(),
        saturation: None,
        by_shard: Default::default(),
        kinesis: None,
        cost: None,
        merge: Some(MergeInfo {
            tasks_expected: 3,
            tasks_reported: 2,
            coverage: 2.0 / 3.0,
            tasks_missing: vec!["t<3>".into()],
            tasks_not_completed: vec![TaskProblem {
                task_id: "t2".into(),
                outcome: Outcome::Interrupted {
                    signal: "SIGTERM".into(),
                },
            }],
            tasks: vec![
                TaskRow {
                    task_id: "t1".into(),
                    outcome: "completed".into(),
                    acknowledged: 30,
                    failed: 0,
                    achieved_rate: 3.0,
                    p99_ms: 2.5,
                    max_ms: 40.0,
                },
                TaskRow {
                    task_id: "t2".into(),
                    outcome: "interrupted".into(),
                    acknowledged: 20,
                    failed: 50,
                    achieved_rate: 2.0,
                    p99_ms: 40.0,
                    max_ms: 40.0,
                },
            ],
        }),
        end_to_end: Default::default(),
        live: None,
        aborted: None,
    }
}

fn merged(seconds: u64) -> Merged {
    let rows: Vec<SecondRow> = (0..seconds)
        .map(|s| SecondRow {
            second: s,
            target_rate: 10.0,
            attempted: 10 + s % 3,
            acknowledged: 9,
            failed: 1 + s % 3,
            bytes: 900,
            p50_ms: if s == 1 { 0.0 } else { 1.5 + s as f64 / 1000.0 },
            p99_ms: 2.25,
            max_ms: 40.001,
            unsent: 0,
        })
        .collect();
    Merged {
        summary: summary(&rows),
        latency: histogram(),
        service: histogram(),
        rows,
        per_second: Default::default(),
        tasks: Vec::new(),
    }
}

#[test]
fn escapes_every_text_and_names_no_url() {
    let html = render(&merged(5), &[]);
    assert!(
        !html.contains("<script>alert"),
        "scenario value not escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
    assert!(html.contains("<code>t&lt;3&gt;</code>"));
    assert!(html.contains("run-&lt;1&gt;"));
    // The error code appears inside the JSON without closing the script element.
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "only the two script elements close"
    );
    assert!(html.contains("Throttled\\u003c/script>"));
    for scheme in ["http:", "https:", "//cdn", "url(", "@import", "src="] {
        assert!(!html.contains(scheme), "the page must not name {scheme}");
    }
}

#[test]
fn charts_carry_the_rows_exactly() {
    let m = merged(7);
    let html = render(&m, &[]);
    let data_start = html.find("id=\"chart-data\">").unwrap() + "id=\"chart-data\">".len();
    let data_end = html[data_start..].find("</script>").unwrap() + data_start;
    let data: Value = serde_json::from_str(&html[data_start..data_end]).unwrap();
    let series = |chart: &str, name: &str| -> Vec<(f64, f64)> {
        data[chart]["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{chart}/{name}"))["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect()
    };
    let col = |f: fn(&SecondRow) -> f64| -> Vec<(f64, f64)> {
        m.rows.iter().map(|r| (r.second as f64, f(r))).collect()
    };
    assert_eq!(
        series("throughput", "attempted"),
        col(|r| r.attempted as f64)
    );
    assert_eq!(series("throughput", "target_rate"), col(|r| r.target_rate));
    assert_eq!(series("latency", "p50_ms"), col(|r| r.p50_ms));
    assert_eq!(series("latency", "max_ms"), col(|r| r.max_ms));
    assert_eq!(
        series("errors", "Throttled</script>"),
        vec![(2.0, 20.0), (3.0, 30.0)]
    );
    let spectrum = series("spectrum", "latency");
    assert_eq!(spectrum.len(), 101);
    assert_eq!(spectrum[0].1, 0.8);
    // The same numbers as circles.
    assert!(html.contains("data-second=\"6\" data-value=\"40.001\""));
    assert!(
        html.contains("<circle class=\"gap\""),
        "no-measurement second hidden"
    );
    // The latency line is split at the second with no measurement.
    assert_eq!(html.matches("<polyline data-series=\"p50_ms\"").count(), 2);
    // Verdict, coverage and the marked tasks.
    assert!(html.contains("<b>FLEET FAILED</b> <span>(exit 3)</span>"));
    assert!(html.contains("2 of 3 reported"));
    assert!(html.contains("data-task=\"t2\" data-outcome=\"interrupted\" data-slowest"));
    assert!(html.contains("data-task=\"t&lt;3&gt;\" data-outcome=\"missing\""));
    assert!(html.contains("starts at 2 s"));
}

#[test]
fn an_empty_run_renders() {
    let mut m = merged(0);
    m.summary.histograms = Histograms::default();
    m.latency = new_histogram();
    m.service = new_histogram();
    m.summary.latency_ms = Percentiles::default();
    m.summary.errors_timeline.clear();
    m.summary.counts = Counts::default();
    m.summary.merge = None;
    let html = render(&m, &[]);
    assert!(html.contains("No spectrum: nothing was measured."));
    assert!(html.contains("id=\"no-errors\""));
    assert!(html.ends_with("</html>\n"));
}

#[test]
fn an_hour_stays_a_reasonable_file() {
    let html = render(&merged(3600), &[]);
    eprintln!("a 1-hour run renders to {} bytes", html.len());
    assert!(
        html.len() < 4 * 1024 * 1024,
        "{} bytes for a 1-hour run",
        html.len()
    );
}

#[test]
fn spectrum_quantiles_from_zero_to_five_nines() {
    let q = spectrum_quantiles();
    assert_eq!(q[0], 0.0);
    assert!((q[20] - 0.9).abs() < 1e-12 && (q[100] - 0.99999).abs() < 1e-12);
}

#[test]
fn the_shards_section_puts_the_hot_shard_first_and_names_it() {
    let mut m = merged(3);
    let html = render(&m, &[]);
    assert!(!html.contains("id=\"shards\""), "no shards, no section");
    assert!(!html.contains("#shards"));
    for (i, (acked, throttled)) in [(900u64, 0u64), (300, 700), (800, 5)]
        .into_iter()
        .enumerate()
    {
        let c = m
            .summary
            .by_shard
            .entry(format!("shardId-{i:012}"))
            .or_default();
        c.acknowledged = acked;
        if throttled > 0 {
            c.retried_by_code
                .insert("ProvisionedThroughputExceededException".into(), throttled);
        }
    }
    let html = render(&m, &[]);
    assert!(html.contains("<a href=\"#shards\">Shards</a>"));
    let section = &html[html.find("<section id=\"shards\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(
        section.contains(
            "Hot shard: <code>shardId-000000000001</code> was throttled 700 times, 99.3%"
        ),
        "{section}"
    );
    let order: Vec<&str> = section
        .match_indices("data-shard=\"")
        .map(|(at, _)| &section[at + 12..at + 32])
        .collect();
    assert_eq!(
        order,
        [
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000000"
        ]
    );
    assert_eq!(section.matches("class=\"row-bad\"").count(), 1);
    assert!(section.contains("data-acknowledged=\"300\" data-throttled=\"700\""));
    // Throttling bars for the two throttled shards only: a shard never throttled has none
    // (a bar's minimum width would show it throttled a little).
    assert_eq!(section.matches("class=\"bar thr\"").count(), 2, "{section}");
    assert_eq!(section.matches("class=\"bar ack\"").count(), 3, "{section}");
}

#[test]
fn a_kinesis_run_says_what_carried_its_events() {
    let mut m = merged(3);
    let html = render(&m, &[]);
    assert!(!html.contains("id=\"kinesis-records\""), "not Kinesis");
    m.summary.kinesis = Some(crate::model::report::KinesisCounts {
        aggregation: "on".into(),
        kinesis_records: 4,
        put_records_calls: 3,
    });
    let html = render(&m, &[]);
    let events = &html[html.find("id=\"events\"").unwrap()..];
    let events = &events[..events.find("</div>").unwrap()];
    for expected in [
        "<tr id=\"kinesis-aggregation\"><th>KPL aggregation</th><td class=\"num\">on</td></tr>",
        "<tr id=\"kinesis-records\"><th>Kinesis records</th><td class=\"num\">4</td></tr>",
        // 50 acknowledged events in 4 Kinesis records.
        "<th>events per Kinesis record</th><td class=\"num\">12.5</td>",
        "<tr id=\"put-records-calls\"><th>PutRecords calls</th><td class=\"num\">3</td></tr>",
    ] {
        assert!(events.contains(expected), "{expected} in {events}");
    }
}

/// A merged `e2e` object: 3 seconds of timeline, delivery as given.
fn e2e(lost: Option<u64>, missing: &[&str]) -> crate::model::report::E2e {
    use crate::model::report::{E2e, E2eCoverage, E2eSecond};
    let h = histogram();
    E2e {
        seen: 52,
        unique: Some(48),
        lost,
        duplicates: 3,
        unacknowledged_seen: Some(1),
        foreign: 7,
        latency_ms: Percentiles::of(&h),
        histogram: encode_histogram(&h),
        clock: "same <host> clock".into(),
        timeline: (0..3)
            .map(|s| E2eSecond {
                second: s,
                seen: 10 + s,
                p50_ms: 3.5 + s as f64,
                p99_ms: 9.25,
                max_ms: 12.0 + s as f64,
            })
            .collect(),
        coverage: Some(E2eCoverage {
            consumers_reported: vec!["c1".into()],
            consumers_missing: missing.iter().map(|m| m.to_string()).collect(),
            producers_traced: 2,
            notes: if missing.is_empty() {
                Vec::new()
            } else {
                vec!["lost is unknown: c2 did not report".into()]
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_end_to_end_section_shows_the_funnel_the_clocks_and_latency_per_second() {
    let mut m = merged(3);
    let html = render(&m, &[]);
    assert!(!html.contains("id=\"e2e\""), "no consumers, no section");
    m.summary.end_to_end.e2e = Some(e2e(Some(2), &[]));
    let html = render(&m, &[]);
    assert!(html.contains("<a href=\"#e2e\">End to end</a>"));
    let section = &html[html.find("<section id=\"e2e\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(
        section.contains("1 of 1 consumer task(s) reported"),
        "{section}"
    );
    assert!(section.contains("Same &lt;host&gt; clock."), "{section}");
    // planned → sent → acknowledged → seen, from the producers' counts and the distinct seen.
    let stages: Vec<&str> = section
        .match_indices("data-stage=\"")
        .map(|(at, _)| {
            let rest = &section[at + 12..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(stages, ["planned", "sent", "acknowledged", "seen"]);
    assert!(section.contains("data-stage=\"sent\" data-value=\"100\""));
    assert!(section.contains("data-stage=\"acknowledged\" data-value=\"50\""));
    assert!(section.contains("data-stage=\"seen\" data-value=\"48\""));
    assert!(section.contains("data-key=\"lost\" data-value=\"2\""));
    assert!(section.contains("data-key=\"duplicates\" data-value=\"3\""));
    assert!(section.contains("data-key=\"foreign\" data-value=\"7\""));
    assert!(html.contains("id=\"e2e-summary\""), "a verdict card");
    // The chart carries the merged timeline exactly.
    let data_start = html.find("id=\"chart-data\">").unwrap() + "id=\"chart-data\">".len();
    let data_end = html[data_start..].find("</script>").unwrap() + data_start;
    let data: Value = serde_json::from_str(&html[data_start..data_end]).unwrap();
    let p50: Vec<(f64, f64)> = data["e2e"]["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(data["e2e"]["series"][0]["name"], "p50_ms");
    assert_eq!(p50, vec![(0.0, 3.5), (1.0, 4.5), (2.0, 5.5)]);
}

#[test]
fn a_missing_consumer_makes_loss_unknown_not_a_loss() {
    let mut m = merged(3);
    m.summary.end_to_end.e2e = Some(e2e(None, &["c2 (no report)"]));
    let html = render(&m, &[]);
    let section = &html[html.find("<section id=\"e2e\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(
        section.contains("1 of 2 consumer task(s) reported"),
        "{section}"
    );
    assert!(
        section.contains("data-key=\"lost\" data-value=\"\""),
        "{section}"
    );
    assert!(
        section.contains(
            "c2 (no report) did not report: what they would have read is not counted as lost"
        ),
        "{section}"
    );
    assert!(html.contains("lost unknown (a consumer did not report)"));
}
