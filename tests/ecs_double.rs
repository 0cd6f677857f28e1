//! The ECS fleet against an ECS double on loopback: placement failures, throttling, server
//! errors, deadlines and fatal refusals — what moto cannot produce.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::Credentials;
use fleetload::launcher::fleet::ecs::{
    EcsConfig, EcsFleet, NotStopped, OverridesTooLarge, StartError, StartProgress, StartStop,
    OVERRIDES_MAX_BYTES,
};
use fleetload::model::backoff::Backoff;
use fleetload_testkit::ecs::{EcsDouble, RunTaskReply, INSTANCE_ARN, LIST_PAGE};

const CAPACITY: &str =
    "Capacity is unavailable at this time. Please try again later or in a different availability zone";

async fn fleet(double: &EcsDouble, cfg: EcsConfig) -> EcsFleet {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&double.url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    EcsFleet::new(aws_sdk_ecs::Client::new(&sdk), cfg)
        .with_backoff(Backoff::equal(
            Duration::from_millis(5),
            Duration::from_millis(40),
        ))
        .with_poll_interval(Duration::from_millis(20))
}

fn fargate() -> EcsConfig {
    EcsConfig {
        cluster: "double".into(),
        task_definition: "fleetload-worker:1".into(),
        container: "worker".into(),
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: true,
        launch_type: Some("FARGATE".into()),
        capacity_providers: Vec::new(),
        platform_version: Some("1.4.0".into()),
    }
}

fn env(run_id: &str) -> Vec<(String, String)> {
    vec![
        ("FLEETLOAD_RUN_ID".into(), run_id.into()),
        ("FLEETLOAD_START_AT".into(), "2030-01-01T00:00:00Z".into()),
        ("FLEETLOAD_REPORT_URL".into(), "s3://bucket/runs".into()),
        ("FLEETLOAD_TARGET".into(), "null".into()),
    ]
}

fn quiet(_: &StartProgress) {}

fn start_error(e: anyhow::Error) -> StartError {
    match e.downcast::<StartError>() {
        Ok(e) => e,
        Err(e) => panic!("expected a StartError, got: {e:#}"),
    }
}

#[tokio::test]
async fn failures_and_throttling_are_retried_until_every_task_runs() {
    let double = EcsDouble::start(
        vec![
            RunTaskReply::partial(7, "RESOURCE:MEMORY"),
            RunTaskReply::error(400, "ThrottlingException", "Rate exceeded"),
            RunTaskReply::error(500, "ServerException", "Service unavailable"),
        ],
        RunTaskReply::all(),
    )
    .await;
    let fleet = fleet(&double, fargate()).await;
    let seen = Mutex::new(Vec::new());
    let on_progress = |p: &StartProgress| seen.lock().unwrap().push(p.clone());
    let deadline = Instant::now() + Duration::from_secs(20);

    let report = fleet
        .start("run-retry", &env("run-retry"), 13, deadline, &on_progress)
        .await
        .expect("all 13 tasks start");

    assert_eq!(report.tasks.len(), 13);
    assert_eq!(report.tasks.iter().collect::<BTreeSet<_>>().len(), 13);
    assert_eq!(report.tasks, double.started());
    // 10 asked, 7 placed; the 6 missing asked again: throttled, server error, then placed.
    assert_eq!(report.calls, vec![10, 6, 6, 6]);
    assert_eq!(report.throttled, 2);
    assert_eq!(
        report.failures,
        vec![("RESOURCE:MEMORY".to_string(), INSTANCE_ARN.to_string(), 3)]
    );
    assert!(report
        .last_error
        .as_deref()
        .unwrap()
        .contains("ServerException"));

    let seen = seen.into_inner().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((last.started, last.requested, last.calls), (13, 13, 4));
    assert!(seen.iter().any(|p| p
        .retrying
        .as_ref()
        .is_some_and(|(_, why)| why.contains("RESOURCE:MEMORY"))));
    assert!(seen.iter().any(|p| p
        .retrying
        .as_ref()
        .is_some_and(|(_, why)| why.contains("ThrottlingException"))));

    // What went on the wire.
    let calls = double.requests("RunTask");
    assert_eq!(calls.len(), 4);
    let first = &calls[0];
    assert_eq!(first["cluster"], "double");
    assert_eq!(first["taskDefinition"], "fleetload-worker:1");
    assert_eq!(first["count"], 10);
    assert_eq!(first["startedBy"], "run-retry");
    assert_eq!(first["launchType"], "FARGATE");
    assert_eq!(first["platformVersion"], "1.4.0");
    assert_eq!(first["enableECSManagedTags"], true);
    assert_eq!(first["propagateTags"], "TASK_DEFINITION");
    assert_eq!(
        first["tags"],
        serde_json::json!([{"key": "fleetload:run-id", "value": "run-retry"}])
    );
    assert_eq!(
        first["networkConfiguration"]["awsvpcConfiguration"],
        serde_json::json!({"subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-1"], "assignPublicIp": "ENABLED"})
    );
    let co = &first["overrides"]["containerOverrides"];
    assert_eq!(co[0]["name"], "worker");
    assert_eq!(
        co[0]["environment"][0],
        serde_json::json!({"name": "FLEETLOAD_RUN_ID", "value": "run-retry"})
    );
    assert_eq!(co[0]["environment"].as_array().unwrap().len(), 4);
    assert!(first.get("capacityProviderStrategy").is_none());
    // A retried request goes with the same client token (no double start if an answer was
    // lost); a request for the missing tasks is a new one.
    let token = |i: usize| calls[i]["clientToken"].as_str().unwrap().to_string();
    assert_ne!(token(0), token(1));
    assert_eq!(token(1), token(2));
    assert_eq!(token(2), token(3));
    assert!(double.stopped().is_empty());
}

#[tokio::test]
async fn capacity_that_never_comes_fails_at_the_deadline_and_stops_what_started() {
    let double = EcsDouble::start(
        vec![RunTaskReply::all()],
        RunTaskReply::partial(0, CAPACITY),
    )
    .await;
    let mut cfg = fargate();
    cfg.launch_type = None;
    cfg.platform_version = None;
    cfg.capacity_providers = vec![
        "FARGATE_SPOT:3".parse().unwrap(),
        "FARGATE:1:1".parse().unwrap(),
    ];
    let fleet = fleet(&double, cfg).await;
    let began = Instant::now();
    let deadline = began + Duration::from_millis(400);

    let err = fleet
        .start("run-spot", &env("run-spot"), 12, deadline, &quiet)
        .await
        .unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "bounded by the deadline"
    );
    let msg = format!("{err:#}");
    let err = start_error(err);
    assert_eq!(err.cause, StartStop::Deadline);
    assert_eq!(err.report.tasks.len(), 10);
    assert_eq!(err.report.missing(), 2);
    assert_eq!(err.report.calls[0], 10);
    assert!(err.report.calls.len() >= 3, "{:?}", err.report.calls);
    assert!(
        err.report.calls[1..].iter().all(|&n| n == 2),
        "{:?}",
        err.report.calls
    );
    let (reason, at, n) = &err.report.failures[0];
    assert_eq!((reason.as_str(), at.as_str()), (CAPACITY, ""));
    assert_eq!(*n as usize, 2 * (err.report.calls.len() - 1));
    // The message says what could not start and why, and what became of the rest.
    assert!(
        msg.contains("run run-spot: 2 of 12 ECS tasks could not start before the start deadline"),
        "{msg}"
    );
    assert!(msg.contains(CAPACITY), "{msg}");
    assert!(
        msg.contains("the 10 tasks that had started were stopped"),
        "{msg}"
    );
    assert_eq!(err.cleanup, Ok(()));
    assert_eq!(double.stopped(), double.started().into_iter().collect());

    let wire = &double.requests("RunTask")[0];
    assert_eq!(
        wire["capacityProviderStrategy"],
        serde_json::json!([
            {"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 0},
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1}
        ])
    );
    assert!(wire.get("launchType").is_none());
}

#[tokio::test]
async fn refusals_that_retrying_cannot_cure_stop_at_once() {
    // A missing cluster: one call, nothing started.
    let double = EcsDouble::start(
        vec![RunTaskReply::error(
            400,
            "ClusterNotFoundException",
            "Cluster not found.",
        )],
        RunTaskReply::all(),
    )
    .await;
    let fleet = fleet(&double, fargate()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = fleet
        .start("run-fatal", &env("run-fatal"), 5, deadline, &quiet)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    let err = start_error(err);
    assert!(matches!(err.cause, StartStop::Fatal(_)));
    assert_eq!(err.report.calls, vec![5]);
    assert!(
        msg.contains("ClusterNotFoundException: Cluster not found."),
        "{msg}"
    );
    assert!(msg.contains("--cluster \"double\""), "{msg}");
    assert!(msg.contains("5 of 5 ECS tasks could not start"), "{msg}");

    // A placement failure that is about the configuration: the tasks that did start are stopped.
    let double = EcsDouble::start(
        vec![RunTaskReply::all(), RunTaskReply::partial(0, "ATTRIBUTE")],
        RunTaskReply::all(),
    )
    .await;
    let fleet = self::fleet(&double, fargate()).await;
    let err = fleet
        .start("run-attr", &env("run-attr"), 15, deadline, &quiet)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    let err = start_error(err);
    assert_eq!(err.report.calls, vec![10, 5]);
    assert!(
        msg.contains("placement failure ATTRIBUTE cannot be cured by retrying"),
        "{msg}"
    );
    assert!(
        msg.contains("the 10 tasks that had started were stopped"),
        "{msg}"
    );
    assert_eq!(double.stopped().len(), 10);
}

#[tokio::test]
async fn bad_input_fails_before_any_call() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    let fleet = fleet(&double, fargate()).await;
    let deadline = Instant::now() + Duration::from_secs(30);

    let mut big = env("run-big");
    big.push(("FLEETLOAD_STAGES".into(), "100@1s,".repeat(1200)));
    let err = fleet
        .start("run-big", &big, 3, deadline, &quiet)
        .await
        .unwrap_err();
    let too_large = err
        .downcast_ref::<OverridesTooLarge>()
        .expect("OverridesTooLarge");
    assert!(too_large.size > OVERRIDES_MAX_BYTES);
    assert_eq!(too_large.largest[0].0, "FLEETLOAD_STAGES");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{} bytes", too_large.size)), "{msg}");
    assert!(
        msg.contains("8192 bytes (8 KiB)") && msg.contains("FLEETLOAD_STAGES ("),
        "{msg}"
    );

    let err = fleet
        .start("run.with.dots", &env("x"), 3, deadline, &quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("startedBy"), "{err}");

    let mut cfg = fargate();
    cfg.subnets.clear();
    cfg.security_groups.clear();
    let no_subnets = self::fleet(&double, cfg).await;
    let err = no_subnets
        .start("run-net", &env("run-net"), 3, deadline, &quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--subnets"), "{err}");

    assert!(double.requests("RunTask").is_empty());
}

#[tokio::test]
async fn describe_stop_wait_and_list_respect_the_api_limits() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    let fleet = fleet(&double, fargate()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = fleet
        .start("run-105", &env("run-105"), 105, deadline, &quiet)
        .await
        .unwrap();
    assert_eq!(report.calls, [vec![10; 10], vec![5]].concat());

    // DescribeTasks takes at most 100 tasks: 2 calls, states in the order asked.
    let states = fleet.describe(&report.tasks).await.unwrap();
    let sizes: Vec<usize> = double
        .requests("DescribeTasks")
        .iter()
        .map(|b| b["tasks"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 5]);
    assert_eq!(states.len(), 105);
    assert!(states
        .iter()
        .zip(&report.tasks)
        .all(|(s, arn)| &s.arn == arn && arn.ends_with(&s.id)));
    assert!(states
        .iter()
        .all(|s| s.last_status == "RUNNING" && s.started_at.is_some()));

    // ListTasks pages through every task of the run.
    let listed = fleet.list_run("run-105").await.unwrap();
    assert_eq!(listed, report.tasks);
    let pages = double.requests("ListTasks");
    assert_eq!(pages.len(), 105usize.div_ceil(LIST_PAGE));
    assert_eq!(pages[0]["startedBy"], "run-105");
    assert_eq!(pages[0]["desiredStatus"], "RUNNING");

    // Not stopped yet: wait_stopped gives up at its timeout and names what is still up.
    let some = report.tasks[..3].to_vec();
    let err = fleet
        .wait_stopped(&some, Duration::from_millis(100))
        .await
        .unwrap_err();
    let not_stopped = err.downcast_ref::<NotStopped>().expect("NotStopped");
    assert_eq!(not_stopped.not_stopped.len(), 3);
    assert!(
        err.to_string()
            .starts_with("3 of 3 ECS tasks had not stopped after 100ms"),
        "{err}"
    );

    // Stop everything; a task ECS no longer knows counts as stopped.
    let mut with_gone = report.tasks.clone();
    with_gone.push("arn:aws:ecs:us-east-1:123456789012:task/double/gone".into());
    fleet.stop(&with_gone, "test over").await.unwrap();
    assert_eq!(double.stopped().len(), 105);
    assert_eq!(double.requests("StopTask")[0]["reason"], "test over");
    let states = fleet
        .wait_stopped(&with_gone, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(states[..105].iter().all(|s| s.last_status == "STOPPED"
        && s.container_exit_code == Some(0)
        && s.stop_code.as_deref() == Some("UserInitiated")
        && s.stopped_at.is_some()));
    assert_eq!(states[105].last_status, "MISSING");
    assert!(fleet.list_run("run-105").await.unwrap().is_empty());
}
