//! The ECS service limits the backend works within, named where every check and message can
//! refer to them.

/// ECS starts at most 10 tasks per RunTask call (`count` is 1–10); larger fleets take several
/// calls, all with the same overrides.
pub(super) const RUN_TASK_MAX_COUNT: u32 = 10;

/// DescribeTasks accepts at most 100 task ARNs per call.
pub(super) const DESCRIBE_TASKS_MAX: usize = 100;

/// RunTask rejects overrides whose JSON (all fields combined, as sent) exceeds 8192 bytes. The
/// worker's whole scenario travels in the environment override, so a long stage list or an
/// inline certificate can hit this; it is checked before the first call, not discovered by it.
pub const OVERRIDES_MAX_BYTES: usize = 8192;

/// ECS's `startedBy` holds up to 36 letters, digits, hyphens and underscores. The run id goes
/// there, because ListTasks can filter on it (that is how `launcher stop RUN_ID` works).
pub(super) const STARTED_BY_MAX_LEN: usize = 36;

/// An awsvpc network configuration takes at most 16 subnets.
pub(super) const AWSVPC_MAX_SUBNETS: usize = 16;

/// An awsvpc network configuration takes at most 5 security groups.
pub(super) const AWSVPC_MAX_SECURITY_GROUPS: usize = 5;

/// A capacity provider strategy holds at most 20 providers.
pub(super) const CAPACITY_PROVIDERS_MAX: usize = 20;

/// A capacity provider's weight is 0–1000.
pub(super) const CAPACITY_PROVIDER_WEIGHT_MAX: u32 = 1000;

/// A capacity provider's base is 0–100000.
pub(super) const CAPACITY_PROVIDER_BASE_MAX: u32 = 100_000;

/// StopTask keeps at most 255 characters of its `reason`.
pub(super) const STOP_REASON_MAX_CHARS: usize = 255;

/// Tag key that carries the run id on every task (with ECS managed tags, also on its ENI).
pub const RUN_ID_TAG: &str = "fleetload:run-id";
