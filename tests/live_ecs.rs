//! The live view of an ECS run: `launcher run --backend ecs` fans the tasks out with RunTask on
//! the moto server, with the report store in moto S3, and reads the tasks' live windows from S3
//! while they run.
//!
//! moto records the tasks but runs no container, so this test plays ECS's part: for every task
//! RunTask started it starts the worker with the task's container overrides and its task id (as
//! the ECS agent would, the id coming from the task metadata endpoint), and when a worker exits
//! it stops its task in moto (the essential container exited). Everything between the launcher
//! and the tasks goes through S3: their reports, their live windows.
//!
//! Needs `FLEETLOAD_TEST_MOTO_URL` and `FLEETLOAD_TEST_PYTHON` (boto3 sets up the network, the
//! cluster and the task definition); fails when they are not set.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::DesiredStatus;
use common::{aws_env, launcher, moto_bucket, moto_sdk_config, moto_url, text, worker_command};
use fleetload::model::live::LiveRecord;
use fleetload::model::report::Summary;
use fleetload::store::{live_view_key, merged_dir};

/// The default VPC's first subnet and security group, a cluster and a Fargate task definition
/// whose container is `worker`, created with boto3; moto holds tasks where they are until
/// StopTask (as ECS does with a running container).
fn ecs_setup(cluster: &str) -> (String, String, String) {
    let python = std::env::var("FLEETLOAD_TEST_PYTHON")
        .expect("FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh");
    let script = r#"
import json, sys, urllib.request, boto3
url, cluster = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2, ecs = boto3.client("ec2", **kw), boto3.client("ecs", **kw)
subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
ecs.create_cluster(clusterName=cluster)
td = ecs.register_task_definition(
    family=cluster, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
    containerDefinitions=[{"name": "worker", "image": "fleetload", "essential": True, "cpu": 256, "memory": 512}],
)["taskDefinition"]["taskDefinitionArn"]
body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}).encode()
urllib.request.urlopen(urllib.request.Request(url + "/moto-api/state-manager/set-transition", data=body, method="POST"))
print(json.dumps({"subnet": subnet, "group": group, "task_definition": td}))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(moto_url())
        .arg(cluster)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 set-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["subnet"].as_str().unwrap().to_string(),
        v["group"].as_str().unwrap().to_string(),
        v["task_definition"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_run_shows_the_fleet_live_from_windows_its_tasks_wrote_to_s3() {
    let cluster = common::unique_name("live-ecs");
    let (subnet, group, task_definition) = ecs_setup(&cluster);
    let (store, bucket) = moto_bucket("runs").await;
    let run = format!("live-{}", &uuid_like());
    let dir = tempfile::tempdir().unwrap();
    let report_url = format!("s3://{bucket}/runs");
    let mut cmd = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--backend",
            "ecs",
            "--cluster",
            &cluster,
            "--task-definition",
            &task_definition,
            "--container",
            "worker",
            "--subnets",
            &subnet,
            "--security-groups",
            &group,
            "--launch-type",
            "FARGATE",
            "--target",
            "null",
            "--rate",
            "500",
            "--duration",
            "10s",
            "--live-interval",
            "2s",
            "--start-delay",
            "8s",
            "--report-url",
            &report_url,
            "--run-id",
            &run,
        ],
        dir.path(),
    );
    cmd.envs(aws_env());
    let mut launcher = cmd.spawn().unwrap();

    // Play ECS: start a worker for every task RunTask started, stop the task when it exits.
    let ecs = aws_sdk_ecs::Client::new(&moto_sdk_config().await);
    let mut workers: BTreeMap<String, Child> = BTreeMap::new();
    let mut stopped: Vec<String> = Vec::new();
    let started = Instant::now();
    while launcher.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the launcher is still running"
        );
        let arns = ecs
            .list_tasks()
            .cluster(&cluster)
            .started_by(&run)
            .desired_status(DesiredStatus::Running)
            .send()
            .await
            .unwrap()
            .task_arns()
            .to_vec();
        let new: Vec<String> = arns
            .into_iter()
            .filter(|a| !workers.contains_key(a))
            .collect();
        if !new.is_empty() {
            let described = ecs
                .describe_tasks()
                .cluster(&cluster)
                .set_tasks(Some(new.clone()))
                .send()
                .await
                .unwrap();
            for task in described.tasks() {
                let arn = task.task_arn().unwrap().to_string();
                let id = arn.rsplit('/').next().unwrap().to_string();
                let mut env: Vec<(String, String)> = task
                    .overrides()
                    .map(|o| o.container_overrides())
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|c| c.environment())
                    .map(|kv| {
                        (
                            kv.name().unwrap().to_string(),
                            kv.value().unwrap().to_string(),
                        )
                    })
                    .collect();
                assert!(
                    env.iter()
                        .any(|(k, v)| k == "FLEETLOAD_LIVE_INTERVAL" && v == "2s"),
                    "the overrides carry the live interval: {env:?}"
                );
                env.push(("FLEETLOAD_TASK_ID".into(), id));
                env.extend(aws_env().into_iter().map(|(k, v)| (k.to_string(), v)));
                let child = worker_command(&env).spawn().unwrap();
                workers.insert(arn, child);
            }
        }
        for (arn, child) in workers.iter_mut() {
            if !stopped.contains(arn) && child.try_wait().unwrap().is_some() {
                ecs.stop_task()
                    .cluster(&cluster)
                    .task(arn)
                    .reason("Essential container in task exited")
                    .send()
                    .await
                    .unwrap();
                stopped.push(arn.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = launcher.wait_with_output().unwrap();
    let screen = text(&out);
    assert_eq!(workers.len(), 2, "{screen}");
    assert_eq!(out.status.code(), Some(0), "{screen}");

    // The launcher showed the fleet from the windows in S3.
    let lines: Vec<&str> = screen.lines().filter(|l| l.starts_with("live ")).collect();
    assert!(
        lines.iter().filter(|l| l.contains("tasks 2/2")).count() >= 3,
        "{screen}"
    );
    let record = LiveRecord::from_json(
        &store
            .get(&live_view_key(&run))
            .await
            .unwrap()
            .expect("live/view.json in S3"),
    )
    .unwrap();
    let merged = Summary::from_json(
        &store
            .get(&format!("{}/summary.json", merged_dir(&run)))
            .await
            .unwrap()
            .expect("merged/summary.json in S3"),
    )
    .unwrap();
    assert_eq!(merged.counts.acknowledged, 2 * 500 * 10);
    assert_eq!(record.totals.acknowledged, merged.counts.acknowledged);
    assert!(record.requests > 0);
    assert!(record
        .windows
        .iter()
        .any(|w| w.tasks_reporting == 2 && w.stale.is_empty() && w.counts.acknowledged > 0));
    // Every window object is in the bucket, two tasks' worth per window.
    let keys = store.list(&format!("{run}/live/w")).await.unwrap();
    assert!(keys.len() >= 10, "{keys:?}");
}

/// A short unique suffix for a run id (ECS's startedBy takes 36 characters).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}
