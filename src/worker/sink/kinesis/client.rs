//! The service call: PutRecords on the wire, without the SDK's cost per record.
//!
//! Through `aws-sdk-kinesis`, every record costs a `PutRecordsRequestEntry`, a `Blob` and a
//! `String` key, a clone for a possible retry, the SDK's JSON serializer, and on the way back
//! two `String`s and a builder per result: about half of the worker's CPU time at 500 records
//! per call. Here the request body is written straight into one buffer per batch (records
//! base64-encoded in place), signed with SigV4 by `aws-sigv4` (the SDK's own signer) with
//! credentials from the SDK's provider chain, and sent with a plain HTTP/1.1 client (TLS by
//! rustls for real endpoints). A response that reports no failed record and one sequence number
//! per record is accepted after a scan for those two facts; any other is parsed record by
//! record.
//!
//! What stays with the SDK: the configuration chain (region, credentials, `AWS_ENDPOINT_URL`),
//! the preflight (`DescribeStreamSummary`), and the endpoint and signing scope of PutRecords,
//! which [`resolve_put_records_target`] reads from a PutRecords request the SDK builds and
//! signs but never sends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::answer::error_code;
use crate::model::target::StreamRef;

/// `X-Amz-Target` of PutRecords in the awsJson1_1 protocol.
const TARGET: &str = "Kinesis_20131202.PutRecords";
/// Content type of awsJson1_1 requests.
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// Credentials are refreshed this long before they expire (ECS task role credentials rotate).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Where PutRecords requests go and how they are signed, as the SDK resolved them.
#[derive(Debug, Clone)]
pub struct PutRecordsTarget {
    /// The endpoint URL.
    pub uri: Uri,
    /// The SigV4 signing region.
    pub region: String,
    /// The SigV4 signing name (`kinesis`).
    pub service: String,
}

#[derive(Debug, Default)]
struct Capture(Arc<Mutex<Option<Result<PutRecordsTarget, String>>>>);

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "fleetload::CapturePutRecordsTarget"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let captured = (|| {
            let uri: Uri = request
                .uri()
                .parse()
                .map_err(|e| format!("the SDK's PutRecords URL is unusable: {e}"))?;
            let auth = request
                .headers()
                .get("authorization")
                .ok_or("the SDK did not sign PutRecords")?;
            // `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/kinesis/aws4_request, ...`
            let scope = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split(',').next())
                .ok_or_else(|| {
                    "the SDK's PutRecords signature has no credential scope".to_string()
                })?;
            let parts: Vec<&str> = scope.split('/').collect();
            let [.., region, service, "aws4_request"] = parts[..] else {
                return Err(format!("unexpected credential scope {scope:?}"));
            };
            Ok(PutRecordsTarget {
                uri,
                region: region.to_string(),
                service: service.to_string(),
            })
        })();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(captured);
        Err("fleetload: PutRecords endpoint captured; this request is never sent".into())
    }
}

/// Asks the SDK to prepare a PutRecords request for `stream` (endpoint rules, credentials,
/// signature) and stops it before it is sent: its URL and credential scope are where and how
/// the worker's own requests go, with no endpoint rule duplicated here.
pub async fn resolve_put_records_target(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
) -> Result<PutRecordsTarget, String> {
    let capture = Capture::default();
    let slot = capture.0.clone();
    let entry = PutRecordsRequestEntry::builder()
        .data(Blob::new(b"{}".to_vec()))
        .partition_key("fleetload-preflight")
        .build()
        .expect("data and partition key are set");
    let request = match stream {
        StreamRef::Name(n) => client.put_records().stream_name(n),
        StreamRef::Arn(a) => client.put_records().stream_arn(a),
    };
    let result = request
        .records(entry)
        .customize()
        .interceptor(capture)
        .send()
        .await;
    let captured = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (captured, result) {
        (Some(target), _) => target,
        (None, Err(e)) => Err(format!(
            "the SDK could not prepare a PutRecords request: {}",
            aws_sdk_kinesis::error::DisplayErrorContext(&e)
        )),
        (None, Ok(_)) => Err("PutRecords was sent while resolving its endpoint".into()),
    }
}

/// Credentials from the SDK's provider chain, kept until shortly before they expire.
struct CredentialCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialCache {
    async fn get(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .map_or(true, |at| at > SystemTime::now() + REFRESH_BEFORE_EXPIRY);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {e}"))?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// A failed PutRecords call: its error code, and what happened in words (for the debug log).
#[derive(Debug)]
pub struct CallError {
    /// The code counted in the report (`ThrottlingException`, `HTTP500`, `Timeout`, …).
    pub code: String,
    /// Details.
    pub detail: String,
}

impl CallError {
    fn new(code: &str, detail: impl Into<String>) -> Self {
        CallError {
            code: code.to_string(),
            detail: detail.into(),
        }
    }
}

/// Sends signed PutRecords requests.
pub struct PutRecordsClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    target: PutRecordsTarget,
    host: HeaderValue,
    credentials: CredentialCache,
    timeout: Duration,
}

impl PutRecordsClient {
    /// A client for `target`, signing with credentials from `provider`; each call (request and
    /// answer) must finish within `timeout`.
    pub fn new(
        target: PutRecordsTarget,
        provider: SharedCredentialsProvider,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let authority = target
            .uri
            .authority()
            .ok_or_else(|| format!("the PutRecords URL {} has no host", target.uri))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("bad host {authority}: {e}"))?;
        Ok(PutRecordsClient {
            http,
            target,
            host,
            credentials: CredentialCache {
                provider,
                cached: tokio::sync::Mutex::new(None),
            },
            timeout,
        })
    }

    /// Sends one batch; `Ok` holds the body of an HTTP 200 answer.
    pub async fn call(&self, body: Bytes) -> Result<Bytes, CallError> {
        let credentials = self
            .credentials
            .get()
            .await
            .map_err(|e| CallError::new("CredentialsError", e))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.target.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON))
            .header(
                HeaderName::from_static("x-amz-target"),
                HeaderValue::from_static(TARGET),
            )
            .header(CONTENT_LENGTH, HeaderValue::from(body.len()))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("fleetload/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(body.clone()))
            .map_err(|e| CallError::new("ConstructionFailure", e.to_string()))?;
        self.sign(&credentials, &mut request, &body)
            .map_err(|e| CallError::new("ConstructionFailure", e))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CallError::new("DispatchFailure", format!("{e:#}")))?;
            let status = response.status().as_u16();
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::new("ResponseError", e.to_string()))?
                .to_bytes();
            if status == 200 {
                Ok(body)
            } else {
                let code = error_code(status, error_type.as_deref(), &body);
                Err(CallError::new(
                    &code,
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                ))
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::new(
                "Timeout",
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    fn sign(
        &self,
        credentials: &Credentials,
        request: &mut Request<Full<Bytes>>,
        body: &[u8],
    ) -> Result<(), String> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.target.region)
            .name(&self.target.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("SigV4 parameters: {e}"))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("SigV4: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("SigV4: {e}"))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::sink::kinesis::request::RequestBody;

    /// What a server receives verifies against the signature: the signed headers, URL and
    /// body are exactly the transmitted ones. The server recomputes the SigV4 signature from
    /// the request as it arrived (as Kinesis does) and compares.
    #[tokio::test]
    async fn the_signature_verifies_on_the_received_request() {
        use std::sync::Mutex as StdMutex;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        type Received = Option<(Vec<(String, String)>, Bytes)>;
        let received: Arc<StdMutex<Received>> = Arc::default();
        let slot = received.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let slot = slot.clone();
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                        .collect();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    *slot.lock().unwrap() = Some((headers, body));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(br#"{"FailedRecordCount":0,"Records":[]}"#),
                    )))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });

        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let target = PutRecordsTarget {
            uri: format!("http://127.0.0.1:{port}/").parse().unwrap(),
            region: "eu-west-1".into(),
            service: "kinesis".into(),
        };
        let client = PutRecordsClient::new(
            target,
            SharedCredentialsProvider::new(credentials.clone()),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut body = RequestBody::new(&StreamRef::Name("s".into()), 2, 10);
        body.push(b"k", b"{\"a\":1}");
        let batch = body.take();
        client.call(batch.body.clone()).await.unwrap();

        let (headers, got_body) = received.lock().unwrap().take().unwrap();
        assert_eq!(got_body, batch.body);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        };
        let authorization = header("authorization");
        assert_eq!(header("x-amz-security-token"), "token");
        assert_eq!(header("x-amz-target"), "Kinesis_20131202.PutRecords");
        assert!(
            authorization.contains("/eu-west-1/kinesis/aws4_request"),
            "{authorization}"
        );
        let signed: Vec<String> = authorization
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .split(';')
            .map(str::to_string)
            .collect();
        assert!(signed.contains(&"host".to_string()), "{signed:?}");
        assert!(signed.contains(&"x-amz-target".to_string()), "{signed:?}");
        let amz_date = header("x-amz-date");
        let time = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(time.timestamp() as u64);

        // The server's side: sign the received request again with the same time.
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("kinesis")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            format!("http://127.0.0.1:{port}/"),
            headers
                .iter()
                .filter(|(k, _)| signed.contains(k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&got_body),
        )
        .unwrap();
        let (_, expected) = sign(signable, &params).unwrap().into_parts();
        assert!(
            authorization.ends_with(&format!("Signature={expected}")),
            "{authorization} vs {expected}"
        );
    }
}
