//! Kafka through librdkafka.
//!
//! A threaded producer with a delivery callback: latency of each message ends at its delivery
//! report; failed deliveries are counted by librdkafka's error name. A full local queue is
//! backpressure, not a failure: the loop waits and sends the same message again, and the wait
//! shows as latency from the intended time. The end is a bounded flush.
//!
//! Split as every sink is: [`config`] (the librdkafka configuration), this module (the producer
//! and the service calls: preflight, send, flush) and [`delivery`] (the outcome of each message).
//! A consumer task's Kafka reader (`worker::consume::kafka`) connects through the same path:
//! [`consumer_config`], [`token_source`] (the MSK IAM token source) and [`check_topic`] (the
//! preflight that names a TLS or authentication failure at once).

mod config;
mod delivery;
mod msk_iam;

pub use self::msk_iam::{
    sign_token as sign_msk_iam_token, MskIamToken, MECHANISM as MSK_IAM_MECHANISM,
    TOKEN_LIFETIME as MSK_IAM_TOKEN_LIFETIME,
};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

pub use self::config::Files;
pub(crate) use self::config::{check_properties, config_error, consumer_config, is_tls};
use self::config::{client_config, uses_msk_iam};
use self::delivery::{error_name, pack, DeliveryContext};
pub(crate) use self::delivery::{watched_client_context, ClientWatch};
use self::msk_iam::region_of_bootstrap;
pub(crate) use self::msk_iam::MskIamTokens;
use super::boundary::{Event, PreflightError, Sink};
use crate::model::measure::SharedRecorder;

/// How long the preflight waits for the brokers' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often within that time the preflight looks at what librdkafka reported, so that a
/// certificate or password problem stops it at once instead of after the whole wait.
const METADATA_ATTEMPT: Duration = Duration::from_secs(1);
/// The retry code of an event the local queue refused (`queue.buffering.max.messages` or
/// `.kbytes` reached) and that was offered again once there was room.
pub const QUEUE_FULL: &str = "QueueFull";

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
        let servers = properties
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new(
                recorder.clone(),
                token_source(properties).await?,
            ))
            .map_err(|e| PreflightError(config_error(&e, properties, "producer")))?;
        let tls = is_tls(&config);
        let topic_owned = topic.to_string();
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || {
            check_topic(
                probe.client(),
                &probe.context().watch,
                // The threaded producer polls on its own thread.
                || {},
                &topic_owned,
                &servers,
                tls,
            )
        })
        .await
        .map_err(|e| PreflightError(format!("Kafka preflight did not finish: {e}")))??;
        Ok(KafkaSink {
            producer,
            topic: topic.to_string(),
            recorder,
        })
    }
}

/// The token source of a new client with `properties`: with MSK IAM selected, the one its
/// context signs OAUTHBEARER tokens with ([`ClientWatch::new`]); otherwise none.
pub(crate) async fn token_source(
    properties: &BTreeMap<String, String>,
) -> Result<Option<MskIamTokens>, PreflightError> {
    if !uses_msk_iam(properties) {
        return Ok(None);
    }
    let servers = properties
        .get("bootstrap.servers")
        .map(String::as_str)
        .unwrap_or_default();
    Ok(Some(msk_iam_tokens(servers).await?))
}

/// The MSK IAM token source: the standard AWS credential chain, and the region of the MSK
/// bootstrap host (else the chain's region, `AWS_REGION`).
async fn msk_iam_tokens(servers: &str) -> Result<MskIamTokens, PreflightError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = region_of_bootstrap(servers)
        .or_else(|| aws.region().map(|r| r.to_string()))
        .ok_or_else(|| {
            PreflightError(format!(
                "MSK IAM authentication needs a region: {servers} is not an MSK bootstrap host (*.kafka.REGION.amazonaws.com) and AWS_REGION is not set"
            ))
        })?;
    let credentials = aws.credentials_provider().ok_or_else(|| {
        PreflightError("MSK IAM authentication: no AWS credential provider".to_string())
    })?;
    Ok(MskIamTokens {
        region,
        credentials,
        runtime: tokio::runtime::Handle::current(),
        lifetime: msk_iam::TOKEN_LIFETIME,
    })
}

/// The preflight of a Kafka client (the producer, a consumer task's reader): waits for the
/// brokers' metadata of `topic` for at most [`METADATA_TIMEOUT`], stopping at once at a TLS or
/// authentication failure `watch` saw, and checks that the topic exists with partitions.
/// `serve` is called before each attempt: a client without a polling thread of its own (a
/// consumer) serves its events there, or neither its errors nor its token requests would reach
/// its context. Returns the number of partitions. Blocking: call it off the runtime's threads.
pub(crate) fn check_topic<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    watch: &ClientWatch,
    serve: impl Fn(),
    topic: &str,
    servers: &str,
    tls: bool,
) -> Result<usize, PreflightError> {
    let started = Instant::now();
    let metadata = loop {
        serve();
        let attempt = METADATA_ATTEMPT.min(METADATA_TIMEOUT.saturating_sub(started.elapsed()));
        match client.fetch_metadata(Some(topic), attempt) {
            Ok(metadata) => break metadata,
            Err(e) => {
                let problem = watch.problem();
                if let Some(p) = problem.as_ref().filter(|p| p.is_decisive()) {
                    return Err(PreflightError(
                        if p.reason.starts_with("Failed to acquire SASL") {
                            // The token source failed (MSK IAM credentials, an OIDC endpoint):
                            // no broker was asked.
                            format!(
                                "no SASL token to log in to Kafka brokers {servers}: {}",
                                p.reason
                            )
                        } else {
                            format!(
                                "Kafka brokers {servers} refused the connection: {}",
                                p.reason
                            )
                        },
                    ));
                }
                if let Some(p) = problem
                    .as_ref()
                    .filter(|p| !tls && p.closed_at_first_request())
                {
                    return Err(PreflightError(format!(
                        "Kafka brokers {servers} refused the connection: they closed it at the first request, as a TLS listener does to a plaintext client (for a TLS listener set security.protocol to SSL or SASL_SSL: FLEETLOAD_KAFKA_SECURITY_PROTOCOL): {}",
                        p.reason
                    )));
                }
                if started.elapsed() >= METADATA_TIMEOUT {
                    let last = problem.map_or(String::new(), |p| {
                        format!("; librdkafka said: {}", p.reason)
                    });
                    return Err(PreflightError(format!(
                        "Kafka brokers {servers} did not answer within {}s: {e}{last}",
                        METADATA_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    };
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
    Ok(t.partitions().len())
}

impl Sink for KafkaSink {
    async fn send(&mut self, event: Event<'_>) {
        let mut record =
            BaseRecord::with_opaque_to(&self.topic, pack(event.intended_ns, event.sent_ns))
                .key(event.key)
                .payload(event.value);
        let mut refused = false;
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: the brokers do not take messages as fast as they
                    // come. Wait for deliveries to make room; the event keeps its intended time,
                    // so the wait is measured, and the refusal counts once as a retry
                    // (`QueueFull`, one of the throttle codes).
                    if !refused {
                        refused = true;
                        let mut r = self.recorder.lock();
                        let now = r.now_ns();
                        r.retried(QUEUE_FULL, now, 1);
                    }
                    record = back;
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                Err((e, _)) => {
                    let mut r = self.recorder.lock();
                    let now = r.now_ns();
                    r.failed(&error_name(&e), now, 1);
                    r.failed_seqs([event.seq]);
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
    use aws_credential_types::Credentials;
    use rdkafka::config::ClientConfig;

    use super::*;
    use crate::model::measure::Recorder;

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

    /// librdkafka asks the producer's context for a new MSK IAM token before the last one
    /// expires (at 80 % of its lifetime), and every token is signed with credentials asked
    /// of the chain again. With 3 s tokens, 7 s see the first token and at least two
    /// refreshes; no broker is needed for that.
    #[test]
    fn msk_iam_token_is_refreshed_before_it_expires() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let tokens = MskIamTokens {
            region: "eu-west-1".into(),
            credentials: SharedCredentialsProvider::new(Counting(asked.clone())),
            runtime: runtime.handle().clone(),
            lifetime: Duration::from_secs(3),
        };
        let mut properties = BTreeMap::new();
        properties.insert("bootstrap.servers".to_string(), "127.0.0.1:1".to_string());
        properties.insert(
            "security.protocol".to_string(),
            "SASL_PLAINTEXT".to_string(),
        );
        properties.insert("sasl.mechanism".to_string(), MSK_IAM_MECHANISM.to_string());
        let config: ClientConfig = client_config(&properties, "refresh-test");
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
        let recorder = SharedRecorder::new(Recorder::new(Instant::now(), 0));
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new(recorder, Some(tokens)))
            .unwrap();
        std::thread::sleep(Duration::from_secs(7));
        let n = asked.load(Ordering::SeqCst);
        assert!(n >= 3, "tokens signed in 7 s with a 3 s lifetime: {n}");
        assert!(n <= 8, "refreshed far too often: {n}");
        drop(producer);
    }

    #[test]
    fn msk_iam_selects_oauthbearer_over_tls_with_the_system_ca_bundle() {
        let mut properties = BTreeMap::new();
        properties.insert(
            "bootstrap.servers".to_string(),
            "b-1.x.y.c2.kafka.us-east-1.amazonaws.com:9098".to_string(),
        );
        properties.insert("sasl.mechanism".to_string(), "aws_msk_iam".to_string());
        let config = client_config(&properties, "t");
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("probe"));
        // What the user set wins.
        properties.insert(
            "security.protocol".to_string(),
            "SASL_PLAINTEXT".to_string(),
        );
        let config = client_config(&properties, "t");
        assert_eq!(config.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(config.get("ssl.ca.location"), None);
        // A CA given as PEM is not overridden by the probe.
        properties.insert("security.protocol".to_string(), "SSL".to_string());
        properties.insert(
            "ssl.ca.pem".to_string(),
            "-----BEGIN CERTIFICATE-----".to_string(),
        );
        let config = client_config(&properties, "t");
        assert_eq!(config.get("ssl.ca.location"), None);
    }

    /// TLS, every SASL mechanism the worker documents, OIDC and every codec are built in.
    #[test]
    fn librdkafka_is_built_with_tls_sasl_oidc_and_every_codec() {
        let features = ClientConfig::new()
            .create_native_config()
            .unwrap()
            .get("builtin.features")
            .unwrap();
        let features: Vec<&str> = features.split(',').collect();
        for wanted in [
            "gzip",
            "snappy",
            "ssl",
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "zstd",
            "lz4",
            "oidc",
            "http",
        ] {
            assert!(
                features.contains(&wanted),
                "{wanted} missing from {features:?}"
            );
        }
    }

    /// gzip, snappy, lz4 and zstd are compiled in: librdkafka accepts each.
    #[test]
    fn every_compression_codec_is_compiled_in() {
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            let mut properties = BTreeMap::new();
            properties.insert("bootstrap.servers".to_string(), "127.0.0.1:1".to_string());
            properties.insert("compression.type".to_string(), codec.to_string());
            let recorder = SharedRecorder::new(Recorder::new(Instant::now(), 0));
            let made: Result<ThreadedProducer<DeliveryContext>, _> =
                client_config(&properties, "t")
                    .create_with_context(DeliveryContext::new(recorder, None));
            assert!(made.is_ok(), "{codec}: {:?}", made.err());
        }
    }
}
