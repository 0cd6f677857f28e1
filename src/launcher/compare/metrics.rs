//! Which metrics a comparison shows, where each one's value and interval come from, and the
//! verdict rule.
//!
//! Values are the merged summaries' own (percentiles of the merged histograms, the achieved rate,
//! the counts' ratios); intervals come from the bootstrap over seconds (`bootstrap`). A metric is
//! `regressed` only when its whole interval lies on the worse side of zero **and** the change is
//! at least the minimum effect: an interval alone would call a 0.3 % change regressed in a long,
//! steady run, which nobody acts on. Metrics the reports keep no per-second data for (service
//! time, delivery counts, per-shard counts, the cost) show their delta and are `not judged`.

use std::collections::BTreeSet;

use super::bootstrap::{self, Interval, Outcome, Settings, Stat, Units};
use super::load::{
    Columns, Run, ATTEMPTED, FAILED, PLANNED, STEADY, STEADY_ACKNOWLEDGED, THROTTLED, UNSENT,
};
use super::report::{MetricRow, Unit, Verdict};
use crate::model::report::{Percentiles, ShardCounts, Summary};

/// When a change counts, beyond its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Smallest relative change called regressed or improved (latencies, rate): 0.05 = 5 %.
    pub min_effect: f64,
    /// Smallest change of a share called regressed or improved: 0.0001 = 0.01 percentage points.
    pub min_share_effect: f64,
}

/// The default minimum relative effect: 5 %.
pub const DEFAULT_MIN_EFFECT: f64 = 0.05;
/// The default minimum change of a share: 0.01 percentage points (one event in 10,000).
pub const DEFAULT_MIN_SHARE_EFFECT: f64 = 0.0001;

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_effect: DEFAULT_MIN_EFFECT,
            min_share_effect: DEFAULT_MIN_SHARE_EFFECT,
        }
    }
}

/// Why service-time percentiles get no interval.
pub const NO_SERVICE_SECONDS: &str = "reports keep service time for the whole run only (no \
    per-second service-time histograms), so its second-to-second noise is unknown";
/// Why delivery counts get no interval.
const NO_DELIVERY_SECONDS: &str =
    "delivery is counted for the whole run only (no per-second loss or duplicates)";
/// Why per-shard counts get no interval.
const NO_SHARD_SECONDS: &str =
    "shards are counted for the whole run only (no per-second shard counts)";
/// Why the largest latency gets no verdict.
const MAX_NOT_JUDGED: &str = "the largest value is one event: resampling seconds can never draw \
    anything above it, so the bootstrap cannot say its noise";
/// A percentile is judged only when both runs have at least this many events above it.
const MIN_TAIL_EVENTS: f64 = 10.0;
/// Why the cost gets no interval.
const COST_NOT_JUDGED: &str = "an estimate from list prices, not a measurement";

/// The verdict on a change: `point` is the relative change (latencies, rate) or the change of a
/// share, `interval` its interval on the same scale, `min` the minimum effect on that scale.
pub fn judge(point: f64, interval: Option<Interval>, higher_is_worse: bool, min: f64) -> Verdict {
    let Some(i) = interval else {
        return Verdict::NotJudged;
    };
    let (worse, better) = if higher_is_worse {
        (i.low > 0.0 && point >= min, i.high < 0.0 && point <= -min)
    } else {
        (i.high < 0.0 && point <= -min, i.low > 0.0 && point >= min)
    };
    match (worse, better) {
        (true, _) => Verdict::Regressed,
        (_, true) => Verdict::Improved,
        _ => Verdict::WithinNoise,
    }
}

/// A metric before its verdict: where its values come from.
struct Spec {
    group: String,
    name: String,
    unit: Unit,
    base: Option<f64>,
    new: Option<f64>,
    higher_is_worse: bool,
    /// The bootstrap statistic behind its interval, and on which of the runs' series; `Err`
    /// says why it has none.
    source: Result<(Series, Stat), String>,
}

/// Which per-second series a statistic is computed on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Series {
    /// `histograms.hlog` with the time series and the error timeline.
    Main,
    /// `e2e.hlog`.
    EndToEnd,
}

/// Which of a summary's percentiles a row shows.
type Pick = fn(&Percentiles) -> f64;

fn latency_specs(
    group: &str,
    base: &Percentiles,
    new: &Percentiles,
    source: impl Fn(Stat) -> Result<(Series, Stat), String>,
) -> Vec<Spec> {
    let value = |p: &Percentiles, f: Pick| (p.count > 0).then(|| f(p));
    let list: [(&str, Pick, Stat); 6] = [
        ("p50", |p| p.p50, Stat::Quantile(0.5)),
        ("p90", |p| p.p90, Stat::Quantile(0.9)),
        ("p99", |p| p.p99, Stat::Quantile(0.99)),
        ("p99.9", |p| p.p99_9, Stat::Quantile(0.999)),
        ("max", |p| p.max, Stat::Max),
        ("mean", |p| p.mean, Stat::Mean),
    ];
    let fewest = base.count.min(new.count);
    list.into_iter()
        .map(|(name, f, stat)| Spec {
            group: group.to_string(),
            name: name.to_string(),
            unit: Unit::Ms,
            base: value(base, f),
            new: value(new, f),
            higher_is_worse: true,
            source: match stat {
                Stat::Max => Err(MAX_NOT_JUDGED.to_string()),
                Stat::Quantile(q) if (fewest as f64) * (1.0 - q) < MIN_TAIL_EVENTS => Err(format!(
                    "a run has fewer than {MIN_TAIL_EVENTS} events above its {name}: a handful \
                     of events sets it, and resampling seconds cannot say its noise"
                )),
                _ => source(stat),
            },
        })
        .collect()
}

fn share(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Events refused or retried with `code` (final failures and retries).
fn with_code(s: &Summary, code: &str) -> u64 {
    s.counts.failed_by_code.get(code).copied().unwrap_or(0)
        + s.counts.retried_by_code.get(code).copied().unwrap_or(0)
}

fn specs(base: &Summary, new: &Summary, columns: &Columns, e2e_intervals: bool) -> Vec<Spec> {
    let main = |stat| Ok((Series::Main, stat));
    let (b, n) = (&base.counts, &new.counts);
    let mut out = vec![
        Spec {
            group: "throughput".into(),
            name: "rate".into(),
            unit: Unit::PerSecond,
            base: Some(base.achieved_rate),
            new: Some(new.achieved_rate),
            higher_is_worse: false,
            source: main(Stat::Ratio(STEADY_ACKNOWLEDGED, STEADY)),
        },
        Spec {
            group: "throughput".into(),
            name: "unsent".into(),
            unit: Unit::Share,
            base: share(b.unsent, b.planned),
            new: share(n.unsent, n.planned),
            higher_is_worse: true,
            source: main(Stat::Ratio(UNSENT, PLANNED)),
        },
        Spec {
            group: "errors".into(),
            name: "error ratio".into(),
            unit: Unit::Share,
            base: share(b.failed, b.attempted),
            new: share(n.failed, n.attempted),
            higher_is_worse: true,
            source: main(Stat::Ratio(FAILED, ATTEMPTED)),
        },
        Spec {
            group: "errors".into(),
            name: "throttled".into(),
            unit: Unit::Share,
            base: share(b.throttled(), b.attempted),
            new: share(n.throttled(), n.attempted),
            higher_is_worse: true,
            source: main(Stat::Ratio(THROTTLED, ATTEMPTED)),
        },
    ];
    for code in &columns.codes {
        out.push(Spec {
            group: "errors".into(),
            name: code.clone(),
            unit: Unit::Share,
            base: share(with_code(base, code), b.attempted),
            new: share(with_code(new, code), n.attempted),
            higher_is_worse: true,
            source: main(Stat::Ratio(
                columns.code(code).expect("every code has a column"),
                ATTEMPTED,
            )),
        });
    }
    out.extend(latency_specs(
        "latency",
        &base.latency_ms,
        &new.latency_ms,
        main,
    ));
    out.extend(latency_specs(
        "service time",
        &base.service_time_ms,
        &new.service_time_ms,
        |_| Err(NO_SERVICE_SECONDS.to_string()),
    ));
    if let (Some(be), Some(ne)) = (&base.end_to_end.e2e, &new.end_to_end.e2e) {
        let missing = if e2e_intervals {
            None
        } else {
            Some("a run has no merged/e2e.hlog (per-second end-to-end histograms)".to_string())
        };
        out.extend(latency_specs(
            "end to end",
            &be.latency_ms,
            &ne.latency_ms,
            |stat| match &missing {
                None => Ok((Series::EndToEnd, stat)),
                Some(why) => Err(why.clone()),
            },
        ));
        let lost = |s: &Summary, e: &crate::model::report::E2e| {
            e.lost.and_then(|l| share(l, s.counts.acknowledged))
        };
        out.push(Spec {
            group: "end to end".into(),
            name: "lost".into(),
            unit: Unit::Share,
            base: lost(base, be),
            new: lost(new, ne),
            higher_is_worse: true,
            source: Err(NO_DELIVERY_SECONDS.into()),
        });
        out.push(Spec {
            group: "end to end".into(),
            name: "duplicates".into(),
            unit: Unit::Share,
            base: share(be.duplicates, be.seen),
            new: share(ne.duplicates, ne.seen),
            higher_is_worse: true,
            source: Err(NO_DELIVERY_SECONDS.into()),
        });
    }
    if !base.by_shard.is_empty() && !new.by_shard.is_empty() {
        out.extend(shard_specs(base, new));
    }
    if let (Some(bc), Some(nc)) = (&base.cost, &new.cost) {
        out.push(Spec {
            group: "cost".into(),
            name: "usd".into(),
            unit: Unit::Usd,
            base: Some(bc.usd),
            new: Some(nc.usd),
            higher_is_worse: true,
            source: Err(COST_NOT_JUDGED.into()),
        });
        out.push(Spec {
            group: "cost".into(),
            name: "usd per million acknowledged".into(),
            unit: Unit::Usd,
            base: bc.usd_per_million_acknowledged,
            new: nc.usd_per_million_acknowledged,
            higher_is_worse: true,
            source: Err(COST_NOT_JUDGED.into()),
        });
    }
    out
}

/// Per shard: its acknowledged events per second of production and its throttled share of the
/// records sent to it (acknowledged, failed or retried there).
fn shard_specs(base: &Summary, new: &Summary) -> Vec<Spec> {
    let ids: BTreeSet<&String> = base.by_shard.keys().chain(new.by_shard.keys()).collect();
    let rate = |s: &Summary, c: Option<&ShardCounts>| {
        (s.duration_s > 0.0).then(|| c.map_or(0.0, |c| c.acknowledged as f64) / s.duration_s)
    };
    let throttled = |c: Option<&ShardCounts>| {
        let c = c?;
        let sent = c.acknowledged
            + c.failed_by_code.values().sum::<u64>()
            + c.retried_by_code.values().sum::<u64>();
        share(c.throttled(), sent)
    };
    let mut out = Vec::new();
    for id in ids {
        let (bc, nc) = (base.by_shard.get(id), new.by_shard.get(id));
        out.push(Spec {
            group: format!("shard {id}"),
            name: "rate".into(),
            unit: Unit::PerSecond,
            base: rate(base, bc),
            new: rate(new, nc),
            higher_is_worse: false,
            source: Err(NO_SHARD_SECONDS.into()),
        });
        out.push(Spec {
            group: format!("shard {id}"),
            name: "throttled".into(),
            unit: Unit::Share,
            base: throttled(bc),
            new: throttled(nc),
            higher_is_worse: true,
            source: Err(NO_SHARD_SECONDS.into()),
        });
    }
    out
}

/// The per-second data of both runs, for the bootstrap.
pub struct SecondsOf<'a> {
    /// BASE's seconds.
    pub base: &'a Units,
    /// NEW's seconds.
    pub new: &'a Units,
    /// Both runs' end-to-end seconds, when both have them.
    pub e2e: Option<(&'a Units, &'a Units)>,
}

/// Every metric of the comparison of `base` with `new`, judged.
pub fn rows(
    base: &Run,
    new: &Run,
    columns: &Columns,
    seconds: &SecondsOf,
    settings: &Settings,
    rules: &Rules,
) -> Vec<MetricRow> {
    let specs = specs(&base.summary, &new.summary, columns, seconds.e2e.is_some());
    let stats_of = |series: Series| -> Vec<Stat> {
        specs
            .iter()
            .filter_map(|s| s.source.as_ref().ok())
            .filter(|(on, _)| *on == series)
            .map(|(_, stat)| *stat)
            .collect()
    };
    let run = |series: Series, stats: &[Stat]| -> Vec<Outcome> {
        match series {
            Series::Main => bootstrap::compare(seconds.base, seconds.new, stats, settings),
            Series::EndToEnd => match seconds.e2e {
                Some((b, n)) => bootstrap::compare(b, n, stats, settings),
                None => Vec::new(),
            },
        }
    };
    let main_stats = stats_of(Series::Main);
    let e2e_stats = stats_of(Series::EndToEnd);
    let main = run(Series::Main, &main_stats);
    let e2e = run(Series::EndToEnd, &e2e_stats);
    let outcome = |series: Series, stat: Stat| -> Option<&Outcome> {
        let (stats, outcomes) = match series {
            Series::Main => (&main_stats, &main),
            Series::EndToEnd => (&e2e_stats, &e2e),
        };
        stats
            .iter()
            .position(|s| *s == stat)
            .and_then(|i| outcomes.get(i))
    };
    specs
        .into_iter()
        .map(|spec| {
            let change = match (spec.base, spec.new) {
                (Some(b), Some(n)) => Some(n - b),
                _ => None,
            };
            let change_relative = match (spec.base, spec.new) {
                (Some(b), Some(n)) if b > 0.0 => Some(n / b - 1.0),
                _ => None,
            };
            // Histogram statistics are in µs; the rows show ms.
            let scale = if spec.unit == Unit::Ms { 1e-3 } else { 1.0 };
            let (interval, interval_relative, why) = match &spec.source {
                Err(why) => (None, None, Some(why.clone())),
                Ok((series, stat)) => match outcome(*series, *stat) {
                    Some(o) => (
                        o.diff.map(|i| Interval {
                            low: i.low * scale,
                            high: i.high * scale,
                        }),
                        o.rel,
                        None,
                    ),
                    None => (None, None, Some("no interval could be computed".into())),
                },
            };
            let (verdict, why) = if spec.base.is_none() || spec.new.is_none() {
                let which = match (spec.base, spec.new) {
                    (None, None) => "neither run",
                    (None, _) => "BASE",
                    _ => "NEW",
                };
                (
                    Verdict::NotJudged,
                    Some(format!("{which} measured nothing here")),
                )
            } else if let Some(why) = why {
                (Verdict::NotJudged, Some(why))
            } else {
                let (point, on, min) = match spec.unit {
                    Unit::Share => (change, interval, rules.min_share_effect),
                    _ => (change_relative, interval_relative, rules.min_effect),
                };
                match (point, on) {
                    (Some(p), Some(i)) => (judge(p, Some(i), spec.higher_is_worse, min), None),
                    (None, _) => (
                        Verdict::NotJudged,
                        Some("BASE is 0, so there is no relative change".into()),
                    ),
                    (_, None) => (
                        Verdict::NotJudged,
                        Some(
                            "too few resampled seconds had data for an interval (a run too short \
                             or too empty)"
                                .into(),
                        ),
                    ),
                }
            };
            MetricRow {
                group: spec.group,
                name: spec.name,
                unit: spec.unit,
                base: spec.base,
                new: spec.new,
                change,
                change_relative,
                interval,
                interval_relative,
                higher_is_worse: spec.higher_is_worse,
                verdict,
                why,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::compare::bootstrap::tests::synthetic;

    #[test]
    fn the_verdict_needs_the_whole_interval_and_the_minimum_effect() {
        let i = |low, high| Some(Interval { low, high });
        // Higher is worse (latency).
        assert_eq!(judge(0.38, i(0.31, 0.45), true, 0.05), Verdict::Regressed);
        assert_eq!(
            judge(0.38, i(-0.01, 0.45), true, 0.05),
            Verdict::WithinNoise
        );
        assert_eq!(judge(0.03, i(0.01, 0.05), true, 0.05), Verdict::WithinNoise);
        assert_eq!(judge(-0.2, i(-0.3, -0.1), true, 0.05), Verdict::Improved);
        // Lower is worse (rate).
        assert_eq!(judge(-0.2, i(-0.3, -0.1), false, 0.05), Verdict::Regressed);
        assert_eq!(judge(0.2, i(0.1, 0.3), false, 0.05), Verdict::Improved);
        assert_eq!(judge(0.2, None, false, 0.05), Verdict::NotJudged);
    }

    /// The rule on synthetic runs: 20 pairs drawn from one distribution are all within noise;
    /// pairs whose new run is 30 % slower are all regressed on p50 and p99.
    #[test]
    fn same_runs_are_within_noise_and_slowed_runs_regressed() {
        let settings = Settings {
            resamples: 400,
            ..Settings::default()
        };
        let stats = [Stat::Quantile(0.5), Stat::Quantile(0.99), Stat::Mean];
        let rules = Rules::default();
        let verdicts = |a: &Units, b: &Units| -> Vec<Verdict> {
            bootstrap::compare(a, b, &stats, &settings)
                .iter()
                .map(|o| judge(o.new / o.base - 1.0, o.rel, true, rules.min_effect))
                .collect()
        };
        for pair in 0..20u64 {
            let a = synthetic(40, 300, 2_000.0, 1.0, 300 + 2 * pair);
            let b = synthetic(40, 300, 2_000.0, 1.0, 301 + 2 * pair);
            let v = verdicts(&a, &b);
            assert!(
                v.iter().all(|v| *v == Verdict::WithinNoise),
                "pair {pair}: {v:?}"
            );
        }
        for pair in 0..5u64 {
            let a = synthetic(40, 300, 2_000.0, 1.0, 400 + 2 * pair);
            let b = synthetic(40, 300, 2_000.0, 1.3, 401 + 2 * pair);
            let v = verdicts(&a, &b);
            assert_eq!(
                &v[..2],
                &[Verdict::Regressed, Verdict::Regressed],
                "pair {pair}"
            );
        }
    }
}
