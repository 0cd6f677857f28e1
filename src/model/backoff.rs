//! Exponential backoff with jitter: how long to wait before retry number `attempt`.
//!
//! One type for every retry loop of the project. The wait grows as `base * 2^attempt` up to
//! `cap` (the *step*), and a random part spreads the clients that failed together, so they do
//! not all come back at the same instant and fail together again. Which random part is a named
//! choice, `Jitter`, made by the constructor ([`Backoff::equal`], `Backoff::full`), following
//! AWS's "Exponential Backoff and Jitter" (Marc Brooker, AWS Architecture Blog, 2015), which
//! compares the variants on clients contending for one resource:
//!
//! - **Full jitter** — a wait anywhere in `[0, step]`. In the article's measurements it takes
//!   the fewest calls of all the variants: the retries spread over the widest window. The
//!   Kinesis sink uses it: many batches in flight in each of many tasks are throttled by the
//!   same shards at once, and spreading them widely is what lets the shards accept them; a batch
//!   that happens to wait very little costs one more PutRecords call, its attempts are bounded,
//!   and the latency it adds is measured, not hidden.
//! - **Equal jitter** — half the step for sure, plus a random part of the other half. The
//!   article finds it slightly more calls and a later finish than full jitter; what it buys is a
//!   floor: no wait is shorter than half the step. The ECS fleet's start uses it: its retries
//!   wait for placement capacity to appear (`RESOURCE:*`, Fargate capacity) or for the account's
//!   control-plane request rate to refill (shared with every other tool of the account), and a
//!   retry right away would only find the same empty cluster or the same throttle; a few
//!   launchers still do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// The shortest full-jitter wait, so that a retry never comes back in a busy loop.
const FULL_JITTER_MIN: Duration = Duration::from_millis(1);

/// How the random part of a [`Backoff`] wait is drawn from the exponential step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jitter {
    /// Anywhere in `[0, step]`, at least 1 ms.
    Full,
    /// `step / 2` plus anywhere in `[0, step / 2]`.
    Equal,
}

/// Exponential backoff: the step is `base * 2^attempt`, capped at `cap`, jittered by `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The step of the first retry (attempt 0).
    base: Duration,
    /// The largest step.
    cap: Duration,
    /// How the wait is drawn from the step.
    jitter: Jitter,
}

impl Backoff {
    /// Full jitter from `base` up to `cap`.
    pub(crate) const fn full(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            jitter: Jitter::Full,
        }
    }

    /// Equal jitter from `base` up to `cap`.
    pub const fn equal(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            jitter: Jitter::Equal,
        }
    }

    /// The step before retry number `attempt` (0-based): `base * 2^attempt`, at most `cap`.
    fn step(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.cap)
    }

    /// How long to wait before retry number `attempt` (0-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let step = self.step(attempt);
        match self.jitter {
            Jitter::Full => Duration::from_secs_f64(step.as_secs_f64() * rand::random::<f64>())
                .max(FULL_JITTER_MIN),
            Jitter::Equal => {
                let half = step / 2;
                let micros = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
                half + Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..40 {
            let d = Backoff::full(Duration::from_millis(50), Duration::from_secs(2)).delay(attempt);
            assert!(
                d >= Duration::from_millis(1) && d <= Duration::from_secs(2),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let b = Backoff::equal(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..30 {
            let d = b.delay(attempt);
            let step = (Duration::from_millis(100) * 2u32.pow(attempt.min(10)))
                .min(Duration::from_secs(1));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn the_step_doubles_until_the_cap() {
        let b = Backoff::full(Duration::from_millis(50), Duration::from_secs(2));
        let steps: Vec<u64> = (0..8).map(|a| b.step(a).as_millis() as u64).collect();
        assert_eq!(steps, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.step(u32::MAX), Duration::from_secs(2));
    }
}
