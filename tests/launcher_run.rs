//! `launcher run` with the local backend, through the binary, against real peers: librdkafka's
//! mock cluster, the embedded broker, a moto server for Kinesis, and Ctrl-C. With consumer
//! tasks (`--consumers`): `tests/launcher_e2e.rs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_merge_adds_up, launcher, reports, run_id_of, serial_moto, text, wait};

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
    // Why moto may be given fewer than the 1,200 planned: the moto server
    // takes one PutRecords at a time, and on a loaded machine slower than the schedule allows, so
    // the last batch or two may still be waiting to go when production ends. Those are given up
    // and counted `unsent`: planned = attempted + unsent accounts for every missing record, and
    // the stream is read back exactly. The floor only says that moto took most of them.
    let c = &merged.counts;
    assert_eq!(c.planned, 1200, "{c:?}");
    assert_eq!(c.planned, c.attempted + c.unsent, "{c:?}");
    assert!(c.acknowledged >= 1000, "{c:?}");
    assert_eq!(c.acknowledged, c.attempted, "{c:?}");
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

/// Ctrl-C lands while the launcher is still starting its 64 local tasks: it stops those started
/// so far, starts no more, says how many it had started, and leaves no worker running.
#[test]
fn ctrl_c_while_the_local_tasks_are_starting_stops_those_started_and_starts_no_more() {
    const TASKS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let run = format!("ctrlc-start-{}", std::process::id());
    let tasks = TASKS.to_string();
    let child = launcher(
        &[
            "run",
            "--tasks",
            &tasks,
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
    let mut seen = workers_of(&run).len();
    while seen == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no worker started"
        );
        seen = workers_of(&run).len();
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
    // "SIGINT while starting: stopping the N task(s) started so far", N of the 64: the start
    // ended there.
    let started: usize = screen
        .split("SIGINT while starting: stopping the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!("the signal did not land while starting ({seen} workers seen then):\n{screen}")
        });
    assert!(
        (seen..TASKS).contains(&started),
        "{started} started, {seen} seen when signalled:\n{screen}"
    );
    assert!(
        screen.contains(&format!(
            "stopped (SIGINT): all {started} worker processes have exited"
        )),
        "{screen}"
    );
}
