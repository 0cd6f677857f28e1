//! Reading every shard of a Kinesis stream from the run's start instant (`AT_TIMESTAMP`), the
//! shards shared among the run's consumer tasks: shard `shardId-…n` is read by the consumer
//! whose index is `n mod consumers` (`FLEETLOAD_CONSUMER`). The shard list is read again every
//! few seconds, so shards created by resharding during the run (children of a split or merge)
//! are found and read from their start; a closed parent is read to its end.
//!
//! A record in the KPL aggregated format (magic number and MD5 trailer checked) is read as the
//! user records it carries, so events produced with aggregation are traced one by one; any
//! other record is read as it is.
//!
//! **When a record was there.** A caught-up shard is polled every [`IDLE_WAIT`] (Kinesis
//! serves 5 GetRecords calls a second per shard, shared by every application reading it), so
//! the moment a poll returns a record is up to a poll interval after the record arrived:
//! measured to the read, end-to-end latency would carry that error, up to 250 ms. The end of
//! a record's latency is therefore its arrival (`ApproximateArrivalTimestamp`, which Kinesis
//! stamps when it accepts the record), kept between the start of the last poll that found the
//! shard caught up without it and the read that returned it: the record became readable in
//! that window, so a clock that disagrees with Kinesis's moves the end by at most a poll
//! interval, and by nothing when the clocks agree. A consumer that is behind (a backlog) still
//! measures the pipeline, not its own delay in reading.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use aws_sdk_kinesis::Client;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{now_us, stopped, Read, KINESIS_CLOCK_NOTE};
use crate::model::delivery::ConsumerRecorder;
use crate::model::kpl;
use crate::model::report::Outcome;
use crate::model::target::StreamRef;
use crate::model::trace::EndToEnd;
use crate::worker::live::Publisher;
use crate::worker::produce::StopSignal;

/// How often the shard list is read again, to find shards created by resharding.
const RELIST_EVERY: Duration = Duration::from_secs(2);
/// How often the shared recorder is looked at for live windows that ended.
const LIVE_TICK: Duration = Duration::from_millis(200);
/// Records per GetRecords call (the service's maximum).
const GET_RECORDS_LIMIT: i32 = 10_000;
/// Wait between GetRecords calls on a shard that is caught up: a shard takes 5 calls a second.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// Wait after a throttled or failed call.
const ERROR_WAIT: Duration = Duration::from_millis(1000);

/// The shard's number: `shardId-000000000007` → 7.
fn shard_number(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether this consumer reads the shard.
fn is_mine(shard_id: &str, e2e: &EndToEnd) -> bool {
    e2e.reads(shard_number(shard_id))
}

async fn client() -> Result<Client, String> {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    if shared.region().is_none() {
        return Err("no AWS region is configured: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile with a region)".into());
    }
    Ok(Client::new(&shared))
}

/// Every shard of the stream, open and closed.
async fn list_shards(client: &Client, stream: &StreamRef) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client.list_shards();
        request = match &token {
            // With a token, the stream may not be named again.
            Some(t) => request.next_token(t),
            None => match stream {
                StreamRef::Name(n) => request.stream_name(n),
                StreamRef::Arn(a) => request.stream_arn(a),
            },
        };
        let out = request.send().await.map_err(|e| {
            let code = e.code().unwrap_or("error").to_string();
            match code.as_str() {
                "ResourceNotFoundException" => format!("Kinesis stream {stream} does not exist: the consumer reads the system under test's output stream"),
                _ => format!("cannot list the shards of Kinesis stream {stream} ({code}): {}", aws_sdk_kinesis::error::DisplayErrorContext(&e)),
            }
        })?;
        shards.extend(out.shards().iter().cloned());
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(shards);
        }
    }
}

/// Reads the stream until `deadline` or a stop signal.
pub(super) async fn read(
    stream: &StreamRef,
    e2e: &EndToEnd,
    planned_start: DateTime<Utc>,
    deadline: DateTime<Utc>,
    recorder: ConsumerRecorder,
    publisher: Option<Arc<Publisher>>,
    stop: StopSignal,
) -> Result<Read, String> {
    let client = client().await?;
    let first = list_shards(&client, stream).await?;
    let recorder = Arc::new(Mutex::new(recorder));
    // The shard readers share the recorder: its live windows are taken on a timer of their own.
    let windows = publisher.map(|p| {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_TICK);
            loop {
                tick.tick().await;
                let taken = recorder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take_live_windows(now_us());
                for (window, tally) in taken {
                    p.send(p.consumer_window(window, tally, false));
                }
            }
        })
    });
    let (end_tx, end_rx) = watch::channel(false);
    let mut signal = Box::pin(stopped(stop));
    let deadline_us = deadline.timestamp_micros().max(0) as u64;
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut readers = JoinSet::new();
    let mut shards = first;
    let mut seen_shards = BTreeSet::new();
    let outcome = loop {
        for shard in &shards {
            let id = shard.shard_id().to_string();
            seen_shards.insert(id.clone());
            if !is_mine(&id, e2e) || !started.insert(id.clone()) {
                continue;
            }
            tracing::info!(shard = %id, parent = ?shard.parent_shard_id(), "reading shard");
            readers.spawn(read_shard(
                client.clone(),
                stream.clone(),
                id,
                planned_start,
                deadline_us,
                recorder.clone(),
                end_rx.clone(),
            ));
        }
        let wait = Duration::from_micros(deadline_us.saturating_sub(now_us())).min(RELIST_EVERY);
        if wait.is_zero() {
            break Outcome::Completed;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            name = &mut signal => break Outcome::Interrupted { signal: name.to_string() },
        }
        match list_shards(&client, stream).await {
            Ok(s) => shards = s,
            Err(e) => tracing::warn!("{e}"),
        }
    };
    let _ = end_tx.send(true);
    while readers.join_next().await.is_some() {}
    if let Some(windows) = windows {
        windows.abort();
        let _ = windows.await;
    }
    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| "a shard reader outlived the read".to_string())?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let mine: Vec<&String> = started.iter().collect();
    Ok(Read {
        recorder,
        source: format!(
            "kinesis stream {stream} ({} shards seen; this task, consumer {}/{}, read {mine:?})",
            seen_shards.len(),
            e2e.consumer_index,
            e2e.consumers
        ),
        outcome,
        clock: KINESIS_CLOCK_NOTE,
    })
}

/// When a record was there to be read, epoch µs: its arrival in the stream, kept between
/// `caught_up_at` (the start of the last poll that found the shard caught up, when the shard
/// was) and `read_at` (when the poll that returned it came back).
fn arrived_us(arrival: Option<&AwsDateTime>, caught_up_at: Option<u64>, read_at: u64) -> u64 {
    let Some(arrival) = arrival else {
        return read_at;
    };
    let us = (arrival.secs().max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(arrival.subsec_nanos()) / 1000);
    us.max(caught_up_at.unwrap_or(0)).min(read_at)
}

/// Reads one shard from the start instant until the deadline, the end signal, or its end
/// (a closed shard read to its last record).
async fn read_shard(
    client: Client,
    stream: StreamRef,
    shard_id: String,
    planned_start: DateTime<Utc>,
    deadline_us: u64,
    recorder: Arc<Mutex<ConsumerRecorder>>,
    mut end: watch::Receiver<bool>,
) {
    let start = AwsDateTime::from_millis(planned_start.timestamp_millis());
    let mut last_sequence: Option<String> = None;
    let mut iterator: Option<String> = None;
    // The start of the last poll that found the shard caught up (see `arrived_us`).
    let mut caught_up_at: Option<u64> = None;
    let mut errors = 0u64;
    loop {
        if *end.borrow() || now_us() >= deadline_us {
            return;
        }
        if iterator.is_none() {
            let mut request = client.get_shard_iterator().shard_id(&shard_id);
            request = match &stream {
                StreamRef::Name(n) => request.stream_name(n),
                StreamRef::Arn(a) => request.stream_arn(a),
            };
            request = match &last_sequence {
                // After an expired iterator: right after the last record read.
                Some(seq) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                None => request
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(start),
            };
            match request.send().await {
                Ok(out) => iterator = out.shard_iterator().map(str::to_string),
                Err(e) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(shard = %shard_id, errors, "GetShardIterator failed: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e));
                    }
                    wait(&mut end, ERROR_WAIT).await;
                    continue;
                }
            }
            if iterator.is_none() {
                return;
            }
        }
        let it = iterator.clone().expect("set above");
        let asked_at = now_us();
        match client
            .get_records()
            .shard_iterator(it)
            .limit(GET_RECORDS_LIMIT)
            .send()
            .await
        {
            Ok(out) => {
                let read_at = now_us();
                let records = out.records();
                if !records.is_empty() {
                    let mut r = recorder.lock().unwrap_or_else(|p| p.into_inner());
                    for record in records {
                        let at = arrived_us(
                            record.approximate_arrival_timestamp(),
                            caught_up_at,
                            read_at,
                        );
                        let data = record.data().as_ref();
                        match kpl::deaggregate(data) {
                            Some(users) => {
                                for user in users {
                                    r.record(user.data, at);
                                }
                            }
                            None => r.record(data, at),
                        }
                    }
                    last_sequence = records.last().map(|r| r.sequence_number().to_string());
                }
                iterator = out.next_shard_iterator().map(str::to_string);
                if iterator.is_none() {
                    tracing::info!(shard = %shard_id, "shard closed and read to its end");
                    return;
                }
                let caught_up = records.is_empty() || out.millis_behind_latest() == Some(0);
                // Nothing arrived before this poll started that it did not return.
                caught_up_at = caught_up.then_some(asked_at);
                if caught_up {
                    wait(&mut end, IDLE_WAIT).await;
                }
            }
            Err(e) => {
                let code = e.code().unwrap_or("error").to_string();
                if code == "ExpiredIteratorException" {
                    iterator = None;
                    continue;
                }
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!(shard = %shard_id, errors, code, "GetRecords failed: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e));
                }
                wait(&mut end, ERROR_WAIT).await;
            }
        }
    }
}

/// Sleeps, unless the end comes first.
async fn wait(end: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = end.wait_for(|e| *e) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_ends_at_its_arrival_kept_within_the_window_it_became_readable_in() {
        let at = |us: i64| {
            AwsDateTime::from_secs_and_nanos(us / 1_000_000, (us % 1_000_000) as u32 * 1000)
        };
        let t = 1_700_000_000_000_000u64;
        // Arrived 200 ms before the poll that returned it: the poll interval is not latency.
        assert_eq!(
            arrived_us(Some(&at(t as i64 - 200_000)), Some(t - 250_000), t),
            t - 200_000
        );
        // A Kinesis clock ahead of ours: never after the read.
        assert_eq!(
            arrived_us(Some(&at(t as i64 + 5_000)), Some(t - 250_000), t),
            t
        );
        // Behind ours: never before the last poll that did not see it.
        assert_eq!(
            arrived_us(Some(&at(t as i64 - 900_000)), Some(t - 250_000), t),
            t - 250_000
        );
        // A backlog (not caught up): the arrival as it is.
        assert_eq!(
            arrived_us(Some(&at(t as i64 - 60_000_000)), None, t),
            t - 60_000_000
        );
        // No arrival time: the read.
        assert_eq!(arrived_us(None, Some(t - 250_000), t), t);
    }

    #[test]
    fn shards_are_shared_by_their_number() {
        let e2e = |i, n| EndToEnd {
            consumer_index: i,
            consumers: n,
            ..EndToEnd::default()
        };
        assert_eq!(shard_number("shardId-000000000007"), 7);
        assert!(is_mine("shardId-000000000007", &e2e(1, 2)));
        assert!(!is_mine("shardId-000000000007", &e2e(0, 2)));
        assert!(is_mine("shardId-000000000007", &e2e(0, 1)));
    }
}
