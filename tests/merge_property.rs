//! The merge is exact: whatever the tasks measured, the merged percentiles are those of one
//! histogram that recorded every task's raw values (percentiles are never averaged).

mod common;

use common::synthetic_task;
use fleetload::launcher::merge::{merge_reports, TaskInput};
use fleetload::model::report::{
    new_histogram, timeseries_csv, write_hlog, Outcome, Percentiles, HISTOGRAM_MAX_US,
};
use proptest::prelude::*;

const RUN: &str = "prop-run";

fn input(task: &common::SyntheticTask) -> TaskInput {
    TaskInput {
        task_id: task.summary.task_id.clone(),
        summary: Some(task.summary.to_json()),
        timeseries: Some(timeseries_csv(&task.rows)),
        hlog: Some(write_hlog(task.summary.planned_start, &task.per_second)),
    }
}

/// Latencies from 1 µs to one hour, with every order of magnitude equally likely.
fn latency() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..1_000,
        1_000u64..1_000_000,
        1_000_000u64..=HISTOGRAM_MAX_US,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merged_percentiles_equal_those_of_all_raw_values(
        tasks in prop::collection::vec(
            (prop::collection::vec(latency(), 1..150), 0u64..5, 1u64..4),
            1..=20,
        ),
    ) {
        let mut all = new_histogram();
        let mut per_second_all = vec![new_histogram(); 4];
        let mut inputs = Vec::new();
        let mut failed_total = 0;
        for (i, (values, failed, seconds)) in tasks.iter().enumerate() {
            for (k, v) in values.iter().enumerate() {
                all.record(*v).unwrap();
                per_second_all[k % *seconds as usize].record(*v).unwrap();
            }
            failed_total += failed;
            let task = synthetic_task(RUN, &format!("t{i:02}"), values, *failed, *seconds, Outcome::Completed);
            inputs.push(input(&task));
        }
        let merged = merge_reports(RUN, inputs, None, Some(tasks.len() as u64));
        let s = &merged.summary;
        let want = Percentiles::of(&all);
        prop_assert_eq!(s.latency_ms.count, want.count);
        prop_assert_eq!(s.latency_ms.p50, want.p50);
        prop_assert_eq!(s.latency_ms.p90, want.p90);
        prop_assert_eq!(s.latency_ms.p99, want.p99);
        prop_assert_eq!(s.latency_ms.p99_9, want.p99_9);
        prop_assert_eq!(s.latency_ms.max, want.max);
        prop_assert_eq!(&s.service_time_ms, &want);
        // The encoded merged histogram is the same histogram, bucket for bucket.
        prop_assert_eq!(s.latency_histogram().unwrap(), all.clone());
        // Per second too: each second's merged histogram is that second's raw values.
        for merged_second in merged.per_second.iter() {
            let merged_second = merged_second.unwrap();
            let (second, h) = (&merged_second.second, merged_second.histogram().unwrap());
            let raw = &per_second_all[*second as usize];
            prop_assert_eq!(h.len(), raw.len());
            for q in [0.5, 0.99, 1.0] {
                prop_assert_eq!(h.value_at_quantile(q), raw.value_at_quantile(q));
            }
            let row = &merged.rows[*second as usize];
            prop_assert_eq!(row.p99_ms, Percentiles::of(raw).p99);
            prop_assert_eq!(row.max_ms, Percentiles::of(raw).max);
        }
        prop_assert_eq!(s.counts.failed, failed_total);
        let by_code: u64 = s.counts.failed_by_code.values().sum();
        prop_assert_eq!(by_code, failed_total);
        prop_assert_eq!(&s.outcome, &Outcome::Completed);
        prop_assert_eq!(s.merge.as_ref().unwrap().tasks_reported, tasks.len() as u64);
    }
}

#[test]
fn counts_per_code_add_up_across_tasks() {
    let mut a = synthetic_task(RUN, "a", &[1000, 2000], 3, 1, Outcome::Completed);
    let b = synthetic_task(RUN, "b", &[1000], 4, 1, Outcome::Completed);
    a.summary
        .counts
        .failed_by_code
        .insert("InternalFailure".into(), 1);
    a.summary.counts.failed += 1;
    a.summary.counts.attempted += 1;
    a.summary.counts.retried = 7;
    a.summary
        .counts
        .retried_by_code
        .insert("ProvisionedThroughputExceededException".into(), 7);
    let m = merge_reports(RUN, vec![input(&a), input(&b)], None, None);
    let c = &m.summary.counts;
    assert_eq!(
        c.failed_by_code["ProvisionedThroughputExceededException"],
        7
    );
    assert_eq!(c.failed_by_code["InternalFailure"], 1);
    assert_eq!(c.failed, 8);
    assert_eq!(c.attempted, (2 + 3 + 1) + (1 + 4));
    assert_eq!(c.acknowledged, 3);
    assert_eq!(
        c.retried_by_code["ProvisionedThroughputExceededException"],
        7
    );
    assert_eq!(
        m.summary.errors_timeline["ProvisionedThroughputExceededException"],
        vec![(0, 7)]
    );
}

#[test]
fn a_missing_task_is_listed() {
    let a = synthetic_task(RUN, "task-a", &[1000], 0, 1, Outcome::Completed);
    let expected = vec!["task-a".to_string(), "task-b".to_string()];
    let m = merge_reports(RUN, vec![input(&a)], Some(expected), None);
    let info = m.summary.merge.as_ref().unwrap();
    assert_eq!(info.tasks_missing, vec!["task-b"]);
    assert_eq!(info.tasks_expected, 2);
    assert_eq!(info.tasks_reported, 1);
    assert_eq!(info.coverage, 0.5);
    let Outcome::Failed { reason } = &m.summary.outcome else {
        panic!("a run with a missing task is failed")
    };
    assert!(reason.contains("missing: task-b"), "{reason}");
    // A list of started tasks plus a count of requested ones: the unnamed rest is missing too.
    let m = merge_reports(RUN, vec![input(&a)], Some(vec!["task-a".into()]), Some(3));
    let info = m.summary.merge.as_ref().unwrap();
    assert_eq!(info.tasks_missing, vec!["missing-1", "missing-2"]);
    assert_eq!(info.tasks_expected, 3);
}
