use chrono::{DateTime, Utc};

use super::*;
use crate::launcher::gate::tests::summary;
use crate::model::report::{KinesisCounts, NOT_CHARGED, PRICED, UNKNOWN};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn task(id: &str, arch: &str, capacity: &str, pull: &str, stop: &str) -> TaskUsage {
    TaskUsage {
        task_id: id.into(),
        launch_type: Some("FARGATE".into()),
        capacity_provider: Some(capacity.into()),
        cpu_units: Some(1024),
        memory_mib: Some(2048),
        cpu_architecture: Some(arch.into()),
        platform_family: Some("Linux".into()),
        ephemeral_storage_gib: Some(20),
        pull_started_at: Some(at(pull)),
        started_at: Some(at(pull) + chrono::Duration::seconds(5)),
        stopped_at: Some(at(stop)),
        ..TaskUsage::default()
    }
}

fn kinesis_usage(fleet: Vec<TaskUsage>) -> RunUsage {
    RunUsage {
        backend: "ecs".into(),
        region: Some("us-east-1".into()),
        fleet,
        target: TargetUsage {
            kind: "kinesis".into(),
            stream: Some("orders".into()),
            region: Some("us-east-1".into()),
            mode: Some("PROVISIONED".into()),
            open_shards: Some(200),
            ..TargetUsage::default()
        },
        notes: Vec::new(),
    }
}

#[test]
fn a_fargate_fleet_and_a_provisioned_stream_cost_what_the_table_says() {
    let mut s = summary();
    // 30 minutes of production, 1,000,000 records of 600 bytes.
    s.duration_s = 1800.0;
    s.counts.acknowledged = 1_000_000;
    s.bytes = 600_000_000;
    let fleet = vec![
        // 1800.4 s → 1801 s billed.
        task(
            "a",
            "X86_64",
            "FARGATE",
            "2026-03-01T12:00:00Z",
            "2026-03-01T12:30:00.400Z",
        ),
        // 30 s → the 60 s minimum.
        task(
            "b",
            "ARM64",
            "FARGATE",
            "2026-03-01T12:00:00Z",
            "2026-03-01T12:00:30Z",
        ),
    ];
    let usage = kinesis_usage(fleet);
    let storage = StorageCount {
        objects: 11,
        tasks: 2,
        s3: true,
    };
    let c = estimate(&s, &usage, Some(&storage), &Prices::committed());
    let fleet_usd =
        1801.0 / 3600.0 * (0.04048 + 2.0 * 0.004445) + 60.0 / 3600.0 * (0.03238 + 2.0 * 0.00356);
    let target_usd = 200.0 * 0.5 * 0.015 + 1.0 * 0.014;
    let storage_usd = (11.0 + 2.0) / 1000.0 * 0.005 + 6.0 / 1000.0 * 0.0004;
    assert_eq!(c.parts.fleet.status, PRICED);
    assert!(
        (c.parts.fleet.usd.unwrap() - fleet_usd).abs() < 1e-12,
        "{c:#?}"
    );
    assert!(
        (c.parts.target.usd.unwrap() - target_usd).abs() < 1e-12,
        "{c:#?}"
    );
    assert!(
        (c.parts.storage.usd.unwrap() - storage_usd).abs() < 1e-12,
        "{c:#?}"
    );
    assert!((c.usd - (fleet_usd + target_usd + storage_usd)).abs() < 1e-12);
    assert!(c.complete);
    assert!((c.usd_per_million_acknowledged.unwrap() - c.usd).abs() < 1e-12);
    assert!(
        c.estimate.starts_with("estimate from list prices of 20"),
        "{}",
        c.estimate
    );
    assert!(
        c.estimate.ends_with("(us-east-1), not a bill"),
        "{}",
        c.estimate
    );
    assert_eq!(c.prices.region.as_deref(), Some("us-east-1"));
    let words = line(&c);
    assert!(
        words.starts_with(&format!("≈ {}", dollars(c.usd))),
        "{words}"
    );
    assert!(words.contains("not a bill"), "{words}");
}

#[test]
fn aggregated_records_and_large_records_count_their_payload_units() {
    let mut s = summary();
    s.duration_s = 3600.0;
    s.counts.acknowledged = 5_000_000;
    // 5,000,000 user records in 100,000 aggregated Kinesis records of 60,000 bytes: 3 units each.
    s.bytes = 6_000_000_000;
    s.kinesis = Some(KinesisCounts {
        aggregation: "on".into(),
        kinesis_records: 100_000,
        put_records_calls: 500,
    });
    let mut usage = kinesis_usage(Vec::new());
    usage.backend = "local".into();
    usage.target.open_shards = Some(4);
    let c = estimate(&s, &usage, None, &Prices::committed());
    assert_eq!(c.parts.fleet.status, NOT_CHARGED);
    let target = &c.parts.target;
    assert_eq!(target.items[1].quantity, 0.3, "{target:#?}");
    assert!((target.usd.unwrap() - (4.0 * 0.015 + 0.3 * 0.014)).abs() < 1e-12);
    // Storage could not be counted: the estimate says it is a lower bound.
    assert_eq!(c.parts.storage.status, UNKNOWN);
    assert!(!c.complete);
    assert!(line(&c).starts_with('≥'), "{}", line(&c));
}

#[test]
fn on_demand_streams_cost_stream_hours_and_data_rounded_to_the_kilobyte() {
    let mut s = summary();
    s.duration_s = 900.0;
    s.counts.acknowledged = 2_000_000;
    s.bytes = 2_000_000 * 1500; // 1.5 KB each: 2 KB ingested each
    let mut usage = kinesis_usage(Vec::new());
    usage.backend = "local".into();
    usage.target.mode = Some("ON_DEMAND".into());
    let c = estimate(&s, &usage, None, &Prices::committed());
    let gb = 2_000_000.0 * 2048.0 / GB;
    let expected = 0.25 * 0.04 + gb * 0.08;
    assert!(
        (c.parts.target.usd.unwrap() - expected).abs() < 1e-12,
        "{c:#?}"
    );
}

#[test]
fn what_cannot_be_priced_is_said_and_never_guessed() {
    let mut s = summary();
    s.duration_s = 60.0;
    // EC2 capacity, a task with no instants, and a region without prices.
    let mut ec2 = task(
        "e",
        "X86_64",
        "my-asg-provider",
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:01:00Z",
    );
    ec2.launch_type = Some("EC2".into());
    let mut usage = kinesis_usage(vec![ec2]);
    let c = estimate(&s, &usage, None, &Prices::committed());
    assert_eq!(c.parts.fleet.status, UNKNOWN);
    assert!(
        c.parts.fleet.basis.contains("billed by EC2"),
        "{}",
        c.parts.fleet.basis
    );
    let mut no_times = task(
        "n",
        "X86_64",
        "FARGATE",
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:01:00Z",
    );
    no_times.pull_started_at = None;
    no_times.started_at = None;
    no_times.stopped_at = None;
    usage.fleet = vec![no_times];
    let c = estimate(&s, &usage, None, &Prices::committed());
    assert!(
        c.parts.fleet.basis.contains("no start and stop instants"),
        "{}",
        c.parts.fleet.basis
    );
    usage.fleet.clear();
    usage.region = Some("eu-north-9".into());
    usage.target.region = Some("eu-north-9".into());
    let c = estimate(&s, &usage, None, &Prices::committed());
    assert_eq!(c.parts.target.status, UNKNOWN);
    assert!(
        c.parts.target.basis.contains("no prices for eu-north-9"),
        "{}",
        c.parts.target.basis
    );
    // Kafka and MSK are not charged per request.
    usage.target = TargetUsage {
        kind: "kafka".into(),
        kafka_servers: Some("b-1.x.kafka.us-east-1.amazonaws.com:9098".into()),
        ..TargetUsage::default()
    };
    let c = estimate(&s, &usage, None, &Prices::committed());
    assert_eq!(c.parts.target.status, NOT_CHARGED);
    assert!(c
        .parts
        .target
        .basis
        .starts_with("Amazon MSK is not charged per request"));
    // A task stopped before its image was pulled costs nothing.
    let mut never = task(
        "x",
        "X86_64",
        "FARGATE",
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:01:00Z",
    );
    never.pull_started_at = None;
    never.started_at = None;
    assert_eq!(billed_seconds(&never), Ok(0));
}
