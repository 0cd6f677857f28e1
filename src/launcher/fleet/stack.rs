//! The project's CloudFormation stack (`cloudformation/fleetload.yaml`) as the launcher sees it:
//! `launcher run --stack NAME` reads the cluster, task definition, container, network and report
//! location from the stack's outputs instead of a row of flags.

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::launcher::fleet::ecs::EcsConfig;

/// Output keys of `cloudformation/fleetload.yaml` that the launcher reads.
pub mod keys {
    /// ECS cluster name.
    pub const CLUSTER_NAME: &str = "ClusterName";
    /// Worker task definition ARN.
    pub const TASK_DEFINITION_ARN: &str = "TaskDefinitionArn";
    /// Name of the worker container in the task definition.
    pub const CONTAINER_NAME: &str = "ContainerName";
    /// Subnets of the tasks, comma-separated.
    pub const SUBNET_IDS: &str = "SubnetIds";
    /// Security groups of the tasks, comma-separated.
    pub const SECURITY_GROUP_IDS: &str = "SecurityGroupIds";
    /// Bucket of the run reports.
    pub const REPORT_BUCKET: &str = "ReportBucket";
    /// FLEETLOAD_REPORT_URL of the workers (`s3://bucket/runs`).
    pub const REPORT_URL: &str = "ReportUrl";
    /// RunTask launch type (`FARGATE`).
    pub const LAUNCH_TYPE: &str = "LaunchType";
    /// `ENABLED` or `DISABLED` (optional; DISABLED when absent).
    pub const ASSIGN_PUBLIC_IP: &str = "AssignPublicIp";
    /// Demo Kinesis stream name (optional: only when the stack created one).
    pub const DEMO_STREAM_NAME: &str = "DemoStreamName";

    /// Outputs every stack of the template has.
    pub const REQUIRED: &[&str] = &[
        CLUSTER_NAME,
        TASK_DEFINITION_ARN,
        CONTAINER_NAME,
        SUBNET_IDS,
        SECURITY_GROUP_IDS,
        REPORT_BUCKET,
        REPORT_URL,
        LAUNCH_TYPE,
    ];
}

/// What the launcher needs from the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOutputs {
    /// `ClusterName`.
    pub cluster: String,
    /// `TaskDefinitionArn`.
    pub task_definition: String,
    /// `ContainerName`.
    pub container: String,
    /// `SubnetIds`, split at commas.
    pub subnets: Vec<String>,
    /// `SecurityGroupIds`, split at commas.
    pub security_groups: Vec<String>,
    /// `ReportBucket`.
    pub report_bucket: String,
    /// `ReportUrl`: the workers' FLEETLOAD_REPORT_URL, e.g. `s3://bucket/runs`.
    pub report_url: String,
    /// `LaunchType` (`FARGATE` or `EC2`); `None` when the output is empty.
    pub launch_type: Option<String>,
    /// `AssignPublicIp` is `ENABLED`.
    pub assign_public_ip: bool,
    /// `DemoStreamName`, when the stack created the demo stream.
    pub demo_stream: Option<String>,
}

/// The stack cannot be read or is not one of the project's template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// No stack of that name in the region.
    #[error(
        "CloudFormation stack {stack:?} was not found in region {region}: --stack expects a stack \
         created from the project's cloudformation/fleetload.yaml (check the name and \
         AWS_REGION / AWS_PROFILE)"
    )]
    NotFound {
        /// Stack name given.
        stack: String,
        /// Region asked.
        region: String,
    },
    /// Outputs the launcher needs are absent.
    #[error(
        "CloudFormation stack {stack:?} (status {status}) has no output {}: --stack expects a \
         stack created from the project's cloudformation/fleetload.yaml, whose outputs include \
         them; create or update the stack with the current template",
        missing.join(", ")
    )]
    MissingOutputs {
        /// Stack name given.
        stack: String,
        /// Its status, e.g. CREATE_COMPLETE or ROLLBACK_IN_PROGRESS.
        status: String,
        /// Keys absent or empty.
        missing: Vec<String>,
    },
    /// An output has a value the launcher cannot use.
    #[error(
        "CloudFormation stack {stack:?} output {key} is {value:?}; accepted: {accepted} (the \
         project's cloudformation/fleetload.yaml sets it so)"
    )]
    BadOutput {
        /// Stack name given.
        stack: String,
        /// Output key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What would be accepted.
        accepted: &'static str,
    },
    /// DescribeStacks failed for another reason (credentials, permissions, network).
    #[error("DescribeStacks for CloudFormation stack {stack:?} failed: {error}")]
    Call {
        /// Stack name given.
        stack: String,
        /// The SDK error chain.
        error: String,
    },
}

/// Reads the outputs of stack `name` (DescribeStacks). One error names the stack and every
/// missing output key.
pub async fn read_stack(
    client: &aws_sdk_cloudformation::Client,
    name: &str,
) -> anyhow::Result<StackOutputs> {
    let region = client
        .config()
        .region()
        .map_or_else(|| "(none configured)".to_string(), |r| r.to_string());
    let out = match client.describe_stacks().stack_name(name).send().await {
        Ok(out) => out,
        // CloudFormation answers a missing stack with ValidationError "Stack with id X does not
        // exist".
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            return Err(StackError::NotFound {
                stack: name.to_string(),
                region,
            }
            .into())
        }
        Err(e) => {
            return Err(StackError::Call {
                stack: name.to_string(),
                error: match (e.code(), e.message()) {
                    (Some(code), msg) => format!("{code}: {}", msg.unwrap_or("no message")),
                    _ => DisplayErrorContext(&e).to_string(),
                },
            }
            .into())
        }
    };
    let Some(stack) = out.stacks().first() else {
        return Err(StackError::NotFound {
            stack: name.to_string(),
            region,
        }
        .into());
    };
    let status = stack
        .stack_status()
        .map_or("unknown", |s| s.as_str())
        .to_string();
    let outputs: Vec<(&str, &str)> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?, o.output_value().unwrap_or_default())))
        .collect();
    outputs_from_pairs(name, &status, &outputs).map_err(Into::into)
}

/// Builds [`StackOutputs`] from `(key, value)` pairs of stack `stack` in status `status`.
pub fn outputs_from_pairs(
    stack: &str,
    status: &str,
    outputs: &[(&str, &str)],
) -> Result<StackOutputs, StackError> {
    let get = |key: &str| {
        outputs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim())
    };
    // SecurityGroupIds may legitimately be empty (the VPC's default group is used then); every
    // other required output must have a value.
    let missing: Vec<String> = keys::REQUIRED
        .iter()
        .filter(|k| match get(k) {
            None => true,
            Some(v) => v.is_empty() && **k != keys::SECURITY_GROUP_IDS,
        })
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(StackError::MissingOutputs {
            stack: stack.to_string(),
            status: status.to_string(),
            missing,
        });
    }
    let required = |key: &str| get(key).unwrap_or_default().to_string();
    let list = |key: &str| -> Vec<String> {
        get(key)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let launch_type = required(keys::LAUNCH_TYPE);
    if !matches!(launch_type.as_str(), "FARGATE" | "EC2") {
        return Err(StackError::BadOutput {
            stack: stack.to_string(),
            key: keys::LAUNCH_TYPE,
            value: launch_type,
            accepted: "FARGATE or EC2",
        });
    }
    let assign_public_ip = match get(keys::ASSIGN_PUBLIC_IP).unwrap_or("DISABLED") {
        "ENABLED" => true,
        "DISABLED" | "" => false,
        other => {
            return Err(StackError::BadOutput {
                stack: stack.to_string(),
                key: keys::ASSIGN_PUBLIC_IP,
                value: other.to_string(),
                accepted: "ENABLED or DISABLED",
            })
        }
    };
    Ok(StackOutputs {
        cluster: required(keys::CLUSTER_NAME),
        task_definition: required(keys::TASK_DEFINITION_ARN),
        container: required(keys::CONTAINER_NAME),
        subnets: list(keys::SUBNET_IDS),
        security_groups: list(keys::SECURITY_GROUP_IDS),
        report_bucket: required(keys::REPORT_BUCKET),
        report_url: required(keys::REPORT_URL),
        launch_type: Some(launch_type),
        assign_public_ip,
        demo_stream: get(keys::DEMO_STREAM_NAME)
            .filter(|v| !v.is_empty())
            .map(str::to_string),
    })
}

impl StackOutputs {
    /// The ECS configuration the stack describes.
    pub fn ecs_config(&self) -> EcsConfig {
        EcsConfig {
            cluster: self.cluster.clone(),
            task_definition: self.task_definition.clone(),
            container: self.container.clone(),
            subnets: self.subnets.clone(),
            security_groups: self.security_groups.clone(),
            assign_public_ip: self.assign_public_ip,
            launch_type: self.launch_type.clone(),
            capacity_providers: Vec::new(),
            platform_version: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ClusterName", "fleetload"),
            (
                "TaskDefinitionArn",
                "arn:aws:ecs:us-east-1:1:task-definition/fleetload-worker:3",
            ),
            ("ContainerName", "worker"),
            ("SubnetIds", "subnet-a, subnet-b"),
            ("SecurityGroupIds", "sg-1"),
            ("ReportBucket", "bucket"),
            ("ReportUrl", "s3://bucket/runs"),
            ("LaunchType", "FARGATE"),
            ("AssignPublicIp", "ENABLED"),
        ]
    }

    #[test]
    fn reads_every_output() {
        let o = outputs_from_pairs("s", "CREATE_COMPLETE", &full()).unwrap();
        assert_eq!(o.subnets, vec!["subnet-a", "subnet-b"]);
        assert_eq!(o.security_groups, vec!["sg-1"]);
        assert!(o.assign_public_ip);
        assert_eq!(o.demo_stream, None);
        let cfg = o.ecs_config();
        cfg.validate().unwrap();
        assert_eq!(cfg.launch_type.as_deref(), Some("FARGATE"));
    }

    #[test]
    fn missing_outputs_are_named_together() {
        let pairs: Vec<_> = full()
            .into_iter()
            .filter(|(k, _)| *k != "SubnetIds" && *k != "ReportUrl")
            .collect();
        let e = outputs_from_pairs("fl", "UPDATE_ROLLBACK_COMPLETE", &pairs).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"fl\"") && msg.contains("SubnetIds, ReportUrl"),
            "{msg}"
        );
        assert!(
            msg.contains("cloudformation/fleetload.yaml")
                && msg.contains("UPDATE_ROLLBACK_COMPLETE"),
            "{msg}"
        );
    }

    #[test]
    fn empty_security_groups_are_allowed_bad_launch_type_is_not() {
        let mut pairs = full();
        pairs[4].1 = "";
        assert!(outputs_from_pairs("s", "CREATE_COMPLETE", &pairs)
            .unwrap()
            .security_groups
            .is_empty());
        pairs[7].1 = "SPOT";
        let msg = outputs_from_pairs("s", "CREATE_COMPLETE", &pairs)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("LaunchType") && msg.contains("FARGATE or EC2"),
            "{msg}"
        );
    }
}
