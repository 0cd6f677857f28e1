//! End to end on Kafka (librdkafka's mock cluster): two traced producer tasks → topic `in` → a
//! relay in this test (reads `in`, holds every record 200 ms, nests it in a new object, drops a
//! known set and duplicates another) → topic `out` → two consumer tasks sharing its partitions
//! (partition `p` read by consumer `p mod 2`). The merged report must say exactly what the relay
//! did.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetload::model::report::{decode_histogram, Summary};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
/// How long the relay holds each record: every end-to-end latency is at least this.
const RELAY_DELAY: Duration = Duration::from_millis(200);

/// The relay drops these events and sends those twice (by producer task and sequence number).
fn dropped(task: &str, seq: u64) -> bool {
    (task == "p1" && seq % 97 == 5) || (task == "p2" && seq % 131 == 0)
}
fn duplicated(task: &str, seq: u64) -> bool {
    task == "p2" && seq % 89 == 3
}

fn worker(env: &[(&str, String)], log: &Path) -> Child {
    let mut cmd = Command::new(WORKER);
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start a worker")
}

fn wait(mut child: Child, limit: Duration, log: &Path) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "worker exited {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "worker still running after {limit:?}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the relay did: records written to `out`, and the events it dropped and duplicated.
#[derive(Default, Debug)]
struct Relayed {
    written: u64,
    dropped: BTreeSet<(String, u64)>,
    duplicated: BTreeSet<(String, u64)>,
}

/// Reads `in` from the beginning until `until`, writes `out`.
fn relay(servers: &str, until: Instant) -> Relayed {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "relay")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["in"]).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut held: std::collections::VecDeque<(Instant, Vec<u8>, Vec<u8>)> = Default::default();
    let mut out = Relayed::default();
    loop {
        let now = Instant::now();
        while held
            .front()
            .is_some_and(|(at, _, _)| now >= *at + RELAY_DELAY)
        {
            let (_, key, value) = held.pop_front().unwrap();
            loop {
                match producer.send(BaseRecord::to("out").key(&key).payload(&value)) {
                    Ok(()) => break,
                    Err((_, _)) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            out.written += 1;
        }
        if now >= until && held.is_empty() {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(20)) else {
            continue;
        };
        let message = message.unwrap();
        let original: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap()).unwrap();
        let trace = original["fleetload_trace"].as_str().unwrap().to_string();
        let mut parts = trace.split(':');
        let (task, seq) = (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().parse::<u64>().unwrap(),
        );
        if dropped(&task, seq) {
            out.dropped.insert((task, seq));
            continue;
        }
        // An enrichment: the original nested inside a new object.
        let value = serde_json::to_vec(&serde_json::json!({
            "enriched": true,
            "relayed": original,
        }))
        .unwrap();
        let key = message.key().unwrap_or_default().to_vec();
        if duplicated(&task, seq) {
            out.duplicated.insert((task, seq));
            held.push_back((Instant::now(), key.clone(), value.clone()));
        }
        held.push_back((Instant::now(), key, value));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    out
}

#[test]
fn kafka_relay_loss_and_duplicates_are_counted_exactly_by_two_consumers_sharing_partitions() {
    let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(3).unwrap();
    mock.create_topic("in", 4, 1).unwrap();
    mock.create_topic("out", 4, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let run = "e2e-kafka";
    let start_at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let common = |task: &str| {
        vec![
            ("FLEETLOAD_TARGET", "kafka".to_string()),
            ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", servers.clone()),
            ("FLEETLOAD_RUN_ID", run.to_string()),
            ("FLEETLOAD_TASK_ID", task.to_string()),
            ("FLEETLOAD_REPORT_URL", reports.display().to_string()),
            ("FLEETLOAD_START_AT", start_at.to_rfc3339()),
            ("FLEETLOAD_RATE", "1000".to_string()),
            ("FLEETLOAD_DURATION", "4s".to_string()),
        ]
    };
    let mut children = Vec::new();
    for (i, consumer) in ["c0", "c1"].iter().enumerate() {
        let mut env = common(consumer);
        env.extend([
            ("FLEETLOAD_TOPIC", "out".to_string()),
            ("FLEETLOAD_ROLE", "consume".to_string()),
            ("FLEETLOAD_CONSUMER", format!("{i}/2")),
            (
                "FLEETLOAD_TRACE_POINTER",
                "/relayed/fleetload_trace".to_string(),
            ),
            ("FLEETLOAD_SETTLE", "5s".to_string()),
        ]);
        let log = dir.path().join(format!("{consumer}.log"));
        children.push((worker(&env, &log), log));
    }
    for producer in ["p1", "p2"] {
        let mut env = common(producer);
        env.extend([
            ("FLEETLOAD_TOPIC", "in".to_string()),
            ("FLEETLOAD_TRACE", "on".to_string()),
        ]);
        let log = dir.path().join(format!("{producer}.log"));
        children.push((worker(&env, &log), log));
    }
    // The relay runs until shortly after the producers' end, well before the consumers' settle
    // time ends.
    let until = Instant::now() + Duration::from_secs(4 + 4 + 2);
    let relayed = {
        let servers = servers.clone();
        std::thread::spawn(move || relay(&servers, until))
    };
    for (child, log) in children {
        wait(child, Duration::from_secs(60), &log);
    }
    let relayed = relayed.join().unwrap();
    assert!(!relayed.dropped.is_empty() && !relayed.duplicated.is_empty());

    let merged = Command::new(LAUNCHER)
        .args(["merge", &reports.join(run).display().to_string()])
        .args(["--threshold", "e2e_p50>=200ms"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&merged.stdout).into_owned();
    assert!(
        merged.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let summary =
        Summary::from_json(&std::fs::read(reports.join(run).join("merged/summary.json")).unwrap())
            .unwrap();
    let e2e = summary
        .end_to_end
        .e2e
        .clone()
        .expect("the merged e2e object");
    let counts = &summary.counts;
    assert_eq!(
        counts.attempted, counts.acknowledged,
        "the mock cluster took every event"
    );
    assert!(counts.acknowledged >= 7_000, "{counts:?}");
    // Exactly what the relay did.
    assert_eq!(e2e.lost, Some(relayed.dropped.len() as u64), "{e2e:#?}");
    assert_eq!(e2e.duplicates, relayed.duplicated.len() as u64);
    assert_eq!(e2e.unique.unwrap() + e2e.lost.unwrap(), counts.acknowledged);
    assert_eq!(e2e.seen, relayed.written);
    assert_eq!(e2e.unacknowledged_seen, Some(0));
    assert_eq!(e2e.foreign, 0);
    // Every latency includes the relay's hold.
    let latency = decode_histogram(&e2e.histogram).unwrap();
    assert_eq!(latency.len(), e2e.seen);
    assert!(
        latency.min() >= RELAY_DELAY.as_micros() as u64,
        "min {} µs",
        latency.min()
    );
    assert_eq!(e2e.timeline.iter().map(|s| s.seen).sum::<u64>(), e2e.seen);
    let coverage = e2e.coverage.unwrap();
    assert_eq!(coverage.consumers_reported, ["c0", "c1"]);
    assert!(coverage.consumers_missing.is_empty());
    assert_eq!(coverage.producers_traced, 2);
    // Both consumers read a share of the partitions.
    for c in ["c0", "c1"] {
        let s = Summary::from_json(
            &std::fs::read(reports.join(run).join(format!("tasks/{c}/summary.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(s.end_to_end.role.as_deref(), Some("consume"));
        let seen = s.end_to_end.e2e.unwrap().seen;
        assert!(
            seen > 0 && seen < e2e.seen,
            "{c} saw {seen} of {}",
            e2e.seen
        );
    }
    // The merged producers' counts are the producers' alone.
    assert_eq!(summary.merge.as_ref().unwrap().tasks_reported, 4);
}
