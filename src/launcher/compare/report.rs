//! `compare.json`: what a comparison found, metric by metric, and how it judged the noise. The
//! table, the page and the JUnit cases are all drawn from this one value.

use serde::{Deserialize, Serialize};

use super::bootstrap::Interval;
use crate::launcher::cost::dollars;
use crate::launcher::render::format::{rate, trim};

/// Version of the `compare.json` schema; bumped on any incompatible change.
pub const COMPARE_SCHEMA_VERSION: u32 = 1;
/// Name of the comparison's JSON file.
pub const COMPARE_JSON: &str = "compare.json";
/// Name of the comparison's page.
pub const COMPARE_HTML: &str = "compare.html";

/// A comparison of a run (NEW) with another (BASE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// [`COMPARE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The run compared against.
    pub base: RunInfo,
    /// The run judged.
    pub new: RunInfo,
    /// How the two runs' scenarios differ (empty when they ran the same scenario). Listed first
    /// everywhere: a difference in rate or tasks explains many a delta.
    pub scenario_differences: Vec<Difference>,
    /// How the noise was judged.
    pub method: Method,
    /// Every metric compared, in the order the table shows them.
    pub metrics: Vec<MetricRow>,
    /// How many metrics were called `regressed`.
    pub regressed: usize,
    /// How many metrics were called `improved`.
    pub improved: usize,
    /// What the comparison could not judge, and why (once per reason).
    pub notes: Vec<String>,
}

/// One of the two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The location as given.
    pub location: String,
    /// The run id.
    pub run_id: String,
    /// `kinesis`, `kafka`, `null`.
    pub target: String,
    /// When it was planned to start (RFC 3339).
    pub planned_start: String,
    /// Tasks expected and reported.
    pub tasks_expected: u64,
    /// Tasks whose report was merged.
    pub tasks_reported: u64,
    /// Seconds of production.
    pub duration_s: f64,
    /// `completed`, `interrupted` or `failed`.
    pub outcome: String,
    /// The fleetload version that merged it.
    pub fleetload_version: String,
}

/// One way the scenarios differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// What differs (`tasks`, `target`, `FLEETLOAD_RATE`, …).
    pub name: String,
    /// BASE's value (`(not set)` when absent).
    pub base: String,
    /// NEW's value.
    pub new: String,
}

/// How the noise was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    /// `moving-block bootstrap over seconds`.
    pub name: String,
    /// Replicates drawn.
    pub resamples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Coverage of the intervals (0.95).
    pub confidence: f64,
    /// Block length of BASE, seconds.
    pub base_block_s: u64,
    /// Block length of NEW, seconds.
    pub new_block_s: u64,
    /// A relative change smaller than this (a fraction: 0.05 = 5 %) is never called regressed or
    /// improved, whatever its interval (latencies, rate).
    pub min_effect: f64,
    /// A change of a share smaller than this (a fraction: 0.0001 = 0.01 percentage points) is
    /// never called regressed or improved (error, throttle and unsent ratios).
    pub min_share_effect: f64,
    /// The rule, in words.
    pub rule: String,
}

/// What a metric measures, which decides how its change is shown and judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds (judged on the relative change).
    Ms,
    /// Events per second (judged on the relative change).
    PerSecond,
    /// A share of events (judged on the change in percentage points).
    Share,
    /// US dollars (an estimate: never judged).
    Usd,
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Worse, by more than the runs' noise explains and by at least the minimum effect.
    #[serde(rename = "regressed")]
    Regressed,
    /// Better, likewise.
    #[serde(rename = "improved")]
    Improved,
    /// The interval holds no change, or the change is below the minimum effect.
    #[serde(rename = "within noise")]
    WithinNoise,
    /// No interval could be computed (the reports keep no per-second data for this metric, or
    /// a run measured nothing): the delta is shown, and not judged.
    #[serde(rename = "not judged")]
    NotJudged,
}

impl Verdict {
    /// The words the table and the page show.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::WithinNoise => "within noise",
            Verdict::NotJudged => "not judged",
        }
    }
}

/// One metric of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// `throughput`, `errors`, `latency`, `service time`, `end to end`, `shard …`, `cost`.
    pub group: String,
    /// `p99`, `rate`, `error ratio`, `ProvisionedThroughputExceededException`, …
    pub name: String,
    /// What it measures.
    pub unit: Unit,
    /// BASE's value (`None` when it measured nothing).
    pub base: Option<f64>,
    /// NEW's value.
    pub new: Option<f64>,
    /// `new − base`.
    pub change: Option<f64>,
    /// `new / base − 1` (`None` when the base is 0).
    pub change_relative: Option<f64>,
    /// Interval of `new − base`.
    pub interval: Option<Interval>,
    /// Interval of `new / base − 1`.
    pub interval_relative: Option<Interval>,
    /// Whether a higher value is worse (latency, errors) or better (rate).
    pub higher_is_worse: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it was not judged, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl MetricRow {
    /// `latency p99`: the group and the name, as the JUnit case and the lists name it.
    pub fn label(&self) -> String {
        format!("{} {}", self.group, self.name)
    }
}

impl Comparison {
    /// The metrics called `regressed`.
    pub fn regressions(&self) -> impl Iterator<Item = &MetricRow> {
        self.metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Regressed)
    }
}

/// A value of a metric as the table and the page show it: `231.4 ms`, `9,612.5/s`, `0.052 %`,
/// `$2.41`.
pub fn value_text(unit: Unit, v: Option<f64>) -> String {
    let Some(v) = v else {
        return "—".to_string();
    };
    match unit {
        Unit::Ms => format!("{} ms", trim(v, 3)),
        Unit::PerSecond => format!("{}/s", rate(v)),
        Unit::Share => format!("{} %", trim(v * 100.0, share_decimals(v * 100.0))),
        Unit::Usd => dollars(v),
    }
}

/// Decimals that show a percentage of a share: 3, or more for tiny ones (at least two digits).
fn share_decimals(percent: f64) -> usize {
    let a = percent.abs();
    if a == 0.0 || a >= 0.01 {
        3
    } else {
        (2 - a.log10().floor() as i64).clamp(3, 8) as usize
    }
}

/// `+38` / `-0.4` / `+2390`: a signed percentage with as many decimals as the largest of `xs`
/// needs (no `-0`).
fn signed(v: f64, decimals: usize) -> String {
    let v = if v.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
        0.0
    } else {
        v
    };
    format!("{v:+.decimals$}")
}

fn percent_decimals(xs: &[f64]) -> usize {
    let m = xs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if m < 1.0 {
        2
    } else if m < 10.0 {
        1
    } else {
        0
    }
}

impl MetricRow {
    /// The change with its interval: `+38 % (+31…+45 %)` for latencies and rates (relative),
    /// `+0.12 pp (+0.05…+0.20 pp)` for shares (percentage points), `+$0.12` for the cost; without
    /// the parentheses when there is no interval.
    pub fn change_text(&self) -> String {
        match self.unit {
            Unit::Share => {
                let Some(c) = self.change else {
                    return "—".to_string();
                };
                let mut xs = vec![c * 100.0];
                if let Some(i) = self.interval {
                    xs.extend([i.low * 100.0, i.high * 100.0]);
                }
                let m = xs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let d = share_decimals(m).min(6);
                match self.interval {
                    Some(i) => format!(
                        "{} pp ({}…{} pp)",
                        signed(c * 100.0, d),
                        signed(i.low * 100.0, d),
                        signed(i.high * 100.0, d)
                    ),
                    None => format!("{} pp", signed(c * 100.0, d)),
                }
            }
            Unit::Usd => match (self.change, self.change_relative) {
                (Some(c), Some(r)) => format!(
                    "{}{} ({} %)",
                    if c < 0.0 { "-" } else { "+" },
                    dollars(c.abs()),
                    signed(r * 100.0, percent_decimals(&[r * 100.0]))
                ),
                (Some(c), None) => {
                    format!("{}{}", if c < 0.0 { "-" } else { "+" }, dollars(c.abs()))
                }
                _ => "—".to_string(),
            },
            Unit::Ms | Unit::PerSecond => {
                let Some(r) = self.change_relative else {
                    return match self.change {
                        Some(c) => format!("{} (from 0)", signed(c, 3)),
                        None => "—".to_string(),
                    };
                };
                // Decimals enough to tell the interval's ends apart, and no more.
                let d = match self.interval_relative {
                    Some(i) => match (i.high - i.low) * 100.0 {
                        w if w >= 10.0 => 0,
                        w if w >= 0.5 => 1,
                        _ => 2,
                    },
                    None => percent_decimals(&[r * 100.0]),
                };
                match self.interval_relative {
                    Some(i) => format!(
                        "{} % ({}…{} %)",
                        signed(r * 100.0, d),
                        signed(i.low * 100.0, d),
                        signed(i.high * 100.0, d)
                    ),
                    None => format!("{} %", signed(r * 100.0, d)),
                }
            }
        }
    }

    /// The absolute change of a latency or a rate with its interval: `+34.2 ms (+28.0…+40.5)`;
    /// `None` for shares and the cost, whose change is already absolute.
    pub fn absolute_change_text(&self) -> Option<String> {
        let c = self.change?;
        let unit = match self.unit {
            Unit::Ms => "ms",
            Unit::PerSecond => "/s",
            Unit::Share | Unit::Usd => return None,
        };
        Some(match self.interval {
            Some(i) => format!(
                "{} {unit} ({}…{})",
                signed(c, 3).trim_end_matches('0').trim_end_matches('.'),
                signed(i.low, 3).trim_end_matches('0').trim_end_matches('.'),
                signed(i.high, 3)
                    .trim_end_matches('0')
                    .trim_end_matches('.')
            ),
            None => format!(
                "{} {unit}",
                signed(c, 3).trim_end_matches('0').trim_end_matches('.')
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        unit: Unit,
        base: f64,
        new: f64,
        rel: Option<(f64, f64)>,
        abs: Option<(f64, f64)>,
    ) -> MetricRow {
        MetricRow {
            group: "latency".into(),
            name: "p99".into(),
            unit,
            base: Some(base),
            new: Some(new),
            change: Some(new - base),
            change_relative: (base > 0.0).then(|| new / base - 1.0),
            interval: abs.map(|(low, high)| Interval { low, high }),
            interval_relative: rel.map(|(low, high)| Interval { low, high }),
            higher_is_worse: true,
            verdict: Verdict::Regressed,
            why: None,
        }
    }

    #[test]
    fn changes_read_as_the_issue_writes_them() {
        let r = row(
            Unit::Ms,
            90.0,
            124.2,
            Some((0.31, 0.45)),
            Some((28.0, 40.5)),
        );
        assert_eq!(r.change_text(), "+38 % (+31…+45 %)");
        assert_eq!(r.absolute_change_text().unwrap(), "+34.2 ms (+28…+40.5)");
        let r = row(Unit::PerSecond, 1000.0, 996.0, Some((-0.012, 0.005)), None);
        assert_eq!(r.change_text(), "-0.4 % (-1.2…+0.5 %)");
        let r = row(Unit::Share, 0.0, 0.0012, None, Some((0.0008, 0.0016)));
        assert_eq!(r.change_text(), "+0.120 pp (+0.080…+0.160 pp)");
        let r = row(Unit::Share, 0.0, 0.0, None, Some((0.0, 0.0)));
        assert_eq!(r.change_text(), "+0.000 pp (+0.000…+0.000 pp)");
        let r = row(Unit::Usd, 2.0, 2.5, None, None);
        assert_eq!(r.change_text(), "+$0.50 (+25 %)");
        assert_eq!(value_text(Unit::Share, Some(0.000012)), "0.0012 %");
        assert_eq!(value_text(Unit::Ms, Some(231.4)), "231.4 ms");
        assert_eq!(value_text(Unit::PerSecond, Some(9612.46)), "9,612.5/s");
        assert_eq!(value_text(Unit::Usd, Some(0.0008)), "$0.0008");
        assert_eq!(value_text(Unit::Ms, None), "—");
    }
}
