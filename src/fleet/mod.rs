//! Fleet backends: run N workers with one scenario, one run id and one start instant, wait for
//! them, and say what happened to each.
//!
//! [`run`] builds the workers' environment from the command line, validates it with the
//! worker's own scenario rules (a typo fails here, before any task starts), then hands over to
//! the [`local`] backend (worker processes, with an embedded Kafka-protocol broker when no
//! target is given) or the [`ecs`] backend (RunTask). [`stop`] stops every task of a run.

pub mod ecs;
pub mod local;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::launcher::{Backend, EcsArgs, FleetFailed, RunArgs, RunOutcome, StopArgs};
use crate::scenario::{generate_run_id, ReportUrl, Scenario, PREFIX};
use crate::worker::{WorkerExit, DRAIN_TIMEOUT};

/// Topic of the embedded broker.
pub const EMBEDDED_TOPIC: &str = "fleetload";
/// Partitions of the embedded broker's topic.
pub const EMBEDDED_PARTITIONS: i32 = 6;
/// Events per second per task with the embedded broker when no rate is given: the broker lives
/// in the launcher's process and keeps every message in memory.
pub const EMBEDDED_DEFAULT_RATE: &str = "1000";
/// Local tasks start this long after launch unless `--start-delay` says otherwise.
pub const LOCAL_START_DELAY: Duration = Duration::from_secs(3);
/// ECS tasks start this long after launch: Fargate takes tens of seconds to pull and start.
pub const ECS_START_DELAY: Duration = Duration::from_secs(120);
/// Beyond the run's end and the workers' drain, how long tasks get to store their reports
/// before the launcher stops them.
pub const REPORT_GRACE: Duration = Duration::from_secs(45);

/// A stop request from the person or the CI system: Ctrl-C or SIGTERM.
pub struct StopRequest {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopRequest {
    /// Listens for SIGTERM and SIGINT from now on.
    pub fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopRequest {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The next signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// How one task ended, as the backend saw it.
#[derive(Debug, Clone)]
pub struct TaskEnd {
    /// The task id (its report directory).
    pub id: String,
    /// Whether it exited 0.
    pub ok: bool,
    /// What went wrong, when it did not.
    pub problem: Option<String>,
}

impl TaskEnd {
    /// From a worker's exit code (or the signal that killed it).
    pub fn from_exit(
        id: &str,
        code: Option<i32>,
        signal: Option<i32>,
        log: Option<&std::path::Path>,
    ) -> TaskEnd {
        let meaning = match code {
            Some(0) => None,
            Some(c) if c == WorkerExit::Failed.code() as i32 => Some("the run failed"),
            Some(c) if c == WorkerExit::BadConfig.code() as i32 => Some("bad scenario"),
            Some(c) if c == WorkerExit::PreflightFailed.code() as i32 => {
                Some("preflight failed: target or report location not usable")
            }
            Some(c) if c == WorkerExit::ReportNotStored.code() as i32 => {
                Some("report not stored (printed in its log)")
            }
            Some(c) if c == crate::worker::HARD_DEADLINE_EXIT as i32 => {
                Some("hard deadline reached")
            }
            Some(130) => Some("interrupted by SIGINT"),
            Some(143) => Some("interrupted by SIGTERM"),
            Some(_) => Some("unexpected exit code"),
            None => Some("killed by a signal"),
        };
        let problem = meaning.map(|m| {
            let how = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                (None, None) => "ended".to_string(),
            };
            let last = log
                .and_then(last_error_line)
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            let at = log
                .map(|l| format!(" (log: {})", l.display()))
                .unwrap_or_default();
            format!("task {id} {how} ({m}){last}{at}")
        });
        TaskEnd {
            id: id.to_string(),
            ok: problem.is_none(),
            problem,
        }
    }
}

/// The last ERROR line of a worker's log, to say in one line why it failed.
fn last_error_line(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.starts_with("fleetload worker:"))?;
    let line = line
        .split_once("ERROR")
        .map(|(_, rest)| rest)
        .unwrap_or(line);
    Some(
        line.trim()
            .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
            .chars()
            .take(300)
            .collect(),
    )
}

/// What the launcher's screen shows during a run: a progress bar on a terminal, a plain line
/// every 10 s in a CI log.
pub struct Display {
    bar: ProgressBar,
    tty: bool,
    start_at: chrono::DateTime<Utc>,
    duration: Duration,
    last_line: Instant,
    total: u32,
}

impl Display {
    /// A display for a run of `total` tasks producing for `duration` from `start_at`.
    pub fn new(total: u32, start_at: chrono::DateTime<Utc>, duration: Duration) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len}s  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        if !tty {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Display {
            bar,
            tty,
            start_at,
            duration,
            last_line: Instant::now() - Duration::from_secs(60),
            total,
        }
    }

    /// Tasks are starting: `started` of `requested` so far.
    pub fn started(&mut self, started: u32, requested: u32) {
        self.bar
            .set_message(format!("started {started}/{requested}"));
        self.bar.tick();
    }

    /// The fleet's state now.
    pub fn tasks(&mut self, running: u32, ended: &[&TaskEnd]) {
        let ok = ended.iter().filter(|e| e.ok).count();
        let failed = ended.len() - ok;
        let now = Utc::now();
        let phase = if now < self.start_at {
            format!("starts in {}s", (self.start_at - now).num_seconds() + 1)
        } else {
            let elapsed = (now - self.start_at).to_std().unwrap_or_default();
            self.bar
                .set_position(elapsed.as_secs().min(self.duration.as_secs()));
            if elapsed < self.duration {
                format!("{}s left", (self.duration - elapsed).as_secs())
            } else {
                "draining and storing reports".to_string()
            }
        };
        let msg = format!(
            "{phase} · running {running} · done {ok} · failed {failed} (of {})",
            self.total
        );
        if self.tty {
            self.bar.set_message(msg);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("fleet: {msg}");
            self.last_line = Instant::now();
        }
    }

    /// A line above the bar.
    pub fn note(&self, text: &str) {
        if self.tty {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The workers' environment from `--env-file`, `-e` and the flags (later ones win).
fn scenario_env(args: &RunArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    };
    if let Some(path) = &args.env_file {
        let iter = dotenvy::from_path_iter(path)
            .with_context(|| format!("--env-file {}: cannot read it", path.display()))?;
        for item in iter {
            let (k, v) = item.with_context(|| {
                format!("--env-file {}: a line is not KEY=VALUE", path.display())
            })?;
            set(&k, &v);
        }
    }
    for (k, v) in &args.env {
        set(k, v);
    }
    let flags = [
        ("FLEETLOAD_DURATION", &args.duration),
        ("FLEETLOAD_RATE", &args.rate),
        ("FLEETLOAD_STAGES", &args.stages),
        ("FLEETLOAD_TARGET", &args.target),
        ("FLEETLOAD_STREAM", &args.stream),
        ("FLEETLOAD_TOPIC", &args.topic),
        ("FLEETLOAD_REPORT_URL", &args.report_url),
        ("FLEETLOAD_RUN_ID", &args.run_id),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            set(k, v);
        }
    }
    for (k, _) in &env {
        if !k.starts_with(PREFIX) {
            anyhow::bail!("-e/--env-file {k}: only FLEETLOAD_* variables are passed to the workers (AWS settings come from the launcher's own environment locally, and from the task role on ECS)");
        }
        if k == "FLEETLOAD_TASK_ID" || k == "FLEETLOAD_START_AT" {
            anyhow::bail!("{k} is set by the launcher for each task; remove it (use --start-delay to choose the start)");
        }
    }
    Ok(env)
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn put(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

/// Starts the fleet of `args`, waits for every task to end, and says what happened.
pub async fn run(args: &RunArgs) -> anyhow::Result<RunOutcome> {
    let backend = args.backend.unwrap_or(if args.ecs.any_given() {
        Backend::Ecs
    } else {
        Backend::Local
    });
    if backend == Backend::Local && args.ecs.any_given() {
        anyhow::bail!("ECS options (--stack, --cluster, --subnets, …) were given with --backend local: drop them or use --backend ecs");
    }
    let mut env = scenario_env(args)?;
    let run_id = get(&env, "FLEETLOAD_RUN_ID")
        .map(str::to_string)
        .unwrap_or_else(generate_run_id);
    put(&mut env, "FLEETLOAD_RUN_ID", &run_id);
    let start_delay = match &args.start_delay {
        Some(d) => humantime::parse_duration(d).map_err(|e| {
            anyhow::anyhow!("--start-delay {d:?}: {e}; accepted: a duration such as 30s or 2m")
        })?,
        None if backend == Backend::Ecs => ECS_START_DELAY,
        None => LOCAL_START_DELAY,
    };

    match backend {
        Backend::Local => run_local(args, env, run_id, start_delay).await,
        Backend::Ecs => run_ecs(args, env, run_id, start_delay).await,
    }
}

/// Validates the workers' environment with the worker's own rules, as one task would see it.
fn validate(env: &[(String, String)]) -> anyhow::Result<Scenario> {
    let mut probe = env.to_vec();
    probe.push(("FLEETLOAD_TASK_ID".into(), "probe".into()));
    probe.push(("FLEETLOAD_START_AT".into(), Utc::now().to_rfc3339()));
    Scenario::from_env(probe)
        .map_err(|e| anyhow::anyhow!("the workers' scenario is not valid: {e}"))
}

async fn run_local(
    args: &RunArgs,
    mut env: Vec<(String, String)>,
    run_id: String,
    start_delay: Duration,
) -> anyhow::Result<RunOutcome> {
    // No target: an embedded Kafka-protocol broker (librdkafka's mock cluster) hosted here for
    // the run, reached by the workers over loopback.
    let embedded = if get(&env, "FLEETLOAD_TARGET").is_none() {
        let cluster = rdkafka::mocking::MockCluster::new(3)
            .context("cannot start the embedded Kafka broker")?;
        cluster
            .create_topic(EMBEDDED_TOPIC, EMBEDDED_PARTITIONS, 1)
            .context("cannot create the embedded broker's topic")?;
        put(&mut env, "FLEETLOAD_TARGET", "kafka");
        put(&mut env, "FLEETLOAD_TOPIC", EMBEDDED_TOPIC);
        put(
            &mut env,
            "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS",
            &cluster.bootstrap_servers(),
        );
        if get(&env, "FLEETLOAD_RATE").is_none() && get(&env, "FLEETLOAD_STAGES").is_none() {
            put(&mut env, "FLEETLOAD_RATE", EMBEDDED_DEFAULT_RATE);
        }
        Some(cluster)
    } else {
        None
    };
    let report_url = get(&env, "FLEETLOAD_REPORT_URL")
        .unwrap_or("./fleetload-runs")
        .to_string();
    let url = ReportUrl::parse(&report_url).map_err(|e| anyhow::anyhow!("--report-url: {e}"))?;
    // Workers run in other processes, maybe another directory: give them an absolute path.
    let url = match url {
        ReportUrl::Local(p) if p.is_relative() => {
            let relative: PathBuf = p
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            ReportUrl::Local(std::env::current_dir()?.join(relative))
        }
        other => other,
    };
    put(&mut env, "FLEETLOAD_REPORT_URL", &url.to_string());
    let scenario = validate(&env)?;
    let start_at = Utc::now() + chrono::Duration::from_std(start_delay)?;
    put(
        &mut env,
        "FLEETLOAD_START_AT",
        &start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );

    let log_dir = match &url {
        ReportUrl::Local(dir) => dir.join(&run_id).join("logs"),
        ReportUrl::S3 { .. } => PathBuf::from("fleetload-runs").join(&run_id).join("logs"),
    };
    let duration = scenario.profile.total_duration();
    print_plan(
        &run_id,
        args.tasks,
        &scenario,
        &url,
        embedded.as_ref().map(|c| c.bootstrap_servers()),
        Some(&log_dir),
        start_at,
    );
    let deadline = Instant::now() + start_delay + duration + DRAIN_TIMEOUT + REPORT_GRACE;
    let mut display = Display::new(args.tasks, start_at, duration);
    let mut stop = StopRequest::listen()?;
    let ends = local::run_tasks(
        args.tasks,
        &env,
        &log_dir,
        deadline,
        &mut display,
        &mut stop,
    )
    .await;
    display.finish();
    drop(embedded);
    let ends = ends?;
    Ok(RunOutcome {
        run_id,
        report_url: url,
        tasks_requested: args.tasks as u64,
        task_ids: ends.iter().map(|e| e.id.clone()).collect(),
        problems: ends.iter().filter_map(|e| e.problem.clone()).collect(),
    })
}

fn print_plan(
    run_id: &str,
    tasks: u32,
    s: &Scenario,
    url: &ReportUrl,
    embedded: Option<String>,
    logs: Option<&std::path::Path>,
    start_at: chrono::DateTime<Utc>,
) {
    println!("run id: {run_id}");
    let target = match &s.target {
        crate::scenario::TargetConfig::Kinesis { stream } => format!("kinesis stream {stream}"),
        crate::scenario::TargetConfig::Kafka { topic, properties } => match &embedded {
            Some(servers) => format!("kafka topic {topic} on the embedded broker ({servers})"),
            None => format!(
                "kafka topic {topic} on {}",
                properties
                    .get("bootstrap.servers")
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
        },
        crate::scenario::TargetConfig::Null => "null (nothing is sent)".to_string(),
    };
    let rate = match s.profile.planned_events() {
        None => "as fast as the target accepts".to_string(),
        Some(n) => format!(
            "{:.0} events/s per task, {:.0} in all",
            n as f64 / s.profile.total_duration().as_secs_f64(),
            n as f64 * tasks as f64 / s.profile.total_duration().as_secs_f64()
        ),
    };
    println!("fleet:  {tasks} task(s) → {target}");
    println!(
        "load:   {rate} for {}",
        humantime::format_duration(s.profile.total_duration())
    );
    println!(
        "start:  {}",
        start_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    println!("report: {}", url.run_url(run_id));
    if let Some(logs) = logs {
        println!("logs:   {}", logs.display());
    }
}

async fn ecs_clients(
    args: &EcsArgs,
) -> anyhow::Result<(aws_sdk_ecs::Client, Option<crate::stack::StackOutputs>)> {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    if shared.region().is_none() {
        anyhow::bail!(
            "no AWS region is configured for ECS: set AWS_REGION (or a profile with a region)"
        );
    }
    let ecs = aws_sdk_ecs::Client::new(&shared);
    let outputs = match &args.stack {
        Some(name) => Some(
            crate::stack::read_stack(&aws_sdk_cloudformation::Client::new(&shared), name).await?,
        ),
        None => None,
    };
    Ok((ecs, outputs))
}

fn ecs_config(
    args: &EcsArgs,
    outputs: Option<&crate::stack::StackOutputs>,
) -> anyhow::Result<ecs::EcsConfig> {
    if let Some(o) = outputs {
        return Ok(ecs::EcsConfig::from(o));
    }
    let missing: Vec<&str> = [
        ("--cluster", args.cluster.is_none()),
        ("--task-definition", args.task_definition.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(f, _)| *f)
    .collect();
    if !missing.is_empty() {
        anyhow::bail!("the ECS backend needs {} (or --stack NAME to read them from the project's CloudFormation stack)", missing.join(" and "));
    }
    let cfg = ecs::EcsConfig {
        cluster: args.cluster.clone().unwrap_or_default(),
        task_definition: args.task_definition.clone().unwrap_or_default(),
        container: args
            .container
            .clone()
            .unwrap_or_else(|| "worker".to_string()),
        subnets: args.subnets.clone(),
        security_groups: args.security_groups.clone(),
        assign_public_ip: args.assign_public_ip,
        launch_type: args.launch_type.map(|l| match l {
            crate::launcher::LaunchType::Fargate => "FARGATE".to_string(),
            crate::launcher::LaunchType::Ec2 => "EC2".to_string(),
        }),
        capacity_providers: args
            .capacity_providers
            .iter()
            .map(|c| ecs::CapacityProvider {
                name: c.name.clone(),
                weight: c.weight.unwrap_or(1),
                base: 0,
            })
            .collect(),
        platform_version: None,
    };
    cfg.validate()?;
    Ok(cfg)
}

async fn run_ecs(
    args: &RunArgs,
    mut env: Vec<(String, String)>,
    run_id: String,
    start_delay: Duration,
) -> anyhow::Result<RunOutcome> {
    let (client, outputs) = ecs_clients(&args.ecs).await?;
    let cfg = ecs_config(&args.ecs, outputs.as_ref())?;
    if get(&env, "FLEETLOAD_REPORT_URL").is_none() {
        match &outputs {
            Some(o) => put(&mut env, "FLEETLOAD_REPORT_URL", &o.report_url),
            None => anyhow::bail!("ECS tasks need --report-url s3://bucket/prefix (or --stack, whose report bucket is used)"),
        }
    }
    if get(&env, "FLEETLOAD_TARGET").is_none() {
        anyhow::bail!("ECS tasks need a target: --target kinesis|kafka|null (the embedded broker exists only for local runs)");
    }
    let url = ReportUrl::parse(get(&env, "FLEETLOAD_REPORT_URL").unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("--report-url: {e}"))?;
    if !matches!(url, ReportUrl::S3 { .. }) {
        anyhow::bail!("--report-url {url}: ECS tasks cannot write to this machine's disk; accepted: s3://bucket/prefix");
    }
    let scenario = validate(&env)?;
    ecs::validate_run_id(&run_id)?;
    let start_at = Utc::now() + chrono::Duration::from_std(start_delay)?;
    put(
        &mut env,
        "FLEETLOAD_START_AT",
        &start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let fleet = ecs::EcsFleet::new(client, cfg);
    print_plan(&run_id, args.tasks, &scenario, &url, None, None, start_at);
    let duration = scenario.profile.total_duration();
    let mut display = Display::new(args.tasks, start_at, duration);
    let mut stop = StopRequest::listen()?;

    // Start, unless a stop request comes first (then whatever started is stopped).
    let start_deadline = Instant::now() + start_delay;
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
    let started = tokio::select! {
        r = fleet.start(&run_id, &env, args.tasks, start_deadline, &progress) => r,
        signal = stop.recv() => {
            display.note(&format!("{signal} while starting: stopping every task of run {run_id}"));
            stop_and_confirm(&fleet, &run_id, &display).await?;
            return Err(FleetFailed(format!("run {run_id} was stopped by {signal} before all tasks started")).into());
        }
    };
    let report = started.map_err(|e| {
        let text = format!("{e:#}");
        e.context(FleetFailed(text))
    })?;
    let arns = report.tasks.clone();
    display.started(arns.len() as u32, args.tasks);
    let deadline = Instant::now() + start_delay + duration + DRAIN_TIMEOUT + REPORT_GRACE;
    let mut problems: Vec<String> = Vec::new();
    let mut stopped_by: Option<&'static str> = None;
    let states = loop {
        let states = fleet.describe(&arns).await?;
        let running = states.iter().filter(|s| !s.is_final()).count() as u32;
        let ends: Vec<TaskEnd> = states
            .iter()
            .filter(|s| s.is_final())
            .map(ecs_task_end)
            .collect();
        display.tasks(running, &ends.iter().collect::<Vec<_>>());
        if running == 0 {
            break states;
        }
        if Instant::now() >= deadline && stopped_by.is_none() {
            display.note(&format!(
                "{running} task(s) still running past the run's end and grace: stopping them"
            ));
            fleet.stop(&arns, "fleetload: past the run's end").await?;
            problems.push(format!(
                "{running} task(s) were still running past the run's end and were stopped"
            ));
            stopped_by = Some("deadline");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            signal = stop.recv(), if stopped_by.is_none() => {
                display.note(&format!("{signal}: stopping the {} task(s) of run {run_id}", arns.len()));
                stopped_by = Some(signal);
                fleet.stop(&arns, &format!("fleetload: launcher received {signal}")).await?;
            }
        }
    };
    display.finish();
    if let Some(why) = stopped_by {
        println!(
            "stopped ({why}): DescribeTasks confirms all {} task(s) STOPPED",
            states.len()
        );
    }
    let ends: Vec<TaskEnd> = states.iter().map(ecs_task_end).collect();
    problems.extend(ends.iter().filter_map(|e| e.problem.clone()));
    Ok(RunOutcome {
        run_id,
        report_url: url,
        tasks_requested: args.tasks as u64,
        task_ids: ends.iter().map(|e| e.id.clone()).collect(),
        problems,
    })
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

async fn stop_and_confirm(
    fleet: &ecs::EcsFleet,
    run_id: &str,
    display: &Display,
) -> anyhow::Result<()> {
    let arns = fleet.list_run(run_id).await?;
    if arns.is_empty() {
        display.note(&format!("no running task of run {run_id}"));
        return Ok(());
    }
    fleet.stop(&arns, "fleetload: launcher stop").await?;
    let states = fleet
        .wait_stopped(&arns, Duration::from_secs(180))
        .await
        .map_err(|e| FleetFailed(format!("{e:#}; run `launcher stop {run_id}` again")))?;
    display.note(&format!(
        "stopped {} task(s) of run {run_id}; DescribeTasks confirms STOPPED: {}",
        states.len(),
        states
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// `launcher stop RUN_ID`: finds the run's ECS tasks by `startedBy`, stops them and confirms.
pub async fn stop(args: &StopArgs) -> anyhow::Result<()> {
    let (client, outputs) = ecs_clients(&args.ecs).await?;
    let cfg = ecs_config(&args.ecs, outputs.as_ref())?;
    ecs::validate_run_id(&args.run_id)?;
    let fleet = ecs::EcsFleet::new(client, cfg);
    let display = Display::new(0, Utc::now(), Duration::ZERO);
    stop_and_confirm(&fleet, &args.run_id, &display).await
}
