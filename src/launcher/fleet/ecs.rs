//! The ECS backend: runs the worker image as ECS tasks (Fargate, Fargate Spot or EC2 capacity).
//!
//! [`EcsFleet::start`] fans a run out with RunTask — at most [`RUN_TASK_MAX_COUNT`] tasks per
//! call, every call with the same container overrides — and keeps asking until the whole fleet
//! runs or the caller's deadline passes. Placement failures (`failures[]` in a successful answer)
//! and throttling are data: they are counted, reported, and only the missing tasks are asked for
//! again. Every task carries the run id in `startedBy` and in the `fleetload:run-id` tag, so
//! [`EcsFleet::list_run`] finds a run's tasks again from nothing but its id (`launcher stop`).
//! [`EcsFleet::describe`], [`EcsFleet::stop`] and [`EcsFleet::wait_stopped`] follow the tasks
//! to their end.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    DesiredStatus, KeyValuePair, LaunchType, NetworkConfiguration, PropagateTags, Tag,
    TaskOverride,
};
use aws_smithy_types::retry::RetryConfig;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde::Serialize;

/// ECS starts at most 10 tasks per RunTask call (`count` is 1–10); larger fleets take several
/// calls, all with the same overrides.
pub const RUN_TASK_MAX_COUNT: u32 = 10;

/// DescribeTasks accepts at most 100 task ARNs per call.
pub const DESCRIBE_TASKS_MAX: usize = 100;

/// RunTask rejects overrides whose JSON (all fields combined, as sent) exceeds 8192 bytes. The
/// worker's whole scenario travels in the environment override, so a long stage list or an
/// inline certificate can hit this; it is checked before the first call, not discovered by it.
pub const OVERRIDES_MAX_BYTES: usize = 8192;

/// ECS's `startedBy` holds up to 36 letters, digits, hyphens and underscores. The run id goes
/// there, because ListTasks can filter on it (that is how `launcher stop RUN_ID` works).
pub const STARTED_BY_MAX_LEN: usize = 36;

/// An awsvpc network configuration takes at most 16 subnets.
pub const AWSVPC_MAX_SUBNETS: usize = 16;

/// An awsvpc network configuration takes at most 5 security groups.
pub const AWSVPC_MAX_SECURITY_GROUPS: usize = 5;

/// A capacity provider strategy holds at most 20 providers.
pub const CAPACITY_PROVIDERS_MAX: usize = 20;

/// StopTask keeps at most 255 characters of its `reason`.
pub const STOP_REASON_MAX_CHARS: usize = 255;

/// Tag key that carries the run id on every task (with ECS managed tags, also on its ENI).
pub const RUN_ID_TAG: &str = "fleetload:run-id";

/// StopTask calls in flight at once: enough to stop a few hundred tasks in seconds, few enough
/// to stay inside the ECS API's request rate for the account.
const STOP_CONCURRENCY: usize = 8;

/// `failures[].reason` values of RunTask that mean "not now" rather than "never": the cluster is
/// out of memory, CPU, ports or ENIs (`RESOURCE:*`), an agent is disconnected (`AGENT`), or
/// Fargate has no capacity at the moment ("Capacity is unavailable at this time…"), which the
/// "capacity" substring catches. Everything else (`ATTRIBUTE`, `MISSING`, `LOCATION`, …) is a
/// configuration problem that retrying cannot fix.
const RETRYABLE_FAILURE_PREFIXES: &[&str] = &["RESOURCE:", "AGENT"];

/// Reason recorded when RunTask starts fewer tasks than asked without any `failures[]` entry (not
/// documented to happen; retried like a placement failure).
const UNEXPLAINED_SHORTFALL: &str = "(RunTask started fewer tasks than asked and gave no reason)";

/// Error codes that mean "too many requests, or the service had a bad moment": the call did not
/// start anything and may be sent again.
const RETRYABLE_ERROR_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
];

/// One entry of a capacity provider strategy, e.g. `FARGATE_SPOT` with weight 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityProvider {
    /// Capacity provider name: `FARGATE`, `FARGATE_SPOT`, or a cluster's own (Auto Scaling) one.
    pub name: String,
    /// Relative share of the tasks beyond `base` (0–1000).
    pub weight: u32,
    /// Tasks placed on this provider before weights apply (0–100000; one provider at most).
    pub base: u32,
}

impl FromStr for CapacityProvider {
    type Err = EcsConfigError;

    /// Parses `NAME[:WEIGHT[:BASE]]`, e.g. `FARGATE_SPOT:3` or `FARGATE:1:2`; weight defaults
    /// to 1 and base to 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| EcsConfigError::CapacityProvider {
            given: s.to_string(),
            why: why.to_string(),
        };
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        let weight = match parts.next() {
            None => 1,
            Some(w) => w
                .trim()
                .parse()
                .map_err(|_| bad("the weight is not a whole number"))?,
        };
        let base = match parts.next() {
            None => 0,
            Some(b) => b
                .trim()
                .parse()
                .map_err(|_| bad("the base is not a whole number"))?,
        };
        if parts.next().is_some() {
            return Err(bad("there are more than three `:`-separated parts"));
        }
        Ok(CapacityProvider {
            name: name.to_string(),
            weight,
            base,
        })
    }
}

impl CapacityProvider {
    /// Parses `NAME[:WEIGHT[:BASE]]` and checks the entry's own ranges (weight 0–1000, base
    /// 0–100000); what depends on the other entries is checked by [`EcsConfig::validate`].
    pub fn parse_entry(text: &str) -> Result<Self, EcsConfigError> {
        let c: CapacityProvider = text.parse()?;
        c.check().map_err(|why| EcsConfigError::CapacityProvider {
            given: text.to_string(),
            why,
        })?;
        Ok(c)
    }

    /// What is wrong with this entry on its own, if anything.
    fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("the name is empty".into());
        }
        if self.weight > 1000 {
            return Err(format!("weight {} is over 1000", self.weight));
        }
        if self.base > 100_000 {
            return Err(format!("base {} is over 100000", self.base));
        }
        Ok(())
    }
}

impl fmt::Display for CapacityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.name, self.weight, self.base)
    }
}

/// Where and how the fleet's tasks run. Filled from the launcher's flags or from the outputs of
/// the project's CloudFormation stack (see [`crate::launcher::fleet::stack`]); [`EcsConfig::validate`] is the one
/// place that rejects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsConfig {
    /// Cluster name or ARN (`--cluster`).
    pub cluster: String,
    /// Task definition family, `family:revision` or ARN (`--task-definition`).
    pub task_definition: String,
    /// Name of the worker container in the task definition; the environment override targets it
    /// (`--container`).
    pub container: String,
    /// Subnets of the tasks' awsvpc network interface (`--subnets`). Required for Fargate;
    /// without subnets no network configuration is sent (bridge/host mode on EC2).
    pub subnets: Vec<String>,
    /// Security groups of the awsvpc interface (`--security-groups`); the VPC's default group
    /// when empty.
    pub security_groups: Vec<String>,
    /// Give each task a public IP (needed in public subnets without a NAT gateway to pull the
    /// image and reach the target); Fargate only.
    pub assign_public_ip: bool,
    /// `FARGATE` or `EC2` (`--launch-type`); exclusive with `capacity_providers`. With neither,
    /// the cluster's default capacity provider strategy applies.
    pub launch_type: Option<String>,
    /// Capacity provider strategy (`--capacity-provider NAME[:WEIGHT[:BASE]]`, repeatable), e.g.
    /// `FARGATE_SPOT`; exclusive with `launch_type`.
    pub capacity_providers: Vec<CapacityProvider>,
    /// Fargate platform version (`--platform-version`), `LATEST` when not given.
    pub platform_version: Option<String>,
}

/// A rejected [`EcsConfig`], run id or override: what was given and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsConfigError {
    /// A required value is empty.
    #[error("{flag} is empty: give the {what}")]
    Empty {
        /// The flag, e.g. `--cluster`.
        flag: &'static str,
        /// What it names.
        what: &'static str,
    },
    /// `--launch-type` is neither FARGATE nor EC2.
    #[error("--launch-type {0:?} is not a launch type: use FARGATE or EC2")]
    LaunchType(String),
    /// Both a launch type and a capacity provider strategy.
    #[error(
        "--launch-type {launch_type} and --capacity-provider {providers} cannot be used together \
         (ECS takes a launch type or a capacity provider strategy, not both): give one of them"
    )]
    LaunchTypeAndCapacityProviders {
        /// The launch type given.
        launch_type: String,
        /// The providers given, comma-separated.
        providers: String,
    },
    /// Fargate without subnets.
    #[error(
        "Fargate tasks use awsvpc networking and need at least one subnet: give --subnets \
         subnet-…[,subnet-…] (or --stack NAME, whose SubnetIds output has them)"
    )]
    FargateNeedsSubnets,
    /// Security groups without subnets.
    #[error(
        "--security-groups {0} was given without --subnets: security groups belong to the awsvpc \
         network configuration, which needs --subnets subnet-…[,subnet-…]"
    )]
    SecurityGroupsWithoutSubnets(String),
    /// A list entry is empty (`a,,b`).
    #[error("{flag} {given:?} has an empty entry: give comma-separated ids without blanks")]
    EmptyEntry {
        /// The flag.
        flag: &'static str,
        /// The whole list as given.
        given: String,
    },
    /// Too many subnets or security groups.
    #[error("{flag} has {given} entries; an awsvpc network configuration takes at most {max}")]
    TooMany {
        /// The flag.
        flag: &'static str,
        /// How many were given.
        given: usize,
        /// The ECS limit.
        max: usize,
    },
    /// A capacity provider entry that does not parse or is out of range.
    #[error(
        "--capacity-provider {given:?}: {why}; accepted: NAME[:WEIGHT[:BASE]], e.g. FARGATE_SPOT:3 \
         or FARGATE:1:2, weight 0–1000, base 0–100000 on one provider at most, up to 20 providers"
    )]
    CapacityProvider {
        /// The entry as given.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// A public IP was asked for on EC2.
    #[error(
        "--assign-public-ip works for Fargate tasks only (launch type {0}); EC2 tasks in awsvpc \
         mode cannot get a public IP: use private subnets with a NAT gateway, or Fargate"
    )]
    PublicIpNotFargate(String),
    /// A platform version was given for EC2.
    #[error(
        "--platform-version {version:?} applies to Fargate only, not to launch type {launch_type}"
    )]
    PlatformVersionNotFargate {
        /// The version given.
        version: String,
        /// The launch type given.
        launch_type: String,
    },
    /// The run id cannot be ECS's `startedBy`.
    #[error(
        "run id {0:?} cannot be used as ECS's startedBy, which is how `launcher stop RUN_ID` finds \
         the run's tasks: it must be 1–36 characters, letters, digits, '-' or '_'"
    )]
    RunId(String),
    /// A task count of zero.
    #[error("--tasks 0: a fleet needs at least 1 task")]
    ZeroTasks,
}

impl EcsConfig {
    /// Checks everything that can be checked without calling AWS, so a bad flag fails before the
    /// first task starts.
    pub fn validate(&self) -> Result<(), EcsConfigError> {
        for (flag, value, what) in [
            ("--cluster", &self.cluster, "ECS cluster name or ARN"),
            (
                "--task-definition",
                &self.task_definition,
                "task definition family, family:revision or ARN",
            ),
            (
                "--container",
                &self.container,
                "name of the worker container in the task definition",
            ),
        ] {
            if value.trim().is_empty() {
                return Err(EcsConfigError::Empty { flag, what });
            }
        }
        for (flag, list, max) in [
            ("--subnets", &self.subnets, AWSVPC_MAX_SUBNETS),
            (
                "--security-groups",
                &self.security_groups,
                AWSVPC_MAX_SECURITY_GROUPS,
            ),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(EcsConfigError::EmptyEntry {
                    flag,
                    given: list.join(","),
                });
            }
            if list.len() > max {
                return Err(EcsConfigError::TooMany {
                    flag,
                    given: list.len(),
                    max,
                });
            }
        }
        let launch_type = match &self.launch_type {
            None => None,
            Some(lt) => match lt.to_ascii_uppercase().as_str() {
                "FARGATE" => Some("FARGATE"),
                "EC2" => Some("EC2"),
                _ => return Err(EcsConfigError::LaunchType(lt.clone())),
            },
        };
        if let (Some(lt), false) = (launch_type, self.capacity_providers.is_empty()) {
            return Err(EcsConfigError::LaunchTypeAndCapacityProviders {
                launch_type: lt.to_string(),
                providers: self
                    .capacity_providers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        self.validate_capacity_providers()?;
        if !self.security_groups.is_empty() && self.subnets.is_empty() {
            return Err(EcsConfigError::SecurityGroupsWithoutSubnets(
                self.security_groups.join(","),
            ));
        }
        if self.is_fargate() && self.subnets.is_empty() {
            return Err(EcsConfigError::FargateNeedsSubnets);
        }
        if launch_type == Some("EC2") {
            if self.assign_public_ip {
                return Err(EcsConfigError::PublicIpNotFargate("EC2".into()));
            }
            if let Some(version) = &self.platform_version {
                return Err(EcsConfigError::PlatformVersionNotFargate {
                    version: version.clone(),
                    launch_type: "EC2".into(),
                });
            }
        }
        Ok(())
    }

    fn validate_capacity_providers(&self) -> Result<(), EcsConfigError> {
        let bad = |c: &CapacityProvider, why: String| EcsConfigError::CapacityProvider {
            given: c.to_string(),
            why,
        };
        if self.capacity_providers.len() > CAPACITY_PROVIDERS_MAX {
            let c = &self.capacity_providers[CAPACITY_PROVIDERS_MAX];
            return Err(bad(
                c,
                format!(
                    "{} providers given, at most {CAPACITY_PROVIDERS_MAX} allowed",
                    self.capacity_providers.len()
                ),
            ));
        }
        let mut with_base = None;
        for c in &self.capacity_providers {
            c.check().map_err(|why| bad(c, why))?;
            if c.base > 0 {
                if let Some(first) = with_base.replace(&c.name) {
                    return Err(bad(
                        c,
                        format!("{first} already has a base; only one provider may have one"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the tasks run on Fargate: launch type FARGATE or a FARGATE/FARGATE_SPOT provider.
    pub fn is_fargate(&self) -> bool {
        self.launch_type
            .as_deref()
            .is_some_and(|lt| lt.eq_ignore_ascii_case("FARGATE"))
            || self
                .capacity_providers
                .iter()
                .any(|c| c.name == "FARGATE" || c.name == "FARGATE_SPOT")
    }
}

/// Checks that `run_id` can be ECS's `startedBy` (1–36 letters, digits, `-`, `_`).
pub fn validate_run_id(run_id: &str) -> Result<(), EcsConfigError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= STARTED_BY_MAX_LEN
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EcsConfigError::RunId(run_id.to_string()))
    }
}

/// The container overrides are over [`OVERRIDES_MAX_BYTES`]. Names the largest variables (never
/// their values, which may be secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the container overrides for `{container}` are {size} bytes of JSON, over ECS's limit of \
     {OVERRIDES_MAX_BYTES} bytes (8 KiB) for RunTask overrides; the largest variables: {}; shorten \
     them (e.g. fewer stages, a payload template name instead of an inline one) or drop unneeded \
     ones",
    largest.iter().map(|(n, b)| format!("{n} ({b} bytes)")).collect::<Vec<_>>().join(", ")
)]
pub struct OverridesTooLarge {
    /// The container the overrides target.
    pub container: String,
    /// Serialized size in bytes.
    pub size: usize,
    /// Up to 5 largest variables: name and bytes that `name` and `value` take in the JSON.
    pub largest: Vec<(String, usize)>,
}

/// The `overrides` member of RunTask as it goes on the wire (awsJson 1.1).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOverrides<'a> {
    container_overrides: [WireContainerOverride<'a>; 1],
}

#[derive(Serialize)]
struct WireContainerOverride<'a> {
    name: &'a str,
    environment: Vec<WirePair<'a>>,
}

#[derive(Serialize)]
struct WirePair<'a> {
    name: &'a str,
    value: &'a str,
}

/// Size in bytes of the overrides JSON that RunTask sends for `container` with `env`, i.e.
/// `{"containerOverrides":[{"name":…,"environment":[{"name":…,"value":…},…]}]}`.
pub fn overrides_size(container: &str, env: &[(String, String)]) -> usize {
    let wire = WireOverrides {
        container_overrides: [WireContainerOverride {
            name: container,
            environment: env
                .iter()
                .map(|(name, value)| WirePair { name, value })
                .collect(),
        }],
    };
    serde_json::to_vec(&wire).map_or(usize::MAX, |v| v.len())
}

/// Fails when the overrides for `container` with `env` would exceed [`OVERRIDES_MAX_BYTES`];
/// returns their size otherwise. The launcher can call it while validating the scenario.
pub fn check_overrides(
    container: &str,
    env: &[(String, String)],
) -> Result<usize, OverridesTooLarge> {
    let size = overrides_size(container, env);
    if size <= OVERRIDES_MAX_BYTES {
        return Ok(size);
    }
    let mut largest: Vec<(String, usize)> = env
        .iter()
        .map(|(n, v)| {
            let bytes = serde_json::to_string(n).map_or(0, |s| s.len())
                + serde_json::to_string(v).map_or(0, |s| s.len());
            (n.clone(), bytes)
        })
        .collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(5);
    Err(OverridesTooLarge {
        container: container.to_string(),
        size,
        largest,
    })
}

/// How far [`EcsFleet::start`] has come, for a "started k of N" line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProgress {
    /// Tasks asked for.
    pub requested: u32,
    /// Tasks running or pending so far.
    pub started: u32,
    /// RunTask calls made so far.
    pub calls: u32,
    /// Calls answered with a throttling or server error so far.
    pub throttled: u32,
    /// Placement failures (`failures[]` entries) so far.
    pub failures: u32,
    /// When waiting before the next call: how long, and why.
    pub retrying: Option<(Duration, String)>,
}

/// What [`EcsFleet::start`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Tasks asked for.
    pub requested: u32,
    /// ARNs of the tasks started, in the order RunTask returned them.
    pub tasks: Vec<String>,
    /// The `count` of each RunTask call made, in order (throttled calls included).
    pub calls: Vec<u32>,
    /// Every `failures[]` entry RunTask answered with, aggregated: reason, ARN (of the container
    /// instance or cluster) or else detail, and how many times it came.
    pub failures: Vec<(String, String, u32)>,
    /// Calls answered with a throttling or server error (ThrottlingException, ServerException,
    /// HTTP 429/5xx) or that got no answer, and were sent again.
    pub throttled: u32,
    /// The last error of a call that was retried, if any.
    pub last_error: Option<String>,
}

impl StartReport {
    fn note_failure(&mut self, reason: &str, arn_or_detail: &str) {
        match self
            .failures
            .iter_mut()
            .find(|(r, a, _)| r == reason && a == arn_or_detail)
        {
            Some(entry) => entry.2 += 1,
            None => self
                .failures
                .push((reason.to_string(), arn_or_detail.to_string(), 1)),
        }
    }

    /// Tasks asked for that are not running.
    pub fn missing(&self) -> u32 {
        self.requested
            .saturating_sub(u32::try_from(self.tasks.len()).unwrap_or(u32::MAX))
    }

    fn progress(&self, retrying: Option<(Duration, String)>) -> StartProgress {
        StartProgress {
            requested: self.requested,
            started: u32::try_from(self.tasks.len()).unwrap_or(u32::MAX),
            calls: u32::try_from(self.calls.len()).unwrap_or(u32::MAX),
            throttled: self.throttled,
            failures: self.failures.iter().map(|f| f.2).sum(),
            retrying,
        }
    }

    fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "no placement failures".into();
        }
        self.failures
            .iter()
            .map(|(reason, at, n)| {
                if at.is_empty() {
                    format!("{reason} ×{n}")
                } else {
                    format!("{reason} ×{n} ({at})")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why [`EcsFleet::start`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartStop {
    /// The deadline passed with tasks still missing.
    Deadline,
    /// ECS refused in a way retrying cannot fix (the message says how).
    Fatal(String),
}

/// The fleet did not fully start. Tasks that did start were stopped (all or nothing: a partial
/// fleet would produce a load nobody asked for); `report` tells what happened call by call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StartError {
    /// The run.
    pub run_id: String,
    /// Why it stopped trying.
    pub cause: StartStop,
    /// What was started, called and refused.
    pub report: StartReport,
    /// Outcome of stopping the tasks that had started: `Ok` or the error text.
    pub cleanup: Result<(), String>,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let started = r.tasks.len();
        match &self.cause {
            StartStop::Deadline => write!(
                f,
                "run {}: {} of {} ECS tasks could not start before the start deadline ({} \
                 started, {} RunTask calls, {} throttled); placement failures: {}",
                self.run_id,
                r.missing(),
                r.requested,
                started,
                r.calls.len(),
                r.throttled,
                r.failures_text()
            )?,
            StartStop::Fatal(why) => write!(
                f,
                "run {}: {} of {} ECS tasks could not start: {why} ({} started before, {} RunTask \
                 calls; placement failures: {})",
                self.run_id,
                r.missing(),
                r.requested,
                started,
                r.calls.len(),
                r.failures_text()
            )?,
        }
        if let Some(e) = &r.last_error {
            write!(f, "; last error: {e}")?;
        }
        if started > 0 {
            match &self.cleanup {
                Ok(()) => write!(f, "; the {started} tasks that had started were stopped")?,
                Err(e) => write!(
                    f,
                    "; stopping the {started} tasks that had started failed ({e}): run `launcher \
                     stop {}`",
                    self.run_id
                )?,
            }
        }
        Ok(())
    }
}

/// One task as DescribeTasks sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// Task ARN.
    pub arn: String,
    /// Task id: the last segment of the ARN (what the worker uses as FLEETLOAD_TASK_ID).
    pub id: String,
    /// `PROVISIONING`, `PENDING`, `RUNNING`, …, `STOPPED`; `MISSING` when ECS no longer knows
    /// the task (stopped tasks are forgotten after about an hour).
    pub last_status: String,
    /// `RUNNING` or `STOPPED` (`MISSING` as above).
    pub desired_status: String,
    /// Exit code of the worker container, once it exited.
    pub container_exit_code: Option<i32>,
    /// Why the worker container stopped, if ECS says (e.g. `CannotPullContainerError: …`).
    pub container_reason: Option<String>,
    /// Why the task stopped (e.g. `Essential container in task exited`, a StopTask reason).
    pub stopped_reason: Option<String>,
    /// `EssentialContainerExited`, `UserInitiated`, `TaskFailedToStart`, `SpotInterruption`, …
    pub stop_code: Option<String>,
    /// When the task reached RUNNING.
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached STOPPED.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl TaskState {
    /// STOPPED, or forgotten by ECS: nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        self.last_status == "STOPPED" || self.last_status == "MISSING"
    }
}

/// [`EcsFleet::wait_stopped`] ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} of {} ECS tasks had not stopped after {}: {}",
    not_stopped.len(), total, humantime::format_duration(*timeout),
    not_stopped.iter().map(|t| format!("{} ({})", t.id, t.last_status)).collect::<Vec<_>>().join(", ")
)]
pub struct NotStopped {
    /// How long it waited.
    pub timeout: Duration,
    /// Tasks waited for.
    pub total: usize,
    /// The last state seen of each task not yet stopped.
    pub not_stopped: Vec<TaskState>,
    /// The last state seen of every task.
    pub states: Vec<TaskState>,
}

/// Backoff between RunTask retries: exponential from `initial`, capped at `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryBackoff {
    /// Delay before retry number `attempt` (0-based): "equal jitter", half of the exponential
    /// step plus a random part of the other half, so a fleet of launchers does not retry in
    /// lockstep and no retry comes sooner than half the step.
    fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        let half = step / 2;
        let jitter =
            rand::thread_rng().gen_range(0..=half.as_micros().min(u64::MAX as u128) as u64);
        half + Duration::from_micros(jitter)
    }
}

/// The ECS backend of a run: starts, describes, stops and finds the worker tasks.
#[derive(Debug, Clone)]
pub struct EcsFleet {
    client: aws_sdk_ecs::Client,
    cfg: EcsConfig,
    backoff: RetryBackoff,
    poll_interval: Duration,
}

/// How one RunTask call ended, seen from the retry loop.
enum CallOutcome {
    /// ECS answered: how many tasks it started, and the reasons of this answer's `failures[]`.
    Answered { placed: u32, reasons: Vec<String> },
    /// Throttled, server error or no answer: the same request may go again.
    Retry(String),
    /// Retrying cannot help.
    Fatal(String),
}

impl EcsFleet {
    /// A fleet that calls ECS through `client` (its region, credentials and endpoint) with `cfg`.
    pub fn new(client: aws_sdk_ecs::Client, cfg: EcsConfig) -> Self {
        EcsFleet {
            client,
            cfg,
            backoff: RetryBackoff::default(),
            poll_interval: Duration::from_secs(3),
        }
    }

    /// Replaces the backoff between RunTask retries (tests make it short).
    pub fn with_backoff(mut self, backoff: RetryBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the interval between DescribeTasks polls of [`EcsFleet::wait_stopped`].
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &EcsConfig {
        &self.cfg
    }

    /// Starts `count` tasks of run `run_id` with `env` as the worker container's environment
    /// override (the caller puts FLEETLOAD_RUN_ID, FLEETLOAD_START_AT, FLEETLOAD_REPORT_URL in
    /// it). Calls RunTask with at most [`RUN_TASK_MAX_COUNT`] tasks each; placement failures
    /// (`RESOURCE:*`, `AGENT`, no Fargate capacity) and throttling are retried with exponential
    /// backoff and jitter — for placement failures only the missing tasks are asked for again —
    /// until every task runs or `deadline` passes. A call in flight is not cut off at the
    /// deadline: it may already have started tasks.
    ///
    /// Config, run id and overrides size are checked before any call. When the fleet cannot fully
    /// start, the tasks that did start are stopped and the error is a [`StartError`] (downcast
    /// it for the report). If this future is dropped half-way, the tasks already started are
    /// found by [`EcsFleet::list_run`].
    pub async fn start(
        &self,
        run_id: &str,
        env: &[(String, String)],
        count: u32,
        deadline: Instant,
        on_progress: &(dyn Fn(&StartProgress) + Sync),
    ) -> anyhow::Result<StartReport> {
        self.cfg.validate()?;
        validate_run_id(run_id)?;
        if count == 0 {
            return Err(EcsConfigError::ZeroTasks.into());
        }
        check_overrides(&self.cfg.container, env)?;
        let overrides = self.task_override(env);

        let mut report = StartReport {
            requested: count,
            ..StartReport::default()
        };
        on_progress(&report.progress(None));
        let mut attempt = 0u32;
        // The client token of a request that got no usable answer: sent again unchanged, so a
        // RunTask that did start tasks before its answer was lost is not started twice.
        let mut retry_token: Option<(u32, String)> = None;
        let cause = loop {
            let missing = report.missing();
            if missing == 0 {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                break StartStop::Deadline;
            }
            let (n, token) = retry_token.take().unwrap_or_else(|| {
                (
                    missing.min(RUN_TASK_MAX_COUNT),
                    uuid::Uuid::new_v4().to_string(),
                )
            });
            report.calls.push(n);
            let outcome = self
                .run_task_once(run_id, &overrides, n, &token, &mut report)
                .await;
            let why = match outcome {
                CallOutcome::Fatal(why) => break StartStop::Fatal(why),
                CallOutcome::Retry(err) => {
                    report.throttled += 1;
                    report.last_error = Some(err.clone());
                    retry_token = Some((n, token));
                    err
                }
                CallOutcome::Answered { placed, .. } if placed >= n => {
                    attempt = 0;
                    on_progress(&report.progress(None));
                    continue;
                }
                CallOutcome::Answered { reasons, .. } => {
                    if let Some(reason) = reasons.iter().find(|r| !failure_is_retryable(r)) {
                        break StartStop::Fatal(format!(
                            "RunTask placement failure {reason} cannot be cured by retrying (see \
                             \"API failure reasons\" in the ECS developer guide)"
                        ));
                    }
                    format!("placement failures: {}", report.failures_text())
                }
            };
            let delay = self.backoff.delay(attempt);
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            on_progress(&report.progress(Some((delay.min(left), why))));
            tokio::time::sleep(delay.min(left)).await;
        };

        let cleanup = if report.tasks.is_empty() {
            Ok(())
        } else {
            let reason = format!("fleetload: run {run_id} did not fully start");
            self.stop(&report.tasks, &reason)
                .await
                .map_err(|e| format!("{e:#}"))
        };
        Err(StartError {
            run_id: run_id.to_string(),
            cause,
            report,
            cleanup,
        }
        .into())
    }

    /// The overrides every RunTask call of the run carries.
    fn task_override(&self, env: &[(String, String)]) -> TaskOverride {
        let environment = env
            .iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&self.cfg.container)
                    .set_environment(Some(environment))
                    .build(),
            )
            .build()
    }

    /// One RunTask call for `n` tasks; records started tasks and failures in `report`.
    async fn run_task_once(
        &self,
        run_id: &str,
        overrides: &TaskOverride,
        n: u32,
        token: &str,
        report: &mut StartReport,
    ) -> CallOutcome {
        let cfg = &self.cfg;
        let mut req = self
            .client
            .run_task()
            .cluster(&cfg.cluster)
            .task_definition(&cfg.task_definition)
            .count(i32::try_from(n).unwrap_or(RUN_TASK_MAX_COUNT as i32))
            .started_by(run_id)
            .client_token(token)
            .overrides(overrides.clone())
            .tags(Tag::builder().key(RUN_ID_TAG).value(run_id).build())
            .enable_ecs_managed_tags(true)
            .propagate_tags(PropagateTags::TaskDefinition);
        if !cfg.subnets.is_empty() {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(cfg.subnets.clone()))
                .set_security_groups(
                    (!cfg.security_groups.is_empty()).then(|| cfg.security_groups.clone()),
                )
                .assign_public_ip(if cfg.assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build();
            match vpc {
                Ok(vpc) => {
                    req = req.network_configuration(
                        NetworkConfiguration::builder()
                            .awsvpc_configuration(vpc)
                            .build(),
                    )
                }
                Err(e) => return CallOutcome::Fatal(format!("network configuration: {e}")),
            }
        }
        if let Some(lt) = &cfg.launch_type {
            req = req.launch_type(LaunchType::from(lt.to_ascii_uppercase().as_str()));
        }
        for cp in &cfg.capacity_providers {
            let item = CapacityProviderStrategyItem::builder()
                .capacity_provider(&cp.name)
                .weight(i32::try_from(cp.weight).unwrap_or(i32::MAX))
                .base(i32::try_from(cp.base).unwrap_or(i32::MAX))
                .build();
            match item {
                Ok(item) => req = req.capacity_provider_strategy(item),
                Err(e) => return CallOutcome::Fatal(format!("capacity provider {cp}: {e}")),
            }
        }
        if let Some(pv) = &cfg.platform_version {
            req = req.platform_version(pv);
        }
        // This loop owns the retries (with the deadline, the counts and the client token), so
        // the SDK's own retry layer is turned off for RunTask.
        let sent = req
            .customize()
            .config_override(aws_sdk_ecs::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await;
        match sent {
            Ok(out) => {
                let before = report.tasks.len();
                report.tasks.extend(
                    out.tasks()
                        .iter()
                        .filter_map(|t| t.task_arn().map(str::to_string)),
                );
                let placed = u32::try_from(report.tasks.len() - before).unwrap_or(u32::MAX);
                let mut reasons = Vec::new();
                for f in out.failures() {
                    let reason = f.reason().unwrap_or("(no reason given)");
                    report.note_failure(reason, f.arn().or(f.detail()).unwrap_or_default());
                    reasons.push(reason.to_string());
                }
                if placed < n && reasons.is_empty() {
                    report.note_failure(UNEXPLAINED_SHORTFALL, "");
                    reasons.push(UNEXPLAINED_SHORTFALL.to_string());
                }
                CallOutcome::Answered { placed, reasons }
            }
            Err(e) => classify_run_task_error(&e, cfg),
        }
    }

    /// DescribeTasks for `task_arns` (ARNs or ids), [`DESCRIBE_TASKS_MAX`] per call. Returns one
    /// state per task, in the order given; tasks ECS does not know come back as `MISSING`.
    pub async fn describe(&self, task_arns: &[String]) -> anyhow::Result<Vec<TaskState>> {
        let mut found: HashMap<String, TaskState> = HashMap::new();
        for chunk in task_arns.chunks(DESCRIBE_TASKS_MAX) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.cfg.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "DescribeTasks on cluster {} failed: {}",
                        self.cfg.cluster,
                        sdk_error_text(&e)
                    )
                })?;
            for t in out.tasks() {
                let state = self.task_state(t);
                found.insert(state.id.clone(), state);
            }
            for f in out.failures() {
                let Some(arn) = f.arn() else { continue };
                let id = task_id(arn).to_string();
                found.entry(id.clone()).or_insert_with(|| TaskState {
                    arn: arn.to_string(),
                    id,
                    last_status: "MISSING".into(),
                    desired_status: "MISSING".into(),
                    container_exit_code: None,
                    container_reason: None,
                    stopped_reason: Some(format!(
                        "DescribeTasks: {}{}",
                        f.reason().unwrap_or("MISSING"),
                        f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                    )),
                    stop_code: None,
                    started_at: None,
                    stopped_at: None,
                });
            }
        }
        Ok(task_arns
            .iter()
            .map(|arn| {
                let id = task_id(arn);
                found.remove(id).unwrap_or_else(|| TaskState {
                    arn: arn.clone(),
                    id: id.to_string(),
                    last_status: "MISSING".into(),
                    desired_status: "MISSING".into(),
                    container_exit_code: None,
                    container_reason: None,
                    stopped_reason: Some("DescribeTasks did not return this task".into()),
                    stop_code: None,
                    started_at: None,
                    stopped_at: None,
                })
            })
            .collect())
    }

    fn task_state(&self, t: &aws_sdk_ecs::types::Task) -> TaskState {
        let arn = t.task_arn().unwrap_or_default().to_string();
        let container = t
            .containers()
            .iter()
            .find(|c| c.name() == Some(self.cfg.container.as_str()));
        TaskState {
            id: task_id(&arn).to_string(),
            arn,
            last_status: t.last_status().unwrap_or("UNKNOWN").to_string(),
            desired_status: t.desired_status().unwrap_or("UNKNOWN").to_string(),
            container_exit_code: container.and_then(|c| c.exit_code()),
            container_reason: container.and_then(|c| c.reason()).map(str::to_string),
            stopped_reason: t.stopped_reason().map(str::to_string),
            stop_code: t.stop_code().map(|c| c.as_str().to_string()),
            started_at: t.started_at().and_then(to_chrono),
            stopped_at: t.stopped_at().and_then(to_chrono),
        }
    }

    /// StopTask for each task, a few at a time. A task that is already stopped, or that ECS has
    /// forgotten, counts as stopped. ECS sends SIGTERM, then SIGKILL after the stop timeout.
    pub async fn stop(&self, task_arns: &[String], reason: &str) -> anyhow::Result<()> {
        let reason: String = reason.chars().take(STOP_REASON_MAX_CHARS).collect();
        let failed: Vec<String> = stream::iter(task_arns)
            .map(|arn| {
                let reason = reason.clone();
                async move {
                    let res = self
                        .client
                        .stop_task()
                        .cluster(&self.cfg.cluster)
                        .task(arn)
                        .reason(reason)
                        .send()
                        .await;
                    match res {
                        Ok(_) => None,
                        Err(e) if is_task_gone(&e) => None,
                        Err(e) => Some(format!("{}: {}", task_id(arn), sdk_error_text(&e))),
                    }
                }
            })
            .buffer_unordered(STOP_CONCURRENCY)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "StopTask failed for {} of {} tasks on cluster {}: {}",
                failed.len(),
                task_arns.len(),
                self.cfg.cluster,
                failed.join("; ")
            )
        }
    }

    /// ARNs of the tasks of run `run_id` that are not stopping: ListTasks with `startedBy` and
    /// desired status RUNNING (which also covers PROVISIONING and PENDING tasks), every page.
    pub async fn list_run(&self, run_id: &str) -> anyhow::Result<Vec<String>> {
        validate_run_id(run_id)?;
        let mut pages = self
            .client
            .list_tasks()
            .cluster(&self.cfg.cluster)
            .started_by(run_id)
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .items()
            .send();
        let mut arns = Vec::new();
        while let Some(arn) = pages.next().await {
            arns.push(arn.map_err(|e| {
                anyhow::anyhow!(
                    "ListTasks (startedBy {run_id}) on cluster {} failed: {}",
                    self.cfg.cluster,
                    sdk_error_text(&e)
                )
            })?);
        }
        Ok(arns)
    }

    /// Polls [`EcsFleet::describe`] until every task is STOPPED (or forgotten by ECS), at most
    /// `timeout`. Past it, the error is a [`NotStopped`] naming the tasks still up.
    pub async fn wait_stopped(
        &self,
        arns: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Vec<TaskState>> {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.describe(arns).await?;
            if states.iter().all(TaskState::is_final) {
                return Ok(states);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NotStopped {
                    timeout,
                    total: states.len(),
                    not_stopped: states.iter().filter(|s| !s.is_final()).cloned().collect(),
                    states,
                }
                .into());
            }
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
    }
}

/// Whether a `failures[].reason` of RunTask may clear up by itself.
pub fn failure_is_retryable(reason: &str) -> bool {
    reason == UNEXPLAINED_SHORTFALL
        || RETRYABLE_FAILURE_PREFIXES
            .iter()
            .any(|p| reason.starts_with(p))
        || reason.to_ascii_lowercase().contains("capacity")
}

/// Sorts a RunTask error into retry-the-same-request or give-up, with a message for the user.
fn classify_run_task_error<E>(
    e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
    cfg: &EcsConfig,
) -> CallOutcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = sdk_error_text(e);
    match e {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = e.code().unwrap_or_default();
            if RETRYABLE_ERROR_CODES.contains(&code) || status == 429 || status >= 500 {
                return CallOutcome::Retry(text);
            }
            if matches!(e, SdkError::ResponseError(_)) {
                return CallOutcome::Retry(text);
            }
            let hint = match code {
                "ClusterNotFoundException" => format!(
                    " — check --cluster {:?} (or the stack's ClusterName) and the region",
                    cfg.cluster
                ),
                "AccessDeniedException" | "AccessDenied" => {
                    " — the credentials in use may not call ecs:RunTask, or iam:PassRole on the \
                     task definition's roles"
                        .to_string()
                }
                "InvalidParameterException" | "ClientException" => format!(
                    " — check the task definition {:?}, container {:?}, subnets, security groups \
                     and launch type",
                    cfg.task_definition, cfg.container
                ),
                _ => String::new(),
            };
            CallOutcome::Fatal(format!("RunTask refused: {text}{hint}"))
        }
        SdkError::TimeoutError(_) => CallOutcome::Retry(text),
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => CallOutcome::Retry(text),
        _ => CallOutcome::Fatal(format!("RunTask could not be sent: {text}")),
    }
}

/// `Code: message (HTTP n)` for a service error, the whole error chain otherwise.
fn sdk_error_text<E>(e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e.code(), e.raw_response()) {
        (Some(code), Some(raw)) => format!(
            "{code}: {} (HTTP {})",
            e.message().unwrap_or("no message"),
            raw.status().as_u16()
        ),
        // An answer that is not the protocol's JSON (a proxy's or a crashed server's HTML page):
        // its status and the start of its body say more than the parser's complaint.
        (None, Some(raw)) => {
            let body = raw.body().bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            format!(
                "unreadable answer (HTTP {}): {}",
                raw.status().as_u16(),
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        }
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// StopTask on a task ECS no longer knows answers InvalidParameterException "not found".
fn is_task_gone<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
) -> bool {
    e.code() == Some("InvalidParameterException")
        && e.message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("not found"))
}

/// The task id: the last `/` segment of a task ARN (an id stays as it is).
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fargate() -> EcsConfig {
        EcsConfig {
            cluster: "c".into(),
            task_definition: "td".into(),
            container: "worker".into(),
            subnets: vec!["subnet-1".into()],
            launch_type: Some("FARGATE".into()),
            ..EcsConfig::default()
        }
    }

    #[test]
    fn valid_fargate_config_passes() {
        fargate().validate().unwrap();
        let mut spot = fargate();
        spot.launch_type = None;
        spot.capacity_providers = vec![
            "FARGATE_SPOT:3".parse().unwrap(),
            "FARGATE:1:2".parse().unwrap(),
        ];
        spot.validate().unwrap();
        assert!(spot.is_fargate());
    }

    #[test]
    fn launch_type_and_capacity_providers_are_exclusive() {
        let mut c = fargate();
        c.capacity_providers = vec!["FARGATE_SPOT".parse().unwrap()];
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--launch-type FARGATE") && e.contains("--capacity-provider FARGATE_SPOT"),
            "{e}"
        );
    }

    #[test]
    fn fargate_needs_subnets() {
        let mut c = fargate();
        c.subnets.clear();
        assert_eq!(c.validate(), Err(EcsConfigError::FargateNeedsSubnets));
        assert!(EcsConfigError::FargateNeedsSubnets
            .to_string()
            .contains("--subnets"));
        // EC2 without awsvpc is fine.
        c.launch_type = Some("ec2".into());
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_flag() {
        let mut c = fargate();
        c.launch_type = Some("SPOT".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("use FARGATE or EC2"));
        let mut c = fargate();
        c.cluster = " ".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--cluster is empty"));
        let mut c = fargate();
        c.subnets = vec!["a".into(), String::new()];
        assert!(c.validate().unwrap_err().to_string().contains("--subnets"));
        let mut c = fargate();
        c.security_groups = (0..6).map(|i| format!("sg-{i}")).collect();
        assert!(c.validate().unwrap_err().to_string().contains("at most 5"));
        let mut c = fargate();
        c.launch_type = Some("EC2".into());
        c.assign_public_ip = true;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("Fargate tasks only"));
        let mut c = fargate();
        c.launch_type = None;
        c.capacity_providers = vec![
            "FARGATE:1:1".parse().unwrap(),
            "FARGATE_SPOT:1:1".parse().unwrap(),
        ];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("only one provider"));
        let e = "FARGATE:x"
            .parse::<CapacityProvider>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("weight is not a whole number") && e.contains("NAME[:WEIGHT[:BASE]]"),
            "{e}"
        );
    }

    #[test]
    fn run_id_must_fit_started_by() {
        validate_run_id("20240101T120000Z-ab12_cd").unwrap();
        assert!(validate_run_id("").is_err());
        assert!(validate_run_id("has space").is_err());
        assert!(validate_run_id("a.b").is_err());
        let e = validate_run_id(&"x".repeat(37)).unwrap_err().to_string();
        assert!(e.contains("1–36 characters"), "{e}");
    }

    #[test]
    fn overrides_size_matches_the_wire_json() {
        let env = vec![("FLEETLOAD_RATE".to_string(), "100".to_string())];
        let json = r#"{"containerOverrides":[{"name":"worker","environment":[{"name":"FLEETLOAD_RATE","value":"100"}]}]}"#;
        assert_eq!(overrides_size("worker", &env), json.len());
        // Quotes and newlines are escaped on the wire, and count as such.
        let env = vec![("K".to_string(), "a\"b\n".to_string())];
        assert_eq!(
            overrides_size("w", &env),
            r#"{"containerOverrides":[{"name":"w","environment":[{"name":"K","value":"a\"b\n"}]}]}"#.len()
        );
    }

    #[test]
    fn oversized_overrides_name_the_largest_variables_not_their_values() {
        let env = vec![
            ("FLEETLOAD_TARGET".to_string(), "kinesis".to_string()),
            (
                "FLEETLOAD_KAFKA_SSL_CA_PEM".to_string(),
                "s3cr3t".repeat(1000),
            ),
            ("FLEETLOAD_STAGES".to_string(), "100@1s,".repeat(400)),
        ];
        let e = check_overrides("worker", &env).unwrap_err();
        assert!(e.size > OVERRIDES_MAX_BYTES);
        assert_eq!(e.largest[0].0, "FLEETLOAD_KAFKA_SSL_CA_PEM");
        assert_eq!(e.largest[1].0, "FLEETLOAD_STAGES");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{} bytes", e.size)) && msg.contains("8192 bytes (8 KiB)"),
            "{msg}"
        );
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn retryable_failure_reasons() {
        for r in ["RESOURCE:MEMORY", "RESOURCE:CPU", "RESOURCE:ENI", "AGENT",
                  "Capacity is unavailable at this time. Please try again later or in a different availability zone"] {
            assert!(failure_is_retryable(r), "{r}");
        }
        for r in ["ATTRIBUTE", "MISSING", "LOCATION"] {
            assert!(!failure_is_retryable(r), "{r}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let b = RetryBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 0..30 {
            let d = b.delay(attempt);
            let step = (Duration::from_millis(100) * 2u32.pow(attempt.min(10)))
                .min(Duration::from_secs(1));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn failures_aggregate_by_reason_and_place() {
        let mut r = StartReport {
            requested: 3,
            ..StartReport::default()
        };
        r.note_failure("RESOURCE:MEMORY", "arn:ci/1");
        r.note_failure("RESOURCE:MEMORY", "arn:ci/1");
        r.note_failure("RESOURCE:CPU", "arn:ci/1");
        assert_eq!(
            r.failures,
            vec![
                ("RESOURCE:MEMORY".into(), "arn:ci/1".into(), 2),
                ("RESOURCE:CPU".into(), "arn:ci/1".into(), 1)
            ]
        );
        assert_eq!(r.missing(), 3);
        assert_eq!(task_id("arn:aws:ecs:us-east-1:1:task/c/abc"), "abc");
    }
}
