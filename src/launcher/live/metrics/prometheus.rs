//! Prometheus remote write 1.0: a `WriteRequest` protobuf, snappy block-compressed, POSTed with
//! `Content-Encoding: snappy` and `X-Prometheus-Remote-Write-Version: 0.1.0`.
//!
//! Counters (`fleetload_events_*_total`) are the run's totals so far, so `rate()` and
//! `increase()` work on them; gauges are the last window's (rates, exact percentiles of the
//! merged histogram, tasks reporting). Every series carries `run_id`, `target` and the stream
//! or topic.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::{Labels, SendError, Snapshot};
use crate::model::report::Percentiles;

/// One request's limit, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `prometheus.WriteRequest` (remote write 1.0), the fields used.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimeSeries {
    /// Sorted by name, `__name__` first.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Label {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The series of one snapshot.
pub(crate) fn series(labels: &Labels, s: &Snapshot) -> Vec<TimeSeries> {
    let at = s.at.timestamp_millis();
    let mut out = Vec::new();
    let mut push = |name: &str, extra: &[(&str, String)], value: f64| {
        let mut l = vec![
            ("__name__".to_string(), name.to_string()),
            ("run_id".to_string(), labels.run_id.clone()),
            ("target".to_string(), labels.target.clone()),
        ];
        if let Some((k, v)) = &labels.destination {
            l.push((k.to_string(), v.clone()));
        }
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        l.sort();
        out.push(TimeSeries {
            labels: l
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            samples: vec![Sample {
                value,
                timestamp: at,
            }],
        });
    };
    let t = &s.totals;
    push("fleetload_events_planned_total", &[], t.planned as f64);
    push("fleetload_events_attempted_total", &[], t.attempted as f64);
    push(
        "fleetload_events_acknowledged_total",
        &[],
        t.acknowledged as f64,
    );
    push("fleetload_events_unsent_total", &[], t.unsent as f64);
    push(
        "fleetload_events_throttled_total",
        &[],
        t.throttled() as f64,
    );
    push("fleetload_bytes_acknowledged_total", &[], s.bytes as f64);
    for (code, n) in &t.failed_by_code {
        push(
            "fleetload_events_failed_total",
            &[("code", code.clone())],
            *n as f64,
        );
    }
    for (code, n) in &t.retried_by_code {
        push(
            "fleetload_events_retried_total",
            &[("code", code.clone())],
            *n as f64,
        );
    }
    if let Some(w) = &s.window {
        push("fleetload_tasks_reporting", &[], w.tasks_reporting as f64);
        push("fleetload_tasks_expected", &[], w.tasks_expected as f64);
        push(
            "fleetload_target_rate_events_per_second",
            &[],
            w.target_rate,
        );
        push(
            "fleetload_achieved_rate_events_per_second",
            &[],
            w.achieved_rate,
        );
        push("fleetload_behind_events", &[], w.behind as f64);
        push("fleetload_error_ratio", &[], w.counts.error_rate());
        push("fleetload_throttled_ratio", &[], w.counts.throttle_ratio());
        let mut quantiles = |name: &str, p: &Percentiles| {
            if p.count == 0 {
                return;
            }
            for (q, ms) in [
                ("0.5", p.p50),
                ("0.9", p.p90),
                ("0.99", p.p99),
                ("0.999", p.p99_9),
                ("1", p.max),
            ] {
                push(name, &[("quantile", q.to_string())], ms / 1000.0);
            }
        };
        quantiles("fleetload_latency_seconds", &w.latency_ms);
        if let Some(e2e) = &w.e2e_latency_ms {
            quantiles("fleetload_e2e_latency_seconds", e2e);
        }
        if let Some(lost) = w.lost_so_far {
            push("fleetload_e2e_lost_events", &[], lost as f64);
        }
    }
    out
}

/// The request body: the protobuf, snappy block-compressed.
pub(crate) fn encode(series: Vec<TimeSeries>) -> Vec<u8> {
    use prost::Message;
    let plain = WriteRequest { timeseries: series }.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&plain)
        .expect("snappy compresses any input in memory")
}

/// Sends to one remote-write URL.
pub(crate) struct RemoteWrite {
    url: Uri,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl RemoteWrite {
    /// A sender to `url` (http or https).
    pub(crate) fn new(url: &str) -> Result<RemoteWrite, String> {
        let url: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(RemoteWrite {
            url,
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
        })
    }

    /// Writes one snapshot's series.
    pub(crate) async fn send(&mut self, labels: &Labels, s: &Snapshot) -> Result<(), SendError> {
        let body = encode(series(labels, s));
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )
            .header(CONTENT_ENCODING, HeaderValue::from_static("snappy"))
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("fleetload/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError {
                message: format!("cannot build the request: {e}"),
                retry: false,
            })?;
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request)).await
        {
            Err(_) => {
                return Err(SendError {
                    message: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
                    retry: true,
                })
            }
            Ok(Err(e)) => {
                return Err(SendError {
                    message: format!("{e}"),
                    retry: true,
                })
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        Err(SendError {
            message: format!(
                "HTTP {}{}",
                status.as_u16(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.chars().take(200).collect::<String>())
                }
            ),
            retry: status.is_server_error() || status.as_u16() == 429,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::report::Counts;

    #[test]
    fn counters_are_the_totals_and_labels_are_sorted_with_the_name_first() {
        let labels = Labels {
            run_id: "r1".into(),
            target: "kinesis".into(),
            destination: Some(("stream", "orders".into())),
        };
        let s = Snapshot {
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            window: None,
            totals: Counts {
                attempted: 10,
                acknowledged: 9,
                failed: 1,
                failed_by_code: BTreeMap::from([("InternalFailure".into(), 1)]),
                retried: 4,
                retried_by_code: BTreeMap::from([(
                    "ProvisionedThroughputExceededException".into(),
                    4,
                )]),
                ..Counts::default()
            },
            bytes: 900,
        };
        let all = series(&labels, &s);
        let find = |name: &str| {
            all.iter()
                .find(|t| t.labels[0].value == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let ack = find("fleetload_events_acknowledged_total");
        assert_eq!(
            ack.samples,
            vec![Sample {
                value: 9.0,
                timestamp: 1_700_000_000_000
            }]
        );
        let names: Vec<&str> = ack.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "run_id", "stream", "target"]);
        assert_eq!(
            find("fleetload_events_throttled_total").samples[0].value,
            4.0
        );
        let failed = find("fleetload_events_failed_total");
        assert!(failed
            .labels
            .iter()
            .any(|l| l.name == "code" && l.value == "InternalFailure"));
        // The body decodes back (snappy, then protobuf).
        let body = encode(all.clone());
        let plain = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = <WriteRequest as prost::Message>::decode(plain.as_slice()).unwrap();
        assert_eq!(back.timeseries, all);
    }
}
