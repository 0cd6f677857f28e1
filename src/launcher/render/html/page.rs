//! The sections of the report page, in the order a reader needs them: the verdict, throughput,
//! latency over time, the latency percentile spectrum, errors by code, end to end (when the run
//! had consumer tasks), one row per task, and the scenario as run. Each writes its
//! `<section>`; the charts come drawn by the chart engine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::chart::{draw, Chart};
use super::escape::esc;
use crate::launcher::gate::ThresholdResult;
use crate::launcher::merge::Merged;
use crate::launcher::render::format::{rate, thousands, timestamp, trim};
use crate::model::live::clock;
use crate::model::report::{saturation_words, E2e, Outcome, Percentiles, Summary};

fn section_open(out: &mut String, id: &str, title: &str) {
    let _ = writeln!(out, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
}

/// The verdict as the launcher decides it: `(headline, css class, exit code, reason)`.
pub(super) fn verdict_of(
    s: &Summary,
    thresholds: &[ThresholdResult],
    fleet_problems: &[String],
) -> (&'static str, &'static str, u8, Option<String>) {
    let fleet_reason = match &s.outcome {
        Outcome::Completed if fleet_problems.is_empty() => None,
        _ if s.stopped_by_abort() && fleet_problems.is_empty() => None,
        Outcome::Completed => Some(format!("{} fleet problem(s)", fleet_problems.len())),
        Outcome::Failed { reason } => Some(reason.clone()),
        Outcome::Interrupted { signal } => Some(format!("interrupted by {signal}")),
    };
    match (fleet_reason, &s.aborted) {
        (Some(reason), _) => ("FLEET FAILED", "failed", 3, Some(reason)),
        (None, Some(a)) => ("ABORTED", "broken", 1, Some(a.reason.clone())),
        (None, None) if thresholds.iter().any(|r| !r.held) => {
            ("THRESHOLD BROKEN", "broken", 1, None)
        }
        (None, None) => ("PASSED", "passed", 0, None),
    }
}

/// The verdict first: the banner with the exit code, then cards for the thresholds, the tasks
/// that reported, the rate achieved against the target, the event counts and the latency.
pub(super) fn verdict(
    out: &mut String,
    m: &Merged,
    thresholds: &[ThresholdResult],
    problems: &[String],
) {
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
    // When production did not keep up with its schedule: the same words as the table and the
    // worker's log.
    if let Some(words) = saturation_words(s) {
        let _ = writeln!(
            out,
            "<div class=\"reason saturation\" id=\"saturation\">{}</div>",
            esc(&words)
        );
    }
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
    if s.counts.acknowledged_in_drain > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\" id=\"drain\">+{} acknowledged after production ended, while \
             the tasks waited for the answers they were owed: in the target, not in the rate</p>",
            thousands(s.counts.acknowledged_in_drain)
        );
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
         <tr><th>bytes</th><td class=\"num\">{}</td></tr>",
        thousands(c.attempted),
        thousands(c.acknowledged),
        if c.failed > 0 { "bad" } else { "" },
        thousands(c.failed),
        thousands(c.retried),
        c.error_rate() * 100.0,
        thousands(s.bytes)
    );
    if let Some(k) = &s.kinesis {
        // What carried the events: counts above are user records, whatever the packing.
        let _ = write!(
            out,
            "<tr id=\"kinesis-aggregation\"><th>KPL aggregation</th><td class=\"num\">{}</td></tr>\
             <tr id=\"kinesis-records\"><th>Kinesis records</th><td class=\"num\">{}</td></tr>\
             <tr><th>events per Kinesis record</th><td class=\"num\">{}</td></tr>\
             <tr id=\"put-records-calls\"><th>PutRecords calls</th><td class=\"num\">{}</td></tr>",
            esc(&k.aggregation),
            thousands(k.kinesis_records),
            trim(k.per_record(c.acknowledged), 1),
            thousands(k.put_records_calls),
        );
    }
    out.push_str("</table>");
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
    if let Some(e) = &s.end_to_end.e2e {
        let _ = writeln!(
            out,
            "<div class=\"card\" id=\"e2e-summary\"><h3>End to end</h3>\
             <p class=\"big\">p99 {}</p><p class=\"{}\">{}</p><p>duplicates {}</p>\
             <p class=\"muted\"><a href=\"#e2e\">delivery and latency over time</a></p></div>",
            ms_text(&e.latency_ms, e.latency_ms.p99),
            match e.lost {
                Some(0) => "ok",
                Some(_) => "bad",
                None => "warn",
            },
            esc(&match e.lost {
                Some(n) => format!("lost {}", thousands(n)),
                None => "lost unknown (a consumer did not report)".to_string(),
            }),
            thousands(e.duplicates),
        );
    }
    if let Some(cost) = &s.cost {
        cost_card(out, cost);
    }
    out.push_str("</div>\n</section>\n");
}

/// The cost card: the estimate, its parts, per million acknowledged, and the prices' date.
fn cost_card(out: &mut String, c: &crate::model::report::Cost) {
    use crate::launcher::cost::{dollars, part_words};
    let _ = write!(
        out,
        "<div class=\"card\" id=\"cost\"><h3>Cost (estimate)</h3><p class=\"big\">{}{}</p>",
        if c.complete { "≈ " } else { "≥ " },
        esc(&dollars(c.usd))
    );
    if let Some(m) = c.usd_per_million_acknowledged {
        let _ = write!(out, "<p>{} per million acknowledged</p>", esc(&dollars(m)));
    }
    out.push_str("<table class=\"kv\">");
    for (name, part) in [
        ("fleet", &c.parts.fleet),
        ("target", &c.parts.target),
        ("storage", &c.parts.storage),
    ] {
        let _ = write!(
            out,
            "<tr class=\"{}\" title=\"{}\"><th>{name}</th><td class=\"num\">{}</td></tr>",
            if part.is_unknown() { "warn" } else { "" },
            esc(&part.basis),
            esc(&part_words(part))
        );
    }
    let _ = writeln!(
        out,
        "</table><p class=\"muted\">{}; prices: {}</p></div>",
        esc(&c.estimate),
        esc(&c.prices.source)
    );
}

/// End to end: how producer and consumer clocks relate, the delivery funnel (planned → sent →
/// acknowledged → seen) with what was lost or duplicated, end-to-end latency per second and its
/// percentiles, and what the numbers cannot say (coverage).
pub(super) fn end_to_end(out: &mut String, s: &Summary, e: &E2e, chart: Option<&Chart>) {
    section_open(out, "e2e", "End to end");
    let coverage = e.coverage.as_ref();
    let reported = coverage.map_or(0, |c| c.consumers_reported.len());
    let missing = coverage.map_or(0, |c| c.consumers_missing.len());
    let _ = writeln!(
        out,
        "<p class=\"note\">Each produced event carried a trace (producer task, sequence number, \
         intended send time); consumer tasks read the system under test's output and matched \
         the traces they found. {reported} of {} consumer task(s) reported.</p>",
        reported + missing
    );
    let _ = writeln!(
        out,
        "<p class=\"clock\" id=\"e2e-clock\"><b>Clocks.</b> {}</p>",
        esc(&sentence(if e.clock.is_empty() {
            "not stated by the consumers"
        } else {
            &e.clock
        }))
    );

    // The funnel: each stage's bar against the largest.
    let c = &s.counts;
    let seen = e.unique.unwrap_or(0);
    let mut stages: Vec<(&str, &str, u64)> = Vec::new();
    if s.target_rate.is_some() || c.unsent > 0 {
        stages.push(("planned", "planned by the load profile", c.planned));
    }
    stages.push(("sent", "sent (handed to the target)", c.attempted));
    stages.push(("acknowledged", "acknowledged by the target", c.acknowledged));
    stages.push(("seen", "seen by a consumer (distinct)", seen));
    let widest = stages.iter().map(|t| t.2).max().unwrap_or(0).max(1) as f64;
    out.push_str("<h3>Delivery</h3><div class=\"funnel\" id=\"e2e-funnel\">");
    for (key, label, n) in &stages {
        let _ = write!(
            out,
            "<div class=\"stage\" data-stage=\"{key}\" data-value=\"{n}\"><span class=\"label\">\
             {label}</span><span class=\"track\"><span class=\"fbar {key}\" \
             style=\"width:{:.2}%\"></span></span><span class=\"num\">{}</span></div>",
            *n as f64 / widest * 100.0,
            thousands(*n)
        );
    }
    out.push_str("</div>\n");
    let lost_row = match e.lost {
        Some(n) => format!(
            "<tr class=\"{}\" data-key=\"lost\" data-value=\"{n}\"><th>lost</th><td class=\"num\">{}\
             </td><td>acknowledged by the target, never seen by a consumer</td></tr>",
            if n > 0 { "bad" } else { "" },
            thousands(n)
        ),
        None => format!(
            "<tr class=\"warn\" data-key=\"lost\" data-value=\"\"><th>lost</th><td class=\"num\">\
             unknown</td><td>{}</td></tr>",
            esc(&match coverage.filter(|c| !c.consumers_missing.is_empty()) {
                Some(c) => format!(
                    "{} did not report: what they would have read is not counted as lost \
                     (coverage)",
                    c.consumers_missing.join(", ")
                ),
                None => "no consumer task reported (coverage)".to_string(),
            })
        ),
    };
    let _ = writeln!(
        out,
        "<table class=\"kv\" id=\"e2e-delivery\">{lost_row}\
         <tr class=\"{}\" data-key=\"duplicates\" data-value=\"{}\"><th>duplicates</th>\
         <td class=\"num\">{}</td><td>copies beyond the first of an event</td></tr>\
         <tr data-key=\"unacknowledged_seen\" data-value=\"{}\"><th>unacknowledged seen</th>\
         <td class=\"num\">{}</td><td>counted failed or unanswered by their producer, yet \
         delivered</td></tr>\
         <tr data-key=\"foreign\" data-value=\"{}\"><th>foreign</th><td class=\"num\">{}</td>\
         <td>records without a trace of this run</td></tr>\
         <tr data-key=\"read\" data-value=\"{}\"><th>records read</th><td class=\"num\">{}</td>\
         <td>every copy of every traced event</td></tr></table>",
        if e.duplicates > 0 { "warn" } else { "" },
        e.duplicates,
        thousands(e.duplicates),
        e.unacknowledged_seen
            .map_or(String::new(), |n| n.to_string()),
        e.unacknowledged_seen.map_or("unknown".into(), thousands),
        e.foreign,
        thousands(e.foreign),
        e.seen,
        thousands(e.seen),
    );

    out.push_str(
        "<h3>Latency per second</h3><p class=\"note\">End-to-end latency of the events intended \
         in each second (p50, p99 and max, exact from the summed per-second histograms of the \
         consumers). Log scale.</p>\n",
    );
    match chart {
        Some(_) => draw(out, chart),
        None => out.push_str("<p class=\"empty\">No consumer read a traced event.</p>\n"),
    }
    let p = &e.latency_ms;
    out.push_str(
        "<table id=\"e2e-percentiles\" class=\"compact\"><thead><tr><th>ms</th>\
         <th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th>\
         <th class=\"num\">p99.9</th><th class=\"num\">max</th><th class=\"num\">mean</th>\
         <th class=\"num\">count</th></tr></thead><tbody><tr><th>end to end</th>",
    );
    if p.count == 0 {
        out.push_str("<td colspan=\"7\" class=\"muted\">nothing measured</td>");
    } else {
        for v in [p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean] {
            let _ = write!(out, "<td class=\"num\">{}</td>", trim(v, 3));
        }
        let _ = write!(out, "<td class=\"num\">{}</td>", thousands(p.count));
    }
    out.push_str("</tr></tbody></table>\n");
    let notes: Vec<&String> = coverage
        .map(|c| c.notes.iter().collect())
        .unwrap_or_default();
    if !notes.is_empty() {
        out.push_str("<ul class=\"notes\" id=\"e2e-notes\">");
        for n in notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

/// Events attempted, acknowledged and failed per second.
pub(super) fn throughput(out: &mut String, chart: Option<&Chart>) {
    section_open(out, "throughput", "Throughput per second");
    out.push_str(
        "<p class=\"note\">Events attempted, acknowledged and finally failed in each second from \
         the planned start, summed over the tasks, with the target rate of the load profile \
         (dashed). Shaded: seconds with failed events.</p>\n",
    );
    draw(out, chart);
    out.push_str("</section>\n");
}

/// Latency percentiles per second.
pub(super) fn latency(out: &mut String, chart: Option<&Chart>) {
    section_open(out, "latency", "Latency per second");
    out.push_str(
        "<p class=\"note\">Latency from the <em>intended</em> send time (free of coordinated \
         omission) of the events acknowledged in each second: p50, p99 and max, exact from the \
         summed per-second histograms. Log scale; gaps are seconds with nothing \
         acknowledged.</p>\n",
    );
    draw(out, chart);
    out.push_str("</section>\n");
}

/// The whole run's latency at each percentile, and the summary's percentiles as a table.
pub(super) fn spectrum(out: &mut String, s: &Summary, chart: Option<&Chart>) {
    section_open(out, "spectrum", "Latency percentile spectrum");
    out.push_str(
        "<p class=\"note\">The whole run's latency at each percentile, from the merged \
         HdrHistograms (added, never averaged): intended-time latency and service time (from \
         the actual send). The x axis is scaled by 1/(1−q), so each tick is one more nine.</p>\n",
    );
    match chart {
        Some(_) => draw(out, chart),
        None => out.push_str("<p class=\"empty\">No spectrum: nothing was measured.</p>\n"),
    }
    percentile_table(out, s);
    out.push_str("</section>\n");
}

/// `text` as a sentence: its first letter upper-cased, a full stop at the end.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
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

/// Errors by code: the chart, then one table row per code.
pub(super) fn errors(out: &mut String, s: &Summary, chart: Option<&Chart>) {
    section_open(out, "errors", "Errors by code");
    errors_body(out, s, chart);
    out.push_str("</section>\n");
}

fn errors_body(out: &mut String, s: &Summary, chart: Option<&Chart>) {
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
    match chart {
        Some(_) => draw(out, chart),
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
pub(super) struct ErrorSpan {
    pub(super) first: u64,
    last: u64,
    seconds: u64,
    peak: u64,
    total: u64,
}

/// Each error code's first and last second, seconds with errors, peak and total.
pub(super) fn error_spans(s: &Summary) -> BTreeMap<&str, ErrorSpan> {
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
    /// A consumer task's reads: records with a trace of the run, and their end-to-end p99.
    consumer: Option<(u64, f64)>,
}

struct TaskNumbers {
    acknowledged: u64,
    failed: u64,
    rate: f64,
    p99: f64,
    max: f64,
}

/// One row per task, the unhealthy and the slowest first.
/// What the run's live windows said: the abort (which threshold, the windows that broke it),
/// the tasks that were stale in each window, and what could not be written or sent.
pub(super) fn live(out: &mut String, s: &Summary) {
    let Some(live) = &s.live else { return };
    section_open(out, "live", "Live");
    let _ = writeln!(
        out,
        "<p class=\"note\">Every {}s each task wrote what it did in that window; the launcher \
         merged the windows of the fleet exactly and showed {} of them while the run ran.{}</p>",
        live.interval_s,
        live.windows,
        if live.publish_failures > 0 {
            format!(
                " {} window(s) could not be written by the tasks (the store refused or did not \
                 answer in time): production went on.",
                live.publish_failures
            )
        } else {
            String::new()
        }
    );
    if let Some(a) = &s.aborted {
        let _ = write!(
            out,
            "<div class=\"reason\" id=\"aborted\" data-second=\"{}\">{}</div>\n<table \
             id=\"abort-windows\" class=\"compact\"><thead><tr><th>window</th><th>from</th>\
             <th class=\"num\">{}</th></tr></thead><tbody>",
            a.second,
            esc(&a.reason),
            esc(&a.threshold)
        );
        for w in &a.windows {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                w.window,
                clock(w.window * live.interval_s),
                esc(&w.measured)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    if live.stale.is_empty() {
        out.push_str("<p class=\"empty ok\" id=\"no-stale\">Every task's window was there when it was shown.</p>\n");
    } else {
        out.push_str(
            "<table id=\"stale\"><thead><tr><th>window</th><th>from</th><th>stale tasks (no window \
             when it was shown)</th></tr></thead><tbody>",
        );
        for w in &live.stale {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                w.window,
                clock(w.from_second),
                esc(&w.tasks.join(", "))
            );
        }
        out.push_str("</tbody></table>\n");
    }
    if !live.metric_failures.is_empty() {
        out.push_str("<ul class=\"problems\" id=\"metric-failures\">");
        for f in &live.metric_failures {
            let _ = write!(out, "<li>metrics: {}</li>", esc(f));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

pub(super) fn tasks(out: &mut String, m: &Merged) {
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
                consumer: summary.filter(|s| s.end_to_end.is_consumer()).map(|s| {
                    s.end_to_end
                        .e2e
                        .as_ref()
                        .map_or((0, 0.0), |e| (e.seen, e.latency_ms.p99))
                }),
            }
        })
        .chain(info.tasks_missing.iter().map(|id| TaskLine {
            id,
            status: "missing",
            reason: Some("no report".into()),
            numbers: None,
            late_ms: None,
            consumer: None,
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
        match (&l.numbers, l.consumer) {
            (_, Some((seen, p99))) => {
                let _ = writeln!(
                    out,
                    "<td class=\"muted\" colspan=\"7\"><span class=\"tag\">consumer</span> read \
                     {} traced record(s); end-to-end p99 {} ms (see End to end)</td></tr>",
                    thousands(seen),
                    trim(p99, 3)
                );
            }
            (Some(n), None) => {
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
            (None, None) => out.push_str(
                "<td class=\"muted\" colspan=\"7\">no report: nothing it did is in the totals \
                 above</td></tr>\n",
            ),
        }
    }
    out.push_str("</tbody></table>\n</section>\n");
}

/// The run's identity and times, and the scenario every task shared.
pub(super) fn scenario(out: &mut String, s: &Summary) {
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
