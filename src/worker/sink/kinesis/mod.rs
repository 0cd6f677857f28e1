//! Kinesis Data Streams through PutRecords.
//!
//! Events are batched up to `FLEETLOAD_BATCH_SIZE` records and 5 MiB, with several requests in
//! flight. Every response is read record by record: a record is acknowledged only when Kinesis
//! returned a sequence number for it. Failed records are counted by `ErrorCode`; retryable ones
//! (throttling, internal failures) are sent again with backoff and jitter, keeping their
//! intended send time, so a throttled stream shows up as latency and retries, never as success.
//!
//! The SDK configures the client and checks the stream; the PutRecords calls themselves are
//! built in [`request`], signed and sent in [`client`] and read in [`answer`], which costs a fraction of the
//! SDK's per-record work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::StreamStatus;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};

mod answer;
mod client;
mod request;
mod shards;

use self::answer::{Answer, RecordAnswer};
use self::client::PutRecordsClient;
use self::request::{Batch, RequestBody};
use self::shards::ShardMap;
use super::boundary::{Event, PreflightError, Sink};
use crate::model::backoff::Backoff;
use crate::model::measure::{Recorder, SharedRecorder, RETRY_ABANDONED, SEND_PANICKED};
use crate::model::scenario::{StreamRef, KINESIS_MAX_BATCH_BYTES};

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

#[derive(Debug, Clone, Copy)]
struct RecordMeta {
    intended_ns: u64,
    sent_ns: u64,
    /// The event's sequence number, to name it when it fails.
    seq: u64,
    bytes: u64,
}

/// The Kinesis sink: batches, requests in flight, per-record outcomes.
pub struct KinesisSink {
    client: Arc<PutRecordsClient>,
    /// The stream's open shards, once `ListShards` has answered (read in the background, so
    /// that a slow or refused `ListShards` never delays production; empty when not allowed).
    shards: Arc<OnceLock<ShardMap>>,
    batch_size: usize,
    body: RequestBody,
    meta: Vec<RecordMeta>,
    batch_bytes: usize,
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
    /// Connects and checks that the stream exists and is active.
    pub async fn connect(
        stream: StreamRef,
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
        // The shard map only names the shard of failures that Kinesis did not name: a task
        // role without kinesis:ListShards still produces, and production does not wait for it.
        let shards = Arc::new(OnceLock::new());
        {
            let shards = Arc::clone(&shards);
            let stream = stream.clone();
            tokio::spawn(async move {
                match shards::list_open_shards(&client, &stream).await {
                    Ok(map) => {
                        let _ = shards.set(map);
                    }
                    Err(e) => {
                        tracing::warn!("no shard map of Kinesis stream {stream}: {e}; failures Kinesis does not attribute count under shard {UNKNOWN_SHARD:?}");
                    }
                }
            });
        }
        Ok(KinesisSink {
            client: Arc::new(put_client),
            shards,
            batch_size,
            body: RequestBody::new(&stream, batch_size, 128),
            meta: Vec::with_capacity(batch_size),
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
        let permit = self
            .reserved
            .take()
            .expect("a batch being filled holds an in-flight slot");
        self.tasks.reap_finished(&self.recorder);
        let batch = self.body.take();
        let mut meta = std::mem::replace(&mut self.meta, Vec::with_capacity(self.batch_size));
        self.batch_bytes = 0;
        let recorder = self.recorder.clone();
        let sent_ns = recorder.lock().now_ns();
        for m in &mut meta {
            m.sent_ns = sent_ns;
        }
        let (client, mut give_up) = (self.client.clone(), self.give_up.subscribe());
        let shards = self.shards.clone();
        self.tasks.spawn(meta.len() as u64, move |left| async move {
            let call = Call {
                client: &client,
                shards: &shards,
                recorder: &recorder,
            };
            put_with_retries(call, batch, meta, &mut give_up, &left).await;
            drop(permit);
        });
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
        self.dispatch();
    }

    async fn drain(&mut self, deadline: Instant) {
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
    shards: &'a OnceLock<ShardMap>,
    recorder: &'a SharedRecorder,
}

/// One answer's outcomes by shard, added to the recorder at once.
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

/// The shard of record `i` of `batch`: as Kinesis named it, else as the shard map says.
fn shard_of<'a>(
    answered: Option<&'a str>,
    shards: &'a OnceLock<ShardMap>,
    batch: &Batch,
    i: usize,
) -> &'a str {
    answered
        .or_else(|| {
            shards
                .get()?
                .shard_of_key(batch.partition_key(i))
                .map(|s| s.id.as_str())
        })
        .unwrap_or(UNKNOWN_SHARD)
}

async fn put_with_retries(
    call: Call<'_>,
    mut batch: Batch,
    mut meta: Vec<RecordMeta>,
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
        {
            let answer = match &result {
                Ok(body) => {
                    answer::read_answer(body, meta.len()).map_err(|detail| client::CallError {
                        code: "ResponseError".into(),
                        detail,
                    })
                }
                Err(e) => Err(client::CallError {
                    code: e.code.clone(),
                    detail: e.detail.clone(),
                }),
            };
            let mut tally = ShardTally::default();
            let mut r = recorder.lock();
            let now = r.now_ns();
            match &answer {
                Ok(Answer::AllAcknowledged(on)) => {
                    for m in &meta {
                        r.acknowledged(m.intended_ns, m.sent_ns, now, m.bytes);
                    }
                    for shard in on {
                        *tally.acknowledged.entry(shard).or_default() += 1;
                    }
                }
                Ok(Answer::PerRecord(results)) => {
                    let answered = results.len().min(meta.len());
                    for (i, res) in results.iter().take(answered).enumerate() {
                        let m = meta[i];
                        let RecordAnswer { error, shard } = res;
                        let shard = shard_of(shard.as_deref(), shards, &batch, i);
                        match error.as_deref() {
                            None => {
                                r.acknowledged(m.intended_ns, m.sent_ns, now, m.bytes);
                                *tally.acknowledged.entry(shard).or_default() += 1;
                            }
                            Some(code)
                                if RETRYABLE_RECORD_CODES.contains(&code) && !last_attempt =>
                            {
                                r.retried(code, now, 1);
                                *tally.retried.entry((shard, code)).or_default() += 1;
                                retry.push(i);
                            }
                            Some(code) => {
                                r.failed(code, now, 1);
                                *tally.failed.entry((shard, code)).or_default() += 1;
                                r.failed_seqs([m.seq]);
                            }
                        }
                    }
                    // A response with fewer results than records cannot be trusted for the rest.
                    r.failed("MissingRecordResult", now, (meta.len() - answered) as u64);
                    r.failed_seqs(meta[answered..].iter().map(|m| m.seq));
                }
                Err(e) => {
                    let n = meta.len() as u64;
                    if retryable_request(&e.code) && !last_attempt {
                        r.retried(&e.code, now, n);
                        retry = (0..meta.len()).collect();
                    } else {
                        tracing::debug!(code = %e.code, detail = %e.detail, "PutRecords failed");
                        r.failed(&e.code, now, n);
                        r.failed_seqs(meta.iter().map(|m| m.seq));
                    }
                }
            }
            tally.record(&mut r);
        }
        if retry.is_empty() {
            unanswered.store(0, Ordering::Relaxed);
            return;
        }
        if retry.len() < meta.len() {
            batch = batch.subset(&retry);
            meta = retry.iter().map(|&i| meta[i]).collect();
        }
        let waiting = meta.len() as u64;
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
            r.failed_seqs(meta.iter().map(|m| m.seq));
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
