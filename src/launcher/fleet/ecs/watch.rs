//! Following a run's tasks: DescribeTasks, StopTask, ListTasks by `startedBy`, and waiting until
//! every task is stopped. Each call is retried with backoff while its errors are transient (see
//! [`EcsFleet::retrying`]); the SDK's own retry layer is off for DescribeTasks and StopTask, so
//! one loop owns their attempts, waits and give-up time (ListTasks' paginator keeps the SDK's
//! few quick retries inside each attempt).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::DesiredStatus;
use aws_smithy_types::retry::RetryConfig;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::config::validate_run_id;
use super::fleet::{error_is_retryable, sdk_error_text, EcsFleet};
use super::limits::{DESCRIBE_TASKS_MAX, STOP_REASON_MAX_CHARS};
use super::usage::TaskUsage;

/// One failed call: what went wrong, and whether the same call may be sent again.
struct CallError {
    text: String,
    retryable: bool,
}

impl CallError {
    fn of<E>(e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        CallError {
            text: sdk_error_text(e),
            retryable: error_is_retryable(e),
        }
    }
}

/// The SDK's retry layer off for one call: [`EcsFleet::retrying`] owns the attempts.
fn no_sdk_retries() -> aws_sdk_ecs::config::Builder {
    aws_sdk_ecs::Config::builder().retry_config(RetryConfig::disabled())
}

/// StopTask calls in flight at once: enough to stop a few hundred tasks in seconds, few enough
/// to stay inside the ECS API's request rate for the account.
const STOP_CONCURRENCY: usize = 8;

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
    pub(crate) container_reason: Option<String>,
    /// Why the task stopped (e.g. `Essential container in task exited`, a StopTask reason).
    pub stopped_reason: Option<String>,
    /// `EssentialContainerExited`, `UserInitiated`, `TaskFailedToStart`, `SpotInterruption`, …
    pub stop_code: Option<String>,
    /// When the task reached RUNNING.
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached STOPPED.
    pub stopped_at: Option<DateTime<Utc>>,
    /// What it used, for the run's cost (size, capacity, billed instants).
    pub usage: TaskUsage,
}

impl TaskState {
    /// STOPPED, or forgotten by ECS: nothing more will happen to it.
    pub(crate) fn is_final(&self) -> bool {
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
    pub(crate) timeout: Duration,
    /// Tasks waited for.
    pub(crate) total: usize,
    /// The last state seen of each task not yet stopped.
    pub not_stopped: Vec<TaskState>,
}

impl EcsFleet {
    /// DescribeTasks for `task_arns` (ARNs or ids), `DESCRIBE_TASKS_MAX` (100) per call. Returns one
    /// state per task, in the order given; tasks ECS does not know come back as `MISSING`.
    pub async fn describe(&self, task_arns: &[String]) -> anyhow::Result<Vec<TaskState>> {
        let mut found: HashMap<String, TaskState> = HashMap::new();
        for chunk in task_arns.chunks(DESCRIBE_TASKS_MAX) {
            let out = self
                .retrying(|| async {
                    self.client
                        .describe_tasks()
                        .cluster(&self.cfg.cluster)
                        .set_tasks(Some(chunk.to_vec()))
                        .customize()
                        .config_override(no_sdk_retries())
                        .send()
                        .await
                        .map_err(|e| CallError::of(&e))
                })
                .await
                .map_err(|e| {
                    anyhow::anyhow!("DescribeTasks on cluster {} failed: {e}", self.cfg.cluster)
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
                    usage: TaskUsage::default(),
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
                    usage: TaskUsage::default(),
                })
            })
            .collect())
    }

    fn task_state(&self, t: &aws_sdk_ecs::types::Task) -> TaskState {
        let arn = t.task_arn().unwrap_or_default().to_string();
        let usage = TaskUsage::of(task_id(&arn), t);
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
            usage,
        }
    }

    /// StopTask for each task, a few at a time, each retried while its errors are transient. A
    /// task that is already stopped, or that ECS has forgotten, counts as stopped. ECS sends
    /// SIGTERM, then SIGKILL after the stop timeout. The error names every task whose StopTask
    /// failed for good; the others were stopped all the same.
    pub async fn stop(&self, task_arns: &[String], reason: &str) -> anyhow::Result<()> {
        let reason: String = reason.chars().take(STOP_REASON_MAX_CHARS).collect();
        let failed: Vec<String> = stream::iter(task_arns)
            .map(|arn| {
                let reason = reason.clone();
                async move {
                    let res = self
                        .retrying(|| async {
                            match self
                                .client
                                .stop_task()
                                .cluster(&self.cfg.cluster)
                                .task(arn)
                                .reason(reason.clone())
                                .customize()
                                .config_override(no_sdk_retries())
                                .send()
                                .await
                            {
                                Ok(_) => Ok(()),
                                Err(e) if is_task_gone(&e) => Ok(()),
                                Err(e) => Err(CallError::of(&e)),
                            }
                        })
                        .await;
                    res.err().map(|e| format!("{}: {e}", task_id(arn)))
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
        self.retrying(|| async {
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
                arns.push(arn.map_err(|e| CallError::of(&e))?);
            }
            Ok(arns)
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "ListTasks (startedBy {run_id}) on cluster {} failed: {e}",
                self.cfg.cluster
            )
        })
    }

    /// Runs `call` until it succeeds, fails in a way retrying cannot cure, or has kept failing
    /// transiently for the fleet's retry time (`WATCH_RETRY_FOR` unless changed),
    /// waiting the fleet's backoff between attempts. The error says how often and for how long
    /// it was tried.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let first = Instant::now();
        let mut attempt = 0u32;
        loop {
            let e = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let tried = first.elapsed();
            if !e.retryable {
                return Err(if attempt == 0 {
                    e.text
                } else {
                    format!("{} (after {} attempts)", e.text, attempt + 1)
                });
            }
            if tried >= self.retry_for {
                return Err(format!(
                    "{} (still failing after {} attempts over {})",
                    e.text,
                    attempt + 1,
                    humantime::format_duration(Duration::from_millis(tried.as_millis() as u64))
                ));
            }
            let delay = self
                .backoff
                .delay(attempt)
                .min(self.retry_for.saturating_sub(tried));
            tracing::warn!(
                "ECS call failed, retrying in {:.1}s: {}",
                delay.as_secs_f64(),
                e.text
            );
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
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
                    not_stopped: states.into_iter().filter(|s| !s.is_final()).collect(),
                }
                .into());
            }
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
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
pub(super) fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
