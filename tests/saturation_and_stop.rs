//! The truth at the edges: a target that cannot keep up, and a stop signal mid-run.
//!
//! The worker binary against a slow Kinesis double (one PutRecords at a time), librdkafka's
//! mock cluster with slowed brokers (and brokers that go silent or down mid-run), and a
//! black-holed endpoint that accepts connections and never answers PutRecords. Everything on
//! loopback, every run bounded in time.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{aws_env_at as aws_env, env, kafka_env, KAFKA_TASK};
use fleetload::model::report::{parse_timeseries, Outcome, SecondRow, Summary};
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
/// From the stop signal to a stored report, whatever the target does.
const STOP_BUDGET: Duration = Duration::from_secs(20);

fn worker(vars: &[(String, String)]) -> Child {
    let mut cmd = Command::new(WORKER);
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start the worker")
}

/// Waits for the child at most `limit`; kills it and fails past that.
fn wait(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "worker still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the child");
}

fn read_report(root: &Path, run: &str, task: &str) -> (Summary, Vec<SecondRow>) {
    let dir = root.join(run).join("tasks").join(task);
    let summary =
        Summary::from_json(&std::fs::read(dir.join("summary.json")).expect("summary.json stored"))
            .unwrap();
    let rows =
        parse_timeseries(&std::fs::read(dir.join("timeseries.csv")).expect("timeseries.csv"))
            .unwrap();
    (summary, rows)
}

/// Every count adds up: `planned = attempted + unsent`, `attempted = acknowledged + failed`,
/// and the per-second rows sum to the totals, the new `unsent` column included.
fn assert_accounts(s: &Summary, rows: &[SecondRow]) {
    let c = &s.counts;
    assert_eq!(c.planned, c.attempted + c.unsent, "{c:?}");
    assert_eq!(c.attempted, c.acknowledged + c.failed, "{c:?}");
    assert_eq!(c.failed, c.failed_by_code.values().sum::<u64>(), "{c:?}");
    assert_eq!(rows.iter().map(|r| r.attempted).sum::<u64>(), c.attempted);
    assert_eq!(
        rows.iter().map(|r| r.acknowledged).sum::<u64>(),
        c.acknowledged
    );
    assert_eq!(rows.iter().map(|r| r.failed).sum::<u64>(), c.failed);
    assert_eq!(rows.iter().map(|r| r.unsent).sum::<u64>(), c.unsent);
    assert_eq!(s.latency_histogram().unwrap().len(), c.acknowledged);
}

/// Production kept to its planned `planned_s` seconds, judged from what the worker cannot clamp:
/// every planned event (attempted or unsent) sits in the per-second rows of seconds
/// `0..planned_s`, no row after them holds an attempt, and the production window the summary
/// states lies inside the wall-clock time the worker process ran, starting at the planned start.
fn assert_production_kept_to(
    s: &Summary,
    rows: &[SecondRow],
    planned_s: usize,
    spawned: chrono::DateTime<chrono::Utc>,
    exited: chrono::DateTime<chrono::Utc>,
) {
    let within: u64 = rows
        .iter()
        .take(planned_s)
        .map(|r| r.attempted + r.unsent)
        .sum();
    assert_eq!(within, s.counts.planned, "{rows:?}");
    assert!(
        rows.iter().skip(planned_s).all(|r| r.attempted == 0),
        "an attempt after second {planned_s}: {rows:?}"
    );
    assert!(
        rows.iter()
            .take(planned_s)
            .all(|r| r.attempted + r.unsent > 0),
        "a second of the schedule without events: {rows:?}"
    );
    let start = s.actual_start.expect("started");
    let end = s.end.expect("ended");
    assert!(
        spawned <= s.planned_start && s.planned_start <= start && end <= exited,
        "spawned {spawned}, planned start {}, production {start} → {end}, exited {exited}",
        s.planned_start
    );
    let ran = (end - start).to_std().unwrap();
    assert!(
        ran <= Duration::from_secs(planned_s as u64) + Duration::from_millis(50),
        "production ran {ran:?}"
    );
}

/// The drain against the per-second rows, which count each acknowledgement in the second it
/// arrived: the rows from second `planned_s` on hold the drain's, plus at most `slack` that came
/// in the last milliseconds of production (it ends just after its last second begins); the
/// achieved rate is what the rows of the production seconds hold, per second (±2 %). Returns
/// what all the rows acknowledged.
fn assert_drain_in_rows(s: &Summary, rows: &[SecondRow], planned_s: usize, slack: u64) -> u64 {
    let during: u64 = rows.iter().take(planned_s).map(|r| r.acknowledged).sum();
    let after: u64 = rows.iter().skip(planned_s).map(|r| r.acknowledged).sum();
    let drain = s.counts.acknowledged_in_drain;
    assert!(
        drain <= after && after - drain <= slack,
        "drain {drain} against {after} acknowledged from second {planned_s} on"
    );
    let taken = during as f64 / planned_s as f64;
    assert!(
        (s.achieved_rate - taken).abs() <= taken * 0.02,
        "achieved {} against {taken:.0}/s in the rows of the production seconds",
        s.achieved_rate
    );
    during + after
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn last_log_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string()
}

/// `launcher merge` of the run with one threshold: the exit code.
fn merge_gate(root: &Path, run: &str, threshold: &str) -> (i32, String) {
    let mut cmd = Command::new(LAUNCHER);
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "merge",
            root.join(run).to_str().unwrap(),
            "--threshold",
            threshold,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A Kinesis double answering one PutRecords call at a time in `service`, counting the user
/// records of aggregated records.
async fn slow_double(stream: &str, service: Duration, one_at_a_time: bool) -> KinesisDouble {
    KinesisDouble::start(DoubleConfig {
        shards: 4,
        stream_name: stream.into(),
        service_time: Some(service),
        one_at_a_time,
        count_user_records: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn kinesis_env(
    double: &KinesisDouble,
    run: &str,
    report: &Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut e = aws_env(&double.endpoint_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", double.stream_arn()),
        ("FLEETLOAD_RUN_ID", run),
        ("FLEETLOAD_TASK_ID", "t1"),
        ("FLEETLOAD_REPORT_URL", report.to_str().unwrap()),
    ]));
    e.extend(env(extra));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_at_twice_its_capacity_ends_on_time_counts_unsent_and_gates_on_the_achieved_rate() {
    // 500 records per call, one call at a time in 50 ms: about 10,000 records/s.
    let double = slow_double("slow", Duration::from_millis(50), true).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = kinesis_env(
        &double,
        "over-run",
        dir.path(),
        &[("FLEETLOAD_RATE", "20000"), ("FLEETLOAD_DURATION", "6s")],
    );
    let spawned = chrono::Utc::now();
    let (out, took) =
        tokio::task::spawn_blocking(move || wait(worker(&vars), Duration::from_secs(6 + 15 + 15)))
            .await
            .unwrap();
    let exited = chrono::Utc::now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (s, rows) = read_report(dir.path(), "over-run", "t1");
    assert_accounts(&s, &rows);
    let c = &s.counts;
    eprintln!(
        "overloaded: planned {} attempted {} unsent {} acknowledged {} achieved_rate {} duration_s {} worker ran {:.1}s; {:?}",
        c.planned, c.attempted, c.unsent, c.acknowledged, s.achieved_rate, s.duration_s,
        took.as_secs_f64(), s.saturation
    );
    // Production ended at the planned end: no stretched schedule.
    assert_production_kept_to(&s, &rows, 6, spawned, exited);
    assert!(
        took < Duration::from_secs(6 + 15),
        "the worker ran {took:?}"
    );
    assert_eq!(c.planned, 120_000, "{c:?}");
    // The target took about half; the rest was never handed over, and says so.
    assert!(c.unsent >= 40_000, "{c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    let stats = double.stats();
    assert_eq!(c.acknowledged, stats.records_accepted, "{c:?} vs {stats:?}");
    assert_eq!(stats.records_received, stats.records_accepted);
    // At most the double's pace (500 records a call, a call at a time, each 50 ms: 10,000/s);
    // on a loaded machine each call takes longer than its 50 ms, so the floor is low: the rows
    // are checked below.
    assert!(
        (4_000.0..=11_500.0).contains(&s.achieved_rate),
        "achieved {} of a target of about 10,000/s",
        s.achieved_rate
    );
    // The calls still queued at the double when production ended (handed over, not yet
    // answered: up to the sink's requests in flight) are answered in the drain; a call of 500
    // may land in the last milliseconds of production. The double took every one (above).
    assert_eq!(
        assert_drain_in_rows(&s, &rows, 6, 500),
        stats.records_accepted
    );
    let sat = s.saturation.as_ref().expect("saturation measured");
    assert_eq!(sat.behind_from_second, Some(0), "{sat:?}");
    assert_eq!(sat.cause.as_deref(), Some("target"), "{sat:?}");
    assert!(sat.blocked_on_target_s > 3.0, "{sat:?}");
    // Unsent events count in the second they were intended for: the loop hands events over in
    // order, so what was never sent is the end of the schedule.
    assert!(rows[5].unsent > 0, "{rows:?}");
    assert!(
        rows[6..].iter().all(|r| r.attempted == 0 && r.unsent == 0),
        "{rows:?}"
    );
    let last = last_log_line(&out);
    assert!(
        last.contains("the target took") && last.contains("of 20,000/s"),
        "{last}"
    );
    assert!(
        last.contains("events were never sent;") && last.contains("; behind from second 0"),
        "{last}"
    );
    assert_eq!(
        last.contains("more were acknowledged after production ended"),
        c.acknowledged_in_drain > 0,
        "{last}"
    );

    // The gate judges the achieved rate, never the target.
    let (code, text) = merge_gate(dir.path(), "over-run", "rate>=15000/s");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the target took"), "{text}");
    let (code, text) = merge_gate(dir.path(), "over-run", "rate>=5000/s");
    assert_eq!(code, 0, "{text}");
    let merged = Summary::from_json(
        &std::fs::read(dir.path().join("over-run/merged/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(merged.counts.planned, c.planned);
    assert_eq!(merged.counts.unsent, c.unsent);
    let merged_rows = parse_timeseries(
        &std::fs::read(dir.path().join("over-run/merged/timeseries.csv")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        merged_rows.iter().map(|r| r.unsent).collect::<Vec<_>>(),
        rows.iter().map(|r| r.unsent).collect::<Vec<_>>()
    );
    let page = std::fs::read_to_string(dir.path().join("over-run/merged/report.html")).unwrap();
    assert!(
        page.contains("id=\"saturation\""),
        "the page's verdict says it"
    );
    double.shutdown().await;
}

// ---- Kafka ----

fn kcat_count(servers: &str, topic: &str) -> u64 {
    let out = Command::new("kcat")
        .args([
            "-C",
            "-b",
            servers,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o\n",
        ])
        .output()
        .expect("kcat is needed to read Kafka back independently");
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().count() as u64
}

/// Messages the one-partition topic ever took: its last offset + 1. The mock cluster keeps
/// only the last few MB of a partition, so a long run cannot be read back whole; its offsets
/// still count every message appended.
fn kcat_high_watermark(servers: &str, topic: &str) -> u64 {
    let out = Command::new("kcat")
        .args([
            "-C", "-b", servers, "-t", topic, "-p", "0", "-o", "-1", "-c", "1", "-e", "-q", "-f",
            "%o\n",
        ])
        .output()
        .expect("kcat is needed to read Kafka back independently");
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("the offset of the last message");
    last + 1
}

/// A one-broker mock cluster whose broker answers every request after `rtt`.
fn slow_cluster(
    rtt: Duration,
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("events", 1, 1).unwrap();
    mock.broker_round_trip_time(1, rtt).unwrap();
    mock
}

/// One request in flight of at most 100 messages per 50 ms round trip: about 2,000 messages/s,
/// with a local queue of 1,000 so that the back-pressure reaches the producing loop.
const SLOW_KAFKA: &[(&str, &str)] = &[
    ("FLEETLOAD_KAFKA_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "1"),
    ("FLEETLOAD_KAFKA_BATCH_NUM_MESSAGES", "100"),
    ("FLEETLOAD_KAFKA_LINGER_MS", "5"),
    ("FLEETLOAD_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES", "1000"),
];

#[test]
fn kafka_at_twice_what_slowed_brokers_take_ends_on_time_counts_unsent_and_gates_on_the_achieved_rate(
) {
    let mock = slow_cluster(Duration::from_millis(50));
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    // Measure what it takes first would cost a run; it is about 2,000/s: offer 4,000/s.
    let mut extra = vec![("FLEETLOAD_RATE", "4000"), ("FLEETLOAD_DURATION", "6s")];
    extra.extend_from_slice(SLOW_KAFKA);
    let spawned = chrono::Utc::now();
    let (out, took) = wait(
        worker(&kafka_env(&servers, "kover", dir.path(), &extra)),
        Duration::from_secs(6 + 15 + 20),
    );
    let exited = chrono::Utc::now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (s, rows) = read_report(dir.path(), "kover", KAFKA_TASK);
    assert_accounts(&s, &rows);
    let c = &s.counts;
    eprintln!(
        "kafka overloaded: planned {} attempted {} unsent {} acknowledged {} achieved_rate {} duration_s {} worker ran {:.1}s; {:?}",
        c.planned, c.attempted, c.unsent, c.acknowledged, s.achieved_rate, s.duration_s,
        took.as_secs_f64(), s.saturation
    );
    assert_production_kept_to(&s, &rows, 6, spawned, exited);
    assert!(
        took < Duration::from_secs(6 + 15 + 5),
        "the worker ran {took:?}"
    );
    assert_eq!(c.planned, 24_000, "{c:?}");
    assert!(c.unsent >= 6_000, "{c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    assert_eq!(kcat_count(&servers, "events"), c.acknowledged, "{c:?}");
    assert_eq!(
        kcat_high_watermark(&servers, "events"),
        c.acknowledged,
        "{c:?}"
    );
    assert!(s.achieved_rate < 3_200.0, "{}", s.achieved_rate);
    // The brokers take about 2,000/s, so librdkafka's queue still held events when production
    // ended: they were acknowledged in the drain. Every one is in the topic (above), none is in
    // the achieved rate, which is what was acknowledged during the 6 s of production.
    assert!(c.acknowledged_in_drain > 0, "{c:?}");
    assert_eq!(assert_drain_in_rows(&s, &rows, 6, 50), c.acknowledged);
    assert!(
        last_log_line(&out).contains("more were acknowledged after production ended"),
        "{}",
        last_log_line(&out)
    );
    let sat = s.saturation.as_ref().expect("saturation measured");
    assert_eq!(sat.cause.as_deref(), Some("target"), "{sat:?}");
    assert!(sat.behind_from_second.is_some_and(|s| s <= 1), "{sat:?}");
    assert!(
        last_log_line(&out).contains("the target took"),
        "{}",
        last_log_line(&out)
    );

    let above = format!("rate>={}/s", (s.achieved_rate * 1.2).round());
    let below = format!("rate>={}/s", (s.achieved_rate * 0.8).round());
    let (code, text) = merge_gate(dir.path(), "kover", &above);
    assert_eq!(code, 1, "{text}");
    let (code, text) = merge_gate(dir.path(), "kover", &below);
    assert_eq!(code, 0, "{text}");
    // The merge carries the drain and leaves it out of the rate too, and the table says it.
    let merged =
        Summary::from_json(&std::fs::read(dir.path().join("kover/merged/summary.json")).unwrap())
            .unwrap();
    assert_eq!(merged.counts.acknowledged_in_drain, c.acknowledged_in_drain);
    assert!(
        (merged.achieved_rate - s.achieved_rate).abs() < 1.0,
        "{}",
        merged.achieved_rate
    );
    assert!(
        text.contains("more acknowledged after production ended"),
        "{text}"
    );
}

// ---- Stop means stop ----

/// Signals the worker after `after`, then waits for it: the report must be stored within
/// [`STOP_BUDGET`] of the signal.
fn stop_after(child: Child, after: Duration) -> (Output, Duration) {
    std::thread::sleep(after);
    sigterm(&child);
    let (out, since_signal) = wait(child, STOP_BUDGET + Duration::from_secs(10));
    assert!(
        since_signal < STOP_BUDGET,
        "the report took {since_signal:?} after SIGTERM; stderr:\n{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    (out, since_signal)
}

fn assert_interrupted_and_nothing_lost(s: &Summary, rows: &[SecondRow]) {
    assert_accounts(s, rows);
    assert_eq!(
        s.outcome,
        Outcome::Interrupted {
            signal: "SIGTERM".into()
        }
    );
    let c = &s.counts;
    assert!(!c.failed_by_code.contains_key("Unacknowledged"), "{c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    assert!(c.acknowledged > 1_000, "{c:?}");
}

async fn sigterm_against_slow_kinesis(run: &str, extra: &'static [(&str, &str)]) {
    // Every PutRecords answered after 20 ms, many at once.
    let double = slow_double("slowish", Duration::from_millis(20), false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("FLEETLOAD_DURATION", "60s")];
    all.extend_from_slice(extra);
    let vars = kinesis_env(&double, run, dir.path(), &all);
    let (out, since) =
        tokio::task::spawn_blocking(move || stop_after(worker(&vars), Duration::from_secs(4)))
            .await
            .unwrap();
    let (s, rows) = read_report(dir.path(), run, "t1");
    eprintln!(
        "{run}: stored {:.1}s after SIGTERM; {:?}",
        since.as_secs_f64(),
        s.counts
    );
    assert_interrupted_and_nothing_lost(&s, &rows);
    let stats = double.stats();
    // User records: one per Kinesis record, or (aggregated) those the double found inside.
    assert_eq!(
        s.counts.acknowledged, stats.user_records_accepted,
        "{stats:?}"
    );
    let kinesis = s.kinesis.as_ref().expect("the kinesis object");
    assert_eq!(kinesis.kinesis_records, stats.records_accepted, "{stats:?}");
    assert!(stderr(&out).contains("SIGTERM"));
    double.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_unpaced_aggregated_against_slow_kinesis_waits_for_every_acknowledgement()
{
    sigterm_against_slow_kinesis(
        "sig-kin-agg-unpaced",
        &[
            ("FLEETLOAD_RATE", "0"),
            ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_paced_aggregated_against_slow_kinesis_waits_for_every_acknowledgement() {
    sigterm_against_slow_kinesis(
        "sig-kin-agg-paced",
        &[
            ("FLEETLOAD_RATE", "20000"),
            ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_unpaced_against_slow_kinesis_waits_for_every_acknowledgement() {
    sigterm_against_slow_kinesis("sig-kin-unpaced", &[("FLEETLOAD_RATE", "0")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_paced_against_slow_kinesis_waits_for_every_acknowledgement() {
    sigterm_against_slow_kinesis("sig-kin-paced", &[("FLEETLOAD_RATE", "20000")]).await;
}

fn sigterm_against_slow_kafka(run: &str, rate: &str) {
    let mock = slow_cluster(Duration::from_millis(20));
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let vars = kafka_env(
        &servers,
        run,
        dir.path(),
        &[("FLEETLOAD_RATE", rate), ("FLEETLOAD_DURATION", "60s")],
    );
    let (_, since) = stop_after(worker(&vars), Duration::from_secs(4));
    let (s, rows) = read_report(dir.path(), run, KAFKA_TASK);
    eprintln!(
        "{run}: stored {:.1}s after SIGTERM; {:?}",
        since.as_secs_f64(),
        s.counts
    );
    assert_interrupted_and_nothing_lost(&s, &rows);
    assert_eq!(
        kcat_high_watermark(&servers, "events"),
        s.counts.acknowledged
    );
}

#[test]
fn sigterm_mid_burst_unpaced_against_slow_kafka_waits_for_every_acknowledgement() {
    sigterm_against_slow_kafka("sig-kafka-unpaced", "0");
}

#[test]
fn sigterm_mid_burst_paced_against_slow_kafka_waits_for_every_acknowledgement() {
    sigterm_against_slow_kafka("sig-kafka-paced", "20000");
}

/// How a Kafka cluster stops answering mid-run.
#[derive(Debug, Clone, Copy)]
enum KafkaSilence {
    /// The broker keeps its connections and answers nothing (every answer an hour late).
    BlackHole,
    /// The broker is down: connections closed, new ones refused.
    Down,
}

/// SIGTERM while the cluster is silent: after a few seconds of producing (paced, so the run is
/// not over before the signal), the one broker goes silent, the worker's requests pile up, and
/// the signal comes. The report must be stored within [`STOP_BUDGET`], with every event
/// attempted accounted for: what was acknowledged before, and the rest failed or never sent.
fn sigterm_against_a_silent_kafka_cluster(run: &str, silence: KafkaSilence) {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("events", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let vars = kafka_env(
        &servers,
        run,
        dir.path(),
        &[("FLEETLOAD_RATE", "5000"), ("FLEETLOAD_DURATION", "60s")],
    );
    let child = worker(&vars);
    std::thread::sleep(Duration::from_secs(4));
    match silence {
        KafkaSilence::BlackHole => mock
            .broker_round_trip_time(1, Duration::from_secs(3600))
            .unwrap(),
        KafkaSilence::Down => mock.broker_down(1).unwrap(),
    }
    let (out, since) = stop_after(child, Duration::from_secs(2));
    let (s, rows) = read_report(dir.path(), run, KAFKA_TASK);
    eprintln!(
        "{run}: stored {:.1}s after SIGTERM; {:?}",
        since.as_secs_f64(),
        s.counts
    );
    assert_accounts(&s, &rows);
    assert_eq!(
        s.outcome,
        Outcome::Interrupted {
            signal: "SIGTERM".into()
        },
        "{}",
        stderr(&out)
    );
    let c = &s.counts;
    // The first seconds were acknowledged; what was handed over after the broker fell silent
    // never was, and is counted as failed, by code, never as acknowledged.
    assert!(c.acknowledged >= 5_000, "{c:?}");
    assert!(c.failed > 0, "{c:?}");
    // Six seconds of a 5,000/s schedule were due by the signal.
    assert!(c.planned >= 28_000, "{c:?}");
    assert!(
        c.failed_by_code.keys().all(|code| !code.is_empty()),
        "{c:?}"
    );
}

#[test]
fn sigterm_against_a_black_holed_kafka_cluster_stores_the_report_within_20_seconds() {
    sigterm_against_a_silent_kafka_cluster("kafka-hole", KafkaSilence::BlackHole);
}

#[test]
fn sigterm_against_a_dead_kafka_cluster_stores_the_report_within_20_seconds() {
    sigterm_against_a_silent_kafka_cluster("kafka-down", KafkaSilence::Down);
}

/// An endpoint that answers the Kinesis control plane (the worker's preflight) and accepts
/// PutRecords requests without ever answering them: a black-holed stream.
fn black_hole() -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/hole".to_string();
    let summary = format!(
        r#"{{"StreamDescriptionSummary":{{"StreamName":"hole","StreamARN":"{arn}","StreamStatus":"ACTIVE","StreamModeDetails":{{"StreamMode":"PROVISIONED"}},"RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000.0,"EnhancedMonitoring":[{{"ShardLevelMetrics":[]}}],"EncryptionType":"NONE","OpenShardCount":1,"ConsumerCount":0}}}}"#
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let summary = summary.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    if head.contains("kinesis_20131202.describestreamsummary") {
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{summary}",
                            summary.len()
                        );
                        if conn.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    } else {
                        // Never answer; keep the connection open until the client gives up.
                        while let Ok(n) = conn.read(&mut chunk) {
                            if n == 0 {
                                return;
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), arn)
}

#[test]
fn sigterm_against_a_black_holed_kinesis_endpoint_stores_the_report_within_20_seconds() {
    let (endpoint, arn) = black_hole();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = aws_env(&endpoint);
    vars.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", &arn),
        ("FLEETLOAD_RATE", "5000"),
        ("FLEETLOAD_DURATION", "60s"),
        ("FLEETLOAD_RUN_ID", "hole-run"),
        ("FLEETLOAD_TASK_ID", "t1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    let (_, since) = stop_after(worker(&vars), Duration::from_secs(3));
    let (s, rows) = read_report(dir.path(), "hole-run", "t1");
    eprintln!(
        "black hole: stored {:.1}s after SIGTERM; {:?}",
        since.as_secs_f64(),
        s.counts
    );
    assert_accounts(&s, &rows);
    let c = &s.counts;
    assert_eq!(c.acknowledged, 0, "{c:?}");
    assert!(c.attempted > 0, "{c:?}");
    // Sent and never answered: unacknowledged (or, between timed-out attempts, abandoned
    // while waiting to retry); due but blocked behind the in-flight limit: unsent.
    assert_eq!(
        c.failed,
        c.failed_by_code.get("Unacknowledged").copied().unwrap_or(0)
            + c.failed_by_code.get("RetryAbandoned").copied().unwrap_or(0),
        "{c:?}"
    );
    assert!(c.unsent > 0, "{c:?}");
}

#[test]
fn a_second_sigterm_cuts_the_wait_for_acknowledgements_short() {
    let (endpoint, arn) = black_hole();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = aws_env(&endpoint);
    vars.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", &arn),
        ("FLEETLOAD_RATE", "0"),
        ("FLEETLOAD_DURATION", "60s"),
        ("FLEETLOAD_RUN_ID", "twice-run"),
        ("FLEETLOAD_TASK_ID", "t1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    let child = worker(&vars);
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    let (out, since) = wait(child, STOP_BUDGET);
    assert!(
        since < Duration::from_secs(5),
        "{since:?}: {}",
        stderr(&out)
    );
    let (s, rows) = read_report(dir.path(), "twice-run", "t1");
    assert_accounts(&s, &rows);
    assert!(
        s.counts.failed_by_code.contains_key("Unacknowledged"),
        "{:?}",
        s.counts
    );
}
