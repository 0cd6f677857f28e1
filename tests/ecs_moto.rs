//! The ECS fleet and the stack reader against a moto server on loopback (real SDK requests, real
//! answers): a stack like the project's gives the configuration, RunTask fans out 10 tasks per
//! call, and ListTasks / DescribeTasks of moto itself confirm what runs.
//!
//! Needs `FLEETLOAD_TEST_MOTO_URL` (e.g. `http://127.0.0.1:5000`); fails when it is not set.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::Credentials;
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, TaskField};
use fleetload::launcher::fleet::ecs::{EcsFleet, OverridesTooLarge, StartProgress, RUN_ID_TAG};
use fleetload::launcher::fleet::stack::{read_stack, StackError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn moto_url() -> String {
    std::env::var("FLEETLOAD_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "FLEETLOAD_TEST_MOTO_URL is not set: these tests need a moto server, e.g. \
             `.venv/bin/moto_server -H 127.0.0.1 -p 5000 &` and \
             FLEETLOAD_TEST_MOTO_URL=http://127.0.0.1:5000"
        )
    })
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// POSTs `body` to the moto server and returns the HTTP status and the answer's body.
async fn moto_post(
    path: &str,
    extra_headers: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let url = url::Url::parse(&moto_url()).expect("FLEETLOAD_TEST_MOTO_URL is a URL");
    let host = url.host_str().expect("a host in FLEETLOAD_TEST_MOTO_URL");
    let port = url.port_or_known_default().unwrap_or(80);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n\
         {extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .unwrap_or_else(|e| panic!("no moto server at {}: {e}", moto_url()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("moto answers within 10 s")
        .unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// POSTs JSON to moto's own API (`/moto-api/...`).
async fn moto_api(path: &str, body: serde_json::Value) {
    let (status, answer) = moto_post(path, "", "application/json", &body.to_string()).await;
    // moto answers 201 Created to set-transition.
    assert!(
        (200..300).contains(&status),
        "{path}: HTTP {status} {answer}"
    );
}

/// One EC2 query-protocol call (there is no EC2 client among the dependencies). moto reads the
/// service and region from the credential scope and does not check the signature.
async fn ec2_query(params: &[(&str, &str)]) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .append_pair("Version", "2016-11-15")
        .finish();
    let auth = "Authorization: AWS4-HMAC-SHA256 \
                Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, \
                Signature=0\r\n";
    let (status, answer) = moto_post("/", auth, "application/x-www-form-urlencoded", &body).await;
    assert_eq!(status, 200, "EC2 {params:?}: {answer}");
}

/// moto moves a task one state further on every DescribeTasks (by default straight to STOPPED).
/// Hold tasks where they are until StopTask stops them, as ECS does with a long-running worker.
/// This setting is global to the moto server; every test here wants the same.
async fn hold_task_states() {
    moto_api(
        "/moto-api/state-manager/set-transition",
        json!({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000}}),
    )
    .await;
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A stack shaped like the project's: network, cluster, and the outputs the launcher reads.
fn template(cluster: &str) -> String {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": { "TaskDefinitionArn": { "Type": "String" } },
        "Resources": {
            "Vpc": { "Type": "AWS::EC2::VPC", "Properties": { "CidrBlock": "10.42.0.0/16" } },
            "SubnetA": { "Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.42.1.0/24", "AvailabilityZone": "us-east-1a" } },
            "SubnetB": { "Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": { "Ref": "Vpc" }, "CidrBlock": "10.42.2.0/24", "AvailabilityZone": "us-east-1b" } },
            "WorkerSecurityGroup": { "Type": "AWS::EC2::SecurityGroup", "Properties": {
                "GroupDescription": "fleetload workers", "VpcId": { "Ref": "Vpc" } } },
            "Cluster": { "Type": "AWS::ECS::Cluster", "Properties": { "ClusterName": cluster } }
        },
        "Outputs": {
            "VpcId": { "Value": { "Ref": "Vpc" } },
            "ClusterName": { "Value": { "Ref": "Cluster" } },
            "TaskDefinitionArn": { "Value": { "Ref": "TaskDefinitionArn" } },
            "ContainerName": { "Value": "worker" },
            "SubnetIds": { "Value": { "Fn::Join": [",", [{ "Ref": "SubnetA" }, { "Ref": "SubnetB" }]] } },
            "SecurityGroupIds": { "Value": { "Fn::GetAtt": ["WorkerSecurityGroup", "GroupId"] } },
            "AssignPublicIp": { "Value": "DISABLED" },
            "LaunchType": { "Value": "FARGATE" },
            "ReportBucket": { "Value": "fleetload-reports-test" },
            "ReportUrl": { "Value": "s3://fleetload-reports-test/runs" },
            "DemoStreamName": { "Value": "fleetload-demo" }
        }
    })
    .to_string()
}

struct Setup {
    ecs: aws_sdk_ecs::Client,
    cfn: aws_sdk_cloudformation::Client,
    stack: String,
    cluster: String,
    task_definition: String,
}

/// Registers a Fargate task definition (container `worker`, awsvpc) and creates the stack.
async fn setup() -> Setup {
    hold_task_states().await;
    let sdk = sdk_config().await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let family = unique("fleetload-worker");
    let td = ecs
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("fleetload:test")
                // moto needs container-level cpu and memory to place a task; ECS does not.
                .cpu(256)
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition in moto");
    let task_definition = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_string();
    let stack = unique("fleetload");
    let cluster = unique("cluster");
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template(&cluster))
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("TaskDefinitionArn")
                .parameter_value(&task_definition)
                .build(),
        )
        .send()
        .await
        .expect("CreateStack in moto");
    // moto gives a task's network interface a DNS name only in a VPC with DNS hostnames (and
    // fails RunTask otherwise); its CloudFormation ignores EnableDnsHostnames, so set it here.
    let described = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let vpc = described.stacks()[0]
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("VpcId"))
        .and_then(|o| o.output_value())
        .expect("the VpcId output")
        .to_string();
    ec2_query(&[
        ("Action", "ModifyVpcAttribute"),
        ("VpcId", &vpc),
        ("EnableDnsHostnames.Value", "true"),
    ])
    .await;
    Setup {
        ecs,
        cfn,
        stack,
        cluster,
        task_definition,
    }
}

fn env(run_id: &str) -> Vec<(String, String)> {
    vec![
        ("FLEETLOAD_RUN_ID".into(), run_id.into()),
        ("FLEETLOAD_START_AT".into(), "2030-01-01T00:00:00Z".into()),
        (
            "FLEETLOAD_REPORT_URL".into(),
            "s3://fleetload-reports-test/runs".into(),
        ),
        ("FLEETLOAD_TARGET".into(), "null".into()),
        ("FLEETLOAD_RATE".into(), "100".into()),
    ]
}

fn quiet(_: &StartProgress) {}

/// Task ARNs moto's own ListTasks gives for `startedBy = run_id`.
async fn moto_list(s: &Setup, run_id: &str) -> BTreeSet<String> {
    s.ecs
        .list_tasks()
        .cluster(&s.cluster)
        .started_by(run_id)
        .send()
        .await
        .unwrap()
        .task_arns()
        .iter()
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_run_of_23_tasks_from_the_stack_starts_runs_and_stops() {
    let s = setup().await;
    let outputs = read_stack(&s.cfn, &s.stack).await.expect("read the stack");
    assert_eq!(outputs.cluster, s.cluster);
    assert_eq!(outputs.task_definition, s.task_definition);
    assert_eq!(outputs.container, "worker");
    assert_eq!(outputs.subnets.len(), 2);
    assert!(
        outputs.subnets.iter().all(|id| id.starts_with("subnet-")),
        "{:?}",
        outputs.subnets
    );
    assert_eq!(outputs.security_groups.len(), 1);
    assert!(
        outputs.security_groups[0].starts_with("sg-"),
        "{:?}",
        outputs.security_groups
    );
    assert_eq!(outputs.report_bucket, "fleetload-reports-test");
    assert_eq!(outputs.report_url, "s3://fleetload-reports-test/runs");
    assert_eq!(outputs.launch_type.as_deref(), Some("FARGATE"));
    assert!(!outputs.assign_public_ip);
    assert_eq!(outputs.demo_stream.as_deref(), Some("fleetload-demo"));

    let cfg = outputs.ecs_config();
    let fleet = EcsFleet::new(s.ecs.clone(), cfg).with_poll_interval(Duration::from_millis(50));
    let run_id = unique("moto");
    let env = env(&run_id);
    let last = std::sync::Mutex::new(None);
    let on_progress = |p: &StartProgress| *last.lock().unwrap() = Some(p.clone());
    let report = fleet
        .start(
            &run_id,
            &env,
            23,
            Instant::now() + Duration::from_secs(60),
            &on_progress,
        )
        .await
        .expect("23 tasks start");
    assert_eq!(report.calls, vec![10, 10, 3]);
    assert_eq!(report.tasks.len(), 23);
    assert!(report.failures.is_empty() && report.throttled == 0);
    let last = last.into_inner().unwrap().unwrap();
    assert_eq!((last.started, last.requested), (23, 23));

    // moto's own view: 23 tasks of this run, each with the run id and the environment.
    let started: BTreeSet<String> = report.tasks.iter().cloned().collect();
    assert_eq!(moto_list(&s, &run_id).await, started);
    let described = s
        .ecs
        .describe_tasks()
        .cluster(&s.cluster)
        .set_tasks(Some(report.tasks.clone()))
        .include(TaskField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(described.tasks().len(), 23);
    for t in described.tasks() {
        assert_eq!(t.started_by(), Some(run_id.as_str()));
        assert_eq!(t.last_status(), Some("RUNNING"));
        let co = &t.overrides().unwrap().container_overrides()[0];
        assert_eq!(co.name(), Some("worker"));
        let got: Vec<(String, String)> = co
            .environment()
            .iter()
            .map(|kv| {
                (
                    kv.name().unwrap().to_string(),
                    kv.value().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, env);
        assert!(t
            .tags()
            .iter()
            .any(|tag| tag.key() == Some(RUN_ID_TAG) && tag.value() == Some(run_id.as_str())));
    }

    assert_eq!(
        fleet
            .list_run(&run_id)
            .await
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        started
    );
    let states = fleet.describe(&report.tasks).await.unwrap();
    assert_eq!(states.len(), 23);
    for (state, arn) in states.iter().zip(&report.tasks) {
        assert_eq!(&state.arn, arn);
        assert!(arn.ends_with(&format!("/{}", state.id)));
        assert_eq!(
            (state.last_status.as_str(), state.desired_status.as_str()),
            ("RUNNING", "RUNNING")
        );
    }

    fleet
        .stop(&report.tasks, "fleetload test: run over")
        .await
        .unwrap();
    let states = fleet
        .wait_stopped(&report.tasks, Duration::from_secs(30))
        .await
        .expect("every task stops");
    assert!(states.iter().all(|t| t.last_status == "STOPPED"
        && t.desired_status == "STOPPED"
        && t.stopped_reason.as_deref() == Some("fleetload test: run over")));
    // Stopped tasks are no longer part of the run as `launcher stop` sees it; stopping again is fine.
    assert!(fleet.list_run(&run_id).await.unwrap().is_empty());
    fleet.stop(&report.tasks[..2], "again").await.unwrap();
}

#[tokio::test]
async fn describe_goes_in_chunks_of_100() {
    let s = setup().await;
    let cfg = read_stack(&s.cfn, &s.stack).await.unwrap().ecs_config();
    let fleet = EcsFleet::new(s.ecs.clone(), cfg);
    let run_id = unique("moto105");
    let report = fleet
        .start(
            &run_id,
            &env(&run_id),
            105,
            Instant::now() + Duration::from_secs(120),
            &quiet,
        )
        .await
        .expect("105 tasks start");
    assert_eq!(report.calls.len(), 11);
    assert_eq!(report.calls.iter().sum::<u32>(), 105);
    let states = fleet.describe(&report.tasks).await.unwrap();
    assert_eq!(states.len(), 105);
    assert!(states
        .iter()
        .zip(&report.tasks)
        .all(|(s, a)| &s.arn == a && s.last_status == "RUNNING"));
    assert_eq!(fleet.list_run(&run_id).await.unwrap().len(), 105);
    fleet.stop(&report.tasks, "test over").await.unwrap();
    fleet
        .wait_stopped(&report.tasks, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test]
async fn oversized_overrides_fail_before_any_task_starts() {
    let s = setup().await;
    let cfg = read_stack(&s.cfn, &s.stack).await.unwrap().ecs_config();
    let fleet = EcsFleet::new(s.ecs.clone(), cfg);
    let run_id = unique("big");
    let mut env = env(&run_id);
    env.push(("FLEETLOAD_STAGES".into(), "ramp:1000@30s,".repeat(700)));
    let err = fleet
        .start(
            &run_id,
            &env,
            3,
            Instant::now() + Duration::from_secs(30),
            &quiet,
        )
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<OverridesTooLarge>().is_some(), "{err:#}");
    let msg = err.to_string();
    assert!(
        msg.contains("8192 bytes (8 KiB)") && msg.contains("FLEETLOAD_STAGES"),
        "{msg}"
    );
    assert!(moto_list(&s, &run_id).await.is_empty());
}

#[tokio::test]
async fn a_missing_stack_or_output_is_one_clear_error() {
    let sdk = sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);

    let name = unique("no-such-stack");
    let err = read_stack(&cfn, &name).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<StackError>(),
            Some(StackError::NotFound { .. })
        ),
        "{err:#}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("was not found in region us-east-1"),
        "{msg}"
    );
    assert!(msg.contains("cloudformation/fleetload.yaml"), "{msg}");

    // A stack that is not the project's: only a cluster and one output.
    let name = unique("other-stack");
    let body = json!({
        "Resources": { "Cluster": { "Type": "AWS::ECS::Cluster" } },
        "Outputs": { "ClusterName": { "Value": { "Ref": "Cluster" } }, "LaunchType": { "Value": "FARGATE" } }
    });
    cfn.create_stack()
        .stack_name(&name)
        .template_body(body.to_string())
        .send()
        .await
        .unwrap();
    let err = read_stack(&cfn, &name).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "CloudFormation stack {name:?} (status CREATE_COMPLETE) has no output TaskDefinitionArn, \
             ContainerName, SubnetIds, SecurityGroupIds, ReportBucket, ReportUrl"
        )),
        "{msg}"
    );
    assert!(msg.contains("cloudformation/fleetload.yaml"), "{msg}");
}
