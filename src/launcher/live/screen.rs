//! What a live window looks like on the screen: a compact table under the progress bar on a
//! terminal, one line per window in a CI log. Every line stays within 100 columns.

use crate::launcher::render::format::{duration_label, thousands, trim};
use crate::model::live::{clock, FleetWindowRecord};
use crate::model::report::{Counts, THROTTLE_CODES};

/// The widest line of the table.
const COLUMNS: usize = 100;

/// As many stale task ids as fit in `width` columns, then "and N more".
fn stale_text(stale: &[String], width: usize) -> String {
    let mut text = String::new();
    for (i, id) in stale.iter().enumerate() {
        let rest = stale.len() - i - 1;
        let more = if rest > 0 {
            format!(" and {rest} more")
        } else {
            String::new()
        };
        let sep = if text.is_empty() { "" } else { ", " };
        if i > 0 && text.len() + sep.len() + id.len() + more.len() > width {
            text.push_str(&format!(" and {} more", stale.len() - i));
            return text;
        }
        text.push_str(sep);
        text.push_str(id);
    }
    text
}

fn percent(v: f64) -> String {
    format!("{}%", trim(v * 100.0, 2))
}

/// The codes of the window's failures and throttled tries, largest first: `Code 12, Other 3`.
fn codes(counts: &Counts, limit: usize) -> String {
    let mut all: Vec<(&String, u64)> = counts
        .failed_by_code
        .iter()
        .map(|(k, v)| (k, *v))
        .chain(
            counts
                .retried_by_code
                .iter()
                .filter(|(k, _)| THROTTLE_CODES.contains(&k.as_str()))
                .map(|(k, v)| (k, *v)),
        )
        .collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    all.dedup_by(|a, b| a.0 == b.0);
    let mut parts: Vec<String> = all
        .iter()
        .take(limit)
        .map(|(k, n)| format!("{k} {}", thousands(*n)))
        .collect();
    if all.len() > limit {
        parts.push(format!("{} more", all.len() - limit));
    }
    parts.join(", ")
}

fn ms(v: f64) -> String {
    duration_label(v)
}

/// The window's table for a terminal, a line per aspect.
pub(super) fn table(w: &FleetWindowRecord, paced: bool) -> Vec<String> {
    let c = &w.counts;
    let mut lines = vec![format!(
        "live {}–{}   tasks {}/{}",
        clock(w.from_second),
        clock(w.to_second),
        w.tasks_reporting,
        w.tasks_expected,
    )];
    if !w.stale.is_empty() {
        let prefix = "  stale    ";
        lines.push(format!(
            "{prefix}{}",
            stale_text(&w.stale, COLUMNS - prefix.len())
        ));
    }
    let target = if paced {
        format!("target {}/s   ", thousands(w.target_rate.round() as u64))
    } else {
        String::new()
    };
    lines.push(format!(
        "  rate     {target}achieved {}/s   behind {}   unsent {}",
        thousands(w.achieved_rate.round() as u64),
        thousands(w.behind),
        thousands(c.unsent),
    ));
    if w.latency_ms.count > 0 {
        lines.push(format!(
            "  latency  p50 {}   p99 {}   p99.9 {}   max {}",
            ms(w.latency_ms.p50),
            ms(w.latency_ms.p99),
            ms(w.latency_ms.p99_9),
            ms(w.latency_ms.max)
        ));
    } else {
        lines.push("  latency  nothing acknowledged in this window".to_string());
    }
    let failed = format!(
        "  errors   failed {} ({})   throttled {}",
        thousands(c.failed),
        percent(c.error_rate()),
        percent(c.throttle_ratio())
    );
    let by_code = codes(c, 2);
    lines.push(
        if by_code.is_empty() || failed.len() + by_code.len() + 2 > COLUMNS {
            failed
        } else {
            format!("{failed}: {by_code}")
        },
    );
    if let Some(e2e) = &w.e2e_latency_ms {
        lines.push(format!(
            "  e2e      p99 {}   max {}   lost so far {}",
            if e2e.count > 0 {
                ms(e2e.p99)
            } else {
                "—".into()
            },
            if e2e.count > 0 {
                ms(e2e.max)
            } else {
                "—".into()
            },
            w.lost_so_far.map_or("unknown".into(), thousands)
        ));
    }
    lines
}

/// The window in one line, for a CI log.
pub(super) fn line(w: &FleetWindowRecord, paced: bool) -> String {
    let c = &w.counts;
    let mut parts = vec![
        format!("live {}", clock(w.to_second)),
        format!("tasks {}/{}", w.tasks_reporting, w.tasks_expected),
        if paced {
            format!(
                "rate {}/{}/s",
                thousands(w.achieved_rate.round() as u64),
                thousands(w.target_rate.round() as u64)
            )
        } else {
            format!("rate {}/s", thousands(w.achieved_rate.round() as u64))
        },
        format!("behind {}", thousands(w.behind)),
    ];
    if w.latency_ms.count > 0 {
        parts.push(format!(
            "p50 {} p99 {} p99.9 {} max {}",
            ms(w.latency_ms.p50),
            ms(w.latency_ms.p99),
            ms(w.latency_ms.p99_9),
            ms(w.latency_ms.max)
        ));
    }
    parts.push(format!(
        "failed {} throttled {}",
        percent(c.error_rate()),
        percent(c.throttle_ratio())
    ));
    if let Some(e2e) = &w.e2e_latency_ms {
        if e2e.count > 0 {
            parts.push(format!("e2e_p99 {}", ms(e2e.p99)));
        }
        parts.push(format!(
            "lost {}",
            w.lost_so_far.map_or("unknown".into(), thousands)
        ));
    }
    if !w.stale.is_empty() {
        parts.push(format!("stale: {}", stale_text(&w.stale, COLUMNS)));
    }
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::report::Percentiles;

    fn record() -> FleetWindowRecord {
        FleetWindowRecord {
            window: 11,
            from_second: 110,
            to_second: 120,
            tasks_reporting: 198,
            tasks_expected: 200,
            stale: (1..=6).map(|i| format!("ecs-task-{i:032}")).collect(),
            counts: Counts {
                planned: 5_000_000,
                attempted: 4_990_000,
                acknowledged: 4_980_000,
                failed: 10_000,
                failed_by_code: BTreeMap::from([("InternalFailure".into(), 10_000)]),
                retried: 20_500,
                retried_by_code: BTreeMap::from([(
                    "ProvisionedThroughputExceededException".into(),
                    20_500,
                )]),
                ..Counts::default()
            },
            bytes: 0,
            behind: 10_000,
            target_rate: 500_000.0,
            achieved_rate: 498_000.0,
            latency_ms: Percentiles {
                count: 4_980_000,
                p50: 12.1,
                p99: 48.3,
                p99_9: 91.0,
                max: 1400.0,
                ..Percentiles::default()
            },
            e2e_latency_ms: Some(Percentiles {
                count: 10,
                p99: 1420.0,
                max: 2000.0,
                ..Percentiles::default()
            }),
            lost_so_far: Some(0),
        }
    }

    #[test]
    fn the_table_says_rate_latency_errors_and_stale_tasks_within_100_columns() {
        let lines = table(&record(), true);
        let text = lines.join("\n");
        for l in &lines {
            assert!(
                l.chars().count() <= 100,
                "{} columns: {l}",
                l.chars().count()
            );
        }
        assert!(
            text.contains("live 00:01:50–00:02:00   tasks 198/200"),
            "{text}"
        );
        assert!(text.contains("stale    ecs-task-"), "{text}");
        assert!(text.contains("and 5 more"), "{text}");
        assert!(
            text.contains("target 500,000/s   achieved 498,000/s   behind 10,000"),
            "{text}"
        );
        assert!(
            text.contains("p50 12.1ms   p99 48.3ms   p99.9 91ms   max 1.4s"),
            "{text}"
        );
        assert!(text.contains("throttled 0.41%"), "{text}");
        assert!(text.contains("e2e      p99 1.42s"), "{text}");
        assert!(text.contains("lost so far 0"), "{text}");
        let one = line(&record(), true);
        assert!(
            one.starts_with("live 00:02:00  tasks 198/200  rate 498,000/500,000/s"),
            "{one}"
        );
        assert!(one.contains("throttled 0.41%"), "{one}");
    }
}
