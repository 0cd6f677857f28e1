//! `launcher run --consumers` through the binary, end to end: consumer tasks started with the
//! producers read back what they wrote (librdkafka's mock cluster, the embedded broker, a moto
//! Kinesis stream), and the merged delivery must be exact. In a file of its own so that these
//! runs (producers, consumers and a broker each) do not share the machine with the other
//! launcher runs of `tests/launcher_run.rs`: test binaries run one after the other.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    assert_merge_adds_up, launcher, reports, run_id_of, serial_moto, task_logs, text, wait,
};
use fleetload::model::report::Summary;

/// The merged end-to-end object, which a run with consumers must have.
fn e2e_of(merged: &Summary) -> &fleetload::model::report::E2e {
    merged
        .end_to_end
        .e2e
        .as_ref()
        .expect("a run with consumers has a merged e2e object")
}

/// The consumer task reports among `tasks`, and the producers'.
fn by_role(tasks: &[Summary]) -> (Vec<&Summary>, Vec<&Summary>) {
    tasks.iter().partition(|t| t.end_to_end.is_consumer())
}

#[test]
fn two_consumers_read_back_exactly_what_two_producers_wrote_to_the_mock_cluster() {
    let mock = rdkafka::mocking::MockCluster::new(3).unwrap();
    mock.create_topic("orders", 6, 1).unwrap();
    mock.create_topic("nothing-out", 2, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS={servers}");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "--tasks",
            "2",
            "--consumers",
            "2",
            "--target",
            "kafka",
            "--topic",
            "orders",
            "-e",
            kafka.as_str(),
            "--rate",
            "500",
            "--duration",
            "3s",
            "--report-url",
            "reports",
            "--consumer-env",
            "FLEETLOAD_SETTLE=3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_args = args(&[
        "--threshold",
        "lost==0",
        "--threshold",
        "duplicates==0",
        "--threshold",
        "e2e_p99<30s",
    ]);
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let out = wait(
        launcher(&run_args, dir.path()).spawn().unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{screen}\n{}",
        task_logs(&dir.path().join("reports"), &out)
    );
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("reports"), &run);
    let (consumers, producers) = by_role(&tasks);
    assert_eq!((producers.len(), consumers.len()), (2, 2));
    // The merged counts are the producers' alone.
    let producer_reports: Vec<Summary> = producers.iter().map(|s| (*s).clone()).collect();
    assert_merge_adds_up(&merged, &producer_reports);
    assert_eq!(merged.counts.acknowledged, 3000);
    let info = merged.merge.as_ref().unwrap();
    assert_eq!((info.tasks_expected, info.tasks_reported), (4, 4));
    // Every acknowledged event was seen once: nothing lost, nothing duplicated.
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(merged.counts.acknowledged));
    assert_eq!(e.seen, merged.counts.acknowledged);
    assert_eq!(e.lost, Some(0));
    assert_eq!(e.duplicates, 0);
    assert_eq!(e.unacknowledged_seen, Some(0));
    assert_eq!(e.foreign, 0);
    assert_eq!(e.latency_ms.count, 3000);
    let cov = e.coverage.as_ref().unwrap();
    assert_eq!(
        cov.consumers_reported,
        ["local-consumer-01", "local-consumer-02"]
    );
    assert!(cov.consumers_missing.is_empty(), "{cov:?}");
    assert_eq!(cov.producers_traced, 2);
    // The per-second end-to-end histograms add up to every read.
    assert_eq!(e.timeline.iter().map(|t| t.seen).sum::<u64>(), e.seen);
    // Producers traced, consumers shared the topic's partitions, each knew its place, and all
    // started at the same planned instant.
    for p in &producers {
        assert!(p.end_to_end.trace.is_some(), "{} did not trace", p.task_id);
        assert_eq!(
            p.scenario.get("FLEETLOAD_TRACE").map(String::as_str),
            Some("on")
        );
    }
    let mut places = Vec::new();
    for c in &consumers {
        let read = c.end_to_end.e2e.as_ref().unwrap();
        assert!(
            read.seen > 0,
            "{} read nothing: {:?}",
            c.task_id,
            read.source
        );
        assert_eq!(
            c.scenario.get("FLEETLOAD_ROLE").map(String::as_str),
            Some("consume")
        );
        assert_eq!(
            c.scenario.get("FLEETLOAD_TOPIC").map(String::as_str),
            Some("orders")
        );
        assert!(!c.scenario.contains_key("FLEETLOAD_TRACE"));
        let place = c.scenario.get("FLEETLOAD_CONSUMER").cloned().unwrap();
        // Partition p is read by consumer p mod 2, for the whole run.
        let mine = if place == "0/2" {
            "[0, 2, 4]"
        } else {
            "[1, 3, 5]"
        };
        assert!(
            read.source
                .as_deref()
                .is_some_and(|s| s.contains(&format!("read {mine}"))),
            "{place}: {:?}",
            read.source
        );
        places.push(place);
        assert!(read.clock.contains("same host"), "{}", read.clock);
    }
    assert_eq!(places, ["0/2", "1/2"]);
    assert!(tasks
        .iter()
        .all(|t| t.planned_start == tasks[0].planned_start));
    // The screen shows the consumers while they run, and the end-to-end table at the end.
    for expected in [
        "2 consumer task(s) ← kafka topic orders on",
        "end to end     2 of 2 consumer task(s) reported",
        "  funnel       planned 3,000 → sent 3,000 → acknowledged 3,000 → seen 3,000",
        "  delivery     lost 0   duplicates 0   unacknowledged seen 0   foreign 0",
        "  held   lost==0",
    ] {
        assert!(screen.contains(expected), "missing {expected:?}:\n{screen}");
    }

    // The same reports gated again: an end-to-end p99 below a microsecond is broken (exit 1).
    let run_dir = dir.path().join("reports").join(&run);
    let out = wait(
        launcher(
            &[
                "merge",
                run_dir.to_str().unwrap(),
                "--threshold",
                "e2e_p99<1us",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("BROKEN e2e_p99<1us"), "{}", text(&out));

    // Consumers reading a topic the producers never reach: everything acknowledged is lost,
    // and `lost==0` breaks (exit 1).
    let lost_args = args(&[
        "--consume-from",
        "kafka:nothing-out",
        "--threshold",
        "lost==0",
    ]);
    let lost_args: Vec<&str> = lost_args.iter().map(String::as_str).collect();
    let out = wait(
        launcher(&lost_args, dir.path()).spawn().unwrap(),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (merged, _) = reports(&dir.path().join("reports"), &run_id_of(&out));
    let e = e2e_of(&merged);
    assert_eq!(merged.counts.acknowledged, 3000);
    assert_eq!((e.seen, e.unique, e.lost), (0, Some(0), Some(3000)));
    assert!(
        text(&out).contains("BROKEN lost==0   measured 3000"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_quickstart_with_a_consumer_reads_back_the_embedded_brokers_topic() {
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--consumers",
                "1",
                "--duration",
                "2s",
                "-e",
                "FLEETLOAD_SETTLE=2s",
                "--threshold",
                "lost==0",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{screen}\n{}",
        task_logs(&dir.path().join("fleetload-runs"), &out)
    );
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("fleetload-runs"), &run);
    let (consumers, _) = by_role(&tasks);
    assert_eq!(consumers.len(), 1);
    // The embedded broker's consumer defaults, the settle time given winning over its own.
    let scenario = &consumers[0].scenario;
    assert_eq!(
        scenario
            .get("FLEETLOAD_KAFKA_FETCH_WAIT_MAX_MS")
            .map(String::as_str),
        Some("10")
    );
    assert_eq!(
        scenario.get("FLEETLOAD_SETTLE").map(String::as_str),
        Some("2s")
    );
    assert_eq!(merged.counts.acknowledged, 2 * 2 * 1000);
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(merged.counts.acknowledged));
    assert_eq!((e.lost, e.duplicates), (Some(0), 0));
    assert!(
        e.latency_ms.count == e.seen && e.latency_ms.p50 > 0.0,
        "{e:?}"
    );
    assert!(
        screen.contains("1 consumer task(s) ← kafka topic fleetload on the embedded broker"),
        "{screen}"
    );
    assert!(screen.contains("  end to end  "), "{screen}");
}

#[test]
fn consumers_read_back_a_moto_kinesis_stream_exactly() {
    let (mut moto, url) = serial_moto();
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg("import boto3, sys\nk = boto3.client('kinesis', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\nk.create_stream(StreamName='e2e', ShardCount=3)")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--consumers",
                "2",
                "--target",
                "kinesis",
                "--stream",
                "e2e",
                "--consume-from",
                "kinesis:e2e",
                "--rate",
                "100",
                "--duration",
                "3s",
                "--report-url",
                "r",
                "-e",
                "FLEETLOAD_BATCH_SIZE=50",
                "-e",
                "FLEETLOAD_SETTLE=4s",
                "--threshold",
                "lost==0",
                "--threshold",
                "duplicates==0",
            ],
            dir.path(),
        )
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    let _ = moto.kill();
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let (merged, tasks) = reports(&dir.path().join("r"), &run_id_of(&out));
    let (consumers, _) = by_role(&tasks);
    assert_eq!(consumers.len(), 2);
    assert_eq!(merged.counts.acknowledged, 600);
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(600));
    assert_eq!((e.seen, e.lost, e.duplicates), (600, Some(0), 0));
    // The 3 shards split between the 2 consumers (shard n to consumer n mod 2): both read.
    for c in &consumers {
        let read = c.end_to_end.e2e.as_ref().unwrap();
        assert!(
            read.seen > 0,
            "{} read nothing: {:?}",
            c.task_id,
            read.source
        );
    }
}
