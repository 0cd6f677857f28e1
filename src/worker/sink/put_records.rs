//! PutRecords on the wire, without the SDK's cost per record.
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

use std::borrow::Cow;
use std::ops::Range;
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

use crate::model::scenario::StreamRef;

/// `X-Amz-Target` of PutRecords in the awsJson1_1 protocol.
const TARGET: &str = "Kinesis_20131202.PutRecords";
/// Content type of awsJson1_1 requests.
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// Credentials are refreshed this long before they expire (ECS task role credentials rotate).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// One batch's PutRecords request body being written:
/// `{"StreamName":"s","Records":[{"Data":"<base64>","PartitionKey":"<key>"},...]}`.
#[derive(Debug)]
pub struct RequestBody {
    buf: Vec<u8>,
    prefix_len: usize,
    spans: Vec<Range<u32>>,
}

impl RequestBody {
    /// An empty batch for `stream`, with room for `records` records of about `record_len` bytes.
    pub fn new(stream: &StreamRef, records: usize, record_len: usize) -> Self {
        let mut buf = Vec::with_capacity(64 + records * (record_len * 4 / 3 + 40));
        match stream {
            StreamRef::Name(n) => {
                buf.extend_from_slice(b"{\"StreamName\":");
                json_string(n.as_bytes(), &mut buf);
            }
            StreamRef::Arn(a) => {
                buf.extend_from_slice(b"{\"StreamARN\":");
                json_string(a.as_bytes(), &mut buf);
            }
        }
        buf.extend_from_slice(b",\"Records\":[");
        let prefix_len = buf.len();
        RequestBody {
            buf,
            prefix_len,
            spans: Vec::with_capacity(records),
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Appends one record: `data` base64-encoded in place, `key` as a JSON string.
    pub fn push(&mut self, key: &[u8], data: &[u8]) {
        if !self.spans.is_empty() {
            self.buf.push(b',');
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(b"{\"Data\":\"");
        let at = self.buf.len();
        // SIMD base64 (AVX2 where the CPU has it): several times the speed of a scalar encoder.
        let encoded = base64_simd::STANDARD.encoded_length(data.len());
        self.buf.resize(at + encoded, 0);
        let _ =
            base64_simd::STANDARD.encode(data, base64_simd::Out::from_slice(&mut self.buf[at..]));
        self.buf.extend_from_slice(b"\",\"PartitionKey\":");
        json_string(key, &mut self.buf);
        self.buf.push(b'}');
        self.spans.push(start as u32..self.buf.len() as u32);
    }

    /// Closes the JSON document and hands the batch over for sending; the body starts again,
    /// empty, for the next batch.
    pub fn take(&mut self) -> Batch {
        let mut buf = Vec::with_capacity(self.buf.capacity());
        buf.extend_from_slice(&self.buf[..self.prefix_len]);
        let mut full = std::mem::replace(&mut self.buf, buf);
        full.extend_from_slice(b"]}");
        let capacity = self.spans.capacity();
        let spans = std::mem::replace(&mut self.spans, Vec::with_capacity(capacity));
        Batch {
            body: Bytes::from(full),
            prefix_len: self.prefix_len,
            spans,
        }
    }
}

/// A closed PutRecords body and where each record lies in it, so that a retry can send a
/// subset of the records without encoding them again.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The request body.
    pub body: Bytes,
    prefix_len: usize,
    spans: Vec<Range<u32>>,
}

impl Batch {
    /// A batch of the records at `indices` (in that order).
    pub fn subset(&self, indices: &[usize]) -> Batch {
        let src = &self.body[..];
        let mut buf = Vec::with_capacity(
            self.prefix_len
                + 2
                + indices
                    .iter()
                    .map(|&i| (self.spans[i].end - self.spans[i].start) as usize + 1)
                    .sum::<usize>(),
        );
        buf.extend_from_slice(&src[..self.prefix_len]);
        let mut spans = Vec::with_capacity(indices.len());
        for (n, &i) in indices.iter().enumerate() {
            if n > 0 {
                buf.push(b',');
            }
            let start = buf.len() as u32;
            let r = &self.spans[i];
            buf.extend_from_slice(&src[r.start as usize..r.end as usize]);
            spans.push(start..buf.len() as u32);
        }
        buf.extend_from_slice(b"]}");
        Batch {
            body: Bytes::from(buf),
            prefix_len: self.prefix_len,
            spans,
        }
    }
}

/// Writes `s` as a JSON string. Partition keys are sensor ids or template output: plain ASCII
/// passes through, anything else is escaped.
fn json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    if s.iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.extend_from_slice(s);
    } else {
        let text = String::from_utf8_lossy(s);
        let quoted = serde_json::to_string(&*text).expect("a string serializes");
        out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
    }
    out.push(b'"');
}

/// How Kinesis answered a PutRecords request with HTTP 200.
#[derive(Debug, PartialEq)]
pub enum Answer<'a> {
    /// Every record got a sequence number.
    AllAcknowledged,
    /// Record by record, in request order: `None` when acknowledged, else the error code.
    /// Fewer entries than records means the rest were not answered.
    PerRecord(Vec<Option<Cow<'a, str>>>),
}

#[derive(serde::Deserialize)]
struct ResponseBody<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Vec<RecordResult<'a>>,
}

#[derive(serde::Deserialize)]
struct RecordResult<'a> {
    #[serde(rename = "SequenceNumber", borrow, default)]
    sequence_number: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorCode", borrow, default)]
    error_code: Option<Cow<'a, str>>,
}

/// Reads a PutRecords response of `records` records. The fast path only checks that
/// `FailedRecordCount` is 0 and that there are exactly `records` sequence numbers: the text
/// `"SequenceNumber"` with both quotes can only be a key (inside a JSON string its quotes
/// would be escaped). Anything else is parsed in full.
pub fn read_answer(body: &[u8], records: usize) -> Result<Answer<'_>, String> {
    if failed_record_count(body) == Some(0)
        && memchr::memmem::find_iter(body, b"\"SequenceNumber\"").count() == records
    {
        return Ok(Answer::AllAcknowledged);
    }
    let parsed: ResponseBody<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable PutRecords response ({e})"))?;
    Ok(Answer::PerRecord(
        parsed
            .records
            .into_iter()
            .map(|r| match r.sequence_number {
                Some(_) => None,
                None => Some(r.error_code.unwrap_or(Cow::Borrowed("UnknownRecordError"))),
            })
            .collect(),
    ))
}

/// The value of the top-level `"FailedRecordCount"`, when it appears exactly once.
fn failed_record_count(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"FailedRecordCount\"";
    let mut found = memchr::memmem::find_iter(body, KEY);
    let at = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let rest = &body[at + KEY.len()..];
    let rest = trim_start(rest).strip_prefix(b":")?;
    let rest = trim_start(rest);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// The error code of a PutRecords call answered with a status other than 200: the
/// `x-amzn-ErrorType` header or the body's `__type` (both may carry a namespace before `#` and
/// a URL after `:`), else `HTTP<status>`.
pub fn error_code(status: u16, header: Option<&str>, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody<'a> {
        #[serde(rename = "__type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        code: Option<Cow<'a, str>>,
    }
    let from_body = serde_json::from_slice::<ErrorBody<'_>>(body)
        .ok()
        .and_then(|b| b.kind.or(b.code))
        .map(Cow::into_owned);
    let raw = header.map(str::to_string).or(from_body);
    match raw {
        Some(raw) => {
            let code = raw.rsplit('#').next().unwrap_or(&raw);
            let code = code.split(':').next().unwrap_or(code).trim();
            if code.is_empty() {
                format!("HTTP{status}")
            } else {
                code.to_string()
            }
        }
        None => format!("HTTP{status}"),
    }
}

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
    use base64::Engine as _;

    fn decode(batch: &Batch) -> serde_json::Value {
        serde_json::from_slice(&batch.body).unwrap()
    }

    #[test]
    fn body_is_the_awsjson_put_records_request() {
        let mut body = RequestBody::new(&StreamRef::Name("s".into()), 4, 100);
        body.push(b"k1", b"{\"a\":1}");
        body.push(b"k\"2", &[0, 255, 10]);
        let batch = body.take();
        let v = decode(&batch);
        assert_eq!(v["StreamName"], "s");
        let records = v["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["PartitionKey"], "k1");
        assert_eq!(records[0]["Data"], "eyJhIjoxfQ==");
        assert_eq!(records[1]["PartitionKey"], "k\"2");
        let data = base64::engine::general_purpose::STANDARD
            .decode(records[1]["Data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, [0, 255, 10]);
        // The body is ready for the next batch.
        assert!(body.is_empty());
        body.push(b"k3", b"x");
        let v = decode(&body.take());
        assert_eq!(v["Records"].as_array().unwrap().len(), 1);
        assert_eq!(v["Records"][0]["PartitionKey"], "k3");
    }

    #[test]
    fn a_subset_resends_chosen_records_by_arn() {
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
        let mut body = RequestBody::new(&StreamRef::Arn(arn.into()), 4, 10);
        for k in ["a", "b", "c", "d"] {
            body.push(k.as_bytes(), k.as_bytes());
        }
        let batch = body.take();
        let retry = batch.subset(&[1, 3]);
        assert_eq!(retry.spans.len(), 2);
        let v = decode(&retry);
        assert_eq!(v["StreamARN"], arn);
        let keys: Vec<&str> = v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["PartitionKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["b", "d"]);
        let again = retry.subset(&[1]);
        assert_eq!(decode(&again)["Records"][0]["PartitionKey"], "d");
    }

    #[test]
    fn answers() {
        let ok = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s"},{"SequenceNumber":"2","ShardId":"s"}]}"#;
        assert_eq!(read_answer(ok, 2).unwrap(), Answer::AllAcknowledged);
        // One answer missing: parsed in full, and the caller sees one result only.
        let short =
            br#"{"Records":[{"SequenceNumber":"1","ShardId":"s"}], "FailedRecordCount" : 0}"#;
        assert_eq!(
            read_answer(short, 2).unwrap(),
            Answer::PerRecord(vec![None])
        );
        let partial = br#"{"Records":[{"SequenceNumber":"1","ShardId":"s"},{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for \"SequenceNumber\""},{}],"FailedRecordCount":2}"#;
        assert_eq!(
            read_answer(partial, 3).unwrap(),
            Answer::PerRecord(vec![
                None,
                Some(Cow::Borrowed("ProvisionedThroughputExceededException")),
                Some(Cow::Borrowed("UnknownRecordError")),
            ])
        );
        assert!(read_answer(b"<html>", 1).is_err());
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(
                400,
                None,
                br#"{"__type":"com.amazonaws.kinesis#ResourceNotFoundException","message":"x"}"#
            ),
            "ResourceNotFoundException"
        );
        assert_eq!(
            error_code(
                400,
                Some("ThrottlingException:http://internal.amazon.com/"),
                b""
            ),
            "ThrottlingException"
        );
        assert_eq!(error_code(500, None, b"oops"), "HTTP500");
        assert_eq!(
            error_code(500, None, br#"{"__type":"InternalFailure"}"#),
            "InternalFailure"
        );
    }

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
