//! What each ECS task used, for the run's cost estimate: its size (CPU units, memory, ephemeral
//! storage), architecture and capacity, and the instants Fargate bills between (from the image
//! pull to the stop). DescribeTasks gives all of it for a task that ran on ECS; what it leaves
//! out (the size of a task described without it) is read from the task definition with
//! DescribeTaskDefinition, once per definition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fleet::{sdk_error_text, EcsFleet};

/// The attribute ECS sets on a task with its CPU architecture (`x86_64`, `arm64`).
const CPU_ARCHITECTURE_ATTRIBUTE: &str = "ecs.cpu-architecture";

/// What one task used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUsage {
    /// The task id.
    pub task_id: String,
    /// Its task definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// `FARGATE`, `EC2` or `EXTERNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// `FARGATE`, `FARGATE_SPOT` or one of the cluster's own providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider: Option<String>,
    /// Task CPU units (1,024 per vCPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_units: Option<u32>,
    /// Task memory, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// `X86_64` or `ARM64` (upper case, as task definitions name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
    /// `Linux`, or a Windows family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    /// Ephemeral storage, GiB (Fargate gives 20 without charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_gib: Option<u32>,
    /// When the image pull began: Fargate bills from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<DateTime<Utc>>,
    /// When the task reached RUNNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached STOPPED: Fargate bills until here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// Where the size came from: `task` (DescribeTasks) or `task definition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_from: Option<String>,
}

/// CPU units from ECS's text: `1024`, or `1 vCPU`, `0.5 vCPU`.
pub fn cpu_units(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(v) = t
        .strip_suffix("vCPU")
        .or_else(|| t.strip_suffix("vcpu"))
        .map(str::trim)
    {
        return v
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| (v * 1024.0).round() as u32);
    }
    t.parse().ok()
}

/// Memory MiB from ECS's text: `2048`, or `2 GB`, `0.5GB`.
pub fn memory_mib(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(v) = t
        .strip_suffix("GB")
        .or_else(|| t.strip_suffix("gb"))
        .map(str::trim)
    {
        return v
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| (v * 1024.0).round() as u32);
    }
    t.parse().ok()
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl TaskUsage {
    /// What DescribeTasks says about task `t` (id `task_id`).
    pub(super) fn of(task_id: &str, t: &aws_sdk_ecs::types::Task) -> TaskUsage {
        let cpu_units = t.cpu().and_then(cpu_units);
        let memory_mib = t.memory().and_then(memory_mib);
        TaskUsage {
            task_id: task_id.to_string(),
            task_definition_arn: t.task_definition_arn().map(str::to_string),
            launch_type: t.launch_type().map(|l| l.as_str().to_string()),
            capacity_provider: t.capacity_provider_name().map(str::to_string),
            size_from: (cpu_units.is_some() && memory_mib.is_some()).then(|| "task".to_string()),
            cpu_units,
            memory_mib,
            cpu_architecture: t
                .attributes()
                .iter()
                .find(|a| a.name() == CPU_ARCHITECTURE_ATTRIBUTE)
                .and_then(|a| a.value())
                .map(|v| v.to_ascii_uppercase()),
            platform_family: t.platform_family().map(str::to_string),
            ephemeral_storage_gib: t
                .ephemeral_storage()
                .and_then(|e| u32::try_from(e.size_in_gib()).ok()),
            pull_started_at: t.pull_started_at().and_then(to_chrono),
            started_at: t.started_at().and_then(to_chrono),
            stopped_at: t.stopped_at().and_then(to_chrono),
        }
    }
}

impl EcsFleet {
    /// Fills in, from each task's definition (DescribeTaskDefinition, once per definition), the
    /// size and architecture DescribeTasks left out. What could not be read is left unknown,
    /// and said in the returned notes (one per definition).
    pub async fn complete_usage(&self, usage: &mut [TaskUsage]) -> Vec<String> {
        let wanted: Vec<String> = usage
            .iter()
            .filter(|u| {
                u.cpu_units.is_none() || u.memory_mib.is_none() || u.cpu_architecture.is_none()
            })
            .filter_map(|u| u.task_definition_arn.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut definitions = BTreeMap::new();
        let mut notes = Vec::new();
        for arn in wanted {
            match self
                .client
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
            {
                Ok(out) => {
                    if let Some(td) = out.task_definition() {
                        definitions.insert(arn, td.clone());
                    }
                }
                Err(e) => notes.push(format!(
                    "DescribeTaskDefinition {arn} failed: {}",
                    sdk_error_text(&e)
                )),
            }
        }
        for u in usage.iter_mut() {
            let Some(td) = u
                .task_definition_arn
                .as_ref()
                .and_then(|a| definitions.get(a))
            else {
                continue;
            };
            if u.cpu_units.is_none() || u.memory_mib.is_none() {
                let (cpu, memory) = (
                    td.cpu().and_then(cpu_units),
                    td.memory().and_then(memory_mib),
                );
                if cpu.is_some() && memory.is_some() {
                    u.cpu_units = cpu;
                    u.memory_mib = memory;
                    u.size_from = Some("task definition".into());
                }
            }
            if u.cpu_architecture.is_none() {
                // A definition without a runtime platform runs on X86_64.
                u.cpu_architecture = Some(
                    td.runtime_platform()
                        .and_then(|p| p.cpu_architecture())
                        .map_or("X86_64".to_string(), |a| a.as_str().to_ascii_uppercase()),
                );
            }
            if u.ephemeral_storage_gib.is_none() {
                u.ephemeral_storage_gib = td
                    .ephemeral_storage()
                    .and_then(|e| u32::try_from(e.size_in_gib()).ok());
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ecs_sizes_in_units_and_in_words() {
        assert_eq!(cpu_units("1024"), Some(1024));
        assert_eq!(cpu_units("0.5 vCPU"), Some(512));
        assert_eq!(cpu_units("4 vCPU"), Some(4096));
        assert_eq!(cpu_units("lots"), None);
        assert_eq!(memory_mib("2048"), Some(2048));
        assert_eq!(memory_mib("2 GB"), Some(2048));
        assert_eq!(memory_mib("0.5GB"), Some(512));
        assert_eq!(memory_mib(""), None);
    }
}
