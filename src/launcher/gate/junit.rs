//! The CI gate as a JUnit XML file: one test case per threshold, and one for the fleet's
//! coverage (every expected task reported and completed), so a CI system shows which gate broke.

use crate::launcher::gate::ThresholdResult;
use crate::model::report::{MergeInfo, Outcome, Summary};

/// Escapes text for XML attributes and content; characters XML 1.0 forbids become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Checks, before any task starts, that the JUnit file can be written where `--junit` says: the
/// path is not a directory, and its nearest existing ancestor is a directory (the missing ones
/// are created at the end). A run must not be spent to find out that `afile/x.xml` lies under
/// a regular file.
pub fn check_junit_path(path: &std::path::Path) -> anyhow::Result<()> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "--junit {:?}: {why}; accepted: a file path whose parent is (or can be created as) a \
             directory",
            path.display().to_string()
        )
    };
    if path.as_os_str().is_empty() {
        return Err(refuse("empty".into()));
    }
    if path.is_dir() {
        return Err(refuse("is a directory".into()));
    }
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        if let Ok(meta) = std::fs::metadata(ancestor) {
            if !meta.is_dir() {
                return Err(refuse(format!("{} is not a directory", ancestor.display())));
            }
            break;
        }
    }
    Ok(())
}

/// Name of the JUnit test case that checks every task reported and completed.
pub const COVERAGE_CASE: &str = "fleet coverage";
/// Name of the JUnit test case of a run a live threshold stopped (`--abort-on-fail`).
pub const ABORT_CASE: &str = "live abort";

/// Whether every expected task reported and completed; if not, why (one line).
pub fn coverage_problem(summary: &Summary) -> Option<String> {
    let Some(info) = &summary.merge else {
        return match &summary.outcome {
            Outcome::Completed => None,
            other => Some(format!("the run did not complete: {}", other.status())),
        };
    };
    let MergeInfo {
        tasks_expected,
        tasks_reported,
        tasks_missing,
        tasks_not_completed,
        ..
    } = info;
    // A run a live threshold stopped: tasks interrupted by the launcher did as asked.
    if tasks_missing.is_empty()
        && (tasks_not_completed.is_empty() || summary.stopped_by_abort())
        && *tasks_reported > 0
    {
        return None;
    }
    Some(match &summary.outcome {
        Outcome::Failed { reason } => reason.clone(),
        _ => format!("{tasks_reported} of {tasks_expected} tasks reported"),
    })
}

/// A JUnit XML report: one test case per threshold (a `<failure>` for each broken one, with the
/// measured value) and the case [`COVERAGE_CASE`], failing when tasks are missing or did not
/// complete.
pub fn junit_xml(results: &[ThresholdResult], summary: &Summary, suite_name: &str) -> String {
    let coverage = coverage_problem(summary);
    let aborted = summary.aborted.as_ref();
    let failures = results.iter().filter(|r| !r.held).count()
        + usize::from(coverage.is_some())
        + usize::from(aborted.is_some());
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suite = xml_escape(suite_name);
    xml.push_str(&format!(
        "<testsuites name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\">\n  <testsuite \
         name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
        tests = results.len() + 1 + usize::from(aborted.is_some()),
    ));
    let info = summary.merge.as_ref();
    let coverage_name = format!(
        "{COVERAGE_CASE}: {} of {} tasks reported",
        info.map_or(0, |i| i.tasks_reported),
        info.map_or(0, |i| i.tasks_expected)
    );
    let case = |xml: &mut String, name: &str, failure: Option<(String, String)>| {
        xml.push_str(&format!(
            "    <testcase classname=\"{suite}\" name=\"{}\"",
            xml_escape(name)
        ));
        match failure {
            None => xml.push_str("/>\n"),
            Some((message, body)) => xml.push_str(&format!(
                ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    \
                 </testcase>\n",
                xml_escape(&message),
                xml_escape(&body)
            )),
        }
    };
    case(&mut xml, &coverage_name, coverage.map(|c| (c.clone(), c)));
    if let Some(a) = aborted {
        let windows: Vec<String> = a
            .windows
            .iter()
            .map(|w| format!("window {}: {}", w.window, w.measured))
            .collect();
        case(
            &mut xml,
            &format!("{ABORT_CASE}: {}", a.threshold),
            Some((
                a.reason.clone(),
                format!("{} ({})", a.reason, windows.join(", ")),
            )),
        );
    }
    for r in results {
        let failure = (!r.held).then(|| {
            (
                format!("{} broken: measured {}", r.expression, r.measured_text),
                format!(
                    "threshold {} (limit {}) was broken: measured {}",
                    r.expression, r.limit, r.measured_text
                ),
            )
        });
        case(&mut xml, &r.expression, failure);
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// A test case of a JUnit suite built by [`suites_xml`]: its name, a failure `(message, body)`
/// when it failed, and what it says in `<system-out>`.
#[derive(Debug, Clone, PartialEq)]
pub struct JunitCase {
    /// The case's name.
    pub name: String,
    /// `(message, body)` of its `<failure>`, when it failed.
    pub failure: Option<(String, String)>,
    /// Its `<system-out>`.
    pub output: Option<String>,
}

/// [`junit_xml`] with more suites after the gate's (the comparison with a baseline: one case per
/// metric), each `(name, cases)`.
pub fn junit_xml_with(
    results: &[ThresholdResult],
    summary: &Summary,
    suite_name: &str,
    extra: &[(String, Vec<JunitCase>)],
) -> String {
    if extra.is_empty() {
        return junit_xml(results, summary, suite_name);
    }
    let info = summary.merge.as_ref();
    let coverage = coverage_problem(summary);
    let mut gate = vec![JunitCase {
        name: format!(
            "{COVERAGE_CASE}: {} of {} tasks reported",
            info.map_or(0, |i| i.tasks_reported),
            info.map_or(0, |i| i.tasks_expected)
        ),
        failure: coverage.map(|c| (c.clone(), c)),
        output: None,
    }];
    gate.extend(results.iter().map(|r| JunitCase {
        name: r.expression.clone(),
        failure: (!r.held).then(|| {
            (
                format!("{} broken: measured {}", r.expression, r.measured_text),
                format!(
                    "threshold {} (limit {}) was broken: measured {}",
                    r.expression, r.limit, r.measured_text
                ),
            )
        }),
        output: None,
    }));
    let mut suites = vec![(suite_name.to_string(), gate)];
    suites.extend(extra.iter().cloned());
    suites_xml(suite_name, &suites)
}

/// A JUnit XML report of several suites, each `(name, cases)`.
pub fn suites_xml(name: &str, suites: &[(String, Vec<JunitCase>)]) -> String {
    let count = |cases: &[JunitCase]| {
        (
            cases.len(),
            cases.iter().filter(|c| c.failure.is_some()).count(),
        )
    };
    let (tests, failures) = suites.iter().fold((0, 0), |(t, f), (_, cases)| {
        let (ct, cf) = count(cases);
        (t + ct, f + cf)
    });
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">\n",
        xml_escape(name)
    ));
    for (suite, cases) in suites {
        let (t, f) = count(cases);
        let suite = xml_escape(suite);
        xml.push_str(&format!(
            "  <testsuite name=\"{suite}\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" \
             skipped=\"0\">\n"
        ));
        for case in cases {
            xml.push_str(&format!(
                "    <testcase classname=\"{suite}\" name=\"{}\"",
                xml_escape(&case.name)
            ));
            if case.failure.is_none() && case.output.is_none() {
                xml.push_str("/>\n");
                continue;
            }
            xml.push_str(">\n");
            if let Some((message, body)) = &case.failure {
                xml.push_str(&format!(
                    "      <failure message=\"{}\" type=\"threshold\">{}</failure>\n",
                    xml_escape(message),
                    xml_escape(body)
                ));
            }
            if let Some(out) = &case.output {
                xml.push_str(&format!(
                    "      <system-out>{}</system-out>\n",
                    xml_escape(out)
                ));
            }
            xml.push_str("    </testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::gate::tests::summary;
    use crate::launcher::gate::{evaluate, parse_all};

    #[test]
    fn extra_suites_follow_the_gate_with_their_own_counts() {
        let s = summary();
        let results = evaluate(&parse_all(&["p99<250ms"]).unwrap(), &s);
        let cases = vec![
            JunitCase {
                name: "baseline: latency p99".into(),
                failure: Some(("latency p99 regressed: +38 %".into(), "body".into())),
                output: Some("latency p99: 90 ms → 124 ms".into()),
            },
            JunitCase {
                name: "baseline: throughput rate".into(),
                failure: None,
                output: None,
            },
        ];
        let xml = junit_xml_with(&results, &s, "run", &[("comparison".into(), cases)]);
        assert!(
            xml.contains("<testsuites name=\"run\" tests=\"4\" failures=\"1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"comparison\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"run\" tests=\"2\" failures=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>latency p99: 90 ms → 124 ms</system-out>"),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"baseline: throughput rate\"/>"),
            "{xml}"
        );
        // Without extra suites: the gate's file as it always was.
        assert_eq!(
            junit_xml_with(&results, &s, "run", &[]),
            junit_xml(&results, &s, "run")
        );
    }

    #[test]
    fn escapes_xml() {
        assert_eq!(
            xml_escape("a<b & \"c\" > 'd'\n\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &gt; &apos;d&apos;&#10;\u{FFFD}"
        );
    }

    #[test]
    fn junit_has_a_case_per_threshold_and_coverage() {
        let mut s = summary();
        let results = evaluate(&parse_all(&["p99<250ms", "p99<200ms"]).unwrap(), &s);
        let xml = junit_xml(&results, &s, "fleetload <run> & co");
        assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("name=\"fleetload &lt;run&gt; &amp; co\""),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testcase classname=\"fleetload &lt;run&gt; &amp; co\" name=\"p99&lt;250ms\"/>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"p99&lt;200ms broken: measured 231.4ms\""),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"fleet coverage: 2 of 2 tasks reported\"/>"),
            "{xml}"
        );
        s.outcome = Outcome::Failed {
            reason: "1 of 2 tasks did not complete; missing: t<2>".into(),
        };
        s.merge.as_mut().unwrap().tasks_missing = vec!["t<2>".into()];
        let xml = junit_xml(&results, &s, "suite");
        assert!(xml.contains("failures=\"2\""), "{xml}");
        assert!(xml.contains("missing: t&lt;2&gt;"), "{xml}");
    }
}
