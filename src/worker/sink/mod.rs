//! The targets events are sent to: Kinesis, Kafka, or none (`null`).
//!
//! A closed enum of targets ([`Target`]) and one small trait at the boundary ([`Sink`]): the
//! producing loop hands each event to a sink, which batches, sends, and reports every outcome
//! to the [`SharedRecorder`]. A partial failure is data: sinks count outcomes by error code and
//! retry only what can be retried.

pub mod kafka;
pub mod kinesis;

use std::time::Instant;

use crate::model::measure::SharedRecorder;
use crate::model::scenario::{Scenario, TargetConfig};

/// One event, borrowed from the producing loop's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// When the schedule intended it to be sent, ns from the origin.
    pub intended_ns: u64,
    /// When it was generated and handed over, ns from the origin.
    pub sent_ns: u64,
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

/// A connected, checked target.
pub enum Target {
    /// Kinesis PutRecords.
    Kinesis(kinesis::KinesisSink),
    /// Kafka via librdkafka.
    Kafka(kafka::KafkaSink),
    /// Nothing is sent; every event is acknowledged at once.
    Null(NullSink),
}

impl Target {
    /// Connects to the scenario's target and checks it is there (stream active, topic
    /// present), before the clock starts. Nothing is produced here.
    pub async fn connect(
        scenario: &Scenario,
        task_id: &str,
        recorder: SharedRecorder,
    ) -> Result<Target, PreflightError> {
        Ok(match &scenario.target {
            TargetConfig::Kinesis { stream } => Target::Kinesis(
                kinesis::KinesisSink::connect(
                    stream.clone(),
                    scenario.batch_size,
                    scenario.max_in_flight,
                    recorder,
                )
                .await?,
            ),
            TargetConfig::Kafka { topic, properties } => Target::Kafka(
                kafka::KafkaSink::connect(topic, properties, task_id, recorder).await?,
            ),
            TargetConfig::Null => Target::Null(NullSink::new(recorder)),
        })
    }
}

impl Sink for Target {
    async fn send(&mut self, event: Event<'_>) {
        match self {
            Target::Kinesis(s) => s.send(event).await,
            Target::Kafka(s) => s.send(event).await,
            Target::Null(s) => s.send(event).await,
        }
    }

    async fn flush(&mut self) {
        match self {
            Target::Kinesis(s) => s.flush().await,
            Target::Kafka(s) => s.flush().await,
            Target::Null(s) => s.flush().await,
        }
    }

    async fn drain(&mut self, deadline: Instant) {
        match self {
            Target::Kinesis(s) => s.drain(deadline).await,
            Target::Kafka(s) => s.drain(deadline).await,
            Target::Null(s) => s.drain(deadline).await,
        }
    }
}

/// Acknowledges every event at once: measures the generator and the pacing alone.
pub struct NullSink {
    recorder: SharedRecorder,
    /// (intended, sent, bytes) not yet recorded: recorded in bursts to take the lock once.
    pending: Vec<(u64, u64, u64)>,
}

impl NullSink {
    /// A null sink recording into `recorder`.
    pub fn new(recorder: SharedRecorder) -> Self {
        NullSink {
            recorder,
            pending: Vec::with_capacity(4096),
        }
    }

    fn record_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut r = self.recorder.lock();
        for &(intended, sent, bytes) in &self.pending {
            r.acknowledged(intended, sent, sent, bytes);
        }
        self.pending.clear();
    }
}

impl Sink for NullSink {
    async fn send(&mut self, event: Event<'_>) {
        self.pending.push((
            event.intended_ns,
            event.sent_ns,
            (event.key.len() + event.value.len()) as u64,
        ));
        if self.pending.len() == self.pending.capacity() {
            self.record_pending();
        }
    }

    async fn flush(&mut self) {
        self.record_pending();
    }

    async fn drain(&mut self, _deadline: Instant) {
        self.record_pending();
    }
}
