//! Where a task's events go: the target and its settings ([`TargetConfig`]), a Kinesis stream by
//! name or ARN ([`StreamRef`]), and the limits Kinesis puts on a PutRecords call.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::input::ScenarioError;

/// Kinesis PutRecords accepts at most 500 records per call.
pub const KINESIS_MAX_BATCH_RECORDS: usize = 500;
/// Kinesis PutRecords accepts at most 5 MiB per call (data plus partition keys).
pub const KINESIS_MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Kinesis accepts a record of at most 1 MiB (data plus partition key).
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Where the messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetConfig {
    /// Kinesis Data Streams through PutRecords.
    Kinesis {
        /// The stream, by name or ARN.
        stream: StreamRef,
        /// Whether user records are packed into KPL aggregated records
        /// (`FLEETLOAD_KINESIS_AGGREGATE=on`).
        aggregate: bool,
    },
    /// Kafka through librdkafka.
    Kafka {
        /// The topic.
        topic: String,
        /// librdkafka properties (`bootstrap.servers` and any other), by their dotted names.
        properties: BTreeMap<String, String>,
    },
    /// Generate, pace and measure, sending nothing.
    Null,
}

impl TargetConfig {
    /// The target's name as in `FLEETLOAD_TARGET`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetConfig::Kinesis { .. } => "kinesis",
            TargetConfig::Kafka { .. } => "kafka",
            TargetConfig::Null => "null",
        }
    }
}

/// A Kinesis stream given by name or by ARN.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRef {
    /// `my-stream`
    Name(String),
    /// `arn:aws:kinesis:eu-west-1:123456789012:stream/my-stream`
    Arn(String),
}

impl StreamRef {
    /// `FLEETLOAD_STREAM` as typed: an ARN (of a Kinesis stream) or a valid stream name.
    pub(crate) fn parse(value: &str) -> Result<Self, ScenarioError> {
        let accepted = "a stream name (1-128 of A-Z a-z 0-9 _ . -) or an ARN arn:aws:kinesis:REGION:ACCOUNT:stream/NAME";
        if value.starts_with("arn:") {
            let name = value.split_once(":stream/").map(|(_, n)| n).unwrap_or("");
            if value.split(':').nth(2) != Some("kinesis") || !valid_stream_name(name) {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_STREAM",
                    value,
                    "not a Kinesis stream ARN",
                    accepted,
                ));
            }
            Ok(StreamRef::Arn(value.to_string()))
        } else if valid_stream_name(value) {
            Ok(StreamRef::Name(value.to_string()))
        } else {
            Err(ScenarioError::invalid(
                "FLEETLOAD_STREAM",
                value,
                "not a valid stream name",
                accepted,
            ))
        }
    }

    /// The stream's name (the last part of an ARN).
    pub fn name(&self) -> &str {
        match self {
            StreamRef::Name(n) => n,
            StreamRef::Arn(a) => a.split_once(":stream/").map(|(_, n)| n).unwrap_or(a),
        }
    }
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamRef::Name(n) => f.write_str(n),
            StreamRef::Arn(a) => f.write_str(a),
        }
    }
}

fn valid_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_a_name_or_a_kinesis_stream_arn() {
        let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders";
        assert_eq!(StreamRef::parse(arn).unwrap(), StreamRef::Arn(arn.into()));
        assert_eq!(StreamRef::parse(arn).unwrap().name(), "orders");
        assert_eq!(
            StreamRef::parse("a_b.c-1").unwrap(),
            StreamRef::Name("a_b.c-1".into())
        );
        for bad in [
            "",
            "bad name!",
            "arn:aws:s3:::bucket",
            "arn:aws:kinesis:r:1:stream/",
            &"x".repeat(129),
        ] {
            let e = StreamRef::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("FLEETLOAD_STREAM="), "{bad:?}: {e}");
        }
    }
}
