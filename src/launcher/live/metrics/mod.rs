//! `--metrics`: the fleet's live numbers sent where the team's dashboards are, from the
//! launcher's merged view (nothing counted twice, no inbound connection to a task).
//!
//! Each destination has a sender of its own that sends the windows in order, retries a failed
//! send, and reports a destination that keeps failing once; a send never ends the run.
//! [`prometheus`] writes with Prometheus remote write 1.0 (protobuf, snappy); [`cloudwatch`]
//! with CloudWatch `PutMetricData`, dimension `RunId`.

pub(crate) mod cloudwatch;
pub(crate) mod prometheus;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::live::FleetWindowRecord;
use crate::model::report::Counts;

/// Tries of one send (the first one included).
const ATTEMPTS: u32 = 3;
/// Wait before the second try; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Snapshots waiting for a slow destination beyond which the oldest are dropped.
const MAX_QUEUED: usize = 32;

/// What `--metrics` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsTarget {
    /// Prometheus remote write to this URL (`http(s)://host:port/api/v1/write`).
    Prometheus(String),
    /// CloudWatch `PutMetricData` into this namespace.
    CloudWatch(String),
}

/// What `--metrics` accepts, for error messages.
pub const METRICS_ACCEPTED: &str = "prometheus:URL (remote write, e.g. \
prometheus:http://prometheus:9090/api/v1/write) or cloudwatch:NAMESPACE (e.g. cloudwatch:LoadTests)";

impl MetricsTarget {
    /// Parses `prometheus:URL` or `cloudwatch:NAMESPACE`.
    pub fn parse(text: &str) -> Result<MetricsTarget, String> {
        let bad = |why: &str| format!("--metrics {text:?}: {why}; accepted: {METRICS_ACCEPTED}");
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("no destination kind"))?;
        match kind {
            "prometheus" => {
                let uri: hyper::Uri = rest.parse().map_err(|_| bad("not a URL"))?;
                match uri.scheme_str() {
                    Some("http" | "https") if uri.host().is_some() => {
                        Ok(MetricsTarget::Prometheus(rest.to_string()))
                    }
                    _ => Err(bad("the URL must be http:// or https:// with a host")),
                }
            }
            "cloudwatch" => {
                // CloudWatch's own rules: 1–255 characters of its set, no `AWS/` (reserved).
                let ok = !rest.is_empty()
                    && rest.len() <= 255
                    && !rest.starts_with(':')
                    && !rest.starts_with("AWS/")
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_/#:".contains(c));
                if ok {
                    Ok(MetricsTarget::CloudWatch(rest.to_string()))
                } else {
                    Err(bad(
                        "a namespace is 1–255 of A-Z a-z 0-9 . - _ / # :, not starting with AWS/",
                    ))
                }
            }
            _ => Err(bad(&format!("unknown destination kind {kind:?}"))),
        }
    }

    fn name(&self) -> String {
        match self {
            MetricsTarget::Prometheus(url) => format!("prometheus {url}"),
            MetricsTarget::CloudWatch(ns) => format!("cloudwatch namespace {ns}"),
        }
    }
}

/// The labels every series carries.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The run id.
    pub run_id: String,
    /// `kinesis`, `kafka` or `null`.
    pub target: String,
    /// `("stream", name)` or `("topic", name)`, when there is one.
    pub destination: Option<(&'static str, String)>,
}

/// One window's numbers and the run's totals so far: what each destination is sent.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The instant the numbers are for (the window's end).
    pub at: DateTime<Utc>,
    /// The window, merged across the fleet (`None` for the last send after the run, which
    /// carries only the totals).
    pub window: Option<FleetWindowRecord>,
    /// Everything read so far, every window of every task once.
    pub totals: Counts,
    /// Bytes acknowledged so far.
    pub bytes: u64,
}

/// A send that failed, as the destination said it.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) message: String,
    /// Worth trying again (a timeout, 5xx, 429), rather than a refusal that will repeat.
    pub(crate) retry: bool,
}

/// A destination's sender.
enum Destination {
    Prometheus(Box<prometheus::RemoteWrite>),
    CloudWatch(cloudwatch::PutMetricData),
}

impl Destination {
    async fn send(&mut self, labels: &Labels, s: &Snapshot) -> Result<(), SendError> {
        match self {
            Destination::Prometheus(p) => p.send(labels, s).await,
            Destination::CloudWatch(c) => c.send(labels, s).await,
        }
    }
}

/// The senders of a run's `--metrics` destinations.
pub(crate) struct Exporters {
    senders: Vec<(mpsc::Sender<Snapshot>, JoinHandle<()>)>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Exporters {
    /// Starts a sender per destination (none when `targets` is empty).
    pub(crate) async fn start(targets: &[MetricsTarget], labels: Labels) -> Exporters {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Vec::new();
        for target in targets {
            let destination = match target {
                MetricsTarget::Prometheus(url) => match prometheus::RemoteWrite::new(url) {
                    Ok(p) => Destination::Prometheus(Box::new(p)),
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{}: {e}", target.name()));
                        continue;
                    }
                },
                MetricsTarget::CloudWatch(ns) => {
                    Destination::CloudWatch(cloudwatch::PutMetricData::new(ns).await)
                }
            };
            let (tx, rx) = mpsc::channel(MAX_QUEUED);
            let handle = tokio::spawn(send_all(
                destination,
                target.name(),
                labels.clone(),
                rx,
                failures.clone(),
            ));
            senders.push((tx, handle));
        }
        Exporters { senders, failures }
    }

    /// Queues a snapshot to every destination; never waits (a destination that is behind by
    /// [`MAX_QUEUED`] snapshots misses this one).
    pub(crate) fn send(&self, snapshot: &Snapshot) {
        for (tx, _) in &self.senders {
            let _ = tx.try_send(snapshot.clone());
        }
    }

    /// Lets the queued snapshots go, for at most `wait`; the destinations that failed for good,
    /// each said once.
    pub(crate) async fn finish(self, wait: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        for (tx, mut handle) in self.senders {
            drop(tx);
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.clone()
    }
}

/// Sends every snapshot to one destination in order, retrying each; the first send that fails
/// for good is reported (logged and kept), later ones only counted into that report.
async fn send_all(
    mut destination: Destination,
    name: String,
    labels: Labels,
    mut rx: mpsc::Receiver<Snapshot>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let mut failed = 0u64;
    let mut sent = 0u64;
    let mut first: Option<String> = None;
    while let Some(snapshot) = rx.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut result = Ok(());
        for attempt in 1..=ATTEMPTS {
            result = destination.send(&labels, &snapshot).await;
            match &result {
                Err(e) if e.retry && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                _ => break,
            }
        }
        match result {
            Ok(()) => sent += 1,
            Err(e) => {
                failed += 1;
                if first.is_none() {
                    eprintln!("metrics: {name}: {} (the run goes on)", e.message);
                    first = Some(e.message);
                }
            }
        }
    }
    if let Some(first) = first {
        failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!(
                "{name}: {failed} of {} sends failed; first: {first}",
                failed + sent
            ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_parsed_and_bad_ones_say_what_is_accepted() {
        assert_eq!(
            MetricsTarget::parse("prometheus:http://127.0.0.1:9090/api/v1/write").unwrap(),
            MetricsTarget::Prometheus("http://127.0.0.1:9090/api/v1/write".into())
        );
        assert_eq!(
            MetricsTarget::parse("cloudwatch:LoadTests/Kinesis").unwrap(),
            MetricsTarget::CloudWatch("LoadTests/Kinesis".into())
        );
        for bad in [
            "prometheus",
            "prometheus:ftp://x/y",
            "prometheus:not a url",
            "cloudwatch:",
            "cloudwatch:AWS/Kinesis",
            "cloudwatch:bad namespace!",
            "datadog:x",
        ] {
            let e = MetricsTarget::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("accepted: prometheus:URL"), "{e}");
        }
    }
}
