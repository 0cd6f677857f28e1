//! The ECS fleet against an ECS double on loopback: placement failures, throttling, server
//! errors, deadlines and fatal refusals — what moto cannot produce — and `launcher run` through
//! the binary against it: no task is left running when watching fails, when Ctrl-C lands in the
//! middle of the RunTask fan-out, and Ctrl-C after the fleet phase ends the launcher.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::Credentials;
use fleetload::launcher::fleet::ecs::{
    EcsConfig, EcsFleet, NotStopped, OverridesTooLarge, StartError, StartProgress, StartStop,
    OVERRIDES_MAX_BYTES,
};
use fleetload::model::backoff::Backoff;
use fleetload_testkit::ecs::{EcsDouble, Failure, RunTaskReply, INSTANCE_ARN, LIST_PAGE};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

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

#[tokio::test]
async fn watch_calls_are_retried_through_transient_errors_and_give_up_when_they_persist() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    let fleet = fleet(&double, fargate()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = fleet
        .start("run-watch", &env("run-watch"), 3, deadline, &quiet)
        .await
        .unwrap();
    assert_eq!(fleet.started_tasks(), report.tasks);

    // Throttled twice, then answered: the caller sees the answer.
    double.fail("DescribeTasks", Failure::throttling().times(2));
    let states = fleet.describe(&report.tasks).await.unwrap();
    assert!(states.iter().all(|s| s.last_status == "RUNNING"));
    assert_eq!(double.requests("DescribeTasks").len(), 3);

    // A server error on StopTask, then accepted: every task stopped.
    double.fail(
        "StopTask",
        Failure {
            status: 500,
            kind: "ServerException".into(),
            message: "Service unavailable".into(),
            ..Failure::throttling()
        }
        .times(2),
    );
    fleet.stop(&report.tasks[..1], "first").await.unwrap();
    assert_eq!(double.requests("StopTask").len(), 3);

    // Throttling that never ends: given up after the retry time, saying so.
    let impatient = fleet.clone().with_retry_for(Duration::from_millis(300));
    double.fail("DescribeTasks", Failure::throttling());
    let began = Instant::now();
    let err = impatient.describe(&report.tasks).await.unwrap_err();
    assert!(began.elapsed() < Duration::from_secs(5));
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with(
            "DescribeTasks on cluster double failed: ThrottlingException: Rate exceeded (HTTP 400) \
             (still failing after"
        ),
        "{msg}"
    );

    // A refusal is not retried.
    let before = double.requests("StopTask").len();
    double.fail("StopTask", Failure::access_denied());
    let err = impatient.stop(&report.tasks, "again").await.unwrap_err();
    assert_eq!(double.requests("StopTask").len(), before + 3);
    assert!(
        format!("{err:#}").contains("StopTask failed for 3 of 3 tasks on cluster double"),
        "{err:#}"
    );
    assert!(
        format!("{err:#}").contains("AccessDeniedException"),
        "{err:#}"
    );

    // An eventually consistent ListTasks does not show tasks just started.
    double.list_lag(Duration::from_secs(600));
    assert!(fleet.list_run("run-watch").await.unwrap().is_empty());
}

/// `launcher run` on the ECS backend, every AWS call going to the double; the null target.
fn launcher_ecs(double: &EcsDouble, run_id: &str, tasks: u32, extra: &[&str]) -> Command {
    launcher_ecs_to(double, run_id, tasks, &["--target", "null"], extra)
}

/// `launcher run` on the ECS backend with the target flags `target`.
fn launcher_ecs_to(
    double: &EcsDouble,
    run_id: &str,
    tasks: u32,
    target: &[&str],
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let tasks = tasks.to_string();
    cmd.args([
        "run",
        "--backend",
        "ecs",
        "--cluster",
        "double",
        "--task-definition",
        "fleetload-worker:1",
        "--subnets",
        "subnet-a",
        "--launch-type",
        "FARGATE",
        "--rate",
        "10",
        "--report-url",
        "s3://bucket/runs",
        "--run-id",
        run_id,
        "--tasks",
        &tasks,
    ])
    .args(target)
    .args(extra)
    .env("AWS_ENDPOINT_URL", &double.url)
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Waits for the launcher to exit, at most `limit`; its exit code and what it printed.
async fn finish(child: tokio::process::Child, limit: Duration) -> (Option<i32>, String) {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the launcher did not exit within {limit:?}"))
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sigint(child: &tokio::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("running") as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the launcher");
}

/// Polls `cond` every 50 ms for at most `limit`.
async fn until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let began = Instant::now();
    while !cond() {
        assert!(began.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_tasks_failing_mid_run_stops_every_started_task_and_exits_3() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    // The first DescribeTasks (right after the start) is answered; every later one refused.
    double.fail("DescribeTasks", Failure::access_denied().after(1));
    let child = launcher_ecs(
        &double,
        "run-lost",
        12,
        &["--duration", "60s", "--start-delay", "30s"],
    )
    .spawn()
    .unwrap();
    let (code, screen) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(3), "{screen}");
    assert_eq!(double.started().len(), 12);
    assert!(double.running().is_empty(), "tasks left running:\n{screen}");
    assert_eq!(
        double.stopped(),
        double.started().into_iter().collect::<BTreeSet<_>>()
    );
    let last = screen.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "launcher: run run-lost: DescribeTasks on cluster double failed: AccessDeniedException"
        ),
        "{screen}"
    );
    assert!(last.contains("12 task(s)"), "{screen}");
    assert!(
        screen.contains("stopping every task this launcher started (12)"),
        "{screen}"
    );
    // Nothing was merged: the fleet phase never ended normally.
    assert!(!screen.contains("fleet phase over"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_describe_tasks_errors_are_retried_and_the_fleet_phase_completes() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    double.end_tasks_after(Duration::from_secs(2));
    double.fail("DescribeTasks", Failure::throttling().after(1).times(2));
    let child = launcher_ecs(
        &double,
        "run-blip",
        3,
        &["--duration", "1s", "--start-delay", "1s"],
    )
    .spawn()
    .unwrap();
    let (code, screen) = finish(child, Duration::from_secs(90)).await;
    assert!(
        screen.contains("fleet phase over: merging the reports of run run-blip"),
        "{screen}"
    );
    // The double answers ECS only, so the merge that follows cannot list the report store it
    // was given (s3://bucket, at the double): it names the store and exits 2, as for any store
    // that cannot be read. The fleet phase itself did not fail (that would be 3).
    assert_eq!(code, Some(2), "{screen}");
    assert!(
        screen.contains("could not list the task reports under s3://bucket/runs/run-blip/tasks/"),
        "{screen}"
    );
    assert!(double.requests("DescribeTasks").len() >= 4, "{screen}");
    assert!(double.requests("StopTask").is_empty(), "{screen}");
    assert!(!screen.contains("stopping every task"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_fan_out_stops_every_task_started() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    // The first RunTask (10 tasks) is answered at once; the second (2 tasks) starts its tasks
    // but answers only after 3 s: the signal lands while it is in flight. ListTasks does not
    // show any task yet (eventually consistent): only the ARNs RunTask returns can stop them.
    double.delay_run_task(1, Duration::from_secs(3));
    double.list_lag(Duration::from_secs(600));
    let child = launcher_ecs(
        &double,
        "run-fanout",
        12,
        &["--duration", "60s", "--start-delay", "60s"],
    )
    .spawn()
    .unwrap();
    until(Duration::from_secs(30), "both RunTask calls arrive", || {
        double.started().len() == 12
    })
    .await;
    sigint(&child);
    let (code, screen) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, Some(3), "{screen}");
    assert!(double.running().is_empty(), "tasks left running:\n{screen}");
    assert_eq!(
        double.stopped(),
        double.started().into_iter().collect::<BTreeSet<_>>()
    );
    // Each task stopped once, by the ARNs RunTask returned, the call in flight's included.
    assert_eq!(
        double.requests("RunTask").len(),
        2,
        "no call after the signal"
    );
    assert_eq!(double.requests("StopTask").len(), 12, "{screen}");
    assert!(
        screen.contains("SIGINT while starting: letting the RunTask call in flight finish"),
        "{screen}"
    );
    assert!(
        screen.contains("stopping the 12 task(s) of run run-fanout started so far"),
        "{screen}"
    );
    assert!(
        screen.contains("stopped 12 task(s) of run run-fanout; DescribeTasks confirms STOPPED"),
        "{screen}"
    );
    assert!(
        screen.contains("stopped by SIGINT before all tasks started"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_after_the_fleet_phase_ends_the_launcher() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    double.end_tasks_after(Duration::from_secs(1));
    // The merge reads S3 at the same endpoint: held, so the launcher sits in the merge.
    double.hold_other_requests(Duration::from_secs(120));
    let mut child = launcher_ecs(
        &double,
        "run-after",
        2,
        &["--duration", "1s", "--start-delay", "1s"],
    )
    .spawn()
    .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("fleet phase over") {
                return;
            }
        }
        panic!("the launcher ended before its fleet phase did:\n{seen}");
    })
    .await
    .unwrap_or_else(|_| panic!("no end of the fleet phase within 60 s:\n{seen}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigint(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("Ctrl-C after the fleet phase ends the launcher")
        .unwrap();
    let rest = stderr.next_line().await.ok().flatten().unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(
        rest.contains("SIGINT after the fleet phase: exiting"),
        "{seen}{rest}"
    );
}

/// The environment RunTask request `request` gives the worker container, by name.
fn overrides_env(request: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    request["overrides"]["containerOverrides"][0]["environment"]
        .as_array()
        .expect("container overrides with an environment")
        .iter()
        .map(|kv| {
            (
                kv["name"].as_str().unwrap().to_string(),
                kv["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_tasks_start_with_their_own_overrides_and_stop_on_ctrl_c() {
    let double = EcsDouble::start(Vec::new(), RunTaskReply::all()).await;
    // Producers: RunTask for 10, then 2; each consumer its own call of 1 (its place among the
    // consumers is its own override). The last call answers after 3 s: Ctrl-C lands while it
    // is in flight, and its task is stopped with the others.
    double.delay_run_task(3, Duration::from_secs(3));
    double.list_lag(Duration::from_secs(600));
    // Producers to a Kinesis stream: the double runs nothing, the launcher validates it all.
    let mut cmd = launcher_ecs_to(
        &double,
        "run-e2e",
        12,
        &["--target", "kinesis", "--stream", "input"],
        &[
            "--duration",
            "60s",
            "--start-delay",
            "60s",
            "--consumers",
            "2",
            "--consume-from",
            "kinesis:enriched",
            "--consumer-env",
            "FLEETLOAD_SETTLE=45s",
        ],
    );
    let child = cmd.spawn().unwrap();
    until(
        Duration::from_secs(30),
        "all four RunTask calls arrive",
        || double.started().len() == 14,
    )
    .await;
    sigint(&child);
    let (code, screen) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, Some(3), "{screen}");

    let calls = double.requests("RunTask");
    let counts: Vec<u64> = calls.iter().map(|c| c["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [10, 2, 1, 1], "{screen}");
    let envs: Vec<_> = calls.iter().map(overrides_env).collect();
    for producers in &envs[..2] {
        assert_eq!(
            producers.get("FLEETLOAD_TRACE").map(String::as_str),
            Some("on")
        );
        assert_eq!(
            producers.get("FLEETLOAD_TARGET").map(String::as_str),
            Some("kinesis")
        );
        assert_eq!(
            producers.get("FLEETLOAD_STREAM").map(String::as_str),
            Some("input")
        );
        assert!(!producers.contains_key("FLEETLOAD_ROLE"), "{producers:?}");
        assert!(
            !producers.contains_key("FLEETLOAD_CONSUMER"),
            "{producers:?}"
        );
    }
    for (i, consumer) in envs[2..].iter().enumerate() {
        let want = [
            ("FLEETLOAD_ROLE", "consume".to_string()),
            ("FLEETLOAD_CONSUMER", format!("{i}/2")),
            ("FLEETLOAD_TARGET", "kinesis".to_string()),
            ("FLEETLOAD_STREAM", "enriched".to_string()),
            ("FLEETLOAD_SETTLE", "45s".to_string()),
        ];
        for (k, v) in want {
            assert_eq!(
                consumer.get(k),
                Some(&v),
                "{k} of consumer {i}: {consumer:?}"
            );
        }
        assert!(!consumer.contains_key("FLEETLOAD_TRACE"), "{consumer:?}");
        // The run, its start instant, its schedule and its reports are the producers'.
        for shared in [
            "FLEETLOAD_RUN_ID",
            "FLEETLOAD_START_AT",
            "FLEETLOAD_DURATION",
            "FLEETLOAD_RATE",
            "FLEETLOAD_REPORT_URL",
        ] {
            assert_eq!(consumer.get(shared), envs[0].get(shared), "{shared}");
        }
        assert_eq!(calls[2 + i]["startedBy"], "run-e2e");
    }

    // Ctrl-C stops the consumers like the producers, by the ARNs RunTask returned.
    assert!(double.running().is_empty(), "tasks left running:\n{screen}");
    assert_eq!(
        double.stopped(),
        double.started().into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(double.requests("StopTask").len(), 14, "{screen}");
    assert!(
        screen.contains("stopped 14 task(s) of run run-e2e; DescribeTasks confirms STOPPED"),
        "{screen}"
    );
    assert!(
        screen.contains("2 consumer task(s) ← kinesis stream enriched"),
        "{screen}"
    );
}
