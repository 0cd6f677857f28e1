//! The report store and the merge against S3, on the moto server.
//!
//! Needs `FLEETLOAD_TEST_MOTO_URL` (ci/test.sh starts a moto server and sets it); fails when it
//! is not set.

mod common;

use std::process::Command;

use common::{aws_env, moto_bucket, synthetic_task, write_task};
use fleetload::launcher::merge::{merge_run, merge_run_with, write_merged, MergeLimits};
use fleetload::model::report::{Outcome, Summary, HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE};
use fleetload::store::{merged_dir, ReportStore};
use futures::StreamExt;

/// More keys than one ListObjectsV2 page (1,000) holds.
const OBJECTS: usize = 1_100;

#[tokio::test]
async fn put_get_list_paginates_beyond_one_page() {
    let (store, bucket) = moto_bucket("reports/prefix").await;
    assert_eq!(store.get("r/tasks/none/summary.json").await.unwrap(), None);
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| format!("r/tasks/task-{i:04}/summary.json"))
        .collect();
    let puts = futures::stream::iter(keys.iter().enumerate())
        .map(|(i, key)| {
            let store = &store;
            async move {
                store
                    .put(
                        key,
                        format!("{{\"n\":{i}}}").into_bytes(),
                        "application/json",
                    )
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for p in puts {
        p.unwrap();
    }
    store
        .put("r/merged/summary.json", b"{}".to_vec(), "application/json")
        .await
        .unwrap();
    store
        .put(
            "other-run/tasks/x/summary.json",
            b"{}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();

    let listed = store.list("r/tasks/").await.unwrap();
    assert_eq!(listed.len(), OBJECTS, "every page of the listing is read");
    assert_eq!(
        listed, keys,
        "keys are relative to the store's prefix, sorted"
    );
    assert_eq!(store.list("r/").await.unwrap().len(), OBJECTS + 1);
    assert_eq!(
        store.get("r/tasks/task-0042/summary.json").await.unwrap(),
        Some(b"{\"n\":42}".to_vec())
    );
    assert_eq!(
        store.display_url("r/merged/summary.json"),
        format!("s3://{bucket}/reports/prefix/r/merged/summary.json")
    );
}

#[tokio::test]
async fn launcher_merges_from_s3_end_to_end() {
    let (store, bucket) = moto_bucket("load-tests").await;
    let run = "s3-run";
    let tasks = [
        synthetic_task(run, "t1", &[1000, 2000, 3000], 0, 2, Outcome::Completed),
        synthetic_task(run, "t2", &[4000, 250_000], 1, 2, Outcome::Completed),
    ];
    for t in &tasks {
        write_task(&store, t).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let location = format!("s3://{bucket}/load-tests/{run}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(aws_env());
    let out = cmd
        .args([
            "merge",
            &location,
            "--expected-tasks",
            "2",
            "--threshold",
            "p99<=300ms",
            "--threshold",
            "failed==1",
            "--junit",
            junit.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!(
            "s3://{bucket}/load-tests/{run}/merged/summary.json"
        )),
        "{shown}"
    );
    let merged = store
        .get(&format!("{run}/merged/summary.json"))
        .await
        .unwrap()
        .expect("merged/summary.json on S3");
    let merged = Summary::from_json(&merged).unwrap();
    assert_eq!(merged.counts.acknowledged, 5);
    assert_eq!(merged.latency_histogram().unwrap().len(), 5);
    assert_eq!(merged.merge.unwrap().tasks_reported, 2);
    for file in ["timeseries.csv", "histograms.hlog"] {
        assert!(store
            .get(&format!("{run}/merged/{file}"))
            .await
            .unwrap()
            .is_some());
    }
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("fleet coverage: 2 of 2 tasks reported"));

    // A bucket that does not exist is a configuration error (exit 2), named in the message.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .envs(aws_env())
        .args(["merge", "s3://no-such-bucket-fleetload/x/run"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("s3://no-such-bucket-fleetload/x/run/tasks/"),
        "{shown}"
    );
}

#[tokio::test]
async fn ranged_reads_return_the_part_asked_and_nothing_past_the_end() {
    let (store, _) = moto_bucket("ranges").await;
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    store
        .put("r/tasks/t/histograms.hlog", bytes.clone(), "text/plain")
        .await
        .unwrap();
    let key = "r/tasks/t/histograms.hlog";
    let get = |offset: u64, len: usize| {
        let store = &store;
        async move { store.get_range(key, offset, len).await.unwrap() }
    };
    assert_eq!(get(0, 100).await, Some(bytes[..100].to_vec()));
    assert_eq!(get(4321, 500).await, Some(bytes[4321..4821].to_vec()));
    // At the end: fewer bytes than asked, then none.
    assert_eq!(get(4900, 500).await, Some(bytes[4900..].to_vec()));
    assert_eq!(get(5000, 10).await, Some(Vec::new()));
    assert_eq!(get(9000, 10).await, Some(Vec::new()));
    assert_eq!(
        store
            .get_range("r/tasks/none/histograms.hlog", 0, 10)
            .await
            .unwrap(),
        None
    );
    // The same from a directory.
    let dir = tempfile::tempdir().unwrap();
    let local = ReportStore::Local(dir.path().to_path_buf());
    local.put(key, bytes.clone(), "text/plain").await.unwrap();
    for (offset, len) in [(0, 100), (4321, 500), (4900, 500), (5000, 10), (9000, 10)] {
        assert_eq!(
            local.get_range(key, offset, len).await.unwrap(),
            get(offset, len).await,
            "{offset}+{len}"
        );
    }
    assert_eq!(local.get_range("r/none", 0, 10).await.unwrap(), None);
}

/// Every file `write_merged` wrote for `run`, by name.
async fn merged_files(store: &ReportStore, run: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    for name in [SUMMARY_FILE, TIMESERIES_FILE, HLOG_FILE] {
        let key = format!("{}/{name}", merged_dir(run));
        files.push((name, store.get(&key).await.unwrap().expect("written")));
    }
    files
}

#[tokio::test]
async fn a_merge_from_s3_read_a_window_at_a_time_writes_what_a_local_merge_writes() {
    let (s3, _) = moto_bucket("windows").await;
    let dir = tempfile::tempdir().unwrap();
    let local = ReportStore::Local(dir.path().to_path_buf());
    let run = "windowed-run";
    let values: Vec<u64> = (0..900).map(|i| 500 + i * 113).collect();
    for (id, from) in [("a", 0), ("b", 300), ("c", 600)] {
        let t = synthetic_task(run, id, &values[from..], 2, 120, Outcome::Completed);
        write_task(&s3, &t).await;
        write_task(&local, &t).await;
    }
    // A few hundred bytes of each log at a time: dozens of ranged reads a task.
    let limits = MergeLimits { window_bytes: 900 };
    let from_s3 = merge_run_with(&s3, run, None, Some(3), limits)
        .await
        .unwrap();
    let from_disk = merge_run(&local, run, None, Some(3)).await.unwrap();
    assert_eq!(from_s3.summary.outcome, Outcome::Completed);
    assert_eq!(from_s3.summary.counts.acknowledged, 900 + 600 + 300);
    assert_eq!(from_s3.per_second.len(), 120);
    write_merged(&s3, run, &from_s3).await.unwrap();
    write_merged(&local, run, &from_disk).await.unwrap();
    assert_eq!(
        merged_files(&s3, run).await,
        merged_files(&local, run).await
    );
}
