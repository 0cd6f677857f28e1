//! KPL aggregation (`FLEETLOAD_KINESIS_AGGREGATE=on`) against independent readers:
//!
//! - into a 4-shard moto stream, read back over every shard with boto3 and de-aggregated with
//!   the `aws_kinesis_agg` package (PyPI): the user records are exactly the acknowledged
//!   events, each a sensor reading, each on the shard its partition key hashes to, and the
//!   aggregated records sit on the shards their explicit hash keys say (their partition key
//!   alone would put every one of them on one shard);
//! - against the Kinesis double with one hot shard: a throttled aggregated record is retried
//!   as all of its user records, and `by_shard` counts them where the double, opening the
//!   aggregates itself, counted them;
//! - end to end: a producer aggregating into a moto stream and a consumer task reading it,
//!   merged: every acknowledged event seen once.
//!
//! Tests that need the moto server read `FLEETLOAD_TEST_MOTO_URL` and `FLEETLOAD_TEST_PYTHON`
//! (ci/test.sh starts the one and installs boto3 and aws_kinesis_agg in the other) and fail
//! when they are missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{aws_env, aws_env_at, env, moto_url, run_worker, worker_command};
use fleetload::model::report::{Summary, THROTTLED_CODE};
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

fn python() -> String {
    std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs boto3 \
         and aws_kinesis_agg",
    )
}

async fn worker_ok(e: Vec<(String, String)>) -> Output {
    let out = tokio::task::spawn_blocking(move || run_worker(&e, Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn summary(root: &Path, run: &str, task: &str) -> Summary {
    let path = root.join(run).join("tasks").join(task).join("summary.json");
    Summary::from_json(&std::fs::read(path).expect("summary.json written")).unwrap()
}

async fn moto_stream(prefix: &str, shards: i32) -> String {
    let conf = common::moto_sdk_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&conf);
    let stream = common::unique_name(prefix);
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create stream {stream} on the moto server: {e:?}"));
    stream
}

/// A start instant far enough ahead for the worker's shard map to be read before production.
fn start_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

/// Reads every shard of a moto stream with boto3 and de-aggregates each record with
/// aws_kinesis_agg: per shard, its Kinesis records, each with its partition key, whether it
/// was aggregated, and its user records (partition key, data, whether the key's MD5 lies in
/// the shard's hash key range).
const READ_AND_DEAGGREGATE: &str = r#"
import base64, hashlib, json, sys
import boto3
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
k = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
out = {}
for shard in k.list_shards(StreamName=sys.argv[2])["Shards"]:
    lo = int(shard["HashKeyRange"]["StartingHashKey"])
    hi = int(shard["HashKeyRange"]["EndingHashKey"])
    it = k.get_shard_iterator(StreamName=sys.argv[2], ShardId=shard["ShardId"],
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = out.setdefault(shard["ShardId"], [])
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        for rec in r["Records"]:
            users, aggregated = [], False
            for u in iter_deaggregate_records([rec], data_format="Boto3"):
                kin = u["kinesis"]
                if kin.get("aggregated"):
                    aggregated = True
                    data = base64.b64decode(kin["data"])
                else:
                    data = kin["data"]
                pk = kin["partitionKey"]
                h = int(hashlib.md5(pk.encode()).hexdigest(), 16)
                users.append([pk, data.decode("utf-8", "replace"), lo <= h <= hi])
            records.append({"key": rec["PartitionKey"], "aggregated": aggregated, "users": users})
        if not r["Records"]:
            break
        it = r.get("NextShardIterator")
print(json.dumps(out))
"#;

#[derive(serde::Deserialize, Debug)]
struct ReadRecord {
    key: String,
    aggregated: bool,
    users: Vec<(String, String, bool)>,
}

fn read_and_deaggregate(stream: &str) -> BTreeMap<String, Vec<ReadRecord>> {
    let read = Command::new(python())
        .args(["-c", READ_AND_DEAGGREGATE, &moto_url(), stream])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "reading back with boto3 and aws_kinesis_agg failed (ci/test.sh installs both): {}",
        String::from_utf8_lossy(&read.stderr)
    );
    serde_json::from_slice(&read.stdout).unwrap()
}

/// Checks one user record is a sensor reading keyed by its partition key; its trace's
/// sequence number.
fn sensor_reading_seq(key: &str, data: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(data)
        .unwrap_or_else(|e| panic!("user record {data:?} is not JSON: {e}"));
    assert_eq!(v["sensorId"], key, "{data}");
    let t = v["temperature"].as_f64().expect("temperature");
    assert!((10.0..=180.0).contains(&t), "{data}");
    assert!(
        ["OK", "WARNING", "ERROR"].contains(&v["status"].as_str().unwrap()),
        "{data}"
    );
    assert!(
        v["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "{data}"
    );
    let trace = v["fleetload_trace"].as_str().expect("a trace");
    trace.split(':').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_deaggregate_with_aws_kinesis_agg_to_the_acknowledged_readings_each_on_its_shard(
) {
    let stream = moto_stream("fl-kpl", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env_at(&moto_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", &stream),
        ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ("FLEETLOAD_RATE", "1000"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_START_AT", &start_in(2)),
        // The moto server appends to a shard without a lock: one request at a time.
        ("FLEETLOAD_MAX_IN_FLIGHT", "1"),
        ("FLEETLOAD_KEYS", "200"),
        ("FLEETLOAD_TRACE", "on"),
        ("FLEETLOAD_RUN_ID", "kpl-run"),
        ("FLEETLOAD_TASK_ID", "k1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    worker_ok(e).await;
    let s = summary(dir.path(), "kpl-run", "k1");
    assert_eq!(s.counts.acknowledged, 3000, "{:?}", s.counts);
    assert_eq!(s.counts.failed, 0, "{:?}", s.counts);
    let kinesis = s.kinesis.clone().expect("the kinesis object");
    assert_eq!(kinesis.aggregation, "on");

    let shards = read_and_deaggregate(&stream);
    assert_eq!(shards.len(), 4);
    let mut seqs = BTreeSet::new();
    let mut users_per_shard = BTreeMap::new();
    let mut aggregated_on = BTreeSet::new();
    let (mut records, mut aggregated) = (0u64, 0u64);
    for (shard, read) in &shards {
        for record in read {
            records += 1;
            if record.aggregated {
                aggregated += 1;
                aggregated_on.insert(shard.clone());
                assert_eq!(record.key, "a", "an aggregate's partition key");
                assert!(record.users.len() > 1);
            } else {
                assert_eq!(record.users.len(), 1);
            }
            for (key, data, in_range) in &record.users {
                assert!(
                    in_range,
                    "user record {key} sits on {shard}, outside its hash key's shard"
                );
                assert!(
                    seqs.insert(sensor_reading_seq(key, data)),
                    "event {data} read twice"
                );
                *users_per_shard.entry(shard.as_str()).or_insert(0u64) += 1;
            }
        }
    }
    assert_eq!(
        seqs.len() as u64,
        s.counts.acknowledged,
        "user records read back = acknowledged"
    );
    assert_eq!(seqs, (0..s.counts.attempted).collect(), "every event, once");
    assert_eq!(
        records, kinesis.kinesis_records,
        "Kinesis records in the stream"
    );
    assert!(
        aggregated * 2 > records,
        "most Kinesis records are aggregates: {aggregated} of {records}"
    );
    // The partition key "a" hashes into shard 0's range: aggregates on every shard were
    // placed by their explicit hash keys.
    assert_eq!(aggregated_on.len(), 4, "{aggregated_on:?}");
    assert!(kinesis.put_records_calls >= 1 && kinesis.put_records_calls <= records);
    let reported: BTreeMap<&str, u64> = s
        .by_shard
        .iter()
        .map(|(id, c)| (id.as_str(), c.acknowledged))
        .collect();
    assert_eq!(
        reported, users_per_shard,
        "by_shard counts user records per shard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_aggregated_record_is_retried_as_all_its_user_records_on_its_shard() {
    let double = KinesisDouble::start(DoubleConfig {
        shards: 4,
        stream_name: "hot".into(),
        throttle_share: 0.5,
        throttled_shards: vec![2],
        seed: 11,
        count_user_records: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env_at(&double.endpoint_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", "hot"),
        ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ("FLEETLOAD_RATE", "2000"),
        ("FLEETLOAD_DURATION", "2s"),
        ("FLEETLOAD_START_AT", &start_in(1)),
        ("FLEETLOAD_KEYS", "200"),
        ("FLEETLOAD_RUN_ID", "hot-kpl"),
        ("FLEETLOAD_TASK_ID", "h1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    worker_ok(e).await;
    let s = summary(dir.path(), "hot-kpl", "h1");
    let stats = double.stats();
    assert_eq!(
        stats.user_records_off_shard, 0,
        "every user record on its key's shard"
    );
    assert_eq!(s.counts.acknowledged, stats.user_records_accepted);
    assert_eq!(s.counts.attempted, 4000, "{:?}", s.counts);
    let kinesis = s.kinesis.clone().unwrap();
    assert_eq!(kinesis.kinesis_records, stats.records_accepted);
    assert!(
        kinesis.kinesis_records * 10 < s.counts.acknowledged,
        "aggregated: {kinesis:?} for {} events",
        s.counts.acknowledged
    );

    let truth = double.user_records_by_shard();
    let records = double.by_shard();
    let (hot, _, hot_users_throttled) = &truth[2];
    let hot_records_throttled = records[2].2;
    assert!(hot_records_throttled > 5, "{records:?}");
    assert!(
        *hot_users_throttled > hot_records_throttled * 5,
        "each throttled Kinesis record carried many user records: {hot_users_throttled} in \
         {hot_records_throttled}"
    );
    for (id, accepted, throttled) in &truth {
        let c = s
            .by_shard
            .get(id)
            .unwrap_or_else(|| panic!("{id} in by_shard: {:?}", s.by_shard));
        assert_eq!(c.acknowledged, *accepted, "{id}: acknowledged user records");
        // Every user record of a throttled aggregate was retried or, after the last attempt,
        // failed: as many as the double found inside the aggregates it throttled.
        assert_eq!(c.throttled(), *throttled, "{id}: {c:?}");
        if id == hot {
            assert!(c.retried_by_code[THROTTLED_CODE] > 0, "{c:?}");
        } else {
            assert_eq!(c.throttled(), 0, "{id} is not hot: {c:?}");
        }
    }
    assert_eq!(
        s.counts.retried_by_code[THROTTLED_CODE]
            + s.counts
                .failed_by_code
                .get(THROTTLED_CODE)
                .copied()
                .unwrap_or(0),
        *hot_users_throttled
    );
    assert_eq!(
        s.counts.acknowledged + s.counts.failed,
        s.counts.attempted,
        "{:?}",
        s.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_low_rate_an_aggregate_goes_out_after_its_buffering_time_not_when_full() {
    // 200 sensor readings a second into one shard fill a 50 KiB aggregate in about 1.5 s: only
    // the 100 ms buffering time keeps the latency short.
    let double = KinesisDouble::start(DoubleConfig {
        shards: 1,
        stream_name: "slowfill".into(),
        count_user_records: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env_at(&double.endpoint_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", "slowfill"),
        ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ("FLEETLOAD_RATE", "200"),
        ("FLEETLOAD_DURATION", "4s"),
        ("FLEETLOAD_START_AT", &start_in(1)),
        ("FLEETLOAD_RUN_ID", "slow-fill"),
        ("FLEETLOAD_TASK_ID", "f1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    worker_ok(e).await;
    let s = summary(dir.path(), "slow-fill", "f1");
    assert_eq!(s.counts.acknowledged, 800, "{:?}", s.counts);
    assert_eq!(s.counts.acknowledged, double.stats().user_records_accepted);
    let kinesis = s.kinesis.unwrap();
    // About 20 readings per aggregate, one aggregate per 100 ms.
    assert!((20..=80).contains(&kinesis.kinesis_records), "{kinesis:?}");
    // Held until full, the first readings would wait about 1.5 s.
    assert!(
        s.latency_ms.max < 1000.0,
        "latency {:?} with {kinesis:?}",
        s.latency_ms
    );
}

fn wait(mut child: Child, limit: Duration, what: &str) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_deaggregates_so_every_aggregated_event_is_seen_once_end_to_end() {
    let stream = moto_stream("fl-kpl-e2e", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let run = "kpl-e2e";
    let start_at = start_in(3);
    let task_env = |task: &str| {
        let mut e: Vec<(String, String)> = aws_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        e.extend(env(&[
            ("FLEETLOAD_TARGET", "kinesis"),
            ("FLEETLOAD_STREAM", &stream),
            ("FLEETLOAD_RUN_ID", run),
            ("FLEETLOAD_TASK_ID", task),
            ("FLEETLOAD_REPORT_URL", reports.to_str().unwrap()),
            ("FLEETLOAD_START_AT", &start_at),
            ("FLEETLOAD_RATE", "400"),
            ("FLEETLOAD_DURATION", "3s"),
        ]));
        e
    };
    let mut consumer = task_env("c0");
    consumer.extend(env(&[
        ("FLEETLOAD_ROLE", "consume"),
        ("FLEETLOAD_CONSUMER", "0/1"),
        ("FLEETLOAD_SETTLE", "5s"),
    ]));
    let consumer = worker_command(&consumer)
        .spawn()
        .expect("start the consumer");
    let mut producer = task_env("p1");
    producer.extend(env(&[
        ("FLEETLOAD_KINESIS_AGGREGATE", "on"),
        ("FLEETLOAD_TRACE", "on"),
        // The moto server appends to a shard without a lock: one request at a time.
        ("FLEETLOAD_MAX_IN_FLIGHT", "1"),
    ]));
    let producer = worker_command(&producer)
        .spawn()
        .expect("start the producer");
    tokio::task::spawn_blocking(move || {
        wait(producer, Duration::from_secs(60), "producer");
        wait(consumer, Duration::from_secs(60), "consumer");
    })
    .await
    .unwrap();

    let merged = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .args(["merge", &reports.join(run).display().to_string()])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&merged.stderr)
    );
    let s =
        Summary::from_json(&std::fs::read(reports.join(run).join("merged/summary.json")).unwrap())
            .unwrap();
    let acknowledged = s.counts.acknowledged;
    assert_eq!(acknowledged, 1200, "{:?}", s.counts);
    let kinesis = s.kinesis.clone().expect("the producer's kinesis object");
    assert!(
        kinesis.kinesis_records * 3 < acknowledged,
        "the events travelled aggregated: {kinesis:?}"
    );
    let e2e = s.end_to_end.e2e.clone().expect("the merged e2e object");
    assert_eq!(e2e.unique, Some(acknowledged), "{e2e:#?}");
    assert_eq!(e2e.lost, Some(0), "{e2e:#?}");
    assert_eq!(e2e.duplicates, 0);
    assert_eq!(e2e.seen, acknowledged);
    assert_eq!(e2e.foreign, 0, "no aggregate read as one record");
    // The table says how the events travelled.
    let table = String::from_utf8_lossy(&merged.stdout);
    assert!(
        table.contains("KPL-aggregated") && table.contains("PutRecords calls"),
        "{table}"
    );
}
