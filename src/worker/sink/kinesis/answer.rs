//! The outcome of a PutRecords call: a 200 answer read record by record (a record counts as
//! acknowledged only with a sequence number), or the error code of any other status.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
