//! Starting a run: the RunTask fan-out, [`RUN_TASK_MAX_COUNT`] tasks per call, with retries
//! until every task runs or the deadline passes, and the sorting of RunTask's failures and errors
//! into "retry" and "give up".

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, LaunchType,
    NetworkConfiguration, PropagateTags, Tag, TaskOverride,
};
use aws_smithy_types::retry::RetryConfig;

use super::config::{validate_run_id, EcsConfig, EcsConfigError};
use super::fleet::{sdk_error_text, EcsFleet, RETRYABLE_ERROR_CODES};
use super::limits::{RUN_ID_TAG, RUN_TASK_MAX_COUNT};
use super::overrides::{check_overrides, task_override};

/// `failures[].reason` values of RunTask that mean "not now" rather than "never": the cluster is
/// out of memory, CPU, ports or ENIs (`RESOURCE:*`), an agent is disconnected (`AGENT`), or
/// Fargate has no capacity at the moment ("Capacity is unavailable at this time…"), which the
/// "capacity" substring catches. Everything else (`ATTRIBUTE`, `MISSING`, `LOCATION`, …) is a
/// configuration problem that retrying cannot fix.
const RETRYABLE_FAILURE_PREFIXES: &[&str] = &["RESOURCE:", "AGENT"];

/// Reason recorded when RunTask starts fewer tasks than asked without any `failures[]` entry (not
/// documented to happen; retried like a placement failure).
const UNEXPLAINED_SHORTFALL: &str = "(RunTask started fewer tasks than asked and gave no reason)";

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
    pub(crate) throttled: u32,
    /// Placement failures (`failures[]` entries) so far.
    pub(crate) failures: u32,
    /// When waiting before the next call: how long, and why.
    pub retrying: Option<(Duration, String)>,
}

/// Tasks that share one environment: every RunTask call for them carries the same container
/// overrides (RunTask starts up to 10 tasks per call, all with the same overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGroup {
    /// The worker container's environment override.
    pub env: Vec<(String, String)>,
    /// How many tasks.
    pub count: u32,
}

/// What [`EcsFleet::start`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Tasks asked for.
    pub(crate) requested: u32,
    /// ARNs of the tasks started, in the order RunTask returned them.
    pub tasks: Vec<String>,
    /// The same ARNs by [`TaskGroup`], in the order the groups were given.
    pub by_group: Vec<Vec<String>>,
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
    /// The ids of the tasks started (the last part of their ARNs): how their reports and live
    /// windows are named.
    pub fn task_ids(&self) -> Vec<String> {
        self.tasks
            .iter()
            .map(|arn| super::watch::task_id(arn).to_string())
            .collect()
    }

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
    /// [`EcsFleet::halt_start`] was called: no new call was made after it, the call in flight
    /// was let finish, and the tasks started were left for the caller to stop.
    Halted,
}

/// The fleet did not fully start. Tasks that did start were stopped (all or nothing: a partial
/// fleet would produce a load nobody asked for); `report` tells what happened call by call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StartError {
    /// The run.
    pub(crate) run_id: String,
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
            StartStop::Halted => write!(
                f,
                "run {}: the start was halted with {} of {} ECS tasks started ({} RunTask calls)",
                self.run_id,
                started,
                r.requested,
                r.calls.len()
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
        if started > 0 && self.cause == StartStop::Halted {
            write!(f, "; the caller stops the {started} tasks that had started")?;
        } else if started > 0 {
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
    /// Starts `count` tasks of run `run_id` with `env` as the worker container's environment
    /// override (the caller puts FLEETLOAD_RUN_ID, FLEETLOAD_START_AT, FLEETLOAD_REPORT_URL in
    /// it). Calls RunTask with at most `RUN_TASK_MAX_COUNT` (10) tasks each; placement failures
    /// (`RESOURCE:*`, `AGENT`, no Fargate capacity) and throttling are retried with exponential
    /// backoff and jitter — for placement failures only the missing tasks are asked for again —
    /// until every task runs or `deadline` passes. A call in flight is not cut off at the
    /// deadline: it may already have started tasks.
    ///
    /// [`EcsFleet::halt_start`] ends it early without cutting off a call in flight, whose tasks
    /// would otherwise be started with no ARN known for them (ListTasks is eventually
    /// consistent): the error is then a [`StartError`] with [`StartStop::Halted`] and the tasks
    /// started are left running for the caller to stop.
    ///
    /// Config, run id and overrides size are checked before any call. When the fleet cannot fully
    /// start, the tasks that did start are stopped and the error is a [`StartError`] (downcast
    /// it for the report). If this future is dropped half-way, the tasks already started are in
    /// [`EcsFleet::started_tasks`] (recorded as each answer is read), and [`EcsFleet::list_run`]
    /// finds them too once ListTasks has caught up (including those of a call whose answer never
    /// came back).
    pub async fn start(
        &self,
        run_id: &str,
        env: &[(String, String)],
        count: u32,
        deadline: Instant,
        on_progress: &(dyn Fn(&StartProgress) + Sync),
    ) -> anyhow::Result<StartReport> {
        let group = TaskGroup {
            env: env.to_vec(),
            count,
        };
        self.start_groups(run_id, &[group], deadline, on_progress)
            .await
    }

    /// [`EcsFleet::start`] for several groups of tasks, each with its own environment (the
    /// producers, and each consumer task with its place among the consumers): the groups are
    /// started in order, each in calls of at most `RUN_TASK_MAX_COUNT`, with the same retries,
    /// deadline and all-or-nothing rule over the whole run. Every group's overrides are sized
    /// before the first call.
    pub async fn start_groups(
        &self,
        run_id: &str,
        groups: &[TaskGroup],
        deadline: Instant,
        on_progress: &(dyn Fn(&StartProgress) + Sync),
    ) -> anyhow::Result<StartReport> {
        self.check_groups(run_id, groups)?;
        let count: u32 = groups.iter().map(|g| g.count).sum();
        let overrides: Vec<TaskOverride> = groups
            .iter()
            .map(|g| task_override(&self.cfg.container, &g.env))
            .collect();

        let mut report = StartReport {
            requested: count,
            by_group: vec![Vec::new(); groups.len()],
            ..StartReport::default()
        };
        on_progress(&report.progress(None));
        let mut attempt = 0u32;
        // The client token of a request that got no usable answer: sent again unchanged (same
        // group, same count), so a RunTask that did start tasks before its answer was lost is
        // not started twice.
        let mut retry_token: Option<(usize, u32, String)> = None;
        let mut halted = self.halt.subscribe();
        let cause = loop {
            let missing = report.missing();
            if missing == 0 {
                return Ok(report);
            }
            if *halted.borrow_and_update() {
                break StartStop::Halted;
            }
            if Instant::now() >= deadline {
                break StartStop::Deadline;
            }
            let (group, n, token) = retry_token.take().unwrap_or_else(|| {
                // The first group with tasks still to start.
                let (group, left) = groups
                    .iter()
                    .zip(&report.by_group)
                    .map(|(g, started)| {
                        g.count
                            .saturating_sub(u32::try_from(started.len()).unwrap_or(u32::MAX))
                    })
                    .enumerate()
                    .find(|(_, left)| *left > 0)
                    .unwrap_or((0, missing));
                (
                    group,
                    left.min(RUN_TASK_MAX_COUNT),
                    uuid::Uuid::new_v4().to_string(),
                )
            });
            report.calls.push(n);
            let outcome = self
                .run_task_once(run_id, &overrides[group], group, n, &token, &mut report)
                .await;
            let why = match outcome {
                CallOutcome::Fatal(why) => break StartStop::Fatal(why),
                CallOutcome::Retry(err) => {
                    report.throttled += 1;
                    report.last_error = Some(err.clone());
                    retry_token = Some((group, n, token));
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
            tokio::select! {
                _ = tokio::time::sleep(delay.min(left)) => {}
                _ = halted.wait_for(|h| *h) => {}
            }
        };

        let cleanup = if report.tasks.is_empty() || cause == StartStop::Halted {
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

    /// What [`EcsFleet::start_groups`] checks before its first call, for a caller that wants
    /// to refuse a run before anything else happens: the configuration, the run id, no empty
    /// group, and every group's overrides within ECS's 8 KiB.
    pub fn check_groups(&self, run_id: &str, groups: &[TaskGroup]) -> anyhow::Result<()> {
        self.cfg.validate()?;
        validate_run_id(run_id)?;
        if groups.is_empty() || groups.iter().any(|g| g.count == 0) {
            return Err(EcsConfigError::ZeroTasks.into());
        }
        for g in groups {
            check_overrides(&self.cfg.container, &g.env)?;
        }
        Ok(())
    }

    /// One RunTask call for `n` tasks of group `group`; records started tasks and failures in
    /// `report`.
    async fn run_task_once(
        &self,
        run_id: &str,
        overrides: &TaskOverride,
        group: usize,
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
                let arns: Vec<String> = out
                    .tasks()
                    .iter()
                    .filter_map(|t| t.task_arn().map(str::to_string))
                    .collect();
                self.record_started(&arns);
                let placed = u32::try_from(arns.len()).unwrap_or(u32::MAX);
                report.by_group[group].extend(arns.iter().cloned());
                report.tasks.extend(arns);
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
}

/// Whether a `failures[].reason` of RunTask may clear up by itself.
fn failure_is_retryable(reason: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::watch::task_id;
    use super::*;

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
