//! `launcher compare` and `launcher run --baseline`, through the binary.
//!
//! Real runs against the Kinesis double: one double answers every request after 300 ms, a second
//! one, the slowed target, after 350 ms — 50 ms more. Runs `a`, `b` and `c` go to the first (`b`
//! with `--baseline a`), run `s` to the slowed one (with `--baseline a`). They are made once, one
//! at a time (two runs at once on a 2-core machine would each see the other's load), and the
//! tests below read them. Reports built with the library's writers and merged by the binary
//! stand for runs of other scenarios, and for partly missing and older reports.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use common::{aws_env_at, launcher, synthetic_task, text, wait, write_task};
use fleetload::model::report::{Outcome, Summary};
use fleetload::store::ReportStore;
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};
use serde_json::Value;

/// What the first target adds to every answer: enough that the tens of milliseconds a busy 2-core
/// machine can add to a run's tail (measured: p99 of 106 to 119 ms over six runs at 100 ms) stay
/// well inside the 10 % that `p99<baseline+10%` allows.
const SAME_MS: u64 = 300;
/// What the slowed target adds: 50 ms more.
const SLOWED_MS: u64 = 350;
/// A double's sleep lasts what it was asked and up to one tick of the runtime's timer (1 ms)
/// more, and each double sleeps on its own: the measured shift may be off the added latency by
/// that much either way.
const TIMER_SLACK_MS: f64 = 2.0;
/// What every measured run does: 1 task (one process: the machine's load is the noise this test
/// must not measure), 500 events/s for 4 s, with enough requests in flight that none waits for
/// another's answer (32, the default, would be 107 requests a second at 300 ms: queueing, not the
/// target, would set the latency). The task gets 3 s to start: a worker still starting at the
/// planned start sends its first events late, and that lateness is latency (measured from the
/// intended send time).
const RUN: [&str; 17] = [
    "run",
    "--tasks",
    "1",
    "--target",
    "kinesis",
    "--stream",
    "compare",
    "--rate",
    "500",
    "--duration",
    "4s",
    "--start-delay",
    "3s",
    "--report-url",
    "reports",
    "-e",
    "FLEETLOAD_MAX_IN_FLIGHT=300",
];

struct Fixture {
    /// Where the runs ran; their reports are under `reports/`.
    dir: PathBuf,
    /// Each run's output, by name.
    runs: BTreeMap<&'static str, Output>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The tests here run one at a time: a merge or a comparison of one test (CPU-bound) must not
/// run beside the measured runs of another, whose tail latency it would lengthen.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    // A test that failed while holding it leaves nothing half done for the next one.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The four runs, made on first use.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        std::thread::spawn(make_runs)
            .join()
            .expect("the measured runs were made")
    })
}

fn make_runs() -> Fixture {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compare-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runs = rt.block_on(async {
        let double = |ms| {
            KinesisDouble::start(DoubleConfig {
                shards: 2,
                stream_name: "compare".into(),
                latency: Some(Duration::from_millis(ms)),
                ..Default::default()
            })
        };
        let same = double(SAME_MS).await.unwrap();
        let slowed = double(SLOWED_MS).await.unwrap();
        let against_a = |junit: &'static str| {
            vec![
                "--baseline",
                "reports/cmp-a",
                "--threshold",
                "p99<baseline+10%",
                "--threshold",
                "rate>=baseline-5%",
                "--fail-on-regression",
                "--junit",
                junit,
            ]
        };
        let mut runs = BTreeMap::new();
        for (name, url, extra) in [
            ("a", same.endpoint_url(), vec![]),
            ("b", same.endpoint_url(), against_a("b.xml")),
            ("c", same.endpoint_url(), vec![]),
            ("s", slowed.endpoint_url(), against_a("s.xml")),
        ] {
            let run_id = format!("cmp-{name}");
            let mut args: Vec<&str> = RUN.to_vec();
            args.extend(["--run-id", run_id.as_str()]);
            args.extend(extra);
            let mut cmd = launcher(&args, &dir);
            cmd.envs(aws_env_at(&url));
            let child = cmd.spawn().unwrap();
            let out = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(120)))
                .await
                .unwrap();
            runs.insert(name, out);
        }
        runs
    });
    for name in ["a", "c"] {
        assert_eq!(
            runs[name].status.code(),
            Some(0),
            "run {name}:\n{}",
            text(&runs[name])
        );
    }
    Fixture { dir, runs }
}

/// `launcher compare ARGS` in `dir`; its output.
fn compare(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["compare"];
    all.extend(args);
    let child = launcher(&all, dir).spawn().unwrap();
    wait(child, Duration::from_secs(120))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The metric `group name` of a compare.json.
fn metric<'a>(c: &'a Value, group: &str, name: &str) -> &'a Value {
    c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["group"] == group && m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {group} {name} in {c:#}"))
}

fn assert_lines_fit(out: &Output) {
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        assert!(
            line.chars().count() <= 100,
            "a line of {} columns:\n{line}",
            line.chars().count()
        );
    }
}

#[test]
fn runs_of_one_scenario_against_one_target_compare_with_nothing_regressed() {
    let _alone = alone();
    let f = fixture();
    for (base, new) in [("a", "b"), ("b", "c"), ("a", "c"), ("c", "a")] {
        let (b, n) = (format!("reports/cmp-{base}"), format!("reports/cmp-{new}"));
        let out = compare(&f.dir, &[&b, &n, "--fail-on-regression"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{base} → {new}:\n{}",
            text(&out)
        );
        assert_lines_fit(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("scenario  the same"), "{stdout}");
        assert!(
            stdout.contains("result: NO REGRESSION (exit 0)"),
            "{stdout}"
        );
        let merged = f.dir.join(format!("reports/cmp-{new}/merged"));
        let c = json(&merged.join("compare.json"));
        assert_eq!(c["regressed"], 0, "{base} → {new}: {c:#}");
        assert_eq!(c["base"]["run_id"], format!("cmp-{base}"));
        // Judged on intervals: p50 and the rate had one, and it held no change worth the name.
        for (group, name) in [("latency", "p50"), ("throughput", "rate")] {
            let m = metric(&c, group, name);
            assert_eq!(m["verdict"], "within noise", "{m:#}");
            assert!(m["interval"]["low"].is_number(), "{m:#}");
        }
        assert!(merged.join("compare.html").is_file());
    }
}

#[test]
fn a_target_slowed_by_50ms_regresses_p50_and_p99_and_the_interval_holds_the_added_latency() {
    let _alone = alone();
    let f = fixture();
    let out = compare(
        &f.dir,
        &["reports/cmp-a", "reports/cmp-s", "--fail-on-regression"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_lines_fit(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("result: 2 REGRESSED") || stdout.contains("REGRESSED (exit 1)"),
        "{stdout}"
    );
    let c = json(&f.dir.join("reports/cmp-s/merged/compare.json"));
    let added = (SLOWED_MS - SAME_MS) as f64;
    for name in ["p50", "p99"] {
        let m = metric(&c, "latency", name);
        assert_eq!(m["verdict"], "regressed", "{m:#}");
        let (low, high) = (
            m["interval"]["low"].as_f64().unwrap(),
            m["interval"]["high"].as_f64().unwrap(),
        );
        assert!(low > 0.0, "{m:#}");
        if name == "p50" {
            assert!(
                low - TIMER_SLACK_MS <= added && added <= high + TIMER_SLACK_MS,
                "the p50 interval {low}…{high} ms does not hold the added {added} ms: {m:#}"
            );
        }
        // The table says it as the issue writes it: `+N % (+L…+H %)`.
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name) && l.contains("regressed"))
            .unwrap_or_else(|| panic!("no {name} line in\n{stdout}"));
        assert!(line.contains(" % (+") && line.contains("…+"), "{line}");
    }
    // The rate did not change: the generator kept its schedule.
    assert_ne!(metric(&c, "throughput", "rate")["verdict"], "regressed");
    // Service time is shown, and not judged: no per-second service-time histograms.
    let service = metric(&c, "service time", "p50");
    assert_eq!(service["verdict"], "not judged");
    assert!(service["why"].as_str().unwrap().contains("per-second"));
    // The page overlays the two runs, and names no URL to fetch: it opens without a network.
    let page = std::fs::read_to_string(f.dir.join("reports/cmp-s/merged/compare.html")).unwrap();
    assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert!(
        page.find("id=\"differences\"").unwrap() < page.find("id=\"verdict\"").unwrap(),
        "the scenario differences come first"
    );
    for needle in [
        "data-series=\"base acknowledged\"",
        "data-series=\"new acknowledged\"",
        "data-series=\"new p99_ms\"",
        "data-series=\"base latency\"",
        "data-metric=\"latency p99\" data-verdict=\"regressed\"",
    ] {
        assert!(page.contains(needle), "{needle} not in the page");
    }
}

#[test]
fn baseline_thresholds_hold_against_the_same_target_and_break_against_the_slowed_one() {
    let _alone = alone();
    let f = fixture();
    let (same, slowed) = (&f.runs["b"], &f.runs["s"]);
    assert_eq!(same.status.code(), Some(0), "{}", text(same));
    assert_eq!(slowed.status.code(), Some(1), "{}", text(slowed));
    let stdout = String::from_utf8_lossy(&slowed.stdout);
    assert!(stdout.contains("BROKEN p99<baseline+10%"), "{stdout}");
    let regressed = stdout
        .lines()
        .find_map(|l| l.split_once("regressed against the baseline: "))
        .map(|(_, list)| list.to_string())
        .unwrap_or_else(|| panic!("no regression listed:\n{stdout}"));
    assert!(
        regressed.contains("latency p50") && regressed.contains("latency p99"),
        "{regressed}"
    );
    // The JUnit files: the threshold and every metric of the comparison are test cases.
    let same_xml = std::fs::read_to_string(f.dir.join("b.xml")).unwrap();
    assert!(
        same_xml.contains("name=\"p99&lt;baseline+10%\"/>"),
        "{same_xml}"
    );
    assert!(
        same_xml.contains("name=\"baseline: latency p99\""),
        "{same_xml}"
    );
    assert!(!same_xml.contains("<failure"), "{same_xml}");
    let slowed_xml = std::fs::read_to_string(f.dir.join("s.xml")).unwrap();
    assert!(
        slowed_xml.contains("message=\"p99&lt;baseline+10% broken: measured"),
        "{slowed_xml}"
    );
    assert!(
        slowed_xml.contains("message=\"latency p99 regressed: +"),
        "{slowed_xml}"
    );
    assert!(
        slowed_xml.contains("rate&gt;=baseline-5%\"/>"),
        "{slowed_xml}"
    );
    // Local runs price the target only: two open shards for the run's production.
    let merged: Summary = Summary::from_json(
        &std::fs::read(f.dir.join("reports/cmp-b/merged/summary.json")).unwrap(),
    )
    .unwrap();
    let cost = merged.cost.expect("a cost estimate");
    assert_eq!(cost.parts.fleet.status, "not charged");
    assert_eq!(cost.parts.storage.status, "not charged");
    let shard_hours = &cost.parts.target.items[0];
    assert_eq!(shard_hours.unit, "shard-hour");
    assert!((shard_hours.quantity - 2.0 * merged.duration_s / 3600.0).abs() < 1e-12);
    assert!(cost.estimate.contains("not a bill"));
    assert!(String::from_utf8_lossy(&same.stdout).contains("cost           ≈ $"));
}

#[test]
fn a_baseline_that_cannot_be_read_stops_the_run_before_any_task_starts() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let child = launcher(
        &[
            "run",
            "--tasks",
            "1",
            "--target",
            "null",
            "--duration",
            "1s",
            "--report-url",
            "reports",
            "--run-id",
            "never",
            "--baseline",
            "reports/missing",
            "--threshold",
            "p99<baseline+10%",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--baseline cannot be used"), "{stderr}");
    assert!(stderr.contains("merged/summary.json"), "{stderr}");
    assert!(!dir.path().join("reports/never").exists(), "a task started");
    // A relative threshold without a baseline is refused too.
    let child = launcher(
        &[
            "run",
            "--tasks",
            "1",
            "--target",
            "null",
            "--duration",
            "1s",
            "--threshold",
            "p99<baseline+10%",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no --baseline was given"),
        "{}",
        text(&out)
    );
}

/// Writes run `run_id` of `tasks` tasks whose events all took `latency_us`, with `scenario` in
/// every task's summary, and merges it with the binary.
fn synthetic_run(
    dir: &Path,
    run_id: &str,
    tasks: usize,
    latency_us: u64,
    scenario: &[(&str, &str)],
) {
    let store = ReportStore::Local(dir.join("reports"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for t in 0..tasks {
        let values: Vec<u64> = (0..2000).map(|i| latency_us + (i % 97) * 10).collect();
        let mut task = synthetic_task(run_id, &format!("t{t}"), &values, 0, 20, Outcome::Completed);
        for (k, v) in scenario {
            task.summary.scenario.insert(k.to_string(), v.to_string());
        }
        rt.block_on(write_task(&store, &task));
    }
    let child = launcher(&["merge", &format!("reports/{run_id}")], dir)
        .spawn()
        .unwrap();
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn runs_of_different_scenarios_are_compared_with_the_differences_listed_first() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), "slow", 2, 5_000, &[("FLEETLOAD_RATE", "100")]);
    synthetic_run(dir.path(), "fast", 3, 2_000, &[("FLEETLOAD_RATE", "150")]);
    let out = compare(
        dir.path(),
        &["reports/slow", "reports/fast", "--out", "cmp"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_lines_fit(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let differences = stdout.find("scenario  2 difference(s)").expect(&stdout);
    assert!(differences < stdout.find("metric").unwrap(), "{stdout}");
    assert!(stdout.contains("  tasks           2 → 3"), "{stdout}");
    assert!(stdout.contains("  FLEETLOAD_RATE  100 → 150"), "{stdout}");
    // Written where --out says, and nowhere in the runs.
    let c = json(&dir.path().join("cmp/compare.json"));
    assert!(dir.path().join("cmp/compare.html").is_file());
    assert!(!dir.path().join("reports/fast/merged/compare.json").exists());
    let names: Vec<&str> = c["scenario_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tasks", "FLEETLOAD_RATE"]);
    // Still compared: the faster run's p50 improved, by more than its noise.
    let p50 = metric(&c, "latency", "p50");
    assert_eq!(p50["verdict"], "improved", "{p50:#}");
    assert!(p50["interval_relative"]["high"].as_f64().unwrap() < 0.0);
}

/// A merged run, then broken in one way each: what `compare` says, and that it writes nothing.
#[test]
fn partly_missing_or_older_reports_are_refused_with_what_is_missing() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), "good", 1, 3_000, &[]);
    let reports = dir.path().join("reports");
    let copy = |to: &str| {
        let to = reports.join(to);
        std::fs::create_dir_all(to.join("merged")).unwrap();
        for f in ["summary.json", "timeseries.csv", "histograms.hlog"] {
            std::fs::copy(
                reports.join("good/merged").join(f),
                to.join("merged").join(f),
            )
            .unwrap();
        }
        to
    };
    let no_hlog = copy("no-hlog");
    std::fs::remove_file(no_hlog.join("merged/histograms.hlog")).unwrap();
    let edit = |name: &str, f: &dyn Fn(&mut Value)| {
        let run = copy(name);
        let path = run.join("merged/summary.json");
        let mut v = json(&path);
        f(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    edit("older", &|v| v["schema_version"] = 0.into());
    edit("no-counts", &|v| {
        v.as_object_mut().unwrap().remove("counts");
    });
    let unmerged = reports.join("unmerged/tasks/t0");
    std::fs::create_dir_all(&unmerged).unwrap();
    std::fs::copy(
        reports.join("good/tasks/t0/summary.json"),
        unmerged.join("summary.json"),
    )
    .unwrap();
    for (new, expected) in [
        ("no-hlog", "reports/no-hlog/merged/histograms.hlog"),
        ("no-hlog", "per-second latency histograms"),
        (
            "older",
            "schema_version 0, and this launcher reads schema_version 1",
        ),
        ("no-counts", "missing field `counts`"),
        (
            "unmerged",
            "never merged: run `launcher merge reports/unmerged` first",
        ),
        ("nowhere", "check the location"),
    ] {
        let out = compare(dir.path(), &["reports/good", &format!("reports/{new}")]);
        assert_eq!(out.status.code(), Some(2), "{new}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{new}: {stderr}");
        assert!(
            stderr.contains(&format!("NEW reports/{new}")),
            "{new}: {stderr}"
        );
        assert!(!reports.join(new).join("merged/compare.json").exists());
    }
    // The same refusal names BASE when the base is the broken one.
    let out = compare(dir.path(), &["reports/older", "reports/good"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("BASE reports/older"), "{}", text(&out));
    assert!(!reports.join("good/merged/compare.json").exists());
}
