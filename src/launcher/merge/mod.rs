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

mod hdr;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::model::report::{
    encode_histogram, parse_timeseries, read_hlog, timeseries_csv, Counts, Histograms, HlogWriter,
    MergeInfo, Outcome, Percentiles, Saturation, SecondRow, Summary, TaskProblem, TaskRow,
    HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::worker::store::{merged_dir, task_dir, tasks_dir, ReportStore};

use self::hdr::{Accumulator, Batch, Decoder, Encoder};

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
/// Slots of a task's [`Batch`] that are not seconds: the whole-run histograms of the summary.
const SLOT_LATENCY: u32 = u32::MAX;
const SLOT_SERVICE: u32 = u32::MAX - 1;
/// Task id of the merged summary.
pub const MERGED_TASK_ID: &str = "merged";
/// A report with a second beyond this (a week) is malformed: no run lasts that long
/// (scenarios are capped at a day), and the merge must not allocate rows for it.
pub const MAX_SECOND: u64 = 7 * 24 * 3600;
/// How many task ids a one-line reason lists before saying "and N more".
const REASON_IDS: usize = 10;

/// One task's report files as read from the store; `None` for a file that is absent.
#[derive(Debug, Clone, Default)]
pub struct TaskInput {
    /// The task id: the name of its directory under `<run_id>/tasks/`.
    pub task_id: String,
    /// `summary.json`.
    pub summary: Option<Vec<u8>>,
    /// `timeseries.csv`.
    pub timeseries: Option<Vec<u8>>,
    /// `histograms.hlog`.
    pub hlog: Option<Vec<u8>>,
}

/// The merged report of a run.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merged `summary.json` (task id `merged`, with [`MergeInfo`]).
    pub summary: Summary,
    /// The summed latency histogram (from the intended send time), as encoded in `summary`.
    pub latency: Histogram<u64>,
    /// The summed service-time histogram, as encoded in `summary`.
    pub service: Histogram<u64>,
    /// The merged `timeseries.csv`: one row per second from the planned start.
    pub rows: Vec<SecondRow>,
    /// Per-second latency histograms summed across tasks, as `histograms.hlog` holds them:
    /// encoded, a few KB a second (a decoded one is up to ~180 KB, 600 MB per hour of run).
    pub per_second: Vec<MergedSecond>,
    /// The summaries of the tasks whose report was readable, sorted by task id.
    pub tasks: Vec<Summary>,
}

/// One second of the merged interval log.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSecond {
    /// The second, from the planned start.
    pub second: u64,
    /// The largest latency of the second, µs.
    pub max_us: u64,
    /// The summed histogram, HdrHistogram V2 deflate (as `histograms.hlog` carries it).
    pub encoded: Vec<u8>,
}

impl MergedSecond {
    /// The summed histogram, decoded.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        use hdrhistogram::serialization::Deserializer;
        Deserializer::new()
            .deserialize(&mut &self.encoded[..])
            .map_err(|e| anyhow::anyhow!("merged histogram of second {}: {e:?}", self.second))
    }
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
    Ok(())
}

/// A task's report, decoded; or why it could not be.
struct Decoded {
    task_id: String,
    report: Result<DecodedReport, String>,
}

impl Decoded {
    fn problem(task_id: String, reason: String) -> Self {
        Decoded {
            task_id,
            report: Err(reason),
        }
    }
}

/// A readable report: its summary and rows; its histograms are in the decoding thread's
/// [`Batch`] (slot [`SLOT_LATENCY`], [`SLOT_SERVICE`], or the second), with those of the other
/// tasks of its group.
struct DecodedReport {
    summary: Summary,
    rows: Vec<SecondRow>,
}

/// Parses and decodes one task's files. A task that measured nothing may lack its time series
/// and interval log; any other missing or malformed file makes the whole report unreadable, so
/// the totals and the time series always cover the same tasks.
fn decode_task(
    run_id: &str,
    input: TaskInput,
    decoder: &mut Decoder,
    batch: &mut Batch,
) -> Decoded {
    let task_id = input.task_id.clone();
    let mark = batch.mark();
    match decode_report(run_id, input, decoder, batch) {
        Ok(report) => Decoded {
            task_id,
            report: Ok(report),
        },
        Err(e) => {
            batch.truncate(mark);
            Decoded::problem(task_id, format!("{e:#}"))
        }
    }
}

fn decode_report(
    run_id: &str,
    input: TaskInput,
    decoder: &mut Decoder,
    batch: &mut Batch,
) -> anyhow::Result<DecodedReport> {
    let summary_bytes = input
        .summary
        .with_context(|| format!("{SUMMARY_FILE} is missing"))?;
    let summary = Summary::from_json(&summary_bytes).with_context(|| SUMMARY_FILE.to_string())?;
    anyhow::ensure!(
        summary.run_id == run_id,
        "{SUMMARY_FILE} belongs to run {:?}, not {run_id:?}",
        summary.run_id
    );
    let measured_nothing = summary.counts.attempted == 0 && summary.counts.acknowledged == 0;
    for (text, slot, what) in [
        (&summary.histograms.latency, SLOT_LATENCY, "latency"),
        (
            &summary.histograms.service_time,
            SLOT_SERVICE,
            "service-time",
        ),
    ] {
        if text.trim().is_empty() && measured_nothing {
            continue;
        }
        decoder
            .decode_base64(text, slot, batch)
            .with_context(|| format!("{what} histogram in {SUMMARY_FILE}"))?;
    }
    let rows = match input.timeseries {
        Some(bytes) => parse_timeseries(&bytes)?,
        None if measured_nothing => Vec::new(),
        None => anyhow::bail!("{TIMESERIES_FILE} is missing"),
    };
    if let Some(row) = rows.iter().find(|r| r.second > MAX_SECOND) {
        anyhow::bail!(
            "{TIMESERIES_FILE} has a row for second {}, beyond any run",
            row.second
        );
    }
    match input.hlog {
        Some(bytes) => decode_hlog(&bytes, decoder, batch)?,
        None if measured_nothing => {}
        None => anyhow::bail!("{HLOG_FILE} is missing"),
    }
    Ok(DecodedReport { summary, rows })
}

/// Reads `histograms.hlog` with the report's one reader, decoding each second into the batch
/// (one slot per second, see [`hdr`] for why the merge has its own decoder).
fn decode_hlog(bytes: &[u8], decoder: &mut Decoder, batch: &mut Batch) -> anyhow::Result<()> {
    read_hlog(bytes, |second, text| {
        anyhow::ensure!(
            second <= MAX_SECOND,
            "{HLOG_FILE} has a histogram for second {second}, beyond any run"
        );
        decoder
            .decode_base64(text, second as u32, batch)
            .with_context(|| format!("{HLOG_FILE}, second {second}"))
    })
}

/// Sums of one second across tasks.
#[derive(Debug, Default, Clone)]
struct RowSum {
    present: bool,
    target_rate: f64,
    attempted: u64,
    unsent: u64,
    acknowledged: u64,
    failed: u64,
    bytes: u64,
}

/// What is known of one task that reported: its summary, or why its report is unreadable.
struct TaskState {
    task_id: String,
    report: Result<Summary, String>,
}

/// Folds decoded task reports into the merged one.
struct Merger {
    run_id: String,
    tasks: Vec<TaskState>,
    latency: Accumulator,
    service: Accumulator,
    per_second: Vec<Accumulator>,
    rows: Vec<RowSum>,
    counts: Counts,
    bytes: u64,
    errors: BTreeMap<String, BTreeMap<u64, u64>>,
    planned_start: Option<DateTime<Utc>>,
    actual_start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    late_start_ms: u64,
    target_rate: Option<f64>,
    targets: BTreeSet<String>,
    scenario: Option<BTreeMap<String, String>>,
    saturation: Option<Saturation>,
}

impl Merger {
    fn new(run_id: &str) -> Self {
        Merger {
            run_id: run_id.to_string(),
            tasks: Vec::new(),
            latency: Accumulator::default(),
            service: Accumulator::default(),
            per_second: Vec::new(),
            rows: Vec::new(),
            counts: Counts::default(),
            bytes: 0,
            errors: BTreeMap::new(),
            planned_start: None,
            actual_start: None,
            end: None,
            late_start_ms: 0,
            target_rate: None,
            targets: BTreeSet::new(),
            scenario: None,
            saturation: None,
        }
    }

    /// Adds a group of tasks and the histograms of the readable ones, which `batch` holds;
    /// empties both. The histograms are added second by second across the group.
    fn add_group(&mut self, group: &mut Vec<Decoded>, batch: &mut Batch) {
        for task in group.drain(..) {
            self.add(task);
        }
        batch.sort_by_slot();
        for (slot, layout, entries) in batch.histograms() {
            let acc = match slot {
                SLOT_LATENCY => &mut self.latency,
                SLOT_SERVICE => &mut self.service,
                second => {
                    let i = second as usize;
                    if self.per_second.len() <= i {
                        self.per_second.resize_with(i + 1, Accumulator::default);
                    }
                    &mut self.per_second[i]
                }
            };
            acc.add(layout, entries);
        }
        batch.clear();
    }

    /// Adds one task's summary and rows (its histograms are added by [`Merger::add_group`]).
    fn add(&mut self, task: Decoded) {
        let report = match task.report {
            Ok(report) => report,
            Err(reason) => {
                self.tasks.push(TaskState {
                    task_id: task.task_id,
                    report: Err(format!("unreadable report: {reason}")),
                });
                return;
            }
        };
        let s = &report.summary;
        for r in &report.rows {
            let i = r.second as usize;
            if self.rows.len() <= i {
                self.rows.resize(i + 1, RowSum::default());
            }
            let sum = &mut self.rows[i];
            sum.present = true;
            sum.target_rate += r.target_rate;
            sum.attempted += r.attempted;
            sum.unsent += r.unsent;
            sum.acknowledged += r.acknowledged;
            sum.failed += r.failed;
            sum.bytes += r.bytes;
        }
        self.counts.add(&s.counts);
        self.bytes += s.bytes;
        if let Some(t) = &s.saturation {
            // Times summed across tasks; the first second any task fell behind.
            let m = self.saturation.get_or_insert_with(Saturation::default);
            m.blocked_on_target_s += t.blocked_on_target_s;
            m.behind_schedule_s += t.behind_schedule_s;
            m.behind_from_second = match (m.behind_from_second, t.behind_from_second) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for (code, points) in &s.errors_timeline {
            let merged = self.errors.entry(code.clone()).or_default();
            for &(second, events) in points {
                *merged.entry(second).or_default() += events;
            }
        }
        self.planned_start = min_time(self.planned_start, Some(s.planned_start));
        self.actual_start = min_time(self.actual_start, s.actual_start);
        self.end = self.end.max(s.end);
        self.late_start_ms = self.late_start_ms.max(s.late_start_ms);
        if let Some(rate) = s.target_rate {
            *self.target_rate.get_or_insert(0.0) += rate;
        }
        if !s.target.is_empty() {
            self.targets.insert(s.target.clone());
        }
        // The merged scenario shows what every task had in common (not FLEETLOAD_TASK_ID).
        match &mut self.scenario {
            None => self.scenario = Some(s.scenario.clone()),
            Some(common) => common.retain(|k, v| s.scenario.get(k) == Some(v)),
        }
        self.tasks.push(TaskState {
            task_id: task.task_id,
            report: Ok(report.summary),
        });
    }

    fn finish(mut self, expected: Option<Vec<String>>, expected_count: Option<u64>) -> Merged {
        self.tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let reported: BTreeSet<&str> = self.tasks.iter().map(|t| t.task_id.as_str()).collect();

        // Which tasks should have reported, and which did not. Expected tasks that never got an
        // id (a count above the list) are named by placeholders.
        let placeholders = |n: u64| (1..=n).map(|k| format!("missing-{k}")).collect::<Vec<_>>();
        let (tasks_expected, tasks_missing, reported_of_expected) =
            match (&expected, expected_count) {
                (Some(ids), count) => {
                    let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                    let mut missing: Vec<String> = ids
                        .iter()
                        .filter(|id| !reported.contains(*id))
                        .map(|id| id.to_string())
                        .collect();
                    let found = (ids.len() - missing.len()) as u64;
                    let unnamed = count.unwrap_or(0).saturating_sub(ids.len() as u64);
                    missing.extend(placeholders(unnamed));
                    (ids.len() as u64 + unnamed, missing, found)
                }
                (None, Some(count)) => {
                    let found = (reported.len() as u64).min(count);
                    (count, placeholders(count - found), found)
                }
                (None, None) => (reported.len() as u64, Vec::new(), reported.len() as u64),
            };
        let coverage = if tasks_expected == 0 {
            0.0
        } else {
            reported_of_expected as f64 / tasks_expected as f64
        };

        let mut tasks_not_completed = Vec::new();
        let mut task_rows = Vec::new();
        for t in &self.tasks {
            match &t.report {
                Ok(s) => {
                    if s.outcome != Outcome::Completed {
                        tasks_not_completed.push(TaskProblem {
                            task_id: t.task_id.clone(),
                            outcome: s.outcome.clone(),
                        });
                    }
                    task_rows.push(TaskRow {
                        task_id: t.task_id.clone(),
                        outcome: s.outcome.status().to_string(),
                        acknowledged: s.counts.acknowledged,
                        failed: s.counts.failed,
                        achieved_rate: s.achieved_rate,
                        p99_ms: s.latency_ms.p99,
                        max_ms: s.latency_ms.max,
                    });
                }
                Err(reason) => {
                    let outcome = Outcome::Failed {
                        reason: reason.clone(),
                    };
                    tasks_not_completed.push(TaskProblem {
                        task_id: t.task_id.clone(),
                        outcome: outcome.clone(),
                    });
                    task_rows.push(TaskRow {
                        task_id: t.task_id.clone(),
                        outcome: outcome.status().to_string(),
                        acknowledged: 0,
                        failed: 0,
                        achieved_rate: 0.0,
                        p99_ms: 0.0,
                        max_ms: 0.0,
                    });
                }
            }
        }

        let outcome = if self.tasks.is_empty() {
            Outcome::Failed {
                reason: if tasks_expected == 0 {
                    "no task reported".to_string()
                } else {
                    format!("none of the {tasks_expected} expected tasks reported")
                },
            }
        } else if tasks_missing.is_empty() && tasks_not_completed.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Failed {
                reason: failure_reason(tasks_expected, &tasks_missing, &tasks_not_completed),
            }
        };

        // Per-second rows, with exact percentiles from the summed per-second counters. Each
        // second is encoded straight from its accumulator, which is dropped at once: no
        // histogram is built per second, and what is kept is what the interval log holds.
        let mut encoder = Encoder::default();
        let mut per_second = Vec::new();
        let mut stats = Vec::new();
        for (s, acc) in std::mem::take(&mut self.per_second).into_iter().enumerate() {
            let mut encoded = Vec::new();
            if let Some(st) = encoder.encode(&acc, &mut encoded) {
                encoded.shrink_to_fit();
                stats.push((s, st));
                per_second.push(MergedSecond {
                    second: s as u64,
                    max_us: st.max_us,
                    encoded,
                });
            }
        }
        let seconds = self
            .rows
            .len()
            .max(per_second.last().map_or(0, |m| m.second as usize + 1));
        let mut rows: Vec<SecondRow> = (0..seconds)
            .map(|s| {
                let sum = self.rows.get(s).cloned().unwrap_or_default();
                SecondRow {
                    second: s as u64,
                    target_rate: sum.target_rate,
                    attempted: sum.attempted,
                    acknowledged: sum.acknowledged,
                    failed: sum.failed,
                    bytes: sum.bytes,
                    unsent: sum.unsent,
                    ..SecondRow::default()
                }
            })
            .collect();
        let ms = |us: u64| us as f64 / 1000.0;
        for (s, st) in stats {
            let row = &mut rows[s];
            row.p50_ms = ms(st.p50_us);
            row.p99_ms = ms(st.p99_us);
            row.max_ms = ms(st.max_us);
        }

        let latency = self.latency.to_histogram(true);
        let service = self.service.to_histogram(true);
        let duration_s = match (self.actual_start, self.end) {
            (Some(start), Some(end)) if end > start => {
                (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6
            }
            _ => 0.0,
        };
        let achieved_rate = if duration_s > 0.0 {
            self.counts.acknowledged as f64 / duration_s
        } else {
            0.0
        };
        let summary = Summary {
            schema_version: SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            task_id: MERGED_TASK_ID.to_string(),
            target: self.targets.iter().cloned().collect::<Vec<_>>().join(","),
            scenario: self.scenario.take().unwrap_or_default(),
            fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
            planned_start: self.planned_start.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            actual_start: self.actual_start,
            end: self.end,
            late_start_ms: self.late_start_ms,
            duration_s,
            outcome,
            counts: self.counts.clone(),
            bytes: self.bytes,
            target_rate: self.target_rate,
            achieved_rate,
            latency_ms: Percentiles::of(&latency),
            service_time_ms: Percentiles::of(&service),
            histograms: Histograms {
                unit: "microseconds".to_string(),
                latency: encode_histogram(&latency),
                service_time: encode_histogram(&service),
            },
            errors_timeline: std::mem::take(&mut self.errors)
                .into_iter()
                .map(|(code, points)| (code, points.into_iter().collect()))
                .collect(),
            saturation: self.saturation.take().map(|mut s| {
                s.blocked_on_target_s = (s.blocked_on_target_s * 1e3).round() / 1e3;
                s.behind_schedule_s = (s.behind_schedule_s * 1e3).round() / 1e3;
                s.cause = s.behind_from_second.map(|_| {
                    Saturation::cause_of(s.blocked_on_target_s, s.behind_schedule_s).to_string()
                });
                s
            }),
            merge: Some(MergeInfo {
                tasks_expected,
                tasks_reported: self.tasks.len() as u64,
                coverage,
                tasks_missing,
                tasks_not_completed,
                tasks: task_rows,
            }),
        };
        Merged {
            summary,
            latency,
            service,
            rows,
            per_second,
            tasks: self
                .tasks
                .into_iter()
                .filter_map(|t| t.report.ok())
                .collect(),
        }
    }
}

fn min_time(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One line saying which tasks are missing or did not complete, by id.
fn failure_reason(expected: u64, missing: &[String], not_completed: &[TaskProblem]) -> String {
    let ids = |ids: Vec<String>| {
        let n = ids.len();
        let mut text = ids
            .into_iter()
            .take(REASON_IDS)
            .collect::<Vec<_>>()
            .join(", ");
        if n > REASON_IDS {
            text.push_str(&format!(" and {} more", n - REASON_IDS));
        }
        text
    };
    let of_status = |status: &str| -> Vec<String> {
        not_completed
            .iter()
            .filter(|p| p.outcome.status() == status)
            .map(|p| match &p.outcome {
                Outcome::Interrupted { signal } => format!("{} ({signal})", p.task_id),
                Outcome::Failed { reason } => format!("{} ({reason})", p.task_id),
                Outcome::Completed => p.task_id.clone(),
            })
            .collect()
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing: {}", ids(missing.to_vec())));
    }
    for status in ["failed", "interrupted"] {
        let list = of_status(status);
        if !list.is_empty() {
            parts.push(format!("{status}: {}", ids(list)));
        }
    }
    format!(
        "{} of {expected} tasks did not complete; {}",
        missing.len() + not_completed.len(),
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
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
            merge: None,
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
