//! What the user typed into the worker's environment, and how it is refused: the variables'
//! names, [`ScenarioError`] (every refusal names the variable, the value as given and what is
//! accepted), the redaction of secrets, and the parsers of the values several parts share
//! (durations, rates, whole numbers). The scenario, the load profile and the payload all
//! validate through here, so none of them depends on another to say what is wrong.

use std::time::Duration;

/// Prefix of every scenario variable.
pub const PREFIX: &str = "FLEETLOAD_";
/// Prefix of the librdkafka passthrough variables (`FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS`).
pub const KAFKA_PREFIX: &str = "FLEETLOAD_KAFKA_";
/// Every variable the worker knows, besides the `FLEETLOAD_KAFKA_*` passthrough.
pub const KNOWN_VARIABLES: &[&str] = &[
    "FLEETLOAD_TARGET",
    "FLEETLOAD_STREAM",
    "FLEETLOAD_TOPIC",
    "FLEETLOAD_DURATION",
    "FLEETLOAD_RATE",
    "FLEETLOAD_STAGES",
    "FLEETLOAD_BATCH_SIZE",
    "FLEETLOAD_MAX_IN_FLIGHT",
    "FLEETLOAD_PAYLOAD",
    "FLEETLOAD_KEYS",
    "FLEETLOAD_SEED",
    "FLEETLOAD_REPORT_URL",
    "FLEETLOAD_RUN_ID",
    "FLEETLOAD_TASK_ID",
    "FLEETLOAD_START_AT",
    "FLEETLOAD_ROLE",
    "FLEETLOAD_TRACE",
    "FLEETLOAD_TRACE_FIELD",
    "FLEETLOAD_TRACE_POINTER",
    "FLEETLOAD_SETTLE",
    "FLEETLOAD_CONSUMER",
    "FLEETLOAD_KEY_DISTRIBUTION",
    "FLEETLOAD_KINESIS_AGGREGATE",
    "FLEETLOAD_LIVE_INTERVAL",
];

/// A scenario the user cannot run as given. Every variant names the variable and what is accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScenarioError {
    /// A `FLEETLOAD_` variable the worker does not know.
    #[error("unknown variable {name}{}; known variables are {} and FLEETLOAD_KAFKA_<librdkafka property>",
        .suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default(),
        KNOWN_VARIABLES.join(", "))]
    Unknown {
        /// The name as given.
        name: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
    },
    /// A required variable is not set.
    #[error("{name} is required{why}; accepted: {accepted}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why it is required in this scenario (may be empty).
        why: String,
        /// What would be accepted.
        accepted: String,
    },
    /// A variable has a value that cannot be used.
    #[error("{name}={value:?} is not valid: {reason}; accepted: {accepted}")]
    Invalid {
        /// The variable.
        name: String,
        /// The value given (redacted when the variable is secret).
        value: String,
        /// What is wrong with it.
        reason: String,
        /// What would be accepted.
        accepted: String,
    },
    /// Two variables that cannot be given together.
    #[error("{first} and {second} cannot both be given: {reason}")]
    Conflict {
        /// One variable.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl ScenarioError {
    /// The variable the refusal is about (the first one, for a conflict).
    pub fn variable(&self) -> &str {
        match self {
            ScenarioError::Unknown { name, .. } | ScenarioError::Invalid { name, .. } => name,
            ScenarioError::Missing { name, .. } => name,
            ScenarioError::Conflict { first, .. } => first,
        }
    }

    pub(crate) fn invalid(
        name: &str,
        value: &str,
        reason: impl Into<String>,
        accepted: impl Into<String>,
    ) -> Self {
        let value = if is_secret_name(name) {
            REDACTED.to_string()
        } else {
            value.to_string()
        };
        ScenarioError::Invalid {
            name: name.to_string(),
            value,
            reason: reason.into(),
            accepted: accepted.into(),
        }
    }
}

/// Text that replaces a secret wherever a scenario is shown.
pub const REDACTED: &str = "***redacted***";

/// Whether a variable or Kafka property holds a secret (passwords, tokens, key material).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace('.', "_");
    ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
        || upper.contains("KEY_PEM")
        || upper.ends_with("SSL_KEY_LOCATION")
        || upper.contains("SSL_KEYSTORE")
        || upper.contains("SASL_JAAS")
        || upper.contains("OAUTHBEARER_CONFIG")
}

/// `text` with every occurrence of each of `secrets` replaced by [`REDACTED`]: for messages that
/// quote what a library said (librdkafka echoes the values it rejects), which no name-based
/// redaction can reach. Longer secrets go first, so one that contains another is hidden whole.
pub fn redact_values(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// Parses a duration such as `30s`, `5m`, `1h30m` or `500ms` (at least 1 s).
pub fn parse_duration(name: &str, value: &str) -> Result<Duration, ScenarioError> {
    let accepted = "a duration such as 30s, 5m, 1h or 1m30s (at least 1s)";
    let d = humantime::parse_duration(value.trim())
        .map_err(|e| ScenarioError::invalid(name, value, e.to_string(), accepted))?;
    if d < Duration::from_secs(1) {
        return Err(ScenarioError::invalid(
            name,
            value,
            "shorter than 1s",
            accepted,
        ));
    }
    Ok(d)
}

/// Parses `FLEETLOAD_LIVE_INTERVAL`: `off`, or a whole number of seconds from
/// [`MIN_LIVE_INTERVAL`](crate::model::live::MIN_LIVE_INTERVAL) to
/// [`MAX_LIVE_INTERVAL`](crate::model::live::MAX_LIVE_INTERVAL) (`None` is off).
pub fn parse_live_interval(name: &str, value: &str) -> Result<Option<Duration>, ScenarioError> {
    use crate::model::live::{MAX_LIVE_INTERVAL, MIN_LIVE_INTERVAL};
    let accepted = "off, or a whole number of seconds from 1s to 1h such as 10s, 30s or 1m";
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let d = humantime::parse_duration(value.trim())
        .map_err(|e| ScenarioError::invalid(name, value, e.to_string(), accepted))?;
    if d.subsec_nanos() != 0 {
        return Err(ScenarioError::invalid(
            name,
            value,
            "not a whole number of seconds (a window is made of the time series' seconds)",
            accepted,
        ));
    }
    if !(MIN_LIVE_INTERVAL..=MAX_LIVE_INTERVAL).contains(&d) {
        return Err(ScenarioError::invalid(
            name,
            value,
            "out of range",
            accepted,
        ));
    }
    Ok(Some(d))
}

/// Parses events per second: a non-negative number, optionally with a `/s` suffix and `k`/`M`.
pub fn parse_rate(name: &str, value: &str, allow_zero: bool) -> Result<f64, ScenarioError> {
    let accepted = if allow_zero {
        "events per second: a number >= 0 such as 5000, 2.5k or 1M (0 = as fast as the target accepts)"
    } else {
        "events per second: a number > 0 such as 5000, 2.5k or 1M"
    };
    let v = value.trim().trim_end_matches("/s");
    let (num, mult) = if let Some(n) = v.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('M') {
        (n, 1e6)
    } else {
        (v, 1.0)
    };
    let rate = num
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite())
        .map(|r| r * mult)
        .ok_or_else(|| ScenarioError::invalid(name, value, "not a number", accepted))?;
    if rate < 0.0 || (!allow_zero && rate == 0.0) {
        return Err(ScenarioError::invalid(
            name,
            value,
            "out of range",
            accepted,
        ));
    }
    if rate > 100e6 {
        return Err(ScenarioError::invalid(
            name,
            value,
            "above 100M events/s for one task",
            accepted,
        ));
    }
    Ok(rate)
}

pub(crate) fn parse_int(
    name: &str,
    value: &str,
    min: u64,
    max: u64,
    accepted: &str,
) -> Result<u64, ScenarioError> {
    let v = value.trim().replace('_', "");
    let n: u64 = v
        .parse()
        .map_err(|_| ScenarioError::invalid(name, value, "not an integer", accepted))?;
    if n < min || n > max {
        return Err(ScenarioError::invalid(
            name,
            value,
            "out of range",
            accepted,
        ));
    }
    Ok(n)
}
