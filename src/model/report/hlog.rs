//! `histograms.hlog`: the per-second latency histograms as an HdrHistogram interval log (the
//! format of HdrHistogram's `HistogramLogProcessor`), so the merge computes exact per-second
//! percentiles across tasks and any HdrHistogram library reads the file.
//!
//! [`HlogWriter`] is the one writer: it takes a second's histogram either as a histogram or as
//! the V2-deflate bytes it was already compressed to when the second closed, so a task never
//! inflates what it kept compressed. [`read_hlog`] is the one reader: it hands each interval's
//! encoded histogram to the caller, who decodes it with whatever decoder fits (the merge's fast
//! one, or the hdrhistogram crate's in [`parse_hlog`]).

use std::fmt::Write as _;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::{decode_histogram, V2StoredSerializer};

/// The comment that opens every log.
const COMMENT: &str = "fleetload per-second latency histograms, microseconds; interval start in \
                       seconds from the planned start";
/// Interval maxima are written in milliseconds, as HdrHistogram's tools expect for µs values.
const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// Writes an interval log, one second at a time.
pub struct HlogWriter {
    out: Vec<u8>,
    line: String,
    encoded: Vec<u8>,
    encoding: Encoding,
}

/// How [`HlogWriter::push`] encodes a histogram: both are the standard V2 deflate encoding.
enum Encoding {
    /// Compressed (the hdrhistogram crate's own serializer): the merged logs, read by people.
    Compressed(V2DeflateSerializer),
    /// In stored deflate blocks ([`V2StoredSerializer`]): a task's log, which the merge reads
    /// back, a thousand tasks × every second of the run, for about 1.6× the bytes.
    Stored(V2StoredSerializer),
}

impl HlogWriter {
    /// A task's log (what the worker writes, and `write_hlog`): its seconds in stored deflate
    /// blocks, which the merge reads without inflating them.
    pub fn for_task(base: DateTime<Utc>) -> Self {
        let mut w = Self::new(base);
        w.encoding = Encoding::Stored(V2StoredSerializer::default());
        w
    }

    /// A log whose interval starts count from `base` (the run's planned start), its seconds
    /// compressed.
    pub fn new(base: DateTime<Utc>) -> Self {
        let base_secs = base.timestamp_millis() as f64 / 1000.0;
        let mut line = String::new();
        for l in COMMENT.split('\n') {
            let _ = writeln!(line, "#{l}");
        }
        let _ = writeln!(line, "#[BaseTime: {base_secs:.3} (seconds since epoch)]");
        let _ = writeln!(line, "#[MaxValueDivisor: {MAX_VALUE_DIVISOR:.3}]");
        HlogWriter {
            out: line.into_bytes(),
            line: String::new(),
            encoded: Vec::new(),
            encoding: Encoding::Compressed(V2DeflateSerializer::new()),
        }
    }

    /// Adds second `second` from its V2-deflate encoding and its maximum (µs).
    pub fn push_encoded(&mut self, second: u64, max_us: u64, encoded: &[u8]) {
        self.line.clear();
        let _ = write!(
            self.line,
            "{:.3},{:.3},{:.3},",
            second as f64,
            1.0,
            max_us as f64 / MAX_VALUE_DIVISOR
        );
        base64::engine::general_purpose::STANDARD.encode_string(encoded, &mut self.line);
        self.line.push('\n');
        self.out.extend_from_slice(self.line.as_bytes());
    }

    /// Adds second `second` from its histogram.
    pub fn push(&mut self, second: u64, h: &Histogram<u64>) {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        match &mut self.encoding {
            Encoding::Compressed(s) => s.serialize(h, &mut encoded).map(drop).map_err(drop),
            Encoding::Stored(s) => s.serialize(h, &mut encoded).map(drop).map_err(drop),
        }
        .expect("serializing into memory cannot fail");
        self.push_encoded(second, h.max(), &encoded);
        self.encoded = encoded;
    }

    /// The bytes written since the last call (the header first): a long log is passed on a
    /// part at a time instead of held whole.
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The finished file (what [`HlogWriter::take_written`] has not taken yet).
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

impl std::fmt::Debug for HlogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogWriter")
            .field("bytes", &self.out.len())
            .finish_non_exhaustive()
    }
}

/// An interval log being written, kept in memory up to a size and in a temporary file beyond it
/// (still in memory if no file can be made): what a run's length makes grow, so that neither a
/// 24-hour worker nor the merge of a long run holds it whole.
pub struct HlogSpool {
    hlog: HlogWriter,
    memory: Vec<u8>,
    file: Option<std::io::BufWriter<tempfile::NamedTempFile>>,
    /// No temporary file could be made (or one failed): the log stays in memory.
    in_memory_only: bool,
    /// Bytes kept in memory before the log goes to a temporary file.
    spill_at: usize,
    /// The temporary file's name starts with this.
    prefix: &'static str,
    written: u64,
}

/// A finished [`HlogSpool`]: the log's bytes, or the temporary file that holds them (removed
/// when dropped).
#[derive(Debug)]
pub enum SpooledLog {
    Memory(Vec<u8>),
    File(tempfile::NamedTempFile),
}

impl SpooledLog {
    /// The whole log in memory: for tests (a long run's log is passed on as a file).
    #[cfg(test)]
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        match self {
            SpooledLog::Memory(bytes) => Ok(bytes.clone()),
            SpooledLog::File(file) => std::fs::read(file.path()),
        }
    }
}

impl HlogSpool {
    /// A spool of the log `hlog` writes (its header first), in memory up to `spill_at` bytes; a
    /// temporary file is named `<prefix>…` in the system's temporary directory (`TMPDIR`).
    pub fn new(mut hlog: HlogWriter, spill_at: usize, prefix: &'static str) -> Self {
        let memory = hlog.take_written();
        HlogSpool {
            hlog,
            written: memory.len() as u64,
            memory,
            file: None,
            in_memory_only: false,
            spill_at,
            prefix,
        }
    }

    /// The same, kept in memory whatever its size.
    pub fn in_memory(hlog: HlogWriter) -> Self {
        let mut spool = Self::new(hlog, usize::MAX, "");
        spool.in_memory_only = true;
        spool
    }

    /// Bytes written so far (the header included): where the next line starts.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Adds second `second` from its histogram; the bytes of its line.
    pub fn push(&mut self, second: u64, h: &Histogram<u64>) -> std::io::Result<usize> {
        self.hlog.push(second, h);
        self.pass_on()
    }

    /// Adds second `second` from its V2-deflate encoding and its maximum (µs); the bytes of its
    /// line.
    pub fn push_encoded(
        &mut self,
        second: u64,
        max_us: u64,
        encoded: &[u8],
    ) -> std::io::Result<usize> {
        self.hlog.push_encoded(second, max_us, encoded);
        self.pass_on()
    }

    fn pass_on(&mut self) -> std::io::Result<usize> {
        use std::io::Write as _;
        let line = self.hlog.take_written();
        self.written += line.len() as u64;
        match &mut self.file {
            Some(file) => file.write_all(&line)?,
            None => {
                self.memory.extend_from_slice(&line);
                if self.memory.len() > self.spill_at && !self.in_memory_only {
                    self.spill();
                }
            }
        }
        Ok(line.len())
    }

    /// Moves what is in memory to a temporary file; stays in memory if none can be made.
    fn spill(&mut self) {
        use std::io::Write as _;
        let file = tempfile::Builder::new()
            .prefix(self.prefix)
            .suffix(".hlog")
            .tempfile()
            .and_then(|file| {
                let mut file = std::io::BufWriter::with_capacity(256 << 10, file);
                file.write_all(&self.memory)?;
                Ok(file)
            });
        match file {
            Ok(file) => {
                self.file = Some(file);
                self.memory = Vec::new();
            }
            Err(e) => {
                tracing::warn!(
                    "the interval log stays in memory: no temporary file ({e}); set TMPDIR to a \
                     writable directory"
                );
                self.in_memory_only = true;
            }
        }
    }

    /// The finished log.
    pub fn finish(self) -> std::io::Result<SpooledLog> {
        Ok(match self.file {
            Some(file) => SpooledLog::File(file.into_inner().map_err(|e| e.into_error())?),
            None => SpooledLog::Memory(self.memory),
        })
    }
}

impl std::fmt::Debug for HlogSpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogSpool")
            .field("written", &self.written)
            .field("in_file", &self.file.is_some())
            .finish_non_exhaustive()
    }
}

/// Writes `(second, histogram)` pairs as one task's log, as the worker writes it.
pub fn write_hlog(base: DateTime<Utc>, seconds: &[(u64, Histogram<u64>)]) -> Vec<u8> {
    let mut w = HlogWriter::for_task(base);
    for (second, h) in seconds {
        w.push(*second, h);
    }
    w.finish()
}

/// One line of an interval log, as [`next_hlog_line`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlogLine<'a> {
    /// A complete line of `len` bytes (its newline included); `interval` is the second it
    /// starts at and its base64 histogram, or `None` for a comment or a header.
    Line {
        len: usize,
        interval: Option<(u64, &'a str)>,
    },
    /// The bytes end before the line does: more of the file is needed (at the end of the file,
    /// this is a malformed last line).
    Incomplete,
    /// The line is not part of an interval log.
    Malformed,
}

/// Reads the line at the start of `bytes`, which must start at a line of an interval log (the
/// file's start, or just after a newline). Each line is read by the hdrhistogram crate's own
/// parser, so a log reads the same whole or a line at a time; the merge reads long logs a window
/// of seconds at a time this way, never whole.
pub fn next_hlog_line(bytes: &[u8]) -> HlogLine<'_> {
    let Some(end) = memchr::memchr(b'\n', bytes) else {
        return HlogLine::Incomplete;
    };
    let line = &bytes[..=end];
    match IntervalLogIterator::new(line).next() {
        // A comment or a legend: nothing to visit.
        None => HlogLine::Line {
            len: line.len(),
            interval: None,
        },
        Some(Ok(LogEntry::Interval(ih))) => HlogLine::Line {
            len: line.len(),
            interval: Some((
                ih.start_timestamp().as_secs_f64().round() as u64,
                ih.encoded_histogram(),
            )),
        },
        Some(Ok(LogEntry::BaseTime(_) | LogEntry::StartTime(_))) => HlogLine::Line {
            len: line.len(),
            interval: None,
        },
        Some(Err(_)) => HlogLine::Malformed,
    }
}

/// The error of a log that is not an interval log from byte `offset` on.
pub fn malformed_hlog(offset: u64) -> anyhow::Error {
    anyhow::anyhow!("histograms.hlog is malformed: ParseError {{ offset: {offset} }}")
}

/// Reads an interval log: calls `visit(second, base64_histogram)` for every interval, in order.
/// A malformed line, or an error from `visit`, ends the reading with that error.
pub fn read_hlog(
    bytes: &[u8],
    mut visit: impl FnMut(u64, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        match next_hlog_line(&bytes[at..]) {
            HlogLine::Line { len, interval } => {
                if let Some((second, text)) = interval {
                    visit(second, text)?;
                }
                at += len;
            }
            // A last line without its newline is malformed, as the crate's reader says.
            HlogLine::Incomplete | HlogLine::Malformed => return Err(malformed_hlog(at as u64)),
        }
    }
    Ok(())
}

/// Reads an interval log into `(second, histogram)` pairs.
pub fn parse_hlog(bytes: &[u8]) -> anyhow::Result<Vec<(u64, Histogram<u64>)>> {
    let mut out = Vec::new();
    read_hlog(bytes, |second, text| {
        let h =
            decode_histogram(text).with_context(|| format!("histograms.hlog, second {second}"))?;
        out.push((second, h));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::new_histogram;

    #[test]
    fn hlog_round_trip() {
        let mut a = new_histogram();
        a.record(1500).unwrap();
        let mut b = new_histogram();
        b.record_n(42, 3).unwrap();
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let log = write_hlog(base, &[(0, a.clone()), (7, b.clone())]);
        let back = parse_hlog(&log).unwrap();
        assert_eq!(back, vec![(0, a), (7, b)]);
    }

    /// The crate's reader over the whole file: what `read_hlog` must agree with.
    fn read_whole(bytes: &[u8]) -> Result<Vec<(u64, String)>, String> {
        let mut out = Vec::new();
        for entry in IntervalLogIterator::new(bytes) {
            match entry.map_err(|e| format!("histograms.hlog is malformed: {e:?}"))? {
                LogEntry::Interval(ih) => out.push((
                    ih.start_timestamp().as_secs_f64().round() as u64,
                    ih.encoded_histogram().to_string(),
                )),
                LogEntry::BaseTime(_) | LogEntry::StartTime(_) => {}
            }
        }
        Ok(out)
    }

    fn read_by_lines(bytes: &[u8]) -> Result<Vec<(u64, String)>, String> {
        let mut out = Vec::new();
        read_hlog(bytes, |second, text| {
            out.push((second, text.to_string()));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// A log read a line at a time reads as the crate reads it whole: the same intervals,
        /// the same error at the same offset, whatever was damaged.
        #[test]
        fn reads_a_line_at_a_time_what_the_crate_reads_whole(
            cut in 0usize..4000,
            edits in proptest::collection::vec((0usize..4000, proptest::prelude::any::<u8>()), 0..4),
            extra in proptest::prelude::prop_oneof![
                proptest::prelude::Just(String::new()),
                proptest::prelude::Just("#[StartTime: 12.5 (seconds since epoch), x]\n".to_string()),
                proptest::prelude::Just("\"StartTimestamp\",\"Interval_Length\"\n".to_string()),
                proptest::prelude::Just("Tag=a,1.000,1.000,2.000,HISTFAAAAB\r\n".to_string()),
                proptest::prelude::Just("\n".to_string()),
                proptest::prelude::Just("3.5,1.0,2.0,abc".to_string()),
            ],
        ) {
            let mut h = new_histogram();
            h.record_n(1500, 3).unwrap();
            h.record(70_000).unwrap();
            let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc);
            let mut log = write_hlog(base, &[(0, h.clone()), (1, h.clone()), (2, h)]);
            log.extend_from_slice(extra.as_bytes());
            for (at, byte) in edits {
                if !log.is_empty() {
                    let i = at % log.len();
                    log[i] = byte;
                }
            }
            log.truncate(log.len().min(cut.max(log.len() / 2)));
            proptest::prop_assert_eq!(read_by_lines(&log), read_whole(&log));
        }
    }

    #[test]
    fn writes_what_the_hdrhistogram_crate_writes() {
        use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
        let mut h = new_histogram();
        h.record_n(2_345, 7).unwrap();
        h.record(98_765).unwrap();
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        fn theirs<S: Serializer>(base: DateTime<Utc>, h: &Histogram<u64>, mut s: S) -> String {
            let mut out = Vec::new();
            {
                let mut w = IntervalLogWriterBuilder::new()
                    .add_comment(COMMENT)
                    .with_base_time(
                        std::time::SystemTime::UNIX_EPOCH
                            + std::time::Duration::from_secs_f64(
                                base.timestamp_millis() as f64 / 1000.0,
                            ),
                    )
                    .with_max_value_divisor(MAX_VALUE_DIVISOR)
                    .begin_log_with(&mut out, &mut s)
                    .unwrap();
                w.write_histogram(
                    h,
                    std::time::Duration::from_secs(3),
                    std::time::Duration::from_secs(1),
                    None,
                )
                .unwrap();
            }
            String::from_utf8(out).unwrap()
        }
        // A task's log: the crate's writer with the stored encoding.
        assert_eq!(
            String::from_utf8(write_hlog(base, &[(3, h.clone())])).unwrap(),
            theirs(base, &h, V2StoredSerializer::default())
        );
        // A merged log: the crate's writer with its own compressed encoding.
        let mut merged = HlogWriter::new(base);
        merged.push(3, &h);
        assert_eq!(
            String::from_utf8(merged.finish()).unwrap(),
            theirs(base, &h, V2DeflateSerializer::new())
        );
    }
}
