//! CloudWatch `PutMetricData`: one call per window into the namespace `--metrics
//! cloudwatch:NAMESPACE` names, every datum with the dimension `RunId`.
//!
//! CloudWatch adds up what it is sent in a period, so events go as what happened since the
//! last successful send (the `Sum` over a run is its total; a send that failed is carried into
//! the next one); rates, ratios and exact window percentiles go as gauges.

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::{Labels, SendError, Snapshot};
use crate::model::report::Counts;

/// Datums per call: CloudWatch takes up to 1,000 per request.
const MAX_DATUMS: usize = 1000;

/// One datum: name, extra dimension, value and unit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Datum {
    pub(crate) name: &'static str,
    pub(crate) code: Option<String>,
    pub(crate) value: f64,
    pub(crate) unit: StandardUnit,
}

/// What one snapshot sends, given the totals of the last successful send.
pub(crate) fn data(s: &Snapshot, last: &Counts, last_bytes: u64) -> Vec<Datum> {
    let t = &s.totals;
    let delta = |now: u64, before: u64| now.saturating_sub(before) as f64;
    let mut out = vec![
        Datum {
            name: "EventsPlanned",
            code: None,
            value: delta(t.planned, last.planned),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "EventsAttempted",
            code: None,
            value: delta(t.attempted, last.attempted),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "EventsAcknowledged",
            code: None,
            value: delta(t.acknowledged, last.acknowledged),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "EventsFailed",
            code: None,
            value: delta(t.failed, last.failed),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "EventsUnsent",
            code: None,
            value: delta(t.unsent, last.unsent),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "EventsThrottled",
            code: None,
            value: delta(t.throttled(), last.throttled()),
            unit: StandardUnit::Count,
        },
        Datum {
            name: "BytesAcknowledged",
            code: None,
            value: delta(s.bytes, last_bytes),
            unit: StandardUnit::Bytes,
        },
    ];
    for (code, n) in &t.failed_by_code {
        let before = last.failed_by_code.get(code).copied().unwrap_or(0);
        out.push(Datum {
            name: "EventsFailed",
            code: Some(code.clone()),
            value: delta(*n, before),
            unit: StandardUnit::Count,
        });
    }
    for (code, n) in &t.retried_by_code {
        let before = last.retried_by_code.get(code).copied().unwrap_or(0);
        out.push(Datum {
            name: "EventsRetried",
            code: Some(code.clone()),
            value: delta(*n, before),
            unit: StandardUnit::Count,
        });
    }
    if let Some(w) = &s.window {
        let mut gauge = |name: &'static str, value: f64, unit: StandardUnit| {
            out.push(Datum {
                name,
                code: None,
                value,
                unit,
            })
        };
        gauge(
            "TasksReporting",
            w.tasks_reporting as f64,
            StandardUnit::Count,
        );
        gauge("TargetRate", w.target_rate, StandardUnit::CountSecond);
        gauge("AchievedRate", w.achieved_rate, StandardUnit::CountSecond);
        gauge("Behind", w.behind as f64, StandardUnit::Count);
        gauge(
            "ErrorRatio",
            w.counts.error_rate() * 100.0,
            StandardUnit::Percent,
        );
        gauge(
            "ThrottledRatio",
            w.counts.throttle_ratio() * 100.0,
            StandardUnit::Percent,
        );
        let p = &w.latency_ms;
        if p.count > 0 {
            gauge("LatencyP50", p.p50, StandardUnit::Milliseconds);
            gauge("LatencyP90", p.p90, StandardUnit::Milliseconds);
            gauge("LatencyP99", p.p99, StandardUnit::Milliseconds);
            gauge("LatencyP999", p.p99_9, StandardUnit::Milliseconds);
            gauge("LatencyMax", p.max, StandardUnit::Milliseconds);
        }
        if let Some(e) = w.e2e_latency_ms.as_ref().filter(|e| e.count > 0) {
            gauge("E2eLatencyP99", e.p99, StandardUnit::Milliseconds);
            gauge("E2eLatencyMax", e.max, StandardUnit::Milliseconds);
        }
        if let Some(lost) = w.lost_so_far {
            gauge("LostSoFar", lost as f64, StandardUnit::Count);
        }
    }
    out
}

/// Sends to one CloudWatch namespace.
pub(crate) struct PutMetricData {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    last: Counts,
    last_bytes: u64,
}

impl PutMetricData {
    /// A sender into `namespace`, with region, credentials and endpoint from the standard AWS
    /// chain (the launcher's own).
    pub(crate) async fn new(namespace: &str) -> PutMetricData {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        PutMetricData {
            client: aws_sdk_cloudwatch::Client::new(&sdk),
            namespace: namespace.to_string(),
            last: Counts::default(),
            last_bytes: 0,
        }
    }

    /// Sends one snapshot; on success what it carried is not sent again.
    pub(crate) async fn send(&mut self, labels: &Labels, s: &Snapshot) -> Result<(), SendError> {
        let at = AwsDateTime::from_millis(s.at.timestamp_millis());
        let run = Dimension::builder()
            .name("RunId")
            .value(&labels.run_id)
            .build();
        let datums: Vec<MetricDatum> = data(s, &self.last, self.last_bytes)
            .into_iter()
            .map(|d| {
                let mut b = MetricDatum::builder()
                    .metric_name(d.name)
                    .dimensions(run.clone())
                    .timestamp(at)
                    .value(d.value)
                    .unit(d.unit);
                if let Some(code) = d.code {
                    b = b.dimensions(Dimension::builder().name("Code").value(code).build());
                }
                b.build()
            })
            .collect();
        for chunk in datums.chunks(MAX_DATUMS) {
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let code = e.code().unwrap_or("").to_string();
                    SendError {
                        message: match (e.code(), e.message()) {
                            (Some(c), Some(m)) => format!("{c}: {m}"),
                            _ => format!("{}", aws_sdk_cloudwatch::Error::from(e)),
                        },
                        retry: worth_retrying(status, &code),
                    }
                })?;
        }
        self.last = s.totals.clone();
        self.last_bytes = s.bytes;
        Ok(())
    }
}

/// Whether a failed call is worth trying again: no answer at all (`status` none), a server
/// error, or throttling.
fn worth_retrying(status: Option<u16>, code: &str) -> bool {
    match status {
        None => true,
        Some(s) => s >= 500 || s == 429 || code.contains("Throttl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn events_go_as_what_happened_since_the_last_send() {
        let mut s = Snapshot {
            at: chrono::Utc::now(),
            window: None,
            totals: Counts {
                attempted: 100,
                acknowledged: 90,
                failed: 10,
                failed_by_code: BTreeMap::from([("InternalFailure".into(), 10)]),
                ..Counts::default()
            },
            bytes: 9000,
        };
        let first = data(&s, &Counts::default(), 0);
        let value = |d: &[Datum], name: &str| {
            d.iter()
                .find(|x| x.name == name && x.code.is_none())
                .map(|x| x.value)
        };
        assert_eq!(value(&first, "EventsAcknowledged"), Some(90.0));
        let last = s.totals.clone();
        s.totals.acknowledged = 150;
        s.totals.attempted = 160;
        let second = data(&s, &last, 9000);
        assert_eq!(value(&second, "EventsAcknowledged"), Some(60.0));
        assert_eq!(value(&second, "BytesAcknowledged"), Some(0.0));
        assert!(second
            .iter()
            .any(|d| d.name == "EventsFailed" && d.code.as_deref() == Some("InternalFailure")));
    }
}
