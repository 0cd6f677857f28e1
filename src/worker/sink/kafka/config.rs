//! The producer's librdkafka configuration: the worker's defaults, then every `FLEETLOAD_KAFKA_*`
//! property the user gave (which always wins), and the one message a rejected configuration
//! gets (property names only: values may be secrets).

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::model::input::is_secret_name;

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

/// The configuration of task `task_id`'s producer.
pub(crate) fn client_config(properties: &BTreeMap<String, String>, task_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in DEFAULTS {
        config.set(*k, *v);
    }
    config.set("client.id", format!("fleetload-{task_id}"));
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// What to say when librdkafka rejects the configuration.
pub(crate) fn config_error(e: &KafkaError, properties: &BTreeMap<String, String>) -> String {
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
