//! This task's id: `FLEETLOAD_TASK_ID`, else the ECS task id from the task metadata endpoint
//! (ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container), else `hostname-pid`.

use std::time::Duration;

use tracing::warn;

use crate::model::scenario::Scenario;

/// This task's id: `FLEETLOAD_TASK_ID`, else the ECS task id from the task metadata endpoint,
/// else `hostname-pid`.
pub(crate) async fn resolve_task_id(scenario: &Scenario) -> String {
    if let Some(id) = &scenario.task_id {
        return id.clone();
    }
    if let Some(id) = ecs_task_id().await {
        return id;
    }
    let host = hostname();
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!(
        "{}-{}",
        if safe.is_empty() { "task" } else { &safe },
        std::process::id()
    )
}

/// This machine's host name ("" when it cannot be read).
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The ECS task id from `$ECS_CONTAINER_METADATA_URI_V4/task` (`TaskARN`'s last segment).
async fn ecs_task_id() -> Option<String> {
    use http_body_util::BodyExt;
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("{}/task", base.trim_end_matches('/'))
        .parse()
        .ok()?;
    let fetch = async {
        let response = client.get(uri).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v.get("TaskARN")?
            .as_str()?
            .rsplit('/')
            .next()
            .map(str::to_string)
    };
    match tokio::time::timeout(Duration::from_secs(3), fetch).await {
        Ok(Some(id)) => Some(id),
        _ => {
            warn!("ECS_CONTAINER_METADATA_URI_V4 is set but the task id could not be read from it; using hostname-pid");
            None
        }
    }
}
