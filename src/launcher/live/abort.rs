//! `--abort-on-fail`: the thresholds that can be judged live, judged on every window of the
//! fleet after a warm-up; one broken for `--abort-after` consecutive windows stops the run.

use std::time::Duration;

use crate::launcher::gate::{LiveValues, Threshold};
use crate::model::live::{clock, AbortWindow, Aborted};

/// `--abort-after` when not given: one bad window is noise, three in a row are not.
pub const DEFAULT_ABORT_AFTER: u32 = 3;
/// `--abort-grace` when not given: the first minute is warm-up (connections, JIT-less but
/// cold caches, a stream's partitions being found).
pub const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(60);

/// When a live threshold stops the run.
#[derive(Debug, Clone)]
pub struct AbortRule {
    /// Consecutive broken windows that stop the run.
    pub after: u32,
    /// Windows that end within this time from the planned start are not judged.
    pub grace: Duration,
}

/// Judges every live threshold on every window, counting consecutive broken windows.
pub(super) struct AbortJudge {
    rule: AbortRule,
    /// Per threshold: the windows broken in a row so far, with what was measured.
    thresholds: Vec<(Threshold, Vec<AbortWindow>)>,
}

impl AbortJudge {
    /// A judge of the `thresholds` that can be judged live (the others wait for the end).
    pub(super) fn new(rule: AbortRule, thresholds: &[Threshold]) -> Self {
        AbortJudge {
            rule,
            thresholds: thresholds
                .iter()
                .filter(|t| t.metric.judged_live())
                .map(|t| (t.clone(), Vec::new()))
                .collect(),
        }
    }

    /// Judges window `window` ending at `to_second` (from the planned start); the abort when
    /// a threshold has now been broken for the rule's number of windows in a row. A window
    /// with nothing to measure for a threshold neither breaks nor holds it.
    pub(super) fn judge(
        &mut self,
        window: u64,
        to_second: u64,
        values: &LiveValues,
    ) -> Option<Aborted> {
        if Duration::from_secs(to_second) <= self.rule.grace {
            return None;
        }
        for (threshold, broken) in &mut self.thresholds {
            let Some(result) = threshold.evaluate_live(values) else {
                continue;
            };
            if result.held {
                broken.clear();
                continue;
            }
            broken.push(AbortWindow {
                window,
                measured: result.measured_text.clone(),
            });
            if broken.len() as u32 >= self.rule.after {
                let windows = broken.split_off(broken.len() - self.rule.after as usize);
                let reason = format!(
                    "{} {} {} {} for {} window{}",
                    threshold.metric_name(),
                    result.measured_text,
                    threshold.broken_op(),
                    result.limit,
                    windows.len(),
                    if windows.len() == 1 { "" } else { "s" }
                );
                return Some(Aborted {
                    threshold: threshold.expression.clone(),
                    second: to_second,
                    windows,
                    reason: format!("aborted at {}: {reason}", clock(to_second)),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(error_rate: f64) -> LiveValues {
        LiveValues {
            error_rate: Some(error_rate),
            ..LiveValues::default()
        }
    }

    fn judge(after: u32, grace_s: u64) -> AbortJudge {
        AbortJudge::new(
            AbortRule {
                after,
                grace: Duration::from_secs(grace_s),
            },
            &[
                Threshold::parse("error_rate<1%").unwrap(),
                // Not judged live: a count over the whole run.
                Threshold::parse("acknowledged>=1000000").unwrap(),
            ],
        )
    }

    #[test]
    fn a_threshold_broken_for_the_windows_in_a_row_aborts_and_says_why() {
        let mut j = judge(3, 20);
        // Within the grace: not judged.
        assert!(j.judge(0, 10, &values(0.5)).is_none());
        assert!(j.judge(1, 20, &values(0.5)).is_none());
        assert!(j.judge(2, 30, &values(0.05)).is_none());
        assert!(j.judge(3, 40, &values(0.06)).is_none());
        // No data in a window neither breaks nor holds.
        assert!(j.judge(4, 50, &LiveValues::default()).is_none());
        let a = j.judge(5, 60, &values(0.072)).expect("third broken window");
        assert_eq!(a.threshold, "error_rate<1%");
        assert_eq!(a.second, 60);
        assert_eq!(
            a.windows.iter().map(|w| w.window).collect::<Vec<_>>(),
            vec![2, 3, 5]
        );
        assert_eq!(
            a.reason,
            "aborted at 00:01:00: error_rate 7.2% ≥ 1% for 3 windows"
        );
    }

    #[test]
    fn a_window_that_holds_starts_the_count_again() {
        let mut j = judge(2, 0);
        assert!(j.judge(0, 10, &values(0.5)).is_none());
        assert!(j.judge(1, 20, &values(0.0)).is_none());
        assert!(j.judge(2, 30, &values(0.5)).is_none());
        assert!(j.judge(3, 40, &values(0.5)).is_some());
    }
}
