//! Fleet backends: where the tasks of a run execute, and how each one ended.
//!
//! [`local`] runs worker processes on this machine (with `embedded`, a Kafka-protocol broker
//! hosted for the run when no target is given); [`ecs`] starts tasks with RunTask, watches and
//! stops them, reading its settings from the flags or the project's CloudFormation [`stack`].
//! The backends know nothing of the command line: [`crate::launcher::run`] drives them from a
//! resolved `RunPlan` (`launcher::plan`).

pub mod ecs;
pub(crate) mod embedded;
pub mod local;
pub mod stack;

use crate::model::report_url::ReportUrl;
use crate::worker::{WorkerExit, HARD_DEADLINE_EXIT};

/// How one task ended, as the backend saw it.
#[derive(Debug, Clone)]
pub struct TaskEnd {
    /// The task id (its report directory).
    pub id: String,
    /// Whether it exited 0.
    pub ok: bool,
    /// What went wrong, when it did not.
    pub problem: Option<String>,
    /// Whether it is a consumer task (end to end) rather than a producer.
    pub consumer: bool,
    /// Whether it ended as stopped by SIGTERM or SIGINT (exit 143 or 130, its report stored):
    /// the launcher's own doing when the run was aborted.
    pub interrupted: bool,
}

impl TaskEnd {
    /// From a worker's exit code (or the signal that killed it).
    pub fn from_exit(
        id: &str,
        code: Option<i32>,
        signal: Option<i32>,
        log: Option<&std::path::Path>,
    ) -> TaskEnd {
        let meaning = match code {
            Some(0) => None,
            Some(c) if c == WorkerExit::Failed.code() as i32 => Some("the run failed"),
            Some(c) if c == WorkerExit::BadConfig.code() as i32 => Some("bad scenario"),
            Some(c) if c == WorkerExit::PreflightFailed.code() as i32 => {
                Some("preflight failed: target or report location not usable")
            }
            Some(c) if c == WorkerExit::ReportNotStored.code() as i32 => {
                Some("report not stored (printed in its log)")
            }
            Some(c) if c == HARD_DEADLINE_EXIT as i32 => Some("hard deadline reached"),
            Some(130) => Some("interrupted by SIGINT"),
            Some(143) => Some("interrupted by SIGTERM"),
            Some(_) => Some("unexpected exit code"),
            None => Some("killed by a signal"),
        };
        let problem = meaning.map(|m| {
            let how = match (code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                (None, None) => "ended".to_string(),
            };
            let last = log
                .and_then(last_error_line)
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            let at = log
                .map(|l| format!(" (log: {})", l.display()))
                .unwrap_or_default();
            format!("task {id} {how} ({m}){last}{at}")
        });
        TaskEnd {
            id: id.to_string(),
            ok: problem.is_none(),
            problem,
            consumer: false,
            interrupted: matches!(code, Some(130 | 143)),
        }
    }
}

/// The last ERROR line of a worker's log, to say in one line why it failed.
fn last_error_line(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.starts_with("fleetload worker:"))?;
    let line = line
        .split_once("ERROR")
        .map(|(_, rest)| rest)
        .unwrap_or(line);
    Some(
        line.trim()
            .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
            .chars()
            .take(300)
            .collect(),
    )
}

/// What the fleet backend reports once every task of a `run` has ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Where the tasks wrote their reports.
    pub report_url: ReportUrl,
    /// Tasks asked for (`--tasks`, plus `--consumers`).
    pub tasks_requested: u64,
    /// Ids of the tasks that were started, as their report directories are named (their
    /// FLEETLOAD_TASK_ID); fewer than requested when some could not be started.
    pub task_ids: Vec<String>,
    /// What went wrong with the fleet itself, one line each (a task that could not be started,
    /// exited non-zero, was killed, did not stop); empty when all went well. Any entry makes
    /// the run a failed fleet (exit 3).
    pub problems: Vec<String>,
    /// What the live view saw (`None` when live windows were off).
    pub live: Option<crate::model::live::LiveRecord>,
    /// What each ECS task used, for the cost estimate (empty for local runs).
    pub ecs_usage: Vec<ecs::TaskUsage>,
    /// What could not be read about the tasks' usage, one line each.
    pub usage_notes: Vec<String>,
}
