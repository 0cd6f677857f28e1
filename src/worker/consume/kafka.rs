//! Reading a Kafka topic in a consumer group of the run (`fleetload-<run id>`), so the run's
//! consumer tasks share its partitions.
//!
//! Exactness across rebalances: offsets are never committed automatically. A consumer that
//! loses partitions commits its position in them first (in the revoke callback, before
//! librdkafka hands them on), and a consumer that gets a partition continues from that commit;
//! a partition nobody read yet starts at the first record at or after the run's start instant
//! (Kafka's offsets for a time). So no record is read twice by the run's consumers unless it is
//! in the topic twice, and the duplicates counted are the pipeline's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{now_us, stopped, Read, CLOCK_NOTE};
use crate::model::delivery::ConsumerRecorder;
use crate::model::input::is_secret_name;
use crate::model::report::Outcome;
use crate::worker::produce::StopSignal;

/// How long the preflight and each offset lookup wait for the brokers.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll's wait: the deadline and the stop flag are looked at this often when idle.
const POLL: Duration = Duration::from_millis(100);

/// Rebalance handling (see the module documentation) and librdkafka's logs.
struct GroupContext {
    start_ms: i64,
    /// Partitions assigned so far, for the report.
    partitions: Mutex<std::collections::BTreeSet<i32>>,
}

impl ClientContext for GroupContext {
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

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = self.start_offsets(consumer, tpl);
                for ((topic, partition), offset) in starts {
                    let _ = tpl.set_partition_offset(&topic, partition, offset);
                    self.partitions.lock().expect("no panics").insert(partition);
                }
                tracing::info!(partitions = ?tpl.to_topic_map().keys().map(|(_, p)| *p).collect::<Vec<_>>(), "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!("cannot take the assigned partitions: {e}");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                commit_positions(consumer);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!("cannot give the partitions back: {e}");
                }
            }
            other => {
                tracing::error!("rebalance error: {other:?}");
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
    /// Where each assigned partition starts: the group's commit (another consumer of the run
    /// read it until there), else the first record at or after the start instant, else the
    /// end as it was before the lookup (no record of the run had arrived), else the beginning
    /// (records from before the start then count as foreign).
    fn start_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Vec<((String, i32), Offset)> {
        let committed = consumer
            .committed_offsets(tpl.clone(), BROKER_TIMEOUT)
            .map(|c| c.to_topic_map())
            .unwrap_or_default();
        let mut out = Vec::new();
        for elem in tpl.elements() {
            let key = (elem.topic().to_string(), elem.partition());
            if let Some(Offset::Offset(o)) = committed.get(&key) {
                out.push((key, Offset::Offset(*o)));
                continue;
            }
            let high = consumer
                .fetch_watermarks(&key.0, key.1, BROKER_TIMEOUT)
                .map(|(_, high)| high);
            let mut by_time = TopicPartitionList::new();
            let _ = by_time.add_partition_offset(&key.0, key.1, Offset::Offset(self.start_ms));
            let at = consumer
                .offsets_for_times(by_time, BROKER_TIMEOUT)
                .ok()
                .and_then(|t| t.find_partition(&key.0, key.1).map(|e| e.offset()));
            let offset = match (at, high) {
                (Some(Offset::Offset(o)), _) => Offset::Offset(o),
                (Some(Offset::End), Ok(high)) => Offset::Offset(high),
                _ => Offset::Beginning,
            };
            out.push((key, offset));
        }
        out
    }
}

/// Commits the consumer's position in every partition it holds and has read from.
fn commit_positions(consumer: &BaseConsumer<GroupContext>) {
    let Ok(position) = consumer.position() else {
        return;
    };
    let mut valid = TopicPartitionList::new();
    for elem in position.elements() {
        if let Offset::Offset(o) = elem.offset() {
            let _ = valid.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(o));
        }
    }
    if valid.count() > 0 {
        if let Err(e) = consumer.commit(&valid, CommitMode::Sync) {
            tracing::warn!("cannot commit the positions before a rebalance: {e}");
        }
    }
}

/// Reads `topic` until `deadline` or a stop signal.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read(
    topic: &str,
    properties: &BTreeMap<String, String>,
    run_id: &str,
    task_id: &str,
    planned_start: DateTime<Utc>,
    deadline: DateTime<Utc>,
    mut recorder: ConsumerRecorder,
    stop: StopSignal,
) -> Result<Read, String> {
    let mut config = ClientConfig::new();
    config
        .set("group.id", format!("fleetload-{run_id}"))
        .set("client.id", format!("fleetload-{task_id}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in properties {
        config.set(k, v);
    }
    // librdkafka warns once per producer-only property a consumer is given; the user's
    // FLEETLOAD_KAFKA_* are shared by both roles.
    config.set_log_level(RDKafkaLogLevel::Error);
    let context = GroupContext {
        start_ms: planned_start.timestamp_millis(),
        partitions: Mutex::new(Default::default()),
    };
    let consumer: BaseConsumer<GroupContext> =
        config.create_with_context(context).map_err(|e| {
            let shown: Vec<String> = properties
                .keys()
                .filter(|k| !is_secret_name(k))
                .cloned()
                .collect();
            format!(
                "librdkafka rejected the consumer configuration: {e} (properties given: {})",
                shown.join(", ")
            )
        })?;
    let servers = properties
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let signal: Arc<Mutex<Option<&'static str>>> = Arc::default();
    let watcher = {
        let (flag, signal) = (stop_flag.clone(), signal.clone());
        tokio::spawn(async move {
            let name = stopped(stop).await;
            *signal.lock().expect("no panics") = Some(name);
            flag.store(true, Ordering::Relaxed);
        })
    };
    let topic = topic.to_string();
    let group = format!("fleetload-{run_id}");
    let joined = tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
            .map_err(|e| {
                format!(
                    "Kafka brokers {servers} did not answer within {}s: {e}",
                    BROKER_TIMEOUT.as_secs()
                )
            })?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("topic {topic} does not exist on {servers}: the consumer reads the system under test's output topic"))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        let deadline_us = deadline.timestamp_micros().max(0) as u64;
        let mut errors = 0u64;
        loop {
            if stop_flag.load(Ordering::Relaxed) {
                break;
            }
            let now = now_us();
            if now >= deadline_us {
                break;
            }
            match consumer.poll(POLL) {
                Some(Ok(m)) => recorder.record(m.payload().unwrap_or_default(), now_us()),
                Some(Err(e)) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(errors, "consumer error: {e}");
                    }
                }
                None => {}
            }
        }
        // Leaving the group hands the partitions on with their positions committed.
        commit_positions(&consumer);
        let read: Vec<i32> = consumer
            .context()
            .partitions
            .lock()
            .expect("no panics")
            .iter()
            .copied()
            .collect();
        let source = format!(
            "kafka topic {topic} ({partitions} partitions; this task read {read:?}) in group {group}"
        );
        drop(consumer);
        Ok::<_, String>((recorder, source))
    })
    .await;
    watcher.abort();
    let (recorder, source) = joined.map_err(|e| format!("the Kafka reader panicked: {e}"))??;
    let outcome = match *signal.lock().expect("no panics") {
        Some(name) => Outcome::Interrupted {
            signal: name.to_string(),
        },
        None => Outcome::Completed,
    };
    Ok(Read {
        recorder,
        source,
        outcome,
        clock: CLOCK_NOTE,
    })
}
