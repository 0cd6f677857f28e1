//! The worker: one task of a run, from a validated scenario to a stored report.
//!
//! Preflight (report location writable, target present) → wait for the run's start instant →
//! produce on the schedule until the duration ends or a stop signal arrives → wait briefly for
//! in-flight acknowledgements → write the report. Every path out writes a report: a failed
//! preflight and an interrupted run too. While it runs, a task writes a live window every
//! `FLEETLOAD_LIVE_INTERVAL` (`live`), and the report store (`crate::store`) is where both go.

pub(crate) mod consume;
mod exit;
mod live;
mod process;
mod produce;
pub(crate) mod sink;
mod task;
mod task_id;
mod task_report;

pub use exit::{
    TaskResult, WorkerExit, DRAIN_TIMEOUT, HARD_DEADLINE_EXIT, HARD_DEADLINE_GRACE, PROGRESS_EVERY,
};
pub use process::process_main;
pub use produce::StopSignal;
/// Amazon MSK IAM tokens as the Kafka sink signs them (for checks against other signers).
pub use sink::kafka::{sign_msk_iam_token, MskIamToken, MSK_IAM_MECHANISM, MSK_IAM_TOKEN_LIFETIME};
pub use task::run;
