//! Kafka through librdkafka.
//!
//! A threaded producer with a delivery callback: latency of each message ends at its delivery
//! report; failed deliveries are counted by librdkafka's error name. A full local queue is
//! backpressure, not a failure: the loop waits and sends the same message again, and the wait
//! shows as latency from the intended time. The end is a bounded flush.
//!
//! Split as every sink is: [`config`] (the librdkafka configuration), this module (the producer
//! and the service calls: preflight, send, flush) and [`delivery`] (the outcome of each message).

mod config;
mod delivery;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

pub(crate) use self::config::check_properties;
use self::config::{client_config, config_error};
use self::delivery::{error_name, pack, DeliveryContext};
use super::boundary::{Event, PreflightError, Sink};
use crate::model::measure::SharedRecorder;

/// How long the preflight waits for the brokers' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

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
        let config = client_config(properties, task_id);
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
