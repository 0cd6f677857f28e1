//! The double's wire side: the JSON requests it reads (borrowed from the body), the operations
//! (`PutRecords`, `PutRecord`, `DescribeStreamSummary`, `DescribeStream`, `ListShards`) answered
//! from the stream's state in [`super::Shared`], and the HTTP server around them.

use super::*;

// ---- requests (borrowed from the body; `Cow` for the rare escaped string) ----

#[derive(Deserialize)]
struct PutRecordsRequest<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<RecordIn<'a>>,
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RecordIn<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PutRecordRequest<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct StreamRequest<'a> {
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
    /// DescribeStream
    #[serde(rename = "Limit", default)]
    limit: Option<u32>,
    /// DescribeStream, ListShards
    #[serde(rename = "ExclusiveStartShardId", borrow, default)]
    exclusive_start_shard_id: Option<Cow<'a, str>>,
    /// ListShards
    #[serde(rename = "MaxResults", default)]
    max_results: Option<u32>,
    /// ListShards
    #[serde(rename = "NextToken", borrow, default)]
    next_token: Option<Cow<'a, str>>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            &format!("cannot read the request body: {e}"),
        )
    })
}

fn check_partition_key(key: &str) -> Result<(), Reply> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "1 validation error detected: a partition key of {chars} characters failed to \
                 satisfy constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}"
            ),
        ));
    }
    Ok(())
}

// ---- operations ----

pub(super) fn put_records(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let req: PutRecordsRequest = parse(body)?;
    shared.check_stream(req.stream_name.as_deref(), req.stream_arn.as_deref())?;
    let n = req.records.len();
    if n == 0 || n > MAX_RECORDS_PER_REQUEST {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "1 validation error detected: Value of {n} records at 'records' failed to satisfy \
                 constraint: Member must have length between 1 and {MAX_RECORDS_PER_REQUEST}"
            ),
        ));
    }
    let mut request_bytes = 0u64;
    let mut hash_keys = Vec::with_capacity(n);
    for (i, r) in req.records.iter().enumerate() {
        check_partition_key(&r.partition_key)?;
        hash_keys.push(
            r.explicit_hash_key
                .as_deref()
                .map(|k| parse_hash_key(i, k))
                .transpose()?,
        );
        let size = decoded_len(&r.data) + r.partition_key.len() as u64;
        if size > MAX_RECORD_BYTES {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "InvalidArgumentException",
                &format!("a record of {size} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes (data and partition key)"),
            ));
        }
        request_bytes += size;
    }
    if request_bytes > MAX_REQUEST_BYTES {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentException",
            &format!("Records size {request_bytes} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes (5 MiB) per PutRecords request"),
        ));
    }
    let c = &shared.counters;
    c.records_received.fetch_add(n as u64, Relaxed);
    if shared.request_fails() {
        c.http500s.fetch_add(1, Relaxed);
        return Ok(Reply::injected_500());
    }

    let first = shared.next_record.fetch_add(n as u64, Relaxed);
    let mut out = Vec::with_capacity(48 + n * 80);
    out.extend_from_slice(b"{\"Records\":[");
    let (mut accepted, mut throttled, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut kept = Vec::new();
    let mut seq = itoa::Buffer::new();
    for (i, r) in req.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let index = first + i as u64;
        let shard = shared.shard_for(&r.partition_key, hash_keys[i]);
        let (users, off_shard) = if shared.count_user_records {
            shared.user_records(&r.data, shard)
        } else {
            (0, 0)
        };
        match shared.record_fate(index, shard) {
            Fate::Accepted => {
                accepted += 1;
                shared.accepted_on_shard[shard].fetch_add(1, Relaxed);
                if users > 0 {
                    shared.users_accepted_on_shard[shard].fetch_add(users, Relaxed);
                    c.user_records_accepted.fetch_add(users, Relaxed);
                    c.user_records_off_shard.fetch_add(off_shard, Relaxed);
                }
                bytes += decoded_len(&r.data);
                out.extend_from_slice(b"{\"SequenceNumber\":\"");
                out.extend_from_slice(seq.format(SEQUENCE_BASE + u128::from(index)).as_bytes());
                out.extend_from_slice(shared.accepted_tail[shard].as_bytes());
                if shared.keep_records {
                    kept.push((
                        r.partition_key.to_string(),
                        base64::engine::general_purpose::STANDARD
                            .decode(r.data.as_bytes())
                            .unwrap_or_default(),
                    ));
                }
            }
            Fate::Throttled => {
                throttled += 1;
                shared.throttled_on_shard[shard].fetch_add(1, Relaxed);
                shared.users_throttled_on_shard[shard].fetch_add(users, Relaxed);
                out.extend_from_slice(shared.throttled_entry[shard].as_bytes());
            }
            Fate::Failed => {
                failed += 1;
                out.extend_from_slice(shared.failed_entry.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"],\"FailedRecordCount\":");
    out.extend_from_slice(itoa::Buffer::new().format(throttled + failed).as_bytes());
    out.extend_from_slice(b",\"EncryptionType\":\"NONE\"}");

    c.records_accepted.fetch_add(accepted, Relaxed);
    c.bytes_accepted.fetch_add(bytes, Relaxed);
    if throttled > 0 {
        c.throttled.fetch_add(throttled, Relaxed);
    }
    if failed > 0 {
        c.internal_failures.fetch_add(failed, Relaxed);
    }
    if !kept.is_empty() {
        lock(&shared.kept).extend(kept);
    }
    Ok(Reply::ok(out))
}

fn put_record(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let req: PutRecordRequest = parse(body)?;
    shared.check_stream(req.stream_name.as_deref(), req.stream_arn.as_deref())?;
    check_partition_key(&req.partition_key)?;
    let hash_key = req
        .explicit_hash_key
        .as_deref()
        .map(|k| parse_hash_key(0, k))
        .transpose()?;
    let size = decoded_len(&req.data) + req.partition_key.len() as u64;
    if size > MAX_RECORD_BYTES {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentException",
            &format!("a record of {size} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes (data and partition key)"),
        ));
    }
    let c = &shared.counters;
    c.records_received.fetch_add(1, Relaxed);
    if shared.request_fails() {
        c.http500s.fetch_add(1, Relaxed);
        return Ok(Reply::injected_500());
    }
    let index = shared.next_record.fetch_add(1, Relaxed);
    let shard = shared.shard_for(&req.partition_key, hash_key);
    match shared.record_fate(index, shard) {
        Fate::Accepted => {
            c.records_accepted.fetch_add(1, Relaxed);
            shared.accepted_on_shard[shard].fetch_add(1, Relaxed);
            c.bytes_accepted.fetch_add(decoded_len(&req.data), Relaxed);
            if shared.keep_records {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(req.data.as_bytes())
                    .unwrap_or_default();
                lock(&shared.kept).push((req.partition_key.to_string(), data));
            }
            Ok(Reply::ok(
                json!({
                    "SequenceNumber": (SEQUENCE_BASE + u128::from(index)).to_string(),
                    "ShardId": shared.shard_ids[shard],
                    "EncryptionType": "NONE",
                })
                .to_string(),
            ))
        }
        Fate::Throttled => {
            c.throttled.fetch_add(1, Relaxed);
            shared.throttled_on_shard[shard].fetch_add(1, Relaxed);
            Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                &format!(
                    "Rate exceeded for shard {} in stream {} under account {ACCOUNT_ID}.",
                    shared.shard_ids[shard], shared.stream_name
                ),
            ))
        }
        Fate::Failed => {
            c.internal_failures.fetch_add(1, Relaxed);
            Err(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "Internal service failure.",
            ))
        }
    }
}

fn describe_stream_summary(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let req: StreamRequest = parse(body)?;
    shared.check_stream(req.stream_name.as_deref(), req.stream_arn.as_deref())?;
    Ok(Reply::ok(shared.summary_body.clone()))
}

/// Index of the first shard after `exclusive_start` (all of them when absent or unknown).
fn first_shard_after(shared: &Shared, exclusive_start: Option<&str>) -> usize {
    exclusive_start
        .and_then(|id| shared.shard_ids.iter().position(|s| s == id))
        .map_or(0, |i| i + 1)
}

fn describe_stream(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let req: StreamRequest = parse(body)?;
    shared.check_stream(req.stream_name.as_deref(), req.stream_arn.as_deref())?;
    let limit = req.limit.unwrap_or(100).clamp(1, 10_000) as usize;
    let from = first_shard_after(shared, req.exclusive_start_shard_id.as_deref());
    let to = (from + limit).min(shared.shard_ids.len());
    let shards: Vec<_> = (from..to).map(|i| shared.shard_json(i)).collect();
    Ok(Reply::ok(
        json!({
            "StreamDescription": {
                "StreamName": shared.stream_name,
                "StreamARN": shared.stream_arn,
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "Shards": shards,
                "HasMoreShards": to < shared.shard_ids.len(),
                "RetentionPeriodHours": RETENTION_HOURS,
                "StreamCreationTimestamp": shared.created_epoch_seconds,
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
            }
        })
        .to_string(),
    ))
}

const NEXT_TOKEN_PREFIX: &str = "kinesis-double-shards-from-";

fn list_shards(shared: &Shared, body: &[u8]) -> Result<Reply, Reply> {
    let req: StreamRequest = parse(body)?;
    let from = match req.next_token.as_deref() {
        Some(token) => token
            .strip_prefix(NEXT_TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgumentException",
                    "NextToken is not one this stream handed out.",
                )
            })?,
        None => {
            shared.check_stream(req.stream_name.as_deref(), req.stream_arn.as_deref())?;
            first_shard_after(shared, req.exclusive_start_shard_id.as_deref())
        }
    };
    let max = req.max_results.unwrap_or(1000).clamp(1, 10_000) as usize;
    let total = shared.shard_ids.len();
    let from = from.min(total);
    let to = (from + max).min(total);
    let shards: Vec<_> = (from..to).map(|i| shared.shard_json(i)).collect();
    let mut answer = json!({ "Shards": shards });
    if to < total {
        answer["NextToken"] = json!(format!("{NEXT_TOKEN_PREFIX}{to}"));
    }
    Ok(Reply::ok(answer.to_string()))
}

// ---- HTTP ----

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    shared.counters.requests.fetch_add(1, Relaxed);
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned);
    let reply = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Err(e) => Reply::error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            &format!("cannot read a request body of at most {MAX_BODY_BYTES} bytes: {e}"),
        ),
        Ok(collected) => {
            let body = collected.to_bytes();
            let data_plane = matches!(operation.as_deref(), Some("PutRecords" | "PutRecord"));
            // A slow stream: the call is processed (one at a time, if so configured) and only
            // then are its records accepted; a client that gives up first leaves nothing behind.
            let _serial = match (&shared.serial, data_plane) {
                (Some(serial), true) => Some(serial.lock().await),
                _ => None,
            };
            if let (Some(service_time), true) = (shared.service_time, data_plane) {
                tokio::time::sleep(service_time).await;
            }
            let result = match operation.as_deref() {
                Some("PutRecords") => put_records(&shared, &body),
                Some("PutRecord") => put_record(&shared, &body),
                Some("DescribeStreamSummary") => describe_stream_summary(&shared, &body),
                Some("DescribeStream") => describe_stream(&shared, &body),
                Some("ListShards") => list_shards(&shared, &body),
                other => Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "UnknownOperationException",
                    &format!(
                        "the Kinesis double serves PutRecords, PutRecord, DescribeStreamSummary, \
                         DescribeStream and ListShards (X-Amz-Target {TARGET_PREFIX}<Operation>), \
                         not {}",
                        other.unwrap_or("a request without X-Amz-Target")
                    ),
                )),
            };
            result.unwrap_or_else(|e| e)
        }
    };
    if reply.status.is_client_error() {
        shared.counters.client_errors.fetch_add(1, Relaxed);
    }
    if let Some(latency) = shared.latency {
        tokio::time::sleep(latency).await;
    }
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON_1_1),
    );
    Ok(response)
}

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A change, or the handle dropped: stop accepting.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let mut shutdown = shutdown.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = shutdown.changed() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: pause instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_millis(500), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}
