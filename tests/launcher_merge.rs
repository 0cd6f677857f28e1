//! `launcher merge` through the binary: exit codes, what a user sees, the merged files and the
//! JUnit report, on synthetic task reports written with the library's own writers.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{synthetic_task, write_task};
use fleetload::model::report::{Outcome, Summary};
use fleetload::store::ReportStore;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
const RUN: &str = "run-7";

/// The launcher with a clean environment: no FLEETLOAD_* or AWS_* of the developer's shell.
fn launcher(args: &[&str]) -> Command {
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two completed tasks (latencies 1–4 ms and 5–9 ms, 3 throttled events) under `dir/RUN`.
async fn two_tasks(dir: &Path) {
    let store = ReportStore::Local(dir.to_path_buf());
    let a = synthetic_task(
        RUN,
        "task-a",
        &[1000, 2000, 3000, 4000],
        1,
        2,
        Outcome::Completed,
    );
    let b = synthetic_task(RUN, "task-b", &[5000, 9000], 2, 2, Outcome::Completed);
    write_task(&store, &a).await;
    write_task(&store, &b).await;
}

/// The `<failure message=…>` attributes of a JUnit file, checking on the way that it is
/// well-formed XML.
fn junit_failures(path: &Path) -> (Vec<String>, usize) {
    use quick_xml::events::Event;
    let xml = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut failures = Vec::new();
    let mut cases = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"testcase" => cases += 1,
                b"failure" => {
                    let message = e
                        .try_get_attribute("message")
                        .unwrap()
                        .expect("a failure has a message");
                    failures.push(message.unescape_value().unwrap().into_owned());
                }
                _ => {}
            },
            Ok(_) => {}
            Err(e) => panic!("{} is not well-formed XML: {e}\n{xml}", path.display()),
        }
    }
    (failures, cases)
}

#[tokio::test]
async fn holding_thresholds_exit_0_and_write_the_merged_report() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let junit = dir.path().join("out/junit.xml");
    let location = format!("{}/{RUN}", dir.path().display());
    let out = launcher(&[
        "merge",
        &location,
        "--threshold",
        "p99<250ms",
        "--threshold",
        "error_rate < 50%",
        "--threshold",
        "acknowledged>=6",
        "--junit",
        junit.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for expected in [
        "fleetload run run-7",
        "2 of 2 reported, 2 completed",
        "acknowledged 6",
        "ProvisionedThroughputExceededException 3",
        "thresholds     3 of 3 held",
        "held   p99<250ms",
        "measured 9.007ms",
        "result: PASSED (exit 0)",
    ] {
        assert!(shown.contains(expected), "missing {expected:?}\n{shown}");
    }
    let merged_dir = dir.path().join(RUN).join("merged");
    assert!(
        shown.contains(&merged_dir.join("summary.json").display().to_string()),
        "{shown}"
    );
    let summary =
        Summary::from_json(&std::fs::read(merged_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.task_id, "merged");
    assert_eq!(summary.counts.acknowledged, 6);
    assert_eq!(summary.counts.failed, 3);
    let h = summary.latency_histogram().unwrap();
    assert_eq!(h.len(), 6);
    let mut all = fleetload::model::report::new_histogram();
    for v in [1000, 2000, 3000, 4000, 5000, 9000] {
        all.record(v).unwrap();
    }
    assert_eq!(
        h, all,
        "the merged histogram holds exactly every task's values"
    );
    assert_eq!(summary.merge.as_ref().unwrap().tasks.len(), 2);
    let csv = std::fs::read_to_string(merged_dir.join("timeseries.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        fleetload::model::report::TIMESERIES_HEADER
    );
    assert_eq!(csv.lines().count(), 3);
    let hlog = fleetload::model::report::parse_hlog(
        &std::fs::read(merged_dir.join("histograms.hlog")).unwrap(),
    )
    .unwrap();
    assert_eq!(hlog.iter().map(|(_, h)| h.len()).sum::<u64>(), 6);
    let (failures, cases) = junit_failures(&junit);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(cases, 4, "three thresholds and the fleet coverage");
}

#[tokio::test]
async fn a_broken_threshold_exits_1_and_shows_the_measured_value() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let junit = dir.path().join("junit.xml");
    let location = format!("{}/{RUN}/", dir.path().display());
    let out = launcher(&[
        "merge",
        &location,
        "--threshold",
        "p99<5ms",
        "--threshold",
        "rate>=1/s",
        "--junit",
        junit.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("BROKEN p99<5ms     measured 9.007ms"),
        "{shown}"
    );
    assert!(
        shown.contains("result: THRESHOLD BROKEN (exit 1)"),
        "{shown}"
    );
    let (failures, cases) = junit_failures(&junit);
    assert_eq!(failures, vec!["p99<5ms broken: measured 9.007ms"]);
    assert_eq!(cases, 3);
}

#[tokio::test]
async fn bad_usage_exits_2_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let location = format!("{}/{RUN}", dir.path().display());

    let out = launcher(&["merge", &location, "--threshold", "p99<<5ms"])
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("bad threshold \"p99<<5ms\""), "{shown}");
    assert!(shown.contains("accepted: METRIC OP VALUE"), "{shown}");
    assert!(
        !dir.path().join(RUN).join("merged").exists(),
        "nothing merged on bad usage"
    );

    for (bad, says) in [
        ("ftp://host/dir/run", "unsupported scheme"),
        ("s3://Not_A_Bucket/run", "bucket name"),
        ("justarun", "names no run"),
    ] {
        let out = launcher(&["merge", bad]).output().unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {shown}");
        assert!(shown.contains(says), "{bad}: {shown}");
        assert!(shown.contains("<REPORT_URL>/<RUN_ID>"), "{bad}: {shown}");
    }

    let out = launcher(&["merge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = launcher(&["merge", &location, "--expected-tasks", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn missing_reports_exit_3_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let junit = dir.path().join("junit.xml");
    let location = format!("{}/{RUN}", dir.path().display());
    let out = launcher(&[
        "merge",
        &location,
        "--expected-tasks",
        "3",
        "--threshold",
        "p99<250ms",
        "--junit",
        junit.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("2 of 3 reported"), "{shown}");
    assert!(shown.contains("missing      missing-1"), "{shown}");
    // Both verdicts are printed: the fleet failed, the threshold held.
    assert!(
        shown.contains("result: FLEET FAILED (exit 3): 1 of 3 tasks did not complete; missing: missing-1; 1 of 1 thresholds held"),
        "{shown}"
    );
    let (failures, _) = junit_failures(&junit);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("missing: missing-1"), "{failures:?}");
    let summary = Summary::from_json(
        &std::fs::read(dir.path().join(RUN).join("merged/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary.merge.unwrap().tasks_missing, vec!["missing-1"]);
}

#[tokio::test]
async fn a_failed_task_exits_3_even_when_thresholds_hold() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let store = ReportStore::Local(dir.path().to_path_buf());
    let failed = synthetic_task(
        RUN,
        "task-c",
        &[1000],
        0,
        1,
        Outcome::Failed {
            reason: "stream fleet-test not found".into(),
        },
    );
    write_task(&store, &failed).await;
    let interrupted = synthetic_task(
        RUN,
        "task-d",
        &[1000],
        0,
        1,
        Outcome::Interrupted {
            signal: "SIGTERM".into(),
        },
    );
    write_task(&store, &interrupted).await;
    let location = format!("{}/{RUN}", dir.path().display());
    let out = launcher(&["merge", &location, "--threshold", "p99<5ms"])
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("4 of 4 reported, 2 completed"), "{shown}");
    assert!(
        shown.contains("failed       task-c (stream fleet-test not found)"),
        "{shown}"
    );
    assert!(shown.contains("interrupted  task-d (SIGTERM)"), "{shown}");
    assert!(
        shown.contains("1 of 1 thresholds broken: p99<5ms (measured 9.007ms)"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_unreadable_report_is_a_failed_task() {
    let dir = tempfile::tempdir().unwrap();
    two_tasks(dir.path()).await;
    let bad = dir.path().join(RUN).join("tasks/task-z");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("summary.json"), b"{\"schema_version\": 1").unwrap();
    let location = format!("{}/{RUN}", dir.path().display());
    let out = launcher(&["merge", &location]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("task-z (unreadable report: summary.json"),
        "{shown}"
    );
}

#[tokio::test]
async fn no_reports_at_all_exit_3_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("{}/no-such-run", dir.path().display());
    let out = launcher(&["merge", &location]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("no-such-run does not exist, so no task of run no-such-run reported there"),
        "{shown}"
    );
    assert!(out.stdout.is_empty(), "{shown}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{shown}"
    );
    assert!(!dir.path().join("no-such-run").exists());
}
