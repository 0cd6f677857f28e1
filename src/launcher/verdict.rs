//! The end of every `run` and `merge`: the merged report written, the thresholds evaluated once,
//! the summary table printed, the HTML page and the JUnit file written, the exit status decided.

use std::path::Path;

use anyhow::Context;

use crate::launcher::compare::{self, Baseline, Comparison};
use crate::launcher::exit::ExitStatus;
use crate::launcher::gate::junit::{junit_xml_with, JunitCase};
use crate::launcher::gate::{self, Threshold, ThresholdResult};
use crate::launcher::merge::{write_merged, Merged};
use crate::launcher::render::open::open_from_store;
use crate::launcher::render::{html, table};
use crate::model::report::{Outcome, SUMMARY_FILE};
use crate::store::{merged_dir, tasks_dir, ReportStore};

/// The CI gate of a run: thresholds, JUnit file, whether to open the HTML page.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// Parsed thresholds.
    pub thresholds: &'a [Threshold],
    /// Where to write the JUnit XML report, if anywhere.
    pub junit: Option<&'a Path>,
    /// Open `merged/report.html` in a browser at the end.
    pub open: bool,
    /// The run to compare with (`--baseline`), read before any task started.
    pub baseline: Option<&'a Baseline>,
}

/// Writes the merged report, prints the summary, checks the thresholds, writes the JUnit file
/// and decides the exit status.
pub async fn verdict(
    store: &ReportStore,
    run_id: &str,
    merged: &Merged,
    gate: &Gate<'_>,
    fleet_problems: &[String],
) -> anyhow::Result<ExitStatus> {
    let Gate {
        thresholds,
        junit,
        open,
        baseline,
    } = *gate;
    let summary = &merged.summary;
    // Evaluated once: the page, the table and the JUnit file show the same verdict.
    let results: Vec<ThresholdResult> = match baseline {
        Some(b) => gate::evaluate_against(thresholds, summary, Some(b.summary())),
        None => gate::evaluate(thresholds, summary),
    };
    let reported = summary.merge.as_ref().map_or(0, |m| m.tasks_reported);
    let mut html_key = None;
    let location = if reported == 0 {
        // Nothing to merge: most likely a wrong run id or URL. Do not create a run directory.
        format!(
            "not written: no task report under {}",
            store.display_url(&format!("{}/", tasks_dir(run_id)))
        )
    } else {
        write_merged(store, run_id, merged).await.with_context(|| {
            format!(
                "could not write the merged report to {}",
                store.display_url(&merged_dir(run_id))
            )
        })?;
        let key = format!("{}/{}", merged_dir(run_id), html::REPORT_FILE);
        let html = html::render_with_fleet_problems(merged, &results, fleet_problems);
        store
            .put(&key, html.into_bytes(), "text/html")
            .await
            .with_context(|| {
                format!(
                    "could not write the HTML report to {}",
                    store.display_url(&key)
                )
            })?;
        html_key = Some(key);
        store.display_url(&format!("{}/{SUMMARY_FILE}", merged_dir(run_id)))
    };

    print!("{}", table::render(summary, &results, &location));
    if let Some(key) = &html_key {
        println!("html report: {}", store.display_url(key));
    }
    if open {
        match &html_key {
            Some(key) => println!("{}", open_from_store(store, key)),
            None => println!("html report not opened: no report was written"),
        }
    }

    // The comparison with the baseline, once this run's merged report is written.
    let comparison: Option<Result<Comparison, String>> = match (baseline, &html_key) {
        (Some(b), Some(_)) => Some(
            b.compare_with(store, run_id)
                .await
                .map_err(|e| format!("{e:#}")),
        ),
        (Some(_), None) => Some(Err("this run has no merged report to compare".to_string())),
        (None, _) => None,
    };
    let fail_on_regression = baseline.is_some_and(|b| b.fail_on_regression);
    let regressed: Vec<String> = match &comparison {
        Some(Ok(c)) => c.regressions().map(|m| m.label()).collect(),
        _ => Vec::new(),
    };
    let comparison_failed = match &comparison {
        Some(Err(e)) => {
            println!("comparison with the baseline failed: {e}");
            Some(e.clone())
        }
        _ => None,
    };

    if let Some(path) = junit {
        let extra: Vec<(String, Vec<JunitCase>)> = match (&comparison, baseline) {
            (Some(Ok(c)), Some(b)) => vec![(
                format!("comparison with baseline {}", b.location()),
                compare::junit_cases(c, fail_on_regression),
            )],
            (Some(Err(e)), Some(b)) => vec![(
                format!("comparison with baseline {}", b.location()),
                vec![JunitCase {
                    name: "baseline: comparison".into(),
                    failure: fail_on_regression
                        .then(|| ("the comparison failed".to_string(), e.clone())),
                    output: Some(e.clone()),
                }],
            )],
            _ => Vec::new(),
        };
        let xml = junit_xml_with(&results, summary, &format!("fleetload {run_id}"), &extra);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        std::fs::write(path, xml)
            .with_context(|| format!("could not write the JUnit report {}", path.display()))?;
    }

    let broken: Vec<&ThresholdResult> = results.iter().filter(|r| !r.held).collect();
    for problem in fleet_problems {
        println!("fleet problem: {problem}");
    }
    // An abort stops every task as Ctrl-C does: tasks that stored an interrupted report did
    // what they were asked. Anything else (a task missing, failed) is still the fleet's.
    let stopped_as_asked = summary.stopped_by_abort();
    let fleet_reason = match &summary.outcome {
        Outcome::Completed if fleet_problems.is_empty() => None,
        _ if stopped_as_asked && fleet_problems.is_empty() => None,
        Outcome::Completed => Some(format!("{} fleet problem(s)", fleet_problems.len())),
        Outcome::Failed { reason } => Some(reason.clone()),
        Outcome::Interrupted { signal } => Some(format!("interrupted by {signal}")),
    };
    let thresholds_verdict = if broken.is_empty() {
        format!("{} of {} thresholds held", results.len(), results.len())
    } else {
        let list: Vec<String> = broken
            .iter()
            .map(|r| format!("{} (measured {})", r.expression, r.measured_text))
            .collect();
        format!(
            "{} of {} thresholds broken: {}",
            broken.len(),
            results.len(),
            list.join(", ")
        )
    };
    let thresholds_verdict = match (&comparison, fail_on_regression) {
        (Some(Ok(_)), _) if regressed.is_empty() => {
            format!("{thresholds_verdict}; nothing regressed against the baseline")
        }
        (Some(Ok(_)), true) => format!(
            "{thresholds_verdict}; regressed against the baseline: {}",
            regressed.join(", ")
        ),
        (Some(Ok(_)), false) => format!(
            "{thresholds_verdict}; regressed against the baseline (not failing without \
             --fail-on-regression): {}",
            regressed.join(", ")
        ),
        (Some(Err(_)), _) => format!("{thresholds_verdict}; the comparison failed"),
        (None, _) => thresholds_verdict,
    };
    let regression_fails =
        fail_on_regression && (!regressed.is_empty() || comparison_failed.is_some());
    let status = match (&fleet_reason, broken.is_empty() && !regression_fails) {
        (Some(_), _) => ExitStatus::FleetFailed,
        (None, _) if summary.aborted.is_some() => ExitStatus::ThresholdBroken,
        (None, false) => ExitStatus::ThresholdBroken,
        (None, true) => ExitStatus::Held,
    };
    match (&fleet_reason, &summary.aborted) {
        (Some(reason), _) => println!(
            "result: FLEET FAILED (exit {}): {reason}; {thresholds_verdict}",
            status.code()
        ),
        (None, Some(aborted)) => println!(
            "result: ABORTED (exit {}): {}; at the end {thresholds_verdict}",
            status.code(),
            aborted.reason
        ),
        (None, None) => println!(
            "result: {} (exit {}): {thresholds_verdict}",
            match (broken.is_empty(), regression_fails) {
                (true, false) => "PASSED",
                (true, true) => "REGRESSED",
                (false, _) => "THRESHOLD BROKEN",
            },
            status.code()
        ),
    }
    Ok(status)
}
