//! `FLEETLOAD_KEY_DISTRIBUTION` end to end: the worker produces to librdkafka's mock cluster,
//! kcat reads the topic back (an independent client), and the keys that arrived have the shares
//! the distribution promises. A bad value stops the worker with exit 2, naming the variable.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::{env, kafka_env, run_worker, KAFKA_TASK};
use fleetload::model::report::Summary;

/// Produces 20,000 sensor readings over 1,000 keys with `distribution` into a fresh mock
/// cluster, and returns how many messages kcat read back per key number (the `_<n>` of
/// `sensorId`, which is also the message key), with the report's acknowledged count.
fn produce_and_read_back(distribution: &str) -> (HashMap<u64, u64>, u64) {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("events", 4, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = run_worker(
        &kafka_env(
            &servers,
            "keys-run",
            dir.path(),
            &[
                ("FLEETLOAD_RATE", "10000"),
                ("FLEETLOAD_DURATION", "2s"),
                ("FLEETLOAD_KEYS", "1000"),
                ("FLEETLOAD_SEED", "17"),
                ("FLEETLOAD_KEY_DISTRIBUTION", distribution),
            ],
        ),
        Duration::from_secs(90),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir
        .path()
        .join("keys-run/tasks")
        .join(KAFKA_TASK)
        .join("summary.json");
    let s = Summary::from_json(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(s.counts.acknowledged, 20_000, "{:?}", s.counts);
    assert_eq!(
        s.scenario
            .get("FLEETLOAD_KEY_DISTRIBUTION")
            .map(String::as_str),
        Some(distribution)
    );

    let read = Command::new("kcat")
        .args(["-C", "-b", &servers, "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .output()
        .expect("kcat is needed to read Kafka back independently: run the tests through ci/test.sh, which installs it");
    assert!(
        read.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let mut per_key: HashMap<u64, u64> = HashMap::new();
    let mut total = 0;
    for line in String::from_utf8(read.stdout).unwrap().lines() {
        let (key, value) = line.split_once('\t').expect("key<TAB>value");
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(v["sensorId"].as_str(), Some(key));
        let n: u64 = key.rsplit_once('_').unwrap().1.parse().unwrap();
        assert!((1..=1000).contains(&n), "{key}");
        *per_key.entry(n).or_default() += 1;
        total += 1;
    }
    assert_eq!(
        total, s.counts.acknowledged,
        "messages in the topic = acknowledged"
    );
    (per_key, total)
}

#[test]
fn hot_90_10_puts_90_percent_of_the_events_on_10_percent_of_the_keys() {
    let (per_key, total) = produce_and_read_back("hot:90%:10%");
    // The hot keys are the first tenth of the key space: the 100 most frequent keys.
    let mut counts: Vec<u64> = per_key.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = counts.iter().take(100).sum();
    let share = top as f64 / total as f64;
    assert!(
        (share - 0.90).abs() <= 0.02,
        "the 100 most frequent of 1,000 keys carry {:.2} % of the events",
        share * 100.0
    );
    let first_tenth: u64 = (1..=100).filter_map(|k| per_key.get(&k)).sum();
    assert_eq!(first_tenth, top, "the hot keys are keys 1-100");
    // The cold keys still occur.
    assert!(per_key.len() > 900, "{} keys seen", per_key.len());
}

#[test]
fn zipf_rank_frequency_slope_is_within_10_percent_of_s() {
    let s = 1.2;
    let (per_key, _) = produce_and_read_back("zipf:1.2");
    // Rank the keys by how often they arrived; fit log(frequency) = c - slope · log(rank)
    // over the 50 most frequent, where every rank still has dozens of events.
    let mut counts: Vec<u64> = per_key.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let points: Vec<(f64, f64)> = counts
        .iter()
        .take(50)
        .enumerate()
        .map(|(i, &n)| (((i + 1) as f64).ln(), (n as f64).ln()))
        .collect();
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let slope = -sxy / sxx;
    assert!(
        (slope - s).abs() <= 0.1 * s,
        "rank-frequency slope {slope:.3}, expected {s} ± 10 %"
    );
    // Rank 1 is key 1.
    let first = per_key.iter().max_by_key(|(_, n)| **n).unwrap().0;
    assert_eq!(*first, 1);
}

#[test]
fn a_bad_key_distribution_exits_2_naming_the_variable() {
    let out = run_worker(
        &env(&[
            ("FLEETLOAD_TARGET", "null"),
            ("FLEETLOAD_KEY_DISTRIBUTION", "zipf:0"),
            ("FLEETLOAD_DURATION", "1s"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FLEETLOAD_KEY_DISTRIBUTION=\"zipf:0\" is not valid")
            && stderr.contains("accepted: uniform, zipf:S"),
        "{stderr}"
    );
}
