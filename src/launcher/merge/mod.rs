//! The exact merge of a run's task reports into one report.
//!
//! Latency and service-time histograms are *added* (never are percentiles averaged), counts are
//! summed per error code, the per-second rows of every task are lined up by their second from the
//! planned start, and the per-second percentiles come from the summed per-second histograms of
//! `histograms.hlog`. The merge always says which tasks reported: a task that is missing, did
//! not complete, or whose report cannot be read is listed by id, and makes the merged outcome
//! `failed`.
//!
//! [`merge_reports`] is the pure merge of reports already in memory (unit, property and benchmark
//! tests drive it); [`merge_run`] reads a run's reports from a [`ReportStore`] and
//! [`write_merged`] writes the result next to them.

mod decode;
mod e2e;
mod fold;
mod hdr;
mod merged;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::StreamExt;

use crate::model::report::{
    timeseries_csv, HlogWriter, E2E_HLOG_FILE, HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::worker::store::{merged_dir, task_dir, tasks_dir, ReportStore};

use self::decode::{decode_task, Decoded};
use self::fold::Merger;
use self::hdr::{Batch, Decoder};

pub use self::merged::{Merged, MergedSecond, TaskInput, MAX_SECOND, MERGED_TASK_ID};

/// Reports fetched at once: enough to hide S3's per-request latency for a thousand tasks,
/// few enough not to exhaust connections or memory (a decoded task is a few MB at most).
pub const FETCH_CONCURRENCY: usize = 32;
/// Most threads decoding reports at once: decoding is CPU-bound, so more than the machine's
/// cores only adds memory (each thread holds one task's decoded histograms).
pub const MAX_DECODE_THREADS: usize = 8;
/// Tasks a decoding thread decodes into one [`Batch`] before adding them: each second's
/// counters are then walked once for the group instead of once per task, which is what the
/// adding costs (300 seconds of ~80 KB of counters do not stay in the cache from task to task).
/// A group's batch is a few MB.
const GROUP_TASKS: usize = 8;
/// Merges reports already in memory. `expected` lists the task ids the launcher started, when
/// it knows them; `expected_count` says how many tasks there should be (with a list, tasks
/// beyond it are expected tasks that never got an id, e.g. they could not be started).
pub fn merge_reports(
    run_id: &str,
    inputs: Vec<TaskInput>,
    expected: Option<Vec<String>>,
    expected_count: Option<u64>,
) -> Merged {
    let mut merger = Merger::new(run_id);
    let mut decoder = Decoder::default();
    let mut batch = Batch::default();
    let mut group = Vec::new();
    for input in inputs {
        group.push(decode_task(run_id, input, &mut decoder, &mut batch));
        if group.len() >= GROUP_TASKS {
            merger.add_group(&mut group, &mut batch);
        }
    }
    merger.add_group(&mut group, &mut batch);
    merger.finish(expected, expected_count)
}

/// Reads every task report of `run_id` from the store and merges them (see [`merge_reports`]).
/// Reports are fetched [`FETCH_CONCURRENCY`] at a time and decoded on the blocking pool, so a
/// thousand reports on S3 merge in seconds. A task whose files cannot be read is listed as a
/// failed task, not dropped; only a failure to list the run is an error.
pub async fn merge_run(
    store: &ReportStore,
    run_id: &str,
    expected: Option<Vec<String>>,
    expected_count: Option<u64>,
) -> anyhow::Result<Merged> {
    let prefix = format!("{}/", tasks_dir(run_id));
    let keys = store.list(&prefix).await.with_context(|| {
        format!(
            "could not list the task reports under {}",
            store.display_url(&prefix)
        )
    })?;
    // Every directory under tasks/ is a task that reported something, even if its
    // summary.json is missing (it crashed while writing): it is listed, never ignored.
    let ids: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.split_once('/'))
        .map(|(id, _)| id.to_string())
        .filter(|id| !id.is_empty())
        .collect();

    // Fetching is I/O: FETCH_CONCURRENCY reports at a time. Decoding is CPU: one thread per
    // core, each decoding GROUP_TASKS tasks into its own batch, then adding them to the merge
    // under a lock (adding is a small part of the work, decoding the large one).
    let merger = Arc::new(Mutex::new(Merger::new(run_id)));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_DECODE_THREADS);
    let (tx, rx) = tokio::sync::mpsc::channel::<Work>(FETCH_CONCURRENCY);
    let rx = Arc::new(Mutex::new(rx));
    let decoders: Vec<_> = (0..threads)
        .map(|_| {
            let (rx, merger, run_id) = (rx.clone(), merger.clone(), run_id.to_string());
            tokio::task::spawn_blocking(move || {
                let mut decoder = Decoder::default();
                let mut batch = Batch::default();
                let mut group = Vec::new();
                loop {
                    let work = rx.lock().expect("no decoder panics").blocking_recv();
                    let task = match work {
                        None => break,
                        Some(Work::Read(input)) => {
                            decode_task(&run_id, input, &mut decoder, &mut batch)
                        }
                        Some(Work::Unreadable(task_id, reason)) => {
                            Decoded::problem(task_id, reason)
                        }
                    };
                    group.push(task);
                    if group.len() >= GROUP_TASKS {
                        let mut merger = merger.lock().expect("no decoder panics");
                        merger.add_group(&mut group, &mut batch);
                    }
                }
                let mut merger = merger.lock().expect("no decoder panics");
                merger.add_group(&mut group, &mut batch);
            })
        })
        .collect();

    let mut fetched = futures::stream::iter(ids)
        .map(|task_id| async move {
            let dir = task_dir(run_id, &task_id);
            let read = |name: &str| {
                let key = format!("{dir}/{name}");
                async move { store.get(&key).await }
            };
            let files =
                tokio::try_join!(read(SUMMARY_FILE), read(TIMESERIES_FILE), read(HLOG_FILE));
            match files {
                Ok((summary, timeseries, hlog)) => Work::Read(TaskInput {
                    task_id,
                    summary,
                    timeseries,
                    hlog,
                }),
                Err(e) => Work::Unreadable(task_id, format!("{e:#}")),
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY);
    while let Some(work) = fetched.next().await {
        if tx.send(work).await.is_err() {
            break; // every decoder ended: one panicked, which the joins below report
        }
    }
    drop(tx);
    for decoder in decoders {
        decoder
            .await
            .context("decoding the task reports panicked")?;
    }
    let merger = Arc::try_unwrap(merger)
        .ok()
        .expect("every decoder ended")
        .into_inner()
        .expect("no decoder panics");
    Ok(merger.finish(expected, expected_count))
}

/// What the fetching side hands to a decoding thread.
enum Work {
    /// A task's files.
    Read(TaskInput),
    /// A task whose files could not be read, and why.
    Unreadable(String, String),
}

/// Writes `merged/summary.json`, `merged/timeseries.csv` and `merged/histograms.hlog`.
pub async fn write_merged(
    store: &ReportStore,
    run_id: &str,
    merged: &Merged,
) -> anyhow::Result<()> {
    let dir = merged_dir(run_id);
    let mut hlog = HlogWriter::new(merged.summary.planned_start);
    for s in &merged.per_second {
        hlog.push_encoded(s.second, s.max_us, &s.encoded);
    }
    let hlog = hlog.finish();
    store
        .put(
            &format!("{dir}/{SUMMARY_FILE}"),
            merged.summary.to_json(),
            "application/json",
        )
        .await?;
    store
        .put(
            &format!("{dir}/{TIMESERIES_FILE}"),
            timeseries_csv(&merged.rows),
            "text/csv",
        )
        .await?;
    store
        .put(&format!("{dir}/{HLOG_FILE}"), hlog, "text/plain")
        .await?;
    if let Some(e2e) = merged
        .summary
        .end_to_end
        .e2e
        .as_ref()
        .filter(|e| !e.per_second.is_empty())
    {
        // The per-second end-to-end histograms as their own interval log.
        let mut log = HlogWriter::new(merged.summary.planned_start);
        for (second, text) in &e2e.per_second {
            if let Ok(h) = crate::model::report::decode_histogram(text) {
                log.push(*second, &h);
            }
        }
        store
            .put(
                &format!("{dir}/{E2E_HLOG_FILE}"),
                log.finish(),
                "text/plain",
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use hdrhistogram::Histogram;

    use super::*;
    use crate::model::report::{
        encode_histogram, parse_timeseries, Counts, Histograms, Outcome, Percentiles, Saturation,
        SecondRow, Summary, SCHEMA_VERSION,
    };
    use crate::model::report::{new_histogram, write_hlog};

    pub(crate) fn planned() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A task report with `values` (µs) recorded one per second, spread over `seconds` seconds.
    fn task(id: &str, values: &[u64], seconds: u64, outcome: Outcome) -> TaskInput {
        let mut latency = new_histogram();
        let mut per_second: Vec<(u64, Histogram<u64>)> =
            (0..seconds).map(|s| (s, new_histogram())).collect();
        let mut rows: Vec<SecondRow> = (0..seconds)
            .map(|s| SecondRow {
                second: s,
                target_rate: 10.0,
                ..SecondRow::default()
            })
            .collect();
        for (i, v) in values.iter().enumerate() {
            let s = i % seconds as usize;
            latency.record(*v).unwrap();
            per_second[s].1.record(*v).unwrap();
            rows[s].attempted += 1;
            rows[s].acknowledged += 1;
            rows[s].bytes += 100;
        }
        let n = values.len() as u64;
        let mut failed_by_code = BTreeMap::new();
        failed_by_code.insert("ProvisionedThroughputExceededException".to_string(), 2);
        let summary = Summary {
            schema_version: SCHEMA_VERSION,
            run_id: "run1".into(),
            task_id: id.into(),
            target: "null".into(),
            scenario: [
                ("FLEETLOAD_TARGET".to_string(), "null".to_string()),
                ("FLEETLOAD_TASK_ID".to_string(), id.to_string()),
            ]
            .into(),
            fleetload_version: "0".into(),
            planned_start: planned(),
            actual_start: Some(planned()),
            end: Some(planned() + chrono::Duration::seconds(seconds as i64)),
            late_start_ms: 0,
            duration_s: seconds as f64,
            outcome,
            counts: Counts {
                planned: 0,
                unsent: 0,
                attempted: n + 2,
                acknowledged: n,
                failed: 2,
                failed_by_code,
                retried: 1,
                retried_by_code: BTreeMap::new(),
            },
            bytes: n * 100,
            target_rate: Some(10.0),
            achieved_rate: n as f64 / seconds as f64,
            latency_ms: Percentiles::of(&latency),
            service_time_ms: Percentiles::of(&latency),
            histograms: Histograms {
                unit: "microseconds".into(),
                latency: encode_histogram(&latency),
                service_time: encode_histogram(&latency),
            },
            errors_timeline: [(
                "ProvisionedThroughputExceededException".to_string(),
                vec![(1, 2)],
            )]
            .into(),
            saturation: None,
            by_shard: Default::default(),
            kinesis: None,
            merge: None,
            end_to_end: Default::default(),
        };
        TaskInput {
            task_id: id.into(),
            summary: Some(summary.to_json()),
            timeseries: Some(timeseries_csv(&rows)),
            hlog: Some(write_hlog(planned(), &per_second)),
        }
    }

    #[test]
    fn sums_planned_unsent_their_column_and_saturation_and_reads_older_reports() {
        let saturated = |id: &str, unsent: u64, from: u64| {
            let mut t = task(id, &[1000, 2000], 2, Outcome::Completed);
            let mut s = Summary::from_json(t.summary.as_ref().unwrap()).unwrap();
            s.counts.unsent = unsent;
            s.counts.planned = s.counts.attempted + unsent;
            s.saturation = Some(Saturation {
                behind_from_second: Some(from),
                blocked_on_target_s: 1.5,
                behind_schedule_s: 1.75,
                cause: Some("target".into()),
            });
            t.summary = Some(s.to_json());
            let mut rows = parse_timeseries(t.timeseries.as_ref().unwrap()).unwrap();
            rows[1].unsent = unsent;
            t.timeseries = Some(timeseries_csv(&rows));
            t
        };
        // A report of an older version: no planned, unsent, saturation, nor unsent column.
        let mut old = task("old", &[3000], 2, Outcome::Completed);
        let mut json: serde_json::Value =
            serde_json::from_slice(old.summary.as_ref().unwrap()).unwrap();
        json["counts"].as_object_mut().unwrap().remove("planned");
        json["counts"].as_object_mut().unwrap().remove("unsent");
        old.summary = Some(serde_json::to_vec(&json).unwrap());
        let csv = String::from_utf8(old.timeseries.clone().unwrap()).unwrap();
        let csv: String = csv
            .lines()
            .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
            .collect();
        old.timeseries = Some(csv.into_bytes());

        let m = merge_reports(
            "run1",
            vec![saturated("a", 70, 1), saturated("b", 30, 0), old],
            None,
            None,
        );
        let c = &m.summary.counts;
        assert_eq!(
            m.summary.outcome,
            Outcome::Completed,
            "{:?}",
            m.summary.outcome
        );
        assert_eq!(c.unsent, 100);
        assert_eq!(c.attempted, 4 + 4 + 3);
        assert_eq!(c.planned, c.attempted + c.unsent);
        assert_eq!(m.rows[1].unsent, 100);
        assert_eq!(m.rows.iter().map(|r| r.unsent).sum::<u64>(), 100);
        let sat = m.summary.saturation.as_ref().unwrap();
        assert_eq!(sat.behind_from_second, Some(0));
        assert_eq!(sat.blocked_on_target_s, 3.0);
        assert_eq!(sat.cause.as_deref(), Some("target"));
    }

    #[test]
    fn sums_the_per_shard_counts_of_every_task() {
        let with_shards = |id: &str, shards: &[(&str, u64, u64)]| {
            let mut t = task(id, &[1000], 1, Outcome::Completed);
            let mut s = Summary::from_json(t.summary.as_ref().unwrap()).unwrap();
            for &(shard, acked, throttled) in shards {
                let c = s.by_shard.entry(shard.to_string()).or_default();
                c.acknowledged = acked;
                if throttled > 0 {
                    c.retried_by_code
                        .insert(crate::model::report::THROTTLED_CODE.into(), throttled);
                    c.failed_by_code.insert("InternalFailure".into(), 1);
                }
            }
            t.summary = Some(s.to_json());
            t
        };
        let a = with_shards("a", &[("shardId-0", 10, 0), ("shardId-1", 5, 7)]);
        let b = with_shards("b", &[("shardId-1", 3, 2), ("shardId-2", 4, 0)]);
        let plain = task("c", &[1000], 1, Outcome::Completed);
        let m = merge_reports("run1", vec![a, b, plain], None, None);
        let by = &m.summary.by_shard;
        assert_eq!(by.len(), 3);
        assert_eq!(by["shardId-0"].acknowledged, 10);
        assert_eq!(by["shardId-1"].acknowledged, 8);
        assert_eq!(by["shardId-1"].throttled(), 9);
        assert_eq!(by["shardId-1"].failed_by_code["InternalFailure"], 2);
        assert_eq!(by["shardId-2"].throttled(), 0);
        // Written and read back unchanged; a report without shards writes no `by_shard`.
        let back = Summary::from_json(&m.summary.to_json()).unwrap();
        assert_eq!(&back.by_shard, by);
        let plain = task("d", &[1000], 1, Outcome::Completed);
        assert!(!String::from_utf8(plain.summary.unwrap())
            .unwrap()
            .contains("by_shard"));
    }

    #[test]
    fn sums_kinesis_records_and_calls_and_merges_reports_written_before_them() {
        use crate::model::report::KinesisCounts;
        let with_kinesis = |id: &str, aggregation: &str, records: u64, calls: u64| {
            let mut t = task(id, &[1000, 2000], 1, Outcome::Completed);
            let mut s = Summary::from_json(t.summary.as_ref().unwrap()).unwrap();
            s.kinesis = Some(KinesisCounts {
                aggregation: aggregation.into(),
                kinesis_records: records,
                put_records_calls: calls,
            });
            t.summary = Some(s.to_json());
            t
        };
        // A report written before the field: merged, adding nothing to the Kinesis sums.
        let old = task("old", &[1000], 1, Outcome::Completed);
        assert!(!String::from_utf8(old.summary.clone().unwrap())
            .unwrap()
            .contains("\"kinesis\""));
        let m = merge_reports(
            "run1",
            vec![
                with_kinesis("a", "on", 1, 1),
                old,
                with_kinesis("b", "on", 2, 3),
            ],
            None,
            None,
        );
        assert_eq!(m.summary.counts.acknowledged, 5);
        assert_eq!(
            m.summary.kinesis,
            Some(KinesisCounts {
                aggregation: "on".into(),
                kinesis_records: 3,
                put_records_calls: 4,
            })
        );
        let back = Summary::from_json(&m.summary.to_json()).unwrap();
        assert_eq!(back.kinesis, m.summary.kinesis);
        let m = merge_reports(
            "run1",
            vec![
                with_kinesis("a", "on", 1, 1),
                with_kinesis("b", "off", 2, 2),
            ],
            None,
            None,
        );
        assert_eq!(m.summary.kinesis.unwrap().aggregation, "mixed");
        let m = merge_reports(
            "run1",
            vec![task("x", &[1], 1, Outcome::Completed)],
            None,
            None,
        );
        assert_eq!(m.summary.kinesis, None);
    }

    #[test]
    fn sums_counts_rows_and_histograms() {
        let a = task("a", &[1000, 2000, 3000, 4000], 2, Outcome::Completed);
        let b = task("b", &[500, 9000], 2, Outcome::Completed);
        let m = merge_reports("run1", vec![b, a], None, None);
        let s = &m.summary;
        assert_eq!(s.outcome, Outcome::Completed);
        assert_eq!(s.task_id, "merged");
        assert_eq!(s.counts.acknowledged, 6);
        assert_eq!(
            s.counts.failed_by_code["ProvisionedThroughputExceededException"],
            4
        );
        assert_eq!(s.counts.retried, 2);
        assert_eq!(s.bytes, 600);
        assert_eq!(s.target_rate, Some(20.0));
        assert_eq!(s.achieved_rate, 3.0);
        assert_eq!(s.latency_ms.count, 6);
        assert_eq!(s.latency_ms.max, 9.007);
        assert_eq!(
            s.errors_timeline["ProvisionedThroughputExceededException"],
            vec![(1, 4)]
        );
        assert_eq!(
            s.scenario.len(),
            1,
            "only what every task shares: {:?}",
            s.scenario
        );
        let info = s.merge.as_ref().unwrap();
        assert_eq!((info.tasks_expected, info.tasks_reported), (2, 2));
        assert_eq!(info.coverage, 1.0);
        assert_eq!(info.tasks[0].task_id, "a");
        assert_eq!(m.rows.len(), 2);
        // Second 0 got a's 1000 and 3000 and b's 500; second 1 got 2000, 4000, 9000.
        assert_eq!(m.rows[0].acknowledged, 3);
        assert_eq!(m.rows[0].target_rate, 20.0);
        assert_eq!(m.rows[1].max_ms, 9.007);
        assert_eq!(m.rows[0].p50_ms, 1.0);
        assert_eq!(m.per_second.len(), 2);
        assert_eq!(m.per_second[1].histogram().unwrap().len(), 3);
        assert_eq!(m.tasks.len(), 2);
        // The merged summary is itself a valid report.
        let back = Summary::from_json(&s.to_json()).unwrap();
        assert_eq!(back.latency_histogram().unwrap().len(), 6);
    }

    #[test]
    fn missing_failed_and_unreadable_tasks_are_listed() {
        let a = task("a", &[1000], 1, Outcome::Completed);
        let b = task(
            "b",
            &[1000],
            1,
            Outcome::Failed {
                reason: "stream not found".into(),
            },
        );
        let c = TaskInput {
            task_id: "c".into(),
            summary: Some(b"{ not json".to_vec()),
            ..TaskInput::default()
        };
        let mut d = task("d", &[1000], 1, Outcome::Completed);
        d.hlog = Some(b"garbage,line\n1,2,3\n".to_vec());
        let expected = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let m = merge_reports("run1", vec![a, b, c, d], Some(expected), None);
        let info = m.summary.merge.as_ref().unwrap();
        assert_eq!(info.tasks_missing, vec!["e"]);
        assert_eq!((info.tasks_expected, info.tasks_reported), (5, 4));
        assert_eq!(info.coverage, 0.8);
        let ids: Vec<_> = info
            .tasks_not_completed
            .iter()
            .map(|p| p.task_id.as_str())
            .collect();
        assert_eq!(ids, vec!["b", "c", "d"]);
        let Outcome::Failed { reason } = &info.tasks_not_completed[1].outcome else {
            panic!("c must be failed")
        };
        assert!(
            reason.starts_with("unreadable report: summary.json"),
            "{reason}"
        );
        let Outcome::Failed { reason } = &m.summary.outcome else {
            panic!("merged outcome must be failed")
        };
        assert!(reason.contains("missing: e"), "{reason}");
        assert!(reason.contains("b (stream not found)"), "{reason}");
        assert!(
            reason.contains("d (unreadable report: histograms.hlog"),
            "{reason}"
        );
        // Unreadable reports count nothing; b's numbers are still merged. d's histograms,
        // decoded before its interval log failed, are dropped from the group's batch, and
        // only d's.
        assert_eq!(m.summary.counts.acknowledged, 2);
        assert_eq!(m.summary.latency_ms.count, 2);
        assert_eq!(m.rows[0].acknowledged, 2);
        assert_eq!(m.per_second[0].histogram().unwrap().len(), 2);
        assert_eq!(info.tasks.len(), 4);
        assert_eq!(info.tasks[2].outcome, "failed");
    }

    #[test]
    fn expected_count_names_placeholders() {
        let a = task("a", &[1000], 1, Outcome::Completed);
        let m = merge_reports("run1", vec![a], None, Some(3));
        let info = m.summary.merge.as_ref().unwrap();
        assert_eq!(info.tasks_missing, vec!["missing-1", "missing-2"]);
        assert_eq!(info.tasks_expected, 3);
        assert!(matches!(m.summary.outcome, Outcome::Failed { .. }));
        let none = merge_reports("run1", vec![], None, None);
        assert_eq!(
            none.summary.outcome,
            Outcome::Failed {
                reason: "no task reported".into()
            }
        );
    }

    #[test]
    fn a_report_of_another_run_is_not_merged() {
        let a = task("a", &[1000], 1, Outcome::Completed);
        let m = merge_reports("run2", vec![a], None, None);
        assert_eq!(m.summary.counts.acknowledged, 0);
        let info = m.summary.merge.as_ref().unwrap();
        assert_eq!(info.tasks_not_completed.len(), 1);
    }

    #[test]
    fn a_task_that_measured_nothing_may_lack_its_series() {
        let mut a = task(
            "a",
            &[],
            1,
            Outcome::Failed {
                reason: "config".into(),
            },
        );
        let mut s = Summary::from_json(a.summary.as_ref().unwrap()).unwrap();
        s.counts = Counts::default();
        s.histograms.latency.clear();
        a.summary = Some(s.to_json());
        a.timeseries = None;
        a.hlog = None;
        let m = merge_reports("run1", vec![a], None, None);
        let info = m.summary.merge.as_ref().unwrap();
        assert_eq!(
            info.tasks_not_completed[0].outcome,
            Outcome::Failed {
                reason: "config".into()
            }
        );
    }

    #[tokio::test]
    async fn merge_run_reads_and_writes_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::Local(dir.path().to_path_buf());
        for t in [
            task("a", &[1000, 2000], 2, Outcome::Completed),
            task("b", &[3000], 2, Outcome::Completed),
        ] {
            let d = task_dir("run1", &t.task_id);
            for (name, bytes) in [
                (SUMMARY_FILE, t.summary),
                (TIMESERIES_FILE, t.timeseries),
                (HLOG_FILE, t.hlog),
            ] {
                store
                    .put(&format!("{d}/{name}"), bytes.unwrap(), "text/plain")
                    .await
                    .unwrap();
            }
        }
        // A directory with no summary.json is a task that reported nothing readable.
        store
            .put("run1/tasks/c/timeseries.csv", b"x".to_vec(), "text/csv")
            .await
            .unwrap();
        let m = merge_run(&store, "run1", None, None).await.unwrap();
        assert_eq!(m.summary.counts.acknowledged, 3);
        let info = m.summary.merge.as_ref().unwrap();
        assert_eq!(info.tasks_reported, 3);
        assert_eq!(info.tasks_not_completed[0].task_id, "c");
        write_merged(&store, "run1", &m).await.unwrap();
        let back = store
            .get("run1/merged/summary.json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Summary::from_json(&back).unwrap(), m.summary);
        let rows = crate::model::report::parse_timeseries(
            &store
                .get("run1/merged/timeseries.csv")
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rows, m.rows);
        let hlog = crate::model::report::parse_hlog(
            &store
                .get("run1/merged/histograms.hlog")
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(hlog.len(), 2);
        assert_eq!(hlog[0].1.len() + hlog[1].1.len(), 3);
        // The merged directory is not mistaken for tasks on a second merge.
        let again = merge_run(&store, "run1", None, None).await.unwrap();
        assert_eq!(again.summary.merge.unwrap().tasks_reported, 3);
    }
}
