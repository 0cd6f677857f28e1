//! Amazon MSK IAM authentication: SASL/OAUTHBEARER with a token that is a SigV4-presigned
//! `kafka-cluster:Connect` request, in the format of AWS's `aws-msk-iam-sasl-signer` libraries.
//!
//! The token is the URL `https://kafka.REGION.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned for the service `kafka-cluster` with `X-Amz-Expires=900` (the session token of
//! temporary credentials, such as an ECS task role's, signed in as `X-Amz-Security-Token`),
//! then `User-Agent` appended (unsigned), encoded as base64url without padding. Credentials
//! come from the standard AWS chain (environment, profile, ECS task role, instance role).
//! librdkafka asks for a new token at 80 % of the previous one's lifetime, so a token is
//! replaced about three minutes before it expires, and every refresh asks the chain again
//! (the chain's providers keep rotating task-role credentials fresh).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The value of `FLEETLOAD_KAFKA_SASL_MECHANISM` that selects MSK IAM authentication. The
/// worker turns it into librdkafka's `sasl.mechanism=OAUTHBEARER` with its own token source.
pub const MECHANISM: &str = "AWS_MSK_IAM";

/// How long a token is valid: what AWS's signer libraries use, and what MSK accepts.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The SigV4 signing name of MSK's data plane.
const SIGNING_NAME: &str = "kafka-cluster";

/// What the token says made it (MSK logs it; AWS's libraries send their own names).
const USER_AGENT: &str = concat!("fleetload/", env!("CARGO_PKG_VERSION"));

/// How long one refresh may wait for the credential chain (an ECS task role answers in
/// milliseconds; IMDS with retries in a few seconds).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);

/// One MSK IAM token and the instant it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskIamToken {
    /// The token as sent in the OAUTHBEARER exchange (base64url of the presigned URL).
    pub token: String,
    /// When it expires, in milliseconds since the Unix epoch (signing time + lifetime).
    pub expires_at_ms: i64,
}

/// Signs a token for `region` with `credentials` at `now`, valid for `lifetime`.
pub fn sign_token(
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    lifetime: Duration,
) -> Result<MskIamToken, String> {
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(lifetime);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("MSK IAM token: SigV4 parameters: {e}"))?
        .into();
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("MSK IAM token: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("MSK IAM token: SigV4: {e}"))?
        .into_parts();
    let mut request = hyper::Request::get(&url)
        .body(())
        .map_err(|e| format!("MSK IAM token: {e}"))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = format!(
        "{}&User-Agent={}",
        request.uri(),
        USER_AGENT.replace('/', "%2F")
    );
    // Whole seconds, as X-Amz-Date carries them.
    let signed_at = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "MSK IAM token: the clock is before 1970".to_string())?
        .as_secs();
    Ok(MskIamToken {
        token: URL_SAFE_NO_PAD.encode(presigned),
        expires_at_ms: ((signed_at + lifetime.as_secs()) * 1000) as i64,
    })
}

/// The region of an MSK bootstrap host (`b-1.NAME.ID.c2.kafka.REGION.amazonaws.com`,
/// `boot-ID.c1.kafka-serverless.REGION.amazonaws.com`), if it is one.
pub(crate) fn region_of_bootstrap(servers: &str) -> Option<String> {
    servers.split(',').find_map(|server| {
        let host = server
            .trim()
            .rsplit_once(':')
            .map_or(server.trim(), |(h, _)| h);
        let labels: Vec<&str> = host.split('.').collect();
        let n = labels.len();
        (n >= 4
            && labels[n - 2] == "amazonaws"
            && labels[n - 1] == "com"
            && matches!(labels[n - 4], "kafka" | "kafka-serverless"))
        .then(|| labels[n - 3].to_string())
    })
}

/// Where the producer's tokens come from: the credential chain, the region, and the runtime
/// that the chain's providers (HTTP calls to the ECS or instance metadata endpoints) run on.
pub(crate) struct MskIamTokens {
    pub(crate) region: String,
    pub(crate) credentials: SharedCredentialsProvider,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) lifetime: Duration,
}

impl MskIamTokens {
    /// A fresh token, signed now. Called on librdkafka's thread (never a runtime's), through
    /// a thread of its own so that it can block on the credential chain wherever it runs.
    pub(crate) fn generate(&self) -> Result<MskIamToken, String> {
        let credentials = std::thread::scope(|s| {
            s.spawn(|| {
                self.runtime.block_on(async {
                    tokio::time::timeout(
                        CREDENTIALS_TIMEOUT,
                        self.credentials.provide_credentials(),
                    )
                    .await
                })
            })
            .join()
        })
        .map_err(|_| "MSK IAM token: the credential lookup panicked".to_string())?
        .map_err(|_| {
            format!(
                "MSK IAM token: no AWS credentials within {}s (the standard chain: environment, profile, ECS task role, instance role)",
                CREDENTIALS_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("MSK IAM token: no AWS credentials: {e}"))?;
        sign_token(&credentials, &self.region, SystemTime::now(), self.lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(token: &MskIamToken) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(&token.token).unwrap()).unwrap()
    }

    #[test]
    fn token_is_a_presigned_connect_url_with_session_token_and_user_agent() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("tok/en+=".into()), None, "t");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = sign_token(&credentials, "eu-west-1", now, TOKEN_LIFETIME).unwrap();
        assert!(!token.token.contains('='), "base64url without padding");
        let url = decoded(&token);
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=tok%2Fen%2B%3D",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert!(
            url.ends_with(&format!(
                "&User-Agent=fleetload%2F{}",
                env!("CARGO_PKG_VERSION")
            )),
            "{url}"
        );
        assert_eq!(token.expires_at_ms, (1_700_000_000 + 900) * 1000);
    }

    #[test]
    fn msk_bootstrap_hosts_name_their_region() {
        assert_eq!(
            region_of_bootstrap("b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9098,b-2.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9098").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region_of_bootstrap("boot-abc.c1.kafka-serverless.eu-central-1.amazonaws.com:9098")
                .as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(region_of_bootstrap("127.0.0.1:9092"), None);
        assert_eq!(region_of_bootstrap("kafka.internal:9092"), None);
    }
}
