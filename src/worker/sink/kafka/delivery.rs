//! The outcome side of the Kafka sink: each message's delivery report, recorded with the
//! intended and actual send times it carried, and librdkafka's errors by name.

use std::error::Error;
use std::sync::Mutex;

use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

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
        ) || self.reason.contains("incorrect security.protocol")
    }
}

/// Receives delivery reports and librdkafka's logs and errors, and makes MSK IAM tokens.
pub struct DeliveryContext {
    pub(crate) recorder: SharedRecorder,
    /// The token source when MSK IAM authentication is selected.
    pub(crate) tokens: Option<MskIamTokens>,
    /// The most telling connection problem so far (a decisive one is never replaced by the
    /// generic "all brokers are down" that follows it), for the preflight's message.
    pub(crate) problem: Mutex<Option<ConnectionProblem>>,
}

impl DeliveryContext {
    /// A context recording into `recorder`, signing MSK IAM tokens with `tokens` if given.
    pub(crate) fn new(recorder: SharedRecorder, tokens: Option<MskIamTokens>) -> Self {
        DeliveryContext {
            recorder,
            tokens,
            problem: Mutex::new(None),
        }
    }

    /// The connection problem librdkafka reported last (see [`DeliveryContext::problem`]).
    pub(crate) fn problem(&self) -> Option<ConnectionProblem> {
        self.problem.lock().ok()?.clone()
    }
}

impl ClientContext for DeliveryContext {
    // Only ever asked for when `sasl.mechanism` is OAUTHBEARER without librdkafka's own OIDC
    // token source, that is with MSK IAM.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
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
        let problem = ConnectionProblem {
            code: error.rdkafka_error_code(),
            reason: reason.to_string(),
        };
        if let Ok(mut slot) = self.problem.lock() {
            let keep = slot.as_ref().is_some_and(|p| p.is_decisive()) && !problem.is_decisive();
            if !keep {
                *slot = Some(problem);
            }
        }
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
