//! The outcome side of the Kafka sink: each message's delivery report, recorded with the
//! intended and actual send times it carried, and librdkafka's errors by name; and the
//! [`ClientWatch`] every Kafka client of the worker keeps (MSK IAM tokens, connection
//! problems), the consumer task's reader included.

use std::error::Error;
use std::sync::Mutex;

use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::msk_iam::MskIamTokens;
use crate::model::measure::SharedRecorder;

/// Intended send times travel with each message as librdkafka's opaque pointer, packed into one
/// `usize` so the hot path allocates nothing: the upper 40 bits hold the intended time in µs
/// from the origin (12 days), the lower 24 bits the delay from intended to actual send in µs
/// (saturating at 16.7 s; beyond it the service time is measured from that saturated point).
pub(crate) fn pack(intended_ns: u64, sent_ns: u64) -> usize {
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

/// A connection problem librdkafka reported: its code and its words.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionProblem {
    pub(crate) code: Option<RDKafkaErrorCode>,
    pub(crate) reason: String,
}

impl ConnectionProblem {
    /// Whether retrying cannot help: the TLS handshake failed (certificate, hostname,
    /// protocol), authentication was refused (password, token, IAM permission), or a
    /// plaintext client met a TLS listener. Preflight stops at the first of these.
    pub(crate) fn is_decisive(&self) -> bool {
        matches!(
            self.code,
            Some(
                RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::UnsupportedSASLMechanism
                    | RDKafkaErrorCode::IllegalSASLState
            )
        ) || [
            // A plaintext client on a TLS listener, or a TLS client on a SASL one.
            "security.protocol",
            // The other side refused the handshake (no client certificate, protocol version).
            "SSL alert",
            "certificate verify failed",
            "SASL authentication",
        ]
        .iter()
        .any(|words| self.reason.contains(words))
    }
}

impl ConnectionProblem {
    /// Whether the broker closed the connection during the client's first request
    /// (ApiVersion): what a TLS listener does to a plaintext client (librdkafka names
    /// security.protocol itself only when the close is orderly, not for a reset).
    pub(crate) fn closed_at_first_request(&self) -> bool {
        self.reason.contains("state APIVERSION_QUERY")
            && (self.reason.contains("Disconnected") || self.reason.contains("connection reset"))
    }
}

/// What every Kafka client of the worker keeps in its context, the producer and a consumer
/// task's reader alike: the MSK IAM token source, and the connection problem librdkafka
/// reported, so that a preflight can stop at a certificate or password problem at once and
/// name it. Each client's context holds one and hands librdkafka's callbacks to it.
pub(crate) struct ClientWatch {
    /// The token source when MSK IAM authentication is selected.
    tokens: Option<MskIamTokens>,
    /// The most telling connection problem so far (a decisive one is never replaced by the
    /// generic "all brokers are down" that follows it), for the preflight's message.
    problem: Mutex<Option<ConnectionProblem>>,
}

impl ClientWatch {
    /// A watch signing MSK IAM tokens with `tokens` if given.
    pub(crate) fn new(tokens: Option<MskIamTokens>) -> Self {
        ClientWatch {
            tokens,
            problem: Mutex::new(None),
        }
    }

    /// Keeps `problem`, unless it would replace a more telling one: a decisive problem, then a
    /// connection closed or reset at the first request (a TLS listener's answer to a plaintext
    /// client), then anything else ("all brokers are down" follows each of them).
    fn note_problem(&self, problem: ConnectionProblem) {
        let rank = |p: &ConnectionProblem| {
            if p.is_decisive() {
                2
            } else if p.closed_at_first_request() {
                1
            } else {
                0
            }
        };
        if let Ok(mut slot) = self.problem.lock() {
            let keep = slot.as_ref().is_some_and(|p| rank(p) > rank(&problem));
            if !keep {
                *slot = Some(problem);
            }
        }
    }

    /// The connection problem librdkafka reported last (a decisive one kept over later ones).
    pub(crate) fn problem(&self) -> Option<ConnectionProblem> {
        self.problem.lock().ok()?.clone()
    }

    /// A token for librdkafka's OAUTHBEARER refresh callback.
    pub(crate) fn oauth_token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let Some(tokens) = &self.tokens else {
            return Err("OAUTHBEARER needs a token source: sasl.oauthbearer.method=oidc with its client settings, or sasl.mechanism=AWS_MSK_IAM".into());
        };
        let token = tokens.generate()?;
        tracing::debug!(expires_at_ms = token.expires_at_ms, "MSK IAM token signed");
        Ok(OAuthToken {
            token: token.token,
            // Not sent to the broker (MSK takes the identity from the signature); librdkafka
            // requires one.
            principal_name: "fleetload".to_string(),
            lifetime_ms: token.expires_at_ms,
        })
    }

    /// librdkafka's log line: kept as a connection problem when a broker connection failed,
    /// and passed on to the worker's log.
    pub(crate) fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            // A broker connection failed. librdkafka logs some decisive causes (a plaintext
            // client disconnected by a TLS listener) only here, at info level, and never as an
            // error event.
            self.note_problem(ConnectionProblem {
                code: None,
                reason: message.to_string(),
            });
        }
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

    /// librdkafka's error event: logged and kept as a connection problem.
    pub(crate) fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        self.note_problem(ConnectionProblem {
            code: error.rdkafka_error_code(),
            reason: reason.to_string(),
        });
    }
}

/// Implements [`ClientContext`] for a context type with a `watch: ClientWatch` field: MSK IAM
/// tokens, logs and errors all go to the watch. The producer's and the consumer's contexts
/// differ in what they do with messages, never in how they connect.
macro_rules! watched_client_context {
    ($context:ty) => {
        impl rdkafka::ClientContext for $context {
            // Only ever asked for when `sasl.mechanism` is OAUTHBEARER without librdkafka's own
            // OIDC token source, that is with MSK IAM.
            const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

            fn generate_oauth_token(
                &self,
                _oauthbearer_config: Option<&str>,
            ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
                self.watch.oauth_token()
            }

            fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
                self.watch.log(level, fac, message)
            }

            fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
                self.watch.error(error, reason)
            }
        }
    };
}
pub(crate) use watched_client_context;

/// Receives delivery reports; librdkafka's logs, errors and token requests go to its
/// [`ClientWatch`].
pub struct DeliveryContext {
    pub(crate) recorder: SharedRecorder,
    /// Tokens and connection problems, as every client of the worker keeps them.
    pub(crate) watch: ClientWatch,
}

impl DeliveryContext {
    /// A context recording into `recorder`, signing MSK IAM tokens with `tokens` if given.
    pub(crate) fn new(recorder: SharedRecorder, tokens: Option<MskIamTokens>) -> Self {
        DeliveryContext {
            recorder,
            watch: ClientWatch::new(tokens),
        }
    }
}

watched_client_context!(DeliveryContext);

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
            Err((e, msg)) => {
                r.failed(&error_name(e), now, 1);
                r.failed_payload(msg.payload().unwrap_or_default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

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

    fn problem(code: Option<RDKafkaErrorCode>, reason: &str) -> ConnectionProblem {
        ConnectionProblem {
            code,
            reason: reason.to_string(),
        }
    }

    /// What librdkafka said in each case (taken from runs against stunnel) and whether the
    /// preflight stops at it.
    #[test]
    fn tls_and_authentication_failures_are_decisive_and_unreachable_brokers_are_not() {
        for (p, decisive, first_request) in [
            (problem(Some(RDKafkaErrorCode::SSL), "ssl://localhost:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified"), true, false),
            (problem(Some(RDKafkaErrorCode::BrokerTransportFailure), "ssl://localhost:9093/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116 (after 4ms in state APIVERSION_QUERY)"), true, false),
            (problem(Some(RDKafkaErrorCode::Authentication), "sasl_ssl://localhost:9093/bootstrap: SASL authentication error: Authentication failed"), true, false),
            (problem(None, "localhost:9093/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request) (after 2ms in state APIVERSION_QUERY)"), true, true),
            (problem(None, "localhost:9093/bootstrap: Disconnected: connection reset by peer (after 1ms in state APIVERSION_QUERY)"), false, true),
            (problem(Some(RDKafkaErrorCode::BrokerTransportFailure), "localhost:9095/bootstrap: Connect to ipv4#127.0.0.1:9095 failed: Connection refused (after 0ms in state CONNECT)"), false, false),
            (problem(Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"), false, false),
        ] {
            assert_eq!(p.is_decisive(), decisive, "{}", p.reason);
            assert_eq!(p.closed_at_first_request(), first_request, "{}", p.reason);
        }
    }

    /// A plaintext client on a TLS listener that resets the connection (stunnel does when the
    /// request's bytes are still unread) rather than closing it: the reset stays the problem
    /// the preflight names, not the "all brokers are down" that follows.
    #[test]
    fn a_reset_at_the_first_request_is_not_replaced_by_all_brokers_down() {
        let watch = ClientWatch::new(None);
        watch.note_problem(problem(
            None,
            "localhost:9093/bootstrap: Disconnected: connection reset by peer (after 0ms in state APIVERSION_QUERY)",
        ));
        watch.note_problem(problem(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        ));
        assert!(watch.problem().unwrap().closed_at_first_request());
    }

    #[test]
    fn a_decisive_problem_is_not_replaced_by_the_generic_one_after_it() {
        let watch = ClientWatch::new(None);
        watch.note_problem(problem(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Connection refused",
        ));
        watch.note_problem(problem(
            Some(RDKafkaErrorCode::SSL),
            "certificate verify failed",
        ));
        watch.note_problem(problem(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        ));
        assert_eq!(watch.problem().unwrap().reason, "certificate verify failed");
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
