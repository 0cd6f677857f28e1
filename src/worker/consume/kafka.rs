//! Reading a Kafka topic, the run's consumer tasks sharing its partitions as they share a
//! Kinesis stream's shards: partition `p` is read by the consumer with index `p mod consumers`
//! (`FLEETLOAD_CONSUMER=INDEX/COUNT`), from the first record at or after the run's start
//! instant (Kafka's offsets for a time; from the beginning on a broker that cannot look offsets
//! up by time, such as librdkafka's mock cluster) until the deadline. Partitions added to the
//! topic during the run are picked up (the topic's metadata is read again every few seconds)
//! and read from their beginning.
//!
//! Why not a consumer group: the count must be exact, and a group's rebalance moves a
//! partition from one reader to another. The next reader continues where the last one
//! committed, and brokers refuse commits while a group is re-forming (librdkafka's mock
//! cluster always does), so records are read twice and would be counted as the pipeline's
//! duplicates. A member joining late also stops every member's reading while the group forms
//! again, which shows as end-to-end latency. Each partition here has exactly one reader for the
//! whole run, known in advance, so no record is read twice unless it is in the topic twice,
//! and no offset is committed. A consumer task that
//! fails leaves its partitions unread; the merge names it as missing in its coverage rather
//! than reporting what it would have read as lost. The client still has the run's group id,
//! `fleetload-<run id>`: librdkafka assigns partitions only to a client with one.
//!
//! The reader connects the way the producer does, through the Kafka sink's configuration path
//! (`worker::sink::kafka`): the same `FLEETLOAD_KAFKA_*` properties, TLS with the system CA
//! bundle when no CA is given, Amazon MSK IAM tokens signed by its own context, and the
//! preflight that names a certificate or authentication failure at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{now_us, stopped, Read, CLOCK_NOTE};
use crate::model::delivery::ConsumerRecorder;
use crate::model::report::Outcome;
use crate::model::trace::EndToEnd;
use crate::worker::live::Publisher;
use crate::worker::produce::StopSignal;
use crate::worker::sink::kafka::{
    check_topic, config_error, consumer_config, is_tls, token_source, watched_client_context,
    ClientWatch,
};

/// How long each offset lookup waits for the brokers.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll's wait: the deadline and the stop flag are looked at this often when idle.
const POLL: Duration = Duration::from_millis(100);
/// How often the topic's partitions are counted again, to pick up partitions added during
/// the run.
const NEW_PARTITIONS_EVERY: Duration = Duration::from_secs(5);
/// How long that count may wait for the brokers (reading waits meanwhile).
const METADATA_WAIT: Duration = Duration::from_secs(1);

/// librdkafka's logs, errors and token requests go to the reader's [`ClientWatch`], as the
/// producer's do.
struct ReaderContext {
    watch: ClientWatch,
}

watched_client_context!(ReaderContext);

impl ConsumerContext for ReaderContext {}

/// Where each of `partitions` starts: the first record at or after the start instant, else
/// the end as it was before the lookup (no record of the run had arrived), else the
/// beginning (records from before the start then count as foreign).
fn start_offsets(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    partitions: &[i32],
    start_ms: i64,
) -> TopicPartitionList {
    let mut out = TopicPartitionList::new();
    for &partition in partitions {
        let marks = consumer.fetch_watermarks(topic, partition, BROKER_TIMEOUT);
        let at = |ms: i64| {
            let mut by_time = TopicPartitionList::new();
            let _ = by_time.add_partition_offset(topic, partition, Offset::Offset(ms));
            consumer
                .offsets_for_times(by_time, BROKER_TIMEOUT)
                .ok()
                .and_then(|t| t.find_partition(topic, partition).map(|e| e.offset()))
        };
        let offset = match (at(start_ms), marks) {
            (Some(Offset::Offset(o)), _) => Offset::Offset(o),
            // "No record at or after the start" while the partition holds records: true of a
            // broker that looks offsets up by time only if it also finds none at or after time
            // 0. librdkafka's mock cluster (the embedded broker) answers "none" to every lookup
            // by time; the run's records would then be skipped, so it is read from the
            // beginning (a fresh topic there: nothing older to count).
            (Some(Offset::End), Ok((low, high)))
                if low < high && matches!(at(0), Some(Offset::End)) =>
            {
                tracing::warn!(
                    partition,
                    "the brokers cannot look offsets up by time: reading the partition from \
                     its beginning (records older than the run count as foreign)"
                );
                Offset::Beginning
            }
            (Some(Offset::End), Ok((_, high))) => Offset::Offset(high),
            _ => Offset::Beginning,
        };
        let _ = out.add_partition_offset(topic, partition, offset);
    }
    out
}

/// Reads this consumer's partitions of `topic` until `deadline` or a stop signal.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read(
    topic: &str,
    properties: &BTreeMap<String, String>,
    run_id: &str,
    task_id: &str,
    e2e: &EndToEnd,
    planned_start: DateTime<Utc>,
    deadline: DateTime<Utc>,
    mut recorder: ConsumerRecorder,
    publisher: Option<Arc<Publisher>>,
    stop: StopSignal,
) -> Result<Read, String> {
    let (index, consumers) = (e2e.consumer_index, e2e.consumers);
    let e2e = e2e.clone();
    let mut config = consumer_config(properties, task_id, &format!("fleetload-{run_id}"));
    // librdkafka warns once per producer-only property a consumer is given; the user's
    // FLEETLOAD_KAFKA_* are shared by both roles. Debugging contexts asked for
    // (`FLEETLOAD_KAFKA_debug=consumer`, logged with `RUST_LOG=librdkafka=debug`) are kept.
    config.set_log_level(if properties.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Error
    });
    let context = ReaderContext {
        watch: ClientWatch::new(token_source(properties).await.map_err(|e| e.0)?),
    };
    let consumer: BaseConsumer<ReaderContext> = config
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
    let start_ms = planned_start.timestamp_millis();
    let joined = tokio::task::spawn_blocking(move || {
        // Nothing assigned yet: a poll serves only events (errors, token requests, logs).
        let serve = || {
            let _ = consumer.poll(Duration::ZERO);
        };
        let partitions = check_topic(
            consumer.client(),
            &consumer.context().watch,
            serve,
            &topic,
            &servers,
            tls,
        )
        .map_err(|e| e.0)?;
        let mut held = BTreeSet::new();
        // Takes this consumer's partitions among `all` not held yet, from the first record at
        // or after `from_ms`.
        let take = |held: &mut BTreeSet<i32>, all: &[i32], from_ms: i64| -> Result<(), String> {
            let new: Vec<i32> = all
                .iter()
                .copied()
                .filter(|&p| u64::try_from(p).is_ok_and(|n| e2e.reads(n)) && !held.contains(&p))
                .collect();
            if new.is_empty() {
                return Ok(());
            }
            consumer
                .incremental_assign(&start_offsets(&consumer, &topic, &new, from_ms))
                .map_err(|e| format!("cannot read partitions {new:?} of {topic}: {e}"))?;
            tracing::info!(partitions = ?new, "reading partitions");
            held.extend(new);
            Ok(())
        };
        let first: Vec<i32> = (0..partitions as i32).collect();
        take(&mut held, &first, start_ms)?;
        if held.is_empty() {
            tracing::warn!(
                "topic {topic} has {partitions} partition(s) for {consumers} consumers: none is \
                 this consumer's (index {index}) unless partitions are added during the run"
            );
        }
        let deadline_us = deadline.timestamp_micros().max(0) as u64;
        let mut errors = 0u64;
        let mut counted_at = Instant::now();
        loop {
            if stop_flag.load(Ordering::Relaxed) {
                break;
            }
            let now = now_us();
            if now >= deadline_us {
                break;
            }
            if counted_at.elapsed() >= NEW_PARTITIONS_EVERY {
                counted_at = Instant::now();
                if let Ok(m) = consumer.fetch_metadata(Some(&topic), METADATA_WAIT) {
                    let all: Vec<i32> = m
                        .topics()
                        .iter()
                        .filter(|t| t.name() == topic)
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect();
                    // A partition added during the run holds only the run's records.
                    take(&mut held, &all, 0)?;
                }
            }
            if let Some(p) = &publisher {
                for (window, tally) in recorder.take_live_windows(now) {
                    p.send(p.consumer_window(window, tally, false));
                }
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
        let read: Vec<i32> = held.into_iter().collect();
        let source = format!(
            "kafka topic {topic} ({partitions} partitions at the start; this task, consumer \
             {index} of {consumers}, read {read:?})"
        );
        drop(consumer);
        drop(publisher);
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
    fn the_reader_is_configured_like_the_producer_and_keeps_its_own_settings() {
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
        let consumer: BaseConsumer<ReaderContext> = config
            .create_with_context(ReaderContext {
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
