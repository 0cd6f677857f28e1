//! fleetload: a load generator for streaming platforms.
//!
//! The worker reads its [`scenario`] from the environment, builds events with the [`payload`]
//! generator, paces them on the open-loop schedule of [`pacing`], hands them to one of the
//! [`target`]s (Kinesis, Kafka or null), measures every outcome in [`stats`], and writes the
//! [`report`] files through the [`store`] (a local directory or S3). [`worker`] ties these
//! together for one task.
//!
//! The [`launcher`] fans tasks out through the [`fleet`] backends, then adds every task's report
//! up exactly in [`merge`], gates the result on the [`threshold`]s of a CI pipeline and prints
//! it with [`summary_table`].
/// Where the worker tasks run: ECS (RunTask fan-out, describe, stop) and local processes.
pub mod fleet;
/// The self-contained HTML report of a merged run (`merged/report.html`), charts as inline SVG.
pub mod html_report;
/// Kinesis-compatible HTTP server on loopback: test and benchmark support, not used by the worker.
pub mod kinesis_double;
pub mod launcher;
pub mod merge;
pub mod pacing;
pub mod payload;
pub mod report;
pub mod scenario;
/// Outputs of the project's CloudFormation stack, for `launcher run --stack NAME`.
pub mod stack;
pub mod stats;
pub mod store;
pub mod summary_table;
pub mod target;
pub mod threshold;
pub mod worker;
