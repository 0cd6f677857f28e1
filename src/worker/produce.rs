//! The producing loop: the hot path of a task.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::model::measure::SharedRecorder;
use crate::model::payload::Generator;
use crate::model::profile::Schedule;
use crate::model::report::{Outcome, BEHIND_AFTER_MS};
use crate::model::trace::TraceWriter;
use crate::worker::sink::{Event, Sink};

/// A stop request: the name of the signal that asked for it.
pub type StopSignal = watch::Receiver<Option<&'static str>>;

/// Events generated between two looks at the clock and the stop signal.
const BURST: u64 = 1024;
/// An event handed over later than this after its intended time means production is behind.
const BEHIND_AFTER_NS: u64 = BEHIND_AFTER_MS * 1_000_000;
/// An event intended before the planned end may still be handed over after it while it is on
/// time (no later than [`BEHIND_AFTER_MS`] after its intended time), so timer granularity and a
/// request finishing just after the end do not turn the last events of a healthy run into
/// unsent ones. A late event is never handed over after the planned end.
fn cutoff(end: Instant, origin: Instant, intended_ns: u64) -> Instant {
    end.max(origin + Duration::from_nanos(intended_ns + BEHIND_AFTER_NS))
}

/// What became of one event offered to the target.
enum Handed {
    /// The target took it at once.
    Taken,
    /// The target took it after making the loop wait: look at the clock again.
    TakenAfterWait,
    /// Production ended (the planned end, or a stop signal) while the target was pushing back;
    /// the event was not handed over.
    Ended,
}

/// Hands `event` to the target, racing the end of production (`cutoff`) and the stop signal:
/// a send blocked on back-pressure (in-flight limit, full queue) is abandoned when either
/// comes. The time spent blocked is added to `blocked_ns`.
async fn hand_over<S: Sink>(
    target: &mut S,
    event: Event<'_>,
    cutoff: Instant,
    stop: &mut StopSignal,
    blocked_ns: &mut u64,
) -> Handed {
    let mut send = pin!(target.send(event));
    // The common case: the target takes it at once, with no timer or signal involved.
    if std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx).is_ready())).await {
        return Handed::Taken;
    }
    let blocked_at = Instant::now();
    let handed = tokio::select! {
        // End and stop first: once production has ended nothing more is handed over, even if
        // the target made room at the same moment.
        biased;
        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(cutoff)) => Handed::Ended,
        _ = signalled(stop) => Handed::Ended,
        _ = send => Handed::TakenAfterWait,
    };
    *blocked_ns += blocked_at.elapsed().as_nanos() as u64;
    handed
}

/// The producing loop: hands every due event to the target until the schedule ends or a stop
/// signal arrives. Open loop: event `n` is due at its scheduled instant whatever happened to
/// event `n - 1`; if sending falls behind, later events carry their original intended times.
/// Production ends at the planned end (or the stop signal) whatever the target is doing: events
/// due until then that were never handed over are counted unsent. With a `trace` writer every
/// event carries its trace (task, sequence number, intended time as epoch µs from
/// `epoch_origin_us`, the wall clock at `origin`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn produce<S: Sink>(
    target: &mut S,
    mut schedule: Schedule,
    generator: &mut Generator,
    recorder: &SharedRecorder,
    origin: Instant,
    epoch_origin_us: u64,
    mut trace: Option<&mut TraceWriter>,
    stop: &mut StopSignal,
) -> Outcome {
    let epoch_origin_ms = epoch_origin_us / 1000;
    // Sequence numbers of events handed over; an event generated but not handed over (the end
    // came first) gives its number to nothing, since production stops there.
    let mut seq = 0u64;
    let end = origin + schedule.duration();
    let (mut key, mut value) = (Vec::with_capacity(64), Vec::with_capacity(256));
    let mut blocked_ns = 0u64;
    // Since when the loop has been behind its schedule (ns from the origin), if it is.
    let mut behind_since: Option<(u64, u64)> = None;
    let outcome = loop {
        // `borrow_and_update` marks the signal seen, so that waiting for acknowledgements
        // afterwards is cut short only by a second signal.
        if let Some(signal) = *stop.borrow_and_update() {
            break Outcome::Interrupted {
                signal: signal.to_string(),
            };
        }
        let now = Instant::now();
        let on_time_past_end = schedule
            .peek()
            .is_some_and(|t| now < cutoff(end, origin, t.as_nanos() as u64));
        if now >= end && !on_time_past_end {
            break Outcome::Completed;
        }
        let now_ns = (now - origin).as_nanos() as u64;
        let timestamp_ms = epoch_origin_ms + now_ns / 1_000_000;
        let mut burst = 0u64;
        if schedule.is_unpaced() {
            let mut ended = false;
            while burst < BURST {
                let key_number = generator.next_event(timestamp_ms, &mut key, &mut value);
                if let Some(trace) = trace.as_deref_mut() {
                    trace.append(&mut value, epoch_origin_us + now_ns / 1000);
                }
                let event = Event {
                    intended_ns: now_ns,
                    sent_ns: now_ns,
                    seq,
                    key: &key,
                    key_number,
                    value: &value,
                };
                match hand_over(target, event, end, stop, &mut blocked_ns).await {
                    Handed::Taken => {
                        schedule.take_unpaced();
                        burst += 1;
                        seq += 1;
                    }
                    Handed::TakenAfterWait => {
                        schedule.take_unpaced();
                        burst += 1;
                        seq += 1;
                        break;
                    }
                    Handed::Ended => {
                        ended = true;
                        break;
                    }
                }
            }
            {
                let mut r = recorder.lock();
                r.attempted(now_ns, burst);
                r.blocked_on_target(std::mem::take(&mut blocked_ns));
            }
            // An aggregating sink's records fill fast here, but a shard that gets few keys
            // still has its aggregate sent within its buffering time.
            if is_due(target) {
                target.flush().await;
            }
            if !ended {
                tokio::task::yield_now().await;
            }
            continue; // the top of the loop tells the signal from the planned end
        }
        // Behind schedule: the oldest due event is late by more than the threshold.
        match (schedule.peek(), behind_since) {
            (Some(t), None) if now_ns.saturating_sub(t.as_nanos() as u64) > BEHIND_AFTER_NS => {
                behind_since = Some((now_ns, t.as_nanos() as u64));
            }
            (Some(t), Some((since, first_late)))
                if now_ns.saturating_sub(t.as_nanos() as u64) <= BEHIND_AFTER_NS =>
            {
                recorder
                    .lock()
                    .behind_schedule(first_late, now_ns.saturating_sub(since));
                behind_since = None;
            }
            _ => {}
        }
        // Every event whose intended time has come, up to a burst; the schedule itself ends
        // before `end`, so the last events are sent even when the wake-up comes late.
        let (mut ended, mut waited) = (false, false);
        while let Some(t) = schedule.peek() {
            let intended_ns = t.as_nanos() as u64;
            if intended_ns > now_ns || burst >= BURST {
                break;
            }
            let key_number = generator.next_event(timestamp_ms, &mut key, &mut value);
            if let Some(trace) = trace.as_deref_mut() {
                trace.append(&mut value, epoch_origin_us + intended_ns / 1000);
            }
            let event = Event {
                intended_ns,
                sent_ns: now_ns,
                seq,
                key: &key,
                key_number,
                value: &value,
            };
            let cutoff = cutoff(end, origin, intended_ns);
            match hand_over(target, event, cutoff, stop, &mut blocked_ns).await {
                Handed::Taken => {
                    schedule.next_due();
                    burst += 1;
                    seq += 1;
                }
                Handed::TakenAfterWait => {
                    // Time passed while waiting: the clock and the stop signal come first.
                    schedule.next_due();
                    burst += 1;
                    seq += 1;
                    waited = true;
                    break;
                }
                Handed::Ended => {
                    ended = true;
                    break;
                }
            }
        }
        if burst > 0 || blocked_ns > 0 {
            let mut r = recorder.lock();
            r.attempted(now_ns, burst);
            r.blocked_on_target(std::mem::take(&mut blocked_ns));
        }
        if ended {
            continue; // the top of the loop tells the signal from the planned end
        }
        if burst >= BURST || waited {
            // More may be due: look at the clock and the stop signal again first.
            continue;
        }
        if burst > 0 || is_due(target) {
            target.flush().await;
        }
        let mut wake = match schedule.peek() {
            Some(t) => origin + t,
            None => origin + schedule.duration(),
        };
        // Between events, the sink may hold an aggregate whose buffering time ends sooner.
        if let Some(due) = target.flush_due() {
            wake = wake.min(due);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = signalled(stop) => {}
        }
        if schedule.peek().is_none() && Instant::now() >= origin + schedule.duration() {
            break Outcome::Completed;
        }
    };
    let stopped_ns =
        ((Instant::now() - origin).as_nanos() as u64).min(schedule.duration().as_nanos() as u64);
    if let Some((since, first_late)) = behind_since {
        recorder
            .lock()
            .behind_schedule(first_late, stopped_ns.saturating_sub(since));
    }
    count_unsent(&mut schedule, recorder, stopped_ns);
    // What is batched was handed over before the end: it goes out now (no wait for room).
    target.flush().await;
    outcome
}

/// Whether the sink holds something whose time to go out has come.
fn is_due<S: Sink>(target: &S) -> bool {
    target.flush_due().is_some_and(|due| due <= Instant::now())
}

/// Counts the events the schedule called for before production stopped (`stopped_ns` from the
/// origin) that were never handed over, each in the second it was intended for.
fn count_unsent(schedule: &mut Schedule, recorder: &SharedRecorder, stopped_ns: u64) {
    if schedule.is_unpaced() {
        return;
    }
    let stopped = Duration::from_nanos(stopped_ns);
    let mut r = recorder.lock();
    while let Some(t) = schedule.peek() {
        if t >= stopped {
            break;
        }
        schedule.next_due();
        r.unsent(t.as_nanos() as u64, 1);
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
