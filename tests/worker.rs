//! The worker binary against real peers on loopback: the moto server (Kinesis, S3), a
//! Kinesis-compatible double that throttles and fails, librdkafka's mock cluster, and signals.
//!
//! Tests that need the moto server read `FLEETLOAD_TEST_MOTO_URL` (ci/test.sh starts it) and
//! fail when it is missing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{aws_env_at as aws_env, env, kafka_env, run_worker, worker_command, KAFKA_TASK};
use fleetload::model::report::{parse_hlog, parse_timeseries, Summary, TIMESERIES_HEADER};
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

fn moto_url() -> String {
    std::env::var("FLEETLOAD_TEST_MOTO_URL")
        .expect("FLEETLOAD_TEST_MOTO_URL is not set: run the tests through ci/test.sh, which starts the moto server")
}

fn python() -> String {
    std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs boto3",
    )
}

fn read_local_report(
    root: &Path,
    run: &str,
    task: &str,
) -> (Summary, Vec<fleetload::model::report::SecondRow>) {
    let dir = root.join(run).join("tasks").join(task);
    let summary =
        Summary::from_json(&std::fs::read(dir.join("summary.json")).expect("summary.json written"))
            .unwrap();
    let csv = std::fs::read(dir.join("timeseries.csv")).expect("timeseries.csv written");
    assert!(String::from_utf8_lossy(&csv).starts_with(TIMESERIES_HEADER));
    let rows = parse_timeseries(&csv).unwrap();
    let hlog =
        parse_hlog(&std::fs::read(dir.join("histograms.hlog")).expect("histograms.hlog written"))
            .unwrap();
    // The per-second histograms hold exactly the acknowledged events.
    assert_eq!(
        hlog.iter().map(|(_, h)| h.len()).sum::<u64>(),
        summary.counts.acknowledged
    );
    (summary, rows)
}

/// Counts reconcile: attempted = acknowledged + failed, rows add up to the totals, and the
/// histogram holds one value per acknowledged event.
fn assert_consistent(s: &Summary, rows: &[fleetload::model::report::SecondRow]) {
    let c = &s.counts;
    assert_eq!(c.attempted, c.acknowledged + c.failed, "{c:?}");
    assert_eq!(c.failed, c.failed_by_code.values().sum::<u64>(), "{c:?}");
    assert_eq!(c.retried, c.retried_by_code.values().sum::<u64>(), "{c:?}");
    assert_eq!(rows.iter().map(|r| r.attempted).sum::<u64>(), c.attempted);
    assert_eq!(
        rows.iter().map(|r| r.acknowledged).sum::<u64>(),
        c.acknowledged
    );
    assert_eq!(rows.iter().map(|r| r.failed).sum::<u64>(), c.failed);
    assert_eq!(rows.iter().map(|r| r.bytes).sum::<u64>(), s.bytes);
    assert_eq!(s.latency_histogram().unwrap().len(), c.acknowledged);
    assert_eq!(s.service_histogram().unwrap().len(), c.acknowledged);
    assert_eq!(s.latency_ms.count, c.acknowledged);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.second, i as u64);
    }
}

fn assert_sensor_reading(value: &serde_json::Value) {
    let obj = value.as_object().expect("a JSON object");
    let id = obj["sensorId"].as_str().expect("sensorId");
    let (uuid, n) = id.rsplit_once('_').expect("<uuid>_<n>");
    assert_eq!(uuid.len(), 36, "{id}");
    n.parse::<u64>().expect("numeric suffix");
    let t = obj["temperature"].as_f64().expect("temperature");
    assert!((10.0..=180.0).contains(&t));
    assert!(["OK", "WARNING", "ERROR"].contains(&obj["status"].as_str().unwrap()));
    assert!(obj["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn bad_scenarios_exit_2_with_one_clear_message_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATON", "10s")],
            "did you mean FLEETLOAD_DURATION?",
        ),
        (&[("FLEETLOAD_TARGET", "nope")], "FLEETLOAD_TARGET=\"nope\""),
        (
            &[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "fast")],
            "FLEETLOAD_RATE=\"fast\"",
        ),
        (
            &[("FLEETLOAD_TARGET", "kinesis")],
            "FLEETLOAD_STREAM is required",
        ),
        (
            &[
                ("FLEETLOAD_TARGET", "null"),
                ("FLEETLOAD_BATCH_SIZE", "501"),
            ],
            "PutRecords",
        ),
    ];
    for (vars, expected) in cases {
        let mut e = env(vars);
        e.push(("FLEETLOAD_REPORT_URL".into(), report.into()));
        let out = run_worker(&e, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written for bad input"
    );
}

#[test]
fn secrets_never_appear_in_logs_or_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &env(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "t"),
            ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("FLEETLOAD_KAFKA_SASL_USERNAME", "loader"),
            ("FLEETLOAD_KAFKA_SASL_PASSWORD", "hunter2-secret-value"),
            ("FLEETLOAD_KAFKA_SOCKET_CONNECTION_SETUP_TIMEOUT_MS", "1000"),
            ("FLEETLOAD_RUN_ID", "secret-run"),
            ("FLEETLOAD_TASK_ID", "t1"),
            ("FLEETLOAD_DURATION", "1s"),
            ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
        ]),
        Duration::from_secs(60),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // No broker listens on port 1: the preflight fails (exit 3) and says so, with a report.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("did not answer") || all.contains("not known"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
    let summary =
        std::fs::read_to_string(dir.path().join("secret-run/tasks/t1/summary.json")).unwrap();
    assert!(!summary.contains("hunter2"), "{summary}");
    assert!(summary.contains("\"status\": \"failed\""), "{summary}");
}

#[test]
fn null_target_paces_the_rate_and_writes_a_consistent_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &env(&[
            ("FLEETLOAD_TARGET", "null"),
            ("FLEETLOAD_STAGES", "2000@2s,ramp:6000@2s"),
            ("FLEETLOAD_RUN_ID", "null-run"),
            ("FLEETLOAD_TASK_ID", "n1"),
            ("FLEETLOAD_SEED", "7"),
            (
                "FLEETLOAD_REPORT_URL",
                &format!("file://{}", dir.path().display()),
            ),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "null-run", "n1");
    assert_consistent(&s, &rows);
    assert_eq!(s.outcome.status(), "completed");
    // The schedule plans exactly 4000 + 8000 events; the null target acknowledges them all.
    assert_eq!(s.counts.attempted, 12_000);
    assert_eq!(s.counts.acknowledged, 12_000);
    assert_eq!(s.target_rate, Some(3000.0));
    assert!(
        (s.achieved_rate - 3000.0).abs() / 3000.0 < 0.01,
        "{}",
        s.achieved_rate
    );
    // Every second against the plan: 2,000/s for 2 s, then the ramp from 2,000 to 6,000/s, whose
    // seconds hold 3,000 and 5,000 events. Attempts count in the second they were handed over,
    // so an event due just before a second's end may be handed over just after it: 5 % each way
    // (50 ms of a loaded machine at 2,000/s), while the total above is exact.
    let planned = [2000u64, 2000, 3000, 5000];
    assert!(rows.len() >= planned.len(), "{rows:?}");
    for (row, want) in rows.iter().zip(planned) {
        assert_eq!(row.target_rate, want as f64, "{row:?}");
        assert!(
            row.attempted.abs_diff(want) * 20 <= want,
            "second {}: {} attempted, {want} planned; {rows:?}",
            row.second,
            row.attempted
        );
        assert_eq!(row.unsent, 0, "{row:?}");
    }
    // After the schedule's end only what was due just before it (the same 5 %), nothing planned.
    let after: u64 = rows[planned.len()..].iter().map(|r| r.attempted).sum();
    assert!(
        after * 20 <= planned[3],
        "{after} attempts after the end: {rows:?}"
    );
    assert!(
        rows[planned.len()..].iter().all(|r| r.target_rate == 0.0),
        "{rows:?}"
    );
    assert_eq!(s.scenario["FLEETLOAD_STAGES"], "2000@2s,ramp:6000@2s");
}

#[test]
fn sigterm_stops_the_worker_and_the_report_says_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = worker_command(&env(&[
        ("FLEETLOAD_TARGET", "null"),
        ("FLEETLOAD_RATE", "5000"),
        ("FLEETLOAD_DURATION", "60s"),
        ("FLEETLOAD_RUN_ID", "sig-run"),
        ("FLEETLOAD_TASK_ID", "s1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]))
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: plain kill(2) on our own child's pid.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the child");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    let (s, rows) = read_local_report(dir.path(), "sig-run", "s1");
    assert_consistent(&s, &rows);
    assert_eq!(
        s.outcome,
        fleetload::model::report::Outcome::Interrupted {
            signal: "SIGTERM".into()
        }
    );
    assert!(
        s.duration_s > 2.0 && s.duration_s < 10.0,
        "{}",
        s.duration_s
    );
    assert!(s.counts.acknowledged >= 10_000, "{:?}", s.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_against_moto_every_acknowledged_record_is_in_the_stream() {
    let moto = moto_url();
    let stream = format!("fleetload-{}", std::process::id());
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto)
        .region("us-east-1")
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let kinesis = aws_sdk_kinesis::Client::new(&conf);
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(4)
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env(&moto);
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", &stream),
        ("FLEETLOAD_RATE", "400"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_BATCH_SIZE", "100"),
        // The moto server appends to a shard without a lock: concurrent PutRecords calls to
        // one stream can overwrite each other's records there, so this test sends one at a time.
        ("FLEETLOAD_MAX_IN_FLIGHT", "1"),
        ("FLEETLOAD_KEYS", "50"),
        ("FLEETLOAD_RUN_ID", "kin-run"),
        ("FLEETLOAD_TASK_ID", "k1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "kin-run", "k1");
    assert_consistent(&s, &rows);
    assert_eq!(s.counts.planned, 1200, "{:?}", s.counts);
    // Why moto may be given fewer than the 1,200 planned: the moto server
    // takes one PutRecords at a time, and on a loaded machine slower than the schedule allows, so
    // the last batch or two may still be waiting to go when production ends. Those are given up
    // and counted `unsent`: planned = attempted + unsent accounts for every missing record, and
    // the stream is read back exactly. The floor only says that moto took most of them.
    assert!(s.counts.attempted >= 1000, "{:?}", s.counts);
    assert_eq!(s.counts.planned, s.counts.attempted + s.counts.unsent);
    assert_eq!(s.counts.acknowledged, s.counts.attempted, "{:?}", s.counts);

    // Read the stream back with boto3, over every shard: an independent client.
    let script = r#"
import boto3, json, sys
k = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
total, keys = 0, set()
for shard in k.list_shards(StreamName=sys.argv[2])["Shards"]:
    it = k.get_shard_iterator(StreamName=sys.argv[2], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        for rec in r["Records"]:
            print(rec["PartitionKey"] + "\t" + rec["Data"].decode())
        if not r["Records"]:
            break
        it = r.get("NextShardIterator")
"#;
    let read = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&moto)
        .arg(&stream)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let text = String::from_utf8(read.stdout).unwrap();
    let mut keys = std::collections::HashSet::new();
    let mut count = 0u64;
    for line in text.lines() {
        let (key, data) = line.split_once('\t').unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_sensor_reading(&v);
        assert_eq!(
            v["sensorId"].as_str().unwrap(),
            key,
            "partition key is the sensor id"
        );
        keys.insert(key.to_string());
        count += 1;
    }
    assert_eq!(
        count, s.counts.acknowledged,
        "records in the stream = acknowledged in the report"
    );
    assert!(keys.len() <= 50 && keys.len() > 40, "{}", keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_missing_stream_fails_preflight_with_one_message() {
    let moto = moto_url();
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env(&moto);
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", "no-such-stream"),
        ("FLEETLOAD_RUN_ID", "pre-run"),
        ("FLEETLOAD_TASK_ID", "p1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(60)))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no-such-stream does not exist in us-east-1"),
        "{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "no minute of retries"
    );
    let s = Summary::from_json(
        &std::fs::read(dir.path().join("pre-run/tasks/p1/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s.counts.attempted, 0);
    assert_eq!(s.outcome.status(), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_throttling_and_server_errors_are_counted_and_retried() {
    let double = KinesisDouble::start(DoubleConfig {
        shards: 4,
        stream_name: "throttled".into(),
        throttle_share: 0.25,
        internal_failure_share: 0.05,
        http500_share: 0.1,
        seed: 11,
        keep_records: true,
        latency: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env(&double.endpoint_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", double.stream_arn()),
        ("FLEETLOAD_RATE", "1000"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_BATCH_SIZE", "50"),
        ("FLEETLOAD_RUN_ID", "thr-run"),
        ("FLEETLOAD_TASK_ID", "d1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "thr-run", "d1");
    assert_consistent(&s, &rows);
    let stats = double.stats();
    let c = &s.counts;
    assert_eq!(c.attempted, 3000);
    // The report's acknowledged count is exactly what the double accepted.
    assert_eq!(c.acknowledged, stats.records_accepted, "{c:?} vs {stats:?}");
    assert_eq!(double.accepted_records().len() as u64, c.acknowledged);
    assert_eq!(
        c.retried_by_code["ProvisionedThroughputExceededException"],
        stats.throttled
            - c.failed_by_code
                .get("ProvisionedThroughputExceededException")
                .copied()
                .unwrap_or(0)
    );
    assert!(c.retried_by_code["InternalFailure"] > 0, "{c:?}");
    // HTTP 500s fail whole requests: every record of such a request is retried.
    assert!(stats.http500s > 0, "{stats:?}");
    assert!(c.retried > stats.throttled, "{c:?} {stats:?}");
    // With 10 attempts per record nearly every record gets through in the end; the few that
    // fail ten times in a row fail with the code of their last answer.
    assert!(c.acknowledged >= 2990, "{c:?}");
    assert!(
        c.failed_by_code
            .keys()
            .all(|k| k == "ProvisionedThroughputExceededException" || k == "InternalFailure"),
        "{c:?}"
    );
    assert!(s
        .errors_timeline
        .contains_key("ProvisionedThroughputExceededException"));
    double.shutdown().await;
}

fn kcat_consume(servers: &str, topic: &str) -> Vec<(String, String)> {
    let out = Command::new("kcat")
        .args(["-C", "-b", servers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .output()
        .expect("kcat is needed to read Kafka back independently: run the tests through ci/test.sh, which installs it");
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key<TAB>value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn kafka_against_the_mock_cluster_every_acknowledged_message_is_in_the_topic() {
    let mock = rdkafka::mocking::MockCluster::new(3).unwrap();
    mock.create_topic("events", 4, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &kafka_env(
            &servers,
            "kafka-run",
            dir.path(),
            &[
                ("FLEETLOAD_RATE", "1000"),
                ("FLEETLOAD_DURATION", "3s"),
                ("FLEETLOAD_KEYS", "20"),
            ],
        ),
        Duration::from_secs(90),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "kafka-run", KAFKA_TASK);
    assert_consistent(&s, &rows);
    assert_eq!(s.counts.attempted, 3000);
    assert_eq!(s.counts.acknowledged, 3000, "{:?}", s.counts);
    let messages = kcat_consume(&servers, "events");
    assert_eq!(
        messages.len() as u64,
        s.counts.acknowledged,
        "messages in the topic = acknowledged in the report"
    );
    let mut keys = std::collections::HashSet::new();
    for (k, v) in &messages {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        assert_sensor_reading(&v);
        assert_eq!(v["sensorId"].as_str().unwrap(), k);
        keys.insert(k.clone());
    }
    assert_eq!(keys.len(), 20);
    assert!(
        (s.achieved_rate - 1000.0).abs() < 10.0,
        "{}",
        s.achieved_rate
    );
}

#[test]
fn kafka_missing_topic_fails_preflight() {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut e = kafka_env(
        &mock.bootstrap_servers(),
        "kafka-missing",
        dir.path(),
        &[("FLEETLOAD_DURATION", "2s")],
    );
    e.retain(|(k, _)| k != "FLEETLOAD_TOPIC");
    e.push(("FLEETLOAD_TOPIC".into(), "absent".into()));
    // The mock cluster auto-creates topics unless told not to, as some brokers do: a real
    // broker that does not is what the preflight guards against.
    mock.topic_error(
        "absent",
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    let out = run_worker(&e, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("topic absent"), "{stderr}");
}

#[test]
fn kafka_injected_errors_are_counted_by_name_and_the_report_is_written() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("events", 2, 1).unwrap();
    // Non-retriable produce errors fail the messages of those requests.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10],
    );
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &kafka_env(
            &servers,
            "kafka-err",
            dir.path(),
            &[("FLEETLOAD_RATE", "500"), ("FLEETLOAD_DURATION", "3s")],
        ),
        Duration::from_secs(90),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "kafka-err", KAFKA_TASK);
    assert_consistent(&s, &rows);
    let failed = s
        .counts
        .failed_by_code
        .get("TopicAuthorizationFailed")
        .copied()
        .unwrap_or(0);
    assert!(failed >= 10, "{:?}", s.counts);
    assert_eq!(
        kcat_consume(&servers, "events").len() as u64,
        s.counts.acknowledged
    );
    assert_eq!(s.counts.acknowledged + s.counts.failed, 1500);
}

#[test]
fn kafka_broker_down_mid_run_fails_by_name_and_the_report_is_written() {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("events", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = worker_command(&kafka_env(
        &mock.bootstrap_servers(),
        "kafka-down",
        dir.path(),
        &[
            ("FLEETLOAD_RATE", "500"),
            ("FLEETLOAD_DURATION", "5s"),
            ("FLEETLOAD_KAFKA_MESSAGE_TIMEOUT_MS", "1500"),
        ],
    ))
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    mock.broker_down(1).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, rows) = read_local_report(dir.path(), "kafka-down", KAFKA_TASK);
    assert_consistent(&s, &rows);
    assert_eq!(s.counts.attempted, 2500);
    assert!(
        s.counts.acknowledged > 500 && s.counts.acknowledged < 1500,
        "{:?}",
        s.counts
    );
    assert!(
        s.counts
            .failed_by_code
            .get("MessageTimedOut")
            .copied()
            .unwrap_or(0)
            > 500,
        "{:?}",
        s.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lands_in_s3_under_the_documented_keys() {
    let moto = moto_url();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto)
        .region("us-east-1")
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("fleetload-reports-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut e = aws_env(&moto);
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "null"),
        ("FLEETLOAD_RATE", "200"),
        ("FLEETLOAD_DURATION", "2s"),
        ("FLEETLOAD_RUN_ID", "s3-run"),
        ("FLEETLOAD_TASK_ID", "t-1"),
        ("FLEETLOAD_REPORT_URL", &format!("s3://{bucket}/load-tests")),
    ]));
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("load-tests/s3-run/")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "load-tests/s3-run/live/w000000/t-1.json",
            "load-tests/s3-run/tasks/t-1/histograms.hlog",
            "load-tests/s3-run/tasks/t-1/started.json",
            "load-tests/s3-run/tasks/t-1/summary.json",
            "load-tests/s3-run/tasks/t-1/timeseries.csv",
        ]
    );
    let get = |key: &'static str| {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        async move {
            s3.get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
                .to_vec()
        }
    };
    let summary =
        Summary::from_json(&get("load-tests/s3-run/tasks/t-1/summary.json").await).unwrap();
    assert_eq!(summary.counts.acknowledged, 400);
    assert_eq!(summary.latency_histogram().unwrap().len(), 400);
    let rows = parse_timeseries(&get("load-tests/s3-run/tasks/t-1/timeseries.csv").await).unwrap();
    assert_consistent(&summary, &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_report_location_fails_preflight_and_prints_the_summary() {
    let moto = moto_url();
    let mut e = aws_env(&moto);
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "null"),
        ("FLEETLOAD_DURATION", "1s"),
        ("FLEETLOAD_RUN_ID", "nobucket"),
        ("FLEETLOAD_TASK_ID", "t-1"),
        ("FLEETLOAD_REPORT_URL", "s3://no-such-bucket-fleetload/x"),
    ]));
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(120)))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not writable"), "{stderr}");
    let summary = Summary::from_json(&out.stdout).expect("the summary on stdout");
    assert_eq!(summary.outcome.status(), "failed");
}

#[test]
fn the_task_id_comes_from_the_ecs_task_metadata_endpoint() {
    use std::io::{Read, Write};
    // A task metadata endpoint on loopback, answering GET /v4/<id>/task as ECS does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        let body = r#"{"Cluster":"fleet","TaskARN":"arn:aws:ecs:us-east-1:123456789012:task/fleet/0123456789abcdef0123456789abcdef","Family":"fleetload-worker"}"#;
        write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        request
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &env(&[
            ("FLEETLOAD_TARGET", "null"),
            ("FLEETLOAD_RATE", "10"),
            ("FLEETLOAD_DURATION", "1s"),
            ("FLEETLOAD_RUN_ID", "meta-run"),
            ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
            (
                "ECS_CONTAINER_METADATA_URI_V4",
                &format!("http://{addr}/v4/abc"),
            ),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.join().unwrap().starts_with("GET /v4/abc/task "));
    let (s, _) = read_local_report(dir.path(), "meta-run", "0123456789abcdef0123456789abcdef");
    assert_eq!(s.task_id, "0123456789abcdef0123456789abcdef");
}
