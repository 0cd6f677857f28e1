//! A Kinesis-compatible HTTP server on loopback: **test and benchmark support**, not part of the
//! worker's production path.
//!
//! It speaks what `aws-sdk-kinesis` 1.x sends by default — the `awsJson1_1` protocol: `POST /`
//! with `X-Amz-Target: Kinesis_20131202.<Operation>` and `Content-Type:
//! application/x-amz-json-1.1`, record `Data` as base64 in the JSON body, errors as HTTP 4xx/5xx
//! with a `{"__type": "<Code>", "message": "…"}` body. Signatures are not checked.
//!
//! Two uses:
//! - **integration tests**: a test double that injects partial failures deterministically (by
//!   [`DoubleConfig::seed`]): per-record `ProvisionedThroughputExceededException` and
//!   `InternalFailure` in `PutRecords` responses, and whole requests answered HTTP 500;
//!   optionally it keeps every accepted record for inspection;
//! - **benchmarks**: a fast endpoint that accepts every record and is never the bottleneck
//!   (borrowed parsing, no base64 decoding unless records are kept, preformatted answers).
//!
//! Operations: `PutRecords`, `PutRecord`, `DescribeStreamSummary`, `DescribeStream`,
//! `ListShards`, on one stream, addressed by `StreamName` or by the ARN
//! `arn:aws:kinesis:us-east-1:123456789012:stream/<name>`. Any other stream is answered HTTP 400
//! `ResourceNotFoundException`. The Kinesis limits are enforced as the service does: 1–500
//! records per `PutRecords` (`ValidationException`), partition keys of 1–256 characters
//! (`ValidationException`), at most 1 MiB per record (data and key) and 5 MiB per request
//! (`InvalidArgumentException`).
//!
//! The double does not throttle by shard capacity (1 MiB/s or 1,000 records/s per shard): it
//! fails exactly the share of records it is configured to fail, on every shard or only on the
//! shards it is told are hot ([`DoubleConfig::throttled_shards`]), and counts what each shard
//! accepted and throttled ([`KinesisDouble::by_shard`]). A record with an `ExplicitHashKey`
//! goes to the shard whose hash key range (as `ListShards` reports it) holds that key, as in
//! the service; a record without one goes to a fast hash (FNV-1a) of its partition key modulo
//! the shard count, not the MD5 mapping into the ranges. Injected HTTP 500s apply to
//! `PutRecords` and `PutRecord` only, so that a client can always describe the stream.
//!
//! With [`DoubleConfig::count_user_records`], the double opens every KPL aggregated record it
//! accepts or throttles (magic number, MD5 trailer and protobuf checked with its own code, not
//! the producer's) and counts the user records inside, per shard, as a de-aggregating consumer
//! would read them ([`KinesisDouble::user_records_by_shard`]), along with the user records
//! whose partition key hashes (MD5) outside the range of the shard their aggregate landed on,
//! which the KCL would drop ([`DoubleStats::user_records_off_shard`]). A record that is not a
//! well-formed aggregate counts as one user record.
//!
//! The server lives until [`KinesisDouble::shutdown`] or until the handle is dropped; open
//! connections then get a bounded grace period to finish their request.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Account id in the ARNs the double reports.
pub const ACCOUNT_ID: &str = "123456789012";
/// Region in the ARNs the double reports.
pub const REGION: &str = "us-east-1";
/// Prefix of the `X-Amz-Target` header for Kinesis.
mod api;
use api::serve;

const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// Content type of every awsJson1_1 request and response.
const CONTENT_TYPE_JSON_1_1: &str = "application/x-amz-json-1.1";
/// Largest request body read; a 5 MiB `PutRecords` is about 7 MiB once base64-encoded.
const MAX_BODY_BYTES: usize = 16 << 20;
/// Kinesis limits.
const MAX_RECORDS_PER_REQUEST: usize = 500;
const MAX_RECORD_BYTES: u64 = 1 << 20;
const MAX_REQUEST_BYTES: u64 = 5 << 20;
const MAX_PARTITION_KEY_CHARS: usize = 256;
/// How long open connections may take to finish once the double shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Retention the double reports, hours.
const RETENTION_HOURS: u32 = 24;
/// Sequence numbers are this base plus a counter: 23 decimal digits for the first 10^21 records,
/// so they increase both as numbers and as strings.
const SEQUENCE_BASE: u128 = 49_000_000_000_000_000_000_000;

/// What the double serves and which failures it injects.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// Open shards of the stream (1–10,000).
    pub shards: u32,
    /// Name of the one stream served (1–128 of `A-Z a-z 0-9 _ . -`).
    pub stream_name: String,
    /// Share of records answered `ProvisionedThroughputExceededException` (0–1).
    pub throttle_share: f64,
    /// Share of records answered `InternalFailure` (0–1; with `throttle_share` at most 1).
    pub internal_failure_share: f64,
    /// The shards (by index, `shardId-00000000000<i>`) whose records `throttle_share` applies
    /// to: a hot shard. Empty: every shard.
    pub throttled_shards: Vec<u32>,
    /// Share of whole `PutRecords`/`PutRecord` requests answered HTTP 500 (0–1).
    pub http500_share: f64,
    /// Seed of every injected failure: the same seed and the same sequence of requests give
    /// the same failures.
    pub seed: u64,
    /// Keep accepted records (partition key, decoded data) for [`KinesisDouble::accepted_records`].
    pub keep_records: bool,
    /// Delay before every response, to stand in for a network round trip.
    pub latency: Option<Duration>,
    /// Time the service takes to process each `PutRecords`/`PutRecord` call before its records
    /// are accepted (a slow stream); the control plane is not slowed.
    pub service_time: Option<Duration>,
    /// Process one `PutRecords`/`PutRecord` call at a time: with `service_time`, the double
    /// accepts at most `records per call / service_time` records per second, however many
    /// requests are in flight (a saturated target).
    pub one_at_a_time: bool,
    /// Open KPL aggregated records to count the user records they carry (a base64 decoding
    /// and an MD5 of every record; benchmarks leave it off).
    pub count_user_records: bool,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            shards: 4,
            stream_name: "fleetload-test".into(),
            throttle_share: 0.0,
            internal_failure_share: 0.0,
            throttled_shards: Vec::new(),
            http500_share: 0.0,
            seed: 0,
            keep_records: false,
            latency: None,
            service_time: None,
            one_at_a_time: false,
            count_user_records: false,
        }
    }
}

/// Counters of what the double has seen, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoubleStats {
    /// HTTP requests answered, of every operation and outcome.
    pub requests: u64,
    /// Requests answered with an injected HTTP 500.
    pub http500s: u64,
    /// Requests answered HTTP 4xx (unknown stream or operation, malformed or over the limits).
    pub client_errors: u64,
    /// Records in well-formed `PutRecords`/`PutRecord` requests, including those answered with
    /// an injected HTTP 500; the records of answered requests are
    /// `records_accepted + throttled + internal_failures`.
    pub records_received: u64,
    /// Records given a sequence number.
    pub records_accepted: u64,
    /// Data bytes (decoded) of the accepted records.
    pub bytes_accepted: u64,
    /// Records answered `ProvisionedThroughputExceededException`.
    pub throttled: u64,
    /// Records answered `InternalFailure`.
    pub internal_failures: u64,
    /// With [`DoubleConfig::count_user_records`]: user records in the accepted records (an
    /// aggregated record counts what it carries, any other record one).
    pub user_records_accepted: u64,
    /// With [`DoubleConfig::count_user_records`]: user records in accepted aggregated records
    /// whose partition key hashes outside the range of the shard the record landed on.
    pub user_records_off_shard: u64,
}

/// A running double. Dropping it stops the server, as [`KinesisDouble::shutdown`] does without
/// waiting.
pub struct KinesisDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl KinesisDouble {
    /// Starts the double on an ephemeral port of 127.0.0.1.
    pub async fn start(cfg: DoubleConfig) -> anyhow::Result<Self> {
        Self::start_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts the double on `addr`, which must be a loopback address (port 0 picks a free one).
    pub async fn start_on(cfg: DoubleConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("the Kinesis double only listens on loopback addresses, not {addr}");
        }
        let shared = Arc::new(Shared::new(cfg)?);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, shared.clone(), shutdown_rx));
        Ok(KinesisDouble {
            addr,
            shared,
            shutdown_tx,
            server: Some(server),
        })
    }

    /// The address the double listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ARN of the stream served.
    pub fn stream_arn(&self) -> &str {
        &self.shared.stream_arn
    }

    /// Counters so far.
    pub fn stats(&self) -> DoubleStats {
        let c = &self.shared.counters;
        DoubleStats {
            requests: c.requests.load(Relaxed),
            http500s: c.http500s.load(Relaxed),
            client_errors: c.client_errors.load(Relaxed),
            records_received: c.records_received.load(Relaxed),
            records_accepted: c.records_accepted.load(Relaxed),
            bytes_accepted: c.bytes_accepted.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            internal_failures: c.internal_failures.load(Relaxed),
            user_records_accepted: c.user_records_accepted.load(Relaxed),
            user_records_off_shard: c.user_records_off_shard.load(Relaxed),
        }
    }

    /// Per shard, by shard id: records accepted and records throttled so far.
    pub fn by_shard(&self) -> Vec<(String, u64, u64)> {
        let s = &self.shared;
        s.shard_ids
            .iter()
            .zip(s.accepted_on_shard.iter().zip(&s.throttled_on_shard))
            .map(|(id, (a, t))| (id.clone(), a.load(Relaxed), t.load(Relaxed)))
            .collect()
    }

    /// Per shard, by shard id: user records in the records accepted and in the records
    /// throttled so far (throttled ones each time they were throttled); zeros unless
    /// [`DoubleConfig::count_user_records`].
    pub fn user_records_by_shard(&self) -> Vec<(String, u64, u64)> {
        let s = &self.shared;
        s.shard_ids
            .iter()
            .zip(
                s.users_accepted_on_shard
                    .iter()
                    .zip(&s.users_throttled_on_shard),
            )
            .map(|(id, (a, t))| (id.clone(), a.load(Relaxed), t.load(Relaxed)))
            .collect()
    }

    /// The accepted records (partition key, data) in the order they were accepted; empty
    /// unless [`DoubleConfig::keep_records`].
    pub fn accepted_records(&self) -> Vec<(String, Vec<u8>)> {
        lock(&self.shared.kept).clone()
    }

    /// Stops accepting connections, lets open ones finish their request (for at most a few
    /// seconds) and waits for the server to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), server).await;
        }
    }
}

impl Drop for KinesisDouble {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

impl std::fmt::Debug for KinesisDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisDouble")
            .field("addr", &self.addr)
            .field("stream_arn", &self.shared.stream_arn)
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    http500s: AtomicU64,
    client_errors: AtomicU64,
    records_received: AtomicU64,
    records_accepted: AtomicU64,
    bytes_accepted: AtomicU64,
    throttled: AtomicU64,
    internal_failures: AtomicU64,
    user_records_accepted: AtomicU64,
    user_records_off_shard: AtomicU64,
}

/// State shared by every connection.
struct Shared {
    stream_name: String,
    stream_arn: String,
    shards: u32,
    keep_records: bool,
    latency: Option<Duration>,
    service_time: Option<Duration>,
    /// Held while a data-plane call is processed, in one-at-a-time mode.
    serial: Option<tokio::sync::Mutex<()>>,
    seed: u64,
    /// Per-record draws below this (out of 2^53) are throttled…
    throttle_below: u64,
    /// …and below this (but not throttled) fail with InternalFailure.
    failure_below: u64,
    /// Per-request draws below this (out of 2^53) are answered HTTP 500.
    http500_below: u64,
    /// `","ShardId":"shardId-…"}` per shard: the tail of an accepted entry.
    accepted_tail: Vec<String>,
    /// The whole entry of a throttled record, per shard.
    throttled_entry: Vec<String>,
    /// The whole entry of a record that failed internally.
    failed_entry: String,
    shard_ids: Vec<String>,
    created_epoch_seconds: f64,
    summary_body: Bytes,
    /// Index of the next record, for sequence numbers and failure draws.
    next_record: AtomicU64,
    /// Index of the next data-plane request, for HTTP 500 draws.
    next_request: AtomicU64,
    counters: Counters,
    /// Whether `throttle_share` applies to the records of each shard.
    throttles_shard: Vec<bool>,
    /// Records accepted and throttled, per shard.
    accepted_on_shard: Vec<AtomicU64>,
    throttled_on_shard: Vec<AtomicU64>,
    /// First hash key of each shard's range, ascending (the ranges `ListShards` reports).
    range_starts: Vec<u128>,
    count_user_records: bool,
    /// User records in the records accepted and throttled, per shard.
    users_accepted_on_shard: Vec<AtomicU64>,
    users_throttled_on_shard: Vec<AtomicU64>,
    kept: Mutex<Vec<(String, Vec<u8>)>>,
}

fn valid_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn share_threshold(name: &str, share: f64) -> anyhow::Result<u64> {
    if !(0.0..=1.0).contains(&share) {
        bail!("{name} must be a share between 0 and 1, got {share}");
    }
    Ok((share * (1u64 << 53) as f64).round() as u64)
}

impl Shared {
    fn new(cfg: DoubleConfig) -> anyhow::Result<Self> {
        if !(1..=10_000).contains(&cfg.shards) {
            bail!("shards must be 1-10000, got {}", cfg.shards);
        }
        if !valid_stream_name(&cfg.stream_name) {
            bail!(
                "stream name {:?} is not 1-128 of A-Z a-z 0-9 _ . -",
                cfg.stream_name
            );
        }
        let throttle_below = share_threshold("throttle_share", cfg.throttle_share)?;
        let internal = share_threshold("internal_failure_share", cfg.internal_failure_share)?;
        if cfg.throttle_share + cfg.internal_failure_share > 1.0 + 1e-9 {
            bail!(
                "throttle_share + internal_failure_share must be at most 1, got {} + {}",
                cfg.throttle_share,
                cfg.internal_failure_share
            );
        }
        let failure_below = (throttle_below + internal).min(1u64 << 53);
        if let Some(&i) = cfg.throttled_shards.iter().find(|&&i| i >= cfg.shards) {
            bail!(
                "throttled shard {i} is not one of the {} shards",
                cfg.shards
            );
        }
        let throttles_shard = (0..cfg.shards)
            .map(|i| cfg.throttled_shards.is_empty() || cfg.throttled_shards.contains(&i))
            .collect();
        let http500_below = share_threshold("http500_share", cfg.http500_share)?;

        let name = cfg.stream_name;
        let stream_arn = format!("arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}");
        let shard_ids: Vec<String> = (0..cfg.shards)
            .map(|i| format!("shardId-{i:012}"))
            .collect();
        let accepted_tail = shard_ids
            .iter()
            .map(|id| format!("\",\"ShardId\":\"{id}\"}}"))
            .collect();
        let throttled_entry = shard_ids
            .iter()
            .map(|id| {
                json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": format!(
                        "Rate exceeded for shard {id} in stream {name} under account {ACCOUNT_ID}."
                    ),
                })
                .to_string()
            })
            .collect();
        let failed_entry = json!({
            "ErrorCode": "InternalFailure",
            "ErrorMessage": "Internal service failure.",
        })
        .to_string();
        let created_epoch_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d.as_millis() as f64) / 1000.0)
            .unwrap_or(0.0);
        let summary_body = Bytes::from(
            json!({
                "StreamDescriptionSummary": {
                    "StreamName": name,
                    "StreamARN": stream_arn,
                    "StreamStatus": "ACTIVE",
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "RetentionPeriodHours": RETENTION_HOURS,
                    "StreamCreationTimestamp": created_epoch_seconds,
                    "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                    "EncryptionType": "NONE",
                    "OpenShardCount": cfg.shards,
                    "ConsumerCount": 0,
                }
            })
            .to_string(),
        );
        Ok(Shared {
            stream_name: name,
            stream_arn,
            shards: cfg.shards,
            keep_records: cfg.keep_records,
            latency: cfg.latency,
            service_time: cfg.service_time,
            serial: cfg.one_at_a_time.then(|| tokio::sync::Mutex::new(())),
            seed: cfg.seed,
            throttle_below,
            failure_below,
            http500_below,
            accepted_tail,
            throttled_entry,
            failed_entry,
            shard_ids,
            created_epoch_seconds,
            summary_body,
            next_record: AtomicU64::new(0),
            next_request: AtomicU64::new(0),
            counters: Counters::default(),
            throttles_shard,
            accepted_on_shard: (0..cfg.shards).map(|_| AtomicU64::new(0)).collect(),
            throttled_on_shard: (0..cfg.shards).map(|_| AtomicU64::new(0)).collect(),
            range_starts: (0..cfg.shards as usize)
                .map(|i| hash_range(cfg.shards, i).0)
                .collect(),
            count_user_records: cfg.count_user_records,
            users_accepted_on_shard: (0..cfg.shards).map(|_| AtomicU64::new(0)).collect(),
            users_throttled_on_shard: (0..cfg.shards).map(|_| AtomicU64::new(0)).collect(),
            kept: Mutex::new(Vec::new()),
        })
    }

    /// The shard of a record: by its explicit hash key when it has one (the range holding
    /// it), else by the fast hash of its partition key.
    fn shard_for(&self, partition_key: &str, hash_key: Option<u128>) -> usize {
        match hash_key {
            Some(h) => self.range_starts.partition_point(|&start| start <= h) - 1,
            None => self.shard_of(partition_key),
        }
    }

    /// User records in `data` (base64) as a de-aggregating consumer reads it, and how many of
    /// them hash outside the range of `shard`; `(1, 0)` for a record that is not aggregated.
    fn user_records(&self, data: &str, shard: usize) -> (u64, u64) {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) else {
            return (1, 0);
        };
        let Some(keys) = aggregated_keys(&bytes) else {
            return (1, 0);
        };
        let (start, end) = hash_range(self.shards, shard);
        let off = keys
            .iter()
            .filter(|k| {
                let h = u128::from_be_bytes(Md5::digest(k).into());
                h < start || h > end
            })
            .count();
        (keys.len() as u64, off as u64)
    }

    fn shard_of(&self, partition_key: &str) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in partition_key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % u64::from(self.shards)) as usize
    }

    /// What happens to the record with this index, bound for shard `shard`.
    fn record_fate(&self, index: u64, shard: usize) -> Fate {
        if self.failure_below == 0 {
            return Fate::Accepted;
        }
        let draw = splitmix64(self.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 11;
        if draw < self.throttle_below {
            if self.throttles_shard[shard] {
                Fate::Throttled
            } else {
                Fate::Accepted
            }
        } else if draw < self.failure_below {
            Fate::Failed
        } else {
            Fate::Accepted
        }
    }

    /// Whether the data-plane request with this index is answered HTTP 500.
    fn request_fails(&self) -> bool {
        if self.http500_below == 0 {
            return false;
        }
        let index = self.next_request.fetch_add(1, Relaxed);
        let draw = splitmix64(
            (self.seed ^ 0xd1b5_4a32_d192_ed03) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ) >> 11;
        draw < self.http500_below
    }

    /// Checks that a request addresses the stream served.
    fn check_stream(&self, name: Option<&str>, arn: Option<&str>) -> Result<(), Reply> {
        match (name, arn) {
            (None, None) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Either StreamName or StreamARN must be given.",
            )),
            (Some(n), _) if n != self.stream_name => Err(self.not_found(n)),
            (_, Some(a)) if a != self.stream_arn => Err(self.not_found(a)),
            _ => Ok(()),
        }
    }

    fn not_found(&self, stream: &str) -> Reply {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            &format!("Stream {stream} under account {ACCOUNT_ID} not found."),
        )
    }

    fn shard_json(&self, i: usize) -> serde_json::Value {
        let (start, end) = hash_range(self.shards, i);
        json!({
            "ShardId": self.shard_ids[i],
            "HashKeyRange": {"StartingHashKey": start.to_string(), "EndingHashKey": end.to_string()},
            "SequenceNumberRange": {"StartingSequenceNumber": SEQUENCE_BASE.to_string()},
        })
    }
}

/// The hash key range of shard `i` of `shards` (both ends included): the key space cut in
/// equal parts, the remainder spread over the first shards.
fn hash_range(shards: u32, i: usize) -> (u128, u128) {
    let n = u128::from(shards);
    let i = i as u128;
    let width = u128::MAX / n;
    let start = width * i + i.min(u128::MAX % n);
    let end = if i + 1 == n {
        u128::MAX
    } else {
        width * (i + 1) + (i + 1).min(u128::MAX % n) - 1
    };
    (start, end)
}

/// The magic number of a KPL aggregated record.
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The partition keys of the user records in a KPL aggregated record (one per user record),
/// when `data` is one: magic, a protobuf `AggregatedRecord`, and the MD5 of that body.
fn aggregated_keys(data: &[u8]) -> Option<Vec<&[u8]>> {
    let rest = data.strip_prefix(&KPL_MAGIC)?;
    let body_len = rest.len().checked_sub(16)?;
    let (body, digest) = rest.split_at(body_len);
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    let mut table = Vec::new();
    let mut key_of_record = Vec::new();
    let mut p = Proto(body);
    while !p.0.is_empty() {
        let (field, wire) = p.tag()?;
        match (field, wire) {
            (1, 2) => table.push(p.bytes()?),
            (3, 2) => {
                let mut r = Proto(p.bytes()?);
                let mut key = None;
                let mut has_data = false;
                while !r.0.is_empty() {
                    match r.tag()? {
                        (1, 0) => key = Some(r.varint()?),
                        (3, 2) => {
                            r.bytes()?;
                            has_data = true;
                        }
                        (_, wire) => r.skip(wire)?,
                    }
                }
                if !has_data {
                    return None;
                }
                key_of_record.push(key?);
            }
            (_, wire) => p.skip(wire)?,
        }
    }
    key_of_record
        .into_iter()
        .map(|k| table.get(usize::try_from(k).ok()?).copied())
        .collect()
}

/// Just enough of a protobuf reader for [`aggregated_keys`].
struct Proto<'a>(&'a [u8]);

impl<'a> Proto<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.0.get(i)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }

    fn tag(&mut self) -> Option<(u64, u64)> {
        let t = self.varint()?;
        Some((t >> 3, t & 7))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        let b = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(b)
    }

    fn skip(&mut self, wire: u64) -> Option<()> {
        let n = match wire {
            0 => return self.varint().map(drop),
            2 => return self.bytes().map(drop),
            1 => 8,
            5 => 4,
            _ => return None,
        };
        self.0 = self.0.get(n..)?;
        Some(())
    }
}

/// An explicit hash key as the service takes it: a decimal of at most 39 digits without
/// leading zeros, at most 2^128 - 1.
fn parse_hash_key(index: usize, key: &str) -> Result<u128, Reply> {
    let digits = !key.is_empty()
        && key.len() <= 39
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if !digits {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "1 validation error detected: Value '{key}' at 'records.{}.member.explicitHashKey' \
                 failed to satisfy constraint: Member must satisfy regular expression pattern: \
                 0|([1-9]\\d{{0,38}})",
                index + 1
            ),
        ));
    }
    key.parse::<u128>().map_err(|_| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentException",
            &format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {key}"),
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Accepted,
    Throttled,
    Failed,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length of the data a base64 string decodes to (without decoding it).
fn decoded_len(b64: &str) -> u64 {
    let b = b64.as_bytes();
    let pad = b.iter().rev().take(2).filter(|&&c| c == b'=').count();
    ((b.len() / 4) * 3 + (b.len() % 4).saturating_sub(1)).saturating_sub(pad) as u64
}

/// An answer: status and JSON body.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn ok(body: impl Into<Bytes>) -> Self {
        Reply {
            status: StatusCode::OK,
            body: body.into(),
        }
    }

    fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Reply {
            status,
            body: json!({"__type": code, "message": message})
                .to_string()
                .into(),
        }
    }

    fn injected_500() -> Self {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "injected HTTP 500 (Kinesis double)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::api::put_records;
    use super::*;

    fn shared(cfg: DoubleConfig) -> Shared {
        Shared::new(cfg).unwrap()
    }

    #[test]
    fn decoded_len_matches_base64() {
        for n in 0..40 {
            let data = vec![7u8; n];
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(decoded_len(&b64), n as u64, "{b64}");
        }
    }

    #[test]
    fn fates_follow_the_shares_and_the_seed() {
        let cfg = DoubleConfig {
            throttle_share: 0.3,
            internal_failure_share: 0.1,
            seed: 7,
            ..Default::default()
        };
        let a = shared(cfg.clone());
        let fates: Vec<Fate> = (0..100_000).map(|i| a.record_fate(i, 0)).collect();
        let throttled = fates.iter().filter(|f| **f == Fate::Throttled).count();
        let failed = fates.iter().filter(|f| **f == Fate::Failed).count();
        assert!((29_000..31_000).contains(&throttled), "{throttled}");
        assert!((9_500..10_500).contains(&failed), "{failed}");
        let b = shared(cfg.clone());
        assert!((0..100_000).all(|i| b.record_fate(i, 0) == fates[i as usize]));
        let other_seed = shared(DoubleConfig { seed: 8, ..cfg });
        assert!((0..1000).any(|i| other_seed.record_fate(i, 0) != fates[i as usize]));
    }

    #[test]
    fn a_hot_shard_is_throttled_and_the_others_are_not() {
        let hot = shared(DoubleConfig {
            shards: 4,
            throttle_share: 1.0,
            throttled_shards: vec![2],
            ..Default::default()
        });
        assert!((0..1000).all(|i| hot.record_fate(i, 2) == Fate::Throttled));
        for shard in [0, 1, 3] {
            assert!((0..1000).all(|i| hot.record_fate(i, shard) == Fate::Accepted));
        }
        assert!(Shared::new(DoubleConfig {
            shards: 4,
            throttled_shards: vec![4],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn extreme_shares() {
        let all = shared(DoubleConfig {
            throttle_share: 1.0,
            http500_share: 1.0,
            ..Default::default()
        });
        assert!((0..10_000).all(|i| all.record_fate(i, 0) == Fate::Throttled));
        assert!((0..1000).all(|_| all.request_fails()));
        let none = shared(DoubleConfig::default());
        assert!((0..10_000).all(|i| none.record_fate(i, 0) == Fate::Accepted));
        assert!((0..1000).all(|_| !none.request_fails()));
    }

    #[test]
    fn bad_configs_are_refused() {
        for cfg in [
            DoubleConfig {
                shards: 0,
                ..Default::default()
            },
            DoubleConfig {
                stream_name: "no spaces".into(),
                ..Default::default()
            },
            DoubleConfig {
                throttle_share: 1.5,
                ..Default::default()
            },
            DoubleConfig {
                throttle_share: 0.6,
                internal_failure_share: 0.6,
                ..Default::default()
            },
        ] {
            assert!(Shared::new(cfg).is_err());
        }
    }

    #[test]
    fn hash_key_ranges_cover_the_space() {
        for shards in [1, 2, 3, 7, 64] {
            let s = shared(DoubleConfig {
                shards,
                ..Default::default()
            });
            let mut next: u128 = 0;
            for i in 0..shards as usize {
                let v = s.shard_json(i);
                let start: u128 = v["HashKeyRange"]["StartingHashKey"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let end: u128 = v["HashKeyRange"]["EndingHashKey"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(start, next);
                assert!(end >= start);
                next = end.wrapping_add(1);
            }
            assert_eq!(next, 0, "the last range ends at 2^128 - 1");
        }
    }

    #[test]
    fn an_explicit_hash_key_picks_the_shard_whose_range_holds_it() {
        let s = shared(DoubleConfig::default());
        for i in 0..4 {
            let (start, end) = hash_range(4, i);
            assert_eq!(s.shard_for("any", Some(start)), i);
            assert_eq!(s.shard_for("any", Some(end)), i);
        }
        assert_eq!(parse_hash_key(0, "0").ok(), Some(0));
        assert_eq!(
            parse_hash_key(0, "340282366920938463463374607431768211455").ok(),
            Some(u128::MAX)
        );
        for bad in [
            "",
            "01",
            "-1",
            "1e3",
            "340282366920938463463374607431768211456",
        ] {
            assert!(parse_hash_key(0, bad).is_err(), "{bad}");
        }
    }

    /// A KPL aggregated record of `records` (partition key, data), written here by hand.
    fn aggregated(records: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for (k, _) in records {
            if !keys.contains(k) {
                keys.push(k);
                body.extend_from_slice(&[0x0a, k.len() as u8]);
                body.extend_from_slice(k.as_bytes());
            }
        }
        for (k, d) in records {
            let index = keys.iter().position(|x| x == k).unwrap() as u8;
            body.extend_from_slice(&[0x1a, 4 + d.len() as u8, 0x08, index, 0x1a, d.len() as u8]);
            body.extend_from_slice(d.as_bytes());
        }
        let mut data = KPL_MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(&body));
        data
    }

    #[test]
    fn the_user_records_of_an_aggregated_record_are_counted_and_placed() {
        let s = shared(DoubleConfig {
            count_user_records: true,
            ..Default::default()
        });
        let shard_of_key = |k: &str| {
            let h = u128::from_be_bytes(Md5::digest(k.as_bytes()).into());
            s.shard_for(k, Some(h))
        };
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let on_0: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| shard_of_key(k) == 0)
            .collect();
        let on_1: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| shard_of_key(k) == 1)
            .collect();
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let data = b64(&aggregated(&[
            (on_0[0], "x"),
            (on_0[1], "y"),
            (on_0[0], "z"),
        ]));
        assert_eq!(s.user_records(&data, 0), (3, 0));
        // Landed on shard 1, its user records belong to shard 0: a KCL reader would drop them.
        assert_eq!(s.user_records(&data, 1), (3, 3));
        let mixed = b64(&aggregated(&[(on_0[0], "x"), (on_1[0], "y")]));
        assert_eq!(s.user_records(&mixed, 0), (2, 1));
        // Not aggregated, or damaged: one user record.
        assert_eq!(s.user_records(&b64(b"{\"a\":1}"), 0), (1, 0));
        let mut damaged = aggregated(&[(on_0[0], "x"), (on_0[1], "y")]);
        damaged[6] ^= 1;
        assert_eq!(s.user_records(&b64(&damaged), 0), (1, 0));
    }

    #[test]
    fn put_records_answer_is_valid_json() {
        let s = shared(DoubleConfig {
            throttle_share: 0.5,
            internal_failure_share: 0.2,
            seed: 3,
            ..Default::default()
        });
        let body = br#"{"StreamName":"fleetload-test","Records":[
            {"Data":"aGVsbG8=","PartitionKey":"a"},{"Data":"aGVsbG8=","PartitionKey":"b\u00e9"},
            {"Data":"aGVsbG8=","PartitionKey":"c"},{"Data":"aGVsbG8=","PartitionKey":"d"}]}"#;
        let reply = put_records(&s, body).unwrap_or_else(|e| e);
        assert_eq!(reply.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let records = v["Records"].as_array().unwrap();
        assert_eq!(records.len(), 4);
        let failed = records
            .iter()
            .filter(|r| r["ErrorCode"].is_string())
            .count();
        assert_eq!(v["FailedRecordCount"], failed);
    }
}
