//! The comparison as the launcher prints it: the two runs, how their scenarios differ, how the
//! noise was judged, then one line per metric grouped as on the page, each within
//! [`MAX_WIDTH`] columns (a name too long for its column gets a line of its own).

use std::fmt::Write;

use super::report::{value_text, Comparison, MetricRow, RunInfo, Verdict};

/// No line of the table is wider than this.
pub const MAX_WIDTH: usize = 100;
/// Width of the metric's name.
const NAME: usize = 26;
/// Width of a value.
const VALUE: usize = 13;
/// Width of the change and its interval.
const CHANGE: usize = 30;

/// Renders the comparison.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "fleetload compare");
    run_line(w, "base", &c.base);
    run_line(w, "new", &c.new);
    if c.scenario_differences.is_empty() {
        let _ = writeln!(w, "scenario  the same");
    } else {
        let _ = writeln!(
            w,
            "scenario  {} difference(s), compared all the same:",
            c.scenario_differences.len()
        );
        let width = c
            .scenario_differences
            .iter()
            .map(|d| d.name.len())
            .max()
            .unwrap_or(0)
            .min(30);
        for d in &c.scenario_differences {
            wrapped(
                w,
                &format!("  {:<width$}  {} → {}", d.name, d.base, d.new),
                "      ",
            );
        }
    }
    let m = &c.method;
    wrapped(
        w,
        &format!(
            "noise     {}: {} resamples, blocks of {} s (base) and {} s (new), {} % intervals, \
             seed {}; regressed or improved only when the whole interval is past zero and the \
             change is at least {} % ({} pp for shares)",
            m.name,
            m.resamples,
            m.base_block_s,
            m.new_block_s,
            trim_pct(m.confidence * 100.0),
            m.seed,
            trim_pct(m.min_effect * 100.0),
            trim_pct(m.min_share_effect * 100.0),
        ),
        "          ",
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "{:<NAME$} {:>VALUE$} {:>VALUE$}  {:<CHANGE$} verdict",
        "metric",
        "base",
        "new",
        format!("change ({} % interval)", trim_pct(m.confidence * 100.0)),
    );
    let mut group = "";
    for row in &c.metrics {
        if row.group != group {
            group = &row.group;
            let _ = writeln!(w, "{group}");
        }
        metric_line(w, row);
    }
    let _ = writeln!(w);
    let count = |v: Verdict| c.metrics.iter().filter(|m| m.verdict == v).count();
    let regressed: Vec<String> = c.regressions().map(MetricRow::label).collect();
    wrapped(
        w,
        &format!(
            "verdict   {} regressed{}, {} improved, {} within noise, {} not judged",
            regressed.len(),
            if regressed.is_empty() {
                String::new()
            } else {
                format!(" ({})", regressed.join(", "))
            },
            count(Verdict::Improved),
            count(Verdict::WithinNoise),
            count(Verdict::NotJudged),
        ),
        "          ",
    );
    for note in &c.notes {
        wrapped(w, &format!("not judged: {note}"), "  ");
    }
    out
}

fn trim_pct(v: f64) -> String {
    crate::launcher::render::format::trim(v, 4)
}

fn run_line(w: &mut String, label: &str, r: &RunInfo) {
    wrapped(
        w,
        &format!(
            "{label:<9} {}  (run {}: {}, {} of {} tasks, {:.1} s from {}, {})",
            r.location,
            r.run_id,
            if r.target.is_empty() { "?" } else { &r.target },
            r.tasks_reported,
            r.tasks_expected,
            r.duration_s,
            r.planned_start,
            r.outcome
        ),
        "          ",
    );
}

fn metric_line(w: &mut String, row: &MetricRow) {
    let name = format!("  {}", row.name);
    let numbers = format!(
        "{:>VALUE$} {:>VALUE$}  {:<CHANGE$} {}",
        value_text(row.unit, row.base),
        value_text(row.unit, row.new),
        row.change_text(),
        row.verdict.text()
    );
    let line = format!("{name:<NAME$} {numbers}");
    if name.chars().count() <= NAME && line.chars().count() <= MAX_WIDTH {
        let _ = writeln!(w, "{}", line.trim_end());
        return;
    }
    // A long error code: the name on its own line, the numbers under the columns.
    let _ = writeln!(w, "{name}");
    let line = format!("{:<NAME$} {numbers}", "");
    if line.chars().count() <= MAX_WIDTH {
        let _ = writeln!(w, "{}", line.trim_end());
    } else {
        let _ = writeln!(
            w,
            "{:<NAME$} {:>VALUE$} {:>VALUE$}",
            "",
            value_text(row.unit, row.base),
            value_text(row.unit, row.new)
        );
        wrapped(
            w,
            &format!(
                "{:<NAME$} {}  {}",
                "",
                row.change_text(),
                row.verdict.text()
            ),
            &" ".repeat(NAME + 1),
        );
    }
}

/// Writes `text` in lines of at most [`MAX_WIDTH`] columns, breaking at spaces; lines after the
/// first start with `indent`.
fn wrapped(w: &mut String, text: &str, indent: &str) {
    let body = text.trim_start_matches(' ');
    let mut line = " ".repeat(text.len() - body.len());
    let mut first = true;
    for word in body.split(' ') {
        let len = line.chars().count();
        if !first && len + 1 + word.chars().count() > MAX_WIDTH && !line.trim().is_empty() {
            let _ = writeln!(w, "{}", line.trim_end());
            line = indent.to_string();
            line.push_str(word);
        } else {
            if !first {
                line.push(' ');
            }
            line.push_str(word);
        }
        first = false;
    }
    let _ = writeln!(w, "{}", line.trim_end());
}
