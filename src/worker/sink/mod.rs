//! The targets events are sent to: Kinesis, Kafka, or none (`null`).
//!
//! A closed enum of targets ([`Target`]) and one small trait at the boundary ([`Sink`]): the
//! producing loop hands each event to a sink, which batches, sends, and reports every outcome
//! to the [`SharedRecorder`]. A partial failure is data: sinks count outcomes by error code and
//! retry only what can be retried.

mod boundary;
pub mod kafka;
pub mod kinesis;
mod null;
mod target;

pub use boundary::{Event, Sink};
pub use kafka::Files;
pub use target::Target;
