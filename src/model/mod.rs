//! The shared core of worker and launcher: pure data and logic, no I/O, no AWS, Kafka, clap or
//! tokio types. Everything here is tested by unit tests next to it.
//!
//! - `input`: the worker environment's names, `ScenarioError` (every refusal names the
//!   input, the value and what is accepted), secret redaction, the shared value parsers;
//! - `scenario`: `FLEETLOAD_*` → a validated `Scenario` (raw envy struct, then one
//!   conversion that is the only place input is rejected);
//! - `target`: where the events go (`TargetConfig`, a Kinesis `StreamRef`, PutRecords' limits);
//! - [`profile`]: rates and stages ([`profile::LoadProfile`]) and the open-loop schedule of
//!   intended send times ([`profile::Schedule`]);
//! - `keys`: how each event's key is drawn (`FLEETLOAD_KEY_DISTRIBUTION`: uniform, zipf, hot,
//!   sequential);
//! - [`kpl`]: the KPL aggregated-record format (magic, protobuf body, MD5 trailer): written by
//!   the Kinesis sink when aggregation is on, read back by the Kinesis consumer;
//! - `payload`: the sensor reading and user templates, compiled once, written per event;
//! - [`live`]: live windows (what a task did in each interval, written while it runs; what the
//!   launcher saw of the fleet), and the accumulators the recorders fill them from;
//! - `measure`: the recorder of a task's outcomes (counts by code, latency from the intended
//!   time, per-second rows and histograms);
//! - [`report`]: `summary.json`, `timeseries.csv`, `histograms.hlog`: schema, one writer and one
//!   reader each;
//! - [`report_url`]: where reports go (`s3://…`, `file://…`, a path);
//! - `trace`: end to end: the trace field of produced events (written per event, found again by
//!   a consumer without parsing the record), the role and the consumer's settings;
//! - `delivery`: what a consumer task saw (per producer task a bitmap of sequence numbers,
//!   end-to-end latency) and its reconciliation with the producers' counts (lost, duplicates);
//! - [`backoff`]: exponential backoff with full or equal jitter, for the Kinesis sink's and the
//!   ECS start's retries.

pub mod backoff;
pub(crate) mod delivery;
pub(crate) mod input;
pub(crate) mod keys;
pub mod kpl;
pub mod live;
pub(crate) mod measure;
pub(crate) mod payload;
pub mod profile;
pub mod report;
pub mod report_url;
pub(crate) mod scenario;
pub(crate) mod target;
pub(crate) mod trace;
