//! Kinesis Data Streams through PutRecords.
//!
//! Events are batched up to `FLEETLOAD_BATCH_SIZE` records and 5 MiB, with several requests in
//! flight. Every response is read record by record: a record is acknowledged only when Kinesis
//! returned a sequence number for it. Failed records are counted by `ErrorCode`; retryable ones
//! (throttling, internal failures) are sent again with backoff and jitter, keeping their
//! intended send time, so a throttled stream shows up as latency and retries, never as success.
//!
//! With `FLEETLOAD_KINESIS_AGGREGATE=on`, events (user records) are packed into KPL aggregated
//! records per shard first ([`aggregate`]); a request then carries up to
//! `FLEETLOAD_BATCH_SIZE` of those, and goes out when it is full or when its oldest user record
//! has waited its buffering time. Everything counted stays in user records: a Kinesis record
//! that fails fails, and is retried as, all the user records it carries ([`carried`]).
//!
//! The SDK configures the client and checks the stream; the PutRecords calls themselves are
//! built in [`request`], signed and sent in [`client`] and read in [`answer`], which costs a fraction of the
//! SDK's per-record work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::StreamStatus;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};

mod aggregate;
mod answer;
mod carried;
mod client;
mod request;
mod shards;

use self::aggregate::{Aggregator, Payload, Ready, AGGREGATE_MAX_BYTES};
use self::answer::{Answer, RecordAnswer};
use self::carried::{Carried, RecordMeta};
use self::client::PutRecordsClient;
use self::request::{Batch, RequestBody};
use self::shards::{ShardMap, ShardMaps};
use super::boundary::{Event, PreflightError, Sink};
use crate::model::backoff::Backoff;
use crate::model::kpl;
use crate::model::measure::{Recorder, SharedRecorder, RETRY_ABANDONED, SEND_PANICKED};
use crate::model::target::{StreamRef, KINESIS_MAX_BATCH_BYTES};

/// Concurrent PutRecords requests when `FLEETLOAD_MAX_IN_FLIGHT` is not given.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Attempts per record (the first send and its retries) before it counts as failed.
pub const MAX_ATTEMPTS: u32 = 10;
/// Wait before a retry: full jitter (see [`Backoff`] for why), the first up to 50 ms, each
/// further one up to twice as long, none longer than 2 s.
const BACKOFF: Backoff = Backoff::full(Duration::from_millis(50), Duration::from_secs(2));
/// A PutRecords call that takes longer than this counts as failed (`Timeout`) and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that is not established within this long fails the call (`DispatchFailure`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The shard of a record neither Kinesis nor the shard map named (`by_shard` in the summary).
pub const UNKNOWN_SHARD: &str = "unknown";

/// Per-record error codes worth retrying: the shard was over its limit, or Kinesis failed
/// internally. Anything else (`AccessDeniedException`, `KMS*`, …) is final.
pub const RETRYABLE_RECORD_CODES: &[&str] =
    &["ProvisionedThroughputExceededException", "InternalFailure"];

/// Whole-request error codes worth retrying.
pub const RETRYABLE_REQUEST_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ThrottlingException",
    "LimitExceededException",
    "KMSThrottlingException",
    "RequestTimeout",
    "Timeout",
    "DispatchFailure",
];

/// The Kinesis sink: batches, requests in flight, per-record outcomes.
pub struct KinesisSink {
    client: Arc<PutRecordsClient>,
    /// The stream's open shards, once `ListShards` has answered (read in the background, so
    /// that a slow or refused `ListShards` never delays production).
    shards: Arc<ShardMaps>,
    batch_size: usize,
    body: RequestBody,
    /// Aggregation off: the user records of the batch being filled, one per Kinesis record.
    meta: Vec<RecordMeta>,
    batch_bytes: usize,
    /// Aggregation on: the open aggregates and the Kinesis records of the next request.
    aggregation: Option<Box<Aggregation>>,
    permits: Arc<Semaphore>,
    /// The in-flight slot of the batch being filled: taken before its first record, so that
    /// sending a full batch never waits, and waiting for room happens before an event is
    /// taken (where the producing loop can abandon the wait at the planned end or on stop).
    reserved: Option<OwnedSemaphorePermit>,
    tasks: SendTasks,
    recorder: SharedRecorder,
    /// Set when the drain deadline passes: records waiting to be retried give up at once.
    give_up: watch::Sender<bool>,
}

/// Aggregation's state: aggregates being filled, and closed Kinesis records waiting for their
/// request (`pending`, which holds the reserved in-flight slot whenever it is not empty).
struct Aggregation {
    aggregator: Aggregator,
    pending: Vec<Ready>,
    /// Data and keys of `pending`, against the request's 5 MiB.
    pending_bytes: usize,
    /// When the oldest user record in `pending` has waited its buffering time.
    pending_due: Option<Instant>,
}

/// The largest Kinesis record aggregation makes of a user record of `size` bytes (data and
/// key): a full aggregate with its one-byte key, or the user record alone.
fn largest_record(size: usize) -> usize {
    (AGGREGATE_MAX_BYTES + 1).max(size)
}

impl Aggregation {
    /// Whether the next request can take another Kinesis record of `size` bytes.
    fn has_room(&self, size: usize, batch_size: usize) -> bool {
        self.pending.len() < batch_size && self.pending_bytes + size <= KINESIS_MAX_BATCH_BYTES
    }

    fn push(&mut self, ready: Ready) {
        self.pending_bytes += ready.size();
        self.pending_due = Some(
            self.pending_due
                .map_or(ready.deadline, |d| d.min(ready.deadline)),
        );
        self.pending.push(ready);
    }
}

/// A Kinesis client from the standard AWS configuration chain (region, credentials, and
/// `AWS_ENDPOINT_URL`), with the SDK's own retries off: the sink retries itself, record by
/// record, and counts every retry; and the shared configuration it was built from (whose
/// credentials provider signs the worker's own PutRecords calls).
async fn client_and_config() -> (aws_sdk_kinesis::Client, aws_config::SdkConfig) {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let config = aws_sdk_kinesis::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .build();
    (aws_sdk_kinesis::Client::from_conf(config), shared)
}

impl KinesisSink {
    /// Connects and checks that the stream exists and is active; with `aggregate`, user
    /// records are packed into KPL aggregated records.
    pub async fn connect(
        stream: StreamRef,
        aggregate: bool,
        batch_size: usize,
        max_in_flight: Option<usize>,
        recorder: SharedRecorder,
    ) -> Result<Self, PreflightError> {
        let (client, shared) = client_and_config().await;
        let region = client.config().region().map(|r| r.to_string());
        let Some(region) = region else {
            return Err(PreflightError("no AWS region is configured: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile with a region)".into()));
        };
        preflight(&client, &stream, &region).await?;
        let target = client::resolve_put_records_target(&client, &stream)
            .await
            .map_err(|e| PreflightError(format!("Kinesis stream {stream} in {region}: {e}")))?;
        let provider = shared
            .credentials_provider()
            .ok_or_else(|| PreflightError("no AWS credentials provider is configured".into()))?;
        let put_client = PutRecordsClient::new(target, provider, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .map_err(PreflightError)?;
        let max_in_flight = max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        // The shard map names the shard of failures that Kinesis did not name, and tells
        // aggregation which user records share a shard. A task role without
        // kinesis:ListShards still produces, and production does not wait for it.
        let without_map = if aggregate {
            "until it is read, user records are sent one per Kinesis record (not aggregated), and failures Kinesis does not attribute count under shard \"unknown\""
        } else {
            "until it is read, failures Kinesis does not attribute count under shard \"unknown\""
        };
        let shards = ShardMaps::new(client, stream.clone(), without_map);
        shards.load();
        recorder.lock().kinesis_records(aggregate);
        Ok(KinesisSink {
            client: Arc::new(put_client),
            aggregation: aggregate.then(|| {
                Box::new(Aggregation {
                    aggregator: Aggregator::new(shards.clone()),
                    pending: Vec::new(),
                    pending_bytes: 0,
                    pending_due: None,
                })
            }),
            shards,
            batch_size,
            // Aggregated records are up to 50 KiB each: room for about 1 MiB to start with.
            body: if aggregate {
                RequestBody::new(&stream, 16, AGGREGATE_MAX_BYTES)
            } else {
                RequestBody::new(&stream, batch_size, 128)
            },
            meta: Vec::with_capacity(if aggregate { 0 } else { batch_size }),
            batch_bytes: 0,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            reserved: None,
            tasks: SendTasks::default(),
            recorder,
            give_up: watch::channel(false).0,
        })
    }

    /// Sends the batch being filled, in the slot it reserved; never waits.
    fn dispatch(&mut self) {
        if self.body.is_empty() {
            return;
        }
        let batch = self.body.take();
        let meta = std::mem::replace(&mut self.meta, Vec::with_capacity(self.batch_size));
        self.batch_bytes = 0;
        self.spawn_send(batch, Carried::one_each(meta));
    }

    /// Aggregation: sends the Kinesis records waiting for a request, in the slot it reserved
    /// (or, at the drain, in the next slot that frees up); never waits.
    fn dispatch_pending(&mut self) {
        let Some(agg) = self.aggregation.as_mut() else {
            return;
        };
        if agg.pending.is_empty() {
            return;
        }
        let users = agg.pending.iter().map(|r| r.users.len()).sum();
        let mut carried = Carried::grouped(agg.pending.len(), users);
        let bodies: Vec<&[u8]> = agg
            .pending
            .iter()
            .filter_map(|r| match &r.data {
                Payload::Aggregate(a) => Some(a.body()),
                Payload::Plain(_) => None,
            })
            .collect();
        let mut digests = kpl::md5_each(&bodies).into_iter();
        for r in agg.pending.drain(..) {
            match r.data {
                Payload::Plain(data) => self.body.push_record(&r.key, r.hash_key, &data),
                Payload::Aggregate(a) => {
                    let digest = digests.next().expect("one digest per aggregate");
                    self.body
                        .push_record(&r.key, r.hash_key, &a.finish_with(digest));
                }
            }
            carried.push_group(&r.users, r.expected);
        }
        agg.pending_bytes = 0;
        agg.pending_due = None;
        let batch = self.body.take();
        self.spawn_send(batch, carried);
    }

    /// Sends `batch` in a task of its own, in the reserved slot (without one, the task waits
    /// for a slot first: only at the drain, when everything held goes at once).
    fn spawn_send(&mut self, batch: Batch, mut carried: Carried) {
        let permit = self.reserved.take();
        self.tasks.reap_finished(&self.recorder);
        let recorder = self.recorder.clone();
        let sent_ns = recorder.lock().now_ns();
        for m in carried.users_mut() {
            m.sent_ns = sent_ns;
        }
        let (client, mut give_up) = (self.client.clone(), self.give_up.subscribe());
        let (shards, permits) = (self.shards.clone(), self.permits.clone());
        let records = carried.users().len() as u64;
        self.tasks.spawn(records, move |left| async move {
            let permit = match permit {
                Some(p) => p,
                None => permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            };
            let call = Call {
                client: &client,
                shards: &shards,
                recorder: &recorder,
            };
            put_with_retries(call, batch, carried, &mut give_up, &left).await;
            drop(permit);
        });
    }

    /// Aggregation: takes one event into its shard's aggregate.
    async fn send_aggregated(&mut self, event: Event<'_>) {
        let size = event.key.len() + event.value.len();
        let batch_size = self.batch_size;
        let agg = self.aggregation.as_mut().expect("aggregating");
        // The next request must have room for the Kinesis record this event may close; if it
        // has not, it goes now, in the slot it holds.
        if !agg.pending.is_empty() && !agg.has_room(largest_record(size), batch_size) {
            self.dispatch_pending();
        }
        if self.reserved.is_none() {
            // The backpressure, before the event is taken (see `send`).
            self.reserved = Some(
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            );
        }
        let meta = RecordMeta {
            intended_ns: event.intended_ns,
            sent_ns: event.sent_ns,
            seq: event.seq,
            bytes: size as u64,
        };
        let agg = self.aggregation.as_mut().expect("aggregating");
        if let Some(ready) = agg
            .aggregator
            .add(event.key, event.key_number, event.value, meta)
        {
            agg.push(ready);
            if !agg.has_room(largest_record(0), batch_size) {
                // Full: it goes now, and the next request takes a free slot if there is one.
                self.dispatch_pending();
                self.reserved = self.permits.clone().try_acquire_owned().ok();
            }
        }
    }

    /// Aggregation: closes the aggregates whose buffering time is up into the next request,
    /// and sends the request when its own time is up; never waits for a slot (without one,
    /// what is due waits for the next event's).
    fn flush_aggregated(&mut self) {
        let now = Instant::now();
        let batch_size = self.batch_size;
        loop {
            let agg = self.aggregation.as_mut().expect("aggregating");
            if agg.aggregator.next_due().map_or(true, |due| due > now) {
                break;
            }
            if !agg.pending.is_empty() && !agg.has_room(largest_record(0), batch_size) {
                self.dispatch_pending();
            }
            if self.reserved.is_none() {
                match self.permits.clone().try_acquire_owned() {
                    Ok(p) => self.reserved = Some(p),
                    Err(_) => break,
                }
            }
            let agg = self.aggregation.as_mut().expect("aggregating");
            match agg.aggregator.take_due(now) {
                Some(ready) => agg.push(ready),
                None => break,
            }
        }
        let agg = self.aggregation.as_ref().expect("aggregating");
        if agg.pending_due.is_some_and(|due| due <= now)
            || (!agg.pending.is_empty() && !agg.has_room(largest_record(0), batch_size))
        {
            self.dispatch_pending();
            self.reserved = self.permits.clone().try_acquire_owned().ok();
        }
    }
}

/// The PutRecords tasks in flight, and how many records each has not had an answer for yet, so
/// that a task that panics is logged and its records counted, never dropped silently.
#[derive(Default)]
struct SendTasks {
    tasks: JoinSet<()>,
    /// Per task, its records still unanswered (the task keeps it up to date).
    unanswered: HashMap<Id, Arc<AtomicU64>>,
}

impl SendTasks {
    /// Runs the task `send(unanswered)` for `records` records; the task lowers `unanswered` as
    /// its records are answered.
    fn spawn<F, Fut>(&mut self, records: u64, send: F)
    where
        F: FnOnce(Arc<AtomicU64>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let unanswered = Arc::new(AtomicU64::new(records));
        let task = self.tasks.spawn(send(unanswered.clone()));
        self.unanswered.insert(task.id(), unanswered);
    }

    /// A finished task: a panic is logged and its unanswered records counted `SendPanicked`.
    fn reap(&mut self, done: Result<(Id, ()), JoinError>, recorder: &SharedRecorder) {
        match done {
            Ok((id, ())) => {
                self.unanswered.remove(&id);
            }
            Err(e) => {
                let n = self
                    .unanswered
                    .remove(&e.id())
                    .map_or(0, |n| n.load(Ordering::Relaxed));
                if e.is_panic() {
                    tracing::error!(records = n, "a PutRecords task panicked: {e}");
                    let mut r = recorder.lock();
                    let now = r.now_ns();
                    r.failed(SEND_PANICKED, now, n);
                }
                // Cancelled (abandoned at the drain deadline): the records stay outstanding
                // and count as unacknowledged.
            }
        }
    }

    /// Reaps the tasks that have finished, without waiting.
    fn reap_finished(&mut self, recorder: &SharedRecorder) {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            self.reap(done, recorder);
        }
    }

    /// Waits for every task.
    async fn join_all(&mut self, recorder: &SharedRecorder) {
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.reap(done, recorder);
        }
    }

    /// Cancels every task still running, and reaps them.
    fn abort_all(&mut self, recorder: &SharedRecorder) {
        self.tasks.abort_all();
        self.reap_finished(recorder);
    }
}

impl Sink for KinesisSink {
    async fn send(&mut self, event: Event<'_>) {
        if self.aggregation.is_some() {
            return self.send_aggregated(event).await;
        }
        let size = event.key.len() + event.value.len();
        if self.body.len() >= self.batch_size || self.batch_bytes + size > KINESIS_MAX_BATCH_BYTES {
            self.dispatch();
        }
        if self.reserved.is_none() {
            // Waiting here is the backpressure: the schedule keeps running, so events generated
            // after the wait carry their intended times and the wait shows as latency. Nothing
            // is taken before the slot is, so the wait can be abandoned.
            self.reserved = Some(
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            );
        }
        self.body.push(event.key, event.value);
        self.meta.push(RecordMeta {
            intended_ns: event.intended_ns,
            sent_ns: event.sent_ns,
            seq: event.seq,
            bytes: size as u64,
        });
        self.batch_bytes += size;
        if self.body.len() >= self.batch_size {
            self.dispatch();
        }
    }

    async fn flush(&mut self) {
        if self.aggregation.is_some() {
            self.flush_aggregated();
        } else {
            self.dispatch();
        }
    }

    fn flush_due(&self) -> Option<Instant> {
        let agg = self.aggregation.as_ref()?;
        if self.reserved.is_none() && self.permits.available_permits() == 0 {
            // Nothing could be sent now; the next event waits for a slot, then flushes.
            return None;
        }
        match (agg.aggregator.next_due(), agg.pending_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn drain(&mut self, deadline: Instant) {
        if let Some(agg) = self.aggregation.as_mut() {
            // Everything held goes now; a request that finds no free slot waits for one in its
            // own task, bounded by the same deadline.
            let closed = agg.aggregator.take_all();
            for ready in closed {
                let agg = self.aggregation.as_mut().expect("aggregating");
                if !agg.pending.is_empty() && !agg.has_room(ready.size(), self.batch_size) {
                    self.dispatch_pending();
                }
                self.aggregation.as_mut().expect("aggregating").push(ready);
            }
            self.dispatch_pending();
        }
        self.dispatch();
        self.reserved = None;
        let wait = deadline.saturating_duration_since(Instant::now());
        let recorder = &self.recorder;
        if tokio::time::timeout(wait, self.tasks.join_all(recorder))
            .await
            .is_err()
        {
            // Past the deadline: records waiting to be retried give up (`RetryAbandoned`),
            // requests on the wire get a moment, then they are abandoned (unacknowledged).
            self.give_up.send_replace(true);
            let _ = tokio::time::timeout(Duration::from_millis(500), self.tasks.join_all(recorder))
                .await;
            self.tasks.abort_all(recorder);
        }
    }
}

/// The error code of a failed PutRecords call: the service's code when it sent one, else the
/// kind of failure (`Timeout`, `DispatchFailure`) or the HTTP status (`HTTP500`).
pub fn request_error_code<E: ProvideErrorMetadata>(e: &SdkError<E>) -> String {
    match e {
        SdkError::TimeoutError(_) => "Timeout".to_string(),
        SdkError::DispatchFailure(_) => "DispatchFailure".to_string(),
        SdkError::ConstructionFailure(_) => "ConstructionFailure".to_string(),
        _ => match e.code() {
            Some(code) => code.to_string(),
            None => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(status) => format!("HTTP{status}"),
                None => "ResponseError".to_string(),
            },
        },
    }
}

fn retryable_request(code: &str) -> bool {
    RETRYABLE_REQUEST_CODES.contains(&code) || code.starts_with("HTTP5") || code == "HTTP429"
}

/// What a send task shares with the sink.
#[derive(Clone, Copy)]
struct Call<'a> {
    client: &'a PutRecordsClient,
    shards: &'a Arc<ShardMaps>,
    recorder: &'a SharedRecorder,
}

/// One answer's outcomes by shard, in user records, added to the recorder at once.
#[derive(Default)]
struct ShardTally<'a> {
    acknowledged: HashMap<&'a str, u64>,
    failed: HashMap<(&'a str, &'a str), u64>,
    retried: HashMap<(&'a str, &'a str), u64>,
}

impl<'a> ShardTally<'a> {
    fn record(self, r: &mut Recorder) {
        for (shard, n) in self.acknowledged {
            r.on_shard(shard, n, &[], &[]);
        }
        for ((shard, code), n) in self.failed {
            r.on_shard(shard, 0, &[(code, n)], &[]);
        }
        for ((shard, code), n) in self.retried {
            r.on_shard(shard, 0, &[], &[(code, n)]);
        }
    }
}

/// The shard of Kinesis record `i` of `batch`: as Kinesis named it, else the one it was
/// aggregated for, else as the shard map places its partition key.
fn shard_of<'a>(
    answered: Option<&'a str>,
    expected: Option<&'a Arc<str>>,
    map: Option<&'a ShardMap>,
    batch: &Batch,
    i: usize,
) -> &'a str {
    answered
        .or(expected.map(|e| &**e))
        .or_else(|| map?.shard_of_key(batch.partition_key(i)).map(|s| &*s.id))
        .unwrap_or(UNKNOWN_SHARD)
}

async fn put_with_retries(
    call: Call<'_>,
    mut batch: Batch,
    mut carried: Carried,
    give_up: &mut watch::Receiver<bool>,
    unanswered: &AtomicU64,
) {
    let Call {
        client,
        shards,
        recorder,
    } = call;
    let mut attempt = 0u32;
    loop {
        let result = client.call(batch.body.clone()).await;
        let last_attempt = attempt + 1 >= MAX_ATTEMPTS || *give_up.borrow();
        let mut retry = Vec::new();
        // An aggregated record answered from another shard than the map said: the stream
        // was resharded, and the map is read again.
        let mut stale_map = false;
        {
            let answer = match &result {
                Ok(body) => {
                    answer::read_answer(body, carried.len()).map_err(|detail| client::CallError {
                        code: "ResponseError".into(),
                        detail,
                    })
                }
                Err(e) => Err(client::CallError {
                    code: e.code.clone(),
                    detail: e.detail.clone(),
                }),
            };
            let map = shards.get();
            let map = map.as_deref();
            let mut tally = ShardTally::default();
            let mut acknowledged_records = 0u64;
            let mut r = recorder.lock();
            let now = r.now_ns();
            match &answer {
                Ok(Answer::AllAcknowledged(on)) => {
                    for m in carried.users() {
                        r.acknowledged(m.intended_ns, m.sent_ns, now, m.bytes);
                    }
                    for (i, &shard) in on.iter().enumerate() {
                        let n = carried.users_of(i).len() as u64;
                        *tally.acknowledged.entry(shard).or_default() += n;
                        stale_map |= carried.expected(i).is_some_and(|e| **e != *shard);
                    }
                    acknowledged_records = on.len() as u64;
                }
                Ok(Answer::PerRecord(results)) => {
                    let answered = results.len().min(carried.len());
                    for (i, res) in results.iter().take(answered).enumerate() {
                        let users = carried.users_of(i);
                        let n = users.len() as u64;
                        let RecordAnswer { error, shard } = res;
                        let expected = carried.expected(i);
                        let shard_id = shard_of(shard.as_deref(), expected, map, &batch, i);
                        match error.as_deref() {
                            None => {
                                for m in users {
                                    r.acknowledged(m.intended_ns, m.sent_ns, now, m.bytes);
                                }
                                *tally.acknowledged.entry(shard_id).or_default() += n;
                                acknowledged_records += 1;
                                stale_map |= match (expected, shard.as_deref()) {
                                    (Some(e), Some(s)) => **e != *s,
                                    _ => false,
                                };
                            }
                            Some(code)
                                if RETRYABLE_RECORD_CODES.contains(&code) && !last_attempt =>
                            {
                                r.retried(code, now, n);
                                *tally.retried.entry((shard_id, code)).or_default() += n;
                                retry.push(i);
                            }
                            Some(code) => {
                                r.failed(code, now, n);
                                *tally.failed.entry((shard_id, code)).or_default() += n;
                                r.failed_seqs(users.iter().map(|m| m.seq));
                            }
                        }
                    }
                    // A response with fewer results than records cannot be trusted for the rest.
                    let rest = (answered..carried.len()).flat_map(|i| carried.users_of(i));
                    r.failed("MissingRecordResult", now, rest.clone().count() as u64);
                    r.failed_seqs(rest.map(|m| m.seq));
                }
                Err(e) => {
                    let n = carried.users().len() as u64;
                    if retryable_request(&e.code) && !last_attempt {
                        r.retried(&e.code, now, n);
                        retry = (0..carried.len()).collect();
                    } else {
                        tracing::debug!(code = %e.code, detail = %e.detail, "PutRecords failed");
                        r.failed(&e.code, now, n);
                        r.failed_seqs(carried.users().iter().map(|m| m.seq));
                    }
                }
            }
            r.put_records_call(acknowledged_records);
            tally.record(&mut r);
        }
        if stale_map {
            shards.refresh();
        }
        if retry.is_empty() {
            unanswered.store(0, Ordering::Relaxed);
            return;
        }
        if retry.len() < carried.len() {
            batch = batch.subset(&retry);
            carried = carried.subset(&retry);
        }
        let waiting = carried.users().len() as u64;
        unanswered.store(waiting, Ordering::Relaxed);
        recorder.lock().waiting_retry(waiting);
        // The backoff ends early when the drain deadline passes.
        let gave_up = tokio::select! {
            _ = tokio::time::sleep(BACKOFF.delay(attempt)) => false,
            _ = give_up.wait_for(|g| *g) => true,
        };
        attempt += 1;
        let mut r = recorder.lock();
        r.retry_resumed(waiting);
        if gave_up || *give_up.borrow() {
            let now = r.now_ns();
            r.failed(RETRY_ABANDONED, now, waiting);
            r.failed_seqs(carried.users().iter().map(|m| m.seq));
            unanswered.store(0, Ordering::Relaxed);
            return;
        }
    }
}

async fn preflight(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
    region: &str,
) -> Result<(), PreflightError> {
    let request = match stream {
        StreamRef::Name(n) => client.describe_stream_summary().stream_name(n),
        StreamRef::Arn(a) => client.describe_stream_summary().stream_arn(a),
    };
    match request.send().await {
        Ok(out) => {
            let summary = out.stream_description_summary();
            match summary.map(|s| s.stream_status()) {
                Some(StreamStatus::Active) | Some(StreamStatus::Updating) => Ok(()),
                Some(status) => Err(PreflightError(format!(
                    "Kinesis stream {stream} in {region} is {status}, not ACTIVE: wait until it is active and run again"
                ))),
                None => Err(PreflightError(format!("Kinesis stream {stream} in {region}: DescribeStreamSummary returned no summary"))),
            }
        }
        Err(e) => {
            let code = request_error_code(&e);
            let reason = match code.as_str() {
                "ResourceNotFoundException" => format!("Kinesis stream {stream} does not exist in {region}: create it (or check FLEETLOAD_STREAM and AWS_REGION)"),
                "AccessDeniedException" => format!("not allowed to describe Kinesis stream {stream} in {region}: the task role needs kinesis:DescribeStreamSummary and kinesis:PutRecords on it"),
                _ => format!("cannot reach Kinesis for stream {stream} in {region} ({code}): {}", aws_sdk_kinesis::error::DisplayErrorContext(&e)),
            };
            Err(PreflightError(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::measure::Recorder;

    /// What the worker logs, kept for the test to read.
    #[derive(Clone, Default)]
    struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logged {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logged {
        type Writer = Logged;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test]
    async fn a_send_task_that_panics_is_logged_and_its_unanswered_records_count_send_panicked() {
        let logged = Logged::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logged.clone())
            .with_ansi(false)
            .finish();
        let _log = tracing::subscriber::set_default(subscriber);
        let recorder = SharedRecorder::new(Recorder::new(Instant::now(), 0));
        recorder.lock().attempted(0, 10 + 4);
        let mut tasks = SendTasks::default();
        // A batch of 10 whose task has 3 records answered, then panics with 7 unanswered.
        let r = recorder.clone();
        tasks.spawn(10, move |left| async move {
            for _ in 0..3 {
                r.lock().acknowledged(0, 0, 2_000_000, 100);
            }
            left.store(7, Ordering::Relaxed);
            tokio::task::yield_now().await;
            panic!("a bug while reading an answer");
        });
        // A batch of 4 answered whole beside it.
        let r = recorder.clone();
        tasks.spawn(4, move |left| async move {
            for _ in 0..4 {
                r.lock().acknowledged(0, 0, 3_000_000, 100);
            }
            left.store(0, Ordering::Relaxed);
        });
        tasks.join_all(&recorder).await;

        let r = recorder.lock();
        let c = r.counts();
        assert_eq!(c.acknowledged, 7);
        assert_eq!(c.failed, 7);
        assert_eq!(
            c.failed_by_code,
            [(SEND_PANICKED.to_string(), 7)].into_iter().collect()
        );
        assert_eq!(c.attempted, c.acknowledged + c.failed);
        assert_eq!(
            r.outstanding(),
            0,
            "nothing is left to count as unacknowledged"
        );
        assert!(tasks.unanswered.is_empty());
        let log = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("ERROR"), "{log}");
        assert!(log.contains("a PutRecords task panicked"), "{log}");
        assert!(log.contains("records=7"), "{log}");
    }
}
