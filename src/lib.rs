//! fleetload: a load generator for streaming platforms (Kinesis, Kafka).
//!
//! The crate has three parts, and the folders are the architecture:
//!
//! - [`model`] — the shared core, with no I/O and no AWS, Kafka, clap or tokio types: what the
//!   user typed and how it is refused (`model::input`), the scenario (`model::scenario`), the
//!   load profile and its open-loop schedule ([`model::profile`]), the payload generator
//!   (`model::payload`), the live measurements of a task (`model::measure`), the report
//!   files with their one reader and writer each ([`model::report`]), where reports go
//!   ([`model::report_url`]) and the retry backoff.
//! - [`store`] — the report store (a directory or S3): what the worker and the launcher talk
//!   through, reports and live windows one way, the control object the other; its layout of
//!   keys.
//! - [`worker`] — one task: its lifecycle from preflight to stored report, the producing loop,
//!   the sinks (Kinesis, Kafka, null) and its live windows. The `worker` binary is
//!   [`worker::process_main`].
//! - [`launcher`] — the CLI ([`launcher::cli`]), one resolved run plan built from it
//!   (`launcher::plan`), the fleet backends (local processes, ECS), the exact merge of the task
//!   reports ([`launcher::merge`]), the CI gate (thresholds, JUnit), the rendering of the
//!   summary table and the HTML page ([`launcher::render`]), the comparison of a run with another
//!   against their own noise ([`launcher::compare`]) and the cost estimate ([`launcher::cost`]).
//!
//! Dependencies point one way: `launcher → worker → store → model`, and `launcher → store`,
//! `launcher → model`; the model depends on nothing else, the store only on the model, and the
//! worker never on the launcher. `ARCHITECTURE.md` at the top of the
//! repository draws the map and follows the data through it. The test doubles (Kinesis, ECS)
//! live in the dev-only crate `fleetload-testkit` and are never compiled into the binaries.

pub mod launcher;
pub mod model;
pub mod store;
pub mod worker;
