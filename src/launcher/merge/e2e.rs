//! The run's end-to-end result from its consumer and producer reports: the consumers' delivery
//! sets OR-ed exactly, reconciled with the producers' counts (`model::delivery::reconcile`),
//! latency histograms added, per second too, and the coverage said (which consumers reported,
//! which producers traced). A consumer that did not report makes `lost` unknown, never a loss.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use roaring::RoaringTreemap;

use crate::model::delivery::{decode_set, reconcile, ProducerDelivery};
use crate::model::report::{
    decode_histogram, encode_histogram, new_histogram, E2e, E2eCoverage, E2eSecond, Outcome,
    Percentiles, Summary,
};

/// The merged `e2e` object, or `None` when the run had neither consumers nor traced producers.
/// `summaries` are the readable task reports.
pub(super) fn merge_e2e<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> Option<E2e> {
    let (mut consumers, mut producers) = (Vec::new(), Vec::new());
    for s in summaries {
        if s.end_to_end.is_consumer() {
            consumers.push(s);
        } else {
            producers.push(s);
        }
    }
    let traced = producers.iter().any(|p| p.end_to_end.trace.is_some());
    if consumers.is_empty() && !traced {
        return None;
    }
    let mut notes = Vec::new();
    let mut coverage = E2eCoverage::default();

    // The consumers: sets OR-ed, histograms added.
    let mut seen = 0u64;
    let mut foreign = 0u64;
    let mut delivered: BTreeMap<String, RoaringTreemap> = BTreeMap::new();
    let mut latency = new_histogram();
    let mut per_second: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    let mut expected_consumers: Option<u32> = None;
    let mut indices = BTreeSet::new();
    let mut clock = String::new();
    for c in &consumers {
        if let Some(m) = consumer_place(c) {
            expected_consumers = Some(expected_consumers.unwrap_or(0).max(m.1));
            indices.insert(m.0);
        }
        let incomplete = c.outcome != Outcome::Completed || c.end_to_end.e2e.is_none();
        if incomplete {
            coverage.consumers_missing.push(format!(
                "{} ({})",
                c.task_id,
                match &c.outcome {
                    Outcome::Failed { reason } => format!("failed: {reason}"),
                    Outcome::Interrupted { signal } => format!("interrupted by {signal}"),
                    Outcome::Completed => "no e2e measurements".into(),
                }
            ));
        } else {
            coverage.consumers_reported.push(c.task_id.clone());
        }
        let Some(e) = &c.end_to_end.e2e else { continue };
        if clock.is_empty() {
            clock = e.clock.clone();
        }
        seen += e.seen;
        foreign += e.foreign;
        for (task, text) in &e.delivered {
            match decode_set(text) {
                Ok(set) => *delivered.entry(task.clone()).or_default() |= set,
                Err(err) => notes.push(format!(
                    "consumer {}: the set of producer {task} is unreadable ({err:#})",
                    c.task_id
                )),
            }
        }
        if let Ok(h) = decode_histogram(&e.histogram) {
            let _ = latency.add(&h);
        }
        for (second, text) in &e.per_second {
            if let Ok(h) = decode_histogram(text) {
                let _ = per_second
                    .entry(*second)
                    .or_insert_with(new_histogram)
                    .add(&h);
            }
        }
    }
    if let Some(m) = expected_consumers {
        for i in 0..m {
            if !indices.contains(&i) {
                coverage
                    .consumers_missing
                    .push(format!("consumer {i}/{m} (no report)"));
            }
        }
    }
    if consumers.is_empty() {
        notes.push(
            "no consumer task reported: nothing is known of what the system under test delivered"
                .into(),
        );
    }

    // The producers that traced, by the task id in their traces.
    let mut by_task = BTreeMap::new();
    for p in &producers {
        match &p.end_to_end.trace {
            Some(t) => {
                let not_acknowledged = decode_set(&t.not_acknowledged).unwrap_or_else(|err| {
                    notes.push(format!(
                        "producer {}: its failed events are unreadable ({err:#})",
                        p.task_id
                    ));
                    RoaringTreemap::new()
                });
                by_task.insert(
                    t.task.clone(),
                    ProducerDelivery {
                        attempted: t.attempted,
                        acknowledged: p.counts.acknowledged,
                        not_acknowledged,
                    },
                );
            }
            None => coverage.producers_untraced.push(p.task_id.clone()),
        }
    }
    coverage.producers_traced = by_task.len() as u64;
    let r = reconcile(seen, &delivered, &by_task);
    coverage.from_unknown_producers = r.from_unknown_producers;
    coverage.unidentified_failures = r.unidentified_failures;
    let lost_known = coverage.consumers_missing.is_empty() && !consumers.is_empty();
    if !coverage.consumers_missing.is_empty() {
        notes.push(format!(
            "lost is unknown: {} did not report; what they would have read is not a loss of the system under test",
            coverage.consumers_missing.join(", ")
        ));
    }
    if !coverage.producers_untraced.is_empty() {
        notes.push(format!(
            "{} producer task(s) did not trace their events (FLEETLOAD_TRACE=on): their events cannot be matched",
            coverage.producers_untraced.len()
        ));
    }
    if r.from_unknown_producers > 0 {
        notes.push(format!(
            "{} distinct events seen come from producer tasks without a report: neither unique nor lost",
            r.from_unknown_producers
        ));
    }
    if r.unidentified_failures > 0 {
        notes.push(format!(
            "{} failed events could not be named by their producers (unanswered at the end): lost and unacknowledged_seen may each be off by at most that",
            r.unidentified_failures
        ));
    }
    coverage.notes = notes;

    let ms = |us: u64| us as f64 / 1000.0;
    let timeline = per_second
        .iter()
        .map(|(second, h)| E2eSecond {
            second: *second,
            seen: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
        .collect();
    Some(E2e {
        seen: r.seen,
        unique: Some(r.unique),
        lost: lost_known.then_some(r.lost),
        duplicates: r.duplicates,
        unacknowledged_seen: Some(r.unacknowledged_seen),
        foreign,
        latency_ms: Percentiles::of(&latency),
        histogram: encode_histogram(&latency),
        clock,
        source: None,
        delivered: BTreeMap::new(),
        per_second: per_second
            .iter()
            .map(|(s, h)| (*s, encode_histogram(h)))
            .collect(),
        timeline,
        coverage: Some(coverage),
    })
}

/// A consumer's `INDEX/COUNT` from its scenario (`FLEETLOAD_CONSUMER`), when given.
fn consumer_place(s: &Summary) -> Option<(u32, u32)> {
    let (i, n) = s.scenario.get("FLEETLOAD_CONSUMER")?.split_once('/')?;
    Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
}
