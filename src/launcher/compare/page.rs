//! `compare.html`: the comparison as one self-contained page, like the run's own report (its
//! CSS, its tooltips, inline SVG drawn by the same chart engine, no external URL): how the
//! scenarios differ (first: a different rate or task count explains many a change), the verdict,
//! every metric with its change, interval and verdict, then the two
//! runs overlaid — throughput and latency per second, and the percentile spectrum.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::load::Run;
use super::report::{value_text, Comparison, MetricRow, Verdict};
use crate::launcher::render::html::chart::{self, Chart, Series, Unit, XScale, YScale};
use crate::launcher::render::html::escape::esc;
use crate::launcher::render::html::{
    spectrum_quantiles, spectrum_value, CSS, SCRIPT, SPECTRUM_NINES,
};
use crate::model::report::SecondRow;

const BASE_ACK: &str = "#8a96a3";
const NEW_ACK: &str = "#1a8a4a";
const P50: &str = "#1f77b4";
const P99: &str = "#ff7f0e";
const SERVICE: &str = "#2ca02c";
/// Page styles of the comparison, on top of the run page's.
const EXTRA_CSS: &str = "tr.group th{background:var(--panel);font-size:12px;letter-spacing:.04em;\
color:var(--muted)}\ntd.why{font-size:12px;color:var(--muted);white-space:nowrap}\n\
.tag{white-space:nowrap}.tag.noise{background:#8a96a3}.tag.unjudged{background:#c3c9d0;\
color:#1d232a}\nol.notes{color:var(--muted);font-size:13px;margin:4px 0;padding-left:22px}\n";

fn column(rows: &[SecondRow], f: impl Fn(&SecondRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter().map(|r| (r.second as f64, f(r))).collect()
}

fn line(name: &str, label: &str, color: &str, dashed: bool, points: Vec<(f64, f64)>) -> Series {
    let mut s = Series::new(name, color, points);
    s.label = label.to_string();
    s.dashed = dashed;
    s
}

fn chart(id: &'static str, x: XScale, x_domain: (f64, f64), y: YScale, unit: Unit) -> Chart {
    Chart {
        id,
        x,
        x_domain,
        x_label: match x {
            XScale::Seconds => "seconds from each run's planned start",
            XScale::Nines => "percentile",
        },
        y,
        unit,
        y_label: match unit {
            Unit::Events => "events acknowledged per second",
            Unit::Millis => "latency (log scale)",
        },
        series: Vec::new(),
        bands: Vec::new(),
        band_label: "",
        markers: Vec::new(),
        bars: false,
    }
}

fn charts(base: &Run, new: &Run) -> Vec<Chart> {
    let last = base
        .rows
        .last()
        .map_or(0, |r| r.second)
        .max(new.rows.last().map_or(0, |r| r.second))
        .max(1) as f64;
    let mut out = Vec::new();

    let mut throughput = chart(
        "compare-throughput",
        XScale::Seconds,
        (0.0, last),
        YScale::Linear,
        Unit::Events,
    );
    throughput.series = vec![
        line(
            "base acknowledged",
            "base: acknowledged",
            BASE_ACK,
            true,
            column(&base.rows, |r| r.acknowledged as f64),
        ),
        line(
            "new acknowledged",
            "new: acknowledged",
            NEW_ACK,
            false,
            column(&new.rows, |r| r.acknowledged as f64),
        ),
    ];
    out.push(throughput);

    let mut latency = chart(
        "compare-latency",
        XScale::Seconds,
        (0.0, last),
        YScale::Log,
        Unit::Millis,
    );
    for (run, who, dashed) in [(base, "base", true), (new, "new", false)] {
        for (name, color, f) in [
            (
                "p50_ms",
                P50,
                (|r: &SecondRow| r.p50_ms) as fn(&SecondRow) -> f64,
            ),
            ("p99_ms", P99, |r: &SecondRow| r.p99_ms),
        ] {
            let mut s = line(
                &format!("{who} {name}"),
                &format!("{who}: {}", name.trim_end_matches("_ms")),
                color,
                dashed,
                column(&run.rows, f),
            );
            s.zero_is_gap = true;
            latency.series.push(s);
        }
    }
    out.push(latency);

    let mut spectrum = chart(
        "compare-spectrum",
        XScale::Nines,
        (0.0, SPECTRUM_NINES as f64),
        YScale::Log,
        Unit::Millis,
    );
    let decode = |text: &str| crate::model::report::decode_histogram(text).ok();
    for (run, who, dashed) in [(base, "base", true), (new, "new", false)] {
        let h = &run.summary.histograms;
        for (name, label, color, hist) in [
            ("latency", "intended-time latency", P50, decode(&h.latency)),
            (
                "service_time",
                "service time",
                SERVICE,
                decode(&h.service_time),
            ),
        ] {
            let Some(hist) = hist.filter(|h: &Histogram<u64>| !h.is_empty()) else {
                continue;
            };
            let points = spectrum_quantiles()
                .into_iter()
                .map(|q| (q, spectrum_value(&hist, q)))
                .collect();
            spectrum.series.push(line(
                &format!("{who} {name}"),
                &format!("{who}: {label}"),
                color,
                dashed,
                points,
            ));
        }
    }
    if !spectrum.series.is_empty() {
        out.push(spectrum);
    }

    if let (Some(be), Some(ne)) = (&base.summary.end_to_end.e2e, &new.summary.end_to_end.e2e) {
        if !be.timeline.is_empty() || !ne.timeline.is_empty() {
            let last = be
                .timeline
                .last()
                .map_or(0, |t| t.second)
                .max(ne.timeline.last().map_or(0, |t| t.second))
                .max(1) as f64;
            let mut e2e = chart(
                "compare-e2e",
                XScale::Seconds,
                (0.0, last),
                YScale::Log,
                Unit::Millis,
            );
            e2e.x_label = "second of the intended send time, from each run's planned start";
            e2e.y_label = "end-to-end latency (log scale)";
            for (e, who, dashed) in [(be, "base", true), (ne, "new", false)] {
                let mut s = line(
                    &format!("{who} e2e p99_ms"),
                    &format!("{who}: end to end p99"),
                    P99,
                    dashed,
                    e.timeline
                        .iter()
                        .map(|t| (t.second as f64, t.p99_ms))
                        .collect(),
                );
                s.zero_is_gap = true;
                e2e.series.push(s);
            }
            out.push(e2e);
        }
    }
    out
}

fn verdict_tag(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "tag bad",
        Verdict::Improved => "tag ok",
        Verdict::WithinNoise => "tag noise",
        Verdict::NotJudged => "tag unjudged",
    }
}

fn metric_row(out: &mut String, m: &MetricRow, reasons: &[&str]) {
    let _ = write!(
        out,
        "<tr class=\"{}\" data-metric=\"{}\" data-verdict=\"{}\"><td>{}</td><td class=\"num\">{}\
         </td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>\
         <span class=\"{}\">{}</span></td><td class=\"why\">{}</td></tr>",
        match m.verdict {
            Verdict::Regressed => "row-bad",
            _ => "",
        },
        esc(&m.label()),
        m.verdict.text(),
        esc(&m.name),
        esc(&value_text(m.unit, m.base)),
        esc(&value_text(m.unit, m.new)),
        esc(&m.change_text()),
        esc(&m.absolute_change_text().unwrap_or_default()),
        verdict_tag(m.verdict),
        m.verdict.text(),
        // The reason in full once, below the table; here its number.
        m.why
            .as_deref()
            .and_then(|w| reasons.iter().position(|r| *r == w))
            .map(|i| format!("<a href=\"#why-{0}\">note {0}</a>", i + 1))
            .unwrap_or_default()
    );
}

/// The page of comparison `c` of `new` with `base`.
pub fn render(c: &Comparison, base: &Run, new: &Run) -> String {
    let charts = charts(base, new);
    let regressed: Vec<String> = c.regressions().map(MetricRow::label).collect();
    let (headline, class) = if regressed.is_empty() {
        ("NO REGRESSION".to_string(), "passed")
    } else {
        (format!("{} REGRESSED", regressed.len()), "broken")
    };
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>fleetload compare {} → {} — {}</title>\n<style>\n{CSS}{EXTRA_CSS}</style>\n\
         </head>\n<body>\n<header><h1>fleetload compare</h1><p class=\"sub\">base <b \
         id=\"base-run\">{}</b> <code>{}</code> → new <b id=\"new-run\">{}</b> <code>{}</code>\
         </p><nav><a href=\"#differences\">Scenario</a><a href=\"#verdict\">Verdict</a><a \
         href=\"#metrics\">Metrics</a><a href=\"#throughput\">Throughput</a><a \
         href=\"#latency\">Latency</a><a href=\"#spectrum\">Spectrum</a><a href=\"#method\">\
         Method</a></nav></header>\n<main>\n",
        esc(&c.base.run_id),
        esc(&c.new.run_id),
        headline,
        esc(&c.base.run_id),
        esc(&c.base.location),
        esc(&c.new.run_id),
        esc(&c.new.location),
    );

    // Scenario differences, first: they explain many a change.
    out.push_str("<section id=\"differences\"><h2>Scenario differences</h2>\n");
    if c.scenario_differences.is_empty() {
        out.push_str(
            "<p class=\"ok\" id=\"same-scenario\">The two runs ran the same scenario.</p>\n",
        );
    } else {
        let _ = write!(
            out,
            "<p class=\"warn\">The scenarios differ in {} way(s); the runs are compared all the \
             same.</p><table id=\"scenario-differences\" class=\"compact\"><thead><tr><th>what\
             </th><th>base</th><th>new</th></tr></thead><tbody>",
            c.scenario_differences.len()
        );
        for d in &c.scenario_differences {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&d.name),
                esc(&d.base),
                esc(&d.new)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");

    // Verdict.
    let _ = write!(
        out,
        "<section id=\"verdict\"><h2>Verdict</h2>\n<div class=\"banner {class}\" \
         data-regressed=\"{}\" data-improved=\"{}\"><b>{headline}</b> — {} regressed, {} \
         improved, {} within noise, {} not judged{}</div>\n<div class=\"cards\">",
        c.regressed,
        c.improved,
        c.regressed,
        c.improved,
        c.metrics
            .iter()
            .filter(|m| m.verdict == Verdict::WithinNoise)
            .count(),
        c.metrics
            .iter()
            .filter(|m| m.verdict == Verdict::NotJudged)
            .count(),
        if regressed.is_empty() {
            String::new()
        } else {
            format!(
                "<div class=\"reason\">regressed: {}</div>",
                esc(&regressed.join(", "))
            )
        }
    );
    for (who, info, run) in [("Base", &c.base, base), ("New", &c.new, new)] {
        let s = &run.summary;
        let _ = write!(
            out,
            "<div class=\"card\" id=\"{}-card\"><h3>{who}</h3><p class=\"big\">{}/s</p><p>run \
             <code>{}</code> · target {} · {} of {} tasks · {:.1} s · {}</p><p class=\"muted\">\
             p99 {} · {} acknowledged{}</p></div>",
            who.to_lowercase(),
            crate::launcher::render::format::rate(s.achieved_rate),
            esc(&info.run_id),
            esc(if info.target.is_empty() {
                "?"
            } else {
                &info.target
            }),
            info.tasks_reported,
            info.tasks_expected,
            info.duration_s,
            esc(&info.outcome),
            esc(&value_text(
                super::report::Unit::Ms,
                (s.latency_ms.count > 0).then_some(s.latency_ms.p99)
            )),
            crate::launcher::render::format::thousands(s.counts.acknowledged),
            s.cost
                .as_ref()
                .map(|c| format!(" · cost {}", esc(&crate::launcher::cost::line(c))))
                .unwrap_or_default()
        );
    }
    out.push_str("</div>\n</section>\n");

    // Metrics.
    let _ = write!(
        out,
        "<section id=\"metrics\"><h2>Metrics</h2>\n<p class=\"note\">Change and its {} % \
         interval from the runs' own second-to-second noise (see <a href=\"#method\">Method\
         </a>); latencies and rates relative to the base, shares in percentage points.</p>\
         <table id=\"comparison\"><thead><tr><th>metric</th><th class=\"num\">base</th><th \
         class=\"num\">new</th><th class=\"num\">change (interval)</th><th class=\"num\">\
         absolute</th><th>verdict</th><th>why not</th></tr></thead><tbody>",
        crate::launcher::render::format::trim(c.method.confidence * 100.0, 2)
    );
    let mut reasons: Vec<&str> = Vec::new();
    for why in c.metrics.iter().filter_map(|m| m.why.as_deref()) {
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    let mut group = "";
    for m in &c.metrics {
        if m.group != group {
            group = &m.group;
            let _ = write!(
                out,
                "<tr class=\"group\"><th colspan=\"7\">{}</th></tr>",
                esc(group)
            );
        }
        metric_row(&mut out, m, &reasons);
    }
    out.push_str("</tbody></table>\n");
    if !reasons.is_empty() {
        out.push_str("<p class=\"note\">Not judged:</p><ol class=\"notes\" id=\"not-judged\">");
        for (i, why) in reasons.iter().enumerate() {
            let _ = write!(out, "<li id=\"why-{}\">{}</li>", i + 1, esc(why));
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>\n");

    let find = |id: &str| charts.iter().find(|c| c.id == id);
    for (section, title, id, note) in [
        (
            "throughput",
            "Throughput",
            "compare-throughput",
            "Events acknowledged per second, each run from its planned start: base dashed, new \
             solid.",
        ),
        (
            "latency",
            "Latency per second",
            "compare-latency",
            "p50 and p99 of each second's merged histogram (latency from the intended send \
             time): base dashed, new solid.",
        ),
        (
            "spectrum",
            "Percentile spectrum",
            "compare-spectrum",
            "The whole run's merged histograms at every percentile, from 0 to 99.999 %: base \
             dashed, new solid.",
        ),
        (
            "e2e",
            "End to end",
            "compare-e2e",
            "p99 of end-to-end latency per second of the intended send time: base dashed, new \
             solid.",
        ),
    ] {
        let chart = find(id);
        if section == "e2e" && chart.is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "<section id=\"{section}\"><h2>{title}</h2><p class=\"note\">{note}</p>"
        );
        chart::draw(&mut out, chart);
        out.push_str("</section>\n");
    }

    // Method.
    let m = &c.method;
    let _ = writeln!(
        out,
        "<section id=\"method\"><h2>Method</h2><p>{}: each run's seconds (its per-second latency \
         histograms and counts) are drawn in blocks of consecutive seconds — {} s for the base, \
         {} s for the new run — with replacement, until each replicate is as long as its run; \
         the statistic is computed on the replicate exactly as on the run (percentiles from the \
         summed histograms, never averaged). {} replicates, seed {}; the interval is the \
         middle {} % of the replicates' differences.</p><p>{}.</p></section>",
        esc(&m.name),
        m.base_block_s,
        m.new_block_s,
        m.resamples,
        m.seed,
        crate::launcher::render::format::trim(m.confidence * 100.0, 2),
        esc(&m.rule)
    );
    out.push_str("</main>\n");
    let _ = writeln!(
        out,
        "<footer>compare.json next to this file holds every number above. Schema version {}.\
         </footer>",
        c.schema_version
    );
    let data: serde_json::Map<String, Value> = charts
        .iter()
        .map(|c| (c.id.to_string(), c.json()))
        .collect();
    let json = serde_json::to_string(&Value::Object(data)).expect("chart data serializes");
    let _ = write!(
        out,
        "<div id=\"tip\" hidden></div>\n<script type=\"application/json\" id=\"chart-data\">{}\
         </script>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        json.replace('<', "\\u003c")
    );
    out
}
