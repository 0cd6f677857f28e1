//! [`EcsFleet`]: the client, the configuration, the retry backoff and the poll interval, and the
//! error handling every call shares. Its calls are in `start` (RunTask) and `watch` (describe,
//! stop, list, wait).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::config::EcsConfig;
use crate::model::backoff::Backoff;

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
pub(super) const RETRYABLE_ERROR_CODES: &[&str] = &[
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
    pub(super) client: aws_sdk_ecs::Client,
    pub(super) cfg: EcsConfig,
    pub(super) backoff: Backoff,
    pub(super) poll_interval: Duration,
    pub(super) retry_for: Duration,
    /// Every task ARN RunTask returned to this fleet (and its clones), in order, recorded the
    /// moment the answer is read: what must be stopped if the start is abandoned half-way.
    pub(super) started: Arc<Mutex<Vec<String>>>,
    /// Set by [`EcsFleet::halt_start`]: a start in progress makes no further RunTask call.
    pub(super) halt: Arc<tokio::sync::watch::Sender<bool>>,
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

    pub(super) fn record_started(&self, arns: &[String]) {
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
