//! The outcome of a PutRecords call: a 200 answer read record by record (a record counts as
//! acknowledged only with a sequence number), or the error code of any other status.

use std::borrow::Cow;

/// How Kinesis answered a PutRecords request with HTTP 200.
#[derive(Debug, PartialEq)]
pub enum Answer<'a> {
    /// Every record got a sequence number; the shard each landed on, in request order.
    AllAcknowledged(Vec<&'a str>),
    /// Record by record, in request order. Fewer entries than records means the rest were not
    /// answered.
    PerRecord(Vec<RecordAnswer<'a>>),
}

/// What Kinesis answered for one record.
#[derive(Debug, PartialEq)]
pub struct RecordAnswer<'a> {
    /// `None` when acknowledged, else the error code.
    pub error: Option<Cow<'a, str>>,
    /// The shard: `ShardId` of an acknowledged record, or the shard a failed record's error
    /// message names (`Rate exceeded for shard shardId-… in stream …`); `None` when neither says.
    pub shard: Option<Cow<'a, str>>,
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
    #[serde(rename = "ShardId", borrow, default)]
    shard_id: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorCode", borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorMessage", borrow, default)]
    error_message: Option<Cow<'a, str>>,
}

/// Reads a PutRecords response of `records` records. The fast path only checks that
/// `FailedRecordCount` is 0 and that there are exactly `records` sequence numbers and shard
/// ids, and reads the shard ids in order: the texts `"SequenceNumber"` and `"ShardId"` with
/// both quotes can only be keys (inside a JSON string their quotes would be escaped), and a
/// shard id (`shardId-` and digits) needs no unescaping. Anything else is parsed in full.
pub fn read_answer(body: &[u8], records: usize) -> Result<Answer<'_>, String> {
    if failed_record_count(body) == Some(0)
        && memchr::memmem::find_iter(body, b"\"SequenceNumber\"").count() == records
    {
        if let Some(shards) = shard_ids(body, records) {
            return Ok(Answer::AllAcknowledged(shards));
        }
    }
    let parsed: ResponseBody<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable PutRecords response ({e})"))?;
    Ok(Answer::PerRecord(
        parsed
            .records
            .into_iter()
            .map(|r| match r.sequence_number {
                Some(_) => RecordAnswer {
                    error: None,
                    shard: r.shard_id,
                },
                None => RecordAnswer {
                    shard: r.shard_id.or_else(|| {
                        r.error_message
                            .as_deref()
                            .and_then(shard_in_message)
                            .map(|s| Cow::Owned(s.to_string()))
                    }),
                    error: Some(r.error_code.unwrap_or(Cow::Borrowed("UnknownRecordError"))),
                },
            })
            .collect(),
    ))
}

/// The `"ShardId":"…"` values in order, when there are exactly `records` of them and each is
/// plain text (no escapes).
fn shard_ids(body: &[u8], records: usize) -> Option<Vec<&str>> {
    const KEY: &[u8] = b"\"ShardId\"";
    let mut out = Vec::with_capacity(records);
    for at in memchr::memmem::find_iter(body, KEY) {
        let rest = trim_start(&body[at + KEY.len()..]).strip_prefix(b":")?;
        let rest = trim_start(rest).strip_prefix(b"\"")?;
        let end = memchr::memchr(b'"', rest)?;
        let id = &rest[..end];
        if id.contains(&b'\\') {
            return None;
        }
        out.push(std::str::from_utf8(id).ok()?);
    }
    (out.len() == records).then_some(out)
}

/// The shard a per-record error message names: `Rate exceeded for shard shardId-000000000001
/// in stream s under account 111111111111.`
fn shard_in_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("for shard ")?;
    let id = rest.split(|c: char| c.is_whitespace()).next()?;
    let id = id.trim_end_matches(['.', ',']);
    (!id.is_empty()).then_some(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s"},{"SequenceNumber":"2","ShardId":"s"}]}"#;
        assert_eq!(
            read_answer(ok, 2).unwrap(),
            Answer::AllAcknowledged(vec!["s", "s"])
        );
        let ok = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000001"},{"ShardId" : "shardId-000000000000", "SequenceNumber":"2"}]}"#;
        assert_eq!(
            read_answer(ok, 2).unwrap(),
            Answer::AllAcknowledged(vec!["shardId-000000000001", "shardId-000000000000"])
        );
        let acked = |shard: &'static str| RecordAnswer {
            error: None,
            shard: Some(Cow::Borrowed(shard)),
        };
        // One answer missing: parsed in full, and the caller sees one result only.
        let short =
            br#"{"Records":[{"SequenceNumber":"1","ShardId":"s"}], "FailedRecordCount" : 0}"#;
        assert_eq!(
            read_answer(short, 2).unwrap(),
            Answer::PerRecord(vec![acked("s")])
        );
        // No shard ids (an endpoint that leaves them out): parsed in full, shards unknown.
        let bare = br#"{"Records":[{"SequenceNumber":"1"}],"FailedRecordCount":0}"#;
        assert_eq!(
            read_answer(bare, 1).unwrap(),
            Answer::PerRecord(vec![RecordAnswer {
                error: None,
                shard: None
            }])
        );
        let partial = br#"{"Records":[{"SequenceNumber":"1","ShardId":"s"},{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard shardId-000000000003 in stream \"SequenceNumber\" under account 1."},{"ErrorCode":"InternalFailure","ErrorMessage":"Internal service failure."},{}],"FailedRecordCount":3}"#;
        assert_eq!(
            read_answer(partial, 4).unwrap(),
            Answer::PerRecord(vec![
                acked("s"),
                RecordAnswer {
                    error: Some(Cow::Borrowed("ProvisionedThroughputExceededException")),
                    shard: Some(Cow::Borrowed("shardId-000000000003")),
                },
                RecordAnswer {
                    error: Some(Cow::Borrowed("InternalFailure")),
                    shard: None,
                },
                RecordAnswer {
                    error: Some(Cow::Borrowed("UnknownRecordError")),
                    shard: None,
                },
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
}
