//! Kafka through librdkafka.
//!
//! A threaded producer with a delivery callback: latency of each message ends at its delivery
//! report; failed deliveries are counted by librdkafka's error name. A full local queue is
//! backpressure, not a failure: the loop waits and sends the same message again, and the wait
//! shows as latency from the intended time. The end is a bounded flush.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{Event, PreflightError, Sink};
use crate::model::input::is_secret_name;
use crate::model::measure::SharedRecorder;

/// How long the preflight waits for the brokers' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings the worker chooses unless the user set them (`FLEETLOAD_KAFKA_*` always wins).
const DEFAULTS: &[(&str, &str)] = &[
    // A message undelivered after 30 s is a failure worth reporting, not something to wait
    // librdkafka's default 5 minutes for.
    ("message.timeout.ms", "30000"),
    ("linger.ms", "5"),
    // The local queue bounds the worker's memory when the brokers fall behind: a 0.25 vCPU /
    // 512 MiB Fargate task must be enough, and the worker stays within 64 MiB at 100k
    // events/s. 50,000 messages or 8 MiB of them (whichever comes first) is still 50 ms at
    // 1M messages/s, more than linger.ms and a broker round trip hold in flight.
    ("queue.buffering.max.messages", "50000"),
    ("queue.buffering.max.kbytes", "8192"),
];

/// Intended send times travel with each message as librdkafka's opaque pointer, packed into one
/// `usize` so the hot path allocates nothing: the upper 40 bits hold the intended time in µs
/// from the origin (12 days), the lower 24 bits the delay from intended to actual send in µs
/// (saturating at 16.7 s; beyond it the service time is measured from that saturated point).
fn pack(intended_ns: u64, sent_ns: u64) -> usize {
    let intended_us = (intended_ns / 1000).min((1 << 40) - 1);
    let delay_us = (sent_ns.saturating_sub(intended_ns) / 1000).min((1 << 24) - 1);
    ((intended_us << 24) | delay_us) as usize
}

fn unpack(opaque: usize) -> (u64, u64) {
    let v = opaque as u64;
    let intended_ns = (v >> 24) * 1000;
    (intended_ns, intended_ns + (v & ((1 << 24) - 1)) * 1000)
}

/// The name of a librdkafka error, as counted in the report (`MessageTimedOut`, …).
pub fn error_name(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => format!("{e:?}")
            .split(['(', ' '])
            .next()
            .unwrap_or("KafkaError")
            .to_string(),
    }
}

/// Receives delivery reports and librdkafka's logs.
pub struct DeliveryContext {
    recorder: SharedRecorder,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (intended_ns, sent_ns) = unpack(opaque);
        let mut r = self.recorder.lock();
        let now = r.now_ns();
        match result {
            Ok(msg) => {
                let bytes = msg.payload_len() + msg.key().map_or(0, <[u8]>::len);
                r.acknowledged(intended_ns, sent_ns, now, bytes as u64);
            }
            Err((e, _)) => r.failed(&error_name(e), now, 1),
        }
    }
}

/// The Kafka sink.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
    recorder: SharedRecorder,
}

impl KafkaSink {
    /// Creates the producer and checks that the brokers answer and the topic exists.
    pub async fn connect(
        topic: &str,
        properties: &BTreeMap<String, String>,
        task_id: &str,
        recorder: SharedRecorder,
    ) -> Result<Self, PreflightError> {
        let mut config = ClientConfig::new();
        for (k, v) in DEFAULTS {
            config.set(*k, *v);
        }
        config.set("client.id", format!("fleetload-{task_id}"));
        for (k, v) in properties {
            config.set(k, v);
        }
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext {
                recorder: recorder.clone(),
            })
            .map_err(|e| PreflightError(config_error(&e, properties)))?;
        let servers = properties
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        let topic_owned = topic.to_string();
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || check_topic(&probe, &topic_owned, &servers))
            .await
            .map_err(|e| PreflightError(format!("Kafka preflight did not finish: {e}")))??;
        Ok(KafkaSink {
            producer,
            topic: topic.to_string(),
            recorder,
        })
    }
}

fn config_error(e: &KafkaError, properties: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = properties
        .keys()
        .map(|k| {
            format!(
                "FLEETLOAD_KAFKA_{}",
                k.to_ascii_uppercase().replace('.', "_")
            )
        })
        .filter(|k| !is_secret_name(k))
        .collect();
    format!(
        "librdkafka rejected the producer configuration: {e} (properties given: {})",
        shown.join(", ")
    )
}

fn check_topic(
    producer: &ThreadedProducer<DeliveryContext>,
    topic: &str,
    servers: &str,
) -> Result<(), PreflightError> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| {
            PreflightError(format!(
                "Kafka brokers {servers} did not answer within {}s: {e}",
                METADATA_TIMEOUT.as_secs()
            ))
        })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(PreflightError(format!(
            "topic {topic} is not known to the brokers {servers}"
        )));
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        return Err(PreflightError(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition => {
                format!("topic {topic} does not exist on {servers} (brokers may not auto-create topics): create it first")
            }
            other => format!("topic {topic} on {servers} is not usable: {other}"),
        }));
    }
    if t.partitions().is_empty() {
        return Err(PreflightError(format!(
            "topic {topic} on {servers} has no partitions"
        )));
    }
    Ok(())
}

impl Sink for KafkaSink {
    async fn send(&mut self, event: Event<'_>) {
        let mut record =
            BaseRecord::with_opaque_to(&self.topic, pack(event.intended_ns, event.sent_ns))
                .key(event.key)
                .payload(event.value);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for deliveries to make room. The event keeps
                    // its intended time, so the wait is measured.
                    record = back;
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                Err((e, _)) => {
                    let mut r = self.recorder.lock();
                    let now = r.now_ns();
                    r.failed(&error_name(&e), now, 1);
                    return;
                }
            }
        }
    }

    async fn flush(&mut self) {}

    async fn drain(&mut self, deadline: Instant) {
        let producer = self.producer.clone();
        let wait = deadline.saturating_duration_since(Instant::now());
        let flushed = tokio::task::spawn_blocking(move || producer.flush(wait)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(
                in_flight = self.producer.in_flight_count(),
                "Kafka flush did not complete: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_packing() {
        let (i, s) = unpack(pack(5_000_000_000, 5_002_345_000));
        assert_eq!(i, 5_000_000_000);
        assert_eq!(s, 5_002_345_000);
        // The delay saturates at 2^24 µs.
        let (i, s) = unpack(pack(1_000, 100_000_000_000));
        assert_eq!(i, 1_000);
        assert_eq!(s, 1_000 + ((1 << 24) - 1) * 1000);
    }

    #[test]
    fn error_names() {
        assert_eq!(
            error_name(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            )),
            "MessageTimedOut"
        );
    }
}
