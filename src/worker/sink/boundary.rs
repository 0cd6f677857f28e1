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
    /// The key's number in the run's key space (1 to `FLEETLOAD_KEYS`): equal numbers, equal
    /// keys, so a sink can remember what it worked out about a key (its shard) by number.
    pub key_number: u64,
    /// Body.
    pub value: &'a [u8],
}

/// Where the producing loop hands events.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Takes one event; waits while the target pushes back (in-flight limit, full queue).
    async fn send(&mut self, event: Event<'_>);
    /// Sends what is due: a batching sink its batch (called after each burst of due events),
    /// an aggregating one what has waited its buffering time (and is called when
    /// [`Sink::flush_due`] says so). Never waits for the target.
    async fn flush(&mut self);
    /// When the sink next holds something that must go out even if no event comes (an
    /// aggregated record whose buffering time runs out): the producing loop wakes then and
    /// calls [`Sink::flush`]. `None` when nothing it holds waits on time, or when nothing could
    /// be sent now anyway (every in-flight slot is taken: the next event waits for one).
    fn flush_due(&self) -> Option<Instant> {
        None
    }
    /// Waits for in-flight events until `deadline`; whatever is still unanswered then is
    /// counted as unacknowledged by the recorder.
    async fn drain(&mut self, deadline: Instant);
}

/// A preflight failure: the target or the report location is not usable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreflightError(pub String);
