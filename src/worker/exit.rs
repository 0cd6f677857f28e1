//! How a task ends: its exit codes, what it hands back, and the time limits of its end (the
//! drain after production, the hard deadline).

use std::time::Duration;

use crate::model::report::Summary;

/// How long in-flight events may take to be acknowledged once production stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a progress line is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Beyond the planned end, how long a task may take to drain and store its report before the
/// hard deadline ends the process whatever the target is doing.
pub const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(180);

/// How the worker process ends; the code is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Produced for the whole duration and stored the report.
    Completed,
    /// The run failed after it started (the report says why).
    Failed,
    /// The scenario is invalid; nothing was sent.
    BadConfig,
    /// The target or the report location is not usable; nothing was sent.
    PreflightFailed,
    /// The report could not be stored; it was printed to stdout instead.
    ReportNotStored,
    /// Stopped by a signal; the report (outcome `interrupted`) was stored.
    Interrupted(&'static str),
}

impl WorkerExit {
    /// The process exit code: 0, 1, 2, 3, 4, or 128 + the signal number when interrupted.
    pub fn code(self) -> u8 {
        match self {
            WorkerExit::Completed => 0,
            WorkerExit::Failed => 1,
            WorkerExit::BadConfig => 2,
            WorkerExit::PreflightFailed => 3,
            WorkerExit::ReportNotStored => 4,
            WorkerExit::Interrupted("SIGINT") => 130,
            WorkerExit::Interrupted(_) => 143,
        }
    }
}

/// The exit code used when the hard deadline ends a task.
pub const HARD_DEADLINE_EXIT: u8 = 5;

/// What a finished task produced.
#[derive(Debug)]
pub struct TaskResult {
    /// How the process should exit.
    pub exit: WorkerExit,
    /// The report, as stored (or printed).
    pub summary: Summary,
    /// Where the summary was stored, if it was.
    pub stored_at: Option<String>,
}
