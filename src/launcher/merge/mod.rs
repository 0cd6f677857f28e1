//! The exact merge of a run's task reports into one report.
//!
//! Latency and service-time histograms are *added* (never are percentiles averaged), counts are
//! summed per error code, the per-second rows of every task are lined up by their second from the
//! planned start, and the per-second percentiles come from the summed per-second histograms of
//! `histograms.hlog`. The merge always says which tasks reported: a task that is missing, did
//! not complete, or whose report cannot be read is listed by id, and makes the merged outcome
//! `failed`.
//!
//! [`merge_reports`] is the pure merge of reports already in memory (unit and property tests
//! drive it); [`merge_run`] reads a run's reports from a [`ReportStore`] and [`write_merged`]
//! writes the result next to them. Both take two passes: every task's `summary.json` and
//! `timeseries.csv` (`decode`, `fold`), then every task's `histograms.hlog` a window of seconds
//! at a time, summed second by second (`seconds`), so that what the merge holds does not grow
//! with tasks × seconds.

mod decode;
mod e2e;
mod fold;
mod hdr;
mod hdr_encode;
mod merged;
mod seconds;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::StreamExt;

use crate::model::report::{
    timeseries_csv, HlogWriter, E2E_HLOG_FILE, HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::store::{merged_dir, task_dir, tasks_dir, ReportStore};

use self::decode::{decode_task, Decoded, TaskFiles};
use self::fold::Merger;
use self::hdr::{Batch, Decoder};
use self::merged::LogBytes;
use self::seconds::{merge_in_memory, SecondsDone, SecondsMerge};

pub use self::merged::{
    Merged, MergedSecond, MergedSeconds, TaskInput, MAX_SECOND, MERGED_TASK_ID,
};
pub use self::seconds::WINDOW_BYTES;

/// Reports fetched at once: enough to hide S3's per-request latency for a thousand tasks,
/// few enough not to exhaust connections or memory.
pub const FETCH_CONCURRENCY: usize = 32;
/// Bytes of summaries and time series the first pass holds at once, about (fetched, queued and
/// being decoded): a day-long run's time series are megabytes per task, so fewer are fetched at
/// once.
const FIRST_PASS_BYTES: usize = 32 << 20;
/// Most threads decoding reports at once: decoding is CPU-bound, so more than the machine's
/// cores only adds memory.
pub const MAX_DECODE_THREADS: usize = 8;

/// Threads the merge decodes on: one per core, up to [`MAX_DECODE_THREADS`].
fn decode_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_DECODE_THREADS)
}

/// Merges reports already in memory. `expected` lists the task ids the launcher started, when
/// it knows them; `expected_count` says how many tasks there should be (with a list, tasks
/// beyond it are expected tasks that never got an id, e.g. they could not be started).
pub fn merge_reports(
    run_id: &str,
    inputs: Vec<TaskInput>,
    expected: Option<Vec<String>>,
    expected_count: Option<u64>,
) -> Merged {
    // Tasks whose interval log turned out unreadable, by position, with the reason: the merge is
    // done again without them (see `seconds`).
    let mut unreadable: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        let mut merger = Merger::new(run_id);
        let mut decoder = Decoder::default();
        let mut batch = Batch::default();
        let mut logs: Vec<(usize, &[u8])> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let task = match unreadable.get(&i) {
                Some(reason) => Decoded::problem(input.task_id.clone(), reason.clone()),
                None => decode_task(run_id, files_of(input), &mut decoder, &mut batch),
            };
            if let (Ok(report), Some(hlog)) = (&task.report, &input.hlog) {
                if report.per_second {
                    logs.push((i, hlog));
                }
            }
            merger.add_with(task, &mut batch);
        }
        let mut seconds =
            SecondsMerge::in_memory(logs.len(), merger.planned_start(), decode_threads());
        let slices: Vec<&[u8]> = logs.iter().map(|&(_, log)| log).collect();
        merge_in_memory(&slices, &mut seconds);
        let done = seconds
            .finish()
            .expect("a merged interval log in memory is always written");
        if done.failures.is_empty() {
            return merger.finish(expected, expected_count, done.log, done.stats);
        }
        for (cursor, reason) in done.failures {
            unreadable.insert(logs[cursor].0, reason);
        }
    }
}

fn files_of(input: &TaskInput) -> TaskFiles<'_> {
    TaskFiles {
        task_id: &input.task_id,
        summary: input.summary.as_deref(),
        timeseries: input.timeseries.as_deref(),
        has_hlog: input.hlog.is_some(),
    }
}

/// Reads every task report of `run_id` from the store and merges them (see [`merge_reports`]).
///
/// Two passes: the summaries and time series are fetched [`FETCH_CONCURRENCY`] at a time and
/// decoded on one thread per core; then the interval logs are read a window of seconds at a
/// time, [`WINDOW_BYTES`] of them for all tasks together (ranged reads on S3), and merged second
/// by second. So the merge's memory does not grow with tasks × seconds, however long the run.
/// A task whose files cannot be read is listed as a failed task, not dropped; only a failure to
/// list the run (or to write the merged log to a temporary file) is an error.
pub async fn merge_run(
    store: &ReportStore,
    run_id: &str,
    expected: Option<Vec<String>>,
    expected_count: Option<u64>,
) -> anyhow::Result<Merged> {
    merge_run_with(
        store,
        run_id,
        expected,
        expected_count,
        MergeLimits::default(),
    )
    .await
}

/// How much of the tasks' interval logs [`merge_run_with`] reads ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeLimits {
    /// Bytes of interval logs held at once, all tasks together ([`WINDOW_BYTES`] by default).
    /// Less means more, smaller reads; the merged result is the same.
    pub window_bytes: usize,
}

impl Default for MergeLimits {
    fn default() -> Self {
        MergeLimits {
            window_bytes: WINDOW_BYTES,
        }
    }
}

/// [`merge_run`] with its read-ahead set by `limits`.
pub async fn merge_run_with(
    store: &ReportStore,
    run_id: &str,
    expected: Option<Vec<String>>,
    expected_count: Option<u64>,
    limits: MergeLimits,
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
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut with_hlog: BTreeSet<String> = BTreeSet::new();
    for (id, file) in keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.split_once('/'))
        .filter(|(id, _)| !id.is_empty())
    {
        ids.insert(id.to_string());
        if file == HLOG_FILE {
            with_hlog.insert(id.to_string());
        }
    }

    // Tasks whose interval log turned out unreadable, with the reason: the merge is done again
    // without them (see `seconds`).
    let mut unreadable: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let (merger, logs) = first_pass(store, run_id, &ids, &with_hlog, &unreadable).await?;
        let done = merge_seconds(store, run_id, &logs, merger.planned_start(), limits).await?;
        if done.failures.is_empty() {
            return Ok(merger.finish(expected, expected_count, done.log, done.stats));
        }
        for (cursor, reason) in done.failures {
            tracing::warn!(
                "the interval log of task {} is unreadable ({reason}); merging again without it",
                logs[cursor]
            );
            unreadable.insert(logs[cursor].clone(), reason);
        }
    }
}

/// What the fetching side hands to a decoding thread.
enum Work {
    /// A task's summary and time series.
    Read {
        task_id: String,
        summary: Option<Vec<u8>>,
        timeseries: Option<Vec<u8>>,
    },
    /// A task whose files could not be read, and why.
    Unreadable(String, String),
}

/// The first pass: every task's summary and time series, fetched and folded. Returns the fold
/// and the tasks whose interval logs are to be merged, in task id order.
async fn first_pass<'a>(
    store: &'a ReportStore,
    run_id: &'a str,
    ids: &'a BTreeSet<String>,
    with_hlog: &BTreeSet<String>,
    unreadable: &'a BTreeMap<String, String>,
) -> anyhow::Result<(Merger, Vec<String>)> {
    let fetch = |task_id: &'a String| async move {
        if let Some(reason) = unreadable.get(task_id) {
            return Work::Unreadable(task_id.clone(), reason.clone());
        }
        let dir = task_dir(run_id, task_id);
        let read = |name: &str| {
            let key = format!("{dir}/{name}");
            async move { store.get(&key).await }
        };
        match tokio::try_join!(read(SUMMARY_FILE), read(TIMESERIES_FILE)) {
            Ok((summary, timeseries)) => Work::Read {
                task_id: task_id.clone(),
                summary,
                timeseries,
            },
            Err(e) => Work::Unreadable(task_id.clone(), format!("{e:#}")),
        }
    };
    // Fetching is I/O: up to FETCH_CONCURRENCY reports at a time, fewer when the first one
    // says they are large (a long run), so that what is held at once stays within
    // FIRST_PASS_BYTES (decoded, a report takes about as much again). Decoding is CPU: one
    // thread per core, adding each task to the merge under a lock (adding is the small part).
    let mut ids = ids.iter();
    let first = match ids.next() {
        Some(task_id) => Some(fetch(task_id).await),
        None => None,
    };
    let per_task = match &first {
        Some(Work::Read {
            summary,
            timeseries,
            ..
        }) => 2 * (summary.as_ref().map_or(0, Vec::len) + timeseries.as_ref().map_or(0, Vec::len)),
        _ => 0,
    };
    // In flight, queued and being decoded: about three times this many.
    let at_once = (FIRST_PASS_BYTES / 3 / per_task.max(1)).clamp(1, FETCH_CONCURRENCY);
    let merger = Arc::new(Mutex::new((Merger::new(run_id), Vec::<String>::new())));
    let (tx, rx) = tokio::sync::mpsc::channel::<Work>(at_once);
    let rx = Arc::new(Mutex::new(rx));
    let decoders: Vec<_> = (0..decode_threads())
        .map(|_| {
            let (rx, merger, run_id) = (rx.clone(), merger.clone(), run_id.to_string());
            let with_hlog = with_hlog.clone();
            tokio::task::spawn_blocking(move || {
                let mut decoder = Decoder::default();
                let mut batch = Batch::default();
                loop {
                    let work = rx.lock().expect("no decoder panics").blocking_recv();
                    let task = match work {
                        None => break,
                        Some(Work::Read {
                            task_id,
                            summary,
                            timeseries,
                        }) => {
                            let files = TaskFiles {
                                task_id: &task_id,
                                summary: summary.as_deref(),
                                timeseries: timeseries.as_deref(),
                                has_hlog: with_hlog.contains(&task_id),
                            };
                            decode_task(&run_id, files, &mut decoder, &mut batch)
                        }
                        Some(Work::Unreadable(task_id, reason)) => {
                            Decoded::problem(task_id, reason)
                        }
                    };
                    let per_second = task.report.as_ref().is_ok_and(|r| r.per_second);
                    let task_id = task.task_id.clone();
                    let mut guard = merger.lock().expect("no decoder panics");
                    let (merger, logs) = &mut *guard;
                    merger.add_with(task, &mut batch);
                    if per_second {
                        logs.push(task_id);
                    }
                }
            })
        })
        .collect();

    let mut fetched = futures::stream::iter(first.map(futures::future::ready))
        .map(futures::future::Either::Left)
        .chain(futures::stream::iter(ids).map(|id| futures::future::Either::Right(fetch(id))))
        .buffer_unordered(at_once);
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
    let (merger, mut logs) = Arc::try_unwrap(merger)
        .ok()
        .expect("every decoder ended")
        .into_inner()
        .expect("no decoder panics");
    logs.sort();
    Ok((merger, logs))
}

/// The second pass: the interval logs of `tasks`, read a window at a time and merged second by
/// second (see `seconds`).
async fn merge_seconds(
    store: &ReportStore,
    run_id: &str,
    tasks: &[String],
    planned_start: chrono::DateTime<chrono::Utc>,
    limits: MergeLimits,
) -> anyhow::Result<SecondsDone> {
    let keys: Vec<String> = tasks
        .iter()
        .map(|id| format!("{}/{HLOG_FILE}", task_dir(run_id, id)))
        .collect();
    let mut merge = Some(SecondsMerge::new(
        tasks.len(),
        planned_start,
        decode_threads(),
        limits.window_bytes,
    ));
    loop {
        let m = merge.as_mut().expect("the merge is back from its thread");
        let wants = m.wants();
        if wants.is_empty() {
            // Decoding is CPU-bound: off the runtime's threads.
            let mut m = merge.take().expect("the merge is back from its thread");
            let (m, more) = tokio::task::spawn_blocking(move || {
                let more = m.step();
                (m, more)
            })
            .await
            .context("merging the per-second histograms panicked")?;
            merge = Some(m);
            if !more {
                break;
            }
            continue;
        }
        let mut fetches = Vec::with_capacity(wants.len());
        let mut reads = Vec::with_capacity(wants.len());
        for mut f in wants {
            let buf = std::mem::take(&mut f.buf);
            reads.push((keys[f.cursor].clone(), f.offset, f.len, buf));
            fetches.push(f);
        }
        let answers = store.append_ranges(reads, FETCH_CONCURRENCY).await;
        for (mut fetch, (buf, read)) in fetches.into_iter().zip(answers) {
            fetch.buf = buf;
            m.feed(fetch, read);
        }
    }
    merge.expect("the merge is back from its thread").finish()
}

/// Writes `merged/summary.json`, `merged/timeseries.csv` and `merged/histograms.hlog`.
pub async fn write_merged(
    store: &ReportStore,
    run_id: &str,
    merged: &Merged,
) -> anyhow::Result<()> {
    let dir = merged_dir(run_id);
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
    let hlog_key = format!("{dir}/{HLOG_FILE}");
    match merged.per_second.log() {
        Some(LogBytes::Memory(bytes)) => {
            store.put(&hlog_key, bytes.to_vec(), "text/plain").await?;
        }
        Some(LogBytes::File(path)) => store.put_file(&hlog_key, path, "text/plain").await?,
        // A merge that read no interval log: the log's header alone.
        None => {
            let empty = HlogWriter::new(merged.summary.planned_start).finish();
            store.put(&hlog_key, empty, "text/plain").await?;
        }
    }
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
                acknowledged_in_drain: 0,
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
            cost: None,
            merge: None,
            end_to_end: Default::default(),
            live: None,
            aborted: None,
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
        assert_eq!(m.per_second.get(1).unwrap().histogram().unwrap().len(), 3);
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
        assert_eq!(m.per_second.get(0).unwrap().histogram().unwrap().len(), 2);
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

    /// Every file `write_merged` wrote for `run`, by name.
    async fn written(store: &ReportStore, run: &str) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for name in [SUMMARY_FILE, TIMESERIES_FILE, HLOG_FILE] {
            let key = format!("{}/{name}", merged_dir(run));
            files.push((name.to_string(), store.get(&key).await.unwrap().unwrap()));
        }
        files
    }

    #[tokio::test]
    async fn merge_run_reads_logs_a_window_at_a_time_and_leaves_out_a_task_unreadable_late() {
        // Three tasks of 200 seconds; c's interval log is damaged at second 150, after many
        // windows of it were merged.
        let values: Vec<u64> = (0..600).map(|i| 1000 + i * 37).collect();
        let a = task("a", &values, 200, Outcome::Completed);
        let b = task("b", &values[..400], 200, Outcome::Completed);
        let mut c = task("c", &values[100..], 200, Outcome::Completed);
        let log = String::from_utf8(c.hlog.take().unwrap()).unwrap();
        let damaged: String = log
            .lines()
            .map(|l| match l.strip_prefix("150.000,") {
                Some(rest) => format!("150.000,{}!\n", &rest[..rest.len() - 1]),
                None => format!("{l}\n"),
            })
            .collect();
        assert_ne!(damaged, log);
        c.hlog = Some(damaged.into_bytes());
        let inputs = vec![a.clone(), b.clone(), c];

        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::Local(dir.path().to_path_buf());
        for t in &inputs {
            let d = task_dir("run1", &t.task_id);
            for (name, bytes) in [
                (SUMMARY_FILE, &t.summary),
                (TIMESERIES_FILE, &t.timeseries),
                (HLOG_FILE, &t.hlog),
            ] {
                let bytes = bytes.clone().unwrap();
                store
                    .put(&format!("{d}/{name}"), bytes, "text/plain")
                    .await
                    .unwrap();
            }
        }
        let limits = MergeLimits { window_bytes: 1024 };
        let from_store = merge_run_with(&store, "run1", None, None, limits)
            .await
            .unwrap();
        let info = from_store.summary.merge.as_ref().unwrap();
        assert_eq!(info.tasks_not_completed.len(), 1, "{info:?}");
        let Outcome::Failed { reason } = &info.tasks_not_completed[0].outcome else {
            panic!("c must be failed: {info:?}")
        };
        assert!(
            reason.starts_with("unreadable report: histograms.hlog, second 150: "),
            "{reason}"
        );
        // Nothing of c counts, in any second: the run is a and b alone.
        let ab = merge_reports("run1", vec![a, b], None, None);
        assert_eq!(from_store.summary.counts, ab.summary.counts);
        assert_eq!(from_store.rows, ab.rows);
        assert_eq!(from_store.per_second.len(), 200);
        for i in 0..200 {
            assert_eq!(
                from_store.per_second.get(i).unwrap(),
                ab.per_second.get(i).unwrap()
            );
        }
        // And it is written byte for byte as the merge of the same reports in memory.
        let in_memory = merge_reports("run1", inputs, None, None);
        write_merged(&store, "run1", &from_store).await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let other = ReportStore::Local(other.path().to_path_buf());
        write_merged(&other, "run1", &in_memory).await.unwrap();
        assert_eq!(written(&store, "run1").await, written(&other, "run1").await);
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
