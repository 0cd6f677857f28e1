//! What a run cost, through the binary: an ECS run of known task size and run time against a
//! Kinesis stream of known shard count, whose estimate must equal the hand computation from the
//! committed price table to the cent.
//!
//! The stream (DescribeStreamSummary) and the reports (S3) are in the moto server. ECS answers
//! come from the ECS double: moto's DescribeTasks carries neither a task's size nor its pull,
//! start and stop instants, which Fargate bills by; the double answers them as ECS does for a
//! task that ran. moto does answer DescribeTaskDefinition, the estimate's way to a size that
//! DescribeTasks left out, which the second test checks. No worker runs on the double: the tasks'
//! reports are written beforehand, under the ids the double gives its first tasks.
//!
//! Needs `FLEETLOAD_TEST_MOTO_URL`; fails when it is not set.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture, NetworkMode, OsFamily, RuntimePlatform,
};
use common::{
    aws_env, launcher, moto_bucket, moto_sdk_config, synthetic_task, text, unique_name, wait,
    write_task,
};
use fleetload::launcher::fleet::ecs::{EcsConfig, EcsFleet, TaskUsage};
use fleetload::model::report::{Outcome, Summary};
use fleetload_testkit::ecs::{EcsDouble, RunTaskReply};
use serde_json::{json, Value};

/// The committed price table, read here on its own.
fn price(name: &str) -> f64 {
    let table: Value =
        serde_json::from_str(include_str!("../src/launcher/cost/prices.json")).unwrap();
    table["regions"]["us-east-1"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name} for us-east-1 in prices.json"))
}

fn cents(usd: f64) -> i64 {
    (usd * 100.0).round() as i64
}

/// The id of the double's `n`-th task (from 1): the last segment of its ARN.
fn double_task_id(n: u64) -> String {
    format!("{n:032x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_run_on_a_known_stream_costs_what_the_price_table_says_to_the_cent() {
    const TASKS: u64 = 4;
    const SHARDS: i32 = 200;
    let sdk = moto_sdk_config().await;
    let stream = unique_name("cost");
    aws_sdk_kinesis::Client::new(&sdk)
        .create_stream()
        .stream_name(&stream)
        .shard_count(SHARDS)
        .send()
        .await
        .expect("CreateStream in moto");
    let (store, bucket) = moto_bucket("runs").await;
    // What four 30-minute tasks reported: 3,600 events each, 100 bytes each.
    let run_id = "cost-run";
    for n in 1..=TASKS {
        let values: Vec<u64> = (0..3600).map(|i| 20_000 + i % 50).collect();
        let task = synthetic_task(
            run_id,
            &double_task_id(n),
            &values,
            0,
            1800,
            Outcome::Completed,
        );
        write_task(&store, &task).await;
    }
    // ECS: 4 vCPU and 16 GB each on Fargate X86_64, the image pulled 1,860.5 s before the stop
    // (the double stops its tasks at 1,700,000,060.5): 1,861 s billed each.
    let ecs = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    ecs.end_tasks_after(Duration::from_millis(500));
    ecs.describe_with(json!({
        "cpu": "4096",
        "memory": "16384",
        "launchType": "FARGATE",
        "capacityProviderName": "FARGATE",
        "platformFamily": "Linux",
        "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
        "ephemeralStorage": {"sizeInGiB": 20},
        "pullStartedAt": 1_699_998_200.0,
    }));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/runs");
    let mut cmd = launcher(
        &[
            "run",
            "--tasks",
            "4",
            "--cluster",
            "double",
            "--task-definition",
            "fleetload-worker:1",
            "--container",
            "worker",
            "--subnets",
            "subnet-a",
            "--security-groups",
            "sg-1",
            "--launch-type",
            "FARGATE",
            "--target",
            "kinesis",
            "--stream",
            &stream,
            "--report-url",
            &url,
            "--run-id",
            run_id,
            "--duration",
            "1s",
            "--start-delay",
            "1s",
        ],
        dir.path(),
    );
    cmd.envs(aws_env()).env("AWS_ENDPOINT_URL_ECS", &ecs.url);
    let child = cmd.spawn().unwrap();
    let out = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let merged = Summary::from_json(
        &store
            .get(&format!("{run_id}/merged/summary.json"))
            .await
            .unwrap()
            .expect("merged/summary.json"),
    )
    .unwrap();
    assert_eq!(merged.duration_s, 1800.0);
    assert_eq!(merged.counts.acknowledged, 4 * 3600);
    let cost = merged.cost.clone().expect("a cost estimate");

    // By hand, from the table.
    let hours = 1861.0 / 3600.0;
    let fleet = TASKS as f64
        * hours
        * (4.0 * price("fargate_x86_vcpu_hour") + 16.0 * price("fargate_x86_gb_hour"));
    // 200 shards for 30 minutes; 14,400 records of 100 bytes, one 25 KB unit each.
    let target = SHARDS as f64 * 0.5 * price("kinesis_shard_hour")
        + 14_400.0 / 1e6 * price("kinesis_million_put_payload_units");
    // 4 tasks × 3 files, usage.json, the launcher's live/view.json and 4 merged files written;
    // 2 LIST pages; 3 GETs per task.
    let storage = (18.0 + 2.0) / 1000.0 * price("s3_thousand_put_requests")
        + 12.0 / 1000.0 * price("s3_thousand_get_requests");
    let total = fleet + target + storage;
    for (part, expected) in [
        (&cost.parts.fleet, fleet),
        (&cost.parts.target, target),
        (&cost.parts.storage, storage),
    ] {
        let usd = part.usd.unwrap_or_else(|| panic!("not priced: {part:#?}"));
        assert_eq!(cents(usd), cents(expected), "{part:#?}");
        assert!(
            (usd - expected).abs() < 1e-9,
            "{usd} vs {expected}: {part:#?}"
        );
    }
    assert_eq!(cents(cost.usd), cents(total));
    assert!((cost.usd - total).abs() < 1e-9);
    assert!(cost.complete);
    let per_million = cost.usd_per_million_acknowledged.unwrap();
    assert!((per_million - total / 14_400.0 * 1e6).abs() < 1e-9);
    assert_eq!(cost.prices.region.as_deref(), Some("us-east-1"));
    assert!(cost.estimate.starts_with("estimate from list prices of 20"));
    assert!(cost.estimate.ends_with("not a bill"));
    assert!(
        cost.parts.fleet.basis.contains("7,444 task-seconds billed"),
        "{:#?}",
        cost.parts.fleet
    );
    assert!(
        cost.parts.target.basis.contains("200 open shards"),
        "{:#?}",
        cost.parts.target
    );
    // The table says it, in dollars and cents.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "cost           ≈ ${total:.2} (fleet ${fleet:.2}, target ${target:.2}"
        )),
        "{stdout}"
    );
    // What the run used is kept next to its reports, for a later merge.
    let usage: Value = serde_json::from_slice(
        &store
            .get(&format!("{run_id}/usage.json"))
            .await
            .unwrap()
            .expect("usage.json"),
    )
    .unwrap();
    assert_eq!(usage["fleet"].as_array().unwrap().len(), TASKS as usize);
    assert_eq!(usage["target"]["open_shards"], SHARDS);
}

#[tokio::test]
async fn a_task_size_left_out_by_describe_tasks_is_read_from_its_task_definition_in_moto() {
    let sdk = moto_sdk_config().await;
    let client = aws_sdk_ecs::Client::new(&sdk);
    let family = unique_name("cost-td");
    let td = client
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("1024")
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("fleetload:test")
                .cpu(512)
                .memory(1024)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition in moto");
    let arn = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_string();
    let fleet = EcsFleet::new(
        client,
        EcsConfig {
            cluster: "default".into(),
            task_definition: arn.clone(),
            container: "worker".into(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: false,
            launch_type: Some("FARGATE".into()),
            capacity_providers: Vec::new(),
            platform_version: None,
        },
    );
    let missing = format!("{}-gone:1", arn.rsplit_once('/').unwrap().0);
    let mut usage = vec![
        TaskUsage {
            task_id: "t1".into(),
            task_definition_arn: Some(arn),
            ..TaskUsage::default()
        },
        TaskUsage {
            task_id: "t2".into(),
            task_definition_arn: Some(missing.clone()),
            ..TaskUsage::default()
        },
    ];
    let notes = fleet.complete_usage(&mut usage).await;
    assert_eq!(usage[0].cpu_units, Some(512));
    assert_eq!(usage[0].memory_mib, Some(1024));
    assert_eq!(usage[0].cpu_architecture.as_deref(), Some("ARM64"));
    assert_eq!(usage[0].size_from.as_deref(), Some("task definition"));
    assert_eq!(usage[1].cpu_units, None);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("DescribeTaskDefinition") && notes[0].contains(&missing),
        "{notes:?}"
    );
}
