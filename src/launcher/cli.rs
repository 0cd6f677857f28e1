//! The launcher's command line as the user typed it (clap). Nothing outside this module sees a
//! clap type: `launcher::plan` turns `run`'s arguments into one resolved plan.
//! Scenario values stay text here; the worker's own scenario rules validate them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::launcher::fleet::ecs::CapacityProvider;
use crate::model::input::{is_secret_name, redact_values};
use crate::model::trace::MAX_CONSUMERS;

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
    /// Compare a run with another: every metric's change, its interval from the runs' own
    /// noise, and a verdict (regressed, improved, within noise).
    Compare(CompareArgs),
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

/// `--capacity-provider NAME[:WEIGHT[:BASE]]`: parsed and range-checked by the ECS
/// configuration's own rules, so the flag and the stack outputs accept the same text.
fn parse_capacity_provider(text: &str) -> Result<CapacityProvider, String> {
    CapacityProvider::parse_entry(text).map_err(|e| e.to_string())
}

/// `--tasks N`: a whole number from 1 (the local backend's own limit is checked with the plan,
/// once the backend is known). Negative numbers reach here, so they get the range too.
fn parse_tasks(text: &str) -> Result<u32, String> {
    whole_number(text, u32::MAX as u64).map(|n| n as u32)
}

/// `--consumers M`: a whole number from 1 to [`MAX_CONSUMERS`].
fn parse_consumers(text: &str) -> Result<u32, String> {
    whole_number(text, MAX_CONSUMERS as u64).map(|n| n as u32)
}

/// `--expected-tasks N`: a whole number from 1 (a run of 0 tasks has nothing to merge).
fn parse_expected_tasks(text: &str) -> Result<u64, String> {
    whole_number(text, u64::MAX)
}

fn whole_number(text: &str, max: u64) -> Result<u64, String> {
    let accepted = format!("accepted: a whole number from 1 to {max}");
    match text.trim().parse::<i128>() {
        Ok(n) if (1..=max as i128).contains(&n) => Ok(n as u64),
        Ok(_) => Err(format!("out of range; {accepted}")),
        Err(_) => Err(format!("not a whole number; {accepted}")),
    }
}

/// `--min-effect 5%`: a percentage (or a fraction without %), 0–1000 %.
fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (digits, scale) = match t.strip_suffix('%') {
        Some(d) => (d.trim(), 0.01),
        None => (t, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale <= 10.0 => Ok(v * scale),
        _ => Err(format!(
            "{text:?} is not a percentage; accepted: e.g. 5% (or 0.05), from 0 to 1000%"
        )),
    }
}

/// `--min-share-effect 0.01pp`: percentage points of a share (`0.01pp` or `0.01%`), or a
/// fraction without a unit, 0–100 points.
fn parse_points(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (digits, scale) = match t.strip_suffix("pp").or_else(|| t.strip_suffix('%')) {
        Some(d) => (d.trim(), 0.01),
        None => (t, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale <= 1.0 => Ok(v * scale),
        _ => Err(format!(
            "{text:?} is not a number of percentage points; accepted: e.g. 0.01pp (or 0.0001), \
             from 0 to 100pp"
        )),
    }
}

/// `--bootstrap-resamples N`: 100 to 100,000.
fn parse_resamples(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (100..=100_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of resamples; accepted: a whole number from 100 to 100000"
        )),
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        // What was typed may be a secret's value without its name: not quoted back.
        Some(_) => Err("no KEY before the = (e.g. -e FLEETLOAD_PAYLOAD=sensor)".to_string()),
        None => Err(format!(
            "{text:?} is not KEY=VALUE (e.g. -e FLEETLOAD_PAYLOAD=sensor)"
        )),
    }
}

/// `text` (a usage error, which quotes what was typed) without the values of secret variables
/// on the command line `args`: `-e NAME=VALUE` (or `--env=NAME=VALUE`, `--consumer-env=…`) with
/// a secret NAME, and
/// the word after a secret NAME given without `=` (a space typed for the `=`, which clap then
/// reports as an unexpected argument).
pub fn redact_args(text: &str, args: &[String]) -> String {
    let mut secrets = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let arg = ["--env=", "--consumer-env="]
            .iter()
            .find_map(|p| arg.strip_prefix(p))
            .unwrap_or(arg);
        match arg.split_once('=') {
            Some((name, value)) if is_secret_name(name) => secrets.push(value.to_string()),
            None if is_secret_name(arg) && !arg.starts_with('-') => {
                if let Some(next) = args.get(i + 1) {
                    secrets.push(next.clone());
                }
            }
            _ => {}
        }
    }
    redact_values(text, &secrets)
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
            "assign_public_ip", "launch_type", "capacity_providers", "platform_version",
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
    /// A capacity provider strategy entry, repeatable: NAME, NAME:WEIGHT or NAME:WEIGHT:BASE.
    #[arg(
        long = "capacity-provider",
        value_name = "NAME[:WEIGHT[:BASE]]",
        value_parser = parse_capacity_provider
    )]
    pub capacity_providers: Vec<CapacityProvider>,
    /// Fargate platform version, e.g. 1.4.0 (default: ECS's LATEST); Fargate only.
    #[arg(long, value_name = "VERSION")]
    pub platform_version: Option<String>,
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
            || self.platform_version.is_some()
    }
}

/// `launcher run`: what the user typed. Scenario values stay text here; they are validated (with
/// the worker's own scenario rules) before any task starts.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Number of tasks (workers) to start.
    #[arg(long, value_name = "N", value_parser = parse_tasks, allow_negative_numbers = true)]
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
    #[arg(long, allow_hyphen_values = true, value_name = "D")]
    pub duration: Option<String>,
    /// Events per second per task (0 = as fast as the target accepts): FLEETLOAD_RATE.
    #[arg(long, allow_hyphen_values = true, value_name = "R")]
    pub rate: Option<String>,
    /// A load profile instead of --rate/--duration, e.g. 100@30s,ramp:1000@1m: FLEETLOAD_STAGES.
    #[arg(long, allow_hyphen_values = true, value_name = "S", conflicts_with_all = ["duration", "rate"])]
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
    #[arg(long, allow_hyphen_values = true, value_name = "D")]
    pub start_delay: Option<String>,
    /// End to end: start M consumer tasks with the producers, reading what the system under
    /// test wrote (--consume-from); the producers then trace every event.
    #[arg(long, value_name = "M", value_parser = parse_consumers, allow_negative_numbers = true)]
    pub consumers: Option<u32>,
    /// What the consumer tasks read: kinesis:STREAM or kafka:TOPIC (default: the producers' own
    /// stream or topic; with --consumers, 1 consumer when only this is given).
    #[arg(
        long,
        value_name = "kinesis:STREAM|kafka:TOPIC",
        allow_hyphen_values = true
    )]
    pub consume_from: Option<String>,
    /// A variable for the consumer tasks only, repeatable; wins over -e. With
    /// FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS (another cluster) the consumers get none of the
    /// producers' Kafka properties, only their own.
    #[arg(long = "consumer-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub consumer_env: Vec<(String, String)>,
    /// The live view: windows, thresholds that stop the run, metrics.
    #[command(flatten)]
    pub live: LiveArgs,
    /// ECS options.
    #[command(flatten)]
    pub ecs: EcsArgs,
    /// Prices of the cost estimate.
    #[command(flatten)]
    pub cost: CostArgs,
}

/// `--abort-after N`: a whole number of windows from 1 to 1000.
fn parse_abort_after(text: &str) -> Result<u32, String> {
    whole_number(text, 1000).map(|n| n as u32)
}

/// What a run shows and does while it runs: its live windows, the thresholds that stop it, the
/// dashboards it feeds.
#[derive(Debug, Clone, Default, Args)]
pub struct LiveArgs {
    /// How often every task writes a live window and the launcher shows the fleet: a whole
    /// number of seconds (default 10s), or off (FLEETLOAD_LIVE_INTERVAL).
    #[arg(long, value_name = "D|off", allow_hyphen_values = true)]
    pub live_interval: Option<String>,
    /// Stop the run when a --threshold that can be judged live (rate, error_rate, throttled,
    /// latency percentiles, e2e latency, lost) breaks for --abort-after windows in a row;
    /// the merge runs as after Ctrl-C, and the exit code is 1.
    #[arg(long)]
    pub abort_on_fail: bool,
    /// Consecutive broken windows that stop the run (default 3).
    #[arg(
        long,
        value_name = "N",
        requires = "abort_on_fail",
        value_parser = parse_abort_after,
        allow_negative_numbers = true
    )]
    pub abort_after: Option<u32>,
    /// Windows that end within this time of the start are not judged: the warm-up (default 60s).
    #[arg(
        long,
        value_name = "D",
        requires = "abort_on_fail",
        allow_hyphen_values = true
    )]
    pub abort_grace: Option<String>,
    /// Send the fleet's live metrics, repeatable: prometheus:URL (remote write 1.0) or
    /// cloudwatch:NAMESPACE (PutMetricData, dimension RunId).
    #[arg(long = "metrics", value_name = "prometheus:URL|cloudwatch:NAMESPACE")]
    pub metrics: Vec<String>,
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
    /// Compare the run with this earlier run (<REPORT_URL>/<RUN_ID>, merged), read before any
    /// task starts: allows thresholds such as p99<baseline+10%, prints the comparison and
    /// writes merged/compare.json and merged/compare.html.
    #[arg(long, value_name = "REPORT_URL/RUN_ID")]
    pub baseline: Option<String>,
    /// With --baseline: exit 1 when the comparison calls any metric regressed.
    #[arg(long, requires = "baseline")]
    pub fail_on_regression: bool,
    /// How the comparison with --baseline judges the noise.
    #[command(flatten)]
    pub noise: NoiseArgs,
}

/// How a comparison judges a change against the runs' noise.
#[derive(Debug, Clone, Args)]
pub struct NoiseArgs {
    /// A latency or rate change smaller than this is never called regressed or improved,
    /// whatever its interval.
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = parse_percent)]
    pub min_effect: f64,
    /// An error, throttle or unsent share changing by less than this (percentage points) is
    /// never called regressed or improved.
    #[arg(long, value_name = "PP", default_value = "0.01pp", value_parser = parse_points)]
    pub min_share_effect: f64,
    /// Bootstrap replicates behind each interval.
    #[arg(long = "bootstrap-resamples", value_name = "N", default_value = "1000", value_parser = parse_resamples)]
    pub resamples: usize,
    /// Seed of the bootstrap's draws (the same seed gives the same intervals).
    #[arg(long = "bootstrap-seed", value_name = "N", default_value_t = 1)]
    pub seed: u64,
}

impl Default for NoiseArgs {
    fn default() -> Self {
        NoiseArgs {
            min_effect: 0.05,
            min_share_effect: 0.0001,
            resamples: 1000,
            seed: 1,
        }
    }
}

/// What prices a run's cost estimate uses.
#[derive(Debug, Clone, Default, Args)]
pub struct CostArgs {
    /// A price table to use instead of the committed one: JSON of the same shape as
    /// src/launcher/cost/prices.json (source, date, regions → prices); the prices it has win.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// One price for the run's region, repeatable: NAME=USD, e.g.
    /// fargate_x86_vcpu_hour=0.04048 (the names are those of prices.json).
    #[arg(long = "price", value_name = "NAME=USD", value_parser = parse_key_value)]
    pub price: Vec<(String, String)>,
}

/// `launcher compare BASE NEW`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The run compared against: <REPORT_URL>/<RUN_ID>, e.g. s3://bucket/runs/RUN or
    /// ./fleetload-runs/RUN (merged).
    #[arg(value_name = "BASE")]
    pub base: String,
    /// The run judged, likewise.
    #[arg(value_name = "NEW")]
    pub new: String,
    /// Write compare.json and compare.html into this directory (default: NEW's merged/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Exit 1 when any metric is called regressed.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Write a JUnit XML report, one test case per metric.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Open compare.html in the default browser at the end (local files only).
    #[arg(long)]
    pub open: bool,
    /// How the noise is judged.
    #[command(flatten)]
    pub noise: NoiseArgs,
}

/// `launcher merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The run's reports: <REPORT_URL>/<RUN_ID>, e.g. s3://bucket/prefix/RUN or ./fleetload-runs/RUN.
    #[arg(value_name = "REPORT_URL/RUN_ID")]
    pub location: String,
    /// How many tasks the run had; fewer reports make the fleet failed (exit 3).
    #[arg(long, value_name = "N", value_parser = parse_expected_tasks, allow_negative_numbers = true)]
    pub expected_tasks: Option<u64>,
    /// Thresholds, JUnit file and report opening.
    #[command(flatten)]
    pub gate: GateArgs,
    /// Prices of the cost estimate.
    #[command(flatten)]
    pub cost: CostArgs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_compare_and_baseline_flags() {
        let cli = Cli::try_parse_from([
            "launcher",
            "compare",
            "runs/a",
            "runs/b",
            "--min-effect",
            "10%",
            "--min-share-effect",
            "0.05pp",
            "--fail-on-regression",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("compare expected")
        };
        assert_eq!(
            (args.base.as_str(), args.new.as_str()),
            ("runs/a", "runs/b")
        );
        assert!((args.noise.min_effect - 0.1).abs() < 1e-12);
        assert!((args.noise.min_share_effect - 0.0005).abs() < 1e-12);
        assert_eq!(args.noise.resamples, 1000);
        let cli = Cli::try_parse_from([
            "launcher",
            "run",
            "--tasks",
            "1",
            "--baseline",
            "s3://b/runs/r",
            "--fail-on-regression",
            "--threshold",
            "p99<baseline+10%",
            "--price",
            "kinesis_shard_hour=0.02",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(args.gate.baseline.as_deref(), Some("s3://b/runs/r"));
        assert!(args.gate.fail_on_regression);
        assert_eq!(
            args.cost.price,
            vec![("kinesis_shard_hour".into(), "0.02".into())]
        );
        for bad in [
            vec!["launcher", "run", "--tasks", "1", "--fail-on-regression"],
            vec!["launcher", "compare", "a"],
            vec!["launcher", "compare", "a", "b", "--min-effect", "-3%"],
            vec![
                "launcher",
                "compare",
                "a",
                "b",
                "--bootstrap-resamples",
                "5",
            ],
        ] {
            let err = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
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
                weight: 3,
                base: 0,
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
}
