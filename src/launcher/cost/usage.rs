//! What a run used, as the launcher saw it: the fleet's ECS tasks (size, capacity, billed
//! instants), the target (a Kinesis stream's mode and open shards, from DescribeStreamSummary
//! with the launcher's AWS configuration) and the region. Written next to the run's reports as
//! `usage.json`, so `launcher merge` estimates the same cost later, when ECS has long forgotten
//! the tasks.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::launcher::fleet::ecs::TaskUsage;
use crate::model::report::Summary;
use crate::store::ReportStore;

/// Name of the usage record, under `<REPORT_URL>/<RUN_ID>/`.
pub const USAGE_FILE: &str = "usage.json";
/// How long DescribeStreamSummary may take before the target's cost is said unknown.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    /// `local`, `ecs`, or `unknown` (a run merged without its usage record).
    pub backend: String,
    /// The AWS region of the launcher's configuration (where its ECS tasks ran), if any.
    pub region: Option<String>,
    /// The ECS tasks, producers and consumers (empty for a local run).
    pub fleet: Vec<TaskUsage>,
    /// The system under test.
    pub target: TargetUsage,
    /// What could not be read, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The target, as far as its cost goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetUsage {
    /// `kinesis`, `kafka`, `null`, or `embedded` (the local run's broker).
    pub kind: String,
    /// The Kinesis stream (name or ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The stream's region (from its ARN, else the launcher's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `PROVISIONED` or `ON_DEMAND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Open shards when it was described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_shards: Option<u32>,
    /// Kafka bootstrap servers (to tell Amazon MSK from other clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_servers: Option<String>,
    /// Why the stream could not be described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The region in a Kinesis stream ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
fn arn_region(stream: &str) -> Option<String> {
    let region = stream.strip_prefix("arn:")?.split(':').nth(2)?;
    (!region.is_empty()).then(|| region.to_string())
}

/// The launcher's AWS configuration, as the SDK clients load it (region, endpoint,
/// credentials from the standard chain).
async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

impl TargetUsage {
    /// The target of a run whose workers had `get(NAME)` in their environment: for Kinesis, the
    /// stream described now (mode, open shards).
    pub async fn describe(get: impl Fn(&str) -> Option<String>) -> TargetUsage {
        let kind = get("FLEETLOAD_TARGET").unwrap_or_else(|| "embedded".to_string());
        let mut t = TargetUsage {
            kind: kind.clone(),
            kafka_servers: get("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS"),
            ..TargetUsage::default()
        };
        if kind != "kinesis" {
            return t;
        }
        let Some(stream) = get("FLEETLOAD_STREAM") else {
            t.error = Some("no FLEETLOAD_STREAM".into());
            return t;
        };
        let config = aws().await;
        t.region = arn_region(&stream).or_else(|| config.region().map(|r| r.to_string()));
        let client = aws_sdk_kinesis::Client::new(&config);
        let request = if stream.starts_with("arn:") {
            client.describe_stream_summary().stream_arn(&stream)
        } else {
            client.describe_stream_summary().stream_name(&stream)
        };
        match tokio::time::timeout(DESCRIBE_TIMEOUT, request.send()).await {
            Err(_) => {
                t.error = Some(format!(
                    "DescribeStreamSummary {stream} did not answer within {}s",
                    DESCRIBE_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => {
                t.error = Some(format!(
                    "DescribeStreamSummary {stream} failed: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                ))
            }
            Ok(Ok(out)) => {
                if let Some(d) = out.stream_description_summary() {
                    t.mode = Some(
                        d.stream_mode_details()
                            .map_or("PROVISIONED", |m| m.stream_mode().as_str())
                            .to_string(),
                    );
                    t.open_shards = u32::try_from(d.open_shard_count()).ok();
                    if let Some(region) = arn_region(d.stream_arn()) {
                        t.region = Some(region);
                    }
                }
            }
        }
        t.stream = Some(stream);
        t
    }
}

impl RunUsage {
    /// What a run just ended used: `backend`, its ECS tasks' usage, and its target described
    /// now with the workers' environment `get`. The launcher's region is looked up only when
    /// the fleet or the store is priced by it (`priced_by_region`: ECS tasks, an S3 report
    /// store): a local run against a broker, with its reports in a directory, makes no AWS call
    /// at all (the region chain would ask the instance metadata endpoint, and say so).
    pub async fn collect(
        backend: &str,
        fleet: Vec<TaskUsage>,
        notes: Vec<String>,
        get: impl Fn(&str) -> Option<String>,
        priced_by_region: bool,
    ) -> RunUsage {
        // A Kinesis stream's region is its own, found when it is described.
        let region = if priced_by_region {
            aws().await.region().map(|r| r.to_string())
        } else {
            None
        };
        RunUsage {
            backend: backend.to_string(),
            region,
            fleet,
            target: TargetUsage::describe(get).await,
            notes,
        }
    }

    /// What can be known of a run merged without its usage record (started elsewhere, or by
    /// an older launcher): its target, from its summary's scenario, described now.
    pub async fn of_summary(summary: &Summary) -> RunUsage {
        let get = |name: &str| summary.scenario.get(name).cloned();
        let mut usage = RunUsage::collect("unknown", Vec::new(), Vec::new(), get, true).await;
        if usage.target.kind == "embedded" && !summary.target.is_empty() {
            usage.target.kind = summary.target.clone();
        }
        usage.notes.push(format!(
            "no {USAGE_FILE} next to the run's reports: the fleet is unknown, and the target \
             was described now, not when the run ran"
        ));
        usage
    }

    /// Writes `<run_id>/usage.json`.
    pub async fn write(&self, store: &ReportStore, run_id: &str) -> anyhow::Result<()> {
        let key = format!("{run_id}/{USAGE_FILE}");
        let mut bytes = serde_json::to_vec_pretty(self).expect("usage serializes");
        bytes.push(b'\n');
        store
            .put(&key, bytes, "application/json")
            .await
            .with_context(|| format!("could not write {}", store.display_url(&key)))
    }

    /// Reads `<run_id>/usage.json`, `None` when there is none.
    pub async fn read(store: &ReportStore, run_id: &str) -> anyhow::Result<Option<RunUsage>> {
        let key = format!("{run_id}/{USAGE_FILE}");
        match store.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a usage record", store.display_url(&key))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_stream_arns() {
        assert_eq!(
            arn_region("arn:aws:kinesis:eu-west-1:123456789012:stream/s").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("orders"), None);
        assert_eq!(arn_region("arn:aws:kinesis::1:stream/s"), None);
    }
}
