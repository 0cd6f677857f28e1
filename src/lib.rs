//! fleetload: a load generator for streaming platforms.
//!
//! The worker reads its [`scenario`] from the environment, builds events with the [`payload`]
//! generator, paces them on the open-loop schedule of [`pacing`], hands them to one of the
//! [`target`]s (Kinesis, Kafka or null), measures every outcome in [`stats`], and writes the
//! [`report`] files through the [`store`] (a local directory or S3). [`worker`] ties these
//! together for one task.
/// Where the worker tasks run: ECS (RunTask fan-out, describe, stop) and local processes.
pub mod fleet;
/// Kinesis-compatible HTTP server on loopback: test and benchmark support, not used by the worker.
pub mod kinesis_double;
pub mod pacing;
pub mod payload;
pub mod report;
pub mod scenario;
/// Outputs of the project's CloudFormation stack, for `launcher run --stack NAME`.
pub mod stack;
pub mod stats;
pub mod store;
pub mod target;
pub mod worker;
