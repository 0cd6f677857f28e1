//! Helpers shared by the integration tests: the moto server (the AWS stand-in on loopback) and
//! synthetic task reports written with the library's own report writers.
//!
//! A test that needs the moto server fails, loudly, when `FLEETLOAD_TEST_MOTO_URL` is unset; it
//! never skips itself green.

#![allow(dead_code)]

pub mod msk_iam;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fleetload::model::report::{
    encode_histogram, new_histogram, timeseries_csv, write_hlog, Counts, Histograms, Outcome,
    Percentiles, SecondRow, Summary, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, TIMESERIES_FILE,
};
use fleetload::store::{task_dir, ReportStore};
use hdrhistogram::Histogram;

/// What a test says when the moto server is not there.
pub const MOTO_UNSET: &str = "FLEETLOAD_TEST_MOTO_URL is not set: run the tests through \
                              ci/test.sh, which starts the moto server";

/// The moto server's URL (`http://127.0.0.1:PORT`), from `FLEETLOAD_TEST_MOTO_URL`.
pub fn moto_url() -> String {
    match std::env::var("FLEETLOAD_TEST_MOTO_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_string(),
        _ => panic!("{MOTO_UNSET}"),
    }
}

/// Fake credentials and a region for the standard AWS chain; never the instance metadata
/// endpoint.
const TEST_AWS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The environment a child process needs to reach the moto server through the standard AWS
/// chain (endpoint, fake credentials, region; never the instance metadata endpoint).
pub fn aws_env() -> Vec<(&'static str, String)> {
    let mut e = vec![("AWS_ENDPOINT_URL", moto_url())];
    e.extend(TEST_AWS.iter().map(|(k, v)| (*k, v.to_string())));
    e
}

/// The same for another loopback endpoint (a test double, a black hole).
pub fn aws_env_at(endpoint: &str) -> Vec<(String, String)> {
    let mut e = env(&[("AWS_ENDPOINT_URL", endpoint)]);
    e.extend(env(&TEST_AWS));
    e
}

/// Owned `(name, value)` pairs for a child's environment.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Task id of the Kafka worker the Kafka tests start.
pub const KAFKA_TASK: &str = "kafka-1";

/// A Kafka worker's environment: topic `events` on `servers`, run `run`, task [`KAFKA_TASK`],
/// reports under `report`, and `extra`.
pub fn kafka_env(
    servers: &str,
    run: &str,
    report: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut e = env(&[
        ("FLEETLOAD_TARGET", "kafka"),
        ("FLEETLOAD_TOPIC", "events"),
        ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", servers),
        ("FLEETLOAD_RUN_ID", run),
        ("FLEETLOAD_TASK_ID", KAFKA_TASK),
        ("FLEETLOAD_REPORT_URL", report.to_str().unwrap()),
    ]);
    e.extend(env(extra));
    e
}

/// An SDK configuration for in-process use against the moto server, built explicitly rather
/// than by changing the test process's environment.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "fleetload-tests",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run against the same moto server) uses.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Creates an S3 bucket on the moto server and returns a report store on it.
pub async fn moto_bucket(prefix: &str) -> (ReportStore, String) {
    let sdk = moto_sdk_config().await;
    let bucket = unique_name("fleetload-test");
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not create bucket {bucket} on the moto server at {}: {e:?}",
                moto_url()
            )
        });
    let store = ReportStore::s3_with_config(&sdk, true, bucket.clone(), prefix.to_string());
    (store, bucket)
}

/// The planned start of every synthetic run.
pub fn planned_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A synthetic task report: `values` (µs) acknowledged round-robin over `seconds` seconds, plus
/// `failed` events failed with `ProvisionedThroughputExceededException`.
pub struct SyntheticTask {
    /// The summary.
    pub summary: Summary,
    /// The time series.
    pub rows: Vec<SecondRow>,
    /// The per-second histograms.
    pub per_second: Vec<(u64, Histogram<u64>)>,
}

/// Builds a synthetic task report of run `run_id`.
pub fn synthetic_task(
    run_id: &str,
    task_id: &str,
    values: &[u64],
    failed: u64,
    seconds: u64,
    outcome: Outcome,
) -> SyntheticTask {
    let mut latency = new_histogram();
    let mut per_second: Vec<(u64, Histogram<u64>)> =
        (0..seconds).map(|s| (s, new_histogram())).collect();
    let mut rows: Vec<SecondRow> = (0..seconds)
        .map(|s| SecondRow {
            second: s,
            target_rate: 100.0,
            ..SecondRow::default()
        })
        .collect();
    for (i, v) in values.iter().enumerate() {
        let s = i % seconds as usize;
        latency.record(*v).unwrap();
        per_second[s].1.record(*v).unwrap();
        rows[s].attempted += 1;
        rows[s].acknowledged += 1;
        rows[s].bytes += 100;
    }
    rows[0].attempted += failed;
    rows[0].failed += failed;
    for (s, h) in &per_second {
        let p = Percentiles::of(h);
        let row = &mut rows[*s as usize];
        row.p50_ms = p.p50;
        row.p99_ms = p.p99;
        row.max_ms = p.max;
    }
    let n = values.len() as u64;
    let mut failed_by_code = BTreeMap::new();
    let mut errors_timeline = BTreeMap::new();
    if failed > 0 {
        let code = "ProvisionedThroughputExceededException".to_string();
        failed_by_code.insert(code.clone(), failed);
        errors_timeline.insert(code, vec![(0, failed)]);
    }
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        task_id: task_id.to_string(),
        target: "null".to_string(),
        scenario: [("FLEETLOAD_TARGET".to_string(), "null".to_string())].into(),
        fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
        planned_start: planned_start(),
        actual_start: Some(planned_start()),
        end: Some(planned_start() + chrono::Duration::seconds(seconds as i64)),
        late_start_ms: 0,
        duration_s: seconds as f64,
        outcome,
        counts: Counts {
            planned: 0,
            unsent: 0,
            attempted: n + failed,
            acknowledged: n,
            failed,
            failed_by_code,
            retried: 0,
            retried_by_code: BTreeMap::new(),
            acknowledged_in_drain: 0,
        },
        bytes: n * 100,
        target_rate: Some(100.0),
        achieved_rate: n as f64 / seconds as f64,
        latency_ms: Percentiles::of(&latency),
        service_time_ms: Percentiles::of(&latency),
        histograms: Histograms {
            unit: "microseconds".to_string(),
            latency: encode_histogram(&latency),
            service_time: encode_histogram(&latency),
        },
        errors_timeline,
        saturation: None,
        by_shard: Default::default(),
        kinesis: None,
        cost: None,
        merge: None,
        end_to_end: Default::default(),
        live: None,
        aborted: None,
    };
    SyntheticTask {
        summary,
        rows,
        per_second,
    }
}

/// Writes a synthetic task's three report files through the store, as a worker would.
pub async fn write_task(store: &ReportStore, task: &SyntheticTask) {
    let dir = task_dir(&task.summary.run_id, &task.summary.task_id);
    store
        .put(
            &format!("{dir}/{TIMESERIES_FILE}"),
            timeseries_csv(&task.rows),
            "text/csv",
        )
        .await
        .unwrap();
    store
        .put(
            &format!("{dir}/{HLOG_FILE}"),
            write_hlog(task.summary.planned_start, &task.per_second),
            "text/plain",
        )
        .await
        .unwrap();
    store
        .put(
            &format!("{dir}/{SUMMARY_FILE}"),
            task.summary.to_json(),
            "application/json",
        )
        .await
        .unwrap();
}

/// The worker binary with a clean environment (PATH, HOME, TMPDIR kept), logging at info, and
/// `env` on top; its output captured.
pub fn worker_command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info");
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs the worker to its end; kills it and fails the test when it outlives `limit`.
pub fn run_worker(env: &[(String, String)], limit: Duration) -> Output {
    let mut child = worker_command(env).spawn().expect("start the worker");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "worker still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// `launcher run` through the binary, with the local backend.

/// `launcher ARGS` in `cwd`, with no FLEETLOAD_* or AWS_* variable of the test's own
/// environment; its output captured.
pub fn launcher(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    cmd.args(args)
        .current_dir(cwd)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Waits for `child` to exit; kills it and fails the test when it outlives `limit`.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "launcher still running after {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// What a process printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a local run's tasks logged (`<report dir>/<run>/logs`), each file under its name, for
/// a failed assertion to show; empty when the run printed no run id or wrote no logs.
pub fn task_logs(report_dir: &Path, out: &Output) -> String {
    let Some(run) = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run id: ").map(str::to_string))
    else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(report_dir.join(run).join("logs")) else {
        return String::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            format!(
                "--- {}\n{}",
                p.display(),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The run id `launcher run` printed.
pub fn run_id_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run id: ").map(str::to_string))
        .expect("the launcher prints the run id")
}

/// The merged summary and every task summary of a local run.
pub fn reports(dir: &Path, run: &str) -> (Summary, Vec<Summary>) {
    let run_dir = dir.join(run);
    let merged = Summary::from_json(
        &std::fs::read(run_dir.join("merged/summary.json")).expect("merged/summary.json"),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for entry in std::fs::read_dir(run_dir.join("tasks")).unwrap() {
        let p = entry.unwrap().path().join("summary.json");
        tasks.push(
            Summary::from_json(
                &std::fs::read(&p).unwrap_or_else(|_| panic!("{} missing", p.display())),
            )
            .unwrap(),
        );
    }
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    (merged, tasks)
}

/// The merged counts, bytes and latency histogram are the sums of the tasks'.
pub fn assert_merge_adds_up(merged: &Summary, tasks: &[Summary]) {
    let sum = |f: fn(&Summary) -> u64| tasks.iter().map(f).sum::<u64>();
    assert_eq!(merged.counts.attempted, sum(|s| s.counts.attempted));
    assert_eq!(merged.counts.acknowledged, sum(|s| s.counts.acknowledged));
    assert_eq!(merged.counts.failed, sum(|s| s.counts.failed));
    assert_eq!(merged.bytes, sum(|s| s.bytes));
    assert_eq!(
        merged.latency_histogram().unwrap().len(),
        merged.counts.acknowledged
    );
    let mut all = fleetload::model::report::new_histogram();
    for t in tasks {
        all.add(t.latency_histogram().unwrap()).unwrap();
    }
    assert_eq!(
        merged.latency_histogram().unwrap(),
        all,
        "the merged histogram is the sum of the tasks'"
    );
}

/// A moto server of its own that answers one request at a time: moto's Kinesis appends to a
/// shard without a lock, so concurrent PutRecords from several tasks can lose records there.
pub fn serial_moto() -> (Child, String) {
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs moto",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = "import sys\nfrom werkzeug.serving import run_simple\nfrom moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\nrun_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";
    let child = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the serial moto server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}
