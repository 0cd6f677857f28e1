//! Merge benchmark: 1,000 task reports of a 300-second run, written to a temporary directory
//! through the local report store, then `merge_run` + `write_merged` timed end to end.
//!
//! `cargo bench --bench merge` runs the full size (the budget is 2 CPU-seconds); under `cargo
//! test` (no `--bench` argument) it runs a 20-task, 20-second smoke version so the test suite
//! stays quick.
//!
//! With `FLEETLOAD_BENCH_DIR` set, the reports are generated there once and reused by later
//! runs (`bench/merge.sh` merges the same files with two builds of the merge). Besides the
//! times, the benchmark prints the merge's peak resident memory: the high-water mark is reset
//! (`/proc/self/clear_refs`) after the set-up, so it is the merge's own, not the generator's.
//! `FLEETLOAD_BENCH_TASKS` and `FLEETLOAD_BENCH_SECONDS` change the size of the full run
//! (`bench/merge-memory.sh` merges 300 s and 3,600 s runs side by side).
//!
//! Each task has 300 per-second histograms of ~1,000 events with a realistic shape (a few ms,
//! a 1 % tail to 500 ms, rare outliers to 3 s), so each per-second encoding holds hundreds of
//! non-zero buckets. The file contents come from a pool of 25 distinct synthetic tasks (each
//! task still has its own id and its own files); generating 300,000 distinct histograms would
//! make the set-up, not the merge, the slow part.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fleetload::launcher::merge::{merge_run, write_merged};
use fleetload::model::report::{
    encode_histogram, new_histogram, timeseries_csv, write_hlog, Counts, Histograms, Outcome,
    Percentiles, SecondRow, Summary, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, TIMESERIES_FILE,
};
use fleetload::store::{task_dir, ReportStore};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Seconds of the benchmarked run.
const SECONDS: u64 = 300;
/// Seconds of the smoke run under `cargo test`.
const SMOKE_SECONDS: u64 = 20;
const EVENTS_PER_SECOND: u64 = 1000;
/// Distinct synthetic tasks the reports are drawn from (2 for the smoke run).
const POOL: usize = 25;
const RUN: &str = "bench-run";

struct Files {
    summary: Summary,
    timeseries: Vec<u8>,
    hlog: Vec<u8>,
}

fn latency_us(rng: &mut SmallRng) -> u64 {
    let u: f64 = rng.gen_range(1e-9..1.0);
    let roll: f64 = rng.gen();
    if roll < 0.0005 {
        rng.gen_range(1_000_000..3_000_000)
    } else if roll < 0.01 {
        rng.gen_range(50_000..500_000)
    } else {
        // 1.5 ms plus an exponential with a 3 ms mean.
        1_500 + (-u.ln() * 3_000.0) as u64
    }
}

fn synthetic_task(seed: u64, planned: DateTime<Utc>, seconds: u64) -> Files {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut latency = new_histogram();
    let mut service = new_histogram();
    let mut per_second: Vec<(u64, Histogram<u64>)> = Vec::new();
    let mut rows = Vec::new();
    let mut counts = Counts::default();
    let mut throttled_timeline = Vec::new();
    for second in 0..seconds {
        let mut h = new_histogram();
        let throttled = u64::from(rng.gen_range(0..100) == 0) * rng.gen_range(1..20);
        let acknowledged = EVENTS_PER_SECOND - throttled;
        for _ in 0..acknowledged {
            let v = latency_us(&mut rng);
            h.record(v).unwrap();
            latency.record(v).unwrap();
            service.record((v * 4 / 5).max(1)).unwrap();
        }
        let p = Percentiles::of(&h);
        rows.push(SecondRow {
            second,
            target_rate: EVENTS_PER_SECOND as f64,
            attempted: EVENTS_PER_SECOND,
            acknowledged,
            failed: throttled,
            bytes: acknowledged * 110,
            p50_ms: p.p50,
            p99_ms: p.p99,
            max_ms: p.max,
            unsent: 0,
        });
        if throttled > 0 {
            throttled_timeline.push((second, throttled));
        }
        counts.attempted += EVENTS_PER_SECOND;
        counts.acknowledged += acknowledged;
        counts.failed += throttled;
        per_second.push((second, h));
    }
    if counts.failed > 0 {
        counts.failed_by_code.insert(
            "ProvisionedThroughputExceededException".to_string(),
            counts.failed,
        );
    }
    let mut errors_timeline = BTreeMap::new();
    errors_timeline.insert(
        "ProvisionedThroughputExceededException".to_string(),
        throttled_timeline,
    );
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        run_id: RUN.to_string(),
        task_id: String::new(),
        target: "kinesis".to_string(),
        scenario: [("FLEETLOAD_TARGET".to_string(), "kinesis".to_string())].into(),
        fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
        planned_start: planned,
        actual_start: Some(planned),
        end: Some(planned + chrono::Duration::seconds(seconds as i64)),
        late_start_ms: 0,
        duration_s: seconds as f64,
        outcome: Outcome::Completed,
        bytes: counts.acknowledged * 110,
        achieved_rate: counts.acknowledged as f64 / seconds as f64,
        counts,
        target_rate: Some(EVENTS_PER_SECOND as f64),
        latency_ms: Percentiles::of(&latency),
        service_time_ms: Percentiles::of(&service),
        histograms: Histograms {
            unit: "microseconds".to_string(),
            latency: encode_histogram(&latency),
            service_time: encode_histogram(&service),
        },
        errors_timeline,
        saturation: None,
        by_shard: Default::default(),
        kinesis: None,
        cost: None,
        merge: None,
        end_to_end: Default::default(),
        live: None,
        aborted: None,
    };
    Files {
        summary,
        timeseries: timeseries_csv(&rows),
        hlog: write_hlog(planned, &per_second),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size = |name: &str, default: u64| -> u64 {
        std::env::var(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
    };
    let (tasks, seconds, pool_size) = if full {
        (
            size("FLEETLOAD_BENCH_TASKS", 1000) as usize,
            size("FLEETLOAD_BENCH_SECONDS", SECONDS),
            POOL,
        )
    } else {
        (20, SMOKE_SECONDS, 2)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let temp;
    let dir = match std::env::var_os("FLEETLOAD_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_path_buf()
        }
    };
    // Reports of this size already generated there are merged again as they are.
    let marker = dir.join(format!("{RUN}-{tasks}x{seconds}.complete"));
    let reuse = marker.exists();
    let store = ReportStore::Local(dir.clone());
    let planned = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);

    let setup = Instant::now();
    let pool: Vec<Files> = (0..if reuse { 0 } else { pool_size })
        .map(|i| synthetic_task(i as u64, planned, seconds))
        .collect();
    // The marker holds the number of events the reports acknowledged.
    let mut expected_acknowledged: u64 = match reuse {
        true => std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        false => 0,
    };
    runtime.block_on(async {
        if reuse {
            return;
        }
        for i in 0..tasks {
            let files = &pool[i % pool.len()];
            let task_id = format!("task-{i:04}");
            let mut summary = files.summary.clone();
            summary.task_id = task_id.clone();
            expected_acknowledged += summary.counts.acknowledged;
            let dir = task_dir(RUN, &task_id);
            store
                .put(
                    &format!("{dir}/{SUMMARY_FILE}"),
                    summary.to_json(),
                    "application/json",
                )
                .await
                .unwrap();
            store
                .put(
                    &format!("{dir}/{TIMESERIES_FILE}"),
                    files.timeseries.clone(),
                    "text/csv",
                )
                .await
                .unwrap();
            store
                .put(
                    &format!("{dir}/{HLOG_FILE}"),
                    files.hlog.clone(),
                    "text/plain",
                )
                .await
                .unwrap();
        }
    });
    if !reuse {
        std::fs::write(&marker, expected_acknowledged.to_string()).unwrap();
    }
    let hlog_kb = std::fs::metadata(dir.join(task_dir(RUN, "task-0000")).join(HLOG_FILE))
        .map_or(0, |m| m.len() / 1024);
    eprintln!(
        "set-up: {tasks} task reports ({seconds} s each, hlog ~{hlog_kb} KiB) {} in {:.1} s",
        if reuse { "reused" } else { "written" },
        setup.elapsed().as_secs_f64()
    );
    drop(pool);
    reset_peak_rss();
    let rss_before = rss_kib("VmRSS");

    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let merged = runtime
        .block_on(merge_run(&store, RUN, None, Some(tasks as u64)))
        .unwrap();
    let merged_at = start.elapsed();
    runtime
        .block_on(write_merged(&store, RUN, &merged))
        .unwrap();
    let total = start.elapsed();
    let cpu_after = cpu_seconds();
    let (user, system) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let peak = rss_kib("VmHWM");

    assert_eq!(merged.summary.outcome, Outcome::Completed);
    assert_eq!(merged.summary.counts.acknowledged, expected_acknowledged);
    assert_eq!(merged.summary.latency_ms.count, expected_acknowledged);
    assert_eq!(merged.rows.len() as u64, seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "merge of {tasks} task reports × {seconds} s: {:.3} s end to end \
         (merge_run {:.3} s, write_merged {:.3} s; CPU {user:.3} s user + {system:.3} s system \
         on {cores} cores); \
         merged p99 {} ms{}",
        total.as_secs_f64(),
        merged_at.as_secs_f64(),
        (total - merged_at).as_secs_f64(),
        merged.summary.latency_ms.p99,
        if full {
            ""
        } else {
            " (smoke size; `cargo bench --bench merge` runs 1,000 tasks)"
        }
    );
    let mib =
        |kib: Option<u64>| kib.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "merge peak RSS {} MiB (at its start {} MiB)",
        mib(peak),
        mib(rss_before)
    );
    // One line for scripts (bench/merge.sh).
    println!(
        "merge-result tasks={tasks} seconds={seconds} cpu_s={:.3} wall_s={:.3} \
         peak_rss_kib={} start_rss_kib={}",
        user + system,
        total.as_secs_f64(),
        peak.unwrap_or(0),
        rss_before.unwrap_or(0)
    );
}

/// Resets this process's peak resident set (VmHWM) to its current size, where Linux allows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", b"5");
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`), where there is one.
fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user, system) this process has used, in seconds: on a busy machine the wall
/// time says little, the CPU time divided by the cores says what an idle one would take.
fn cpu_seconds() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage of this process");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    (secs(usage.user_time()), secs(usage.system_time()))
}
