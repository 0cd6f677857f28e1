//! The worker's scenario: read from `FLEETLOAD_*` environment variables in two stages.
//!
//! [`RawScenario`] holds exactly what the user typed (filled by `envy`); [`Scenario::from_env`]
//! turns it into typed values and is the only place that rejects input. Every rejection is a
//! [`ScenarioError`] naming the variable, the value given and what would be accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::input::{
    is_secret_name, parse_duration, parse_int, parse_live_interval, parse_rate, redact_values,
    ScenarioError, KAFKA_PREFIX, KNOWN_VARIABLES, PREFIX, REDACTED,
};
use crate::model::keys::KeyDistribution;
use crate::model::payload::PayloadSpec;
use crate::model::profile::{LoadProfile, Stage};
use crate::model::report_url::ReportUrl;
use crate::model::target::{
    StreamRef, TargetConfig, KINESIS_MAX_BATCH_RECORDS, KINESIS_MAX_RECORD_BYTES,
};
use crate::model::trace::{EndToEnd, Role};

/// Upper bound on concurrent PutRecords requests, far above what one task ever needs.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1024;
/// Longest run a single scenario may ask for; a typo such as `60h` should not bill for days.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How far in the past `FLEETLOAD_START_AT` may be. A task that starts late counts its seconds
/// from the planned start (so the rows of every task line up), one row per second it missed:
/// tasks start minutes late at worst, and an instant much older is a stale value or a typo
/// (`1970-01-01T00:00:00Z` would be 1.8 billion rows).
pub const MAX_START_LATENESS: Duration = Duration::from_secs(3600);

/// What the user typed, one optional string per variable (stage one of two).
#[derive(Debug, Default, Deserialize)]
pub struct RawScenario {
    /// `kinesis`, `kafka` or `null`.
    pub target: Option<String>,
    /// Kinesis stream name or ARN.
    pub stream: Option<String>,
    /// Kafka topic.
    pub topic: Option<String>,
    /// How long to produce (`30s`, `5m`).
    pub duration: Option<String>,
    /// Target events per second; `0` means as fast as the target accepts.
    pub rate: Option<String>,
    /// Load profile: `rate@duration` steps, `ramp:` to ramp to a step.
    pub stages: Option<String>,
    /// Records per PutRecords call.
    pub batch_size: Option<String>,
    /// Concurrent PutRecords requests.
    pub max_in_flight: Option<String>,
    /// `sensor`, an inline JSON template or `@path` to one.
    pub payload: Option<String>,
    /// Number of distinct keys.
    pub keys: Option<String>,
    /// Seed for every random choice.
    pub seed: Option<String>,
    /// `uniform`, `zipf:S`, `hot:P%:Q%` or `sequential`.
    pub key_distribution: Option<String>,
    /// Kinesis: `on` packs user records into KPL aggregated records.
    pub kinesis_aggregate: Option<String>,
    /// Where the report goes.
    pub report_url: Option<String>,
    /// The run id.
    pub run_id: Option<String>,
    /// This task's id.
    pub task_id: Option<String>,
    /// RFC 3339 start instant.
    pub start_at: Option<String>,
    /// `produce` or `consume`.
    pub role: Option<String>,
    /// `on` adds a trace field to every produced event.
    pub trace: Option<String>,
    /// The trace field's name.
    pub trace_field: Option<String>,
    /// Consumer: the trace's place in a record, as a JSON pointer.
    pub trace_pointer: Option<String>,
    /// Consumer: how long to read after the producers' planned end.
    pub settle: Option<String>,
    /// Consumer: `INDEX/COUNT`, this task's place among the run's consumers.
    pub consumer: Option<String>,
    /// How often the task writes a live window (`10s`), or `off`.
    pub live_interval: Option<String>,
}

/// A validated scenario (stage two of two): everything the worker needs, typed.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where the messages go.
    pub target: TargetConfig,
    /// The rate over time.
    pub profile: LoadProfile,
    /// Records per PutRecords call (Kinesis).
    pub batch_size: usize,
    /// Concurrent requests; `None` lets the target choose.
    pub max_in_flight: Option<usize>,
    /// What each event looks like.
    pub payload: PayloadSpec,
    /// Number of distinct keys (sensor ids).
    pub keys: u64,
    /// Seed for every random choice.
    pub seed: u64,
    /// Whether the seed was given (a run can then be repeated) or drawn.
    pub seed_given: bool,
    /// How each event's key is drawn over the keys.
    pub key_distribution: KeyDistribution,
    /// Where the report goes.
    pub report_url: ReportUrl,
    /// The run this task belongs to.
    pub run_id: String,
    /// This task's id, when given; otherwise the worker asks ECS or uses hostname-pid.
    pub task_id: Option<String>,
    /// The instant every task of the run starts producing; `None` means now.
    pub start_at: Option<DateTime<Utc>>,
    /// Every `FLEETLOAD_*` variable as given, secrets redacted: what the report shows.
    pub shown: BTreeMap<String, String>,
    /// The values of the secret variables, so that text from elsewhere (a library's error
    /// message, an outcome reason) can be cleaned of them with [`Scenario::redact`].
    pub secrets: Vec<String>,
    /// Role, trace and the consumer's settings (`FLEETLOAD_ROLE`, `FLEETLOAD_TRACE*`,
    /// `FLEETLOAD_SETTLE`).
    pub end_to_end: EndToEnd,
    /// How often the task writes a live window (`FLEETLOAD_LIVE_INTERVAL`); `None` when off.
    pub live_interval: Option<Duration>,
}

impl Scenario {
    /// Validates the `FLEETLOAD_*` variables among `vars` (other variables are ignored).
    pub fn from_env<I, K, V>(vars: I) -> Result<Scenario, ScenarioError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut ours: Vec<(String, String)> = Vec::new();
        let mut kafka = BTreeMap::new();
        let mut shown = BTreeMap::new();
        let mut secrets = Vec::new();
        let mut kafka_names: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in vars {
            let (k, v): (String, String) = (k.into(), v.into());
            if !k.starts_with(PREFIX) {
                continue;
            }
            let display = if is_secret_name(&k) {
                secrets.push(v.clone());
                REDACTED.to_string()
            } else {
                v.clone()
            };
            // A CI pipeline's unset variable expands to "": taking that for "unset" would run a
            // default the user never chose.
            if v.trim().is_empty() {
                return Err(ScenarioError::invalid(
                    &k,
                    &v,
                    "empty",
                    format!("a value, or no {k} at all (then its default applies)"),
                ));
            }
            shown.insert(k.clone(), display);
            if let Some(prop) = k.strip_prefix(KAFKA_PREFIX) {
                if prop.is_empty() || !prop.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ScenarioError::invalid(
                        &k,
                        &v,
                        "not a librdkafka property name",
                        "FLEETLOAD_KAFKA_<PROPERTY> with the property upper-cased and dots as underscores",
                    ));
                }
                let property = prop.to_ascii_lowercase().replace('_', ".");
                if let Some(other) = kafka_names.insert(property.clone(), k.clone()) {
                    return Err(ScenarioError::invalid(
                        &k,
                        &v,
                        format!("{other} also sets librdkafka property {property}"),
                        "each librdkafka property set by one variable",
                    ));
                }
                kafka.insert(property, v);
            } else if KNOWN_VARIABLES.contains(&k.as_str()) {
                ours.push((k, v));
            } else {
                return Err(ScenarioError::Unknown {
                    suggestion: suggest(&k),
                    name: k,
                });
            }
        }
        let raw: RawScenario = envy::prefixed(PREFIX).from_iter(ours).map_err(|e| {
            // Every field is an optional string, so envy can only fail on something unexpected.
            ScenarioError::invalid("FLEETLOAD_*", "", e.to_string(), "strings")
        })?;
        let mut scenario = Scenario::try_from_raw(raw, kafka)?;
        scenario.shown = shown;
        scenario.secrets = secrets;
        Ok(scenario)
    }

    fn try_from_raw(
        raw: RawScenario,
        kafka: BTreeMap<String, String>,
    ) -> Result<Scenario, ScenarioError> {
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let target_name = present(&raw.target).ok_or(ScenarioError::Missing {
            name: "FLEETLOAD_TARGET",
            why: String::new(),
            accepted: "kinesis, kafka or null".into(),
        })?;
        let target = match target_name.to_ascii_lowercase().as_str() {
            "kinesis" => {
                if let Some(topic) = present(&raw.topic) {
                    return Err(ScenarioError::invalid(
                        "FLEETLOAD_TOPIC",
                        &topic,
                        "the target is kinesis",
                        "FLEETLOAD_STREAM for kinesis",
                    ));
                }
                let stream = present(&raw.stream).ok_or(ScenarioError::Missing {
                    name: "FLEETLOAD_STREAM",
                    why: " for FLEETLOAD_TARGET=kinesis".into(),
                    accepted: "a stream name or ARN".into(),
                })?;
                let aggregate = match present(&raw.kinesis_aggregate) {
                    None => false,
                    Some(v) => match v.to_ascii_lowercase().as_str() {
                        "on" => true,
                        "off" => false,
                        _ => {
                            return Err(ScenarioError::invalid(
                                "FLEETLOAD_KINESIS_AGGREGATE",
                                &v,
                                "not on or off",
                                "on (user records packed into KPL aggregated records) or off (the default)",
                            ))
                        }
                    },
                };
                TargetConfig::Kinesis {
                    stream: StreamRef::parse(&stream)?,
                    aggregate,
                }
            }
            "kafka" => {
                if let Some(stream) = present(&raw.stream) {
                    return Err(ScenarioError::invalid(
                        "FLEETLOAD_STREAM",
                        &stream,
                        "the target is kafka",
                        "FLEETLOAD_TOPIC for kafka",
                    ));
                }
                let topic = present(&raw.topic).ok_or(ScenarioError::Missing {
                    name: "FLEETLOAD_TOPIC",
                    why: " for FLEETLOAD_TARGET=kafka".into(),
                    accepted: "a topic name".into(),
                })?;
                if topic.len() > 249
                    || !topic
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err(ScenarioError::invalid(
                        "FLEETLOAD_TOPIC",
                        &topic,
                        "not a valid Kafka topic name",
                        "1-249 characters of A-Z a-z 0-9 . _ -",
                    ));
                }
                if !kafka.contains_key("bootstrap.servers") {
                    return Err(ScenarioError::Missing {
                        name: "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS",
                        why: " for FLEETLOAD_TARGET=kafka".into(),
                        accepted: "host:port[,host:port...]".into(),
                    });
                }
                TargetConfig::Kafka {
                    topic,
                    properties: kafka.clone(),
                }
            }
            "null" => TargetConfig::Null,
            _ => {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_TARGET",
                    &target_name,
                    "unknown target",
                    "kinesis, kafka or null",
                ))
            }
        };
        if !matches!(target, TargetConfig::Kinesis { .. }) {
            if let Some(v) = present(&raw.kinesis_aggregate) {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_KINESIS_AGGREGATE",
                    &v,
                    format!(
                        "aggregation only applies to FLEETLOAD_TARGET=kinesis, the target is {}",
                        target.kind()
                    ),
                    "no FLEETLOAD_KINESIS_AGGREGATE for this target",
                ));
            }
        }
        if !matches!(target, TargetConfig::Kafka { .. }) {
            if let Some(name) = kafka.keys().next() {
                return Err(ScenarioError::invalid(
                    &format!(
                        "{KAFKA_PREFIX}{}",
                        name.to_ascii_uppercase().replace('.', "_")
                    ),
                    kafka.get(name).map(String::as_str).unwrap_or(""),
                    format!(
                        "Kafka properties only apply to FLEETLOAD_TARGET=kafka, the target is {}",
                        target.kind()
                    ),
                    "no FLEETLOAD_KAFKA_* variables for this target",
                ));
            }
        }

        let profile = match (
            present(&raw.stages),
            present(&raw.rate),
            present(&raw.duration),
        ) {
            (Some(_), Some(_), _) => {
                return Err(ScenarioError::Conflict {
                    first: "FLEETLOAD_STAGES",
                    second: "FLEETLOAD_RATE",
                    reason: "the stages set the rate of each step",
                })
            }
            (Some(_), None, Some(_)) => {
                return Err(ScenarioError::Conflict {
                    first: "FLEETLOAD_STAGES",
                    second: "FLEETLOAD_DURATION",
                    reason: "the run lasts the sum of the steps",
                })
            }
            (Some(stages), None, None) => LoadProfile::parse_stages(&stages)?,
            (None, rate, duration) => {
                let duration = match duration {
                    Some(d) => parse_duration("FLEETLOAD_DURATION", &d)?,
                    None => Duration::from_secs(60),
                };
                let rate = match rate {
                    Some(r) => parse_rate("FLEETLOAD_RATE", &r, true)?,
                    None => 0.0,
                };
                LoadProfile::new(vec![Stage {
                    rate,
                    duration,
                    ramp: false,
                }])
            }
        };
        if profile.total_duration() > MAX_DURATION {
            let (name, typed) = match present(&raw.stages) {
                Some(stages) => ("FLEETLOAD_STAGES", stages),
                None => (
                    "FLEETLOAD_DURATION",
                    present(&raw.duration).unwrap_or_default(),
                ),
            };
            return Err(ScenarioError::invalid(
                name,
                &typed,
                format!(
                    "the run would last {}, longer than 24h",
                    humantime::format_duration(profile.total_duration())
                ),
                "a total duration from 1s to 24h",
            ));
        }

        let batch_size = match present(&raw.batch_size) {
            Some(b) => parse_int(
                "FLEETLOAD_BATCH_SIZE",
                &b,
                1,
                KINESIS_MAX_BATCH_RECORDS as u64,
                "an integer from 1 to 500 (the PutRecords limit)",
            )? as usize,
            None => KINESIS_MAX_BATCH_RECORDS,
        };
        let max_in_flight = present(&raw.max_in_flight)
            .map(|m| {
                parse_int(
                    "FLEETLOAD_MAX_IN_FLIGHT",
                    &m,
                    1,
                    MAX_IN_FLIGHT_LIMIT as u64,
                    "an integer from 1 to 1024",
                )
                .map(|v| v as usize)
            })
            .transpose()?;
        let keys = match present(&raw.keys) {
            Some(k) => parse_int(
                "FLEETLOAD_KEYS",
                &k,
                1,
                u32::MAX as u64,
                "an integer from 1 to 4294967295",
            )?,
            None => 10_000,
        };
        let (seed, seed_given) = match present(&raw.seed) {
            Some(s) => (
                parse_int(
                    "FLEETLOAD_SEED",
                    &s,
                    0,
                    u64::MAX,
                    "an unsigned 64-bit integer",
                )?,
                true,
            ),
            None => (rand::random(), false),
        };
        let key_distribution = match present(&raw.key_distribution) {
            Some(d) => KeyDistribution::parse(&d)?,
            None => KeyDistribution::Uniform,
        };
        let payload = PayloadSpec::parse(present(&raw.payload).as_deref().unwrap_or("sensor"))?;
        if let TargetConfig::Kinesis { .. } = target {
            if payload.max_len() + 64 > KINESIS_MAX_RECORD_BYTES {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_PAYLOAD",
                    "(template)",
                    format!(
                        "events can be {} bytes, above the 1 MiB Kinesis record limit",
                        payload.max_len()
                    ),
                    "a template whose events stay below 1 MiB",
                ));
            }
        }
        let report_url = ReportUrl::parse(
            present(&raw.report_url)
                .as_deref()
                .unwrap_or("./fleetload-runs"),
        )?;
        let run_id = match present(&raw.run_id) {
            Some(id) => validate_id("FLEETLOAD_RUN_ID", &id)?,
            None => generate_run_id(),
        };
        let task_id = present(&raw.task_id)
            .map(|id| validate_id("FLEETLOAD_TASK_ID", &id))
            .transpose()?;
        let start_at = match present(&raw.start_at) {
            Some(s) => Some(parse_start_at(&s, Utc::now())?),
            None => None,
        };

        let end_to_end = EndToEnd::parse(
            present(&raw.role).as_deref(),
            present(&raw.trace).as_deref(),
            present(&raw.trace_field).as_deref(),
            present(&raw.trace_pointer).as_deref(),
            present(&raw.settle).as_deref(),
            present(&raw.consumer).as_deref(),
        )?;
        if end_to_end.role == Role::Consume && matches!(target, TargetConfig::Null) {
            return Err(ScenarioError::invalid(
                "FLEETLOAD_TARGET",
                "null",
                "a consumer task reads the output of the system under test",
                "kinesis (with FLEETLOAD_STREAM) or kafka (with FLEETLOAD_TOPIC) for FLEETLOAD_ROLE=consume",
            ));
        }
        let live_interval = match present(&raw.live_interval) {
            Some(v) => parse_live_interval("FLEETLOAD_LIVE_INTERVAL", &v)?,
            None => Some(crate::model::live::DEFAULT_LIVE_INTERVAL),
        };
        if end_to_end.trace && !payload.renders_object() {
            return Err(ScenarioError::invalid(
                "FLEETLOAD_PAYLOAD",
                "(template)",
                "with FLEETLOAD_TRACE=on every event gets a trace field, so the template must render a JSON object",
                "a template whose events are JSON objects {...}",
            ));
        }

        Ok(Scenario {
            target,
            profile,
            batch_size,
            max_in_flight,
            payload,
            keys,
            seed,
            seed_given,
            key_distribution,
            report_url,
            run_id,
            task_id,
            start_at,
            shown: BTreeMap::new(),
            secrets: Vec::new(),
            end_to_end,
            live_interval,
        })
    }

    /// `text` with every secret value of the scenario replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        redact_values(text, &self.secrets)
    }

    /// The Kafka properties with secrets redacted, for logs.
    pub fn redacted_kafka(&self) -> BTreeMap<String, String> {
        match &self.target {
            TargetConfig::Kafka { properties, .. } => properties
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if is_secret_name(k) {
                            REDACTED.to_string()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// `FLEETLOAD_START_AT` as typed, judged at `now`: an RFC 3339 instant at most 24h ahead (further
/// is a typo, and the task would idle and bill) and at most [`MAX_START_LATENESS`] behind.
fn parse_start_at(typed: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScenarioError> {
    let accepted = "an RFC 3339 instant such as 2026-11-22T10:00:00Z, from 1h ago to 24h ahead \
                    (a past one starts the task at once)";
    let refuse = |why: String| ScenarioError::invalid("FLEETLOAD_START_AT", typed, why, accepted);
    let t = DateTime::parse_from_rfc3339(typed)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| refuse(e.to_string()))?;
    if t > now + chrono::Duration::hours(24) {
        return Err(refuse("more than 24h in the future".into()));
    }
    let lateness = chrono::Duration::from_std(MAX_START_LATENESS).unwrap_or_default();
    if t < now - lateness {
        return Err(refuse(format!(
            "more than {} in the past (a late task counts its seconds from this instant)",
            humantime::format_duration(MAX_START_LATENESS)
        )));
    }
    Ok(t)
}

/// A run id made of the UTC time and a random suffix: sortable and unique enough.
pub fn generate_run_id() -> String {
    format!(
        "{}-{:04x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// Ids become S3 keys and directory names: keep them to a safe alphabet.
fn validate_id(name: &str, value: &str) -> Result<String, ScenarioError> {
    if value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.')
    {
        Ok(value.to_string())
    } else {
        Err(ScenarioError::invalid(
            name,
            value,
            "not a safe id",
            "1-128 characters of A-Z a-z 0-9 - _ . (not starting with .)",
        ))
    }
}

/// The known variable closest to a misspelt one, if any is close enough to be meant.
fn suggest(name: &str) -> Option<String> {
    KNOWN_VARIABLES
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Scenario, ScenarioError> {
        Scenario::from_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn null(extra: &[(&str, &str)]) -> Result<Scenario, ScenarioError> {
        let mut v = vec![("FLEETLOAD_TARGET", "null")];
        v.extend_from_slice(extra);
        parse(&v)
    }

    #[test]
    fn defaults() {
        let s = null(&[]).unwrap();
        assert_eq!(s.target, TargetConfig::Null);
        assert_eq!(s.profile.total_duration(), Duration::from_secs(60));
        assert_eq!(s.profile.stages()[0].rate, 0.0);
        assert_eq!(s.batch_size, 500);
        assert_eq!(s.keys, 10_000);
        assert!(!s.seed_given);
        assert_eq!(s.report_url, ReportUrl::Local("./fleetload-runs".into()));
        assert!(s.start_at.is_none());
        assert!(!s.run_id.is_empty());
    }

    #[test]
    fn misspelt_variable_suggests_the_name() {
        let e = null(&[("FLEETLOAD_DURATON", "10s")]).unwrap_err();
        assert_eq!(
            e,
            ScenarioError::Unknown {
                name: "FLEETLOAD_DURATON".into(),
                suggestion: Some("FLEETLOAD_DURATION".into())
            }
        );
        assert!(
            e.to_string().contains("did you mean FLEETLOAD_DURATION?"),
            "{e}"
        );
        let e = null(&[("FLEETLOAD_COMPLETELY_DIFFERENT", "1")]).unwrap_err();
        assert!(matches!(
            e,
            ScenarioError::Unknown {
                suggestion: None,
                ..
            }
        ));
    }

    #[test]
    fn other_variables_are_ignored() {
        let s = parse(&[
            ("FLEETLOAD_TARGET", "null"),
            ("PATH", "/bin"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(s.shown.len(), 1);
    }

    #[test]
    fn target_errors() {
        assert!(matches!(
            parse(&[]).unwrap_err(),
            ScenarioError::Missing {
                name: "FLEETLOAD_TARGET",
                ..
            }
        ));
        let e = parse(&[("FLEETLOAD_TARGET", "pulsar")]).unwrap_err();
        assert!(e.to_string().contains("kinesis, kafka or null"), "{e}");
        assert!(e.to_string().contains("\"pulsar\""), "{e}");
        assert!(matches!(
            parse(&[("FLEETLOAD_TARGET", "kinesis")]).unwrap_err(),
            ScenarioError::Missing {
                name: "FLEETLOAD_STREAM",
                ..
            }
        ));
        assert!(matches!(
            parse(&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t")]).unwrap_err(),
            ScenarioError::Missing {
                name: "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS",
                ..
            }
        ));
        assert!(matches!(
            parse(&[
                ("FLEETLOAD_TARGET", "kafka"),
                ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "h:1")
            ])
            .unwrap_err(),
            ScenarioError::Missing {
                name: "FLEETLOAD_TOPIC",
                ..
            }
        ));
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kinesis"),
            ("FLEETLOAD_STREAM", "bad name!"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("FLEETLOAD_STREAM"), "{e}");
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kinesis"),
            ("FLEETLOAD_STREAM", "arn:aws:s3:::bucket"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("not a Kinesis stream ARN"), "{e}");
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kinesis"),
            ("FLEETLOAD_STREAM", "s"),
            ("FLEETLOAD_TOPIC", "t"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("FLEETLOAD_TOPIC"), "{e}");
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "bad topic"),
            ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "h:1"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("FLEETLOAD_TOPIC"), "{e}");
        let e = null(&[("FLEETLOAD_KAFKA_ACKS", "all")]).unwrap_err();
        assert!(e.to_string().contains("FLEETLOAD_KAFKA_ACKS"), "{e}");
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "t"),
            ("FLEETLOAD_KAFKA_", "x"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("librdkafka property"), "{e}");
    }

    #[test]
    fn stream_by_name_or_arn() {
        let s = parse(&[
            ("FLEETLOAD_TARGET", "kinesis"),
            (
                "FLEETLOAD_STREAM",
                "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
            ),
        ])
        .unwrap();
        match s.target {
            TargetConfig::Kinesis { stream, aggregate } => {
                assert_eq!(stream.name(), "orders");
                assert!(matches!(stream, StreamRef::Arn(_)));
                assert!(!aggregate, "aggregation is off unless asked for");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kafka_properties_map_to_dotted_names_and_secrets_are_redacted() {
        let s = parse(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "events"),
            ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("FLEETLOAD_KAFKA_SASL_PASSWORD", "hunter2"),
            ("FLEETLOAD_KAFKA_SSL_KEY_PEM", "-----BEGIN"),
            ("FLEETLOAD_KAFKA_LINGER_MS", "5"),
        ])
        .unwrap();
        let TargetConfig::Kafka { properties, topic } = &s.target else {
            panic!()
        };
        assert_eq!(topic, "events");
        assert_eq!(properties["bootstrap.servers"], "127.0.0.1:9092");
        assert_eq!(properties["linger.ms"], "5");
        assert_eq!(properties["sasl.password"], "hunter2");
        let shown = format!("{:?} {:?}", s.shown, s.redacted_kafka());
        assert!(
            !shown.contains("hunter2") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert_eq!(s.shown["FLEETLOAD_KAFKA_SASL_PASSWORD"], REDACTED);
        assert_eq!(s.redacted_kafka()["ssl.key.pem"], REDACTED);
    }

    #[test]
    fn secret_values_do_not_appear_in_errors() {
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "t"),
            ("FLEETLOAD_KAFKA_SASL-PASSWORD", "hunter2"),
        ])
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn durations_and_rates() {
        let s = null(&[("FLEETLOAD_DURATION", "1m30s"), ("FLEETLOAD_RATE", "2.5k")]).unwrap();
        assert_eq!(s.profile.total_duration(), Duration::from_secs(90));
        assert_eq!(s.profile.stages()[0].rate, 2500.0);
        for bad in ["abc", "-5", "10", "500ms", "0s"] {
            let e = null(&[("FLEETLOAD_DURATION", bad)]).unwrap_err();
            assert!(
                e.to_string().starts_with("FLEETLOAD_DURATION="),
                "{bad}: {e}"
            );
        }
        assert!(null(&[("FLEETLOAD_DURATION", "25h")])
            .unwrap_err()
            .to_string()
            .contains("24h"));
        for bad in ["fast", "-1", "NaN", "inf", "1e12"] {
            let e = null(&[("FLEETLOAD_RATE", bad)]).unwrap_err();
            assert!(e.to_string().starts_with("FLEETLOAD_RATE="), "{bad}: {e}");
        }
        assert_eq!(
            null(&[("FLEETLOAD_RATE", "1M/s")])
                .unwrap()
                .profile
                .stages()[0]
                .rate,
            1e6
        );
    }

    #[test]
    fn stages_conflict_with_rate_and_duration() {
        let e = null(&[("FLEETLOAD_STAGES", "100@10s"), ("FLEETLOAD_RATE", "5")]).unwrap_err();
        assert!(matches!(
            e,
            ScenarioError::Conflict {
                second: "FLEETLOAD_RATE",
                ..
            }
        ));
        let e = null(&[
            ("FLEETLOAD_STAGES", "100@10s"),
            ("FLEETLOAD_DURATION", "5s"),
        ])
        .unwrap_err();
        assert!(matches!(
            e,
            ScenarioError::Conflict {
                second: "FLEETLOAD_DURATION",
                ..
            }
        ));
        let s = null(&[("FLEETLOAD_STAGES", "100@30s,ramp:500@30s")]).unwrap();
        assert_eq!(s.profile.total_duration(), Duration::from_secs(60));
        let e = null(&[("FLEETLOAD_STAGES", "100@30s,fast@1m")]).unwrap_err();
        assert!(e.to_string().contains("FLEETLOAD_STAGES"), "{e}");
    }

    #[test]
    fn integers() {
        for (name, bad) in [
            ("FLEETLOAD_BATCH_SIZE", "0"),
            ("FLEETLOAD_BATCH_SIZE", "501"),
            ("FLEETLOAD_BATCH_SIZE", "x"),
            ("FLEETLOAD_MAX_IN_FLIGHT", "0"),
            ("FLEETLOAD_MAX_IN_FLIGHT", "5000"),
            ("FLEETLOAD_KEYS", "0"),
            ("FLEETLOAD_SEED", "-1"),
        ] {
            let e = null(&[(name, bad)]).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{name}=")),
                "{name}={bad}: {e}"
            );
        }
        assert!(null(&[("FLEETLOAD_BATCH_SIZE", "501")])
            .unwrap_err()
            .to_string()
            .contains("PutRecords"));
        let s = null(&[
            ("FLEETLOAD_SEED", "42"),
            ("FLEETLOAD_KEYS", "7"),
            ("FLEETLOAD_MAX_IN_FLIGHT", "3"),
            ("FLEETLOAD_BATCH_SIZE", "100"),
        ])
        .unwrap();
        assert_eq!(
            (s.seed, s.seed_given, s.keys, s.max_in_flight, s.batch_size),
            (42, true, 7, Some(3), 100)
        );
    }

    #[test]
    fn key_distribution() {
        let s = null(&[]).unwrap();
        assert_eq!(s.key_distribution, KeyDistribution::Uniform);
        let s = null(&[("FLEETLOAD_KEY_DISTRIBUTION", "zipf:1.2")]).unwrap();
        assert_eq!(s.key_distribution, KeyDistribution::Zipf { s: 1.2 });
        let e = null(&[("FLEETLOAD_KEY_DISTRIBUTION", "hot:90")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("FLEETLOAD_KEY_DISTRIBUTION=\"hot:90\""),
            "{e}"
        );
    }

    #[test]
    fn kinesis_aggregation_is_on_or_off_and_only_for_kinesis() {
        let kinesis = |v: &str| {
            parse(&[
                ("FLEETLOAD_TARGET", "kinesis"),
                ("FLEETLOAD_STREAM", "s"),
                ("FLEETLOAD_KINESIS_AGGREGATE", v),
            ])
        };
        for (v, on) in [("on", true), ("ON", true), ("off", false)] {
            let TargetConfig::Kinesis { aggregate, .. } = kinesis(v).unwrap().target else {
                panic!()
            };
            assert_eq!(aggregate, on, "{v}");
        }
        let e = kinesis("yes").unwrap_err().to_string();
        assert!(
            e.starts_with("FLEETLOAD_KINESIS_AGGREGATE=\"yes\" is not valid: not on or off"),
            "{e}"
        );
        assert!(e.contains("accepted: on"), "{e}");
        let e = null(&[("FLEETLOAD_KINESIS_AGGREGATE", "on")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("FLEETLOAD_KINESIS_AGGREGATE=\"on\" is not valid: aggregation only applies to FLEETLOAD_TARGET=kinesis, the target is null"),
            "{e}"
        );
    }

    #[test]
    fn report_urls() {
        assert_eq!(
            ReportUrl::parse("s3://my-bucket/load/tests/").unwrap(),
            ReportUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "load/tests".into()
            }
        );
        assert_eq!(
            ReportUrl::parse("s3://my-bucket").unwrap(),
            ReportUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            ReportUrl::parse("file:///tmp/r").unwrap(),
            ReportUrl::Local("/tmp/r".into())
        );
        assert_eq!(
            ReportUrl::parse("runs").unwrap(),
            ReportUrl::Local("runs".into())
        );
        for bad in ["s3://B", "file://rel", "gs://b/p", "s3://"] {
            let e = null(&[("FLEETLOAD_REPORT_URL", bad)]).unwrap_err();
            assert!(
                e.to_string().starts_with("FLEETLOAD_REPORT_URL="),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            ReportUrl::parse("s3://b-1/p").unwrap().run_url("r1"),
            "s3://b-1/p/r1"
        );
    }

    #[test]
    fn ids_and_start() {
        for (name, bad) in [
            ("FLEETLOAD_RUN_ID", "../etc"),
            ("FLEETLOAD_TASK_ID", "a/b"),
            ("FLEETLOAD_START_AT", "tomorrow"),
        ] {
            let e = null(&[(name, bad)]).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{name}=")),
                "{name}: {e}"
            );
        }
        let soon = (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
        let s = null(&[
            ("FLEETLOAD_RUN_ID", "run-1"),
            ("FLEETLOAD_TASK_ID", "t1"),
            ("FLEETLOAD_START_AT", &soon),
        ])
        .unwrap();
        assert_eq!(s.run_id, "run-1");
        assert_eq!(s.task_id.as_deref(), Some("t1"));
        let now: DateTime<Utc> = "2026-01-02T02:30:00Z".parse().unwrap();
        assert_eq!(
            parse_start_at("2026-01-02T03:04:05+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-02T02:04:05+00:00"
        );
        for (typed, why) in [
            ("1970-01-01T00:00:00Z", "more than 1h in the past"),
            ("2026-01-02T01:29:59Z", "more than 1h in the past"),
            ("2026-01-03T02:30:01Z", "more than 24h in the future"),
        ] {
            let e = parse_start_at(typed, now).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("FLEETLOAD_START_AT={typed:?}")) && e.contains(why),
                "{e}"
            );
        }
        parse_start_at("2026-01-02T01:30:00Z", now).unwrap();
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        const PLANTED: &str = "planted-s3cret-fuzz";

        /// A value a user might type, or garbage: numbers with units, instants, templates,
        /// separators, blanks and arbitrary text.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9]{0,25}(ms|s|m|h|d|k|M|/s|%)?",
                "-?[0-9]{1,6}(\\.[0-9]{0,3})?(e[0-9]{1,3})?",
                "(ramp:)?[0-9]{0,8}@[0-9]{0,12}[smh]?(,(ramp:)?[0-9]{0,4}@[0-9]{0,6}[smh]?){0,4}",
                "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
                "\\{\"a\":\"?\\{\\{(uuid|key|seq|int:-?[0-9]{1,20}:-?[0-9]{1,20}|float:-?[0-9e.]{1,8}:-?[0-9e.]{1,8}|choice:[a-z]{1,3}=[0-9]{1,20},[a-z]=[0-9]{1,20}|pad:[0-9]{1,9}|nope)\\}\\}\"?\\}",
                "(s3|file|gs)://[A-Za-z0-9./-]{0,20}",
                "[ \t]{0,3}",
                ".{0,40}",
            ]
        }

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => prop::sample::select(KNOWN_VARIABLES).prop_map(str::to_string),
                1 => "FLEETLOAD_KAFKA_[A-Za-z_.-]{0,24}",
                1 => "FLEETLOAD_[A-Z_]{0,16}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, max_shrink_time: 10_000, ..ProptestConfig::default() })]

            /// Whatever is typed, the parser answers (never panics), a refusal is one line that
            /// starts with the variable it is about, and the planted secret appears in
            /// neither the refusal nor what an accepted scenario shows.
            #[test]
            fn the_scenario_parser_refuses_by_name_and_never_leaks(
                target in prop::sample::select(&["null", "kinesis", "kafka", "KAFKA", ""][..]),
                vars in prop::collection::vec((name(), value()), 0..8),
            ) {
                let mut env: Vec<(String, String)> = vec![
                    ("FLEETLOAD_TARGET".into(), target.to_string()),
                    ("FLEETLOAD_KAFKA_SASL_PASSWORD".into(), PLANTED.into()),
                ];
                if target.eq_ignore_ascii_case("kafka") {
                    env.push(("FLEETLOAD_TOPIC".into(), "t".into()));
                    env.push(("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS".into(), "127.0.0.1:9".into()));
                }
                for (k, v) in vars {
                    env.retain(|(n, _)| *n != k);
                    env.push((k, v));
                }
                match Scenario::from_env(env) {
                    Ok(s) => {
                        let shown = format!("{:?} {:?}", s.shown, s.redacted_kafka());
                        prop_assert!(!shown.contains(PLANTED), "{}", shown);
                        prop_assert!(s.profile.total_duration() <= MAX_DURATION);
                    }
                    Err(e) => {
                        let text = e.to_string();
                        prop_assert!(!text.contains(PLANTED), "{}", text);
                        let named = e.variable().to_string();
                        prop_assert!(
                            text.starts_with(&named) || text.starts_with("unknown variable"),
                            "{}", text
                        );
                        prop_assert!(named.starts_with("FLEETLOAD_"), "{}", text);
                    }
                }
            }
        }
    }

    #[test]
    fn empty_means_unset_and_is_refused_by_name() {
        for name in KNOWN_VARIABLES
            .iter()
            .copied()
            .chain(["FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS"])
        {
            for blank in ["", "  ", "\t"] {
                let e = null(&[(name, blank)]).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("{name}={blank:?} is not valid: empty")),
                    "{name}: {e}"
                );
            }
        }
    }

    #[test]
    fn one_kafka_property_from_two_spellings_is_refused() {
        let e = parse(&[
            ("FLEETLOAD_TARGET", "kafka"),
            ("FLEETLOAD_TOPIC", "t"),
            ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "h:1"),
            ("FLEETLOAD_KAFKA_LINGER_MS", "5"),
            ("FLEETLOAD_KAFKA_linger_ms", "50"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("FLEETLOAD_KAFKA_linger_ms=")
                && e.contains("FLEETLOAD_KAFKA_LINGER_MS also sets librdkafka property linger.ms"),
            "{e}"
        );
    }

    #[test]
    fn too_long_runs_are_quoted_as_typed() {
        let e = null(&[("FLEETLOAD_DURATION", "25h")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("FLEETLOAD_DURATION=\"25h\""), "{e}");
        let e = null(&[("FLEETLOAD_STAGES", "1@20h,1@5h")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("FLEETLOAD_STAGES=\"1@20h,1@5h\""), "{e}");
        let huge = "1@18446744073709551615s,1@18446744073709551615s";
        let e = null(&[("FLEETLOAD_STAGES", huge)]).unwrap_err().to_string();
        assert!(e.starts_with("FLEETLOAD_STAGES="), "{e}");
    }

    #[test]
    fn payload_errors_name_the_variable() {
        let e = null(&[("FLEETLOAD_PAYLOAD", "{\"a\":{{nope}}}")]).unwrap_err();
        assert!(e.to_string().starts_with("FLEETLOAD_PAYLOAD="), "{e}");
    }
}
