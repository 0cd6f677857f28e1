//! Where and how the fleet's tasks run ([`EcsConfig`], [`CapacityProvider`]), and the checks that
//! reject a configuration or a run id before any call to ECS.

use std::fmt;
use std::str::FromStr;

use super::limits::{
    AWSVPC_MAX_SECURITY_GROUPS, AWSVPC_MAX_SUBNETS, CAPACITY_PROVIDERS_MAX,
    CAPACITY_PROVIDER_BASE_MAX, CAPACITY_PROVIDER_WEIGHT_MAX, STARTED_BY_MAX_LEN,
};

/// One entry of a capacity provider strategy, e.g. `FARGATE_SPOT` with weight 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityProvider {
    /// Capacity provider name: `FARGATE`, `FARGATE_SPOT`, or a cluster's own (Auto Scaling) one.
    pub(crate) name: String,
    /// Relative share of the tasks beyond `base` (0–1000).
    pub(crate) weight: u32,
    /// Tasks placed on this provider before weights apply (0–100000; one provider at most).
    pub(crate) base: u32,
}

impl FromStr for CapacityProvider {
    type Err = EcsConfigError;

    /// Parses `NAME[:WEIGHT[:BASE]]`, e.g. `FARGATE_SPOT:3` or `FARGATE:1:2`; weight defaults
    /// to 1 and base to 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| EcsConfigError::CapacityProvider {
            given: s.to_string(),
            why: why.to_string(),
        };
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        let weight = match parts.next() {
            None => 1,
            Some(w) => w
                .trim()
                .parse()
                .map_err(|_| bad("the weight is not a whole number"))?,
        };
        let base = match parts.next() {
            None => 0,
            Some(b) => b
                .trim()
                .parse()
                .map_err(|_| bad("the base is not a whole number"))?,
        };
        if parts.next().is_some() {
            return Err(bad("there are more than three `:`-separated parts"));
        }
        Ok(CapacityProvider {
            name: name.to_string(),
            weight,
            base,
        })
    }
}

impl CapacityProvider {
    /// Parses `NAME[:WEIGHT[:BASE]]` and checks the entry's own ranges (weight 0–1000, base
    /// 0–100000); what depends on the other entries is checked by [`EcsConfig::validate`].
    pub(crate) fn parse_entry(text: &str) -> Result<Self, EcsConfigError> {
        let c: CapacityProvider = text.parse()?;
        c.check().map_err(|why| EcsConfigError::CapacityProvider {
            given: text.to_string(),
            why,
        })?;
        Ok(c)
    }

    /// What is wrong with this entry on its own, if anything.
    fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("the name is empty".into());
        }
        if self.weight > CAPACITY_PROVIDER_WEIGHT_MAX {
            return Err(format!(
                "weight {} is over {CAPACITY_PROVIDER_WEIGHT_MAX}",
                self.weight
            ));
        }
        if self.base > CAPACITY_PROVIDER_BASE_MAX {
            return Err(format!(
                "base {} is over {CAPACITY_PROVIDER_BASE_MAX}",
                self.base
            ));
        }
        Ok(())
    }
}

impl fmt::Display for CapacityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.name, self.weight, self.base)
    }
}

/// Where and how the fleet's tasks run. Filled from the launcher's flags or from the outputs of
/// the project's CloudFormation stack (see `launcher::fleet::stack`); `validate` is the
/// one place that rejects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsConfig {
    /// Cluster name or ARN (`--cluster`).
    pub cluster: String,
    /// Task definition family, `family:revision` or ARN (`--task-definition`).
    pub task_definition: String,
    /// Name of the worker container in the task definition; the environment override targets it
    /// (`--container`).
    pub container: String,
    /// Subnets of the tasks' awsvpc network interface (`--subnets`). Required for Fargate;
    /// without subnets no network configuration is sent (bridge/host mode on EC2).
    pub subnets: Vec<String>,
    /// Security groups of the awsvpc interface (`--security-groups`); the VPC's default group
    /// when empty.
    pub security_groups: Vec<String>,
    /// Give each task a public IP (needed in public subnets without a NAT gateway to pull the
    /// image and reach the target); Fargate only.
    pub assign_public_ip: bool,
    /// `FARGATE` or `EC2` (`--launch-type`); exclusive with `capacity_providers`. With neither,
    /// the cluster's default capacity provider strategy applies.
    pub launch_type: Option<String>,
    /// Capacity provider strategy (`--capacity-provider NAME[:WEIGHT[:BASE]]`, repeatable), e.g.
    /// `FARGATE_SPOT`; exclusive with `launch_type`.
    pub capacity_providers: Vec<CapacityProvider>,
    /// Fargate platform version (`--platform-version`), `LATEST` when not given.
    pub platform_version: Option<String>,
}

/// A rejected [`EcsConfig`], run id or override: what was given and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsConfigError {
    /// A required value is empty.
    #[error("{flag} is empty: give the {what}")]
    Empty {
        /// The flag, e.g. `--cluster`.
        flag: &'static str,
        /// What it names.
        what: &'static str,
    },
    /// `--launch-type` is neither FARGATE nor EC2.
    #[error("--launch-type {0:?} is not a launch type: use FARGATE or EC2")]
    LaunchType(String),
    /// Both a launch type and a capacity provider strategy.
    #[error(
        "--launch-type {launch_type} and --capacity-provider {providers} cannot be used together \
         (ECS takes a launch type or a capacity provider strategy, not both): give one of them"
    )]
    LaunchTypeAndCapacityProviders {
        /// The launch type given.
        launch_type: String,
        /// The providers given, comma-separated.
        providers: String,
    },
    /// Fargate without subnets.
    #[error(
        "Fargate tasks use awsvpc networking and need at least one subnet: give --subnets \
         subnet-…[,subnet-…] (or --stack NAME, whose SubnetIds output has them)"
    )]
    FargateNeedsSubnets,
    /// Security groups without subnets.
    #[error(
        "--security-groups {0} was given without --subnets: security groups belong to the awsvpc \
         network configuration, which needs --subnets subnet-…[,subnet-…]"
    )]
    SecurityGroupsWithoutSubnets(String),
    /// A list entry is empty (`a,,b`).
    #[error("{flag} {given:?} has an empty entry: give comma-separated ids without blanks")]
    EmptyEntry {
        /// The flag.
        flag: &'static str,
        /// The whole list as given.
        given: String,
    },
    /// Too many subnets or security groups.
    #[error("{flag} has {given} entries; an awsvpc network configuration takes at most {max}")]
    TooMany {
        /// The flag.
        flag: &'static str,
        /// How many were given.
        given: usize,
        /// The ECS limit.
        max: usize,
    },
    /// A capacity provider entry that does not parse or is out of range.
    #[error(
        "--capacity-provider {given:?}: {why}; accepted: NAME[:WEIGHT[:BASE]], e.g. FARGATE_SPOT:3 \
         or FARGATE:1:2, weight 0–{CAPACITY_PROVIDER_WEIGHT_MAX}, base 0–{CAPACITY_PROVIDER_BASE_MAX} \
         on one provider at most, up to {CAPACITY_PROVIDERS_MAX} providers"
    )]
    CapacityProvider {
        /// The entry as given.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// A public IP was asked for on EC2.
    #[error(
        "--assign-public-ip works for Fargate tasks only (launch type {0}); EC2 tasks in awsvpc \
         mode cannot get a public IP: use private subnets with a NAT gateway, or Fargate"
    )]
    PublicIpNotFargate(String),
    /// A platform version was given for EC2.
    #[error(
        "--platform-version {version:?} applies to Fargate only, not to launch type {launch_type}"
    )]
    PlatformVersionNotFargate {
        /// The version given.
        version: String,
        /// The launch type given.
        launch_type: String,
    },
    /// The run id cannot be ECS's `startedBy`.
    #[error(
        "run id {0:?} cannot be used as ECS's startedBy, which is how `launcher stop RUN_ID` finds \
         the run's tasks: it must be 1–{STARTED_BY_MAX_LEN} characters, letters, digits, '-' or '_'"
    )]
    RunId(String),
    /// A task count of zero.
    #[error("--tasks 0: a fleet needs at least 1 task")]
    ZeroTasks,
}

impl EcsConfig {
    /// Checks everything that can be checked without calling AWS, so a bad flag fails before the
    /// first task starts.
    pub(crate) fn validate(&self) -> Result<(), EcsConfigError> {
        for (flag, value, what) in [
            ("--cluster", &self.cluster, "ECS cluster name or ARN"),
            (
                "--task-definition",
                &self.task_definition,
                "task definition family, family:revision or ARN",
            ),
            (
                "--container",
                &self.container,
                "name of the worker container in the task definition",
            ),
        ] {
            if value.trim().is_empty() {
                return Err(EcsConfigError::Empty { flag, what });
            }
        }
        for (flag, list, max) in [
            ("--subnets", &self.subnets, AWSVPC_MAX_SUBNETS),
            (
                "--security-groups",
                &self.security_groups,
                AWSVPC_MAX_SECURITY_GROUPS,
            ),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(EcsConfigError::EmptyEntry {
                    flag,
                    given: list.join(","),
                });
            }
            if list.len() > max {
                return Err(EcsConfigError::TooMany {
                    flag,
                    given: list.len(),
                    max,
                });
            }
        }
        let launch_type = match &self.launch_type {
            None => None,
            Some(lt) => match lt.to_ascii_uppercase().as_str() {
                "FARGATE" => Some("FARGATE"),
                "EC2" => Some("EC2"),
                _ => return Err(EcsConfigError::LaunchType(lt.clone())),
            },
        };
        if let (Some(lt), false) = (launch_type, self.capacity_providers.is_empty()) {
            return Err(EcsConfigError::LaunchTypeAndCapacityProviders {
                launch_type: lt.to_string(),
                providers: self
                    .capacity_providers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        self.validate_capacity_providers()?;
        if !self.security_groups.is_empty() && self.subnets.is_empty() {
            return Err(EcsConfigError::SecurityGroupsWithoutSubnets(
                self.security_groups.join(","),
            ));
        }
        if self.is_fargate() && self.subnets.is_empty() {
            return Err(EcsConfigError::FargateNeedsSubnets);
        }
        if launch_type == Some("EC2") {
            if self.assign_public_ip {
                return Err(EcsConfigError::PublicIpNotFargate("EC2".into()));
            }
            if let Some(version) = &self.platform_version {
                return Err(EcsConfigError::PlatformVersionNotFargate {
                    version: version.clone(),
                    launch_type: "EC2".into(),
                });
            }
        }
        Ok(())
    }

    fn validate_capacity_providers(&self) -> Result<(), EcsConfigError> {
        let bad = |c: &CapacityProvider, why: String| EcsConfigError::CapacityProvider {
            given: c.to_string(),
            why,
        };
        if self.capacity_providers.len() > CAPACITY_PROVIDERS_MAX {
            let c = &self.capacity_providers[CAPACITY_PROVIDERS_MAX];
            return Err(bad(
                c,
                format!(
                    "{} providers given, at most {CAPACITY_PROVIDERS_MAX} allowed",
                    self.capacity_providers.len()
                ),
            ));
        }
        let mut with_base = None;
        for c in &self.capacity_providers {
            c.check().map_err(|why| bad(c, why))?;
            if c.base > 0 {
                if let Some(first) = with_base.replace(&c.name) {
                    return Err(bad(
                        c,
                        format!("{first} already has a base; only one provider may have one"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the tasks run on Fargate: launch type FARGATE or a FARGATE/FARGATE_SPOT provider.
    fn is_fargate(&self) -> bool {
        self.launch_type
            .as_deref()
            .is_some_and(|lt| lt.eq_ignore_ascii_case("FARGATE"))
            || self
                .capacity_providers
                .iter()
                .any(|c| c.name == "FARGATE" || c.name == "FARGATE_SPOT")
    }
}

/// Checks that `run_id` can be ECS's `startedBy` (1–36 letters, digits, `-`, `_`).
pub(crate) fn validate_run_id(run_id: &str) -> Result<(), EcsConfigError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= STARTED_BY_MAX_LEN
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EcsConfigError::RunId(run_id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fargate() -> EcsConfig {
        EcsConfig {
            cluster: "c".into(),
            task_definition: "td".into(),
            container: "worker".into(),
            subnets: vec!["subnet-1".into()],
            launch_type: Some("FARGATE".into()),
            ..EcsConfig::default()
        }
    }

    #[test]
    fn valid_fargate_config_passes() {
        fargate().validate().unwrap();
        let mut spot = fargate();
        spot.launch_type = None;
        spot.capacity_providers = vec![
            "FARGATE_SPOT:3".parse().unwrap(),
            "FARGATE:1:2".parse().unwrap(),
        ];
        spot.validate().unwrap();
        assert!(spot.is_fargate());
    }

    #[test]
    fn launch_type_and_capacity_providers_are_exclusive() {
        let mut c = fargate();
        c.capacity_providers = vec!["FARGATE_SPOT".parse().unwrap()];
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--launch-type FARGATE") && e.contains("--capacity-provider FARGATE_SPOT"),
            "{e}"
        );
    }

    #[test]
    fn fargate_needs_subnets() {
        let mut c = fargate();
        c.subnets.clear();
        assert_eq!(c.validate(), Err(EcsConfigError::FargateNeedsSubnets));
        assert!(EcsConfigError::FargateNeedsSubnets
            .to_string()
            .contains("--subnets"));
        // EC2 without awsvpc is fine.
        c.launch_type = Some("ec2".into());
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_flag() {
        let mut c = fargate();
        c.launch_type = Some("SPOT".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("use FARGATE or EC2"));
        let mut c = fargate();
        c.cluster = " ".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--cluster is empty"));
        let mut c = fargate();
        c.subnets = vec!["a".into(), String::new()];
        assert!(c.validate().unwrap_err().to_string().contains("--subnets"));
        let mut c = fargate();
        c.security_groups = (0..6).map(|i| format!("sg-{i}")).collect();
        assert!(c.validate().unwrap_err().to_string().contains("at most 5"));
        let mut c = fargate();
        c.launch_type = Some("EC2".into());
        c.assign_public_ip = true;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("Fargate tasks only"));
        let mut c = fargate();
        c.launch_type = None;
        c.capacity_providers = vec![
            "FARGATE:1:1".parse().unwrap(),
            "FARGATE_SPOT:1:1".parse().unwrap(),
        ];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("only one provider"));
        let e = "FARGATE:x"
            .parse::<CapacityProvider>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("weight is not a whole number") && e.contains("NAME[:WEIGHT[:BASE]]"),
            "{e}"
        );
    }

    #[test]
    fn run_id_must_fit_started_by() {
        validate_run_id("20240101T120000Z-ab12_cd").unwrap();
        assert!(validate_run_id("").is_err());
        assert!(validate_run_id("has space").is_err());
        assert!(validate_run_id("a.b").is_err());
        let e = validate_run_id(&"x".repeat(37)).unwrap_err().to_string();
        assert!(e.contains("1–36 characters"), "{e}");
    }
}
