//! `merged/report.html` in a real headless browser: Chromium driven through chromedriver's W3C
//! WebDriver HTTP API on loopback.
//!
//! The runs are built without any network: synthetic task reports written with the library's
//! own types (a throttled stretch, an interrupted task, a missing one) and merged by the
//! `launcher merge` binary, and a real `launcher run` of worker processes on the null target.
//! The page must load, fetch nothing, carry exactly the numbers of `merged/timeseries.csv` and
//! of the merged histograms in every chart, show the missing task and where throttling
//! started, and render to a screenshot (`target/test-artifacts/report*.png`).
//!
//! Chromium and chromedriver come from the Debian packages `chromium` and `chromium-driver`
//! (ci/test.sh installs them). Without them these tests fail, they do not skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleetload::launcher::render::html::{spectrum_quantiles, spectrum_value};
use fleetload::model::profile::LoadProfile;
use fleetload::model::report::{
    encode_histogram, new_histogram, parse_timeseries, timeseries_csv, write_hlog, Counts,
    Histograms, Outcome, Percentiles, SecondRow, Summary, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE,
    TIMESERIES_FILE,
};
use fleetload::store::task_dir;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::Mutex;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const THROTTLE: &str = "ProvisionedThroughputExceededException";
/// The throttled stretch of the synthetic run: seconds 5 to 9.
const THROTTLED: std::ops::RangeInclusive<u64> = 5..=9;
const STAGES: &str = "100@5s,ramp:300@5s,300@10s";
/// A scenario value that must be shown as text, never interpreted.
const TRICKY: &str = "{\"note\":\"<b>bold</b> & 'quoted' </script>\"}";

/// One browser at a time: two cores, and Chromium is heavy.
static BROWSER_LOCK: Mutex<()> = Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// A minimal WebDriver client

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: the HTML report tests need a real browser; install the \
                 Debian packages with `apt-get install -y chromium chromium-driver` ({package} \
                 provides {path}), or run the suite through ci/test.sh, which installs them"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {CHROMEDRIVER}: {e}"));
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        let start = Instant::now();
        loop {
            if let Ok(status) = browser.try_call(Method::GET, "/status", None).await {
                if status["ready"] == true {
                    break;
                }
            }
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("{CHROMEDRIVER} exited at start ({exit})");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{CHROMEDRIVER} did not answer on 127.0.0.1:{port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let user_data = browser._profile.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
        }}});
        let session = browser
            .try_call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
        browser.session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// One WebDriver command; `Err` with the driver's message when it refuses.
    async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(90), self.client.request(request))
            .await
            .map_err(|_| format!("{path}: no answer within 90 s"))?
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: {e}"))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {}", value["value"]));
        }
        Ok(value["value"].clone())
    }

    async fn call(&self, method: Method, command: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{command}", self.session);
        self.try_call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {e}"))
    }

    async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn log(&self, kind: &str) -> Vec<Value> {
        let entries = self
            .call(Method::POST, "/se/log", Some(json!({ "type": kind })))
            .await;
        entries.as_array().cloned().unwrap_or_default()
    }

    /// A PNG of the whole page: the window is made as tall as the document first.
    async fn full_page_png(&self) -> Vec<u8> {
        let height = self
            .script("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .unwrap();
        self.call(
            Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": height.clamp(600, 12_000) + 40})),
        )
        .await;
        let b64 = self.call(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("the screenshot is base64")
    }

    async fn close(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.try_call(Method::DELETE, &path, None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Runs

fn launcher(args: &[&str]) -> Command {
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(args).env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETLOAD_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn output(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.spawn().expect("launcher starts");
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

fn planned_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// How a synthetic task behaves.
struct Spec {
    id: &'static str,
    seconds: u64,
    outcome: Outcome,
    /// 2 % of its events take 80–400 ms.
    slow_tail: bool,
    /// Throttled in [`THROTTLED`]: 40 % of the events fail, half are retried first.
    throttled: bool,
    late_ms: u64,
}

/// Writes one synthetic task report under `root/run_id/tasks/<id>/`, as a worker would.
fn write_task(root: &Path, run_id: &str, spec: &Spec, seed: u64) {
    let profile = LoadProfile::parse_stages(STAGES).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut latency = new_histogram();
    let mut service = new_histogram();
    let mut per_second: Vec<(u64, Histogram<u64>)> = Vec::new();
    let mut rows = Vec::new();
    let mut counts = Counts::default();
    let mut timeline = Vec::new();
    for second in 0..spec.seconds {
        let target = profile.events_between(second as f64, second as f64 + 1.0);
        let attempted = target.round() as u64;
        let throttled = spec.throttled && THROTTLED.contains(&second);
        let failed = if throttled { attempted * 2 / 5 } else { 0 };
        let retried = if throttled { attempted / 2 } else { 0 };
        let acknowledged = attempted - failed;
        let mut h = new_histogram();
        for _ in 0..acknowledged {
            let mut us: u64 = rng.gen_range(1_500..6_000);
            if spec.slow_tail && rng.gen_bool(0.02) {
                us = rng.gen_range(80_000..400_000);
            }
            if throttled {
                us += rng.gen_range(30_000..150_000);
            }
            h.record(us).unwrap();
            latency.record(us).unwrap();
            service.record((us * 3 / 5).max(1)).unwrap();
        }
        let p = Percentiles::of(&h);
        rows.push(SecondRow {
            second,
            target_rate: target,
            attempted,
            acknowledged,
            failed,
            bytes: acknowledged * 120,
            p50_ms: p.p50,
            p99_ms: p.p99,
            max_ms: p.max,
            unsent: 0,
        });
        per_second.push((second, h));
        counts.attempted += attempted;
        counts.acknowledged += acknowledged;
        if throttled {
            counts.failed += failed;
            counts.retried += retried;
            *counts.failed_by_code.entry(THROTTLE.into()).or_default() += failed;
            *counts.retried_by_code.entry(THROTTLE.into()).or_default() += retried;
            timeline.push((second, failed + retried));
        }
    }
    let mut errors_timeline = BTreeMap::new();
    if !timeline.is_empty() {
        errors_timeline.insert(THROTTLE.to_string(), timeline);
    }
    let scenario: BTreeMap<String, String> = [
        ("FLEETLOAD_TARGET", "kinesis"),
        ("FLEETLOAD_STREAM", "orders"),
        ("FLEETLOAD_STAGES", STAGES),
        ("FLEETLOAD_PAYLOAD", TRICKY),
        ("FLEETLOAD_TASK_ID", spec.id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let start = planned_start() + chrono::Duration::milliseconds(spec.late_ms as i64);
    let duration_s = spec.seconds as f64 - spec.late_ms as f64 / 1000.0;
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        task_id: spec.id.to_string(),
        target: "kinesis".to_string(),
        scenario,
        fleetload_version: env!("CARGO_PKG_VERSION").to_string(),
        planned_start: planned_start(),
        actual_start: Some(start),
        end: Some(planned_start() + chrono::Duration::seconds(spec.seconds as i64)),
        late_start_ms: spec.late_ms,
        duration_s,
        outcome: spec.outcome.clone(),
        bytes: counts.acknowledged * 120,
        target_rate: Some(profile.planned_events().unwrap() as f64 / 20.0),
        achieved_rate: counts.acknowledged as f64 / duration_s,
        counts,
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
    let dir = root.join(task_dir(run_id, spec.id));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(TIMESERIES_FILE), timeseries_csv(&rows)).unwrap();
    std::fs::write(
        dir.join(HLOG_FILE),
        write_hlog(planned_start(), &per_second),
    )
    .unwrap();
    std::fs::write(dir.join(SUMMARY_FILE), summary.to_json()).unwrap();
}

/// A 20-second run of three reported tasks of four expected: `task-a` completed with a slow
/// tail, `task-b` completed but throttled in seconds 5–9, `task-c` interrupted at second 16.
fn synthetic_run(root: &Path, run_id: &str) {
    let specs = [
        Spec {
            id: "task-a",
            seconds: 20,
            outcome: Outcome::Completed,
            slow_tail: true,
            throttled: false,
            late_ms: 0,
        },
        Spec {
            id: "task-b",
            seconds: 20,
            outcome: Outcome::Completed,
            slow_tail: false,
            throttled: true,
            late_ms: 120,
        },
        Spec {
            id: "task-c",
            seconds: 16,
            outcome: Outcome::Interrupted {
                signal: "SIGTERM".into(),
            },
            slow_tail: false,
            throttled: false,
            late_ms: 0,
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        write_task(root, run_id, spec, 7 + i as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// What the page must hold

/// Reads every chart out of the DOM: circles (`[x, value]` as the attributes' text), the
/// number of polyline points per series, the chart-data JSON, the page's text, its resources.
const READ_PAGE: &str = r##"
const charts = {};
for (const svg of document.querySelectorAll("svg.chart")) {
  const xattr = svg.dataset.x;
  const box = svg.getBoundingClientRect();
  const chart = {x: xattr, width: box.width, height: box.height, circles: {}, lines: {}};
  for (const g of svg.querySelectorAll("g.pts")) {
    chart.circles[g.dataset.series] = Array.from(g.querySelectorAll("circle"))
      .map(c => [c.getAttribute("data-" + xattr), c.getAttribute("data-value")]);
  }
  for (const pl of svg.querySelectorAll("polyline")) {
    const name = pl.dataset.series;
    chart.lines[name] = (chart.lines[name] || 0) + pl.points.numberOfItems;
  }
  charts[svg.dataset.chart] = chart;
}
// The chart-data JSON as the browser reads it, numbers as their shortest round-trip text (a
// JSON number parsed outside a browser may be off by one ulp).
const data = {};
for (const [chart, d] of Object.entries(JSON.parse(document.getElementById("chart-data").textContent))) {
  data[chart] = {};
  for (const s of d.series) data[chart][s.name] = s.points.map(p => [String(p[0]), String(p[1])]);
}
return {
  charts,
  data,
  text: document.body.innerText,
  title: document.title,
  resources: performance.getEntriesByType("resource").map(e => e.name),
  ready: document.readyState,
};
"##;

/// `[(x, value)]` of a chart's series as the DOM's circles hold them.
fn circles(page: &Value, chart: &str, series: &str) -> Vec<(f64, f64)> {
    let list = page["charts"][chart]["circles"][series]
        .as_array()
        .unwrap_or_else(|| panic!("chart {chart} has no points of series {series}"));
    list.iter()
        .map(|p| {
            let num = |v: &Value| -> f64 {
                v.as_str()
                    .unwrap_or_else(|| panic!("{chart}/{series}: point {p} lacks an attribute"))
                    .parse()
                    .unwrap_or_else(|e| panic!("{chart}/{series}: point {p}: {e}"))
            };
            (num(&p[0]), num(&p[1]))
        })
        .collect()
}

/// `[(x, value)]` of a chart's series in the chart-data JSON, as the browser parsed it.
fn json_points(data: &Value, chart: &str, series: &str) -> Vec<(f64, f64)> {
    data[chart][series]
        .as_array()
        .unwrap_or_else(|| panic!("chart-data has no series {chart}/{series}"))
        .iter()
        .map(|p| {
            let num = |v: &Value| -> f64 { v.as_str().unwrap().parse().unwrap() };
            (num(&p[0]), num(&p[1]))
        })
        .collect()
}

/// Loads `report.html` of the run in `run_dir` and checks what every run's page must show:
/// it loads, fetches nothing, and its charts hold exactly the merged files' numbers. Returns
/// what the page holds, for the caller's own checks, and saves a full-page screenshot.
async fn check_page(browser: &Browser, run_dir: &Path, screenshot: &str) -> Value {
    let report = run_dir.join("merged/report.html");
    assert!(report.is_file(), "{} was not written", report.display());
    let url = url::Url::from_file_path(report.canonicalize().unwrap())
        .unwrap()
        .to_string();
    // Start from a blank page with empty logs: the browser's own start page is not ours.
    browser.goto("about:blank").await;
    browser.log("performance").await;
    browser.log("browser").await;
    browser.goto(&url).await;
    let page = browser.script(READ_PAGE).await;
    assert_eq!(page["ready"], "complete");
    assert!(
        page["title"].as_str().unwrap().starts_with("fleetload "),
        "{}",
        page["title"]
    );

    // Nothing left the file: no resource loaded, no request but the page itself.
    assert_eq!(page["resources"], json!([]), "the report loaded resources");
    let mut requests = Vec::new();
    for entry in browser.log("performance").await {
        let message: Value =
            serde_json::from_str(entry["message"].as_str().unwrap_or("{}")).unwrap();
        if message["message"]["method"] == "Network.requestWillBeSent" {
            requests.push(
                message["message"]["params"]["request"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    assert!(
        requests.contains(&url),
        "the performance log shows no request for the page itself: is performance logging on? \
         {requests:?}"
    );
    let foreign: Vec<&String> = requests
        .iter()
        .filter(|u| **u != url && !u.starts_with("data:") && !u.starts_with("about:"))
        .collect();
    assert!(foreign.is_empty(), "the report made requests: {foreign:?}");
    // The inline script ran without an error.
    let severe: Vec<Value> = browser
        .log("browser")
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "browser console errors: {severe:?}");

    // Every chart is drawn, and holds exactly the rows of merged/timeseries.csv.
    let rows =
        parse_timeseries(&std::fs::read(run_dir.join("merged/timeseries.csv")).unwrap()).unwrap();
    assert!(!rows.is_empty());
    let data = &page["data"];
    let column = |f: fn(&SecondRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.second as f64, f(r))).collect()
    };
    let expected = [
        ("throughput", "attempted", column(|r| r.attempted as f64)),
        (
            "throughput",
            "acknowledged",
            column(|r| r.acknowledged as f64),
        ),
        ("throughput", "failed", column(|r| r.failed as f64)),
        ("throughput", "target_rate", column(|r| r.target_rate)),
        ("latency", "p50_ms", column(|r| r.p50_ms)),
        ("latency", "p99_ms", column(|r| r.p99_ms)),
        ("latency", "max_ms", column(|r| r.max_ms)),
    ];
    for (chart, series, want) in &expected {
        assert_eq!(
            &circles(&page, chart, series),
            want,
            "{chart}/{series}: the page's points differ from merged/timeseries.csv"
        );
        assert_eq!(
            &json_points(data, chart, series),
            want,
            "{chart}/{series}: chart-data differs from merged/timeseries.csv"
        );
        let drawn = page["charts"][chart]["lines"][series].as_u64().unwrap_or(0);
        assert!(drawn > 0, "{chart}/{series}: no line is drawn");
    }

    // The spectrum is the merged histograms, at the documented quantiles: each point's value
    // is exactly the histogram's value at the quantile the point names. (The quantiles are
    // compared with a tolerance: `powf` may round its last bit differently where the compiler
    // folds it.)
    let summary =
        Summary::from_json(&std::fs::read(run_dir.join("merged/summary.json")).unwrap()).unwrap();
    for (series, h) in [
        ("latency", summary.latency_histogram().unwrap()),
        ("service_time", summary.service_histogram().unwrap()),
    ] {
        let shown = circles(&page, "spectrum", series);
        assert_eq!(
            json_points(data, "spectrum", series),
            shown,
            "spectrum/{series}: chart-data and circles differ"
        );
        let grid = spectrum_quantiles();
        assert_eq!(
            shown.len(),
            grid.len(),
            "spectrum/{series}: one point per quantile"
        );
        for ((q, v), want_q) in shown.iter().zip(&grid) {
            assert!(
                (q - want_q).abs() < 1e-12,
                "spectrum/{series}: quantile {q}, expected {want_q}"
            );
            assert_eq!(*v, spectrum_value(&h, *q), "spectrum/{series} at {q}");
            assert_eq!(*v, h.value_at_quantile(*q) as f64 / 1000.0);
        }
        assert_eq!(
            shown[0].1,
            h.min() as f64 / 1000.0,
            "spectrum/{series} starts at the minimum"
        );
        assert!(
            (shown.last().unwrap().0 - 0.99999).abs() < 1e-12,
            "it ends at 99.999 %"
        );
    }

    // Errors: one series per code, exactly the merged errors_timeline.
    for (code, points) in &summary.errors_timeline {
        let want: Vec<(f64, f64)> = points.iter().map(|(s, n)| (*s as f64, *n as f64)).collect();
        assert_eq!(circles(&page, "errors", code), want, "errors/{code}");
        assert_eq!(json_points(data, "errors", code), want, "errors/{code}");
    }

    for (chart, c) in page["charts"].as_object().unwrap() {
        assert!(
            c["width"].as_f64().unwrap() > 600.0 && c["height"].as_f64().unwrap() > 150.0,
            "chart {chart} is not visible at a readable size: {c:?}"
        );
    }

    let png = browser.full_page_png().await;
    assert!(
        png.len() > 20_000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG of a drawn page ({} bytes)",
        png.len()
    );
    let path = artifacts_dir().join(screenshot);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    page
}

#[tokio::test]
async fn report_of_a_throttled_run_with_a_missing_task() {
    let _one = BROWSER_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = "run-html";
    synthetic_run(dir.path(), run_id);
    let run_dir = dir.path().join(run_id);
    let out = output(
        launcher(&[
            "merge",
            run_dir.to_str().unwrap(),
            "--expected-tasks",
            "4",
            "--threshold",
            "p99<50ms",
            "--threshold",
            "error_rate<1%",
        ])
        .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    let screen = text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a missing task fails the fleet:\n{screen}"
    );
    let report = run_dir.join("merged/report.html");
    assert!(
        screen.contains(&format!("html report: {}", report.display())),
        "the launcher names the HTML report:\n{screen}"
    );

    let browser = Browser::start().await;
    let page = check_page(&browser, &run_dir, "report.png").await;
    let body = page["text"].as_str().unwrap();

    // The verdict comes first and says why.
    let verdict_at = body.find("FLEET FAILED").expect("the verdict is shown");
    assert!(verdict_at < body.find("Throughput per second").unwrap());
    for expected in [
        "(exit 3)",
        "3 of 4 reported",
        "missing-1",
        "task-c interrupted (SIGTERM)",
        "BROKEN",
        "p99<50ms",
        "error_rate<1%",
        "/s targeted",
        THROTTLE,
        "ProvisionedThroughputExceededException starts at 5 s",
        "seconds 5–9",
    ] {
        assert!(
            body.contains(expected),
            "the page does not show {expected:?}:\n{body}"
        );
    }

    // The throttled stretch: error points at seconds 5–9 and nowhere else, and the failed
    // seconds shaded on the throughput chart.
    let errors = circles(&page, "errors", THROTTLE);
    let seconds: Vec<u64> = errors.iter().map(|(s, _)| *s as u64).collect();
    assert_eq!(seconds, THROTTLED.collect::<Vec<_>>());
    assert!(errors.iter().all(|(_, n)| *n > 0.0));
    let marks = browser
        .script(
            r##"return {
              band: Array.from(document.querySelectorAll("#chart-throughput rect.band"))
                .map(r => [r.dataset.from, r.dataset.to]),
              marker: Array.from(document.querySelectorAll("#chart-errors line.marker"))
                .map(l => l.dataset.x),
              stages: document.querySelectorAll("#chart-throughput line.marker").length,
            };"##,
        )
        .await;
    assert_eq!(marks["band"], json!([["5", "9"]]));
    assert_eq!(marks["marker"], json!(["5"]));
    assert_eq!(marks["stages"], 2, "the two stage boundaries are marked");

    // Unhealthy tasks stand out: the interrupted and missing ones, and the slowest.
    let tasks = browser
        .script(
            r##"return Array.from(document.querySelectorAll("#tasks-table tbody tr")).map(tr => ({
              task: tr.dataset.task, outcome: tr.dataset.outcome, slowest: tr.dataset.slowest || "",
              background: getComputedStyle(tr.cells[0]).backgroundColor,
            }));"##,
        )
        .await;
    let tasks = tasks.as_array().unwrap();
    let order: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t["task"].as_str().unwrap(), t["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("missing-1", "missing"),
            ("task-c", "interrupted"),
            ("task-a", "completed"),
            ("task-b", "completed"),
        ],
        "unhealthy first, then the slowest"
    );
    let plain = "rgba(0, 0, 0, 0)";
    for t in tasks {
        let marked = t["outcome"] != "completed" || t["slowest"] == "true";
        assert_eq!(
            t["background"] != plain,
            marked,
            "task row {t} is {}marked",
            if marked { "not " } else { "" }
        );
    }
    assert_eq!(tasks[2]["slowest"], "true", "task-a has the slow tail");

    // Scenario values are text, never markup.
    let scenario = browser
        .script(
            r##"const t = document.getElementById("scenario-table");
               return {bold: t.querySelectorAll("b").length,
                       cells: Array.from(t.querySelectorAll("td")).map(td => td.textContent)};"##,
        )
        .await;
    assert_eq!(scenario["bold"], 0);
    assert!(
        scenario["cells"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == TRICKY),
        "the payload template is shown verbatim: {scenario}"
    );

    // Hovering a chart shows the values at that second.
    let chart = browser
        .call(
            Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": "#chart-errors svg"})),
        )
        .await;
    let element = chart[ELEMENT_KEY].clone();
    let width = page["charts"]["errors"]["width"].as_f64().unwrap();
    // Second 7 of 0–19, in CSS pixels from the centre of the chart.
    let x = ((64.0 + 7.0 / 19.0 * 918.0) / 1000.0 - 0.5) * width;
    browser
        .call(
            Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "pointer", "id": "mouse",
                "parameters": {"pointerType": "mouse"},
                "actions": [{"type": "pointerMove", "origin": {ELEMENT_KEY: element},
                             "x": x.round() as i64, "y": 0, "duration": 0}]}]})),
        )
        .await;
    let tip = browser
        .script(
            r##"const t = document.getElementById("tip"); return {hidden: t.hidden, text: t.innerText};"##,
        )
        .await;
    assert_eq!(tip["hidden"], false, "no tooltip: {tip}");
    let png = browser
        .call(Method::GET, "/screenshot", None)
        .await
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .unwrap();
    std::fs::write(artifacts_dir().join("report-hover.png"), png).unwrap();
    let tip_text = tip["text"].as_str().unwrap();
    let at_7 = errors.iter().find(|(s, _)| *s == 7.0).unwrap().1 as u64;
    assert!(at_7 < 1000, "shown without a thousands separator");
    assert!(
        tip_text.contains("second 7")
            && tip_text.contains(&format!("{THROTTLE} (from second 5): {at_7} events/s")),
        "tooltip: {tip_text}"
    );

    browser.close().await;
}

#[tokio::test]
async fn report_of_a_real_local_run() {
    let _one = BROWSER_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = output(
        launcher(&[
            "run",
            "--tasks",
            "3",
            "--target",
            "null",
            "--stages",
            "200@2s,ramp:800@2s",
            "--start-delay",
            "1s",
            "--run-id",
            "real-run",
            "--report-url",
            "reports",
            "--threshold",
            "p99<1s",
        ])
        .current_dir(dir.path()),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.lines().any(|l| l.starts_with("html report: ")
            && l.ends_with("reports/real-run/merged/report.html")),
        "the launcher names the HTML report:\n{screen}"
    );
    let run_dir = dir.path().join("reports/real-run");
    let browser = Browser::start().await;
    let page = check_page(&browser, &run_dir, "report-local-run.png").await;
    let body = page["text"].as_str().unwrap();
    for expected in [
        "PASSED",
        "(exit 0)",
        "3 of 3 reported",
        "No errors",
        "p99<1s",
    ] {
        assert!(
            body.contains(expected),
            "the page does not show {expected:?}:\n{body}"
        );
    }
    assert!(
        page["charts"].get("errors").is_none(),
        "no error chart without errors"
    );
    browser.close().await;
}

#[tokio::test]
async fn report_of_a_local_run_with_consumers_shows_end_to_end() {
    let _one = BROWSER_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // Producers and consumers on the embedded broker: the zero-setup end-to-end run.
    let out = output(
        launcher(&[
            "run",
            "--tasks",
            "2",
            "--consumers",
            "2",
            "--duration",
            "3s",
            "-e",
            "FLEETLOAD_SETTLE=2s",
            "--run-id",
            "e2e-run",
            "--report-url",
            "reports",
            "--threshold",
            "lost==0",
        ])
        .current_dir(dir.path()),
        Duration::from_secs(120),
    );
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let run_dir = dir.path().join("reports/e2e-run");
    let summary =
        Summary::from_json(&std::fs::read(run_dir.join("merged/summary.json")).unwrap()).unwrap();
    let e = summary.end_to_end.e2e.clone().expect("merged e2e");
    assert_eq!(e.lost, Some(0), "{e:?}");

    let browser = Browser::start().await;
    let page = check_page(&browser, &run_dir, "report-e2e-run.png").await;
    let body = page["text"].as_str().unwrap();
    for expected in [
        "End to end",
        "2 of 2 consumer task(s) reported",
        "Clocks.",
        "share its clock, so end-to-end latency has no clock error",
        "lost 0",
    ] {
        assert!(
            body.contains(expected),
            "the page does not show {expected:?}:\n{body}"
        );
    }
    // End-to-end latency per second: exactly the merged timeline, in the DOM and the JSON.
    type Column = fn(&fleetload::model::report::E2eSecond) -> f64;
    let columns: [(&str, Column); 3] = [
        ("p50_ms", |t| t.p50_ms),
        ("p99_ms", |t| t.p99_ms),
        ("max_ms", |t| t.max_ms),
    ];
    for (series, f) in columns {
        let want: Vec<(f64, f64)> = e.timeline.iter().map(|t| (t.second as f64, f(t))).collect();
        assert!(!want.is_empty());
        assert_eq!(circles(&page, "e2e", series), want, "e2e/{series}");
        assert_eq!(
            json_points(&page["data"], "e2e", series),
            want,
            "e2e/{series}"
        );
    }
    // The funnel: planned → sent → acknowledged → seen, the producers' counts and the distinct
    // events seen, each bar drawn in proportion.
    let funnel = browser
        .script(
            r##"return Array.from(document.querySelectorAll("#e2e-funnel .stage")).map(d => [
              d.dataset.stage, Number(d.dataset.value),
              d.querySelector(".fbar").getBoundingClientRect().width,
              d.querySelector(".track").getBoundingClientRect().width]);"##,
        )
        .await;
    let c = &summary.counts;
    let want = [
        ("planned", c.planned),
        ("sent", c.attempted),
        ("acknowledged", c.acknowledged),
        ("seen", e.unique.unwrap()),
    ];
    let funnel = funnel.as_array().unwrap();
    assert_eq!(funnel.len(), want.len(), "{funnel:?}");
    let widest = want.iter().map(|w| w.1).max().unwrap() as f64;
    for (row, (stage, n)) in funnel.iter().zip(want) {
        assert_eq!(row[0], stage);
        assert_eq!(row[1].as_u64(), Some(n), "{stage}");
        let (bar, track) = (row[2].as_f64().unwrap(), row[3].as_f64().unwrap());
        assert!(
            (bar / track - n as f64 / widest).abs() < 0.01,
            "{stage}: bar {bar} of {track} for {n} of {widest}"
        );
    }
    // The section as a reader sees it.
    let section = browser
        .call(
            Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": "#e2e"})),
        )
        .await;
    let id = section[ELEMENT_KEY].as_str().unwrap().to_string();
    let png = browser
        .call(Method::GET, &format!("/element/{id}/screenshot"), None)
        .await
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let path = artifacts_dir().join("report-e2e-section.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // One consumer's report gone: the page says loss is unknown and why, and shows no loss.
    std::fs::remove_dir_all(run_dir.join("tasks/local-consumer-02")).unwrap();
    let out = output(
        launcher(&["merge", run_dir.to_str().unwrap()]).current_dir(dir.path()),
        Duration::from_secs(60),
    );
    assert!(
        text(&out).contains("lost unknown: consumer 1/2 (no report) did not report"),
        "{}",
        text(&out)
    );
    let page = check_page(&browser, &run_dir, "report-e2e-missing-consumer.png").await;
    let body = page["text"].as_str().unwrap();
    for expected in [
        "1 of 2 consumer task(s) reported",
        "lost unknown (a consumer did not report)",
        "consumer 1/2 (no report) did not report: what they would have read is not counted as lost",
    ] {
        assert!(
            body.contains(expected),
            "the page does not show {expected:?}:\n{body}"
        );
    }
    browser.close().await;
}

#[test]
fn open_says_why_it_cannot_and_opens_when_it_can() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), "run-open");
    let location = dir.path().join("run-open");
    let location = location.to_str().unwrap();

    // No display: nothing to open a browser on.
    let out = output(
        launcher(&["merge", location, "--open"])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("BROWSER"),
        Duration::from_secs(60),
    );
    let screen = text(&out);
    assert_eq!(out.status.code(), Some(3), "{screen}");
    assert!(
        screen.contains("html report not opened: no display")
            || screen.contains("html report not opened: xdg-open is not installed"),
        "{screen}"
    );

    // An opener on PATH gets the report's path.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = dir.path().join("opened.txt");
    for name in ["xdg-open", "open"] {
        let script = bin.join(name);
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = output(
        launcher(&["merge", location, "--open"])
            .env("PATH", path)
            .env("DISPLAY", ":99"),
        Duration::from_secs(60),
    );
    let screen = text(&out);
    assert!(screen.contains("html report opened with"), "{screen}");
    // The opener is started, not waited for: it may write just after the launcher exits.
    let start = Instant::now();
    while !opened.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap(),
        format!("{location}/merged/report.html")
    );
}
