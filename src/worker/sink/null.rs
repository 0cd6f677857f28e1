//! The null target: events are generated, paced and measured, and sent nowhere.

use std::time::Instant;

use super::boundary::{Event, Sink};
use crate::model::measure::SharedRecorder;

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
