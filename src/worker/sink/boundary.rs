//! The boundary between the producing loop and the sinks: the [`Event`] handed over, the
//! [`Sink`] trait every target implements (and tests swap fakes in at), and the preflight error.

use std::time::Instant;

/// One event, borrowed from the producing loop's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// When the schedule intended it to be sent, ns from the origin.
    pub intended_ns: u64,
    /// When it was generated and handed over, ns from the origin.
    pub sent_ns: u64,
    /// Its sequence number in the task, from 0 in the order events are handed over (the one
    /// in its trace, when it carries one): a sink that fails an event names it by this.
    pub seq: u64,
    /// Partition key.
    pub key: &'a [u8],
    /// Body.
    pub value: &'a [u8],
}

/// Where the producing loop hands events.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Takes one event; waits while the target pushes back (in-flight limit, full queue).
    async fn send(&mut self, event: Event<'_>);
    /// Sends whatever is batched now (called after each burst of due events).
    async fn flush(&mut self);
    /// Waits for in-flight events until `deadline`; whatever is still unanswered then is
    /// counted as unacknowledged by the recorder.
    async fn drain(&mut self, deadline: Instant);
}

/// A preflight failure: the target or the report location is not usable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreflightError(pub String);
