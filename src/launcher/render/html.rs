//! The self-contained HTML report of a merged run, `merged/report.html`: one file with its CSS,
//! its charts (inline SVG drawn here) and a few lines of inline script for hover tooltips. It
//! names no external URL at all, so it opens from a laptop, an S3 download or a CI artifact
//! without a network, and a strict Content-Security-Policy forbids the browser to fetch anything.
//!
//! The page puts the verdict first (thresholds with measured values, which tasks reported, the
//! achieved against the target rate, the event counts), then throughput, latency over time,
//! the latency percentile spectrum, errors by code over time, one row per task, and the
//! scenario as run.
//!
//! Every chart carries its data in a machine-checkable form, twice: each series is drawn as a
//! `<polyline data-series="NAME">` (split where a latency series has no measurement; error
//! codes are stacked bars, `<g class="bars" data-series="CODE">`) and listed as a
//! `<g class="pts" data-series="NAME">` of one `<circle data-second="S" data-value="V">` per
//! point (`data-quantile` on the spectrum), and the page holds the exact arrays in
//! `<script type="application/json" id="chart-data">`. Values are printed in Rust's shortest
//! round-trip form, so they compare exactly with `merged/timeseries.csv`. The series names are
//! the CSV's column names (`attempted`, `p99_ms`, …), the error codes, and `latency` and
//! `service_time` on the spectrum.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::launcher::gate::ThresholdResult;
use crate::launcher::merge::Merged;
use crate::launcher::render::format::{
    compact, duration_label, rate, seconds_label, thousands, timestamp, trim,
};
use crate::model::profile::LoadProfile;
use crate::model::report::{Outcome, Percentiles, SecondRow, Summary};

/// Name of the report file in `merged/`.
pub const REPORT_FILE: &str = "report.html";
/// The percentile spectrum's x axis ends at this many nines: 99.999 %.
pub const SPECTRUM_NINES: u32 = 5;
/// Points of the percentile spectrum per nine (per decade of `1/(1-q)`): 20 gives 101 points
/// from 0 % to 99.999 %, smooth at any zoom and small in the file.
pub const SPECTRUM_STEPS_PER_NINE: u32 = 20;
/// Series with at most this many points show a dot per point; longer ones (a 1-hour run has
/// 3,600) show only the line, and their dots stay in the page as data for tooltips and tests.
const DOTS_UP_TO: usize = 120;
/// Stage boundaries are drawn on the throughput chart for profiles of at most this many stages.
const MAX_STAGE_MARKS: usize = 24;

/// Renders the report of a merged run with the results of its thresholds.
pub fn render(merged: &Merged, thresholds: &[ThresholdResult]) -> String {
    render_with_fleet_problems(merged, thresholds, &[])
}

/// Like [`render`], with the fleet problems the launcher saw (tasks that could not be started
/// or exited non-zero): they make the verdict "fleet failed", as they make the exit code 3.
pub fn render_with_fleet_problems(
    merged: &Merged,
    thresholds: &[ThresholdResult],
    fleet_problems: &[String],
) -> String {
    let s = &merged.summary;
    let time = TimeAxis::of(merged);

    let charts = [
        throughput_chart(merged, &time),
        latency_chart(&merged.rows, &time),
        spectrum_chart(&merged.latency, &merged.service),
        errors_chart(s, &time),
    ];

    let mut out = String::with_capacity(64 * 1024 + merged.rows.len() * 700);
    head(&mut out, s, thresholds, fleet_problems);
    let _ = write!(
        out,
        "<header><h1>fleetload run <span id=\"run-id\">{}</span></h1><p class=\"sub\">target \
         <b>{}</b> · planned start {} · fleetload {}</p>{}</header>\n<main>\n",
        esc(&s.run_id),
        esc(if s.target.is_empty() { "?" } else { &s.target }),
        esc(&timestamp(Some(s.planned_start))),
        esc(&s.fleetload_version),
        NAV,
    );
    verdict(&mut out, merged, thresholds, fleet_problems);

    section_open(&mut out, "throughput", "Throughput per second");
    out.push_str(
        "<p class=\"note\">Events attempted, acknowledged and finally failed in each second from \
         the planned start, summed over the tasks, with the target rate of the load profile \
         (dashed). Shaded: seconds with failed events.</p>\n",
    );
    chart(&mut out, &charts[0]);
    out.push_str("</section>\n");

    section_open(&mut out, "latency", "Latency per second");
    out.push_str(
        "<p class=\"note\">Latency from the <em>intended</em> send time (free of coordinated \
         omission) of the events acknowledged in each second: p50, p99 and max, exact from the \
         summed per-second histograms. Log scale; gaps are seconds with nothing \
         acknowledged.</p>\n",
    );
    chart(&mut out, &charts[1]);
    out.push_str("</section>\n");

    section_open(&mut out, "spectrum", "Latency percentile spectrum");
    out.push_str(
        "<p class=\"note\">The whole run's latency at each percentile, from the merged \
         HdrHistograms (added, never averaged): intended-time latency and service time (from \
         the actual send). The x axis is scaled by 1/(1−q), so each tick is one more nine.</p>\n",
    );
    match &charts[2] {
        Some(_) => chart(&mut out, &charts[2]),
        None => out.push_str("<p class=\"empty\">No spectrum: nothing was measured.</p>\n"),
    }
    percentile_table(&mut out, s);
    out.push_str("</section>\n");

    section_open(&mut out, "errors", "Errors by code");
    errors_section(&mut out, s, &charts[3]);
    out.push_str("</section>\n");

    tasks_section(&mut out, merged);
    scenario_section(&mut out, s);
    out.push_str("</main>\n");
    let _ = writeln!(
        out,
        "<footer>Next to this file: summary.json, timeseries.csv (the per-second rows drawn \
         above) and histograms.hlog (per-second HdrHistograms). Schema version {}.</footer>",
        s.schema_version
    );

    // The exact data of every chart, for tooltips and for anyone who wants the numbers.
    let data: serde_json::Map<String, Value> = charts
        .iter()
        .flatten()
        .map(|c| (c.id.to_string(), c.json()))
        .collect();
    let json = serde_json::to_string(&Value::Object(data)).expect("chart data serializes");
    // `<` only occurs inside JSON strings, where \u003c means the same: the script element
    // cannot be closed early by an error code or a series name.
    let _ = write!(
        out,
        "<div id=\"tip\" hidden></div>\n<script type=\"application/json\" id=\"chart-data\">{}\
         </script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        json.replace('<', "\\u003c")
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Page parts

const NAV: &str = "<nav><a href=\"#verdict\">Verdict</a><a href=\"#throughput\">Throughput</a>\
<a href=\"#latency\">Latency</a><a href=\"#spectrum\">Spectrum</a><a href=\"#errors\">Errors</a>\
<a href=\"#tasks\">Tasks</a><a href=\"#scenario\">Scenario</a></nav>";

fn head(out: &mut String, s: &Summary, thresholds: &[ThresholdResult], problems: &[String]) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>fleetload {} — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&s.run_id),
        esc(verdict_of(s, thresholds, problems).0),
    );
}

fn section_open(out: &mut String, id: &str, title: &str) {
    let _ = writeln!(out, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
}

/// The verdict as the launcher decides it: `(headline, css class, exit code, reason)`.
fn verdict_of(
    s: &Summary,
    thresholds: &[ThresholdResult],
    fleet_problems: &[String],
) -> (&'static str, &'static str, u8, Option<String>) {
    let fleet_reason = match &s.outcome {
        Outcome::Completed if fleet_problems.is_empty() => None,
        Outcome::Completed => Some(format!("{} fleet problem(s)", fleet_problems.len())),
        Outcome::Failed { reason } => Some(reason.clone()),
        Outcome::Interrupted { signal } => Some(format!("interrupted by {signal}")),
    };
    match fleet_reason {
        Some(reason) => ("FLEET FAILED", "failed", 3, Some(reason)),
        None if thresholds.iter().any(|r| !r.held) => ("THRESHOLD BROKEN", "broken", 1, None),
        None => ("PASSED", "passed", 0, None),
    }
}

fn verdict(out: &mut String, m: &Merged, thresholds: &[ThresholdResult], problems: &[String]) {
    let s = &m.summary;
    let (headline, class, code, reason) = verdict_of(s, thresholds, problems);
    let broken = thresholds.iter().filter(|r| !r.held).count();
    let threshold_text = if thresholds.is_empty() {
        "no thresholds given".to_string()
    } else if broken == 0 {
        format!(
            "{} of {} thresholds held",
            thresholds.len(),
            thresholds.len()
        )
    } else {
        format!("{broken} of {} thresholds broken", thresholds.len())
    };
    let _ = write!(
        out,
        "<section id=\"verdict\"><h2>Verdict</h2>\n<div class=\"banner {class}\" \
         data-exit-code=\"{code}\"><b>{headline}</b> <span>(exit {code})</span> — {}{}</div>\n",
        esc(&threshold_text),
        reason
            .map(|r| format!("<div class=\"reason\">{}</div>", esc(&r)))
            .unwrap_or_default()
    );
    if !problems.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for p in problems {
            let _ = write!(out, "<li>fleet problem: {}</li>", esc(p));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<div class=\"cards\">\n");

    // Thresholds.
    out.push_str("<div class=\"card wide\"><h3>Thresholds</h3>");
    if thresholds.is_empty() {
        out.push_str("<p class=\"muted\">No thresholds were given (<code>--threshold</code>).</p>");
    } else {
        out.push_str(
            "<table id=\"thresholds\" class=\"compact\"><thead><tr><th>result</th><th>threshold</th>\
             <th>limit</th><th class=\"num\">measured</th></tr></thead><tbody>",
        );
        for r in thresholds {
            let _ = write!(
                out,
                "<tr class=\"{}\"><td><span class=\"tag {}\">{}</span></td><td><code>{}</code>\
                 </td><td>{}</td><td class=\"num\">{}</td></tr>",
                if r.held { "" } else { "row-bad" },
                if r.held { "ok" } else { "bad" },
                if r.held { "held" } else { "BROKEN" },
                esc(&r.expression),
                esc(&r.limit),
                esc(&r.measured_text)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</div>\n");

    // Coverage.
    out.push_str("<div class=\"card\" id=\"coverage\"><h3>Tasks</h3>");
    match &s.merge {
        Some(info) => {
            let completed = info
                .tasks
                .iter()
                .filter(|t| t.outcome == "completed")
                .count();
            let all = info.tasks_missing.is_empty() && info.tasks_not_completed.is_empty();
            let _ = write!(
                out,
                "<p class=\"big {}\">{} of {} reported</p><p>{} completed · coverage {:.1} %</p>",
                if all { "ok" } else { "bad" },
                info.tasks_reported,
                info.tasks_expected,
                completed,
                info.coverage * 100.0
            );
            if !info.tasks_missing.is_empty() {
                let _ = write!(
                    out,
                    "<p class=\"bad\">missing ({}):</p><ul id=\"missing-tasks\" class=\"ids\">",
                    info.tasks_missing.len()
                );
                for id in &info.tasks_missing {
                    let _ = write!(out, "<li><code>{}</code></li>", esc(id));
                }
                out.push_str("</ul>");
            }
            if !info.tasks_not_completed.is_empty() {
                let _ = write!(
                    out,
                    "<p class=\"bad\">did not complete ({}):</p><ul id=\"not-completed\" \
                     class=\"ids\">",
                    info.tasks_not_completed.len()
                );
                for p in &info.tasks_not_completed {
                    let _ = write!(
                        out,
                        "<li><code>{}</code> {}</li>",
                        esc(&p.task_id),
                        esc(&outcome_text(&p.outcome))
                    );
                }
                out.push_str("</ul>");
            }
        }
        None => {
            let _ = write!(out, "<p>outcome: {}</p>", esc(&outcome_text(&s.outcome)));
        }
    }
    out.push_str("</div>\n");

    // Rate.
    out.push_str("<div class=\"card\" id=\"rate\"><h3>Rate</h3>");
    let _ = write!(
        out,
        "<p class=\"big\">{}/s achieved</p>",
        rate(s.achieved_rate)
    );
    match s.target_rate {
        Some(t) if t > 0.0 => {
            let pct = s.achieved_rate / t * 100.0;
            let _ = write!(
                out,
                "<p class=\"{}\">of {}/s targeted ({pct:.1} %)</p>",
                if pct >= 99.0 { "ok" } else { "warn" },
                rate(t)
            );
        }
        _ => out.push_str("<p class=\"muted\">unpaced (as fast as the target accepts)</p>"),
    }
    let _ = writeln!(
        out,
        "<p>over {:.1} s{}</p></div>",
        s.duration_s,
        if s.late_start_ms > 0 {
            format!(
                " · latest start {} ms after the planned start",
                thousands(s.late_start_ms)
            )
        } else {
            String::new()
        }
    );

    // Events.
    let c = &s.counts;
    let _ = write!(
        out,
        "<div class=\"card\" id=\"events\"><h3>Events</h3><table class=\"kv\">\
         <tr><th>attempted</th><td class=\"num\">{}</td></tr>\
         <tr><th>acknowledged</th><td class=\"num\">{}</td></tr>\
         <tr class=\"{}\"><th>failed</th><td class=\"num\">{}</td></tr>\
         <tr><th>retried</th><td class=\"num\">{}</td></tr>\
         <tr><th>error rate</th><td class=\"num\">{:.4} %</td></tr>\
         <tr><th>bytes</th><td class=\"num\">{}</td></tr></table>",
        thousands(c.attempted),
        thousands(c.acknowledged),
        if c.failed > 0 { "bad" } else { "" },
        thousands(c.failed),
        thousands(c.retried),
        c.error_rate() * 100.0,
        thousands(s.bytes)
    );
    let firsts = error_spans(s);
    if !firsts.is_empty() {
        out.push_str("<p class=\"bad\">errors by code:</p><ul class=\"ids\">");
        for (code, span) in &firsts {
            let _ = write!(
                out,
                "<li><code>{}</code>: {} failed or retried, seconds {}–{}</li>",
                esc(code),
                thousands(span.total),
                span.first,
                span.last
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>\n");

    // Latency.
    let _ = writeln!(
        out,
        "<div class=\"card\" id=\"latency-summary\"><h3>Latency</h3>\
         <p class=\"big\">p99 {}</p><p>p50 {} · max {}</p><p class=\"muted\">from the intended \
         send time; service time p99 {}</p></div>",
        ms_text(&s.latency_ms, s.latency_ms.p99),
        ms_text(&s.latency_ms, s.latency_ms.p50),
        ms_text(&s.latency_ms, s.latency_ms.max),
        ms_text(&s.service_time_ms, s.service_time_ms.p99),
    );
    out.push_str("</div>\n</section>\n");
}

fn ms_text(p: &Percentiles, v: f64) -> String {
    if p.count == 0 {
        "— (nothing measured)".to_string()
    } else {
        format!("{} ms", trim(v, 3))
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Completed => "completed".into(),
        Outcome::Interrupted { signal } => format!("interrupted ({signal})"),
        Outcome::Failed { reason } => format!("failed ({reason})"),
    }
}

fn percentile_table(out: &mut String, s: &Summary) {
    out.push_str(
        "<table id=\"percentiles\" class=\"compact\"><thead><tr><th>ms</th>\
         <th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th>\
         <th class=\"num\">p99.9</th><th class=\"num\">max</th><th class=\"num\">mean</th>\
         <th class=\"num\">count</th></tr></thead><tbody>",
    );
    for (label, p) in [
        ("intended-time latency", &s.latency_ms),
        ("service time", &s.service_time_ms),
    ] {
        if p.count == 0 {
            let _ = write!(
                out,
                "<tr><th>{label}</th><td colspan=\"7\" class=\"muted\">nothing measured</td></tr>"
            );
            continue;
        }
        let _ = write!(out, "<tr><th>{label}</th>");
        for v in [p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean] {
            let _ = write!(out, "<td class=\"num\">{}</td>", trim(v, 3));
        }
        let _ = write!(out, "<td class=\"num\">{}</td></tr>", thousands(p.count));
    }
    out.push_str("</tbody></table>\n");
}

fn errors_section(out: &mut String, s: &Summary, chart_data: &Option<Chart>) {
    let spans = error_spans(s);
    let codes: BTreeSet<&String> = s
        .counts
        .failed_by_code
        .keys()
        .chain(s.counts.retried_by_code.keys())
        .chain(s.errors_timeline.keys())
        .collect();
    if codes.is_empty() {
        out.push_str("<p class=\"empty ok\" id=\"no-errors\">No errors: every event was acknowledged at its first attempt.</p>\n");
        return;
    }
    out.push_str(
        "<p class=\"note\">Events that met an error in each second, by error code: retried \
         attempts and final failures (a throttled event retried twice counts twice). The \
         dashed line marks where each code started.</p>\n",
    );
    match chart_data {
        Some(_) => chart(out, chart_data),
        None => out.push_str("<p class=\"empty\">No error was recorded per second.</p>\n"),
    }
    out.push_str(
        "<table id=\"errors-table\"><thead><tr><th>code</th><th class=\"num\">failed</th>\
         <th class=\"num\">retried</th><th class=\"num\">first second</th>\
         <th class=\"num\">last second</th><th class=\"num\">seconds with errors</th>\
         <th class=\"num\">peak per second</th></tr></thead><tbody>",
    );
    for code in codes {
        let failed = s.counts.failed_by_code.get(code).copied().unwrap_or(0);
        let retried = s.counts.retried_by_code.get(code).copied().unwrap_or(0);
        let span = spans.get(code.as_str());
        let _ = write!(
            out,
            "<tr data-code=\"{}\"><td><code>{}</code></td><td class=\"num{}\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(code),
            esc(code),
            if failed > 0 { " bad" } else { "" },
            thousands(failed),
            thousands(retried),
            span.map_or("—".into(), |p| p.first.to_string()),
            span.map_or("—".into(), |p| p.last.to_string()),
            span.map_or("—".into(), |p| thousands(p.seconds)),
            span.map_or("—".into(), |p| thousands(p.peak)),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// Where one error code occurred.
struct ErrorSpan {
    first: u64,
    last: u64,
    seconds: u64,
    peak: u64,
    total: u64,
}

fn error_spans(s: &Summary) -> BTreeMap<&str, ErrorSpan> {
    s.errors_timeline
        .iter()
        .filter_map(|(code, points)| {
            let nonzero: Vec<&(u64, u64)> = points.iter().filter(|(_, n)| *n > 0).collect();
            Some((
                code.as_str(),
                ErrorSpan {
                    first: nonzero.iter().map(|(s, _)| *s).min()?,
                    last: nonzero.iter().map(|(s, _)| *s).max()?,
                    seconds: nonzero.len() as u64,
                    peak: nonzero.iter().map(|(_, n)| *n).max()?,
                    total: nonzero.iter().map(|(_, n)| *n).sum(),
                },
            ))
        })
        .collect()
}

/// One row of the task table.
struct TaskLine<'a> {
    id: &'a str,
    status: &'a str,
    reason: Option<String>,
    numbers: Option<TaskNumbers>,
    late_ms: Option<u64>,
}

struct TaskNumbers {
    acknowledged: u64,
    failed: u64,
    rate: f64,
    p99: f64,
    max: f64,
}

fn tasks_section(out: &mut String, m: &Merged) {
    section_open(out, "tasks", "Tasks");
    let Some(info) = &m.summary.merge else {
        out.push_str("<p class=\"empty\">This summary holds no task list.</p></section>\n");
        return;
    };
    let by_id: BTreeMap<&str, &Summary> = m.tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let reasons: BTreeMap<&str, String> = info
        .tasks_not_completed
        .iter()
        .filter_map(|p| match &p.outcome {
            Outcome::Completed => None,
            Outcome::Interrupted { signal } => Some((p.task_id.as_str(), signal.clone())),
            Outcome::Failed { reason } => Some((p.task_id.as_str(), reason.clone())),
        })
        .collect();
    let mut lines: Vec<TaskLine> = info
        .tasks
        .iter()
        .map(|t| {
            let summary = by_id.get(t.task_id.as_str());
            TaskLine {
                id: &t.task_id,
                status: &t.outcome,
                reason: reasons.get(t.task_id.as_str()).cloned(),
                numbers: Some(TaskNumbers {
                    acknowledged: t.acknowledged,
                    failed: t.failed,
                    rate: t.achieved_rate,
                    p99: t.p99_ms,
                    max: t.max_ms,
                }),
                late_ms: summary.map(|s| s.late_start_ms),
            }
        })
        .chain(info.tasks_missing.iter().map(|id| TaskLine {
            id,
            status: "missing",
            reason: Some("no report".into()),
            numbers: None,
            late_ms: None,
        }))
        .collect();
    // Unhealthy tasks first, then the slowest: the task to look at is at the top of a table of
    // a thousand rows.
    let rank = |status: &str| match status {
        "failed" => 0,
        "missing" => 1,
        "interrupted" => 2,
        _ => 3,
    };
    lines.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then_with(|| {
                let p = |l: &TaskLine| l.numbers.as_ref().map_or(-1.0, |n| n.p99);
                p(b).total_cmp(&p(a))
            })
            .then_with(|| a.id.cmp(b.id))
    });
    let measured: Vec<&TaskLine> = lines
        .iter()
        .filter(|l| l.numbers.as_ref().is_some_and(|n| n.p99 > 0.0))
        .collect();
    let max_p99 = measured
        .iter()
        .filter_map(|l| l.numbers.as_ref().map(|n| n.p99))
        .fold(0.0, f64::max);
    // The slowest task is only worth marking when there is another one to compare with.
    let slowest = if measured.len() >= 2 {
        measured
            .iter()
            .max_by(|a, b| {
                let p = |l: &TaskLine| l.numbers.as_ref().map_or(0.0, |n| n.p99);
                p(a).total_cmp(&p(b)).then_with(|| b.id.cmp(a.id))
            })
            .map(|l| l.id)
    } else {
        None
    };
    let unhealthy = lines.iter().filter(|l| l.status != "completed").count();
    let _ = write!(
        out,
        "<p class=\"note\">{} task(s), {} unhealthy. Unhealthy tasks first (failed, missing, \
         interrupted), then by p99, slowest first; the bar compares each task's p99 with the \
         slowest.</p>\n<table id=\"tasks-table\"><thead><tr><th>task</th><th>outcome</th>\
         <th class=\"num\">acknowledged</th><th class=\"num\">failed</th>\
         <th class=\"num\">rate /s</th><th class=\"num\">p99 ms</th><th></th>\
         <th class=\"num\">max ms</th><th class=\"num\">late start ms</th></tr></thead><tbody>\n",
        lines.len(),
        unhealthy
    );
    for l in &lines {
        let is_slowest = slowest == Some(l.id);
        let class = match l.status {
            "completed" if is_slowest => "row-slow",
            "completed" => "",
            "interrupted" => "row-warn",
            _ => "row-bad",
        };
        let _ =
            write!(
            out,
            "<tr class=\"{class}\" data-task=\"{}\" data-outcome=\"{}\"{}><td><code>{}</code>{}\
             </td><td><span class=\"tag {}\">{}</span>{}</td>",
            esc(l.id),
            esc(l.status),
            if is_slowest { " data-slowest=\"true\"" } else { "" },
            esc(l.id),
            if is_slowest {
                " <span class=\"tag slow\">slowest</span>"
            } else {
                ""
            },
            match l.status {
                "completed" => "ok",
                "interrupted" => "warn",
                _ => "bad",
            },
            esc(l.status),
            l.reason
                .as_ref()
                .filter(|_| l.status != "missing")
                .map(|r| format!("<div class=\"reason\">{}</div>", esc(r)))
                .unwrap_or_default()
        );
        match &l.numbers {
            Some(n) => {
                let width = if max_p99 > 0.0 {
                    n.p99 / max_p99 * 100.0
                } else {
                    0.0
                };
                let _ = writeln!(
                    out,
                    "<td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}\
                     </td><td class=\"num\">{}</td><td class=\"barcell\"><div class=\"bar\" \
                     style=\"width:{width:.1}%\"></div></td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td></tr>",
                    thousands(n.acknowledged),
                    if n.failed > 0 { " bad" } else { "" },
                    thousands(n.failed),
                    rate(n.rate),
                    trim(n.p99, 3),
                    trim(n.max, 3),
                    l.late_ms.map_or("—".into(), thousands),
                );
            }
            None => out.push_str(
                "<td class=\"muted\" colspan=\"7\">no report: nothing it did is in the totals \
                 above</td></tr>\n",
            ),
        }
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn scenario_section(out: &mut String, s: &Summary) {
    section_open(out, "scenario", "Scenario and run");
    let _ = writeln!(
        out,
        "<table class=\"kv\" id=\"run-table\"><tr><th>run id</th><td><code>{}</code></td></tr>\
         <tr><th>target</th><td>{}</td></tr>\
         <tr><th>planned start</th><td>{}</td></tr>\
         <tr><th>actual start</th><td>{}</td></tr>\
         <tr><th>end</th><td>{}</td></tr>\
         <tr><th>duration</th><td>{:.3} s</td></tr>\
         <tr><th>latest start</th><td>{} ms after the planned start</td></tr>\
         <tr><th>fleetload version</th><td>{}</td></tr></table>",
        esc(&s.run_id),
        esc(&s.target),
        esc(&timestamp(Some(s.planned_start))),
        esc(&timestamp(s.actual_start)),
        esc(&timestamp(s.end)),
        s.duration_s,
        thousands(s.late_start_ms),
        esc(&s.fleetload_version),
    );
    out.push_str(
        "<h3>Scenario</h3><p class=\"note\">The <code>FLEETLOAD_*</code> settings every task \
         shared, secrets redacted.</p>",
    );
    if s.scenario.is_empty() {
        out.push_str("<p class=\"empty\">No scenario recorded.</p>");
    } else {
        out.push_str("<table class=\"kv\" id=\"scenario-table\">");
        for (k, v) in &s.scenario {
            let _ = write!(
                out,
                "<tr><th><code>{}</code></th><td><code>{}</code></td></tr>",
                esc(k),
                esc(v)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("\n</section>\n");
}

// ---------------------------------------------------------------------------------------------
// The charts' data

/// The seconds axis shared by the time charts, so they line up one above the other.
struct TimeAxis {
    last: u64,
}

impl TimeAxis {
    fn of(m: &Merged) -> Self {
        let last_row = m.rows.last().map_or(0, |r| r.second);
        let last_error = m
            .summary
            .errors_timeline
            .values()
            .flat_map(|p| p.iter().map(|(s, _)| *s))
            .max()
            .unwrap_or(0);
        TimeAxis {
            last: last_row.max(last_error),
        }
    }

    fn domain(&self) -> (f64, f64) {
        (0.0, self.last.max(1) as f64)
    }
}

fn series(name: &str, color: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        label: name.to_string(),
        color: color.to_string(),
        dashed: false,
        zero_is_gap: false,
        sparse: false,
        points,
    }
}

fn column(rows: &[SecondRow], f: impl Fn(&SecondRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter().map(|r| (r.second as f64, f(r))).collect()
}

fn throughput_chart(m: &Merged, time: &TimeAxis) -> Option<Chart> {
    if m.rows.is_empty() {
        return None;
    }
    let rows = &m.rows;
    let mut target = series("target_rate", "#222222", column(rows, |r| r.target_rate));
    target.label = "target rate".into();
    target.dashed = true;
    // Shade contiguous stretches of seconds with failed events.
    let mut bands: Vec<(f64, f64)> = Vec::new();
    for r in rows.iter().filter(|r| r.failed > 0) {
        let s = r.second as f64;
        match bands.last_mut() {
            Some((_, end)) if *end + 1.0 == s => *end = s,
            _ => bands.push((s, s)),
        }
    }
    Some(Chart {
        id: "throughput",
        x: XScale::Seconds,
        x_domain: time.domain(),
        y: YScale::Linear,
        unit: Unit::Events,
        y_label: "events per second",
        series: vec![
            series("attempted", "#8a96a3", column(rows, |r| r.attempted as f64)),
            series(
                "acknowledged",
                "#1a8a4a",
                column(rows, |r| r.acknowledged as f64),
            ),
            series("failed", "#d62728", column(rows, |r| r.failed as f64)),
            target,
        ],
        bands,
        markers: stage_marks(&m.summary, time),
        bars: false,
    })
}

/// Where each stage of `FLEETLOAD_STAGES` begins, labelled with its rate.
fn stage_marks(s: &Summary, time: &TimeAxis) -> Vec<Marker> {
    let Some(profile) = s
        .scenario
        .get("FLEETLOAD_STAGES")
        .and_then(|v| LoadProfile::parse_stages(v).ok())
    else {
        return Vec::new();
    };
    if profile.stages().len() > MAX_STAGE_MARKS || profile.stages().len() < 2 {
        return Vec::new();
    }
    let mut at = 0.0;
    let mut marks = Vec::new();
    for stage in profile.stages() {
        if at > 0.0 && at <= time.last as f64 {
            marks.push(Marker {
                x: at,
                label: format!(
                    "{}{}/s per task",
                    if stage.ramp { "ramp to " } else { "" },
                    compact(stage.rate)
                ),
                color: "#777777".into(),
                row: 0,
            });
        }
        at += stage.duration.as_secs_f64();
    }
    marks
}

fn latency_chart(rows: &[SecondRow], time: &TimeAxis) -> Option<Chart> {
    if rows.is_empty() {
        return None;
    }
    let gap = |mut s: Series| {
        s.zero_is_gap = true;
        s
    };
    Some(Chart {
        id: "latency",
        x: XScale::Seconds,
        x_domain: time.domain(),
        y: YScale::Log,
        unit: Unit::Millis,
        y_label: "latency (log scale)",
        series: vec![
            gap(series("p50_ms", "#1f77b4", column(rows, |r| r.p50_ms))),
            gap(series("p99_ms", "#ff7f0e", column(rows, |r| r.p99_ms))),
            gap(series("max_ms", "#c0392b", column(rows, |r| r.max_ms))),
        ]
        .into_iter()
        .map(|mut s| {
            s.label = s.name.trim_end_matches("_ms").to_string();
            s
        })
        .collect(),
        bands: Vec::new(),
        markers: Vec::new(),
        bars: false,
    })
}

/// The quantiles of the spectrum: `q = 1 - 10^(-k / SPECTRUM_STEPS_PER_NINE)`, 0 to 99.999 %.
pub fn spectrum_quantiles() -> Vec<f64> {
    (0..=SPECTRUM_NINES * SPECTRUM_STEPS_PER_NINE)
        .map(|k| 1.0 - 10f64.powf(-(k as f64) / SPECTRUM_STEPS_PER_NINE as f64))
        .collect()
}

/// The value (ms) a spectrum shows at quantile `q`: `value_at_quantile` of the histogram of
/// microseconds, divided by 1000 as the summary's percentiles are.
pub fn spectrum_value(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The spectrum of the merged histograms (decoded by the merge, not read back from the
/// summary's encoding); `None` when neither measured anything.
fn spectrum_chart(latency: &Histogram<u64>, service: &Histogram<u64>) -> Option<Chart> {
    let mut out = Vec::new();
    for (name, label, color, h) in [
        ("latency", "intended-time latency", "#1f77b4", latency),
        ("service_time", "service time", "#2ca02c", service),
    ] {
        if h.is_empty() {
            continue;
        }
        let points = spectrum_quantiles()
            .into_iter()
            .map(|q| (q, spectrum_value(h, q)))
            .collect();
        let mut series = series(name, color, points);
        series.label = label.into();
        out.push(series);
    }
    if out.is_empty() {
        return None;
    }
    Some(Chart {
        id: "spectrum",
        x: XScale::Nines,
        x_domain: (0.0, SPECTRUM_NINES as f64),
        y: YScale::Log,
        unit: Unit::Millis,
        y_label: "latency (log scale)",
        series: out,
        bands: Vec::new(),
        markers: Vec::new(),
        bars: false,
    })
}

const ERROR_COLORS: [&str; 8] = [
    "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];

fn errors_chart(s: &Summary, time: &TimeAxis) -> Option<Chart> {
    let spans = error_spans(s);
    if spans.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    let mut markers = Vec::new();
    for (i, (code, points)) in s.errors_timeline.iter().enumerate() {
        let color = ERROR_COLORS[i % ERROR_COLORS.len()];
        let mut series = series(
            code,
            color,
            points
                .iter()
                .map(|(sec, n)| (*sec as f64, *n as f64))
                .collect(),
        );
        series.sparse = true;
        if let Some(span) = spans.get(code.as_str()) {
            series.label = format!("{code} (from second {})", span.first);
            markers.push(Marker {
                x: span.first as f64,
                label: format!("{code} starts at {} s", span.first),
                color: color.to_string(),
                row: markers.len(),
            });
        }
        list.push(series);
    }
    Some(Chart {
        id: "errors",
        x: XScale::Seconds,
        x_domain: time.domain(),
        y: YScale::Linear,
        unit: Unit::Events,
        y_label: "events with this error per second",
        series: list,
        bands: Vec::new(),
        markers,
        bars: true,
    })
}

// ---------------------------------------------------------------------------------------------
// SVG charts

#[derive(Clone, Copy, PartialEq)]
enum XScale {
    /// Seconds from the planned start, linear.
    Seconds,
    /// A quantile q placed at `log10(1/(1-q))`: one unit per nine.
    Nines,
}

#[derive(Clone, Copy, PartialEq)]
enum YScale {
    Linear,
    Log,
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Events,
    /// Milliseconds, labelled as durations.
    Millis,
}

struct Series {
    /// `data-series`: the CSV column (or error code, or histogram).
    name: String,
    /// What the legend says.
    label: String,
    color: String,
    dashed: bool,
    /// A zero means "nothing measured" (latency of a second without acknowledgements): the line
    /// has a gap there instead of a dive.
    zero_is_gap: bool,
    /// Only recorded points are listed; other seconds are zero (errors).
    sparse: bool,
    /// `(x, value)`: x is a second or a quantile.
    points: Vec<(f64, f64)>,
}

struct Marker {
    x: f64,
    label: String,
    color: String,
    /// Label row, so labels of nearby markers do not overlap.
    row: usize,
}

struct Chart {
    id: &'static str,
    x: XScale,
    x_domain: (f64, f64),
    y: YScale,
    unit: Unit,
    y_label: &'static str,
    series: Vec<Series>,
    /// Shaded x ranges (inclusive seconds).
    bands: Vec<(f64, f64)>,
    markers: Vec<Marker>,
    /// Stacked bars per second instead of lines (counts of sparse events: a bar starts exactly
    /// at its second, where a line would slope in from the second before).
    bars: bool,
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;

fn chart(out: &mut String, chart: &Option<Chart>) {
    match chart {
        Some(c) => c.render(out),
        None => out.push_str("<p class=\"empty\">No data.</p>\n"),
    }
}

impl Chart {
    fn x_pos(&self, x: f64) -> f64 {
        let x = match self.x {
            XScale::Seconds => x,
            XScale::Nines => nines(x),
        };
        let (x0, x1) = self.x_domain;
        LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)
    }

    fn y_domain(&self) -> (f64, f64) {
        let values = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite());
        match self.y {
            YScale::Linear => {
                let max = if self.bars {
                    let mut stacks: BTreeMap<u64, f64> = BTreeMap::new();
                    for (x, v) in self.series.iter().flat_map(|s| &s.points) {
                        *stacks.entry(*x as u64).or_default() += v;
                    }
                    stacks.into_values().fold(0.0, f64::max)
                } else {
                    values.fold(0.0, f64::max)
                };
                if max <= 0.0 {
                    (0.0, 1.0)
                } else {
                    let step = nice_step(max / 5.0);
                    (0.0, (max / step).ceil() * step)
                }
            }
            YScale::Log => {
                let (lo, hi) = values
                    .filter(|v| *v > 0.0)
                    .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
                if hi <= 0.0 {
                    return (0.1, 10.0);
                }
                let lo = 10f64.powf(lo.log10().floor());
                let hi = 10f64.powf(hi.log10().ceil());
                (lo, if hi <= lo { lo * 10.0 } else { hi })
            }
        }
    }

    fn y_pos(&self, v: f64, (y0, y1): (f64, f64)) -> f64 {
        let h = HEIGHT - TOP - BOTTOM;
        let f = match self.y {
            YScale::Linear => (v - y0) / (y1 - y0),
            YScale::Log if v <= 0.0 => 0.0,
            YScale::Log => (v.log10() - y0.log10()) / (y1.log10() - y0.log10()),
        };
        TOP + h - f.clamp(0.0, 1.0) * h
    }

    fn y_ticks(&self, (y0, y1): (f64, f64)) -> Vec<f64> {
        match self.y {
            YScale::Linear => {
                let step = nice_step(y1 / 5.0);
                (0..)
                    .map(|i| y0 + i as f64 * step)
                    .take_while(|v| *v <= y1 * (1.0 + 1e-9))
                    .collect()
            }
            YScale::Log => {
                let decades = (y1 / y0).log10().round() as i32;
                let mut ticks = Vec::new();
                for d in 0..=decades {
                    let base = y0 * 10f64.powi(d);
                    ticks.push(base);
                    if decades <= 2 && d < decades {
                        ticks.push(base * 2.0);
                        ticks.push(base * 5.0);
                    }
                }
                ticks
            }
        }
    }

    fn x_ticks(&self) -> Vec<(f64, String)> {
        match self.x {
            XScale::Nines => (0..=SPECTRUM_NINES)
                .map(|n| {
                    let q = 1.0 - 10f64.powi(-(n as i32));
                    let label = if n == 0 {
                        "0%".to_string()
                    } else {
                        format!("{}%", trim(q * 100.0, n as usize))
                    };
                    (q, label)
                })
                .collect(),
            XScale::Seconds => {
                let (x0, x1) = self.x_domain;
                let span = x1 - x0;
                let step = [
                    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                    3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0,
                ]
                .into_iter()
                .find(|s| span / s <= 10.0)
                .unwrap_or(86400.0 * 7.0);
                (0..)
                    .map(|i| x0 + i as f64 * step)
                    .take_while(|v| *v <= x1)
                    .map(|v| (v, seconds_label(v as u64)))
                    .collect()
            }
        }
    }

    fn render(&self, out: &mut String) {
        let yd = self.y_domain();
        let (x0, x1) = self.x_domain;
        let pw = WIDTH - LEFT - RIGHT;
        let ph = HEIGHT - TOP - BOTTOM;
        let x_attr = match self.x {
            XScale::Seconds => "second",
            XScale::Nines => "quantile",
        };

        // The legend is HTML above the chart: it wraps instead of overlapping the lines.
        let _ = write!(
            out,
            "<figure class=\"chart\" id=\"chart-{}\"><div class=\"legend\">",
            self.id
        );
        for s in &self.series {
            let _ = write!(
                out,
                "<span class=\"key\" data-series=\"{}\"><i class=\"{}\" style=\"border-color:{}\">\
                 </i>{}</span>",
                esc(&s.name),
                if s.dashed { "dash" } else { "solid" },
                esc(&s.color),
                esc(&s.label)
            );
        }
        let _ = write!(
            out,
            "</div>\n<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" data-chart=\"{}\" \
             data-x=\"{x_attr}\" data-xscale=\"{}\" data-yscale=\"{}\" data-plot=\"{LEFT},{TOP},\
             {pw},{ph}\" data-xdomain=\"{x0},{x1}\" data-ydomain=\"{},{}\" role=\"img\" \
             aria-label=\"{}\">\n",
            self.id,
            match self.x {
                XScale::Seconds => "seconds",
                XScale::Nines => "nines",
            },
            match self.y {
                YScale::Linear => "linear",
                YScale::Log => "log",
            },
            yd.0,
            yd.1,
            esc(self.y_label),
        );

        // Grid and axes.
        out.push_str("<g class=\"grid\">");
        for v in self.y_ticks(yd) {
            let y = self.y_pos(v, yd);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
                LEFT + pw
            );
        }
        for (v, _) in self.x_ticks() {
            let x = self.x_pos(v);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{}\"/>",
                TOP + ph
            );
        }
        out.push_str("</g>\n<g class=\"axis\">");
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{0}\"/><line x1=\"{LEFT}\" \
             x2=\"{1}\" y1=\"{0}\" y2=\"{0}\"/>",
            TOP + ph,
            LEFT + pw
        );
        for v in self.y_ticks(yd) {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" dy=\"0.35em\">{}</text>",
                LEFT - 6.0,
                self.y_pos(v, yd),
                esc(&self.tick_label(v))
            );
        }
        let ticks = self.x_ticks();
        for (i, (v, label)) in ticks.iter().enumerate() {
            let x = self.x_pos(*v);
            // The last label is right-aligned so it stays inside the picture.
            let anchor = if i + 1 == ticks.len() && x > LEFT + pw - 20.0 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                TOP + ph + 16.0,
                esc(label)
            );
        }
        let _ = writeln!(
            out,
            "<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text class=\"title\" transform=\"translate(14 {}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text></g>",
            LEFT + pw / 2.0,
            HEIGHT - 6.0,
            match self.x {
                XScale::Seconds => "seconds from the planned start",
                XScale::Nines => "percentile",
            },
            TOP + ph / 2.0,
            esc(self.y_label)
        );

        for (a, b) in &self.bands {
            let xa = self.x_pos(a - 0.5).max(LEFT);
            let xb = self.x_pos(b + 0.5).min(LEFT + pw);
            let _ = write!(
                out,
                "<rect class=\"band\" data-from=\"{a}\" data-to=\"{b}\" x=\"{xa:.1}\" y=\"{TOP}\" \
                 width=\"{:.1}\" height=\"{ph}\"><title>failed events in seconds {a}–{b}\
                 </title></rect>",
                (xb - xa).max(1.0)
            );
        }

        for m in &self.markers {
            let x = self.x_pos(m.x);
            let _ = write!(
                out,
                "<line class=\"marker\" data-x=\"{}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" \
                 y2=\"{}\" stroke=\"{}\"/>",
                m.x,
                TOP + ph,
                esc(&m.color),
            );
        }

        // Bars or lines, then the points (data carriers, and dots on short series).
        let mut stacks: BTreeMap<u64, f64> = BTreeMap::new();
        let mut tops: Vec<Vec<f64>> = Vec::new();
        for s in self.series.iter().filter(|_| self.bars) {
            let slot = pw / (x1 - x0).max(1.0);
            let width = (slot * 0.8).max(1.0);
            let _ = write!(
                out,
                "<g class=\"bars\" data-series=\"{}\" fill=\"{}\">",
                esc(&s.name),
                esc(&s.color)
            );
            let mut series_tops = Vec::new();
            for (x, v) in &s.points {
                let base = stacks.entry(*x as u64).or_default();
                let (y_low, y_high) = (self.y_pos(*base, yd), self.y_pos(*base + v, yd));
                *base += v;
                series_tops.push(*base);
                let _ = write!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{y_high:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>",
                    self.x_pos(*x) - width / 2.0,
                    (y_low - y_high).max(0.5)
                );
            }
            tops.push(series_tops);
            out.push_str("</g>\n");
        }
        for s in self.series.iter().filter(|_| !self.bars) {
            for segment in self.segments(s) {
                let points: Vec<String> = segment
                    .iter()
                    .map(|(x, v)| format!("{:.1},{:.1}", self.x_pos(*x), self.y_pos(*v, yd)))
                    .collect();
                let _ = writeln!(
                    out,
                    "<polyline data-series=\"{}\" class=\"line{}\" stroke=\"{}\" points=\"{}\"/>",
                    esc(&s.name),
                    if s.dashed { " dash" } else { "" },
                    esc(&s.color),
                    points.join(" ")
                );
            }
        }
        for (i, s) in self.series.iter().enumerate() {
            // Dots mark the seconds of a short time series; a spectrum is a curve, bars are
            // their own marks.
            let dots = self.x == XScale::Seconds && !self.bars && s.points.len() <= DOTS_UP_TO;
            let _ = write!(
                out,
                "<g class=\"pts{}\" data-series=\"{}\" fill=\"{}\">",
                if dots { " dots" } else { "" },
                esc(&s.name),
                esc(&s.color)
            );
            for (k, (x, v)) in s.points.iter().enumerate() {
                let hidden = s.zero_is_gap && *v == 0.0;
                // On stacked bars the point sits on top of its bar.
                let at = tops.get(i).map_or(*v, |t| t[k]);
                let _ = write!(
                    out,
                    "<circle{} cx=\"{:.1}\" cy=\"{:.1}\" data-{x_attr}=\"{x}\" data-value=\"{v}\"/>",
                    if hidden { " class=\"gap\"" } else { "" },
                    self.x_pos(*x),
                    self.y_pos(at, yd),
                );
            }
            out.push_str("</g>\n");
        }

        for m in &self.markers {
            let x = self.x_pos(m.x);
            let right = x > LEFT + pw * 0.7;
            let _ = write!(
                out,
                "<text class=\"marker\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{}\" fill=\"{}\">{}\
                 </text>",
                if right { x - 4.0 } else { x + 4.0 },
                TOP + 12.0 + (m.row % 4) as f64 * 14.0,
                if right { "end" } else { "start" },
                esc(&m.color),
                esc(&m.label)
            );
        }
        let _ = writeln!(
            out,
            "<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{TOP}\" y2=\"{}\" visibility=\"hidden\"/>\
             <rect class=\"hit\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\"/>\
             </svg></figure>",
            TOP + ph
        );
    }

    /// The polylines of a series: split at gaps; a sparse series is drawn with its missing
    /// seconds at zero.
    fn segments(&self, s: &Series) -> Vec<Vec<(f64, f64)>> {
        if s.sparse {
            let at: BTreeMap<u64, f64> = s.points.iter().map(|(x, v)| (*x as u64, *v)).collect();
            let (x0, x1) = self.x_domain;
            return vec![(x0 as u64..=x1 as u64)
                .map(|sec| (sec as f64, at.get(&sec).copied().unwrap_or(0.0)))
                .collect()];
        }
        let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for p in &s.points {
            if s.zero_is_gap && p.1 == 0.0 {
                if !out.last().is_some_and(Vec::is_empty) {
                    out.push(Vec::new());
                }
            } else {
                out.last_mut().expect("never empty").push(*p);
            }
        }
        out.retain(|seg| !seg.is_empty());
        out
    }

    fn tick_label(&self, v: f64) -> String {
        match self.unit {
            Unit::Events => compact(v),
            Unit::Millis => duration_label(v),
        }
    }

    fn json(&self) -> Value {
        json!({
            "x": match self.x { XScale::Seconds => "second", XScale::Nines => "quantile" },
            "xscale": match self.x { XScale::Seconds => "seconds", XScale::Nines => "nines" },
            "unit": match self.unit { Unit::Events => "events/s", Unit::Millis => "ms" },
            "sparse": self.series.iter().any(|s| s.sparse),
            "series": self.series.iter().map(|s| json!({
                "name": s.name,
                "label": s.label,
                "color": s.color,
                "points": s.points.iter().map(|(x, v)| json!([x, v])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where quantile `q` sits on the spectrum's axis: `log10(1/(1-q))`, capped for q = 1.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        SPECTRUM_NINES as f64
    } else {
        -(1.0 - q).log10()
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let exp = 10f64.powf(raw.log10().floor());
    let f = raw / exp;
    exp * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

// ---------------------------------------------------------------------------------------------
// Text

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--fg:#1d232a;--muted:#5d6873;--line:#d8dde3;--bg:#fff;--panel:#f6f8fa;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1120px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 2px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:13px;margin:0 0 6px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.sub{margin:0;color:var(--muted)}
nav{margin:8px 0 0;display:flex;gap:14px;flex-wrap:wrap;font-size:13px}
nav a{color:#0b5cad;text-decoration:none}
code{font:12.5px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.banner{padding:12px 16px;border-radius:6px;font-size:16px;border-left:6px solid}
.banner b{font-size:20px;letter-spacing:.02em}
.banner.passed{background:#e8f5ec;border-color:var(--ok)}
.banner.broken{background:#fff4e5;border-color:var(--warn)}
.banner.failed{background:#fdecec;border-color:var(--bad)}
.banner .reason{font-size:14px;margin-top:4px}
.problems{color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:12px;margin-top:12px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.card.wide{grid-column:1/-1}
.card p{margin:2px 0}
.big{font-size:20px;font-weight:600}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
ul.ids{margin:2px 0 6px;padding-left:18px;max-height:180px;overflow:auto}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:190px;font-weight:600}
table.compact{width:auto}
table.compact td,table.compact th{padding-right:22px}
.card table.kv th{width:auto}
.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;font-weight:600;color:#fff;background:#777}
.tag.ok{background:var(--ok)}.tag.bad{background:var(--bad)}.tag.warn{background:var(--warn)}.tag.slow{background:#6f42c1}
tr.row-bad td{background:#fdecec}tr.row-warn td{background:#fff4e5}tr.row-slow td{background:#f1ebfb}
th.num{text-align:right}
table.kv tr.bad th,table.kv tr.bad td{color:var(--bad)}
.reason{font-size:12px;color:var(--muted)}
td.barcell{width:120px}
.bar{height:10px;background:#ff7f0e;border-radius:2px;min-width:1px}
.note{color:var(--muted);margin:4px 0 8px;font-size:13px}
.empty{padding:10px;background:var(--panel);border-radius:6px}
figure.chart{margin:6px 0 10px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px;margin-bottom:2px}
.legend .key{display:inline-flex;align-items:center;gap:6px}
.legend i{display:inline-block;width:22px;height:0;border-top:3px solid}
.legend i.dash{border-top-style:dashed}
svg.chart{width:100%;height:auto;display:block;font-size:12px;overflow:visible}
svg.chart .grid line{stroke:#edf0f3}
svg.chart .axis line{stroke:#8b949e}
svg.chart .axis text{fill:var(--muted)}
svg.chart .axis text.title{fill:var(--fg);font-weight:600}
svg.chart .line{fill:none;stroke-width:1.8;stroke-linejoin:round}
svg.chart .line.dash{stroke-dasharray:6 4;stroke-width:1.5}
svg.chart .pts circle{r:0;pointer-events:none}
svg.chart .pts.dots circle{r:2.6px}
svg.chart .pts circle.gap{display:none}
svg.chart .band{fill:#d62728;fill-opacity:.1}
svg.chart line.marker{stroke-dasharray:4 3;stroke-width:1.2}
svg.chart text.marker{font-size:11.5px;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg.chart .cursor{stroke:#444;stroke-width:1}
svg.chart .hit{fill:transparent}
#tip{position:fixed;z-index:10;pointer-events:none;background:rgba(255,255,255,.97);border:1px solid #aab;border-radius:4px;padding:6px 8px;font-size:12.5px;box-shadow:0 2px 6px rgba(0,0,0,.15);max-width:420px}
#tip div{white-space:nowrap}
#tip i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
footer{color:var(--muted);font-size:12px;margin:30px auto 24px}
@media print{nav{display:none}}
"#;

/// Hover tooltips: the values of every series at the second (or percentile) under the pointer,
/// read from the chart-data JSON. The DOM is built with textContent only.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var tip = document.getElementById("tip");
  function num(v) { return v.toLocaleString("en-US", {maximumFractionDigits: 3}); }
  function pct(q) { return (q * 100).toFixed(Math.max(0, Math.min(5, Math.ceil(-Math.log10(1 - q + 1e-12)) - 1))) + " %"; }
  function line(color, text) {
    var d = document.createElement("div");
    if (color) { var i = document.createElement("i"); i.style.background = color; d.appendChild(i); }
    d.appendChild(document.createTextNode(text));
    return d;
  }
  function at(points, x) {
    var lo = 0, hi = points.length - 1;
    while (lo < hi) { var m = (lo + hi) >> 1; if (points[m][0] < x) lo = m + 1; else hi = m; }
    return points.length && points[lo][0] === x ? points[lo][1] : null;
  }
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var d = data[svg.dataset.chart];
    if (!d) return;
    var plot = svg.dataset.plot.split(",").map(Number);
    var dom = svg.dataset.xdomain.split(",").map(Number);
    var nines = d.xscale === "nines";
    var tx = nines ? function (q) { return q >= 1 ? dom[1] : -Math.log10(1 - q); } : function (s) { return s; };
    var cursor = svg.querySelector(".cursor");
    var grid = nines && d.series.length ? d.series[0].points.map(function (p) { return p[0]; }) : null;
    function hide() { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); }
    svg.addEventListener("mousemove", function (e) {
      var pt = svg.createSVGPoint(); pt.x = e.clientX; pt.y = e.clientY;
      var p = pt.matrixTransform(svg.getScreenCTM().inverse());
      if (p.x < plot[0] || p.x > plot[0] + plot[2] || p.y < plot[1] || p.y > plot[1] + plot[3]) { hide(); return; }
      var x = dom[0] + (p.x - plot[0]) / plot[2] * (dom[1] - dom[0]), key;
      if (grid) {
        key = grid[0];
        grid.forEach(function (q) { if (Math.abs(tx(q) - x) < Math.abs(tx(key) - x)) key = q; });
      } else {
        key = Math.max(dom[0], Math.min(dom[1], Math.round(x)));
      }
      tip.textContent = "";
      tip.appendChild(line(null, nines ? "percentile " + pct(key) : "second " + key));
      d.series.forEach(function (s) {
        var v = at(s.points, key);
        if (v === null && d.sparse) v = 0;
        if (v === null) return;
        tip.appendChild(line(s.color, s.label + ": " + (d.unit === "ms" && v === 0 ? "—" : num(v) + " " + d.unit)));
      });
      var cx = plot[0] + (tx(key) - dom[0]) / (dom[1] - dom[0]) * plot[2];
      cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx); cursor.setAttribute("visibility", "visible");
      tip.hidden = false;
      var left = e.clientX + 14, top = e.clientY + 14;
      if (left + tip.offsetWidth > window.innerWidth - 8) left = e.clientX - tip.offsetWidth - 14;
      if (top + tip.offsetHeight > window.innerHeight - 8) top = e.clientY - tip.offsetHeight - 14;
      tip.style.left = left + "px"; tip.style.top = top + "px";
    });
    svg.addEventListener("mouseleave", hide);
  });
})();
"#;

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::model::report::{
        encode_histogram, new_histogram, Counts, Histograms, MergeInfo, TaskProblem, TaskRow,
        SCHEMA_VERSION,
    };

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
                attempted: 100,
                acknowledged: 50,
                failed: 50,
                failed_by_code: [("Throttled</script>".to_string(), 50)].into(),
                retried: 0,
                retried_by_code: BTreeMap::new(),
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
            })
            .collect();
        Merged {
            summary: summary(&rows),
            latency: histogram(),
            service: histogram(),
            rows,
            per_second: Vec::new(),
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
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
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
    fn axis_helpers() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(nice_step(4000.0), 5000.0);
        let q = spectrum_quantiles();
        assert_eq!(q[0], 0.0);
        assert!((q[20] - 0.9).abs() < 1e-12 && (q[100] - 0.99999).abs() < 1e-12);
    }
}
