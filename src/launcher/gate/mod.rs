//! The CI gate: `--threshold` expressions such as `p99<250ms`, `error_rate<0.1%` or
//! `rate>=9500/s`, evaluated against a merged summary; [`junit`] writes them as a JUnit XML report.
//!
//! An expression is `METRIC OP VALUE` (spaces allowed). Latencies are the intended-time latency
//! (coordinated-omission free) unless prefixed `service_`; every latency is compared in
//! milliseconds. A gate that has nothing to measure (no event acknowledged) is broken, never
//! held: "p99 < 250 ms" must not pass on a run that sent nothing.

pub(crate) mod junit;

pub(crate) use junit::check_junit_path;

use std::fmt;

use crate::launcher::render::format::trim;
use crate::model::report::{Percentiles, Summary};

/// What the user may write, for error messages.
pub const ACCEPTED: &str = "METRIC OP VALUE, where METRIC is one of p50, p90, p99, p99.9, max, \
mean (latency from the intended send time), service_p50 … service_mean (service time), \
error_rate, throttled (tries the target refused for throughput, retried or not, as a share of \
all tries), rate (acknowledged events/s), acknowledged, failed, attempted, retried, and end to end \
e2e_p50 … e2e_mean (latency through the system under test), lost, duplicates (counts, or shares \
with %: of acknowledged events, of records seen); OP is one of \
<, <=, >, >=, ==; VALUE is a latency such as 250ms, 1s, 500us or 1h (a bare number is ms), an error \
rate such as 0.1% or 0.001, a rate such as 9500/s or 9.5k/s, or a count such as 1000 or 1.5M";

/// What a limit relative to a baseline run may be (`--baseline`), for error messages.
pub const BASELINE_ACCEPTED: &str = "relative to the run given with --baseline, VALUE may also \
be baseline, baseline+10% or baseline-5% (a share of the baseline's value), baseline+20ms or \
baseline-500/s (an amount in the metric's unit) or, for error_rate, lost% and duplicates%, \
baseline+0.1pp (percentage points)";

/// A limit relative to the baseline run's value of the same metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relative {
    /// What is added to the baseline's value: a fraction of it (`+10%` → 0.1) when `share` is
    /// set, else an amount in the metric's base unit (ms, fraction, events/s, events).
    pub offset: f64,
    /// Whether `offset` is a fraction of the baseline's value.
    pub share: bool,
}

impl Relative {
    /// The limit for a baseline value.
    pub fn limit(&self, baseline: f64) -> f64 {
        if self.share {
            baseline * (1.0 + self.offset)
        } else {
            baseline + self.offset
        }
    }

    fn parse(metric: Metric, text: &str) -> Result<Relative, String> {
        let rest = &text["baseline".len()..];
        if rest.is_empty() {
            return Ok(Relative {
                offset: 0.0,
                share: false,
            });
        }
        let (sign, amount) = match rest.split_at(1) {
            ("+", a) => (1.0, a),
            ("-", a) => (-1.0, a),
            _ => {
                return Err(format!(
                    "after `baseline` comes + or - and an amount, not {rest:?}"
                ))
            }
        };
        if let Some(percent) = amount.strip_suffix('%') {
            return Ok(Relative {
                offset: sign * number(percent)? / 100.0,
                share: true,
            });
        }
        if let Some(points) = amount.strip_suffix("pp") {
            return match metric {
                Metric::ErrorRate | Metric::Lost { .. } | Metric::Duplicates { .. } => {
                    Ok(Relative {
                        offset: sign * number(points)? / 100.0,
                        share: false,
                    })
                }
                _ => Err(
                    "percentage points (pp) apply to shares only: error_rate, lost, \
                          duplicates"
                        .into(),
                ),
            };
        }
        Ok(Relative {
            offset: sign * parse_value(metric, amount)?,
            share: false,
        })
    }

    fn text(&self, metric: Metric) -> String {
        match (self.share, self.offset) {
            (_, 0.0) => String::new(),
            (true, o) => format!(
                "{}{}%",
                if o < 0.0 { "-" } else { "+" },
                trim(o.abs() * 100.0, 4)
            ),
            (false, o) => format!(
                "{}{}",
                if o < 0.0 { "-" } else { "+" },
                metric.format(o.abs())
            ),
        }
    }
}

/// A metric of the merged summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency percentile (intended-time latency, or service time), in milliseconds.
    Latency {
        /// Service time instead of latency from the intended send time.
        service: bool,
        /// Which statistic.
        stat: LatencyStat,
    },
    /// Failed events as a share of attempted ones.
    ErrorRate,
    /// Tries the target refused for throughput (retried or not) as a share of all tries.
    Throttled,
    /// Acknowledged events per second over the run's wall span.
    Rate,
    /// Events acknowledged.
    Acknowledged,
    /// Events that finally failed.
    Failed,
    /// Events attempted.
    Attempted,
    /// Retries.
    Retried,
    /// End-to-end latency (from the intended send time to a consumer's read), in milliseconds.
    E2eLatency(LatencyStat),
    /// Acknowledged events no consumer saw; with `share`, as a fraction of acknowledged ones.
    Lost {
        /// Compared as a fraction (`lost<0.1%`) rather than a count.
        share: bool,
    },
    /// Copies beyond the first; with `share`, as a fraction of the records seen.
    Duplicates {
        /// Compared as a fraction (`duplicates<0.1%`) rather than a count.
        share: bool,
    },
}

/// A latency statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyStat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P99_9,
    /// Largest.
    Max,
    /// Mean.
    Mean,
}

impl LatencyStat {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "p50" => LatencyStat::P50,
            "p90" => LatencyStat::P90,
            "p99" => LatencyStat::P99,
            "p99.9" | "p999" => LatencyStat::P99_9,
            "max" => LatencyStat::Max,
            "mean" => LatencyStat::Mean,
            _ => return None,
        })
    }
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Some(match name.as_str() {
            "error_rate" => Metric::ErrorRate,
            "throttled" => Metric::Throttled,
            "rate" => Metric::Rate,
            "acknowledged" => Metric::Acknowledged,
            "failed" => Metric::Failed,
            "attempted" => Metric::Attempted,
            "retried" => Metric::Retried,
            "lost" => Metric::Lost { share: false },
            "duplicates" => Metric::Duplicates { share: false },
            other if other.starts_with("e2e_") => {
                Metric::E2eLatency(LatencyStat::parse(&other["e2e_".len()..])?)
            }
            other => match other.strip_prefix("service_") {
                Some(stat) => Metric::Latency {
                    service: true,
                    stat: LatencyStat::parse(stat)?,
                },
                None => Metric::Latency {
                    service: false,
                    stat: LatencyStat::parse(other)?,
                },
            },
        })
    }

    /// The value of this metric in a summary; `None` when there is nothing to measure.
    pub fn measure(&self, s: &Summary) -> Option<f64> {
        Some(match self {
            Metric::Latency { service, stat } => {
                let p = if *service {
                    &s.service_time_ms
                } else {
                    &s.latency_ms
                };
                if p.count == 0 {
                    return None;
                }
                match stat {
                    LatencyStat::P50 => p.p50,
                    LatencyStat::P90 => p.p90,
                    LatencyStat::P99 => p.p99,
                    LatencyStat::P99_9 => p.p99_9,
                    LatencyStat::Max => p.max,
                    LatencyStat::Mean => p.mean,
                }
            }
            Metric::ErrorRate if s.counts.attempted == 0 => return None,
            Metric::ErrorRate => s.counts.error_rate(),
            Metric::Throttled if s.counts.attempted == 0 => return None,
            Metric::Throttled => s.counts.throttle_ratio(),
            Metric::Rate => s.achieved_rate,
            Metric::Acknowledged => s.counts.acknowledged as f64,
            Metric::Failed => s.counts.failed as f64,
            Metric::Attempted => s.counts.attempted as f64,
            Metric::Retried => s.counts.retried as f64,
            Metric::E2eLatency(stat) => {
                let p = &s.end_to_end.e2e.as_ref()?.latency_ms;
                if p.count == 0 {
                    return None;
                }
                match stat {
                    LatencyStat::P50 => p.p50,
                    LatencyStat::P90 => p.p90,
                    LatencyStat::P99 => p.p99,
                    LatencyStat::P99_9 => p.p99_9,
                    LatencyStat::Max => p.max,
                    LatencyStat::Mean => p.mean,
                }
            }
            Metric::Lost { share } => {
                // Unknown when a consumer did not report: never held by default.
                let lost = s.end_to_end.e2e.as_ref()?.lost? as f64;
                if *share {
                    let acknowledged = s.counts.acknowledged as f64;
                    if acknowledged == 0.0 {
                        return None;
                    }
                    lost / acknowledged
                } else {
                    lost
                }
            }
            Metric::Duplicates { share } => {
                let e = s.end_to_end.e2e.as_ref()?;
                if *share {
                    if e.seen == 0 {
                        return None;
                    }
                    e.duplicates as f64 / e.seen as f64
                } else {
                    e.duplicates as f64
                }
            }
        })
    }

    /// A value of this metric with its unit: `231.4ms`, `0.052%`, `9612.5/s`, `1200`.
    pub fn format(&self, v: f64) -> String {
        match self {
            Metric::Latency { .. } | Metric::E2eLatency(_) => format!("{}ms", trim(v, 3)),
            Metric::ErrorRate
            | Metric::Throttled
            | Metric::Lost { share: true }
            | Metric::Duplicates { share: true } => format!("{}%", trim(v * 100.0, 4)),
            Metric::Rate => format!("{}/s", trim(v, 1)),
            _ => format!("{}", v.round() as u64),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    fn holds(&self, measured: f64, limit: f64) -> bool {
        match self {
            Op::Lt => measured < limit,
            Op::Le => measured <= limit,
            Op::Gt => measured > limit,
            Op::Ge => measured >= limit,
            // Values are printed and parsed in decimal: compare with a relative tolerance.
            Op::Eq => (measured - limit).abs() <= 1e-9 * limit.abs().max(1.0),
        }
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as the user wrote it.
    pub expression: String,
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub op: Op,
    /// The limit, in the metric's base unit (ms, fraction, events/s, events); 0 when the limit
    /// is relative to a baseline.
    pub value: f64,
    /// A limit relative to the baseline run's value (`p99<baseline+10%`), given with
    /// `--baseline`.
    pub baseline: Option<Relative>,
}

/// A threshold expression that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad threshold {expression:?}: {reason}; accepted: {ACCEPTED}; {BASELINE_ACCEPTED}")]
pub struct ThresholdError {
    /// The expression as given.
    pub expression: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Threshold {
    /// Parses `METRIC OP VALUE` (see [`ACCEPTED`]).
    pub fn parse(expression: &str) -> Result<Threshold, ThresholdError> {
        let bad = |reason: String| ThresholdError {
            expression: expression.to_string(),
            reason,
        };
        let compact: String = expression.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>', '='])
            .ok_or_else(|| bad("no comparison operator".into()))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find_map(|(text, op)| rest.strip_prefix(text).map(|v| (op, v)))
        .ok_or_else(|| bad(format!("unknown operator in {rest:?}")))?;
        if name.is_empty() {
            return Err(bad("no metric before the operator".into()));
        }
        let metric = Metric::parse(name).ok_or_else(|| bad(format!("unknown metric {name:?}")))?;
        if value.is_empty() {
            return Err(bad("no value after the operator".into()));
        }
        if value.starts_with(['<', '>', '=']) {
            return Err(bad(format!("unknown operator in {rest:?}")));
        }
        if value.to_ascii_lowercase().starts_with("baseline") {
            // `lost<baseline+10%` compares counts; `lost%`-style shares need `pp`.
            let metric = match metric {
                Metric::Lost { .. } => Metric::Lost {
                    share: value.ends_with("pp"),
                },
                Metric::Duplicates { .. } => Metric::Duplicates {
                    share: value.ends_with("pp"),
                },
                m => m,
            };
            let relative = Relative::parse(metric, &value.to_ascii_lowercase()).map_err(bad)?;
            return Ok(Threshold {
                expression: expression.trim().to_string(),
                metric,
                op,
                value: 0.0,
                baseline: Some(relative),
            });
        }
        // `lost<0.1%` compares a share, `lost==0` a count.
        let metric = match metric {
            Metric::Lost { .. } => Metric::Lost {
                share: value.ends_with('%'),
            },
            Metric::Duplicates { .. } => Metric::Duplicates {
                share: value.ends_with('%'),
            },
            m => m,
        };
        let value = parse_value(metric, value).map_err(bad)?;
        Ok(Threshold {
            expression: expression.trim().to_string(),
            metric,
            op,
            value,
            baseline: None,
        })
    }

    /// Evaluates this threshold against a (merged) summary, a relative one against the
    /// `baseline` run's summary (broken, saying so, when there is none or it measured nothing).
    pub fn evaluate_with(&self, summary: &Summary, baseline: Option<&Summary>) -> ThresholdResult {
        let Some(relative) = self.baseline else {
            return self.evaluate(summary);
        };
        let measured = self.metric.measure(summary);
        let measured_text = match measured {
            Some(v) => self.metric.format(v),
            None => "no data (nothing was measured)".to_string(),
        };
        let base = baseline.map(|b| self.metric.measure(b));
        let (limit, held) = match base {
            None => ("no baseline given (--baseline)".to_string(), false),
            Some(None) => ("none: the baseline measured nothing".to_string(), false),
            Some(Some(b)) => {
                let limit = relative.limit(b);
                (
                    format!(
                        "{} (baseline {}{})",
                        self.metric.format(limit),
                        self.metric.format(b),
                        relative.text(self.metric)
                    ),
                    measured.is_some_and(|m| self.op.holds(m, limit)),
                )
            }
        };
        ThresholdResult {
            expression: self.expression.clone(),
            limit,
            measured,
            measured_text,
            held,
        }
    }

    /// Evaluates this threshold against a (merged) summary.
    pub fn evaluate(&self, summary: &Summary) -> ThresholdResult {
        let measured = self.metric.measure(summary);
        ThresholdResult {
            expression: self.expression.clone(),
            limit: self.metric.format(self.value),
            measured,
            measured_text: match measured {
                Some(v) => self.metric.format(v),
                None => "no data (nothing was measured)".to_string(),
            },
            held: measured.is_some_and(|m| self.op.holds(m, self.value)),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expression)
    }
}

/// Parses every expression; the first bad one is the error.
pub fn parse_all<S: AsRef<str>>(expressions: &[S]) -> Result<Vec<Threshold>, ThresholdError> {
    expressions
        .iter()
        .map(|e| Threshold::parse(e.as_ref()))
        .collect()
}

/// Evaluates every threshold against a summary.
pub fn evaluate(thresholds: &[Threshold], summary: &Summary) -> Vec<ThresholdResult> {
    thresholds.iter().map(|t| t.evaluate(summary)).collect()
}

/// Evaluates every threshold against a summary, the relative ones against `baseline`'s.
pub fn evaluate_against(
    thresholds: &[Threshold],
    summary: &Summary,
    baseline: Option<&Summary>,
) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|t| t.evaluate_with(summary, baseline))
        .collect()
}

/// Refuses thresholds relative to a baseline when no `--baseline` was given (before any task
/// starts).
pub fn check_baseline_given(thresholds: &[Threshold], given: bool) -> anyhow::Result<()> {
    match thresholds.iter().find(|t| t.baseline.is_some()) {
        Some(t) if !given => anyhow::bail!(
            "threshold {:?} is relative to a baseline run, and no --baseline was given; accepted: \
             --baseline <REPORT_URL>/<RUN_ID> (a merged run, e.g. s3://bucket/runs/RUN), or an \
             absolute limit such as p99<250ms",
            t.expression
        ),
        _ => Ok(()),
    }
}

fn number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a non-negative number")),
    }
}

/// `k`, `M` or `G` multipliers on rates and counts.
fn scaled(text: &str) -> Result<f64, String> {
    let (digits, factor) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'M' | 'm')) => (&text[..i], 1e6),
        Some((i, 'G' | 'g')) => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    Ok(number(digits)? * factor)
}

fn parse_value(metric: Metric, text: &str) -> Result<f64, String> {
    match metric {
        Metric::Latency { .. } | Metric::E2eLatency(_) => {
            let lower = text.to_ascii_lowercase();
            let split = lower
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
                .unwrap_or(lower.len());
            let (digits, unit) = lower.split_at(split);
            let factor = match unit {
                "" | "ms" => 1.0,
                "s" => 1000.0,
                "us" | "µs" => 0.001,
                "ns" => 0.000_001,
                "m" | "min" => 60_000.0,
                "h" => 3_600_000.0,
                _ => {
                    return Err(format!(
                        "unknown latency unit {unit:?} (use us, ms, s, m or h)"
                    ))
                }
            };
            Ok(number(digits)? * factor)
        }
        Metric::ErrorRate
        | Metric::Throttled
        | Metric::Lost { share: true }
        | Metric::Duplicates { share: true } => match text.strip_suffix('%') {
            Some(percent) => {
                let v = number(percent)?;
                if v > 100.0 {
                    return Err(format!("an error rate of {text} is above 100%"));
                }
                Ok(v / 100.0)
            }
            None => {
                let v = number(text)?;
                if v > 1.0 {
                    return Err(format!(
                        "an error rate without % is a fraction from 0 to 1; {text} is above 1 \
                         (write {text}% for a percentage)"
                    ));
                }
                Ok(v)
            }
        },
        Metric::Rate => {
            let per = text
                .strip_suffix("/s")
                .or_else(|| text.strip_suffix("/sec"))
                .unwrap_or(text);
            scaled(per)
        }
        Metric::Acknowledged
        | Metric::Failed
        | Metric::Attempted
        | Metric::Retried
        | Metric::Lost { share: false }
        | Metric::Duplicates { share: false } => scaled(text),
    }
}

/// The outcome of one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdResult {
    /// The expression as the user wrote it.
    pub expression: String,
    /// The limit with its unit.
    pub limit: String,
    /// The measured value in the metric's base unit, `None` when nothing was measured.
    pub measured: Option<f64>,
    /// The measured value with its unit, as printed.
    pub measured_text: String,
    /// Whether the threshold held.
    pub held: bool,
}

/// What one live window of the fleet measured, for the thresholds that can be judged while the
/// run runs (`--abort-on-fail`). `None` where the window has nothing to measure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveValues {
    /// Acknowledged events per second of the window's production seconds.
    pub rate: Option<f64>,
    /// Failed events as a share of the window's attempted ones.
    pub error_rate: Option<f64>,
    /// Tries refused for throughput as a share of the window's tries.
    pub throttled: Option<f64>,
    /// Latency from the intended send time of the window's acknowledgements.
    pub latency: Option<Percentiles>,
    /// End-to-end latency of the records the consumers read in the window.
    pub e2e_latency: Option<Percentiles>,
    /// Acknowledged events old enough to have been read that no consumer had seen, so far.
    pub lost: Option<u64>,
    /// The acknowledged events `lost` is a share of.
    pub lost_of: u64,
}

fn stat_of(p: &Percentiles, stat: LatencyStat) -> f64 {
    match stat {
        LatencyStat::P50 => p.p50,
        LatencyStat::P90 => p.p90,
        LatencyStat::P99 => p.p99,
        LatencyStat::P99_9 => p.p99_9,
        LatencyStat::Max => p.max,
        LatencyStat::Mean => p.mean,
    }
}

impl Metric {
    /// Whether a live window can judge this metric: rates, error and throttle ratios, latency
    /// from the intended send time, end-to-end latency and loss. Counts over the whole run
    /// (`acknowledged>=N`) cannot, nor service time (windows carry no service-time histogram),
    /// nor duplicates (a copy may be read long after the first).
    pub fn judged_live(&self) -> bool {
        matches!(
            self,
            Metric::Latency { service: false, .. }
                | Metric::ErrorRate
                | Metric::Throttled
                | Metric::Rate
                | Metric::E2eLatency(_)
                | Metric::Lost { .. }
        )
    }

    /// This metric's value in a live window; `None` when it is not judged live or the window
    /// has nothing to measure.
    pub fn measure_live(&self, v: &LiveValues) -> Option<f64> {
        match self {
            Metric::Latency {
                service: false,
                stat,
            } => v.latency.as_ref().map(|p| stat_of(p, *stat)),
            Metric::ErrorRate => v.error_rate,
            Metric::Throttled => v.throttled,
            Metric::Rate => v.rate,
            Metric::E2eLatency(stat) => v.e2e_latency.as_ref().map(|p| stat_of(p, *stat)),
            Metric::Lost { share: false } => v.lost.map(|n| n as f64),
            Metric::Lost { share: true } => {
                let lost = v.lost? as f64;
                (v.lost_of > 0).then(|| lost / v.lost_of as f64)
            }
            _ => None,
        }
    }
}

impl Threshold {
    /// Judges this threshold on a live window: `None` when it cannot be judged live or the
    /// window has nothing to measure (which breaks nothing: a quiet window is not evidence).
    pub fn evaluate_live(&self, values: &LiveValues) -> Option<ThresholdResult> {
        let measured = self.metric.measure_live(values)?;
        Some(ThresholdResult {
            expression: self.expression.clone(),
            limit: self.metric.format(self.value),
            measured: Some(measured),
            measured_text: self.metric.format(measured),
            held: self.op.holds(measured, self.value),
        })
    }

    /// The comparison that breaks this threshold, in words: `≥` for `<`, and so on.
    pub fn broken_op(&self) -> &'static str {
        match self.op {
            Op::Lt => "≥",
            Op::Le => ">",
            Op::Gt => "≤",
            Op::Ge => "<",
            Op::Eq => "≠",
        }
    }

    /// The metric's name as written in the expression (`error_rate`, `p99`).
    pub fn metric_name(&self) -> &str {
        let end = self
            .expression
            .find(['<', '>', '='])
            .unwrap_or(self.expression.len());
        self.expression[..end].trim()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::report::{Counts, Histograms, Percentiles, SCHEMA_VERSION};
    use crate::model::report::{MergeInfo, Outcome};

    pub(crate) fn summary() -> Summary {
        Summary {
            schema_version: SCHEMA_VERSION,
            run_id: "r".into(),
            task_id: "merged".into(),
            target: "null".into(),
            scenario: Default::default(),
            fleetload_version: "0".into(),
            planned_start: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            actual_start: None,
            end: None,
            late_start_ms: 0,
            duration_s: 10.0,
            outcome: Outcome::Completed,
            counts: Counts {
                planned: 0,
                unsent: 0,
                attempted: 10_000,
                acknowledged: 9_995,
                failed: 5,
                ..Counts::default()
            },
            bytes: 0,
            target_rate: Some(1000.0),
            achieved_rate: 999.5,
            latency_ms: Percentiles {
                count: 9_995,
                p50: 12.5,
                p90: 40.0,
                p99: 231.4,
                p99_9: 400.0,
                max: 1200.0,
                mean: 20.0,
            },
            service_time_ms: Percentiles {
                count: 9_995,
                p99: 50.0,
                ..Percentiles::default()
            },
            histograms: Histograms::default(),
            errors_timeline: Default::default(),
            saturation: None,
            by_shard: Default::default(),
            kinesis: None,
            cost: None,
            merge: Some(MergeInfo {
                tasks_expected: 2,
                tasks_reported: 2,
                coverage: 1.0,
                ..MergeInfo::default()
            }),
            end_to_end: Default::default(),
            live: None,
            aborted: None,
        }
    }

    #[test]
    fn parses_metrics_operators_and_units() {
        let t = |e: &str| Threshold::parse(e).unwrap();
        let p99 = t("p99<250ms");
        assert_eq!(
            (p99.metric, p99.op, p99.value),
            (
                Metric::Latency {
                    service: false,
                    stat: LatencyStat::P99
                },
                Op::Lt,
                250.0
            )
        );
        assert_eq!(t("p99.9 <= 1s").value, 1000.0);
        assert_eq!(
            t("p99.9 <= 1s").metric,
            Metric::Latency {
                service: false,
                stat: LatencyStat::P99_9
            }
        );
        assert_eq!(t("max<500us").value, 0.5);
        assert_eq!(t("mean<2.5").value, 2.5);
        assert_eq!(
            t("service_p99<40ms").metric,
            Metric::Latency {
                service: true,
                stat: LatencyStat::P99
            }
        );
        assert_eq!(t("error_rate<0.1%").value, 0.001);
        assert_eq!(t("error_rate<=0.001").value, 0.001);
        assert_eq!(t("rate>=9500/s").value, 9500.0);
        assert_eq!(t("rate>=9.5k/s").value, 9500.0);
        assert_eq!(t("rate > 1.2M/s").value, 1_200_000.0);
        assert_eq!(t("acknowledged>=1000").op, Op::Ge);
        assert_eq!(t("failed==0").op, Op::Eq);
        assert_eq!(t("failed>0").op, Op::Gt);
        assert_eq!(t("  p50 < 3ms ").expression, "p50 < 3ms");
    }

    #[test]
    fn rejects_bad_expressions_with_what_is_accepted() {
        for (e, why) in [
            ("p99", "no comparison operator"),
            ("p98<3ms", "unknown metric \"p98\""),
            ("p99<<3ms", "unknown operator"),
            ("p99=<3ms", "unknown operator"),
            ("p99<", "no value"),
            ("<3ms", "no metric"),
            ("p99<3parsecs", "unknown latency unit"),
            ("p99<-3ms", "not a non-negative number"),
            ("error_rate<5", "write 5% for a percentage"),
            ("error_rate<101%", "above 100%"),
            ("rate>fast", "not a non-negative number"),
        ] {
            let err = Threshold::parse(e).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{e:?}")), "{text}");
            assert!(text.contains(why), "{e}: {text}");
            assert!(text.contains("accepted: METRIC OP VALUE"), "{text}");
        }
        assert!(parse_all(&["p99<1s", "bogus"]).is_err());
        assert_eq!(parse_all(&["p99<1s", "rate>1"]).unwrap().len(), 2);
    }

    #[test]
    fn evaluates_against_a_summary() {
        let s = summary();
        let r = |e: &str| Threshold::parse(e).unwrap().evaluate(&s);
        assert!(r("p99<250ms").held);
        let broken = r("p99<200ms");
        assert!(!broken.held);
        assert_eq!(broken.measured_text, "231.4ms");
        assert_eq!(broken.limit, "200ms");
        assert!(r("error_rate<0.1%").held);
        assert_eq!(r("error_rate<0.01%").measured_text, "0.05%");
        assert!(!r("error_rate<0.01%").held);
        assert!(r("rate>=999.5/s").held);
        assert!(!r("rate>=1k/s").held);
        assert_eq!(r("rate>=1k/s").measured_text, "999.5/s");
        assert!(r("failed==5").held);
        assert!(r("acknowledged>9k").held);
        assert!(r("service_p99<=50ms").held);
        assert!(r("max<=1.2s").held);
        // Nothing measured: latency gates break rather than pass.
        let mut empty = summary();
        empty.latency_ms = Percentiles::default();
        empty.counts = Counts::default();
        let e = Threshold::parse("p99<250ms").unwrap().evaluate(&empty);
        assert!(!e.held);
        assert!(e.measured_text.contains("no data"));
        assert!(
            !Threshold::parse("error_rate<1%")
                .unwrap()
                .evaluate(&empty)
                .held
        );
    }

    #[test]
    fn thresholds_relative_to_a_baseline() {
        let base = summary();
        let mut new = summary();
        let r =
            |new: &Summary, e: &str| Threshold::parse(e).unwrap().evaluate_with(new, Some(&base));
        // p99 231.4 ms in the baseline: +10 % allows up to 254.54 ms.
        new.latency_ms.p99 = 250.0;
        assert!(r(&new, "p99<baseline+10%").held);
        let held = r(&new, "p99<baseline+10%");
        assert_eq!(held.limit, "254.54ms (baseline 231.4ms+10%)");
        new.latency_ms.p99 = 260.0;
        let broken = r(&new, "p99<baseline+10%");
        assert!(!broken.held);
        assert_eq!(broken.measured_text, "260ms");
        assert!(r(&new, "p99 < baseline + 30ms").held);
        assert!(!r(&new, "p99<=baseline").held);
        // The rate: 999.5/s in the baseline; -5 % allows down to 949.525/s.
        new.achieved_rate = 950.0;
        assert!(r(&new, "rate>=baseline-5%").held);
        new.achieved_rate = 949.0;
        assert!(!r(&new, "rate>=baseline-5%").held);
        assert!(r(&new, "rate>=baseline-100/s").held);
        // Shares: 0.05 % in the baseline.
        new.counts.failed = 15;
        assert!(!r(&new, "error_rate<=baseline+0.05pp").held);
        assert!(r(&new, "error_rate<=baseline+0.11pp").held);
        assert!(r(&new, "failed<=baseline+200%").held);
        // No baseline: broken, and said.
        let t = Threshold::parse("p99<baseline+10%").unwrap();
        let alone = t.evaluate_with(&new, None);
        assert!(!alone.held);
        assert!(alone.limit.contains("no baseline"), "{}", alone.limit);
        assert!(check_baseline_given(std::slice::from_ref(&t), false)
            .unwrap_err()
            .to_string()
            .contains("no --baseline was given"));
        assert!(check_baseline_given(&[t], true).is_ok());
        for bad in ["p99<baseline*2", "p99<baseline+fast", "rate>baseline+1pp"] {
            let err = Threshold::parse(bad).unwrap_err().to_string();
            assert!(err.contains("baseline+10%"), "{bad}: {err}");
        }
    }

    #[test]
    fn end_to_end_thresholds_gate_latency_loss_and_duplicates() {
        use crate::model::report::E2e;
        let mut s = summary();
        let r = |s: &Summary, e: &str| Threshold::parse(e).unwrap().evaluate(s);
        // No consumer: nothing measured, nothing held.
        assert!(!r(&s, "lost==0").held);
        assert!(!r(&s, "e2e_p99<2s").held);
        s.end_to_end.e2e = Some(E2e {
            seen: 10_000,
            unique: Some(9_990),
            lost: Some(5),
            duplicates: 10,
            latency_ms: Percentiles {
                count: 10_000,
                p50: 80.0,
                p99: 900.0,
                max: 1500.0,
                ..Percentiles::default()
            },
            ..E2e::default()
        });
        assert!(r(&s, "e2e_p99<2s").held);
        assert!(!r(&s, "e2e_p50<50ms").held);
        assert_eq!(r(&s, "e2e_max<1s").measured_text, "1500ms");
        assert!(!r(&s, "lost==0").held);
        assert!(r(&s, "lost<=5").held);
        // Shares: 5 of 9,995 acknowledged; 10 of 10,000 seen.
        assert!(r(&s, "lost<0.1%").held);
        assert_eq!(r(&s, "duplicates<0.1%").measured_text, "0.1%");
        assert!(!r(&s, "duplicates<0.1%").held);
        assert!(r(&s, "duplicates<=0.1%").held);
        // A consumer that did not report leaves lost unknown: the gate breaks.
        s.end_to_end.e2e.as_mut().unwrap().lost = None;
        assert!(!r(&s, "lost<1%").held);
        assert!(Threshold::parse("e2e_p42<1s").is_err());
    }
}
