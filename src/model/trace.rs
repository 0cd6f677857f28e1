//! End to end: the trace every produced event can carry, and how a consumer finds it again.
//!
//! With `FLEETLOAD_TRACE=on` a producer adds one JSON string field to every event (the name is
//! `FLEETLOAD_TRACE_FIELD`, `fleetload_trace` by default):
//!
//! ```text
//! "fleetload_trace":"<producer task id>:<sequence number>:<intended send time, epoch µs>"
//! ```
//!
//! One string rather than an object: it is written with two integer formats and a copy, it
//! survives a pipeline that nests or renames the record around it, and a consumer finds it
//! without parsing the record (a search for the quoted field name; the full JSON pointer only
//! when the name is absent or appears more than once). The sequence number counts the task's
//! events from 0 in the order they were handed to the target, so the events a task attempted
//! are exactly `0..attempted`.
//!
//! This module also holds the end-to-end settings of the scenario (`FLEETLOAD_ROLE`,
//! `FLEETLOAD_TRACE*`, `FLEETLOAD_SETTLE`), validated here so that the scenario only calls one
//! function.

use std::time::Duration;

use memchr::memmem;

use crate::model::input::ScenarioError;

/// The trace field's name when `FLEETLOAD_TRACE_FIELD` is not given.
pub const DEFAULT_TRACE_FIELD: &str = "fleetload_trace";
/// Where a consumer looks for the trace when `FLEETLOAD_TRACE_POINTER` is not given.
pub const DEFAULT_TRACE_POINTER: &str = "/fleetload_trace";
/// How long a consumer keeps reading after the producers' planned end, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// The longest settle time accepted: a consumer task is billed while it waits.
pub const MAX_SETTLE: Duration = Duration::from_secs(3600);
/// Most consumer tasks of one run.
pub const MAX_CONSUMERS: u32 = 1000;
/// The longest trace field name accepted (it is written into every event).
pub const MAX_FIELD_LEN: usize = 64;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Produce to the target on the schedule (the default).
    Produce,
    /// Read the system under test's output and measure end to end.
    Consume,
}

impl Role {
    /// `produce` or `consume`, as in `FLEETLOAD_ROLE` and the summary's `role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Produce => "produce",
            Role::Consume => "consume",
        }
    }
}

/// The end-to-end settings of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct EndToEnd {
    /// Produce or consume.
    pub role: Role,
    /// Whether produced events carry a trace.
    pub trace: bool,
    /// The trace field's name in produced events.
    pub field: String,
    /// Where a consumer finds the trace in the records it reads (RFC 6901 tokens, unescaped).
    pub pointer: Vec<String>,
    /// The pointer as given, for reports.
    pub pointer_text: String,
    /// How long a consumer reads after the producers' planned end.
    pub settle: Duration,
    /// This consumer's index among the run's `consumers` (`FLEETLOAD_CONSUMER=INDEX/COUNT`):
    /// Kinesis shard `n`, and Kafka partition `n`, is read by the consumer with index
    /// `n mod consumers`.
    pub consumer_index: u32,
    /// How many consumer tasks the run has.
    pub consumers: u32,
}

impl Default for EndToEnd {
    fn default() -> Self {
        EndToEnd {
            role: Role::Produce,
            trace: false,
            field: DEFAULT_TRACE_FIELD.into(),
            pointer: vec![DEFAULT_TRACE_FIELD.into()],
            pointer_text: DEFAULT_TRACE_POINTER.into(),
            settle: DEFAULT_SETTLE,
            consumer_index: 0,
            consumers: 1,
        }
    }
}

impl EndToEnd {
    /// Validates `FLEETLOAD_ROLE`, `FLEETLOAD_TRACE`, `FLEETLOAD_TRACE_FIELD`,
    /// `FLEETLOAD_TRACE_POINTER`, `FLEETLOAD_SETTLE` and `FLEETLOAD_CONSUMER` (each `None`
    /// when not given).
    pub fn parse(
        role: Option<&str>,
        trace: Option<&str>,
        field: Option<&str>,
        pointer: Option<&str>,
        settle: Option<&str>,
        consumer: Option<&str>,
    ) -> Result<EndToEnd, ScenarioError> {
        let mut e2e = EndToEnd::default();
        if let Some(role) = role {
            e2e.role = match role.to_ascii_lowercase().as_str() {
                "produce" => Role::Produce,
                "consume" => Role::Consume,
                _ => {
                    return Err(ScenarioError::invalid(
                        "FLEETLOAD_ROLE",
                        role,
                        "unknown role",
                        "produce (the default) or consume",
                    ))
                }
            };
        }
        if let Some(trace) = trace {
            e2e.trace = match trace.to_ascii_lowercase().as_str() {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(ScenarioError::invalid(
                        "FLEETLOAD_TRACE",
                        trace,
                        "not on or off",
                        "on or off",
                    ))
                }
            };
        }
        if let Some(field) = field {
            let ok = (1..=MAX_FIELD_LEN).contains(&field.len())
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_TRACE_FIELD",
                    field,
                    "not a plain field name",
                    "1-64 characters of A-Z a-z 0-9 _ - . (written into every event without escaping)",
                ));
            }
            e2e.field = field.to_string();
            if pointer.is_none() {
                // The consumer's default follows the field's name.
                e2e.pointer = vec![field.to_string()];
                e2e.pointer_text = format!("/{field}");
            }
        }
        if let Some(pointer) = pointer {
            e2e.pointer = parse_pointer(pointer).map_err(|why| {
                ScenarioError::invalid(
                    "FLEETLOAD_TRACE_POINTER",
                    pointer,
                    why,
                    "a JSON pointer (RFC 6901) to the trace field such as /fleetload_trace or /original/fleetload_trace",
                )
            })?;
            e2e.pointer_text = pointer.to_string();
        }
        if let Some(settle) = settle {
            let accepted = "a duration such as 0s, 30s or 2m (at most 1h)";
            let d = humantime::parse_duration(settle.trim()).map_err(|e| {
                ScenarioError::invalid("FLEETLOAD_SETTLE", settle, e.to_string(), accepted)
            })?;
            if d > MAX_SETTLE {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_SETTLE",
                    settle,
                    "longer than 1h",
                    accepted,
                ));
            }
            e2e.settle = d;
        }
        if let Some(consumer) = consumer {
            let parsed = consumer
                .split_once('/')
                .and_then(|(i, n)| {
                    Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
                })
                .filter(|(i, n)| *n >= 1 && *n <= MAX_CONSUMERS && i < n);
            let Some((index, count)) = parsed else {
                return Err(ScenarioError::invalid(
                    "FLEETLOAD_CONSUMER",
                    consumer,
                    "not INDEX/COUNT with INDEX below COUNT",
                    "INDEX/COUNT such as 0/2 (COUNT from 1 to 1000; the launcher sets it)",
                ));
            };
            (e2e.consumer_index, e2e.consumers) = (index, count);
        }
        Ok(e2e)
    }

    /// Whether this consumer reads Kinesis shard or Kafka partition number `n`: the one whose
    /// index is `n mod consumers` does, so the run's consumers read each exactly once.
    pub fn reads(&self, n: u64) -> bool {
        n % u64::from(self.consumers.max(1)) == u64::from(self.consumer_index)
    }
}

/// The reference tokens of an RFC 6901 pointer (`~1` is `/`, `~0` is `~`). The trace cannot be
/// the whole document, so the empty pointer is refused.
fn parse_pointer(text: &str) -> Result<Vec<String>, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err("a JSON pointer starts with /".into());
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("~ must be followed by 0 or 1 in {token:?}")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Writes the trace into produced events: one per task, with the task's sequence counter.
///
/// The trace is written into every event, so on the null target (generation alone) its cost
/// is a visible share of an event's (`bench/e2e.sh`). It is therefore kept whole from one
/// event to the next, `,"<field>":"<task>:<seq>:<intended µs>"}`, and its numbers are stepped
/// in place: the sequence number grows by one, the intended time by the schedule's interval
/// (not at all within a burst of unpaced events). A step is a few byte operations; formatting
/// the numbers again costs a division per two digits. Each event then takes one copy, of a
/// fixed [`COPY`] bytes when the tail fits in them (the default field and any task id of up
/// to 36 characters do): a copy of known length is a few vector moves, where one of a length
/// known only at run time is a call into `memcpy` that cost as much as the rest of the trace.
#[derive(Debug, Clone)]
pub struct TraceWriter {
    /// `,"<field>":"<task id>:<seq>:<intended µs>"}` (the tail, `len` bytes), then zeros up to
    /// at least [`COPY`] + 1 bytes, so a fixed-length copy from offset 0 or 1 stays inside.
    buf: Vec<u8>,
    /// Length of the tail in `buf`.
    len: usize,
    /// Length of `,"<field>":"<task id>:`.
    prefix_len: usize,
    next_seq: u64,
    /// The sequence number written in `tail`, and where its digits end.
    seq: u64,
    seq_end: usize,
    /// The intended time written in `tail`.
    us: u64,
}

/// Steps up to this size are added to the digits in place; larger ones (and steps back)
/// format the number again.
const SMALL_STEP: u64 = 1_000;
/// The fixed length of the trace's copy into an event, when the tail fits.
const COPY: usize = 96;

/// Adds `step` to the decimal `digits` in place. False when the sum needs one more digit
/// (the digits are then not to be used).
fn add_to_digits(digits: &mut [u8], mut step: u64) -> bool {
    let mut carry = 0u8;
    for d in digits.iter_mut().rev() {
        if step == 0 && carry == 0 {
            return true;
        }
        let sum = (*d - b'0') + (step % 10) as u8 + carry;
        *d = b'0' + sum % 10;
        carry = sum / 10;
        step /= 10;
    }
    step == 0 && carry == 0
}

impl TraceWriter {
    /// A writer for the events of `task_id`, in field `field`. The task id is written as it is,
    /// so it must need no JSON escaping (ids are validated to a safe alphabet; others are
    /// escaped here once).
    pub fn new(field: &str, task_id: &str) -> Self {
        let mut tail = Vec::with_capacity(field.len() + task_id.len() + 48);
        tail.extend_from_slice(b",\"");
        tail.extend_from_slice(field.as_bytes());
        tail.extend_from_slice(b"\":\"");
        for c in task_id.chars() {
            // ':' separates the parts; '"' and '\' would need escaping; control characters
            // are not allowed in JSON strings.
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                tail.push(c as u8);
            } else {
                tail.push(b'_');
            }
        }
        tail.push(b':');
        let prefix_len = tail.len();
        let mut w = TraceWriter {
            buf: tail,
            len: 0,
            prefix_len,
            next_seq: 0,
            seq: 0,
            seq_end: 0,
            us: 0,
        };
        w.write_numbers(0, 0);
        w
    }

    /// Writes both numbers after the prefix afresh.
    fn write_numbers(&mut self, seq: u64, us: u64) {
        let mut b = itoa::Buffer::new();
        self.buf.truncate(self.prefix_len);
        self.buf.extend_from_slice(b.format(seq).as_bytes());
        self.seq_end = self.buf.len();
        self.buf.push(b':');
        self.buf.extend_from_slice(b.format(us).as_bytes());
        self.buf.extend_from_slice(b"\"}");
        self.len = self.buf.len();
        // Room for a fixed-length copy from offset 0 or 1.
        self.buf.resize(self.len.max(COPY + 1), 0);
        self.seq = seq;
        self.us = us;
    }

    /// Brings the numbers in the tail to `seq` and `us`.
    #[inline]
    fn step_to(&mut self, seq: u64, us: u64) {
        // The common case first: the next sequence number, the same instant, no carry.
        if seq == self.seq + 1 && us == self.us {
            let last = &mut self.buf[self.seq_end - 1];
            if *last < b'9' {
                *last += 1;
                self.seq = seq;
                return;
            }
        }
        self.step_slowly(seq, us);
    }

    /// [`TraceWriter::step_to`] past its common case.
    #[inline(never)]
    fn step_slowly(&mut self, seq: u64, us: u64) {
        let seq_ok = seq == self.seq
            || (seq > self.seq
                && seq - self.seq <= SMALL_STEP
                && add_to_digits(&mut self.buf[self.prefix_len..self.seq_end], seq - self.seq));
        let us_end = self.len - 2;
        let us_ok = seq_ok
            && (us == self.us
                || (us > self.us
                    && us - self.us <= SMALL_STEP
                    && add_to_digits(&mut self.buf[self.seq_end + 1..us_end], us - self.us)));
        if us_ok {
            self.seq = seq;
            self.us = us;
        } else {
            self.write_numbers(seq, us);
        }
    }

    /// The task id as it appears in the traces (characters outside `A-Z a-z 0-9 - _ .`
    /// replaced by `_`).
    pub fn task(&self) -> &str {
        let end = self.prefix_len - 1;
        let start = self.buf[..end]
            .iter()
            .rposition(|&b| b == b'"')
            .map_or(0, |i| i + 1);
        std::str::from_utf8(&self.buf[start..end]).unwrap_or_default()
    }

    /// Adds the trace to `value`, a JSON object, just before its closing brace, and returns
    /// the event's sequence number. The closing brace is the last non-blank byte (a template
    /// is checked to render an object when tracing is on).
    pub fn append(&mut self, value: &mut Vec<u8>, intended_epoch_us: u64) -> u64 {
        // The generator's payloads end with the brace; a template may add blanks after it.
        if value.last() == Some(&b'}') {
            value.pop();
        } else {
            while value.last().is_some_and(u8::is_ascii_whitespace) {
                value.pop();
            }
            if value.last() == Some(&b'}') {
                value.pop();
            }
        }
        let empty = match value.last() {
            Some(b'{') => true,
            Some(b) if !b.is_ascii_whitespace() => false,
            _ => value
                .iter()
                .rev()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'{'),
        };
        let seq = self.next_seq;
        self.step_to(seq, intended_epoch_us);
        // Without a member before it the trace needs no comma.
        let skip = usize::from(empty);
        if self.len <= COPY {
            let at = value.len();
            let fixed: &[u8; COPY] = self.buf[skip..skip + COPY]
                .try_into()
                .expect("buf holds COPY + 1 bytes");
            value.extend_from_slice(fixed);
            value.truncate(at + self.len - skip);
        } else {
            value.extend_from_slice(&self.buf[skip..self.len]);
        }
        self.next_seq += 1;
        seq
    }
}

/// One trace read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace<'a> {
    /// The producer task's id.
    pub task: &'a [u8],
    /// The event's sequence number in that task.
    pub seq: u64,
    /// Its intended send time, µs since the Unix epoch.
    pub intended_us: u64,
}

/// Parses the text of a trace (`task:seq:us`, without quotes).
pub fn parse_trace(text: &[u8]) -> Option<Trace<'_>> {
    let last = memchr::memrchr(b':', text)?;
    let mid = memchr::memrchr(b':', &text[..last])?;
    let task = &text[..mid];
    if task.is_empty() {
        return None;
    }
    Some(Trace {
        task,
        seq: parse_u64(&text[mid + 1..last])?,
        intended_us: parse_u64(&text[last + 1..])?,
    })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    Some(v)
}

/// Finds the trace in the records a consumer reads.
#[derive(Debug)]
pub struct TraceFinder {
    /// The quoted name of the pointer's last token: `"fleetload_trace"`.
    key: memmem::Finder<'static>,
    key_len: usize,
    pointer: String,
    /// Whether the last token needs JSON escaping; the fast path then cannot look for it.
    plain: bool,
}

impl TraceFinder {
    /// A finder for the trace at `end_to_end`'s pointer.
    pub fn new(end_to_end: &EndToEnd) -> Self {
        let last = end_to_end.pointer.last().cloned().unwrap_or_default();
        let plain = !last.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let quoted = format!("\"{last}\"").into_bytes();
        TraceFinder {
            key_len: quoted.len(),
            key: memmem::Finder::new(&quoted).into_owned(),
            pointer: end_to_end.pointer_text.clone(),
            plain,
        }
    }

    /// The trace in `record`, or `None` when it has none (a foreign record).
    ///
    /// Fast path: when the quoted field name occurs exactly once and is followed by `:` and a
    /// string without escapes, that string is the trace. Otherwise the record is parsed and
    /// the pointer followed.
    pub fn find<'r>(&self, record: &'r [u8]) -> Option<Trace<'r>> {
        if self.plain {
            let mut hits = self.key.find_iter(record);
            if let Some(at) = hits.next() {
                if hits.next().is_none() {
                    if let Some(text) = string_after_key(&record[at + self.key_len..]) {
                        return parse_trace(text);
                    }
                }
            } else if !record.contains(&b'\\') {
                // The name is nowhere (and not hidden behind an escape): no trace.
                return None;
            }
        }
        self.find_parsed(record)
    }

    fn find_parsed<'r>(&self, record: &'r [u8]) -> Option<Trace<'r>> {
        let value: serde_json::Value = serde_json::from_slice(record).ok()?;
        let text = value.pointer(&self.pointer)?.as_str()?;
        // Borrowing from the parsed value is not possible; find the same text in the record
        // (a trace has no characters that JSON escapes, so it appears verbatim).
        let at = memmem::find(record, text.as_bytes())?;
        parse_trace(&record[at..at + text.len()])
    }
}

/// After a key: blanks, `:`, blanks, then a string without escapes; its contents.
fn string_after_key(rest: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    let skip = |i: &mut usize| {
        while rest.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip(&mut i);
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip(&mut i);
    if rest.get(i) != Some(&b'"') {
        return None;
    }
    let body = &rest[i + 1..];
    let end = memchr::memchr2(b'"', b'\\', body)?;
    (body[end] == b'"').then_some(&body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e2e(vars: [Option<&str>; 6]) -> Result<EndToEnd, ScenarioError> {
        EndToEnd::parse(vars[0], vars[1], vars[2], vars[3], vars[4], vars[5])
    }

    #[test]
    fn settings_default_and_parse() {
        let d = e2e([None; 6]).unwrap();
        assert_eq!(d, EndToEnd::default());
        assert_eq!(d.pointer, ["fleetload_trace"]);
        let s = e2e([
            Some("consume"),
            Some("on"),
            Some("t"),
            Some("/out/a~1b/t"),
            Some("5s"),
            Some("1/3"),
        ])
        .unwrap();
        assert_eq!(s.role, Role::Consume);
        assert!(s.trace);
        assert_eq!(s.pointer, ["out", "a/b", "t"]);
        assert_eq!(s.settle, Duration::from_secs(5));
        assert_eq!((s.consumer_index, s.consumers), (1, 3));
        // The consumer's default pointer follows a renamed field.
        let f = e2e([None, None, Some("tr"), None, Some("0s"), None]).unwrap();
        assert_eq!(f.pointer_text, "/tr");
        assert_eq!(f.settle, Duration::ZERO);
    }

    #[test]
    fn bad_settings_name_the_variable_and_what_is_accepted() {
        for (vars, name, why) in [
            (
                [Some("both"), None, None, None, None, None],
                "FLEETLOAD_ROLE",
                "produce (the default) or consume",
            ),
            (
                [None, Some("yes"), None, None, None, None],
                "FLEETLOAD_TRACE",
                "on or off",
            ),
            (
                [None, None, Some("a\"b"), None, None, None],
                "FLEETLOAD_TRACE_FIELD",
                "1-64 characters",
            ),
            (
                [None, None, None, Some("fleetload_trace"), None, None],
                "FLEETLOAD_TRACE_POINTER",
                "starts with /",
            ),
            (
                [None, None, None, Some("/a~2"), None, None],
                "FLEETLOAD_TRACE_POINTER",
                "~ must be followed",
            ),
            (
                [None, None, None, None, Some("2h"), None],
                "FLEETLOAD_SETTLE",
                "longer than 1h",
            ),
            (
                [None, None, None, None, None, Some("2/2")],
                "FLEETLOAD_CONSUMER",
                "INDEX/COUNT such as 0/2",
            ),
        ] {
            let e = e2e(vars).unwrap_err().to_string();
            assert!(e.starts_with(name), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_trace_is_appended_inside_the_object_and_read_back() {
        let mut w = TraceWriter::new("fleetload_trace", "task-1");
        assert_eq!(w.task(), "task-1");
        for (body, expected) in [
            (
                &b"{\"a\":1}"[..],
                "{\"a\":1,\"fleetload_trace\":\"task-1:0:1700000000123456\"}",
            ),
            (
                b"{\"a\":1}\n  ",
                "{\"a\":1,\"fleetload_trace\":\"task-1:1:1700000000123456\"}",
            ),
            (
                b"{ }",
                "{ \"fleetload_trace\":\"task-1:2:1700000000123456\"}",
            ),
        ] {
            let mut v = body.to_vec();
            w.append(&mut v, 1_700_000_000_123_456);
            assert_eq!(String::from_utf8(v.clone()).unwrap(), expected);
            serde_json::from_slice::<serde_json::Value>(&v).unwrap();
        }
        assert_eq!(w.next_seq, 3);
        // A tail longer than the fixed-length copy (a long field name and task id), into an
        // empty object and into one with members.
        let field = "f".repeat(MAX_FIELD_LEN);
        let task = "t".repeat(60);
        let mut w = TraceWriter::new(&field, &task);
        for (body, expected) in [
            (&b"{}"[..], format!("{{\"{field}\":\"{task}:0:5\"}}")),
            (
                b"{\"a\":1}",
                format!("{{\"a\":1,\"{field}\":\"{task}:1:5\"}}"),
            ),
        ] {
            let mut v = body.to_vec();
            w.append(&mut v, 5);
            assert_eq!(String::from_utf8(v).unwrap(), expected);
        }
        // A task id with characters that would need escaping is written safely.
        let w = TraceWriter::new("f", "host:1\"x");
        assert_eq!(w.task(), "host_1_x");
    }

    #[test]
    fn each_shard_or_partition_is_read_by_exactly_one_consumer() {
        let consumers: Vec<EndToEnd> = (0..3)
            .map(|i| e2e([None, None, None, None, None, Some(&format!("{i}/3"))]).unwrap())
            .collect();
        for n in 0..10u64 {
            let readers: Vec<u32> = consumers
                .iter()
                .filter(|c| c.reads(n))
                .map(|c| c.consumer_index)
                .collect();
            assert_eq!(readers, [(n % 3) as u32], "shard or partition {n}");
        }
        assert!(EndToEnd::default().reads(7));
    }

    #[test]
    fn numbers_stepped_in_place_equal_the_numbers_formatted_afresh() {
        let mut w = TraceWriter::new("t", "task");
        let mut us = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            us = match i % 7 {
                // Steps of one, small steps, the same instant, jumps up and down, the limits.
                0..=2 => us.saturating_add(1),
                3 => us.saturating_add(rng % (SMALL_STEP + 1)),
                4 => us,
                5 => rng >> (rng % 64),
                _ => [9, 99, 999_999, u64::MAX - 3, 0][(rng % 5) as usize],
            };
            let mut v = b"{}".to_vec();
            let seq = w.append(&mut v, us);
            assert_eq!(
                String::from_utf8(v).unwrap(),
                format!("{{\"t\":\"task:{seq}:{us}\"}}"),
                "event {i}"
            );
        }
        // A sequence number past a power of ten gets its new digit.
        w.next_seq = 9_999;
        for seq in 9_999..10_001 {
            let mut v = b"{}".to_vec();
            assert_eq!(w.append(&mut v, 5), seq);
            assert_eq!(v, format!("{{\"t\":\"task:{seq}:5\"}}").into_bytes());
        }
    }

    #[test]
    fn traces_parse_exactly() {
        assert_eq!(
            parse_trace(b"a:b:7:12"),
            Some(Trace {
                task: b"a:b",
                seq: 7,
                intended_us: 12
            })
        );
        for bad in [
            &b""[..],
            b"a:1",
            b":1:2",
            b"a:x:2",
            b"a:1:",
            b"a:1:99999999999999999999",
        ] {
            assert_eq!(parse_trace(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_finder_reads_nested_spaced_and_escaped_records() {
        let top = TraceFinder::new(&EndToEnd::default());
        let nested = TraceFinder::new(
            &e2e([None, None, None, Some("/in/fleetload_trace"), None, None]).unwrap(),
        );
        let t = |task: &'static [u8], seq, intended_us| {
            Some(Trace {
                task,
                seq,
                intended_us,
            })
        };
        assert_eq!(
            top.find(br#"{"x":1,"fleetload_trace":"p:5:9"}"#),
            t(b"p", 5, 9)
        );
        assert_eq!(
            top.find(br#"{"fleetload_trace" :  "p:5:9" }"#),
            t(b"p", 5, 9)
        );
        // The fast path finds the one occurrence wherever it is nested.
        assert_eq!(
            nested.find(br#"{"in":{"fleetload_trace":"p:6:9"},"z":2}"#),
            t(b"p", 6, 9)
        );
        // Two occurrences: the pointer decides.
        assert_eq!(
            nested.find(br#"{"fleetload_trace":"q:1:1","in":{"fleetload_trace":"p:7:9"}}"#),
            t(b"p", 7, 9)
        );
        // The name written with an escape is found by parsing.
        assert_eq!(
            top.find(br#"{"fleetload\u005ftrace":"p:8:9"}"#),
            t(b"p", 8, 9)
        );
        // Foreign records.
        assert_eq!(top.find(br#"{"x":1}"#), None);
        assert_eq!(top.find(b"not json"), None);
        assert_eq!(top.find(br#"{"fleetload_trace":12}"#), None);
        assert_eq!(top.find(br#"{"fleetload_trace":"garbage"}"#), None);
    }
}
