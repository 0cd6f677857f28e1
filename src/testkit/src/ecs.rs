//! An ECS-compatible HTTP server on loopback that answers RunTask from a script, so tests can see
//! what moto never produces: placement failures (`failures[]`), throttling and server errors.
//!
//! It speaks the protocol the SDK uses (awsJson 1.1: `POST /`, `X-Amz-Target:
//! AmazonEC2ContainerServiceV20141113.<Operation>`, errors as `{"__type": …, "message": …}`),
//! enforces the ECS limits the fleet must respect (RunTask `count` 1–10, DescribeTasks ≤ 100
//! tasks), records every request, and stops when dropped.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

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

#[derive(Default)]
struct State {
    script: VecDeque<RunTaskReply>,
    then: Option<RunTaskReply>,
    requests: Vec<(String, Value)>,
    started: Vec<String>,
    stopped: BTreeSet<String>,
    next_id: u64,
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
        return Ok(error(
            400,
            "UnknownOperationException",
            &format!("unexpected X-Amz-Target {target:?}"),
        ));
    };
    let mut state = state.lock().unwrap();
    state.requests.push((op.to_string(), body.clone()));
    Ok(match op {
        "RunTask" => run_task(&mut state, &body),
        "StopTask" => stop_task(&mut state, &body),
        "DescribeTasks" => describe_tasks(&state, &body),
        "ListTasks" => list_tasks(&state, &body),
        other => error(400, "UnknownOperationException", other),
    })
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
            let stopped = state.stopped.contains(&arn);
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
                task["stoppedReason"] = json!("stopped by the test");
                task["stopCode"] = json!("UserInitiated");
                task["stoppedAt"] = json!(1_700_000_060.5);
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
        .filter(|a| !state.stopped.contains(*a))
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
