//! `launcher run` with the local backend, through the binary, against real peers: librdkafka's
//! mock cluster, the embedded broker, a moto server for Kinesis, and Ctrl-C; and end to end,
//! with consumer tasks (`--consumers`) reading back what the producers wrote.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fleetload::model::report::Summary;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

fn launcher(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(args)
        .current_dir(cwd)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "launcher still running after {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_id_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run id: ").map(str::to_string))
        .expect("the launcher prints the run id")
}

/// The merged summary and every task summary of a local run.
fn reports(dir: &Path, run: &str) -> (Summary, Vec<Summary>) {
    let run_dir = dir.join(run);
    let merged = Summary::from_json(
        &std::fs::read(run_dir.join("merged/summary.json")).expect("merged/summary.json"),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for entry in std::fs::read_dir(run_dir.join("tasks")).unwrap() {
        let p = entry.unwrap().path().join("summary.json");
        tasks.push(
            Summary::from_json(
                &std::fs::read(&p).unwrap_or_else(|_| panic!("{} missing", p.display())),
            )
            .unwrap(),
        );
    }
    tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    (merged, tasks)
}

fn assert_merge_adds_up(merged: &Summary, tasks: &[Summary]) {
    let sum = |f: fn(&Summary) -> u64| tasks.iter().map(f).sum::<u64>();
    assert_eq!(merged.counts.attempted, sum(|s| s.counts.attempted));
    assert_eq!(merged.counts.acknowledged, sum(|s| s.counts.acknowledged));
    assert_eq!(merged.counts.failed, sum(|s| s.counts.failed));
    assert_eq!(merged.bytes, sum(|s| s.bytes));
    assert_eq!(
        merged.latency_histogram().unwrap().len(),
        merged.counts.acknowledged
    );
    let mut all = fleetload::model::report::new_histogram();
    for t in tasks {
        all.add(t.latency_histogram().unwrap()).unwrap();
    }
    assert_eq!(
        merged.latency_histogram().unwrap(),
        all,
        "the merged histogram is the sum of the tasks'"
    );
}

#[test]
fn four_local_tasks_against_the_mock_cluster_merge_to_what_the_topic_holds() {
    let mock = rdkafka::mocking::MockCluster::new(3).unwrap();
    mock.create_topic("orders", 6, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS={servers}");
    let child = launcher(
        &[
            "run",
            "--tasks",
            "4",
            "--target",
            "kafka",
            "--topic",
            "orders",
            "-e",
            &kafka,
            "--rate",
            "500",
            "--duration",
            "3s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
            "--threshold",
            "error_rate<1%",
            "--threshold",
            "rate>=1900/s",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("reports"), &run);
    assert_eq!(tasks.len(), 4);
    assert_merge_adds_up(&merged, &tasks);
    assert_eq!(merged.counts.acknowledged, 6000);
    let info = merged.merge.as_ref().unwrap();
    assert_eq!((info.tasks_expected, info.tasks_reported), (4, 4));
    // Every task started at the same planned instant.
    assert!(tasks
        .iter()
        .all(|t| t.planned_start == tasks[0].planned_start));
    // What the topic holds, read by an independent client.
    let consumed = Command::new("kcat")
        .args([
            "-C",
            "-b",
            &servers,
            "-t",
            "orders",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ])
        .output()
        .expect("kcat is needed: run the tests through ci/test.sh, which installs it");
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout).lines().count() as u64,
        merged.counts.acknowledged
    );
    // Logs are kept per task in the run's directory; the launcher's screen shows the fleet.
    for i in 1..=4 {
        let log = std::fs::read_to_string(
            dir.path()
                .join(format!("reports/{run}/logs/local-0{i}.log")),
        )
        .unwrap();
        assert!(log.contains("report stored"), "{log}");
    }
    let screen = text(&out);
    assert!(
        !screen.contains("report stored"),
        "worker logs leaked onto the launcher's screen:\n{screen}"
    );
    assert!(screen.contains("4 of 4 reported"), "{screen}");
}

#[test]
fn the_quickstart_runs_offline_on_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--duration",
                "2s",
                "--start-delay",
                "1s",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("fleetload-runs"), &run);
    assert_merge_adds_up(&merged, &tasks);
    assert_eq!(merged.target, "kafka");
    assert_eq!(
        merged.counts.acknowledged,
        2 * 2 * 1000,
        "{:?}",
        merged.counts
    );
    assert!(text(&out).contains("embedded broker"), "{}", text(&out));
}

/// A moto server of its own that answers one request at a time: moto's Kinesis appends to a
/// shard without a lock, so concurrent PutRecords from several tasks can lose records there.
fn serial_moto() -> (Child, String) {
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs moto",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = "import sys\nfrom werkzeug.serving import run_simple\nfrom moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\nrun_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";
    let child = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the serial moto server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

#[test]
fn four_local_tasks_against_moto_kinesis_merge_to_what_the_stream_holds() {
    let (mut moto, url) = serial_moto();
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").unwrap();
    let boto = |script: &str, args: &[&str]| {
        let out = Command::new(&python).arg("-c").arg(format!("import boto3, sys\nk = boto3.client('kinesis', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n{script}")).arg(&url).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    boto("k.create_stream(StreamName='fleet', ShardCount=2)", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "4",
                "--target",
                "kinesis",
                "--stream",
                "fleet",
                "--rate",
                "100",
                "--duration",
                "3s",
                "--start-delay",
                "2s",
                "--report-url",
                "r",
                "-e",
                "FLEETLOAD_BATCH_SIZE=50",
            ],
            dir.path(),
        )
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("r"), &run);
    assert_eq!(tasks.len(), 4);
    assert_merge_adds_up(&merged, &tasks);
    assert_eq!(merged.counts.acknowledged, 1200);
    let count = boto(
        "n = 0\nfor s in k.list_shards(StreamName='fleet')['Shards']:\n    it = k.get_shard_iterator(StreamName='fleet', ShardId=s['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']\n    while it:\n        r = k.get_records(ShardIterator=it, Limit=10000)\n        n += len(r['Records'])\n        if not r['Records']:\n            break\n        it = r.get('NextShardIterator')\nprint(n)",
        &[],
    );
    assert_eq!(
        count.trim().parse::<u64>().unwrap(),
        merged.counts.acknowledged,
        "records in the stream = merged acknowledged"
    );
    let _ = moto.kill();
}

/// Processes whose environment names this run: workers that outlived their launcher.
fn workers_of(run: &str) -> Vec<u32> {
    let needle = format!("FLEETLOAD_RUN_ID={run}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn ctrl_c_stops_every_task_and_merges_the_interrupted_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run = format!("ctrlc-{}", std::process::id());
    let child = launcher(
        &[
            "run",
            "--tasks",
            "3",
            "--target",
            "null",
            "--rate",
            "2000",
            "--duration",
            "60s",
            "--start-delay",
            "1s",
            "--run-id",
            &run,
            "--report-url",
            "r",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let start = Instant::now();
    while workers_of(&run).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the workers did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the child");
    let out = wait(child, Duration::from_secs(60));
    let screen = text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an interrupted fleet is a failed fleet:\n{screen}"
    );
    assert!(
        workers_of(&run).is_empty(),
        "worker processes remain after Ctrl-C"
    );
    assert!(screen.contains("SIGINT: stopping 3 task(s)"), "{screen}");
    assert!(
        screen.contains("all 3 worker processes have exited"),
        "{screen}"
    );
    let (merged, tasks) = reports(&dir.path().join("r"), &run);
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t.outcome
        == fleetload::model::report::Outcome::Interrupted {
            signal: "SIGTERM".into()
        }));
    assert_merge_adds_up(&merged, &tasks);
    let info = merged.merge.unwrap();
    assert_eq!(info.tasks_not_completed.len(), 3, "{info:?}");
    assert!(merged.counts.acknowledged > 3 * 2000, "{:?}", merged.counts);
}

#[test]
fn a_bad_scenario_is_refused_before_any_task_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--target",
                "null",
                "-e",
                "FLEETLOAD_DURATON=5s",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("did you mean FLEETLOAD_DURATION?"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("fleetload-runs").exists(),
        "nothing started"
    );
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--target",
                "null",
                "--threshold",
                "p99<<3",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_start_delay_of_zero_or_more_than_a_day_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for delay in ["0s", "25h"] {
        let out = wait(
            launcher(
                &[
                    "run",
                    "--tasks",
                    "2",
                    "--target",
                    "null",
                    "--duration",
                    "1s",
                    "--start-delay",
                    delay,
                ],
                dir.path(),
            )
            .spawn()
            .unwrap(),
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].starts_with(&format!("launcher: --start-delay \"{delay}\": "))
                && lines[0].contains("accepted: a duration more than 0s and at most 24h"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", text(&out));
        assert!(
            !dir.path().join("fleetload-runs").exists(),
            "nothing started"
        );
    }
}

#[test]
fn ctrl_c_while_the_local_tasks_are_starting_leaves_none_running() {
    let dir = tempfile::tempdir().unwrap();
    let run = format!("ctrlc-start-{}", std::process::id());
    let child = launcher(
        &[
            "run",
            "--tasks",
            "24",
            "--target",
            "null",
            "--rate",
            "10",
            "--duration",
            "60s",
            "--start-delay",
            "30s",
            "--run-id",
            &run,
            "--report-url",
            "r",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    // The signal as soon as the first worker exists: while the others are being started.
    let start = Instant::now();
    while workers_of(&run).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no worker started"
        );
    }
    // SAFETY: kill(2) on our own child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the child");
    let out = wait(child, Duration::from_secs(60));
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(3), "{screen}");
    assert!(
        workers_of(&run).is_empty(),
        "worker processes remain after Ctrl-C:\n{screen}"
    );
    assert!(screen.contains("worker processes have exited"), "{screen}");
}

// ---------------------------------------------------------------------------------------------
// End to end: `--consumers` with the producers.

/// The merged end-to-end object, which a run with consumers must have.
fn e2e_of(merged: &Summary) -> &fleetload::model::report::E2e {
    merged
        .end_to_end
        .e2e
        .as_ref()
        .expect("a run with consumers has a merged e2e object")
}

/// The consumer task reports among `tasks`, and the producers'.
fn by_role(tasks: &[Summary]) -> (Vec<&Summary>, Vec<&Summary>) {
    tasks.iter().partition(|t| t.end_to_end.is_consumer())
}

#[test]
fn two_consumers_read_back_exactly_what_two_producers_wrote_to_the_mock_cluster() {
    let mock = rdkafka::mocking::MockCluster::new(3).unwrap();
    mock.create_topic("orders", 6, 1).unwrap();
    mock.create_topic("nothing-out", 2, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS={servers}");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "--tasks",
            "2",
            "--consumers",
            "2",
            "--target",
            "kafka",
            "--topic",
            "orders",
            "-e",
            kafka.as_str(),
            "--rate",
            "500",
            "--duration",
            "3s",
            "--report-url",
            "reports",
            "--consumer-env",
            "FLEETLOAD_SETTLE=3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_args = args(&[
        "--threshold",
        "lost==0",
        "--threshold",
        "duplicates==0",
        "--threshold",
        "e2e_p99<30s",
    ]);
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let out = wait(
        launcher(&run_args, dir.path()).spawn().unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("reports"), &run);
    let (consumers, producers) = by_role(&tasks);
    assert_eq!((producers.len(), consumers.len()), (2, 2));
    // The merged counts are the producers' alone.
    let producer_reports: Vec<Summary> = producers.iter().map(|s| (*s).clone()).collect();
    assert_merge_adds_up(&merged, &producer_reports);
    assert_eq!(merged.counts.acknowledged, 3000);
    let info = merged.merge.as_ref().unwrap();
    assert_eq!((info.tasks_expected, info.tasks_reported), (4, 4));
    // Every acknowledged event was seen once: nothing lost, nothing duplicated.
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(merged.counts.acknowledged));
    assert_eq!(e.seen, merged.counts.acknowledged);
    assert_eq!(e.lost, Some(0));
    assert_eq!(e.duplicates, 0);
    assert_eq!(e.unacknowledged_seen, Some(0));
    assert_eq!(e.foreign, 0);
    assert_eq!(e.latency_ms.count, 3000);
    let cov = e.coverage.as_ref().unwrap();
    assert_eq!(
        cov.consumers_reported,
        ["local-consumer-01", "local-consumer-02"]
    );
    assert!(cov.consumers_missing.is_empty(), "{cov:?}");
    assert_eq!(cov.producers_traced, 2);
    // The per-second end-to-end histograms add up to every read.
    assert_eq!(e.timeline.iter().map(|t| t.seen).sum::<u64>(), e.seen);
    // Producers traced, consumers shared the topic's partitions, each knew its place, and all
    // started at the same planned instant.
    for p in &producers {
        assert!(p.end_to_end.trace.is_some(), "{} did not trace", p.task_id);
        assert_eq!(
            p.scenario.get("FLEETLOAD_TRACE").map(String::as_str),
            Some("on")
        );
    }
    let mut places = Vec::new();
    for c in &consumers {
        let read = c.end_to_end.e2e.as_ref().unwrap();
        assert!(
            read.seen > 0,
            "{} read nothing: {:?}",
            c.task_id,
            read.source
        );
        assert_eq!(
            c.scenario.get("FLEETLOAD_ROLE").map(String::as_str),
            Some("consume")
        );
        assert_eq!(
            c.scenario.get("FLEETLOAD_TOPIC").map(String::as_str),
            Some("orders")
        );
        assert!(!c.scenario.contains_key("FLEETLOAD_TRACE"));
        places.push(c.scenario.get("FLEETLOAD_CONSUMER").cloned().unwrap());
        assert!(read.clock.contains("same host"), "{}", read.clock);
    }
    assert_eq!(places, ["0/2", "1/2"]);
    assert!(tasks
        .iter()
        .all(|t| t.planned_start == tasks[0].planned_start));
    // The screen shows the consumers while they run, and the end-to-end table at the end.
    for expected in [
        "2 consumer task(s) ← kafka topic orders on",
        "end to end     2 of 2 consumer task(s) reported",
        "  funnel       planned 3,000 → sent 3,000 → acknowledged 3,000 → seen 3,000",
        "  delivery     lost 0   duplicates 0   unacknowledged seen 0   foreign 0",
        "  held   lost==0",
    ] {
        assert!(screen.contains(expected), "missing {expected:?}:\n{screen}");
    }

    // The same reports gated again: an end-to-end p99 below a microsecond is broken (exit 1).
    let run_dir = dir.path().join("reports").join(&run);
    let out = wait(
        launcher(
            &[
                "merge",
                run_dir.to_str().unwrap(),
                "--threshold",
                "e2e_p99<1us",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("BROKEN e2e_p99<1us"), "{}", text(&out));

    // Consumers reading a topic the producers never reach: everything acknowledged is lost,
    // and `lost==0` breaks (exit 1).
    let lost_args = args(&[
        "--consume-from",
        "kafka:nothing-out",
        "--threshold",
        "lost==0",
    ]);
    let lost_args: Vec<&str> = lost_args.iter().map(String::as_str).collect();
    let out = wait(
        launcher(&lost_args, dir.path()).spawn().unwrap(),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (merged, _) = reports(&dir.path().join("reports"), &run_id_of(&out));
    let e = e2e_of(&merged);
    assert_eq!(merged.counts.acknowledged, 3000);
    assert_eq!((e.seen, e.unique, e.lost), (0, Some(0), Some(3000)));
    assert!(
        text(&out).contains("BROKEN lost==0   measured 3000"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_quickstart_with_a_consumer_reads_back_the_embedded_brokers_topic() {
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--consumers",
                "1",
                "--duration",
                "2s",
                "-e",
                "FLEETLOAD_SETTLE=2s",
                "--threshold",
                "lost==0",
            ],
            dir.path(),
        )
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let run = run_id_of(&out);
    let (merged, tasks) = reports(&dir.path().join("fleetload-runs"), &run);
    let (consumers, _) = by_role(&tasks);
    assert_eq!(consumers.len(), 1);
    assert_eq!(merged.counts.acknowledged, 2 * 2 * 1000);
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(merged.counts.acknowledged));
    assert_eq!((e.lost, e.duplicates), (Some(0), 0));
    assert!(
        e.latency_ms.count == e.seen && e.latency_ms.p50 > 0.0,
        "{e:?}"
    );
    assert!(
        screen.contains("1 consumer task(s) ← kafka topic fleetload on the embedded broker"),
        "{screen}"
    );
    assert!(screen.contains("  end to end  "), "{screen}");
}

#[test]
fn consumers_read_back_a_moto_kinesis_stream_exactly() {
    let (mut moto, url) = serial_moto();
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg("import boto3, sys\nk = boto3.client('kinesis', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\nk.create_stream(StreamName='e2e', ShardCount=3)")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = wait(
        launcher(
            &[
                "run",
                "--tasks",
                "2",
                "--consumers",
                "2",
                "--target",
                "kinesis",
                "--stream",
                "e2e",
                "--consume-from",
                "kinesis:e2e",
                "--rate",
                "100",
                "--duration",
                "3s",
                "--report-url",
                "r",
                "-e",
                "FLEETLOAD_BATCH_SIZE=50",
                "-e",
                "FLEETLOAD_SETTLE=4s",
                "--threshold",
                "lost==0",
                "--threshold",
                "duplicates==0",
            ],
            dir.path(),
        )
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .spawn()
        .unwrap(),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    let _ = moto.kill();
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let (merged, tasks) = reports(&dir.path().join("r"), &run_id_of(&out));
    let (consumers, _) = by_role(&tasks);
    assert_eq!(consumers.len(), 2);
    assert_eq!(merged.counts.acknowledged, 600);
    let e = e2e_of(&merged);
    assert_eq!(e.unique, Some(600));
    assert_eq!((e.seen, e.lost, e.duplicates), (600, Some(0), 0));
    // The 3 shards split between the 2 consumers (shard n to consumer n mod 2): both read.
    for c in &consumers {
        let read = c.end_to_end.e2e.as_ref().unwrap();
        assert!(
            read.seen > 0,
            "{} read nothing: {:?}",
            c.task_id,
            read.source
        );
    }
}
