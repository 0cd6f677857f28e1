//! The report store and the merge against S3, on the moto server.
//!
//! Needs `FLEETLOAD_TEST_MOTO_URL` (ci/test.sh starts a moto server and sets it); fails when it
//! is not set.

mod common;

use std::process::Command;

use common::{aws_env, moto_bucket, synthetic_task, write_task};
use fleetload::model::report::{Outcome, Summary};
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
