//! An ECS-compatible HTTP server on loopback that answers RunTask from a script, so tests can see
//! what moto never produces: placement failures (`failures[]`), throttling and server errors.
//! Any operation can also be made to fail for a while or for good ([`EcsDouble::fail`]), RunTask
//! to answer slowly ([`EcsDouble::delay_run_task`]), tasks to end by themselves
//! ([`EcsDouble::end_tasks_after`]), ListTasks to lag behind ([`EcsDouble::list_lag`]) and
//! other services' requests (S3) to hang ([`EcsDouble::hold_other_requests`]), and DescribeTasks
//! to describe what each task used, as ECS does for a task that ran ([`EcsDouble::describe_with`]).
//!
//! It speaks the protocol the SDK uses (awsJson 1.1: `POST /`, `X-Amz-Target:
//! AmazonEC2ContainerServiceV20141113.<Operation>`, errors as `{"__type": …, "message": …}`),
//! enforces the ECS limits the fleet must respect (RunTask `count` 1–10, DescribeTasks ≤ 100
//! tasks), records every request, and stops when dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const TASK_ARN_PREFIX: &str = "arn:aws:ecs:us-east-1:123456789012:task/double/";
/// The container instance named in `failures[].arn`.
pub const INSTANCE_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/double/ci-1";
/// Tasks per ListTasks page, small so that pagination shows.
pub const LIST_PAGE: usize = 3;

/// How the double answers one RunTask call.
#[derive(Debug, Clone)]
pub enum RunTaskReply {
    /// Start at most `start` of the tasks asked for; each task not started gets a `failures[]`
    /// entry with `reason` (on [`INSTANCE_ARN`] unless the reason is about Fargate capacity).
    Place { start: u32, reason: String },
    /// An error answer: HTTP `status` with `{"__type": kind, "message": message}`.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
}

impl RunTaskReply {
    /// Start everything asked for.
    pub fn all() -> Self {
        RunTaskReply::Place {
            start: u32::MAX,
            reason: String::new(),
        }
    }

    /// Start at most `start` tasks, the rest fail with `reason`.
    pub fn partial(start: u32, reason: &str) -> Self {
        RunTaskReply::Place {
            start,
            reason: reason.to_string(),
        }
    }

    /// HTTP `status` error of type `kind`.
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        RunTaskReply::Error {
            status,
            kind: kind.to_string(),
            message: message.to_string(),
        }
    }
}

/// How an operation fails, set with [`EcsDouble::fail`].
#[derive(Debug, Clone)]
pub struct Failure {
    /// Calls of the operation answered normally before the failures begin.
    pub after: usize,
    /// How many calls fail; `None`: every call from then on.
    pub times: Option<usize>,
    /// The HTTP status of the error answer.
    pub status: u16,
    /// Its `__type`.
    pub kind: String,
    /// Its message.
    pub message: String,
}

impl Failure {
    /// Throttling (HTTP 400 `ThrottlingException`), transient by nature.
    pub fn throttling() -> Self {
        Failure {
            after: 0,
            times: None,
            status: 400,
            kind: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
        }
    }

    /// Access denied (HTTP 400 `AccessDeniedException`): retrying cannot cure it.
    pub fn access_denied() -> Self {
        Failure {
            after: 0,
            times: None,
            status: 400,
            kind: "AccessDeniedException".into(),
            message: "User is not authorized to perform this action".into(),
        }
    }

    /// After `n` calls answered normally.
    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }

    /// For `n` calls only.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<RunTaskReply>,
    then: Option<RunTaskReply>,
    requests: Vec<(String, Value)>,
    started: Vec<String>,
    started_at: HashMap<String, Instant>,
    stopped: BTreeSet<String>,
    next_id: u64,
    failures: HashMap<String, Failure>,
    /// Calls of each operation so far (failed ones included).
    calls: HashMap<String, usize>,
    run_task_delay: Option<(usize, Duration)>,
    task_lifetime: Option<Duration>,
    hold_others: Option<Duration>,
    list_lag: Option<Duration>,
    /// Fields added to every task DescribeTasks answers.
    task_fields: serde_json::Map<String, Value>,
}

impl State {
    /// Whether task `arn` has ended: stopped, or lived its lifetime.
    fn ended(&self, arn: &str) -> bool {
        self.stopped.contains(arn)
            || self.task_lifetime.is_some_and(|life| {
                self.started_at
                    .get(arn)
                    .is_some_and(|at| at.elapsed() >= life)
            })
    }
}

/// A running double; its URL goes to the SDK's `endpoint_url`.
pub struct EcsDouble {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for EcsDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EcsDouble {
    /// Starts a double that answers RunTask calls with `script` in order, then with `then`.
    pub async fn start(script: Vec<RunTaskReply>, then: RunTaskReply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ECS double on 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            then: Some(then),
            ..State::default()
        }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EcsDouble { url, state, server }
    }

    /// Bodies of the requests of operation `op` (e.g. `RunTask`), in order.
    pub fn requests(&self, op: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// ARNs of every task the double started.
    pub fn started(&self) -> Vec<String> {
        self.state.lock().unwrap().started.clone()
    }

    /// ARNs of the tasks StopTask was called for.
    pub fn stopped(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().stopped.clone()
    }

    /// ARNs of the tasks started and not ended (neither stopped nor past their lifetime).
    pub fn running(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .started
            .iter()
            .filter(|a| !state.ended(a))
            .cloned()
            .collect()
    }

    /// Makes operation `op` (`DescribeTasks`, `StopTask`, `ListTasks`, `RunTask`) fail as
    /// `failure` says, counting its calls from now.
    pub fn fail(&self, op: &str, failure: Failure) {
        let mut state = self.state.lock().unwrap();
        let done = state.calls.get(op).copied().unwrap_or(0);
        let mut failure = failure;
        failure.after += done;
        state.failures.insert(op.to_string(), failure);
    }

    /// RunTask calls from the `from`-th on (0-based) are answered after `delay`; their tasks
    /// start when the call arrives, as ECS's do, even if the caller gives up waiting.
    pub fn delay_run_task(&self, from: usize, delay: Duration) {
        self.state.lock().unwrap().run_task_delay = Some((from, delay));
    }

    /// Tasks end by themselves (STOPPED, worker exit code 0) `lifetime` after they started.
    pub fn end_tasks_after(&self, lifetime: Duration) {
        self.state.lock().unwrap().task_lifetime = Some(lifetime);
    }

    /// ListTasks is eventually consistent, as ECS's is: a task appears in it only `lag` after
    /// it started.
    pub fn list_lag(&self, lag: Duration) {
        self.state.lock().unwrap().list_lag = Some(lag);
    }

    /// Every task DescribeTasks answers carries `fields` too (a JSON object of the Task shape:
    /// `cpu`, `memory`, `launchType`, `capacityProviderName`, `attributes`, `pullStartedAt`,
    /// `stoppedAt`…), as ECS describes a task that ran; `stoppedAt` only once it stopped.
    pub fn describe_with(&self, fields: Value) {
        let fields = match fields {
            Value::Object(map) => map,
            other => panic!("describe_with takes a JSON object, not {other}"),
        };
        self.state.lock().unwrap().task_fields = fields;
    }

    /// Requests that are not ECS's (no ECS `X-Amz-Target`, e.g. S3's) are held for `hold`, then
    /// answered HTTP 503.
    pub fn hold_other_requests(&self, hold: Duration) {
        self.state.lock().unwrap().hold_others = Some(hold);
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error(400, "SerializationException", "unreadable body")),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(op) = target.strip_prefix(TARGET_PREFIX) else {
        let hold = state.lock().unwrap().hold_others;
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
            return Ok(error(503, "ServiceUnavailable", "held by the ECS double"));
        }
        return Ok(error(
            400,
            "UnknownOperationException",
            &format!("unexpected X-Amz-Target {target:?}"),
        ));
    };
    let (answer, delay) = {
        let mut state = state.lock().unwrap();
        state.requests.push((op.to_string(), body.clone()));
        let call = {
            let n = state.calls.entry(op.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let failing = state
            .failures
            .get(op)
            .filter(|f| call >= f.after && f.times.map_or(true, |t| call < f.after + t));
        let answer = match (failing, op) {
            (Some(f), _) => error(f.status, &f.kind, &f.message),
            (None, "RunTask") => run_task(&mut state, &body),
            (None, "StopTask") => stop_task(&mut state, &body),
            (None, "DescribeTasks") => describe_tasks(&state, &body),
            (None, "ListTasks") => list_tasks(&state, &body),
            (None, other) => error(400, "UnknownOperationException", other),
        };
        let delay = match state.run_task_delay {
            Some((from, delay)) if op == "RunTask" && call >= from => Some(delay),
            _ => None,
        };
        (answer, delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(answer)
}

fn run_task(state: &mut State, body: &Value) -> Response<Full<Bytes>> {
    let count = body["count"].as_u64().unwrap_or(1);
    if !(1..=10).contains(&count) {
        return error(
            400,
            "InvalidParameterException",
            "count must be between 1 and 10",
        );
    }
    let reply = match state.script.pop_front() {
        Some(r) => r,
        None => state.then.clone().unwrap_or_else(RunTaskReply::all),
    };
    match reply {
        RunTaskReply::Error {
            status,
            kind,
            message,
        } => error(status, &kind, &message),
        RunTaskReply::Place { start, reason } => {
            let start = u64::from(start).min(count);
            let mut tasks = Vec::new();
            for _ in 0..start {
                state.next_id += 1;
                let arn = format!("{TASK_ARN_PREFIX}{:032x}", state.next_id);
                state.started.push(arn.clone());
                state.started_at.insert(arn.clone(), Instant::now());
                tasks.push(json!({
                    "taskArn": arn,
                    "lastStatus": "PROVISIONING",
                    "desiredStatus": "RUNNING",
                    "startedBy": body["startedBy"],
                    "overrides": body["overrides"],
                    "tags": body["tags"],
                }));
            }
            let failures: Vec<Value> = (start..count)
                .map(|_| {
                    if reason.to_ascii_lowercase().contains("capacity") {
                        json!({ "reason": reason })
                    } else {
                        json!({ "arn": INSTANCE_ARN, "reason": reason })
                    }
                })
                .collect();
            ok(json!({ "tasks": tasks, "failures": failures }))
        }
    }
}

fn stop_task(state: &mut State, body: &Value) -> Response<Full<Bytes>> {
    let task = body["task"].as_str().unwrap_or_default().to_string();
    if !state.started.contains(&task) {
        return error(
            400,
            "InvalidParameterException",
            "The referenced task was not found.",
        );
    }
    state.stopped.insert(task.clone());
    ok(json!({ "task": { "taskArn": task, "lastStatus": "RUNNING", "desiredStatus": "STOPPED" } }))
}

fn describe_tasks(state: &State, body: &Value) -> Response<Full<Bytes>> {
    let asked: Vec<String> = body["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if asked.is_empty() || asked.len() > 100 {
        return error(
            400,
            "InvalidParameterException",
            "tasks must hold between 1 and 100 entries",
        );
    }
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for arn in asked {
        if state.started.contains(&arn) {
            let stopped = state.ended(&arn);
            let status = if stopped { "STOPPED" } else { "RUNNING" };
            let mut task = json!({
                "taskArn": arn,
                "lastStatus": status,
                "desiredStatus": status,
                "containers": [{ "name": "worker", "lastStatus": status }],
                "startedAt": 1_700_000_000.0,
            });
            if stopped {
                task["containers"][0]["exitCode"] = json!(0);
                if state.stopped.contains(&arn) {
                    task["stoppedReason"] = json!("stopped by the test");
                    task["stopCode"] = json!("UserInitiated");
                } else {
                    task["stoppedReason"] = json!("Essential container in task exited");
                    task["stopCode"] = json!("EssentialContainerExited");
                }
                task["stoppedAt"] = json!(1_700_000_060.5);
            }
            for (k, v) in &state.task_fields {
                if k != "stoppedAt" || stopped {
                    task[k] = v.clone();
                }
            }
            tasks.push(task);
        } else {
            failures.push(json!({ "arn": arn, "reason": "MISSING" }));
        }
    }
    ok(json!({ "tasks": tasks, "failures": failures }))
}

fn list_tasks(state: &State, body: &Value) -> Response<Full<Bytes>> {
    let running: Vec<&String> = state
        .started
        .iter()
        .filter(|a| !state.ended(a))
        .filter(|a| {
            state.list_lag.map_or(true, |lag| {
                state
                    .started_at
                    .get(a.as_str())
                    .is_some_and(|at| at.elapsed() >= lag)
            })
        })
        .collect();
    let from: usize = body["nextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<&String> = running.iter().skip(from).take(LIST_PAGE).copied().collect();
    let mut answer = json!({ "taskArns": page });
    if from + LIST_PAGE < running.len() {
        answer["nextToken"] = json!((from + LIST_PAGE).to_string());
    }
    ok(answer)
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    respond(200, body)
}

fn error(status: u16, kind: &str, message: &str) -> Response<Full<Bytes>> {
    respond(status, json!({ "__type": kind, "message": message }))
}

fn respond(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
