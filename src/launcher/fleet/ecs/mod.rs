//! The ECS backend: runs the worker image as ECS tasks (Fargate, Fargate Spot or EC2 capacity).
//!
//! [`EcsFleet`] holds the client, the configuration, the retry backoff and the poll interval; the
//! ECS service limits it works within are the constants below. Each other concern has its file:
//! - `config`: where the tasks run ([`EcsConfig`], [`CapacityProvider`]) and the one place
//!   that rejects it, before any call;
//! - `overrides`: the worker's environment as RunTask container overrides, sized against
//!   [`OVERRIDES_MAX_BYTES`];
//! - `start`: [`EcsFleet::start`] fans a run out with RunTask — at most
//!   `RUN_TASK_MAX_COUNT` (10) tasks per call, every call with the same container overrides — and
//!   keeps asking until the whole fleet runs or the caller's deadline passes. Placement failures
//!   (`failures[]` in a successful answer) and throttling are data: they are counted, reported,
//!   and only the missing tasks are asked for again;
//! - `watch`: [`EcsFleet::describe`], [`EcsFleet::stop`] and [`EcsFleet::wait_stopped`] follow
//!   the tasks to their end. Their calls are retried with backoff while the errors are
//!   transient (throttling, server errors, no answer), for at most [`WATCH_RETRY_FOR`] in a row;
//!   an error that persists, or that retrying cannot cure, is returned for the caller to stop
//!   every task it started. Every task carries the run id in `startedBy` and in the
//!   [`RUN_ID_TAG`] tag, so [`EcsFleet::list_run`] finds a run's tasks again from nothing but its
//!   id (`launcher stop`).

mod config;
mod overrides;
mod start;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::model::backoff::Backoff;

pub(crate) use config::validate_run_id;
pub use config::{CapacityProvider, EcsConfig, EcsConfigError};
pub use overrides::OverridesTooLarge;
pub use start::{StartError, StartProgress, StartReport, StartStop};
pub use watch::{NotStopped, TaskState};

/// ECS starts at most 10 tasks per RunTask call (`count` is 1–10); larger fleets take several
/// calls, all with the same overrides.
const RUN_TASK_MAX_COUNT: u32 = 10;

/// DescribeTasks accepts at most 100 task ARNs per call.
const DESCRIBE_TASKS_MAX: usize = 100;

/// RunTask rejects overrides whose JSON (all fields combined, as sent) exceeds 8192 bytes. The
/// worker's whole scenario travels in the environment override, so a long stage list or an
/// inline certificate can hit this; it is checked before the first call, not discovered by it.
pub const OVERRIDES_MAX_BYTES: usize = 8192;

/// ECS's `startedBy` holds up to 36 letters, digits, hyphens and underscores. The run id goes
/// there, because ListTasks can filter on it (that is how `launcher stop RUN_ID` works).
const STARTED_BY_MAX_LEN: usize = 36;

/// An awsvpc network configuration takes at most 16 subnets.
const AWSVPC_MAX_SUBNETS: usize = 16;

/// An awsvpc network configuration takes at most 5 security groups.
const AWSVPC_MAX_SECURITY_GROUPS: usize = 5;

/// A capacity provider strategy holds at most 20 providers.
const CAPACITY_PROVIDERS_MAX: usize = 20;

/// A capacity provider's weight is 0–1000.
const CAPACITY_PROVIDER_WEIGHT_MAX: u32 = 1000;

/// A capacity provider's base is 0–100000.
const CAPACITY_PROVIDER_BASE_MAX: u32 = 100_000;

/// StopTask keeps at most 255 characters of its `reason`.
const STOP_REASON_MAX_CHARS: usize = 255;

/// Tag key that carries the run id on every task (with ECS managed tags, also on its ENI).
pub const RUN_ID_TAG: &str = "fleetload:run-id";

/// Wait between RunTask retries: equal jitter (see [`Backoff`] for why), the first 250–500 ms,
/// each further one up to twice as long, none longer than 10 s.
const RUN_TASK_BACKOFF: Backoff =
    Backoff::equal(Duration::from_millis(500), Duration::from_secs(10));

/// How long DescribeTasks, StopTask and ListTasks keep being retried while their errors are
/// transient: long enough for a throttling burst or a control-plane blip to pass, short enough
/// that a launcher that has lost ECS stops its tasks (or says it could not) within minutes.
pub const WATCH_RETRY_FOR: Duration = Duration::from_secs(90);

/// Error codes that mean "too many requests, or the service had a bad moment": the call had no
/// effect and may be sent again.
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

/// The ECS backend of a run: starts, describes, stops and finds the worker tasks.
#[derive(Debug, Clone)]
pub struct EcsFleet {
    client: aws_sdk_ecs::Client,
    cfg: EcsConfig,
    backoff: Backoff,
    poll_interval: Duration,
    retry_for: Duration,
    /// Every task ARN RunTask returned to this fleet (and its clones), in order, recorded the
    /// moment the answer is read: what must be stopped if the start is abandoned half-way.
    started: Arc<Mutex<Vec<String>>>,
    /// Set by [`EcsFleet::halt_start`]: a start in progress makes no further RunTask call.
    halt: Arc<tokio::sync::watch::Sender<bool>>,
}

impl EcsFleet {
    /// A fleet that calls ECS through `client` (its region, credentials and endpoint) with `cfg`.
    pub fn new(client: aws_sdk_ecs::Client, cfg: EcsConfig) -> Self {
        EcsFleet {
            client,
            cfg,
            backoff: RUN_TASK_BACKOFF,
            poll_interval: Duration::from_secs(3),
            retry_for: WATCH_RETRY_FOR,
            started: Arc::default(),
            halt: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Asks a start in progress (on this fleet or a clone) to make no further RunTask call and
    /// return once the call in flight, if any, is answered; see [`EcsFleet::start`].
    pub fn halt_start(&self) {
        self.halt.send_replace(true);
    }

    /// Replaces how long transient DescribeTasks, StopTask and ListTasks errors are retried
    /// (tests make it short).
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// The interval between DescribeTasks polls while a run is watched.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// ARNs of every task RunTask started for this fleet so far, in the order they came, even
    /// when the [`EcsFleet::start`] that asked for them was dropped half-way.
    pub fn started_tasks(&self) -> Vec<String> {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_started(&self, arns: &[String]) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(arns);
    }

    /// Replaces the backoff between RunTask retries (tests make it short).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the interval between DescribeTasks polls of [`EcsFleet::wait_stopped`].
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Whether a failed call may be sent again unchanged: throttling, a server error (HTTP 429 or
/// 5xx), an unreadable answer, a timeout or an I/O error. Anything else (access denied, a
/// missing cluster, a bad parameter) is a refusal that retrying cannot cure.
pub(super) fn error_is_retryable<E>(
    e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            RETRYABLE_ERROR_CODES.contains(&e.code().unwrap_or_default())
                || status == 429
                || status >= 500
        }
        SdkError::ResponseError(_) | SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
        _ => false,
    }
}

/// `Code: message (HTTP n)` for a service error, the whole error chain otherwise.
pub(super) fn sdk_error_text<E>(e: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>) -> String
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
