//! `launcher run`'s arguments resolved into one plan: the workers' environment (from
//! `--env-file`, `-e` and the flags, later ones winning), the run id, the start delay, the backend
//! and, for ECS, where its settings come from. Everything that can be checked before a task
//! starts is checked here; the backends then take the plan as it is.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::launcher::cli::{Backend, EcsArgs, LaunchType, LiveArgs, RunArgs};
use crate::launcher::fleet::ecs::EcsConfig;
use crate::launcher::live::{AbortRule, MetricsTarget, DEFAULT_ABORT_AFTER, DEFAULT_ABORT_GRACE};
use crate::model::input::{parse_live_interval, KAFKA_PREFIX, PREFIX};
use crate::model::live::DEFAULT_LIVE_INTERVAL;
use crate::model::report_url::ReportUrl;
use crate::model::scenario::{generate_run_id, Scenario};
use crate::worker::sink::{Files, Target};

/// Local tasks start this long after launch unless `--start-delay` says otherwise.
pub const LOCAL_START_DELAY: Duration = Duration::from_secs(3);
/// The same with consumer tasks: they must hold their partitions or shards (the topic's
/// metadata and an offset lookup per partition, or the shard list and an iterator per shard)
/// before the first event is due, or the wait shows as end-to-end latency.
pub const LOCAL_START_DELAY_WITH_CONSUMERS: Duration = Duration::from_secs(6);
/// ECS tasks start this long after launch: Fargate takes tens of seconds to pull and start.
pub const ECS_START_DELAY: Duration = Duration::from_secs(120);
/// The longest `--start-delay`: the worker refuses a FLEETLOAD_START_AT further away than this.
pub const MAX_START_DELAY: Duration = Duration::from_secs(24 * 3600);
/// The most worker processes the local backend starts on one machine: each is a process with
/// its own runtime and librdkafka threads, and past a few hundred the machine refuses new
/// processes mid-start. Larger fleets are what the ECS backend is for.
pub const MAX_LOCAL_TASKS: u32 = 256;
/// Report location of a local run that names none (the worker's own default).
pub const DEFAULT_REPORT_URL: &str = "./fleetload-runs";

/// The workers' environment: `FLEETLOAD_*` pairs, each name once, and where each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerEnv {
    pairs: Vec<(String, String)>,
    /// For a pair that came from a flag or an env file, that input as the user knows it
    /// (`--duration`, `--env-file run.env line 3`): refusals name it.
    origins: Vec<(String, String)>,
}

impl WorkerEnv {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) {
        self.pairs.retain(|(k, _)| k != key);
        self.origins.retain(|(k, _)| k != key);
        self.pairs.push((key.to_string(), value.to_string()));
    }

    /// Removes `key`, if set.
    pub fn remove(&mut self, key: &str) {
        self.pairs.retain(|(k, _)| k != key);
        self.origins.retain(|(k, _)| k != key);
    }

    /// Sets `key` from the input `origin` (a flag, a line of an env file).
    fn set_from(&mut self, key: &str, value: &str, origin: String) {
        self.set(key, value);
        self.origins.push((key.to_string(), origin));
    }

    /// Where `key` came from, when that was not `-e`.
    fn origin(&self, key: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, o)| o.as_str())
    }

    /// The pairs, in the order they were set.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Validates the environment with the worker's own rules, as one task would see it (the
    /// Kafka properties too, by librdkafka, without connecting).
    /// `files` says whether the files the Kafka properties name exist on this machine (local
    /// tasks) or only inside the task (ECS).
    pub fn validate(&self, files: Files) -> anyhow::Result<Scenario> {
        self.validate_as("the workers'", "", files)
    }

    /// [`WorkerEnv::validate`] for the environment of `who` (`the consumer tasks'`); a refusal
    /// of a variable that came from no flag ends with `hint`.
    fn validate_as(&self, who: &str, hint: &str, files: Files) -> anyhow::Result<Scenario> {
        let mut probe = self.pairs.clone();
        probe.push(("FLEETLOAD_TASK_ID".into(), "probe".into()));
        probe.push(("FLEETLOAD_START_AT".into(), Utc::now().to_rfc3339()));
        Scenario::from_env(probe)
            .and_then(|s| Target::check(&s, files).map(|()| s))
            .map_err(|e| match self.origin(e.variable()) {
                Some(o) => anyhow::anyhow!("{who} scenario is not valid (from {o}): {e}"),
                None => anyhow::anyhow!("{who} scenario is not valid: {e}{hint}"),
            })
    }
}

/// What the consumer tasks read (`--consume-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeFrom {
    /// `kinesis:STREAM` (a name or an ARN).
    Kinesis(String),
    /// `kafka:TOPIC`.
    Kafka(String),
}

impl ConsumeFrom {
    /// `kinesis:STREAM` or `kafka:TOPIC`, as typed after `--consume-from`. The name itself is
    /// checked with the worker's own rules when the consumers' environment is validated.
    pub fn parse(text: &str) -> anyhow::Result<ConsumeFrom> {
        let refuse = |why: &str| {
            anyhow::anyhow!(
                "--consume-from {text:?}: {why}; accepted: kinesis:STREAM (a stream name or ARN) \
                 or kafka:TOPIC, e.g. kinesis:enriched or kafka:orders-out"
            )
        };
        if text.trim().is_empty() {
            return Err(refuse("empty"));
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(refuse("no kinesis: or kafka: before the name"));
        };
        if name.trim().is_empty() {
            return Err(refuse("no stream or topic after the colon"));
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "kinesis" => Ok(ConsumeFrom::Kinesis(name.to_string())),
            "kafka" => Ok(ConsumeFrom::Kafka(name.to_string())),
            _ => Err(refuse(&format!(
                "{kind:?} is not a target consumers can read"
            ))),
        }
    }
}

/// Variables the consumer tasks share with the producers, always: the run, its report location
/// and its schedule (a consumer reads until the producers' planned end plus the settle time).
const SHARED_WITH_CONSUMERS: &[&str] = &[
    "FLEETLOAD_RUN_ID",
    "FLEETLOAD_REPORT_URL",
    "FLEETLOAD_DURATION",
    "FLEETLOAD_RATE",
    "FLEETLOAD_STAGES",
    "FLEETLOAD_LIVE_INTERVAL",
];

/// The consumer tasks of a run (`--consumers`, `--consume-from`, `--consumer-env`).
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// How many consumer tasks.
    pub count: u32,
    /// What they read; `None`: the producers' own stream or topic.
    pub from: Option<ConsumeFrom>,
    /// `--consumer-env` pairs, applied last (`FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS` among them
    /// drops the producers' Kafka properties first: another cluster).
    own: Vec<(String, String)>,
}

impl ConsumerPlan {
    /// The consumers' own flags, checked: `None` when the run has no consumers.
    fn of(args: &RunArgs) -> anyhow::Result<Option<ConsumerPlan>> {
        if args.consumers.is_none() && args.consume_from.is_none() {
            if let Some((k, _)) = args.consumer_env.first() {
                anyhow::bail!(
                    "--consumer-env {k}: the run has no consumer tasks; accepted: --consumer-env \
                     with --consumers M (and --consume-from)"
                );
            }
            return Ok(None);
        }
        let from = args
            .consume_from
            .as_deref()
            .map(ConsumeFrom::parse)
            .transpose()?;
        for (k, v) in &args.consumer_env {
            let why = if !k.starts_with(PREFIX) {
                "only FLEETLOAD_* variables are passed to the workers"
            } else if matches!(
                k.as_str(),
                "FLEETLOAD_TASK_ID"
                    | "FLEETLOAD_START_AT"
                    | "FLEETLOAD_ROLE"
                    | "FLEETLOAD_CONSUMER"
            ) {
                "set by the launcher for each consumer task"
            } else if k == "FLEETLOAD_TRACE" {
                "a consumer produces nothing: the trace is the producers' setting, and with \
                 --consumers every produced event carries one; accepted: leave it out"
            } else if matches!(
                k.as_str(),
                "FLEETLOAD_TARGET" | "FLEETLOAD_STREAM" | "FLEETLOAD_TOPIC"
            ) {
                "what the consumers read is --consume-from kinesis:STREAM|kafka:TOPIC"
            } else if SHARED_WITH_CONSUMERS.contains(&k.as_str()) {
                "the consumers share the run, its report location and the producers' schedule; \
                 give it with -e or its flag for the whole run"
            } else if v.trim().is_empty() {
                "empty (an unset variable expands to an empty string); accepted: a value, or \
                 leave it out"
            } else {
                continue;
            };
            anyhow::bail!("--consumer-env {k}: {why}");
        }
        Ok(Some(ConsumerPlan {
            count: args.consumers.unwrap_or(1),
            from,
            own: args.consumer_env.clone(),
        }))
    }

    /// The environment every consumer task shares, from the producers' `producers` as the
    /// backend completed it (report location, embedded broker, start instant): the same
    /// variables, read from `--consume-from` (the Kafka properties kept for a topic, dropped for
    /// a stream), then `--consumer-env`. [`ConsumerPlan::task_env`] adds each one's place.
    pub fn env(&self, producers: &WorkerEnv) -> anyhow::Result<WorkerEnv> {
        let mut env = producers.clone();
        // A consumer produces nothing: the trace setting is the producers'.
        env.remove("FLEETLOAD_TRACE");
        env.set_from("FLEETLOAD_ROLE", "consume", "--consumers".into());
        let kafka_keys = |env: &WorkerEnv| -> Vec<String> {
            env.pairs()
                .iter()
                .filter(|(k, _)| k.starts_with(KAFKA_PREFIX))
                .map(|(k, _)| k.clone())
                .collect()
        };
        match &self.from {
            // The producers' own stream or topic, with their settings.
            None => {}
            Some(from) => {
                let typed = match from {
                    ConsumeFrom::Kinesis(s) => format!("kinesis:{s}"),
                    ConsumeFrom::Kafka(t) => format!("kafka:{t}"),
                };
                let origin = || format!("--consume-from {typed}");
                env.remove("FLEETLOAD_STREAM");
                env.remove("FLEETLOAD_TOPIC");
                match from {
                    ConsumeFrom::Kinesis(stream) => {
                        env.set_from("FLEETLOAD_TARGET", "kinesis", origin());
                        env.set_from("FLEETLOAD_STREAM", stream, origin());
                        // The producers' Kafka properties belong to the cluster they write to.
                        for k in kafka_keys(&env) {
                            env.remove(&k);
                        }
                    }
                    ConsumeFrom::Kafka(topic) => {
                        env.set_from("FLEETLOAD_TARGET", "kafka", origin());
                        env.set_from("FLEETLOAD_TOPIC", topic, origin());
                    }
                }
            }
        }
        // Brokers of the consumers' own are another cluster: none of the producers' Kafka
        // properties (security, client settings) apply to it. Other Kafka properties given for
        // the consumers are added to the producers'.
        if self
            .own
            .iter()
            .any(|(k, _)| k == "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS")
        {
            for k in kafka_keys(&env) {
                env.remove(&k);
            }
        }
        for (k, v) in &self.own {
            env.set_from(k, v, "--consumer-env".into());
        }
        Ok(env)
    }

    /// Validates the consumers' shared environment `env` with the worker's own rules.
    pub fn validate(&self, env: &WorkerEnv, files: Files) -> anyhow::Result<Scenario> {
        let mut probe = env.clone();
        probe.set("FLEETLOAD_CONSUMER", &format!("0/{}", self.count));
        probe.validate_as(
            "the consumer tasks'",
            " (consumers read with the producers' settings; --consumer-env KEY=VALUE gives them \
             their own)",
            files,
        )
    }

    /// The environment of consumer `index` (from 0): `env` and its place among the run's
    /// consumers (`FLEETLOAD_CONSUMER=INDEX/COUNT`).
    pub fn task_env(&self, env: &WorkerEnv, index: u32) -> Vec<(String, String)> {
        let mut env = env.clone();
        env.set("FLEETLOAD_CONSUMER", &format!("{index}/{}", self.count));
        env.pairs().to_vec()
    }
}

/// Where the ECS backend's settings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsSource {
    /// The outputs of the project's CloudFormation stack of this name (`--stack`).
    Stack(String),
    /// The flags, already validated.
    Flags(EcsConfig),
}

/// Which backend runs the tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendPlan {
    /// Worker processes on this machine.
    Local,
    /// ECS tasks.
    Ecs(EcsSource),
}

/// One `launcher run`, resolved.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Tasks to start.
    pub tasks: u32,
    /// The run's id (given or generated), also in `env` as `FLEETLOAD_RUN_ID`.
    pub run_id: String,
    /// The workers' environment, without the per-task `FLEETLOAD_TASK_ID` and the run's
    /// `FLEETLOAD_START_AT` (fixed when the backend is ready to start).
    pub env: WorkerEnv,
    /// How long after launch the tasks start producing.
    pub start_delay: Duration,
    /// Where the tasks run.
    pub backend: BackendPlan,
    /// The consumer tasks started with the producers, if any (end to end).
    pub consumers: Option<ConsumerPlan>,
    /// The live view: its windows, the abort rule, the metrics destinations.
    pub live: LivePlan,
}

/// What a run does while it runs (`--live-interval`, `--abort-on-fail`, `--metrics`).
#[derive(Debug, Clone)]
pub struct LivePlan {
    /// The windows' length; `None` when live windows are off.
    pub interval: Option<Duration>,
    /// When a live threshold stops the run (`--abort-on-fail`).
    pub abort: Option<AbortRule>,
    /// Where the fleet's live metrics go.
    pub metrics: Vec<MetricsTarget>,
}

impl LivePlan {
    /// The live flags, checked against the interval the workers will use (`interval_text`, the
    /// value of `FLEETLOAD_LIVE_INTERVAL` if given, named by `from`).
    fn of(args: &LiveArgs, interval_text: Option<(&str, &str)>) -> anyhow::Result<LivePlan> {
        let interval = match interval_text {
            Some((from, text)) => parse_live_interval("FLEETLOAD_LIVE_INTERVAL", text)
                .map_err(|e| anyhow::anyhow!("{from}: {e}"))?,
            None => Some(DEFAULT_LIVE_INTERVAL),
        };
        let abort = if args.abort_on_fail {
            let grace = match &args.abort_grace {
                Some(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                    anyhow::anyhow!(
                        "--abort-grace {text:?}: {e}; accepted: a duration such as 0s, 30s or 2m"
                    )
                })?,
                None => DEFAULT_ABORT_GRACE,
            };
            Some(AbortRule {
                after: args.abort_after.unwrap_or(DEFAULT_ABORT_AFTER),
                grace,
            })
        } else {
            None
        };
        let metrics = args
            .metrics
            .iter()
            .map(|m| MetricsTarget::parse(m).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if interval.is_none() {
            let needs = if abort.is_some() {
                Some("--abort-on-fail")
            } else if !metrics.is_empty() {
                Some("--metrics")
            } else {
                None
            };
            if let Some(flag) = needs {
                anyhow::bail!(
                    "{flag} needs live windows, but FLEETLOAD_LIVE_INTERVAL is off; accepted:                      a live interval such as 10s (the default), or no {flag}"
                );
            }
        }
        Ok(LivePlan {
            interval,
            abort,
            metrics,
        })
    }
}

impl RunPlan {
    /// How many tasks the run starts: producers and consumers.
    pub fn all_tasks(&self) -> u32 {
        self.tasks + self.consumers.as_ref().map_or(0, |c| c.count)
    }
}

impl TryFrom<&RunArgs> for RunPlan {
    type Error = anyhow::Error;

    fn try_from(args: &RunArgs) -> anyhow::Result<RunPlan> {
        let ecs_given = args.ecs.any_given();
        let backend = args.backend.unwrap_or(if ecs_given {
            Backend::Ecs
        } else {
            Backend::Local
        });
        if backend == Backend::Local && ecs_given {
            anyhow::bail!("ECS options (--stack, --cluster, --subnets, …) were given with --backend local: drop them or use --backend ecs");
        }
        if backend == Backend::Local && args.tasks > MAX_LOCAL_TASKS {
            anyhow::bail!(
                "--tasks {}: the local backend runs at most {MAX_LOCAL_TASKS} worker processes on \
                 one machine; accepted: 1 to {MAX_LOCAL_TASKS} locally, or --backend ecs for more",
                args.tasks
            );
        }
        let consumers = ConsumerPlan::of(args)?;
        if let Some(c) = &consumers {
            if backend == Backend::Local && args.tasks + c.count > MAX_LOCAL_TASKS {
                anyhow::bail!(
                    "--tasks {} --consumers {}: the local backend runs at most {MAX_LOCAL_TASKS} \
                     worker processes on one machine, producers and consumers together; \
                     accepted: at most {MAX_LOCAL_TASKS} in all locally, or --backend ecs for more",
                    args.tasks,
                    c.count
                );
            }
        }
        let mut env = worker_env(args)?;
        if consumers.is_some() {
            for (k, v) in env.pairs() {
                let from = env.origin(k).unwrap_or("-e");
                if k == "FLEETLOAD_ROLE" || k == "FLEETLOAD_CONSUMER" {
                    anyhow::bail!("{from} {k}: set by the launcher for each task of a run with --consumers; remove it");
                }
                if k == "FLEETLOAD_TRACE" && !v.trim().eq_ignore_ascii_case("on") {
                    anyhow::bail!("{from} {k}={v:?}: with --consumers every produced event carries a trace, which is how the consumers find it; accepted: on, or leave it out");
                }
            }
            if env
                .get("FLEETLOAD_TARGET")
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("null"))
            {
                let from = env.origin("FLEETLOAD_TARGET").unwrap_or("-e");
                anyhow::bail!(
                    "{from} null with --consumers: the null target sends nothing, so there is \
                     nothing for consumer tasks to read; accepted: --target kinesis|kafka (or no \
                     --target, for the embedded broker)"
                );
            }
            env.set_from("FLEETLOAD_TRACE", "on", "--consumers".into());
        }
        let run_id = env
            .get("FLEETLOAD_RUN_ID")
            .map(str::to_string)
            .unwrap_or_else(generate_run_id);
        if env.get("FLEETLOAD_RUN_ID").is_none() {
            env.set("FLEETLOAD_RUN_ID", &run_id);
        }
        let start_delay = match &args.start_delay {
            Some(d) => parse_start_delay(d)?,
            None if backend == Backend::Ecs => ECS_START_DELAY,
            None if consumers.is_some() => LOCAL_START_DELAY_WITH_CONSUMERS,
            None => LOCAL_START_DELAY,
        };
        let backend = match backend {
            Backend::Local => BackendPlan::Local,
            Backend::Ecs => BackendPlan::Ecs(ecs_source(&args.ecs)?),
        };
        let live = LivePlan::of(
            &args.live,
            env.get("FLEETLOAD_LIVE_INTERVAL")
                .map(|v| (env.origin("FLEETLOAD_LIVE_INTERVAL").unwrap_or("-e"), v)),
        )?;
        Ok(RunPlan {
            tasks: args.tasks,
            run_id,
            env,
            start_delay,
            backend,
            consumers,
            live,
        })
    }
}

/// `--start-delay` as typed: a duration more than 0 and at most [`MAX_START_DELAY`]. A zero delay
/// would leave no time to start the tasks (the start gives up at the start instant); a longer
/// one than the worker accepts would start a fleet whose every task then refuses its start.
fn parse_start_delay(text: &str) -> anyhow::Result<Duration> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "--start-delay {text:?}: {why}; accepted: a duration more than 0s and at most 24h, \
             such as 30s or 2m"
        )
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| refuse(e.to_string()))?;
    if d.is_zero() {
        return Err(refuse("the tasks would have no time to start".into()));
    }
    if d > MAX_START_DELAY {
        return Err(refuse(
            "the workers refuse a start instant more than 24h away".into(),
        ));
    }
    Ok(d)
}

/// The workers' environment from `--env-file`, `-e` and the flags (later ones win).
fn worker_env(args: &RunArgs) -> anyhow::Result<WorkerEnv> {
    let mut env = WorkerEnv::default();
    if let Some(path) = &args.env_file {
        for (k, v, line) in read_env_file(path)? {
            env.set_from(&k, &v, format!("--env-file {} line {line}", path.display()));
        }
    }
    for (k, v) in &args.env {
        env.set(k, v);
    }
    let flags = [
        ("--duration", "FLEETLOAD_DURATION", &args.duration),
        ("--rate", "FLEETLOAD_RATE", &args.rate),
        ("--stages", "FLEETLOAD_STAGES", &args.stages),
        ("--target", "FLEETLOAD_TARGET", &args.target),
        ("--stream", "FLEETLOAD_STREAM", &args.stream),
        ("--topic", "FLEETLOAD_TOPIC", &args.topic),
        ("--report-url", "FLEETLOAD_REPORT_URL", &args.report_url),
        ("--run-id", "FLEETLOAD_RUN_ID", &args.run_id),
        (
            "--live-interval",
            "FLEETLOAD_LIVE_INTERVAL",
            &args.live.live_interval,
        ),
    ];
    for (flag, k, v) in flags {
        if let Some(v) = v {
            env.set_from(k, v, flag.to_string());
        }
    }
    for (k, v) in env.pairs() {
        let from = env.origin(k).unwrap_or("-e");
        if !k.starts_with(PREFIX) {
            anyhow::bail!("{from} {k}: only FLEETLOAD_* variables are passed to the workers (AWS settings come from the launcher's own environment locally, and from the task role on ECS)");
        }
        if k == "FLEETLOAD_TASK_ID" || k == "FLEETLOAD_START_AT" {
            anyhow::bail!("{from} {k}: set by the launcher for each task; remove it (use --start-delay to choose the start)");
        }
        // A CI pipeline's unset variable expands to "": refused by the name the user typed
        // before anything else looks at it (an empty run id would scatter the reports).
        if v.trim().is_empty() {
            let shown = if from.starts_with("--") && !from.starts_with("--env-file") {
                format!("{from} {v:?}")
            } else {
                format!("{from} {k}={v:?}")
            };
            anyhow::bail!("{shown}: empty (an unset variable expands to an empty string); accepted: a value, or leave it out for its default");
        }
    }
    Ok(env)
}

/// The `KEY=VALUE` pairs of an env file, each with its line number. Parsed by `dotenvy` (quotes,
/// `export`, comments); a refusal names the file, the line and the key, never the line's text,
/// which may hold a secret.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, usize)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "--env-file {}: cannot read it ({e}); accepted: a readable UTF-8 file of KEY=VALUE lines",
            path.display()
        )
    })?;
    let line_of = |needle: &str| {
        text.find(needle)
            .map(|at| text[..at].matches('\n').count() + 1)
    };
    let line_of_key = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|i| i + 1)
    };
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                let line = line_of_key(&k).unwrap_or(0);
                pairs.push((k, v, line));
            }
            Err(dotenvy::Error::LineParse(bad, column)) => {
                let first = bad.lines().next().unwrap_or("");
                let line = line_of(first).unwrap_or(0);
                let key = first
                    .trim_start()
                    .trim_start_matches("export ")
                    .split(|c: char| c == '=' || c.is_whitespace())
                    .next()
                    .filter(|k| !k.is_empty())
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "--env-file {} line {line}{key}: not KEY=VALUE (column {}); accepted: \
                     KEY=VALUE lines, # comments, blank lines, values quoted with ' or \"",
                    path.display(),
                    column + 1
                );
            }
            Err(e) => anyhow::bail!("--env-file {}: {e}", path.display()),
        }
    }
    Ok(pairs)
}

/// A local report location made absolute: the workers run in other processes, maybe in another
/// directory.
pub fn absolute_report_url(url: ReportUrl) -> anyhow::Result<ReportUrl> {
    Ok(match url {
        ReportUrl::Local(p) if p.is_relative() => {
            let relative: PathBuf = p
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            ReportUrl::Local(
                std::env::current_dir()
                    .context("cannot read the current directory")?
                    .join(relative),
            )
        }
        other => other,
    })
}

/// Where the ECS settings of `run` or `stop` come from: `--stack`, or the flags (validated now,
/// before any AWS call).
pub fn ecs_source(args: &EcsArgs) -> anyhow::Result<EcsSource> {
    if let Some(name) = &args.stack {
        return Ok(EcsSource::Stack(name.clone()));
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
    let cfg = EcsConfig {
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
            LaunchType::Fargate => "FARGATE".to_string(),
            LaunchType::Ec2 => "EC2".to_string(),
        }),
        capacity_providers: args.capacity_providers.clone(),
        platform_version: args.platform_version.clone(),
    };
    cfg.validate()?;
    Ok(EcsSource::Flags(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_delay_is_more_than_zero_and_at_most_a_day() {
        assert_eq!(parse_start_delay("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_start_delay("24h").unwrap(), MAX_START_DELAY);
        assert_eq!(
            parse_start_delay("500ms").unwrap(),
            Duration::from_millis(500)
        );
        for bad in ["0s", "0", "25h", "24h 1s", "soon", "-5s", ""] {
            let msg = format!("{:#}", parse_start_delay(bad).unwrap_err());
            assert!(
                msg.starts_with(&format!("--start-delay {bad:?}: "))
                    && msg.contains("accepted: a duration more than 0s and at most 24h")
                    && !msg.contains('\n'),
                "{bad}: {msg}"
            );
        }
    }
}
