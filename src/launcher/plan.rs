//! `launcher run`'s arguments resolved into one plan: the workers' environment (from
//! `--env-file`, `-e` and the flags, later ones winning), the run id, the start delay, the backend
//! and, for ECS, where its settings come from. Everything that can be checked before a task
//! starts is checked here; the backends then take the plan as it is.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::launcher::cli::{Backend, EcsArgs, LaunchType, RunArgs};
use crate::launcher::fleet::ecs::EcsConfig;
use crate::model::input::PREFIX;
use crate::model::report_url::ReportUrl;
use crate::model::scenario::{generate_run_id, Scenario};
use crate::worker::sink::Target;

/// Local tasks start this long after launch unless `--start-delay` says otherwise.
pub const LOCAL_START_DELAY: Duration = Duration::from_secs(3);
/// ECS tasks start this long after launch: Fargate takes tens of seconds to pull and start.
pub const ECS_START_DELAY: Duration = Duration::from_secs(120);
/// The longest `--start-delay`: the worker refuses a FLEETLOAD_START_AT further away than this.
pub const MAX_START_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Report location of a local run that names none (the worker's own default).
pub const DEFAULT_REPORT_URL: &str = "./fleetload-runs";

/// The workers' environment: `FLEETLOAD_*` pairs, each name once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerEnv(Vec<(String, String)>);

impl WorkerEnv {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_string(), value.to_string()));
    }

    /// The pairs, in the order they were set.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Validates the environment with the worker's own rules, as one task would see it.
    pub fn validate(&self) -> anyhow::Result<Scenario> {
        let mut probe = self.0.clone();
        probe.push(("FLEETLOAD_TASK_ID".into(), "probe".into()));
        probe.push(("FLEETLOAD_START_AT".into(), Utc::now().to_rfc3339()));
        Scenario::from_env(probe)
            .and_then(|s| Target::check(&s).map(|()| s))
            .map_err(|e| anyhow::anyhow!("the workers' scenario is not valid: {e}"))
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
        let mut env = worker_env(args)?;
        let run_id = env
            .get("FLEETLOAD_RUN_ID")
            .map(str::to_string)
            .unwrap_or_else(generate_run_id);
        env.set("FLEETLOAD_RUN_ID", &run_id);
        let start_delay = match &args.start_delay {
            Some(d) => parse_start_delay(d)?,
            None if backend == Backend::Ecs => ECS_START_DELAY,
            None => LOCAL_START_DELAY,
        };
        let backend = match backend {
            Backend::Local => BackendPlan::Local,
            Backend::Ecs => BackendPlan::Ecs(ecs_source(&args.ecs)?),
        };
        Ok(RunPlan {
            tasks: args.tasks,
            run_id,
            env,
            start_delay,
            backend,
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
        let iter = dotenvy::from_path_iter(path)
            .with_context(|| format!("--env-file {}: cannot read it", path.display()))?;
        for item in iter {
            let (k, v) = item.with_context(|| {
                format!("--env-file {}: a line is not KEY=VALUE", path.display())
            })?;
            env.set(&k, &v);
        }
    }
    for (k, v) in &args.env {
        env.set(k, v);
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
            env.set(k, v);
        }
    }
    for (k, _) in env.pairs() {
        if !k.starts_with(PREFIX) {
            anyhow::bail!("-e/--env-file {k}: only FLEETLOAD_* variables are passed to the workers (AWS settings come from the launcher's own environment locally, and from the task role on ECS)");
        }
        if k == "FLEETLOAD_TASK_ID" || k == "FLEETLOAD_START_AT" {
            anyhow::bail!("{k} is set by the launcher for each task; remove it (use --start-delay to choose the start)");
        }
    }
    Ok(env)
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
