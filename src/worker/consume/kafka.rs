//! Reading a Kafka topic in a consumer group of the run (`fleetload-<run id>`), so the run's
//! consumer tasks share its partitions.
//!
//! Exactness across rebalances: offsets are never committed automatically. A consumer that
//! loses partitions commits its position in them first (in the revoke callback, before
//! librdkafka hands them on), and a consumer that gets a partition continues from that commit;
//! a partition nobody read yet starts at the first record at or after the run's start instant
//! (Kafka's offsets for a time; from the beginning on a broker that cannot look offsets up by
//! time, such as librdkafka's mock cluster). So no record is read twice by the run's consumers
//! unless it is in the topic twice, and the duplicates counted are the pipeline's.
//!
//! The reader connects the way the producer does, through the Kafka sink's configuration path
//! (`worker::sink::kafka`): the same `FLEETLOAD_KAFKA_*` properties, TLS with the system CA
//! bundle when no CA is given, Amazon MSK IAM tokens signed by its own context, and the
//! preflight that names a certificate or authentication failure at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::{now_us, stopped, Read, CLOCK_NOTE};
use crate::model::delivery::ConsumerRecorder;
use crate::model::report::Outcome;
use crate::worker::produce::StopSignal;
use crate::worker::sink::kafka::{
    check_topic, config_error, consumer_config, is_tls, token_source, watched_client_context,
    ClientWatch,
};

/// How long each offset lookup waits for the brokers.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll's wait: the deadline and the stop flag are looked at this often when idle.
const POLL: Duration = Duration::from_millis(100);
/// How long before the start instant the run's consumers join their group, all at once.
///
/// A broker forms a new group `group.initial.rebalance.delay.ms` (3 s by default, librdkafka's
/// mock cluster too) after its first member joins, with every member that joined by then. A
/// member joining later starts a second rebalance, in which nobody reads until every member
/// has joined again; librdkafka's mock cluster even waits out the session timeout (45 s by
/// default) then. Consumer tasks start at different moments (processes under load, ECS tasks
/// tens of seconds apart), but they share the start instant: joining together this long
/// before it forms the group once, with every consumer in it and the partitions held when the
/// first event is due.
const JOIN_LEAD: Duration = Duration::from_secs(4);

/// Rebalance handling (see the module documentation); librdkafka's logs, errors and token
/// requests go to its [`ClientWatch`], as the producer's do.
struct GroupContext {
    start_ms: i64,
    /// Partitions assigned so far, for the report.
    partitions: Mutex<std::collections::BTreeSet<i32>>,
    /// Tokens and connection problems, as every Kafka client of the worker keeps them.
    watch: ClientWatch,
}

watched_client_context!(GroupContext);

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
            let marks = consumer.fetch_watermarks(&key.0, key.1, BROKER_TIMEOUT);
            let at = |ms: i64| {
                let mut by_time = TopicPartitionList::new();
                let _ = by_time.add_partition_offset(&key.0, key.1, Offset::Offset(ms));
                consumer
                    .offsets_for_times(by_time, BROKER_TIMEOUT)
                    .ok()
                    .and_then(|t| t.find_partition(&key.0, key.1).map(|e| e.offset()))
            };
            let offset = match (at(self.start_ms), marks) {
                (Some(Offset::Offset(o)), _) => Offset::Offset(o),
                // "No record at or after the start" while the partition holds records: true
                // of a broker that looks offsets up by time only if it also finds none at or
                // after time 0. librdkafka's mock cluster (the embedded broker) answers "none"
                // to every lookup by time; the run's records would then be skipped, so it is
                // read from the beginning (a fresh topic there: nothing older to count).
                (Some(Offset::End), Ok((low, high)))
                    if low < high && matches!(at(0), Some(Offset::End)) =>
                {
                    tracing::warn!(
                        partition = key.1,
                        "the brokers cannot look offsets up by time: reading the partition from \
                         its beginning (records older than the run count as foreign)"
                    );
                    Offset::Beginning
                }
                (Some(Offset::End), Ok((_, high))) => Offset::Offset(high),
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
    let group = format!("fleetload-{run_id}");
    let mut config = consumer_config(properties, task_id, &group);
    // librdkafka warns once per producer-only property a consumer is given; the user's
    // FLEETLOAD_KAFKA_* are shared by both roles.
    config.set_log_level(RDKafkaLogLevel::Error);
    let context = GroupContext {
        start_ms: planned_start.timestamp_millis(),
        partitions: Mutex::new(Default::default()),
        watch: ClientWatch::new(token_source(properties).await.map_err(|e| e.0)?),
    };
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|e| config_error(&e, properties, "consumer"))?;
    let servers = properties
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let tls = is_tls(&config);
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
    let joined = tokio::task::spawn_blocking(move || {
        let partitions = check_topic(
            consumer.client(),
            &consumer.context().watch,
            || {
                // Not subscribed yet: no message can come, only events (errors, token
                // requests, logs) for the context.
                let _ = consumer.poll(Duration::ZERO);
            },
            &topic,
            &servers,
            tls,
        )
        .map_err(|e| e.0)?;
        let join_at = planned_start - chrono::Duration::from_std(JOIN_LEAD).unwrap_or_default();
        if let Ok(wait) = (join_at - Utc::now()).to_std() {
            tracing::info!(
                "joining group {group} at {} with the run's other consumers",
                join_at.to_rfc3339()
            );
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until && !stop_flag.load(Ordering::Relaxed) {
                // Not subscribed yet: only events (errors, token requests, logs) come.
                let _ = consumer.poll(POLL.min(until.saturating_duration_since(std::time::Instant::now())));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
    use aws_credential_types::Credentials;

    use super::*;
    use crate::worker::sink::kafka::MskIamTokens;

    /// Static credentials that count how often they were asked for.
    #[derive(Debug)]
    struct Counting(Arc<AtomicUsize>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "ASIATEST",
                "secret",
                Some("session".into()),
                None,
                "test",
            )))
        }
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The reader's configuration comes from the producer's path: MSK IAM becomes OAUTHBEARER
    /// over TLS with the system CA bundle, and the consumer's own settings are kept whatever
    /// the properties say.
    #[test]
    fn the_reader_is_configured_like_the_producer_and_keeps_its_group_settings() {
        let p = props(&[
            (
                "bootstrap.servers",
                "b-1.x.y.c2.kafka.eu-west-1.amazonaws.com:9098",
            ),
            ("sasl.mechanism", "AWS_MSK_IAM"),
            ("enable.auto.commit", "true"),
            ("linger.ms", "20"),
        ]);
        let c = consumer_config(&p, "c-1", "fleetload-run-1");
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));
        assert_eq!(c.get("client.id"), Some("fleetload-c-1"));
        assert_eq!(c.get("group.id"), Some("fleetload-run-1"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        // Producer defaults are not a consumer's.
        assert_eq!(c.get("message.timeout.ms"), None);
        // TLS without a CA: the system bundle; with one given, the user's.
        let c = consumer_config(
            &props(&[
                ("bootstrap.servers", "localhost:9093"),
                ("security.protocol", "SSL"),
            ]),
            "c-1",
            "g",
        );
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));
        assert!(is_tls(&c));
        let c = consumer_config(
            &props(&[
                ("bootstrap.servers", "localhost:9093"),
                ("security.protocol", "SSL"),
                ("ssl.ca.location", "/etc/ca.pem"),
            ]),
            "c-1",
            "g",
        );
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    /// An MSK IAM reader signs its own tokens: librdkafka asks the consumer's context, which
    /// signs with the credential chain (no broker needed for that).
    #[test]
    fn an_msk_iam_reader_signs_tokens_through_its_context() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let tokens = MskIamTokens {
            region: "eu-west-1".into(),
            credentials: SharedCredentialsProvider::new(Counting(asked.clone())),
            runtime: runtime.handle().clone(),
            lifetime: Duration::from_secs(900),
        };
        let p = props(&[
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "AWS_MSK_IAM"),
        ]);
        let mut config = consumer_config(&p, "c-1", "g");
        config.set_log_level(RDKafkaLogLevel::Emerg);
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext {
                start_ms: 0,
                partitions: Mutex::new(Default::default()),
                watch: ClientWatch::new(Some(tokens)),
            })
            .unwrap();
        let began = Instant::now();
        // The refresh callback is served by the consumer's poll.
        while asked.load(Ordering::SeqCst) == 0 && began.elapsed() < Duration::from_secs(10) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        assert!(
            asked.load(Ordering::SeqCst) >= 1,
            "librdkafka never asked the reader for a token"
        );
    }
}
