//! The pacing of the rate: an open-loop schedule of intended send times.
//!
//! Event `n` is due at a fixed instant computed from the load profile, whatever the target did
//! with event `n - 1`. Latency is measured from that intended instant, so a slow target cannot
//! hide behind a generator that slowed down with it (coordinated omission).

use std::time::Duration;

use crate::model::input::{parse_duration, parse_rate, ScenarioError};

/// One step of a load profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Events per second at the end of the step (the whole step, unless it ramps); 0 = unpaced.
    pub rate: f64,
    /// How long the step lasts.
    pub duration: Duration,
    /// Whether the rate ramps linearly from the previous step's rate (0 for the first) to `rate`.
    pub ramp: bool,
}

/// The rate over the whole run: one or more stages.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProfile {
    stages: Vec<Stage>,
}

impl LoadProfile {
    /// A profile of the given stages (at least one).
    pub fn new(stages: Vec<Stage>) -> Self {
        assert!(!stages.is_empty(), "a load profile has at least one stage");
        LoadProfile { stages }
    }

    /// Parses `FLEETLOAD_STAGES`: `rate@duration` steps separated by commas, `ramp:` before a
    /// step to ramp linearly to it.
    pub fn parse_stages(value: &str) -> Result<Self, ScenarioError> {
        const NAME: &str = "FLEETLOAD_STAGES";
        let accepted =
            "comma-separated rate@duration steps, e.g. 100@30s,ramp:1000@1m,1000@2m (rates > 0)";
        let mut stages = Vec::new();
        let mut total = Duration::ZERO;
        for step in value.split(',').map(str::trim) {
            let (ramp, step_body) = match step.strip_prefix("ramp:") {
                Some(rest) => (true, rest),
                None => (false, step),
            };
            let (rate, duration) = step_body.split_once('@').ok_or_else(|| {
                ScenarioError::invalid(
                    NAME,
                    value,
                    format!("step {step:?} has no @duration"),
                    accepted,
                )
            })?;
            let rate = parse_rate(NAME, rate, false).map_err(|_| {
                ScenarioError::invalid(
                    NAME,
                    value,
                    format!("step {step:?} has a bad rate"),
                    accepted,
                )
            })?;
            let duration = parse_duration(NAME, duration).map_err(|_| {
                ScenarioError::invalid(
                    NAME,
                    value,
                    format!("step {step:?} has a bad duration"),
                    accepted,
                )
            })?;
            // The steps' sum must not wrap (the run's length is bounded after, on the sum).
            total = total.checked_add(duration).ok_or_else(|| {
                ScenarioError::invalid(
                    NAME,
                    value,
                    "the steps add up to more time than can be counted",
                    accepted,
                )
            })?;
            stages.push(Stage {
                rate,
                duration,
                ramp,
            });
        }
        Ok(LoadProfile::new(stages))
    }

    /// The stages in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// How long the whole run lasts.
    pub fn total_duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Whether the run is unpaced (a single stage at rate 0: as fast as the target accepts).
    pub fn is_unpaced(&self) -> bool {
        self.stages.len() == 1 && self.stages[0].rate == 0.0
    }

    /// The number of events the whole schedule plans (`None` when unpaced).
    pub fn planned_events(&self) -> Option<u64> {
        if self.is_unpaced() {
            return None;
        }
        Some(self.events_before(self.total_duration().as_secs_f64()))
    }

    /// The target rate at `t` seconds from the start (0 after the end, and when unpaced).
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut prev = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if t < start + d {
                return if s.ramp {
                    prev + (s.rate - prev) * (t - start) / d
                } else {
                    s.rate
                };
            }
            start += d;
            prev = s.rate;
        }
        0.0
    }

    /// The (fractional) number of events the schedule plans between `from` and `to` seconds
    /// from the start (either may lie outside the run).
    pub fn events_between(&self, from: f64, to: f64) -> f64 {
        self.events_exact(to.max(0.0)) - self.events_exact(from.max(0.0))
    }

    /// The (fractional) number of events the schedule plans in `[0, t)` seconds.
    fn events_exact(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut prev = 0.0;
        let mut total = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let within = (t - start).clamp(0.0, d);
            total += if s.ramp {
                prev * within + (s.rate - prev) * within * within / (2.0 * d)
            } else {
                s.rate * within
            };
            if t <= start + d {
                break;
            }
            start += d;
            prev = s.rate;
        }
        total
    }

    /// The number of whole events due before `t` seconds: event `n` is due when `n < N(t)`.
    pub fn events_before(&self, t: f64) -> u64 {
        // A small epsilon so that rounding does not add an event when N(t) is a whole number.
        (self.events_exact(t) - 1e-9).ceil().max(0.0) as u64
    }
}

/// Walks the schedule event by event: the intended send time of each event, in order.
///
/// Intended times are offsets from the task's start. The schedule keeps a cursor on the current
/// stage, so each step costs a few floating-point operations and no search.
#[derive(Debug, Clone)]
pub struct Schedule {
    profile: LoadProfile,
    stage: usize,
    /// Start of the current stage, in seconds from the start.
    stage_start: f64,
    /// Events planned before the current stage.
    stage_first_event: f64,
    /// Rate at the start of the current stage.
    stage_from_rate: f64,
    /// The next event's number.
    next: u64,
    end: f64,
}

impl Schedule {
    /// A schedule for `profile`, starting at event 0.
    pub fn new(profile: LoadProfile) -> Self {
        let end = profile.total_duration().as_secs_f64();
        Schedule {
            profile,
            stage: 0,
            stage_start: 0.0,
            stage_first_event: 0.0,
            stage_from_rate: 0.0,
            next: 0,
            end,
        }
    }

    /// The whole run's length.
    pub fn duration(&self) -> Duration {
        self.profile.total_duration()
    }

    /// The profile this schedule walks.
    pub fn profile(&self) -> &LoadProfile {
        &self.profile
    }

    /// Whether events are sent as fast as the target accepts rather than on a schedule.
    pub fn is_unpaced(&self) -> bool {
        self.profile.is_unpaced()
    }

    /// The intended send time of the next event, without taking it; `None` once the schedule is over.
    /// Unpaced schedules have no intended times and always return `None`.
    pub fn peek(&mut self) -> Option<Duration> {
        if self.is_unpaced() {
            return None;
        }
        let n = self.next as f64;
        loop {
            let s = *self.profile.stages.get(self.stage)?;
            let d = s.duration.as_secs_f64();
            let k = n - self.stage_first_event; // events into this stage
            let in_stage = if s.ramp {
                // Solve r0 x + (r1 - r0) x^2 / (2d) = k for x in [0, d].
                let a = (s.rate - self.stage_from_rate) / (2.0 * d);
                let b = self.stage_from_rate;
                if a.abs() < 1e-12 {
                    if b > 0.0 {
                        k / b
                    } else {
                        f64::INFINITY
                    }
                } else {
                    let disc = b * b + 4.0 * a * k;
                    if disc < 0.0 {
                        f64::INFINITY
                    } else {
                        (-b + disc.sqrt()) / (2.0 * a)
                    }
                }
            } else {
                k / s.rate
            };
            if in_stage < d - 1e-12 {
                let t = self.stage_start + in_stage.max(0.0);
                return (t < self.end).then(|| Duration::from_secs_f64(t));
            }
            // Past this stage: move the cursor to the next one.
            self.stage_first_event += if s.ramp {
                (self.stage_from_rate + s.rate) / 2.0 * d
            } else {
                s.rate * d
            };
            self.stage_start += d;
            self.stage_from_rate = s.rate;
            self.stage += 1;
        }
    }

    /// Takes the next event: its intended offset from the start (`None` once the schedule is over).
    pub fn next_due(&mut self) -> Option<Duration> {
        let t = self.peek()?;
        self.next += 1;
        Some(t)
    }

    /// Counts an event of an unpaced schedule.
    pub fn take_unpaced(&mut self) {
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(s: &str) -> LoadProfile {
        LoadProfile::parse_stages(s).unwrap()
    }

    fn all_times(p: LoadProfile) -> Vec<Duration> {
        let mut s = Schedule::new(p);
        std::iter::from_fn(|| s.next_due()).collect()
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let t = all_times(profile("10@2s"));
        assert_eq!(t.len(), 20);
        assert_eq!(t[0], Duration::ZERO);
        assert_eq!(t[1], Duration::from_millis(100));
        assert_eq!(t[19], Duration::from_millis(1900));
    }

    #[test]
    fn stages_follow_each_other() {
        let t = all_times(profile("10@1s,100@1s"));
        assert_eq!(t.len(), 110);
        assert_eq!(t[10], Duration::from_secs(1));
        assert!((t[11].as_secs_f64() - 1.01).abs() < 1e-9);
        let p = profile("10@1s,100@1s");
        assert_eq!(p.planned_events(), Some(110));
        assert_eq!(p.events_between(0.0, 1.0).round(), 10.0);
        assert_eq!(p.events_between(1.0, 2.0).round(), 100.0);
        assert_eq!(p.events_between(2.0, 3.0), 0.0);
    }

    #[test]
    fn ramp_is_linear() {
        // Ramp 0 -> 100/s over 10 s: 500 events; the rate in second k is about 10k + 5.
        let p = profile("ramp:100@10s");
        assert_eq!(p.planned_events(), Some(500));
        for k in 0..10 {
            assert!(
                (p.events_between(k as f64, k as f64 + 1.0) - (10.0 * k as f64 + 5.0)).abs() < 1e-6,
                "second {k}"
            );
        }
        let t = all_times(p.clone());
        assert_eq!(t.len(), 500);
        // Count events intended in each second and compare with the planned rate.
        for k in 0..10u64 {
            let n = t.iter().filter(|d| d.as_secs() == k).count() as f64;
            assert!(
                (n - p.events_between(k as f64, k as f64 + 1.0)).abs() <= 1.0,
                "second {k}: {n}"
            );
        }
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn ramp_down_and_from_previous_rate() {
        let p = profile("100@1s,ramp:50@2s,ramp:200@1s");
        assert!((p.rate_at(1.0) - 100.0).abs() < 1e-9);
        assert!((p.rate_at(2.0) - 75.0).abs() < 1e-9);
        assert!((p.rate_at(3.5) - 125.0).abs() < 1e-9);
        let t = all_times(p.clone());
        assert_eq!(t.len() as u64, p.planned_events().unwrap());
        assert_eq!(t.len(), 100 + 150 + 125);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t.last().unwrap().as_secs_f64() < 4.0);
    }

    #[test]
    fn fractional_rates() {
        let t = all_times(profile("0.5@10s"));
        assert_eq!(t.len(), 5);
        assert_eq!(t[1], Duration::from_secs(2));
    }

    #[test]
    fn unpaced() {
        let p = LoadProfile::new(vec![Stage {
            rate: 0.0,
            duration: Duration::from_secs(5),
            ramp: false,
        }]);
        assert!(p.is_unpaced());
        assert_eq!(p.planned_events(), None);
        let mut s = Schedule::new(p);
        assert_eq!(s.peek(), None);
        s.take_unpaced();
        assert_eq!(s.next, 1);
    }

    #[test]
    fn bad_stages() {
        for bad in [
            "",
            "100",
            "100@",
            "@5s",
            "0@5s",
            "ramp:x@5s",
            "100@5x",
            "100@5s,,",
        ] {
            let e = LoadProfile::parse_stages(bad).unwrap_err();
            assert!(e.to_string().starts_with("FLEETLOAD_STAGES="), "{bad}: {e}");
        }
    }

    #[test]
    fn high_rate_count_is_exact() {
        let mut s = Schedule::new(profile("100000@3s"));
        let mut n = 0u64;
        while s.next_due().is_some() {
            n += 1;
        }
        assert_eq!(n, 300_000);
    }
}
