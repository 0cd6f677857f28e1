//! `launcher run` and `launcher stop`: a resolved [`RunPlan`] driven through a fleet backend, then
//! the merge and the verdict that every run ends with.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::launcher::cli::{RunArgs, StopArgs};
use crate::launcher::exit::{ExitStatus, FleetFailed};
use crate::launcher::fleet::ecs::{self, EcsConfig, EcsFleet, TaskGroup};
use crate::launcher::fleet::embedded::{
    EmbeddedBroker, EMBEDDED_CONSUMER_DEFAULTS, EMBEDDED_DEFAULT_RATE,
};
use crate::launcher::fleet::local::TaskSpec;
use crate::launcher::fleet::stack::{read_stack, StackOutputs};
use crate::launcher::fleet::{local, RunOutcome, TaskEnd};
use crate::launcher::gate::{self, Threshold};
use crate::launcher::live::{Labels, LiveSettings, LiveWatch};
use crate::launcher::merge::merge_run;
use crate::launcher::plan::{
    absolute_report_url, ecs_source, BackendPlan, ConsumerPlan, EcsSource, RunPlan, WorkerEnv,
    DEFAULT_REPORT_URL,
};
use crate::launcher::progress::{print_plan, ConsumersShown, Display};
use crate::launcher::signals::StopRequest;
use crate::launcher::verdict::{verdict, Gate};
use crate::launcher::{compare, cost};
use crate::model::live::LiveRecord;
use crate::model::report::{LiveReport, Summary};
use crate::model::report_url::ReportUrl;
use crate::model::scenario::Scenario;
use crate::model::target::TargetConfig;
use crate::store::ReportStore;
use crate::worker::sink::Files;
use crate::worker::DRAIN_TIMEOUT;

/// Beyond the run's end and the workers' drain, how long tasks get to store their reports
/// before the launcher stops them.
pub const REPORT_GRACE: Duration = Duration::from_secs(45);

/// After a stop request during the start, how long the RunTask call in flight may take to
/// answer, so that the tasks it started are known by their ARNs and stopped.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

/// Interval between DescribeTasks polls while an ECS run is watched.
const WATCH_POLL: Duration = Duration::from_secs(5);

/// How long the launcher waits for stopped ECS tasks to reach STOPPED (ECS's stop timeout is
/// 30 s by default, at most 120 s).
const STOP_CONFIRM_TIMEOUT: Duration = Duration::from_secs(180);

/// `launcher run`: start the fleet, wait for it, merge, gate.
pub async fn run_command(args: &RunArgs) -> anyhow::Result<ExitStatus> {
    // Thresholds are checked before any task starts: a typo must not cost a fleet.
    let thresholds = gate::parse_all(&args.gate.thresholds)?;
    if let Some(path) = &args.gate.junit {
        gate::check_junit_path(path)?;
    }
    let plan = RunPlan::try_from(args)?;
    if plan.live.abort.is_some() && !thresholds.iter().any(|t| t.metric.judged_live()) {
        anyhow::bail!(
            "--abort-on-fail: none of the --threshold expressions can be judged while the run \
             runs; accepted: at least one of rate, error_rate, throttled, a latency percentile \
             (p50 … max), e2e_p50 … e2e_max or lost (counts over the whole run, service time and \
             duplicates are judged at the end only)"
        );
    }
    let prices = cost::Prices::load(args.cost.prices.as_deref(), &args.cost.price)?;
    // The baseline is read before any task starts: a run must not be spent to find it missing.
    let baseline = compare::Baseline::of_gate(&args.gate, &thresholds).await?;
    let outcome = match &plan.backend {
        BackendPlan::Local => run_local(&plan, &thresholds).await?,
        BackendPlan::Ecs(source) => run_ecs(&plan, source, &thresholds).await?,
    };
    // The run's stop request is dropped by now: a Ctrl-C from here on ends the launcher.
    eprintln!(
        "fleet phase over: merging the reports of run {}",
        outcome.run_id
    );
    let store = ReportStore::open(&outcome.report_url).await?;
    let mut merged = merge_run(
        &store,
        &outcome.run_id,
        Some(outcome.task_ids.clone()),
        Some(outcome.tasks_requested),
    )
    .await?;
    if let Some(live) = &outcome.live {
        apply_live(&mut merged.summary, live);
    }
    let backend = match plan.backend {
        BackendPlan::Local => "local",
        BackendPlan::Ecs(_) => "ecs",
    };
    let usage = cost::RunUsage::collect(
        backend,
        outcome.ecs_usage.clone(),
        outcome.usage_notes.clone(),
        |name| plan.env.get(name).map(str::to_string),
        backend == "ecs" || matches!(store, crate::store::ReportStore::S3 { .. }),
    )
    .await;
    cost::attach(
        &store,
        &outcome.run_id,
        &mut merged,
        Some(usage),
        &prices,
        baseline.is_some(),
    )
    .await;
    verdict(
        &store,
        &outcome.run_id,
        &merged,
        &Gate {
            thresholds: &thresholds,
            junit: args.gate.junit.as_deref(),
            open: args.gate.open,
            baseline: baseline.as_ref(),
        },
        &outcome.problems,
    )
    .await
}

/// Fixes the run's start instant `start_delay` from now and puts it in the environment of the
/// producers and of the consumers (`consumers`, when the run has them).
fn fix_start(
    env: &mut WorkerEnv,
    consumers: Option<&mut Consumers>,
    start_delay: Duration,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let start_at = Utc::now() + chrono::Duration::from_std(start_delay)?;
    let text = start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    env.set("FLEETLOAD_START_AT", &text);
    if let Some(c) = consumers {
        c.env.set("FLEETLOAD_START_AT", &text);
    }
    Ok(start_at)
}

/// A run's consumer tasks, resolved by the backend: their plan, their shared environment and
/// their validated scenario.
struct Consumers<'a> {
    plan: &'a ConsumerPlan,
    env: WorkerEnv,
    scenario: Scenario,
}

impl<'a> Consumers<'a> {
    /// The consumers of `plan`, their environment derived from the producers' `env` (complete
    /// but for the start instant) and validated: exit 2 before any task starts.
    /// `defaults(env)` gives variables the consumers get unless they were given (the embedded
    /// broker's, when they read it).
    fn resolve(
        plan: &'a RunPlan,
        env: &WorkerEnv,
        files: Files,
        defaults: impl Fn(&WorkerEnv) -> &'static [(&'static str, &'static str)],
    ) -> anyhow::Result<Option<Self>> {
        let Some(c) = &plan.consumers else {
            return Ok(None);
        };
        let mut cenv = c.env(env)?;
        for (k, v) in defaults(&cenv) {
            if cenv.get(k).is_none() {
                cenv.set(k, v);
            }
        }
        let scenario = c.validate(&cenv, files)?;
        Ok(Some(Consumers {
            plan: c,
            env: cenv,
            scenario,
        }))
    }

    /// How long past the producers' planned end the consumers read.
    fn settle(consumers: &Option<Self>) -> Duration {
        consumers
            .as_ref()
            .map_or(Duration::ZERO, |c| c.scenario.end_to_end.settle)
    }

    fn shown(&self) -> ConsumersShown<'_> {
        ConsumersShown {
            count: self.plan.count,
            scenario: &self.scenario,
        }
    }
}

/// When a run's tasks are stopped if still running: after the start delay, the producers'
/// `duration`, their drain or the consumers' `settle` (whichever is longer), and the time to
/// store the reports.
fn fleet_deadline(start_delay: Duration, duration: Duration, settle: Duration) -> Instant {
    Instant::now() + start_delay + duration + DRAIN_TIMEOUT.max(settle) + REPORT_GRACE
}

/// The live view of a run, when its windows are on: started at the run's start instant.
#[allow(clippy::too_many_arguments)]
async fn start_live(
    plan: &RunPlan,
    thresholds: &[Threshold],
    url: &ReportUrl,
    scenario: &Scenario,
    settle: Option<Duration>,
    start_at: chrono::DateTime<Utc>,
    display: &Display,
) -> anyhow::Result<Option<LiveWatch>> {
    let Some(interval) = plan.live.interval else {
        return Ok(None);
    };
    let store = ReportStore::open(url).await?;
    let destination = match &scenario.target {
        TargetConfig::Kinesis { stream, .. } => Some(("stream", stream.name().to_string())),
        TargetConfig::Kafka { topic, .. } => Some(("topic", topic.clone())),
        TargetConfig::Null => None,
    };
    let settings = LiveSettings {
        interval,
        production: scenario.profile.total_duration(),
        paced: !scenario.profile.is_unpaced(),
        settle,
        thresholds: thresholds.to_vec(),
        abort: plan.live.abort.clone(),
        metrics: plan.live.metrics.clone(),
        labels: Labels {
            run_id: plan.run_id.clone(),
            target: scenario.target.kind().to_string(),
            destination,
        },
    };
    Ok(Some(LiveWatch::start(
        store,
        &plan.run_id,
        start_at,
        settings,
        display.live_output(),
    )))
}

/// What the live view saw, in the merged summary: the abort, and the windows with stale tasks.
pub(crate) fn apply_live(summary: &mut Summary, live: &LiveRecord) {
    summary.aborted = live.aborted.clone();
    let report = summary.live.get_or_insert_with(|| LiveReport {
        interval_s: live.interval_s,
        ..LiveReport::default()
    });
    report.windows = live.windows.len() as u64;
    report.stale = live.stale_windows();
    report.metric_failures = live.metric_failures.clone();
}

async fn run_local(plan: &RunPlan, thresholds: &[Threshold]) -> anyhow::Result<RunOutcome> {
    let mut env = plan.env.clone();
    // No target: an embedded Kafka-protocol broker hosted here for the run.
    let embedded = if env.get("FLEETLOAD_TARGET").is_none() {
        let broker = EmbeddedBroker::start()?;
        for (k, v) in broker.worker_env() {
            env.set(k, &v);
        }
        if env.get("FLEETLOAD_RATE").is_none() && env.get("FLEETLOAD_STAGES").is_none() {
            env.set("FLEETLOAD_RATE", EMBEDDED_DEFAULT_RATE);
        }
        Some(broker)
    } else {
        None
    };
    let url = env
        .get("FLEETLOAD_REPORT_URL")
        .unwrap_or(DEFAULT_REPORT_URL)
        .to_string();
    let url = ReportUrl::parse(&url).map_err(|e| anyhow::anyhow!("--report-url: {e}"))?;
    let url = absolute_report_url(url)?;
    env.set("FLEETLOAD_REPORT_URL", &url.to_string());
    let scenario = env.validate(Files::Here)?;
    let mut consumers = Consumers::resolve(plan, &env, Files::Here, |cenv| match &embedded {
        Some(broker)
            if cenv.get("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS")
                == Some(&broker.bootstrap_servers()) =>
        {
            EMBEDDED_CONSUMER_DEFAULTS
        }
        _ => &[],
    })?;
    let start_at = fix_start(&mut env, consumers.as_mut(), plan.start_delay)?;

    let log_dir = match &url {
        ReportUrl::Local(dir) => dir.join(&plan.run_id).join("logs"),
        ReportUrl::S3 { .. } => PathBuf::from("fleetload-runs")
            .join(&plan.run_id)
            .join("logs"),
    };
    let duration = scenario.profile.total_duration();
    let settle = Consumers::settle(&consumers);
    print_plan(
        &plan.run_id,
        plan.tasks,
        &scenario,
        consumers.as_ref().map(Consumers::shown).as_ref(),
        &url,
        embedded.as_ref().map(EmbeddedBroker::bootstrap_servers),
        Some(&log_dir),
        start_at,
    );
    let consumer_count = consumers.as_ref().map_or(0, |c| c.plan.count);
    let (producer_ids, consumer_ids) = local::task_ids(plan.tasks, consumer_count);
    let mut specs: Vec<TaskSpec> = producer_ids
        .into_iter()
        .map(|id| TaskSpec {
            id,
            env: env.pairs().to_vec(),
            consumer: false,
        })
        .collect();
    if let Some(c) = &consumers {
        specs.extend(
            consumer_ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| TaskSpec {
                    id,
                    env: c.plan.task_env(&c.env, i as u32),
                    consumer: true,
                }),
        );
    }
    let deadline = fleet_deadline(plan.start_delay, duration, settle);
    let mut display =
        Display::with_consumers(plan.tasks, consumer_count, start_at, duration, settle);
    let live = start_live(
        plan,
        thresholds,
        &url,
        &scenario,
        consumers.as_ref().map(|_| settle),
        start_at,
        &display,
    )
    .await?;
    let mut stop = StopRequest::listen()?;
    if let Some(live) = &live {
        live.expect(specs.iter().map(|s| s.id.clone()).collect());
        stop = stop.with_abort(live.aborts());
    }
    let ends = local::run_tasks(&specs, &log_dir, deadline, &mut display, &mut stop).await;
    let live = match live {
        Some(live) => Some(live.finish().await),
        None => None,
    };
    display.finish();
    drop(embedded);
    let ends = ends?;
    let aborted = live.as_ref().is_some_and(|l| l.aborted.is_some());
    Ok(RunOutcome {
        run_id: plan.run_id.clone(),
        report_url: url,
        tasks_requested: plan.all_tasks() as u64,
        task_ids: ends.iter().map(|e| e.id.clone()).collect(),
        // Tasks the abort stopped ended as asked: not a problem of the fleet.
        problems: ends
            .iter()
            .filter(|e| !(aborted && e.interrupted))
            .filter_map(|e| e.problem.clone())
            .collect(),
        live,
        ecs_usage: Vec::new(),
        usage_notes: Vec::new(),
    })
}

/// The ECS client and configuration of `source`, reading the stack's outputs when it names one.
async fn connect_ecs(
    source: &EcsSource,
) -> anyhow::Result<(aws_sdk_ecs::Client, EcsConfig, Option<StackOutputs>)> {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    if shared.region().is_none() {
        anyhow::bail!(
            "no AWS region is configured for ECS: set AWS_REGION (or a profile with a region)"
        );
    }
    let ecs = aws_sdk_ecs::Client::new(&shared);
    match source {
        EcsSource::Flags(cfg) => Ok((ecs, cfg.clone(), None)),
        EcsSource::Stack(name) => {
            let outputs = read_stack(&aws_sdk_cloudformation::Client::new(&shared), name).await?;
            Ok((ecs, outputs.ecs_config(), Some(outputs)))
        }
    }
}

async fn run_ecs(
    plan: &RunPlan,
    source: &EcsSource,
    thresholds: &[Threshold],
) -> anyhow::Result<RunOutcome> {
    let run_id = &plan.run_id;
    let mut env = plan.env.clone();
    let (client, cfg, outputs) = connect_ecs(source).await?;
    if env.get("FLEETLOAD_REPORT_URL").is_none() {
        match &outputs {
            Some(o) => env.set("FLEETLOAD_REPORT_URL", &o.report_url),
            None => anyhow::bail!("ECS tasks need --report-url s3://bucket/prefix (or --stack, whose report bucket is used)"),
        }
    }
    if env.get("FLEETLOAD_TARGET").is_none() {
        anyhow::bail!("ECS tasks need a target: --target kinesis|kafka|null (the embedded broker exists only for local runs)");
    }
    let url = ReportUrl::parse(env.get("FLEETLOAD_REPORT_URL").unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("--report-url: {e}"))?;
    if !matches!(url, ReportUrl::S3 { .. }) {
        anyhow::bail!("--report-url {url}: ECS tasks cannot write to this machine's disk; accepted: s3://bucket/prefix");
    }
    let scenario = env.validate(Files::InTheTask)?;
    let mut consumers = Consumers::resolve(plan, &env, Files::InTheTask, |_| &[])?;
    ecs::validate_run_id(run_id)?;
    let start_at = fix_start(&mut env, consumers.as_mut(), plan.start_delay)?;
    let fleet = EcsFleet::new(client, cfg);
    // The producers share one environment (RunTask calls of up to 10 tasks); each consumer has
    // its own place among the consumers, so its own overrides and its own call.
    let mut groups = vec![TaskGroup {
        env: env.pairs().to_vec(),
        count: plan.tasks,
    }];
    if let Some(c) = &consumers {
        groups.extend((0..c.plan.count).map(|i| TaskGroup {
            env: c.plan.task_env(&c.env, i),
            count: 1,
        }));
    }
    // Every group's overrides within ECS's limit, before any task starts (exit 2).
    fleet.check_groups(run_id, &groups)?;

    print_plan(
        run_id,
        plan.tasks,
        &scenario,
        consumers.as_ref().map(Consumers::shown).as_ref(),
        &url,
        None,
        None,
        start_at,
    );
    let duration = scenario.profile.total_duration();
    let settle = Consumers::settle(&consumers);
    let consumer_count = consumers.as_ref().map_or(0, |c| c.plan.count);
    let mut display =
        Display::with_consumers(plan.tasks, consumer_count, start_at, duration, settle);
    let live = start_live(
        plan,
        thresholds,
        &url,
        &scenario,
        consumers.as_ref().map(|_| settle),
        start_at,
        &display,
    )
    .await?;
    let mut stop = StopRequest::listen()?;
    if let Some(live) = &live {
        stop = stop.with_abort(live.aborts());
    }
    // Start, unless a stop request comes first (then whatever started is stopped).
    let start_deadline = Instant::now() + plan.start_delay;
    let progress = |p: &ecs::StartProgress| {
        eprintln!(
            "starting: {}/{} tasks ({} RunTask calls, {} throttled, {} placement failures){}",
            p.started,
            p.requested,
            p.calls,
            p.throttled,
            p.failures,
            p.retrying
                .as_ref()
                .map(|(d, why)| format!("; retrying in {:.1}s: {why}", d.as_secs_f64()))
                .unwrap_or_default()
        )
    };
    let start = fleet.start_groups(run_id, &groups, start_deadline, &progress);
    tokio::pin!(start);
    let started = tokio::select! {
        r = &mut start => r,
        signal = stop.recv() => {
            // A RunTask call may be in flight: its tasks start whether or not its answer is
            // read, and ListTasks may not show them for a while. So no new call is made, the one
            // in flight is let finish (for a bounded time), and every ARN RunTask returned is
            // stopped; ListTasks (by startedBy) is only a second net.
            display.note(&format!(
                "{signal} while starting: letting the RunTask call in flight finish, then \
                 stopping every task started"
            ));
            fleet.halt_start();
            if tokio::time::timeout(IN_FLIGHT_GRACE, &mut start).await.is_err() {
                display.note(&format!(
                    "RunTask did not answer within {}s: stopping the tasks known so far",
                    IN_FLIGHT_GRACE.as_secs()
                ));
            }
            let known = fleet.started_tasks();
            display.note(&format!(
                "stopping the {} task(s) of run {run_id} started so far",
                known.len()
            ));
            let reason = format!("fleetload: launcher received {signal} while starting");
            let stopped = stop_everything(&fleet, run_id, &known, &reason, &display).await;
            return Err(FleetFailed(format!(
                "run {run_id} was stopped by {signal} before all tasks started; {}",
                stopped_text(run_id, &stopped)
            ))
            .into());
        }
    };
    let report = match started {
        Ok(report) => report,
        Err(e) => {
            let mut text = format!("{e:#}");
            // The start stops what it started when it gives up; if that failed, once more here
            // (with ListTasks as a second net) before telling the user to do it.
            let cleanup_failed = e
                .downcast_ref::<ecs::StartError>()
                .is_some_and(|s| s.cleanup.is_err());
            if cleanup_failed {
                let known = fleet.started_tasks();
                let reason = "fleetload: run did not fully start";
                let stopped = stop_everything(&fleet, run_id, &known, reason, &display).await;
                text = format!("{text}; then: {}", stopped_text(run_id, &stopped));
            }
            // `text` already holds the whole chain of `e`: wrapping `e` again would say it twice.
            return Err(FleetFailed(text).into());
        }
    };
    let arns = report.tasks.clone();
    let consumer_arns: std::collections::BTreeSet<String> =
        report.by_group.iter().skip(1).flatten().cloned().collect();
    let task_end = |s: &ecs::TaskState| {
        let mut end = ecs_task_end(s);
        end.consumer = consumer_arns.contains(&s.arn);
        end
    };
    display.started(arns.len() as u32, plan.all_tasks());
    if let Some(live) = &live {
        live.expect(report.task_ids());
    }
    let deadline = fleet_deadline(plan.start_delay, duration, settle);
    let mut problems: Vec<String> = Vec::new();
    let mut stopped_by: Option<&'static str> = None;
    let mut stop_sent: Option<Instant> = None;
    // Every failure from here on leaves tasks that this launcher started: they are stopped (by
    // the ARNs RunTask returned, not by the eventually consistent ListTasks) before it exits 3.
    let states = loop {
        // Transient DescribeTasks errors are retried inside `describe`; what comes out is an
        // error that persisted. A stop request is still heard while it retries.
        let described = tokio::select! {
            r = fleet.describe(&arns) => Some(r),
            signal = stop.recv(), if stopped_by.is_none() => {
                display.note(&format!("{signal}: stopping the {} task(s) of run {run_id}", arns.len()));
                stopped_by = Some(signal);
                stop_sent = Some(Instant::now());
                if let Err(e) = fleet.stop(&arns, &format!("fleetload: launcher received {signal}")).await {
                    return Err(abandon(&fleet, run_id, &arns, format!("{e:#}"), &display).await);
                }
                None
            }
        };
        let states = match described {
            Some(Ok(states)) => states,
            Some(Err(e)) => {
                return Err(abandon(&fleet, run_id, &arns, format!("{e:#}"), &display).await)
            }
            None => continue,
        };
        let running = states.iter().filter(|s| !s.is_final()).count() as u32;
        let running_consumers = states
            .iter()
            .filter(|s| !s.is_final() && consumer_arns.contains(&s.arn))
            .count() as u32;
        let ends: Vec<TaskEnd> = states
            .iter()
            .filter(|s| s.is_final())
            .map(task_end)
            .collect();
        display.tasks(running, running_consumers, &ends.iter().collect::<Vec<_>>());
        if running == 0 {
            break states;
        }
        if stop_sent.is_some_and(|t| t.elapsed() > STOP_CONFIRM_TIMEOUT) {
            let what = format!(
                "{running} task(s) had not stopped {}s after StopTask",
                STOP_CONFIRM_TIMEOUT.as_secs()
            );
            return Err(abandon(&fleet, run_id, &arns, what, &display).await);
        }
        if Instant::now() >= deadline && stopped_by.is_none() {
            display.note(&format!(
                "{running} task(s) still running past the run's end and grace: stopping them"
            ));
            stopped_by = Some("deadline");
            stop_sent = Some(Instant::now());
            if let Err(e) = fleet.stop(&arns, "fleetload: past the run's end").await {
                return Err(abandon(&fleet, run_id, &arns, format!("{e:#}"), &display).await);
            }
            problems.push(format!(
                "{running} task(s) were still running past the run's end and were stopped"
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_POLL) => {}
            signal = stop.recv(), if stopped_by.is_none() => {
                display.note(&format!("{signal}: stopping the {} task(s) of run {run_id}", arns.len()));
                stopped_by = Some(signal);
                stop_sent = Some(Instant::now());
                if let Err(e) = fleet.stop(&arns, &format!("fleetload: launcher received {signal}")).await {
                    return Err(abandon(&fleet, run_id, &arns, format!("{e:#}"), &display).await);
                }
            }
        }
    };
    let live = match live {
        Some(live) => Some(live.finish().await),
        None => None,
    };
    display.finish();
    if let Some(why) = stopped_by {
        println!(
            "stopped ({why}): DescribeTasks confirms all {} task(s) STOPPED",
            states.len()
        );
    }
    let aborted = live.as_ref().is_some_and(|l| l.aborted.is_some());
    let ends: Vec<TaskEnd> = states.iter().map(task_end).collect();
    // Tasks the abort stopped ended as asked: not a problem of the fleet.
    problems.extend(
        ends.iter()
            .filter(|e| !(aborted && e.interrupted))
            .filter_map(|e| e.problem.clone()),
    );
    let mut ecs_usage: Vec<ecs::TaskUsage> = states.iter().map(|s| s.usage.clone()).collect();
    let usage_notes = fleet.complete_usage(&mut ecs_usage).await;
    Ok(RunOutcome {
        run_id: run_id.clone(),
        report_url: url,
        tasks_requested: plan.all_tasks() as u64,
        task_ids: ends.iter().map(|e| e.id.clone()).collect(),
        problems,
        live,
        ecs_usage,
        usage_notes,
    })
}

/// The run is given up because `what` failed for good: every task this launcher started is
/// stopped, and the error (exit 3) says what failed and what became of the tasks.
async fn abandon(
    fleet: &EcsFleet,
    run_id: &str,
    arns: &[String],
    what: String,
    display: &Display,
) -> anyhow::Error {
    display.note(&format!(
        "{what}: stopping every task this launcher started ({})",
        arns.len()
    ));
    let stopped = stop_everything(
        fleet,
        run_id,
        arns,
        "fleetload: the launcher gave up watching the run",
        display,
    )
    .await;
    anyhow::Error::new(FleetFailed(format!(
        "run {run_id}: {what}; {}",
        stopped_text(run_id, &stopped)
    )))
}

/// How [`stop_everything`] ended.
enum Stopped {
    /// Every task is confirmed STOPPED by DescribeTasks: how many.
    Confirmed(usize),
    /// StopTask or the confirmation failed: what, and how many tasks were concerned.
    Failed(usize, String),
}

fn stopped_text(run_id: &str, stopped: &Stopped) -> String {
    match stopped {
        Stopped::Confirmed(0) => "no task had started".to_string(),
        Stopped::Confirmed(n) => {
            format!(
                "the {n} task(s) that had started were stopped (DescribeTasks confirms STOPPED)"
            )
        }
        Stopped::Failed(n, e) => format!(
            "stopping the {n} task(s) that had started did not complete ({e}): run `launcher stop \
             {run_id}`"
        ),
    }
}

/// Stops `known` (the ARNs RunTask returned) and whatever else ListTasks finds of run `run_id`
/// (a second net: it is eventually consistent, so it never replaces `known`), then waits until
/// DescribeTasks shows every one STOPPED. Each step goes on when the one before failed: as many
/// tasks as possible are stopped.
async fn stop_everything(
    fleet: &EcsFleet,
    run_id: &str,
    known: &[String],
    reason: &str,
    display: &Display,
) -> Stopped {
    let mut arns = known.to_vec();
    let mut failed: Vec<String> = Vec::new();
    match fleet.list_run(run_id).await {
        Ok(listed) => {
            for arn in listed {
                if !arns.iter().any(|a| a == &arn) {
                    arns.push(arn);
                }
            }
        }
        Err(e) => failed.push(format!("{e:#}")),
    }
    if arns.is_empty() {
        return match failed.pop() {
            None => Stopped::Confirmed(0),
            Some(e) => Stopped::Failed(0, e),
        };
    }
    if let Err(e) = fleet.stop(&arns, reason).await {
        failed.push(format!("{e:#}"));
    }
    match fleet.wait_stopped(&arns, STOP_CONFIRM_TIMEOUT).await {
        Ok(states) => display.note(&format!(
            "stopped {} task(s) of run {run_id}; DescribeTasks confirms STOPPED: {}",
            states.len(),
            states
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => failed.push(format!("{e:#}")),
    }
    if failed.is_empty() {
        Stopped::Confirmed(arns.len())
    } else {
        Stopped::Failed(arns.len(), failed.join("; "))
    }
}

fn ecs_task_end(s: &ecs::TaskState) -> TaskEnd {
    let mut end = TaskEnd::from_exit(&s.id, s.container_exit_code, None, None);
    if s.container_exit_code.is_none() {
        let why = [
            s.stopped_reason.as_deref(),
            s.container_reason.as_deref(),
            s.stop_code.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
        end.problem = Some(format!(
            "task {} stopped without a worker exit code ({})",
            s.id,
            if why.is_empty() {
                "no reason given"
            } else {
                &why
            }
        ));
        end.ok = false;
    }
    end
}

/// `launcher stop RUN_ID`: finds the run's ECS tasks by `startedBy`, stops them and confirms.
pub async fn stop_command(args: &StopArgs) -> anyhow::Result<ExitStatus> {
    let source = ecs_source(&args.ecs)?;
    ecs::validate_run_id(&args.run_id)?;
    let (client, cfg, _) = connect_ecs(&source).await?;
    let fleet = EcsFleet::new(client, cfg);
    let display = Display::new(0, Utc::now(), Duration::ZERO);
    match stop_everything(
        &fleet,
        &args.run_id,
        &[],
        "fleetload: launcher stop",
        &display,
    )
    .await
    {
        Stopped::Confirmed(0) => {
            display.note(&format!("no running task of run {}", args.run_id));
            Ok(ExitStatus::Held)
        }
        Stopped::Confirmed(_) => Ok(ExitStatus::Held),
        Stopped::Failed(_, e) => {
            Err(FleetFailed(format!("{e}; run `launcher stop {}` again", args.run_id)).into())
        }
    }
}
