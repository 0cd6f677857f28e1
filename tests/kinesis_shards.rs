//! Kinesis at the shard level: the worker's per-shard accounting (`by_shard`) against what each
//! shard of a moto stream holds, and against a double that throttles one hot shard.
//!
//! Tests that need the moto server read `FLEETLOAD_TEST_MOTO_URL` (ci/test.sh starts it) and
//! fail when it is missing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{aws_env_at, env, moto_url, run_worker};
use fleetload::model::report::{Summary, THROTTLED_CODE};
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

fn python() -> String {
    std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs boto3",
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
        .unwrap();
    stream
}

/// Every record of every shard of a moto stream, read with boto3 (an independent client):
/// shard id → (partition key, data as text) in order.
fn read_back(stream: &str) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let script = r#"
import base64, boto3, json, sys
k = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
out = {}
for shard in k.list_shards(StreamName=sys.argv[2])["Shards"]:
    it = k.get_shard_iterator(StreamName=sys.argv[2], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = out.setdefault(shard["ShardId"], [])
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        for rec in r["Records"]:
            records.append([rec["PartitionKey"], base64.b64encode(rec["Data"]).decode()])
        if not r["Records"]:
            break
        it = r.get("NextShardIterator")
print(json.dumps(out))
"#;
    let read = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(moto_url())
        .arg(stream)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let parsed: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_slice(&read.stdout).unwrap();
    use base64::Engine as _;
    parsed
        .into_iter()
        .map(|(shard, records)| {
            let records = records
                .into_iter()
                .map(|(k, d)| {
                    (
                        k,
                        base64::engine::general_purpose::STANDARD.decode(d).unwrap(),
                    )
                })
                .collect();
            (shard, records)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_shard_counts_equal_what_each_moto_shard_holds() {
    let stream = moto_stream("fl-shards", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env_at(&moto_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", &stream),
        ("FLEETLOAD_RATE", "400"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_BATCH_SIZE", "100"),
        // The moto server appends to a shard without a lock: one request at a time.
        ("FLEETLOAD_MAX_IN_FLIGHT", "1"),
        ("FLEETLOAD_KEYS", "200"),
        ("FLEETLOAD_RUN_ID", "shard-run"),
        ("FLEETLOAD_TASK_ID", "s1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    worker_ok(e).await;
    let s = summary(dir.path(), "shard-run", "s1");
    // Why moto may be given fewer than the 1,200 planned: the moto server
    // takes one PutRecords at a time, and on a loaded machine slower than the schedule allows, so
    // the last batch or two may still be waiting to go when production ends. Those are given up
    // and counted `unsent`: planned = attempted + unsent accounts for every missing record, and
    // the stream is read back exactly. The floor only says that moto took most of them.
    assert_eq!(s.counts.planned, 1200, "{:?}", s.counts);
    assert_eq!(s.counts.planned, s.counts.attempted + s.counts.unsent);
    assert!(s.counts.acknowledged >= 1000, "{:?}", s.counts);
    assert_eq!(s.counts.acknowledged, s.counts.attempted, "{:?}", s.counts);

    let held = read_back(&stream);
    assert_eq!(held.len(), 4);
    let reported: BTreeMap<&str, u64> = s
        .by_shard
        .iter()
        .map(|(id, c)| (id.as_str(), c.acknowledged))
        .collect();
    let in_stream: BTreeMap<&str, u64> = held
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(id, r)| (id.as_str(), r.len() as u64))
        .collect();
    assert_eq!(
        reported, in_stream,
        "acknowledged per shard = records each shard holds"
    );
    assert!(
        in_stream.len() == 4,
        "200 keys reach all 4 shards: {in_stream:?}"
    );
    assert_eq!(reported.values().sum::<u64>(), s.counts.acknowledged);
    assert!(s.by_shard.values().all(|c| c.throttled() == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_hot_shard_shows_on_that_shard_only() {
    let double = KinesisDouble::start(DoubleConfig {
        shards: 4,
        stream_name: "hot".into(),
        throttle_share: 0.5,
        throttled_shards: vec![2],
        seed: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut e = aws_env_at(&double.endpoint_url());
    e.extend(env(&[
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", "hot"),
        ("FLEETLOAD_RATE", "1000"),
        ("FLEETLOAD_DURATION", "2s"),
        ("FLEETLOAD_BATCH_SIZE", "100"),
        ("FLEETLOAD_KEYS", "200"),
        ("FLEETLOAD_RUN_ID", "hot-run"),
        ("FLEETLOAD_TASK_ID", "h1"),
        ("FLEETLOAD_REPORT_URL", dir.path().to_str().unwrap()),
    ]));
    worker_ok(e).await;
    let s = summary(dir.path(), "hot-run", "h1");
    let truth = double.by_shard();
    let (hot, _, hot_throttled) = &truth[2];
    assert!(*hot_throttled > 100, "the double throttled {hot_throttled}");
    for (id, accepted, throttled) in &truth {
        let c = s
            .by_shard
            .get(id)
            .unwrap_or_else(|| panic!("{id} in by_shard: {:?}", s.by_shard));
        assert_eq!(c.acknowledged, *accepted, "{id}: acknowledged = accepted");
        // Every throttled answer was retried or, after the last attempt, failed.
        assert_eq!(c.throttled(), *throttled, "{id}: {c:?}");
        if id == hot {
            assert!(c.retried_by_code[THROTTLED_CODE] > 0, "{c:?}");
        } else {
            assert_eq!(c.throttled(), 0, "{id} is not hot: {c:?}");
        }
    }
    assert_eq!(s.by_shard.len(), 4, "{:?}", s.by_shard);
    assert_eq!(
        s.by_shard.values().map(|c| c.acknowledged).sum::<u64>(),
        s.counts.acknowledged
    );
    assert_eq!(
        s.counts.retried_by_code[THROTTLED_CODE],
        s.by_shard[hot].retried_by_code[THROTTLED_CODE]
    );
}
