//! The launcher's command line (`run`, `merge`, `stop`), the merge-and-gate step every run ends
//! with, and the exit codes a CI pipeline reads.
//!
//! Exit codes ([`ExitStatus`]): **0** every threshold held; **1** a threshold was broken; **2** bad
//! usage or configuration (clap's own errors, a bad threshold expression, a bad report URL, an
//! unreadable or unwritable report store); **3** the fleet failed (tasks did not start, exited
//! non-zero, or their reports are missing, unreadable or not `completed`).
//!
//! Precedence: 3 beats 1. A run with missing or failed tasks measured only part of the load, so
//! its thresholds say little; it is a failed fleet even when they hold. Both verdicts are
//! printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::html_report;
use crate::merge::{merge_run, write_merged, Merged};
use crate::report::{Outcome, SUMMARY_FILE};
use crate::scenario::ReportUrl;
use crate::store::{merged_dir, tasks_dir, ReportStore};
use crate::summary_table;
use crate::threshold::{self, junit_xml, Threshold, ThresholdResult};

/// How the launcher exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: every threshold held (and the fleet completed).
    Held = 0,
    /// 1: a threshold was broken.
    ThresholdBroken = 1,
    /// 2: bad usage or configuration.
    Usage = 2,
    /// 3: the fleet failed: tasks did not start, exited non-zero, or reports are missing.
    FleetFailed = 3,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit status for an error: [`ExitStatus::FleetFailed`] when a [`FleetFailed`] is in its
    /// chain, otherwise [`ExitStatus::Usage`] (the input or the configuration was wrong).
    pub fn of_error(error: &anyhow::Error) -> ExitStatus {
        if error.chain().any(|e| e.is::<FleetFailed>()) {
            ExitStatus::FleetFailed
        } else {
            ExitStatus::Usage
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// An error meaning the fleet failed (exit code 3) rather than the input being wrong (exit 2):
/// the fleet backends return it (or add it as context) when tasks cannot be started or stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FleetFailed(pub String);

/// `launcher`: starts a fleet of fleetload workers, merges their reports exactly and gates a CI
/// pipeline on thresholds.
#[derive(Debug, Parser)]
#[command(
    name = "launcher",
    version,
    about = "Runs a fleet of fleetload workers (local processes or ECS tasks), merges their \
             reports exactly and checks thresholds",
    after_help = "Exit codes: 0 all thresholds held; 1 a threshold was broken; 2 bad usage or \
                  configuration; 3 the fleet failed (tasks did not start, exited non-zero, or \
                  reports are missing). 3 takes precedence over 1."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The launcher's commands.
// Parsed once per process: boxing `RunArgs` to even out the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start N tasks with the same scenario, wait for them, merge their reports, check thresholds.
    Run(RunArgs),
    /// Merge the task reports of a run that already ended, print them and check thresholds.
    Merge(MergeArgs),
    /// Stop every task of a run (ECS).
    Stop(StopArgs),
}

/// Where the tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Worker processes on this machine.
    Local,
    /// ECS tasks (Fargate or EC2 capacity).
    Ecs,
}

/// The ECS launch type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LaunchType {
    /// Serverless capacity.
    #[value(name = "FARGATE", alias = "fargate")]
    Fargate,
    /// The cluster's EC2 container instances.
    #[value(name = "EC2", alias = "ec2")]
    Ec2,
}

/// One entry of a capacity provider strategy: `NAME[:WEIGHT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityProvider {
    /// The capacity provider's name.
    pub name: String,
    /// Its relative weight (ECS accepts 0–1000); `None` leaves ECS's default.
    pub weight: Option<u32>,
}

/// Largest weight ECS accepts in a capacity provider strategy.
pub const MAX_CAPACITY_PROVIDER_WEIGHT: u32 = 1000;

fn parse_capacity_provider(text: &str) -> Result<CapacityProvider, String> {
    let (name, weight) = match text.split_once(':') {
        Some((name, weight)) => {
            let weight = weight
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= MAX_CAPACITY_PROVIDER_WEIGHT)
                .ok_or_else(|| {
                    format!(
                        "weight {weight:?} is not a whole number from 0 to \
                         {MAX_CAPACITY_PROVIDER_WEIGHT} (accepted: NAME or NAME:WEIGHT)"
                    )
                })?;
            (name, Some(weight))
        }
        None => (text, None),
    };
    if name.is_empty() {
        return Err("empty capacity provider name (accepted: NAME or NAME:WEIGHT)".into());
    }
    Ok(CapacityProvider {
        name: name.to_string(),
        weight,
    })
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE (e.g. -e FLEETLOAD_PAYLOAD=sensor)"
        )),
    }
}

/// ECS options of `run` and `stop`: either `--stack` (read from the project's CloudFormation
/// stack outputs) or the explicit flags.
#[derive(Debug, Clone, Default, Args)]
pub struct EcsArgs {
    /// Read cluster, task definition, container, subnets, security groups and report bucket
    /// from the outputs of this CloudFormation stack.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = [
            "cluster", "task_definition", "container", "subnets", "security_groups",
            "assign_public_ip", "launch_type", "capacity_providers",
        ],
    )]
    pub stack: Option<String>,
    /// ECS cluster name or ARN.
    #[arg(long, value_name = "C")]
    pub cluster: Option<String>,
    /// Task definition (family, family:revision or ARN) whose container runs the worker.
    #[arg(long, value_name = "TD")]
    pub task_definition: Option<String>,
    /// Name of the worker's container in the task definition.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Subnets for awsvpc networking, comma-separated.
    #[arg(long, value_name = "S,..", value_delimiter = ',')]
    pub subnets: Vec<String>,
    /// Security groups for awsvpc networking, comma-separated.
    #[arg(long, value_name = "G,..", value_delimiter = ',')]
    pub security_groups: Vec<String>,
    /// Give each task a public IP (needed in public subnets without a NAT gateway).
    #[arg(long)]
    pub assign_public_ip: bool,
    /// FARGATE or EC2 (not with --capacity-provider).
    #[arg(
        long,
        value_enum,
        value_name = "FARGATE|EC2",
        conflicts_with = "capacity_providers"
    )]
    pub launch_type: Option<LaunchType>,
    /// A capacity provider strategy entry, repeatable: NAME or NAME:WEIGHT.
    #[arg(
        long = "capacity-provider",
        value_name = "NAME[:WEIGHT]",
        value_parser = parse_capacity_provider
    )]
    pub capacity_providers: Vec<CapacityProvider>,
}

impl EcsArgs {
    /// Whether any ECS option was given (then the default backend is ECS).
    pub fn any_given(&self) -> bool {
        self.stack.is_some()
            || self.cluster.is_some()
            || self.task_definition.is_some()
            || self.container.is_some()
            || !self.subnets.is_empty()
            || !self.security_groups.is_empty()
            || self.assign_public_ip
            || self.launch_type.is_some()
            || !self.capacity_providers.is_empty()
    }
}

/// `launcher run`: what the user typed. Scenario values stay text here; they are validated (with
/// the worker's own scenario rules) before any task starts.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Number of tasks (workers) to start.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub tasks: u32,
    /// Where the tasks run; default: ecs when an ECS option is given, else local.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// A worker environment variable, repeatable (e.g. -e FLEETLOAD_PAYLOAD=sensor).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// A file of KEY=VALUE lines for the workers (# comments and blank lines ignored).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// How long each task produces (30s, 5m, 1h): FLEETLOAD_DURATION.
    #[arg(long, value_name = "D")]
    pub duration: Option<String>,
    /// Events per second per task (0 = as fast as the target accepts): FLEETLOAD_RATE.
    #[arg(long, value_name = "R")]
    pub rate: Option<String>,
    /// A load profile instead of --rate/--duration, e.g. 100@30s,ramp:1000@1m: FLEETLOAD_STAGES.
    #[arg(long, value_name = "S", conflicts_with_all = ["duration", "rate"])]
    pub stages: Option<String>,
    /// kinesis, kafka or null: FLEETLOAD_TARGET; locally, none starts an embedded broker.
    #[arg(long, value_name = "T")]
    pub target: Option<String>,
    /// Kinesis stream name or ARN: FLEETLOAD_STREAM.
    #[arg(long, value_name = "S")]
    pub stream: Option<String>,
    /// Kafka topic: FLEETLOAD_TOPIC.
    #[arg(long, value_name = "T")]
    pub topic: Option<String>,
    /// Where reports go: s3://bucket/prefix, file:///dir or a path (FLEETLOAD_REPORT_URL).
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,
    /// The run's id (default: generated).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Thresholds, JUnit file and report opening.
    #[command(flatten)]
    pub gate: GateArgs,
    /// How long after launching the tasks they all start producing (FLEETLOAD_START_AT).
    #[arg(long, value_name = "D")]
    pub start_delay: Option<String>,
    /// ECS options.
    #[command(flatten)]
    pub ecs: EcsArgs,
}

/// What every run ends with: the CI gate and what to do with the merged report.
#[derive(Debug, Clone, Default, Args)]
pub struct GateArgs {
    /// A CI gate, repeatable: p99<250ms, error_rate<0.1%, rate>=9500/s …
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Write a JUnit XML report of the thresholds and the fleet's coverage here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Open merged/report.html in the default browser at the end (local reports only).
    #[arg(long)]
    pub open: bool,
}

/// `launcher merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The run's reports: <REPORT_URL>/<RUN_ID>, e.g. s3://bucket/prefix/RUN or ./fleetload-runs/RUN.
    #[arg(value_name = "REPORT_URL/RUN_ID")]
    pub location: String,
    /// How many tasks the run had; fewer reports make the fleet failed (exit 3).
    #[arg(long, value_name = "N")]
    pub expected_tasks: Option<u64>,
    /// Thresholds, JUnit file and report opening.
    #[command(flatten)]
    pub gate: GateArgs,
}

/// `launcher stop`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The run whose tasks to stop.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// ECS options (where the run's tasks are).
    #[command(flatten)]
    pub ecs: EcsArgs,
}

/// What the fleet backend reports once every task of a `run` has ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Where the tasks wrote their reports.
    pub report_url: ReportUrl,
    /// Tasks asked for (`--tasks`).
    pub tasks_requested: u64,
    /// Ids of the tasks that were started, as their report directories are named (their
    /// FLEETLOAD_TASK_ID); fewer than requested when some could not be started.
    pub task_ids: Vec<String>,
    /// What went wrong with the fleet itself, one line each (a task that could not be started,
    /// exited non-zero, was killed, did not stop); empty when all went well. Any entry makes
    /// the run a failed fleet (exit 3).
    pub problems: Vec<String>,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => run_command(&args).await,
        Command::Merge(args) => merge_command(&args).await,
        Command::Stop(args) => {
            stop_fleet(&args).await?;
            Ok(ExitStatus::Held)
        }
    }
}

async fn run_command(args: &RunArgs) -> anyhow::Result<ExitStatus> {
    // Thresholds are checked before any task starts: a typo must not cost a fleet.
    let thresholds = threshold::parse_all(&args.gate.thresholds)?;
    let outcome = start_fleet(args).await?;
    let store = ReportStore::open(&outcome.report_url).await?;
    let merged = merge_run(
        &store,
        &outcome.run_id,
        Some(outcome.task_ids.clone()),
        Some(outcome.tasks_requested),
    )
    .await?;
    gate(
        &store,
        &outcome.run_id,
        &merged,
        &thresholds,
        args.gate.junit.as_deref(),
        &outcome.problems,
        args.gate.open,
    )
    .await
}

/// Starts the fleet and waits for it.
async fn start_fleet(args: &RunArgs) -> anyhow::Result<RunOutcome> {
    crate::fleet::run(args).await
}

/// Stops every task of a run.
async fn stop_fleet(args: &StopArgs) -> anyhow::Result<()> {
    crate::fleet::stop(args).await
}

async fn merge_command(args: &MergeArgs) -> anyhow::Result<ExitStatus> {
    let thresholds = threshold::parse_all(&args.gate.thresholds)?;
    let (url, run_id) = parse_run_location(&args.location)?;
    let store = ReportStore::open(&url).await?;
    let merged = merge_run(&store, &run_id, None, args.expected_tasks).await?;
    gate(
        &store,
        &run_id,
        &merged,
        &thresholds,
        args.gate.junit.as_deref(),
        &[],
        args.gate.open,
    )
    .await
}

/// Splits `<REPORT_URL>/<RUN_ID>`: the last path segment is the run id, the rest the report URL.
pub fn parse_run_location(text: &str) -> anyhow::Result<(ReportUrl, String)> {
    let accepted = "accepted: <REPORT_URL>/<RUN_ID>, e.g. s3://bucket/prefix/RUN_ID, \
                    file:///dir/RUN_ID or ./fleetload-runs/RUN_ID";
    let trimmed = text.trim_end_matches('/');
    let Some((url, run_id)) = trimmed.rsplit_once('/') else {
        anyhow::bail!("{text:?} names no run: {accepted}");
    };
    if run_id.is_empty()
        || run_id == "."
        || run_id == ".."
        || url.ends_with(':')
        || url.ends_with(":/")
    {
        anyhow::bail!("{text:?} names no run: {accepted}");
    }
    // `file:///RUN` names run RUN in the root directory.
    let url = if url == "file://" { "file:///" } else { url };
    let url = if url.is_empty() { "/" } else { url };
    let report_url = ReportUrl::parse(url)
        .with_context(|| format!("{text:?} is not a run location ({accepted})"))?;
    Ok((report_url, run_id.to_string()))
}

/// Writes the merged report, prints the summary, checks the thresholds, writes the JUnit file
/// and decides the exit status.
async fn gate(
    store: &ReportStore,
    run_id: &str,
    merged: &Merged,
    thresholds: &[Threshold],
    junit: Option<&Path>,
    fleet_problems: &[String],
    open: bool,
) -> anyhow::Result<ExitStatus> {
    let summary = &merged.summary;
    let reported = summary.merge.as_ref().map_or(0, |m| m.tasks_reported);
    let mut html_key = None;
    let location = if reported == 0 {
        // Nothing to merge: most likely a wrong run id or URL. Do not create a run directory.
        format!(
            "not written: no task report under {}",
            store.display_url(&format!("{}/", tasks_dir(run_id)))
        )
    } else {
        write_merged(store, run_id, merged).await.with_context(|| {
            format!(
                "could not write the merged report to {}",
                store.display_url(&merged_dir(run_id))
            )
        })?;
        let key = format!("{}/{}", merged_dir(run_id), html_report::REPORT_FILE);
        let results = threshold::evaluate(thresholds, summary);
        let html = html_report::render_with_fleet_problems(merged, &results, fleet_problems);
        store
            .put(&key, html.into_bytes(), "text/html")
            .await
            .with_context(|| {
                format!(
                    "could not write the HTML report to {}",
                    store.display_url(&key)
                )
            })?;
        html_key = Some(key);
        store.display_url(&format!("{}/{SUMMARY_FILE}", merged_dir(run_id)))
    };

    let results: Vec<ThresholdResult> = threshold::evaluate(thresholds, summary);
    print!("{}", summary_table::render(summary, &results, &location));
    if let Some(key) = &html_key {
        println!("html report: {}", store.display_url(key));
    }
    if open {
        match &html_key {
            Some(key) => println!("{}", html_report::open_from_store(store, key)),
            None => println!("html report not opened: no report was written"),
        }
    }

    if let Some(path) = junit {
        let xml = junit_xml(&results, summary, &format!("fleetload {run_id}"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        std::fs::write(path, xml)
            .with_context(|| format!("could not write the JUnit report {}", path.display()))?;
    }

    let broken: Vec<&ThresholdResult> = results.iter().filter(|r| !r.held).collect();
    for problem in fleet_problems {
        println!("fleet problem: {problem}");
    }
    let fleet_reason = match &summary.outcome {
        Outcome::Completed if fleet_problems.is_empty() => None,
        Outcome::Completed => Some(format!("{} fleet problem(s)", fleet_problems.len())),
        Outcome::Failed { reason } => Some(reason.clone()),
        Outcome::Interrupted { signal } => Some(format!("interrupted by {signal}")),
    };
    let thresholds_verdict = if broken.is_empty() {
        format!("{} of {} thresholds held", results.len(), results.len())
    } else {
        let list: Vec<String> = broken
            .iter()
            .map(|r| format!("{} (measured {})", r.expression, r.measured_text))
            .collect();
        format!(
            "{} of {} thresholds broken: {}",
            broken.len(),
            results.len(),
            list.join(", ")
        )
    };
    let status = match (&fleet_reason, broken.is_empty()) {
        (Some(_), _) => ExitStatus::FleetFailed,
        (None, false) => ExitStatus::ThresholdBroken,
        (None, true) => ExitStatus::Held,
    };
    match &fleet_reason {
        Some(reason) => println!(
            "result: FLEET FAILED (exit {}): {reason}; {thresholds_verdict}",
            status.code()
        ),
        None => println!(
            "result: {} (exit {}): {thresholds_verdict}",
            if broken.is_empty() {
                "PASSED"
            } else {
                "THRESHOLD BROKEN"
            },
            status.code()
        ),
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_run_flags() {
        let cli = Cli::try_parse_from([
            "launcher",
            "run",
            "--tasks",
            "20",
            "-e",
            "FLEETLOAD_KEYS=5000",
            "--rate",
            "1000",
            "--threshold",
            "p99<250ms",
            "--threshold",
            "rate>=9.5k/s",
            "--subnets",
            "subnet-a,subnet-b",
            "--capacity-provider",
            "FARGATE_SPOT:3",
            "--capacity-provider",
            "FARGATE",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(args.tasks, 20);
        assert_eq!(args.env, vec![("FLEETLOAD_KEYS".into(), "5000".into())]);
        assert_eq!(args.gate.thresholds.len(), 2);
        assert_eq!(args.ecs.subnets, vec!["subnet-a", "subnet-b"]);
        assert_eq!(
            args.ecs.capacity_providers[0],
            CapacityProvider {
                name: "FARGATE_SPOT".into(),
                weight: Some(3)
            }
        );
        assert!(args.ecs.any_given());
        for bad in [
            vec!["launcher", "run"],
            vec!["launcher", "run", "--tasks", "0"],
            vec!["launcher", "run", "--tasks", "1", "-e", "novalue"],
            vec![
                "launcher",
                "run",
                "--tasks",
                "1",
                "--stack",
                "s",
                "--cluster",
                "c",
            ],
            vec![
                "launcher", "run", "--tasks", "1", "--stages", "1@1s", "--rate", "5",
            ],
            vec![
                "launcher",
                "run",
                "--tasks",
                "1",
                "--launch-type",
                "EC2",
                "--capacity-provider",
                "x",
            ],
            vec![
                "launcher",
                "run",
                "--tasks",
                "1",
                "--capacity-provider",
                "x:5000",
            ],
        ] {
            let err = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "launcher",
            "run",
            "--tasks",
            "2",
            "--launch-type",
            "fargate",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(args.ecs.launch_type, Some(LaunchType::Fargate));
    }

    #[test]
    fn splits_run_locations() {
        let (url, run) = parse_run_location("s3://bucket/some/prefix/run-1").unwrap();
        assert_eq!(
            url,
            ReportUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(run, "run-1");
        let (url, run) = parse_run_location("s3://bucket/run-1/").unwrap();
        assert_eq!(url.to_string(), "s3://bucket");
        assert_eq!(run, "run-1");
        let (url, run) = parse_run_location("./fleetload-runs/r").unwrap();
        assert_eq!(url, ReportUrl::Local("./fleetload-runs".into()));
        assert_eq!(run, "r");
        let (url, _) = parse_run_location("file:///tmp/runs/r").unwrap();
        assert_eq!(url, ReportUrl::Local("/tmp/runs".into()));
        let (url, _) = parse_run_location("/r").unwrap();
        assert_eq!(url, ReportUrl::Local("/".into()));
        for bad in [
            "run-only",
            "s3://bucket",
            "s3://bucket/",
            "ftp://host/dir/run",
            "s3://B/run",
            "dir/..",
        ] {
            let err = parse_run_location(bad).unwrap_err();
            assert!(
                format!("{err:#}").contains("<REPORT_URL>/<RUN_ID>"),
                "{bad}: {err:#}"
            );
        }
    }

    #[test]
    fn exit_status_of_errors() {
        let usage = anyhow::anyhow!("bad");
        assert_eq!(ExitStatus::of_error(&usage), ExitStatus::Usage);
        let fleet = anyhow::Error::new(FleetFailed("RunTask failed".into())).context("run");
        assert_eq!(ExitStatus::of_error(&fleet), ExitStatus::FleetFailed);
        assert_eq!(ExitStatus::FleetFailed.code(), 3);
    }
}
