//! Live windows through the binaries, against real peers: the embedded broker (local runs), a
//! task killed mid-run, the Kinesis double throttling half of all records (`--abort-on-fail`),
//! and the dashboards: a real Prometheus server (remote write) and CloudWatch in the moto
//! server. The ECS fan-out with the store in moto S3 is in `tests/live_ecs.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{aws_env, aws_env_at, launcher, run_id_of, text, wait};
use fleetload::model::live::{LiveRecord, LiveWindow};
use fleetload::model::report::{new_histogram, parse_hlog, Percentiles, Summary};
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

/// Every task's live windows of a local run, by task id.
fn task_windows(run_dir: &Path) -> BTreeMap<String, Vec<LiveWindow>> {
    let mut out: BTreeMap<String, Vec<LiveWindow>> = BTreeMap::new();
    for dir in std::fs::read_dir(run_dir.join("live")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let w = LiveWindow::from_json(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
            out.entry(w.task_id.clone()).or_default().push(w);
        }
    }
    for windows in out.values_mut() {
        windows.sort_by_key(|w| w.window);
    }
    out
}

fn summary(path: &Path) -> Summary {
    Summary::from_json(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn live_record(run_dir: &Path) -> LiveRecord {
    LiveRecord::from_json(&std::fs::read(run_dir.join("live/view.json")).unwrap()).unwrap()
}

/// Lines of the launcher's CI-log output that show a live window.
fn live_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("live "))
        .map(str::to_string)
        .collect()
}

#[test]
fn four_local_tasks_show_live_windows_that_add_up_to_the_merged_report_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let child = launcher(
        &[
            "run",
            "--tasks",
            "4",
            "--rate",
            "400",
            "--duration",
            "15s",
            "--live-interval",
            "5s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = run_id_of(&out);
    let run_dir = dir.path().join("reports").join(&run);

    // The launcher showed the fleet while it ran: one line per window in a log.
    let lines = live_lines(&out);
    assert!(lines.len() >= 2, "live lines: {lines:?}\n{}", text(&out));
    assert!(
        lines[0].starts_with("live 00:00:05  tasks 4/4  rate "),
        "{lines:?}"
    );

    // Each task's windows add up to its report; all of them to the merged report.
    let merged = summary(&run_dir.join("merged/summary.json"));
    let windows = task_windows(&run_dir);
    assert_eq!(windows.len(), 4, "{:?}", windows.keys());
    let mut all = 0;
    for (task, list) in &windows {
        let report = summary(&run_dir.join("tasks").join(task).join("summary.json"));
        let acked: u64 = list.iter().map(|w| w.counts.acknowledged).sum();
        let planned: u64 = list.iter().map(|w| w.counts.planned).sum();
        assert_eq!(acked, report.counts.acknowledged, "task {task}");
        assert_eq!(planned, report.counts.planned, "task {task}");
        assert!(
            list.last().unwrap().last,
            "task {task}: the last window is final"
        );
        assert_eq!(
            report
                .live
                .as_ref()
                .map(|l| (l.windows, l.publish_failures)),
            Some((list.len() as u64, 0)),
            "task {task}"
        );
        all += acked;
    }
    assert_eq!(all, merged.counts.acknowledged);
    assert_eq!(merged.counts.acknowledged, 4 * 400 * 15);

    // What the launcher saw, and its totals once every window was read.
    let record = live_record(&run_dir);
    assert_eq!(record.totals.acknowledged, merged.counts.acknowledged);
    assert_eq!(record.totals.planned, merged.counts.planned);
    assert!(record.windows.len() >= 3, "{:?}", record.windows.len());

    // A window's merged percentiles are those of the union of the tasks' per-second
    // histograms for the same seconds.
    let logs: Vec<Vec<(u64, hdrhistogram::Histogram<u64>)>> = windows
        .keys()
        .map(|task| {
            parse_hlog(
                &std::fs::read(run_dir.join("tasks").join(task).join("histograms.hlog")).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let mut compared = 0;
    for w in record.windows.iter().filter(|w| w.stale.is_empty()) {
        let mut union = new_histogram();
        for log in &logs {
            for (second, h) in log {
                if (w.from_second..w.to_second).contains(second) {
                    union.add(h).unwrap();
                }
            }
        }
        assert_eq!(w.latency_ms, Percentiles::of(&union), "window {}", w.window);
        assert_eq!(w.counts.acknowledged, union.len(), "window {}", w.window);
        compared += 1;
    }
    assert!(compared >= 2, "no window without stale tasks to compare");
    let merged_live = merged
        .live
        .as_ref()
        .expect("the merged summary says how live went");
    assert_eq!(merged_live.interval_s, 5);
    assert!(merged.aborted.is_none());
}

/// The pid of the worker process of `task` in run `run` (a child of the launcher, both ids in
/// its environment).
fn worker_pid(run: &str, task: &str) -> Option<i32> {
    let needles = [
        format!("FLEETLOAD_TASK_ID={task}"),
        format!("FLEETLOAD_RUN_ID={run}"),
    ];
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if String::from_utf8_lossy(&cmdline).contains("__worker")
            && needles.iter().all(|n| vars.contains(&n.as_bytes()))
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_task_killed_mid_run_is_named_stale_and_the_run_ends_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let child = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--rate",
            "200",
            "--duration",
            "12s",
            "--live-interval",
            "2s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
            "--run-id",
            "killed-task",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    // Four seconds into production the second task is killed outright (no report).
    std::thread::sleep(Duration::from_secs(6));
    let pid = worker_pid("killed-task", "local-02").expect("worker local-02 is running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = wait(child, Duration::from_secs(120));
    let screen = text(&out);
    // As before live windows: a task that died is a failed fleet (exit 3), the merge is made.
    assert_eq!(out.status.code(), Some(3), "{screen}");
    assert!(screen.contains("2 of 2 reported, 1 completed"), "{screen}");
    let lines = live_lines(&out);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("tasks 1/2") && l.contains("stale: local-02")),
        "no live line named the killed task: {lines:?}"
    );
    let run_dir = dir.path().join("reports/killed-task");
    let record = live_record(&run_dir);
    let stale: Vec<u64> = record
        .windows
        .iter()
        .filter(|w| w.stale == ["local-02"])
        .map(|w| w.window)
        .collect();
    assert!(stale.len() >= 2, "{:?}", record.windows);
    // The survivor's windows still add up to its report.
    let survivor = summary(&run_dir.join("tasks/local-01/summary.json"));
    let windows = task_windows(&run_dir);
    let acked: u64 = windows["local-01"]
        .iter()
        .map(|w| w.counts.acknowledged)
        .sum();
    assert_eq!(acked, survivor.counts.acknowledged);
    // The merged summary and the page remember which task was stale when.
    let merged = summary(&run_dir.join("merged/summary.json"));
    let live = merged.live.unwrap();
    assert!(
        live.stale.iter().any(|s| s.tasks == ["local-02"]),
        "{:?}",
        live.stale
    );
    let page = std::fs::read_to_string(run_dir.join("merged/report.html")).unwrap();
    assert!(
        page.contains("id=\"stale\""),
        "the page lists the stale windows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_throttling_half_of_all_records_aborts_the_run_on_the_throttled_threshold() {
    let double = KinesisDouble::start(DoubleConfig {
        shards: 2,
        throttle_share: 0.5,
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let mut cmd = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--target",
            "kinesis",
            "--stream",
            "fleetload-test",
            "--rate",
            "200",
            "--duration",
            "60s",
            "--live-interval",
            "2s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
            "--run-id",
            "throttled-run",
            "--threshold",
            "throttled<5%",
            "--threshold",
            "error_rate<50%",
            "--abort-on-fail",
            "--abort-grace",
            "5s",
            "--junit",
            junit.to_str().unwrap(),
        ],
        dir.path(),
    );
    cmd.envs(aws_env_at(&double.endpoint_url()));
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    let out = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(120)))
        .await
        .unwrap();
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    // Windows 0 and 1 end within the 5 s grace; windows 2, 3 and 4 break it: stopped at 10 s,
    // not 60.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the run was not stopped early: {:?}",
        started.elapsed()
    );
    assert!(
        screen.contains("result: ABORTED (exit 1): aborted at 00:00:10: throttled"),
        "{screen}"
    );
    assert!(screen.contains("≥ 5% for 3 windows"), "{screen}");
    let run_dir = dir.path().join("reports/throttled-run");
    let merged = summary(&run_dir.join("merged/summary.json"));
    let aborted = merged
        .aborted
        .clone()
        .expect("the summary says why it stopped");
    assert_eq!(aborted.threshold, "throttled<5%");
    assert_eq!(aborted.second, 10);
    assert_eq!(
        aborted.windows.iter().map(|w| w.window).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // Every task stored its report (interrupted by the abort), and they were merged; the
    // counts still add up.
    let info = merged.merge.clone().unwrap();
    assert_eq!((info.tasks_expected, info.tasks_reported), (2, 2));
    assert!(info
        .tasks_not_completed
        .iter()
        .all(|t| t.outcome.status() == "interrupted"));
    let c = &merged.counts;
    assert_eq!(c.planned, c.attempted + c.unsent);
    assert_eq!(c.attempted, c.acknowledged + c.failed);
    assert!(c.throttle_ratio() > 0.3, "{c:?}");
    assert!(merged.duration_s < 20.0, "{}", merged.duration_s);
    // The double took what was acknowledged.
    assert_eq!(double.stats().records_accepted, c.acknowledged);
    // The table, the JUnit file and the page say it.
    assert!(
        screen.contains("aborted        aborted at 00:00:10"),
        "{screen}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("live abort: throttled&lt;5%"), "{xml}");
    let page = std::fs::read_to_string(run_dir.join("merged/report.html")).unwrap();
    assert!(page.contains("ABORTED"), "the page's verdict");
    assert!(page.contains("id=\"aborted\" data-second=\"10\""));
    assert!(
        page.contains("aborted: throttled&lt;5%"),
        "the charts mark the abort"
    );
}

/// A Prometheus server from Debian's package on a free loopback port, with the remote-write
/// receiver on and its storage in `dir`; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus(dir: &Path) -> Prometheus {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is needed: ci/test.sh installs Debian's prometheus package");
    let url = format!("http://127.0.0.1:{port}");
    let server = Prometheus { child, url };
    let start = Instant::now();
    loop {
        if let Ok(body) = http_get(&format!("{}/-/ready", server.url)) {
            if body.contains("Ready") {
                return server;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prometheus did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP GET on loopback; the body.
fn http_get(url: &str) -> Result<String, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
        .arg(url)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn prometheus_receives_the_fleets_series_and_the_acknowledged_counter_is_the_merged_total() {
    let dir = tempfile::tempdir().unwrap();
    let server = prometheus(dir.path());
    let child = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--rate",
            "300",
            "--duration",
            "6s",
            "--live-interval",
            "2s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
            "--run-id",
            "prometheus-run",
            "--metrics",
            &format!("prometheus:{}/api/v1/write", server.url),
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let merged = summary(
        &dir.path()
            .join("reports/prometheus-run/merged/summary.json"),
    );
    assert!(merged.counts.acknowledged > 0);
    let query = |q: &str| -> serde_json::Value {
        let url = format!(
            "{}/api/v1/query?query={}",
            server.url,
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        serde_json::from_str(&http_get(&url).unwrap()).unwrap()
    };
    let answer = query("fleetload_events_acknowledged_total{run_id=\"prometheus-run\"}");
    let result = &answer["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(result[0]["metric"]["target"], "kafka", "{answer}");
    assert_eq!(result[0]["metric"]["topic"], "fleetload", "{answer}");
    let value: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(value as u64, merged.counts.acknowledged, "{answer}");
    // The window gauges arrived too: exact percentiles of a window, in seconds.
    let p99 = query("fleetload_latency_seconds{run_id=\"prometheus-run\",quantile=\"0.99\"}");
    assert_eq!(
        p99["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{p99}"
    );
    let windows =
        query("count_over_time(fleetload_tasks_reporting{run_id=\"prometheus-run\"}[10m])");
    let shown: f64 = windows["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(shown >= 3.0, "{windows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_in_moto_holds_the_fleets_metrics_and_their_sum_is_the_merged_total() {
    let namespace = common::unique_name("FleetloadLive");
    // A run id of its own too: moto's GetMetricData matches dimensions across namespaces.
    let run = common::unique_name("cw");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--rate",
            "300",
            "--duration",
            "6s",
            "--live-interval",
            "2s",
            "--start-delay",
            "2s",
            "--report-url",
            "reports",
            "--run-id",
            &run,
            "--metrics",
            &format!("cloudwatch:{namespace}"),
        ],
        dir.path(),
    );
    cmd.envs(aws_env());
    let started = chrono::Utc::now();
    let child = cmd.spawn().unwrap();
    let out = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let merged = summary(
        &dir.path()
            .join("reports")
            .join(&run)
            .join("merged/summary.json"),
    );
    let sdk = common::moto_sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let query = |id: &str, name: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&namespace)
                            .metric_name(name)
                            .dimensions(Dimension::builder().name("RunId").value(&run).build())
                            .build(),
                    )
                    .period(3600)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let answer = cw
        .get_metric_data()
        .metric_data_queries(query("ack", "EventsAcknowledged", "Sum"))
        .metric_data_queries(query("p99", "LatencyP99", "Maximum"))
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            started.timestamp() - 3600,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() + 3600,
        ))
        .send()
        .await
        .unwrap();
    let result = |id: &str| {
        answer
            .metric_data_results()
            .iter()
            .find(|r| r.id() == Some(id))
            .map(|r| r.values().iter().sum::<f64>())
            .unwrap_or_default()
    };
    assert_eq!(
        result("ack") as u64,
        merged.counts.acknowledged,
        "{answer:?}"
    );
    assert!(result("p99") > 0.0, "{answer:?}");
}

#[test]
fn with_a_consumer_the_live_view_shows_end_to_end_latency_and_nothing_lost_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let child = launcher(
        &[
            "run",
            "--tasks",
            "2",
            "--consumers",
            "1",
            "--rate",
            "200",
            "--duration",
            "8s",
            "--live-interval",
            "2s",
            "--consumer-env",
            "FLEETLOAD_SETTLE=3s",
            "--report-url",
            "reports",
            "--run-id",
            "live-e2e",
        ],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let out = wait(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = live_lines(&out);
    // Windows whose events have had the settle time to be read: nothing lost so far.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("e2e_p99 ") && l.contains("lost 0")),
        "{lines:?}"
    );
    let run_dir = dir.path().join("reports/live-e2e");
    let windows = task_windows(&run_dir);
    let consumer = summary(&run_dir.join("tasks/local-consumer-01/summary.json"));
    let e2e = consumer.end_to_end.e2e.unwrap();
    let read: Vec<&LiveWindow> = windows["local-consumer-01"].iter().collect();
    assert!(read.iter().all(|w| w.role == "consume"));
    let seen: u64 = read.iter().map(|w| w.consumer.as_ref().unwrap().seen).sum();
    assert_eq!(
        seen, e2e.seen,
        "the consumer's windows add up to its report"
    );
    let record = live_record(&run_dir);
    assert!(record
        .windows
        .iter()
        .any(|w| w.e2e_latency_ms.as_ref().is_some_and(|p| p.count > 0)));
    assert!(record.windows.iter().any(|w| w.lost_so_far == Some(0)));
}
