//! The local backend: N worker processes on this machine (and M consumer tasks, end to end),
//! one run id, one start instant.
//!
//! Each task is the launcher's own executable in worker mode (`launcher __worker`), so a local
//! run needs nothing but the launcher. Every task's log goes to a file in the run's directory;
//! the launcher's screen shows the fleet. Ctrl-C or SIGTERM stops every task and confirms it,
//! also while the processes are being started: no task is ever left running when `run_tasks`
//! returns, whatever happened (a task that does not stop within [`STOP_GRACE`] is killed).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use tokio::process::{Child, Command};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::TaskEnd;
use crate::launcher::exit::FleetFailed;
use crate::launcher::progress::Display;
use crate::launcher::signals::StopRequest;

/// The hidden first argument that turns the launcher into a worker.
pub const WORKER_MODE_ARG: &str = "__worker";
/// How long a stopped task may take to store its interrupted report before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(25);

/// One running local task.
struct LocalTask {
    id: String,
    child: Child,
    log: PathBuf,
    end: Option<TaskEnd>,
    consumer: bool,
}

/// A task to start: its id (`FLEETLOAD_TASK_ID`, and its log's name) and its environment.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The task id.
    pub id: String,
    /// Its `FLEETLOAD_*` variables.
    pub env: Vec<(String, String)>,
    /// Whether it is a consumer task.
    pub consumer: bool,
}

/// The ids of a local run's tasks: `local-01`, … for `producers`, then `local-consumer-01`, …
/// for `consumers`, numbered from 1 with at least two digits.
pub fn task_ids(producers: u32, consumers: u32) -> (Vec<String>, Vec<String>) {
    let width = producers.max(consumers).to_string().len().max(2);
    (
        (1..=producers)
            .map(|i| format!("local-{i:0width$}"))
            .collect(),
        (1..=consumers)
            .map(|i| format!("local-consumer-{i:0width$}"))
            .collect(),
    )
}

/// Starts a worker process for each of `specs` (with its task id), logging to `log_dir`.
/// Returns when every task has exited; `deadline` is when a task still running is stopped.
pub async fn run_tasks(
    specs: &[TaskSpec],
    log_dir: &Path,
    deadline: Instant,
    display: &mut Display,
    stop: &mut StopRequest,
) -> anyhow::Result<Vec<TaskEnd>> {
    std::fs::create_dir_all(log_dir)
        .with_context(|| format!("cannot create the log directory {}", log_dir.display()))?;
    let exe = std::env::current_exe()
        .context("cannot find the launcher's own executable to run the workers")?;
    let count = specs.len() as u32;
    let mut tasks = Vec::with_capacity(specs.len());
    // A stop request or a failure while the processes are being started ends the start there:
    // the tasks already running are then stopped like any others, below, and none is left.
    let mut stopping: Option<(Instant, &'static str)> = None;
    let mut spawn_error: Option<anyhow::Error> = None;
    for spec in specs {
        if let Some(signal) = stop.recv().now_or_never() {
            display.note(&format!(
                "{signal} while starting: stopping the {} task(s) started so far",
                tasks.len()
            ));
            signal_all(&tasks, Signal::SIGTERM);
            stopping = Some((Instant::now(), signal));
            break;
        }
        match spawn_task(&exe, spec, log_dir) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                display.note(&format!(
                    "{e:#}: stopping the {} task(s) started so far",
                    tasks.len()
                ));
                signal_all(&tasks, Signal::SIGTERM);
                stopping = Some((Instant::now(), "a task could not start"));
                spawn_error = Some(e);
                break;
            }
        }
    }
    display.started(tasks.len() as u32, count);

    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        for t in tasks.iter_mut().filter(|t| t.end.is_none()) {
            // A process whose state cannot be read is killed (and reaped on drop, kill_on_drop)
            // rather than left behind.
            let status = match t.child.try_wait() {
                Ok(status) => status,
                Err(e) => {
                    let _ = t.child.start_kill();
                    let _ = t.child.wait().await;
                    t.end = Some(TaskEnd {
                        id: t.id.clone(),
                        ok: false,
                        problem: Some(format!(
                            "task {} could not be watched ({e}) and was killed",
                            t.id
                        )),
                        consumer: t.consumer,
                        interrupted: false,
                    });
                    continue;
                }
            };
            if let Some(status) = status {
                let mut end = TaskEnd::from_exit(
                    &t.id,
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    Some(&t.log),
                );
                end.consumer = t.consumer;
                t.end = Some(end);
            }
        }
        let running = tasks.iter().filter(|t| t.end.is_none()).count() as u32;
        let running_consumers = tasks
            .iter()
            .filter(|t| t.end.is_none() && t.consumer)
            .count() as u32;
        let ends: Vec<&TaskEnd> = tasks.iter().filter_map(|t| t.end.as_ref()).collect();
        display.tasks(running, running_consumers, &ends);
        if running == 0 {
            break;
        }
        let now = Instant::now();
        match stopping {
            None if now >= deadline => {
                display.note(&format!(
                    "{running} task(s) still running past the run's end and grace: stopping them"
                ));
                signal_all(&tasks, Signal::SIGTERM);
                stopping = Some((now, "deadline"));
            }
            Some((since, _)) if now.duration_since(since) > STOP_GRACE => {
                display.note(&format!(
                    "{running} task(s) did not stop within {}s of SIGTERM: killing them",
                    STOP_GRACE.as_secs()
                ));
                for t in tasks.iter_mut().filter(|t| t.end.is_none()) {
                    let _ = t.child.start_kill();
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = ticker.tick() => {}
            signal = stop.recv(), if stopping.is_none() => {
                display.note(&format!("{signal}: stopping {running} task(s) and waiting for their reports"));
                signal_all(&tasks, Signal::SIGTERM);
                stopping = Some((Instant::now(), signal));
            }
        }
    }
    if let Some((_, why)) = stopping {
        // Confirm: every process has been reaped above; none is left.
        display.note(&format!(
            "stopped ({why}): all {} worker processes have exited",
            tasks.len()
        ));
    }
    if let Some(e) = spawn_error {
        return Err(e.context(FleetFailed(format!(
            "{} of {count} local tasks were started, then stopped: the next could not start",
            tasks.len()
        ))));
    }
    Ok(tasks.into_iter().filter_map(|t| t.end).collect())
}

/// Starts the worker process of `spec`, its output going to `<log_dir>/<id>.log`.
fn spawn_task(exe: &Path, spec: &TaskSpec, log_dir: &Path) -> anyhow::Result<LocalTask> {
    let id = spec.id.as_str();
    let log = log_dir.join(format!("{id}.log"));
    let file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg(WORKER_MODE_ARG)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| !k.to_string_lossy().starts_with("FLEETLOAD_")))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("FLEETLOAD_TASK_ID", id)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        // Own process group: a Ctrl-C in the terminal reaches the launcher only, which
        // then stops each task itself and waits for its report.
        .process_group(0);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe; it asks the
    // kernel to send SIGTERM to the task if the launcher dies, so no task outlives a killed
    // launcher unnoticed.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start worker process {id}"))?;
    Ok(LocalTask {
        id: id.to_string(),
        child,
        log,
        end: None,
        consumer: spec.consumer,
    })
}

fn signal_all(tasks: &[LocalTask], signal: Signal) {
    for t in tasks.iter().filter(|t| t.end.is_none()) {
        if let Some(pid) = t.child.id() {
            // A child we spawned and have not reaped yet: its pid cannot have been reused.
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }
}
