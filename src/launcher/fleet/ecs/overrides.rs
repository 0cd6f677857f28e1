//! The worker's environment as RunTask container overrides: building them, and sizing them
//! against ECS's limit of [`OVERRIDES_MAX_BYTES`] before the first call.

use aws_sdk_ecs::types::{ContainerOverride, KeyValuePair, TaskOverride};
use serde::Serialize;

use super::limits::OVERRIDES_MAX_BYTES;

/// How many of the largest variables an [`OverridesTooLarge`] names.
const LARGEST_NAMED: usize = 5;

/// The container overrides are over [`OVERRIDES_MAX_BYTES`]. Names the largest variables (never
/// their values, which may be secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the container overrides for `{container}` are {size} bytes of JSON, over ECS's limit of \
     {OVERRIDES_MAX_BYTES} bytes (8 KiB) for RunTask overrides; the largest variables: {}; shorten \
     them (e.g. fewer stages, a payload template name instead of an inline one) or drop unneeded \
     ones",
    largest.iter().map(|(n, b)| format!("{n} ({b} bytes)")).collect::<Vec<_>>().join(", ")
)]
pub struct OverridesTooLarge {
    /// The container the overrides target.
    pub(crate) container: String,
    /// Serialized size in bytes.
    pub size: usize,
    /// The largest variables, up to 5 (`LARGEST_NAMED`): name and bytes that `name` and `value`
    /// take in the JSON.
    pub largest: Vec<(String, usize)>,
}

/// The `overrides` member of RunTask as it goes on the wire (awsJson 1.1).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOverrides<'a> {
    container_overrides: [WireContainerOverride<'a>; 1],
}

#[derive(Serialize)]
struct WireContainerOverride<'a> {
    name: &'a str,
    environment: Vec<WirePair<'a>>,
}

#[derive(Serialize)]
struct WirePair<'a> {
    name: &'a str,
    value: &'a str,
}

/// Size in bytes of the overrides JSON that RunTask sends for `container` with `env`, i.e.
/// `{"containerOverrides":[{"name":…,"environment":[{"name":…,"value":…},…]}]}`.
fn overrides_size(container: &str, env: &[(String, String)]) -> usize {
    let wire = WireOverrides {
        container_overrides: [WireContainerOverride {
            name: container,
            environment: env
                .iter()
                .map(|(name, value)| WirePair { name, value })
                .collect(),
        }],
    };
    serde_json::to_vec(&wire).map_or(usize::MAX, |v| v.len())
}

/// Fails when the overrides for `container` with `env` would exceed [`OVERRIDES_MAX_BYTES`];
/// `EcsFleet::start` checks them before its first RunTask call.
pub(super) fn check_overrides(
    container: &str,
    env: &[(String, String)],
) -> Result<(), OverridesTooLarge> {
    let size = overrides_size(container, env);
    if size <= OVERRIDES_MAX_BYTES {
        return Ok(());
    }
    let mut largest: Vec<(String, usize)> = env
        .iter()
        .map(|(n, v)| {
            let bytes = serde_json::to_string(n).map_or(0, |s| s.len())
                + serde_json::to_string(v).map_or(0, |s| s.len());
            (n.clone(), bytes)
        })
        .collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(LARGEST_NAMED);
    Err(OverridesTooLarge {
        container: container.to_string(),
        size,
        largest,
    })
}

/// The overrides every RunTask call of the run carries: `env` as the environment of
/// `container`.
pub(super) fn task_override(container: &str, env: &[(String, String)]) -> TaskOverride {
    let environment = env
        .iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect();
    TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(container)
                .set_environment(Some(environment))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_size_matches_the_wire_json() {
        let env = vec![("FLEETLOAD_RATE".to_string(), "100".to_string())];
        let json = r#"{"containerOverrides":[{"name":"worker","environment":[{"name":"FLEETLOAD_RATE","value":"100"}]}]}"#;
        assert_eq!(overrides_size("worker", &env), json.len());
        // Quotes and newlines are escaped on the wire, and count as such.
        let env = vec![("K".to_string(), "a\"b\n".to_string())];
        assert_eq!(
            overrides_size("w", &env),
            r#"{"containerOverrides":[{"name":"w","environment":[{"name":"K","value":"a\"b\n"}]}]}"#.len()
        );
    }

    #[test]
    fn oversized_overrides_name_the_largest_variables_not_their_values() {
        let env = vec![
            ("FLEETLOAD_TARGET".to_string(), "kinesis".to_string()),
            (
                "FLEETLOAD_KAFKA_SSL_CA_PEM".to_string(),
                "s3cr3t".repeat(1000),
            ),
            ("FLEETLOAD_STAGES".to_string(), "100@1s,".repeat(400)),
        ];
        let e = check_overrides("worker", &env).unwrap_err();
        assert!(e.size > OVERRIDES_MAX_BYTES);
        assert_eq!(e.largest[0].0, "FLEETLOAD_KAFKA_SSL_CA_PEM");
        assert_eq!(e.largest[1].0, "FLEETLOAD_STAGES");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{} bytes", e.size)) && msg.contains("8192 bytes (8 KiB)"),
            "{msg}"
        );
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }
}
