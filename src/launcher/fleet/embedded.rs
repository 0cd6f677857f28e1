//! The embedded Kafka-protocol broker of a local run with no target: librdkafka's mock cluster,
//! hosted in the launcher's process for the run and reached by the workers over loopback, so the
//! main job runs offline with nothing installed.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Topic of the embedded broker.
pub const EMBEDDED_TOPIC: &str = "fleetload";
/// Partitions of the embedded broker's topic.
pub const EMBEDDED_PARTITIONS: i32 = 6;
/// Brokers of the embedded cluster.
const EMBEDDED_BROKERS: i32 = 3;
/// Events per second per task with the embedded broker when no rate is given: the broker lives
/// in the launcher's process and keeps every message in memory.
pub const EMBEDDED_DEFAULT_RATE: &str = "1000";

/// What consumer tasks reading the embedded broker get unless given otherwise:
/// - `fetch.wait.max.ms` 10: librdkafka's mock cluster answers a fetch that finds no record
///   only when this wait is over (500 ms by default), not as soon as records arrive as a real
///   broker does; the reads would lag by up to that, and the broker's own produce-to-consume
///   latency would be lost under it;
/// - a settle time of 5 s instead of 30 s: the broker is in this process and delivers within
///   milliseconds, and the offline demo should not wait half a minute for nothing.
pub const EMBEDDED_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("FLEETLOAD_KAFKA_FETCH_WAIT_MAX_MS", "10"),
    ("FLEETLOAD_SETTLE", "5s"),
];

/// A running embedded broker; it stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts the brokers and creates [`EMBEDDED_TOPIC`].
    pub fn start() -> anyhow::Result<Self> {
        let cluster =
            MockCluster::new(EMBEDDED_BROKERS).context("cannot start the embedded Kafka broker")?;
        cluster
            .create_topic(EMBEDDED_TOPIC, EMBEDDED_PARTITIONS, 1)
            .context("cannot create the embedded broker's topic")?;
        Ok(EmbeddedBroker { cluster })
    }

    /// The brokers' loopback addresses, comma-separated.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The worker variables that point a task at this broker.
    pub fn worker_env(&self) -> [(&'static str, String); 3] {
        [
            ("FLEETLOAD_TARGET", "kafka".to_string()),
            ("FLEETLOAD_TOPIC", EMBEDDED_TOPIC.to_string()),
            (
                "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS",
                self.bootstrap_servers(),
            ),
        ]
    }
}
