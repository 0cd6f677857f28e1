//! The self-contained HTML report of a merged run, `merged/report.html`: one file with its CSS
//! (`style.css`), its charts (inline SVG) and a few lines of inline script (`script.js`) for hover
//! tooltips. It names no external URL at all, so it opens from a laptop, an S3 download or a CI
//! artifact without a network, and a strict Content-Security-Policy forbids the browser to fetch
//! anything.
//!
//! The parts: this module assembles the page (head, header, sections in order, footer, the
//! charts' data); `page` writes the sections (the end-to-end one when the run had consumer
//! tasks); `shards` the per-shard table of a Kinesis run; `figures` builds the charts of a merged run;
//! `chart` draws SVG charts and knows nothing about runs. Every text is escaped by `esc`.
//!
//! Every chart carries its data in a machine-checkable form, twice: as `data-*` attributes on
//! its SVG (see `chart`) and as the exact arrays in
//! `<script type="application/json" id="chart-data">`. Values are printed in Rust's shortest
//! round-trip form, so they compare exactly with `merged/timeseries.csv`.

pub(crate) mod chart;
pub(crate) mod escape;
mod figures;
mod page;
mod shards;
mod spectrum;

use std::fmt::Write;

use serde_json::Value;

use crate::launcher::gate::ThresholdResult;
use crate::launcher::merge::Merged;
use crate::launcher::render::format::timestamp;
use crate::model::report::Summary;
use escape::esc;
use figures::TimeAxis;

pub(crate) use spectrum::SPECTRUM_NINES;
pub use spectrum::{spectrum_quantiles, spectrum_value};

/// Name of the report file in `merged/`.
pub(crate) const REPORT_FILE: &str = "report.html";
pub(crate) const CSS: &str = include_str!("style.css");
/// Hover tooltips: the values of every series at the second (or percentile) under the pointer,
/// read from the chart-data JSON. The DOM is built with textContent only.
pub(crate) const SCRIPT: &str = include_str!("script.js");

const NAV: &str = "<nav><a href=\"#verdict\">Verdict</a><a href=\"#throughput\">Throughput</a>\
<a href=\"#latency\">Latency</a><a href=\"#spectrum\">Spectrum</a><a href=\"#errors\">Errors</a>\
<a href=\"#tasks\">Tasks</a><a href=\"#scenario\">Scenario</a></nav>";

/// Renders the report of a merged run with the results of its thresholds and the fleet
/// problems the launcher saw (tasks that could not be started or exited non-zero): they make
/// the verdict "fleet failed", as they make the exit code 3.
pub(crate) fn render_with_fleet_problems(
    merged: &Merged,
    thresholds: &[ThresholdResult],
    fleet_problems: &[String],
) -> String {
    let s = &merged.summary;
    let time = TimeAxis::of(merged);

    let e2e = s.end_to_end.e2e.as_ref();
    let charts = [
        figures::throughput(merged, &time),
        figures::latency(&merged.rows, &time, s),
        figures::spectrum(&merged.latency, &merged.service),
        figures::errors(s, &time),
        e2e.and_then(|e| figures::e2e_latency(e, &time)),
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
        nav(s),
    );
    page::verdict(&mut out, merged, thresholds, fleet_problems);
    page::throughput(&mut out, charts[0].as_ref());
    page::latency(&mut out, charts[1].as_ref());
    page::spectrum(&mut out, s, charts[2].as_ref());
    page::errors(&mut out, s, charts[3].as_ref());
    if let Some(e) = e2e {
        page::end_to_end(&mut out, s, e, charts[4].as_ref());
    }
    shards::shards(&mut out, s);
    page::live(&mut out, s);
    page::tasks(&mut out, merged);
    page::scenario(&mut out, s);
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
         </script>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        json.replace('<', "\\u003c")
    );
    out
}

/// The links to the sections, with the optional ones the run has.
fn nav(s: &Summary) -> String {
    let mut extra = String::new();
    if s.end_to_end.e2e.is_some() {
        extra.push_str("<a href=\"#e2e\">End to end</a>");
    }
    if !s.by_shard.is_empty() {
        extra.push_str("<a href=\"#shards\">Shards</a>");
    }
    if s.live.is_some() {
        extra.push_str("<a href=\"#live\">Live</a>");
    }
    NAV.replace(
        "<a href=\"#tasks\">",
        &format!("{extra}<a href=\"#tasks\">"),
    )
}

fn head(out: &mut String, s: &Summary, thresholds: &[ThresholdResult], problems: &[String]) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>fleetload {} — {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(&s.run_id),
        esc(page::verdict_of(s, thresholds, problems).0),
    );
}

#[cfg(test)]
mod tests;
