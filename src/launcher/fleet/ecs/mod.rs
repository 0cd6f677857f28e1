//! The ECS backend: runs the worker image as ECS tasks (Fargate, Fargate Spot or EC2 capacity).
//!
//! [`EcsFleet`] holds the client, the configuration, the retry backoff and the poll interval; the
//! ECS service limits it works within are in `limits`. Each other concern has its file:
//! - `config`: where the tasks run ([`EcsConfig`], [`CapacityProvider`]) and the one place
//!   that rejects it, before any call;
//! - `overrides`: the worker's environment as RunTask container overrides, sized against
//!   [`OVERRIDES_MAX_BYTES`];
//! - `start`: [`EcsFleet::start`] fans a run out with RunTask — at most
//!   `RUN_TASK_MAX_COUNT` (10) tasks per call, every call of a [`TaskGroup`] with the same
//!   container overrides ([`EcsFleet::start_groups`]: producers, and each consumer task with
//!   its own place among the consumers) — and
//!   keeps asking until the whole fleet runs or the caller's deadline passes. Placement failures
//!   (`failures[]` in a successful answer) and throttling are data: they are counted, reported,
//!   and only the missing tasks are asked for again;
//! - `watch`: [`EcsFleet::describe`], [`EcsFleet::stop`] and [`EcsFleet::wait_stopped`] follow
//!   the tasks to their end. Their calls are retried with backoff while the errors are
//!   transient (throttling, server errors, no answer), for at most [`WATCH_RETRY_FOR`] in a row;
//!   an error that persists, or that retrying cannot cure, is returned for the caller to stop
//!   every task it started. Every task carries the run id in `startedBy` and in the
//!   [`RUN_ID_TAG`] tag, so [`EcsFleet::list_run`] finds a run's tasks again from nothing but its
//!   id (`launcher stop`);
//! - `usage`: what each task used ([`TaskUsage`]: size, architecture, capacity, the instants
//!   Fargate bills between), for the run's cost estimate.

mod config;
mod fleet;
mod limits;
mod overrides;
mod start;
mod usage;
mod watch;

pub(crate) use config::validate_run_id;
pub use config::{CapacityProvider, EcsConfig, EcsConfigError};
pub use fleet::{EcsFleet, WATCH_RETRY_FOR};
pub use limits::{OVERRIDES_MAX_BYTES, RUN_ID_TAG};
pub use overrides::OverridesTooLarge;
pub use start::{StartError, StartProgress, StartReport, StartStop, TaskGroup};
pub use usage::{cpu_units, memory_mib, TaskUsage};
pub use watch::{NotStopped, TaskState};
