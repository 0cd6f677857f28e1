//! The producing loop: the hot path of a task.

use std::time::Instant;

use crate::model::measure::SharedRecorder;
use crate::model::payload::Generator;
use crate::model::profile::Schedule;
use crate::model::report::Outcome;
use crate::worker::sink::{Event, Sink};
use crate::worker::StopSignal;

/// Events generated between two looks at the clock and the stop signal.
const BURST: u64 = 1024;

/// The producing loop: hands every due event to the target until the schedule ends or a stop
/// signal arrives. Open loop: event `n` is due at its scheduled instant whatever happened to
/// event `n - 1`; if sending falls behind, later events carry their original intended times.
pub(crate) async fn produce<S: Sink>(
    target: &mut S,
    mut schedule: Schedule,
    generator: &mut Generator,
    recorder: &SharedRecorder,
    origin: Instant,
    epoch_origin_ms: u64,
    stop: &mut StopSignal,
) -> Outcome {
    let end = origin + schedule.duration();
    let (mut key, mut value) = (Vec::with_capacity(64), Vec::with_capacity(256));
    loop {
        if let Some(signal) = *stop.borrow() {
            target.flush().await;
            return Outcome::Interrupted {
                signal: signal.to_string(),
            };
        }
        let now = Instant::now();
        let now_ns = (now - origin).as_nanos() as u64;
        let timestamp_ms = epoch_origin_ms + now_ns / 1_000_000;
        let mut burst = 0u64;
        if schedule.is_unpaced() {
            if now >= end {
                target.flush().await;
                return Outcome::Completed;
            }
            while burst < BURST {
                generator.next_event(timestamp_ms, &mut key, &mut value);
                schedule.take_unpaced();
                target
                    .send(Event {
                        intended_ns: now_ns,
                        sent_ns: now_ns,
                        key: &key,
                        value: &value,
                    })
                    .await;
                burst += 1;
            }
            recorder.lock().attempted(now_ns, burst);
            tokio::task::yield_now().await;
            continue;
        }
        // Every event whose intended time has come, up to a burst; the schedule itself ends
        // before `end`, so the last events are sent even when the wake-up comes late.
        while let Some(t) = schedule.peek() {
            let intended_ns = t.as_nanos() as u64;
            if intended_ns > now_ns || burst >= BURST {
                break;
            }
            schedule.next_due();
            generator.next_event(timestamp_ms, &mut key, &mut value);
            target
                .send(Event {
                    intended_ns,
                    sent_ns: now_ns,
                    key: &key,
                    value: &value,
                })
                .await;
            burst += 1;
        }
        if burst > 0 {
            recorder.lock().attempted(now_ns, burst);
            if burst >= BURST {
                // More may be due: look at the clock and the stop signal again first.
                continue;
            }
            target.flush().await;
        }
        let wake = match schedule.peek() {
            Some(t) => origin + t,
            None if now >= end => return Outcome::Completed,
            None => end,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = signalled(stop) => {}
        }
    }
}

/// Resolves when the stop signal changes; never, once nobody can send one.
pub(crate) async fn signalled(stop: &mut StopSignal) {
    if stop.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) async fn wait_for_stop(stop: &mut StopSignal) -> &'static str {
    loop {
        if let Some(signal) = *stop.borrow_and_update() {
            return signal;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: no signal can come any more.
            std::future::pending::<()>().await;
        }
    }
}
