//! The per-second histograms of every task (`histograms.hlog`) summed second by second, a window
//! of seconds at a time.
//!
//! Each task's log is read through a [`Cursor`]: its bytes arrive a chunk at a time (a ranged
//! read of the store, or a slice of a report already in memory) and are read into lines. The
//! seconds that every cursor has read are a window; for each second of it, every task's histogram
//! of that second is added straight into one sum, which is encoded and appended to the merged log
//! at once. So the merge holds [`WINDOW_BYTES`] of the tasks' logs and one sum per decoding
//! thread, whatever the run's length, and a second's counters stay in the cache while a thousand
//! tasks are added into them (summing task by task walked 300 seconds of counters that did not).
//!
//! A log that cannot be read (a malformed line, a histogram that does not decode, seconds out of
//! order) is found while its seconds are merged, after earlier seconds were written with it. The
//! merge then names the task and its reason ([`SecondsDone::failures`]), and the caller merges
//! again without it: an unreadable report never counts, in any second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::report::{malformed_hlog, next_hlog_line, HlogLine, HLOG_FILE};

use super::hdr::{Accumulator, Decoder, NarrowSum};
use super::hdr_encode::{Encoder, SecondStats};
use super::merged::{MergedSeconds, SecondsWriter, MAX_SECOND};

/// Bytes of the tasks' interval logs read ahead, all tasks together: what bounds the memory of
/// the per-second merge. A window is then ~25 s of a thousand tasks at 1,000 events/s each.
pub const WINDOW_BYTES: usize = 32 << 20;
/// The smallest read of one task's log, so that a fleet of many tasks is not read in tiny
/// pieces (about a dozen seconds of a task's log).
const MIN_CHUNK: usize = 16 << 10;
/// The largest read of one task's log at a time.
const MAX_CHUNK: usize = 8 << 20;
/// Seconds merged per decoding thread before the threads of a window are joined, at least:
/// below it a window is merged on one thread.
const SECONDS_PER_THREAD: usize = 4;

/// A read the merge needs: `len` bytes of the log of cursor `cursor` from byte `offset`,
/// appended to `buf`, the cursor's own buffer (kept from read to read, so that reading does not
/// allocate), which [`SecondsMerge::feed`] gives back.
#[derive(Debug)]
pub(super) struct Fetch {
    pub(super) cursor: usize,
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) buf: Vec<u8>,
    /// What `buf` held before the read.
    held: usize,
}

/// One task's interval log, read a chunk at a time.
#[derive(Debug, Default)]
struct Cursor {
    /// The log's bytes from file offset `at` on, not merged yet.
    buf: Vec<u8>,
    at: u64,
    /// Bytes of `buf` already read into `lines` (always at a line's start).
    parsed: usize,
    /// The intervals read and not merged yet, in file order.
    lines: VecDeque<Line>,
    /// Nothing more will be read: the end of the log, or a line that ends the reading.
    stopped: bool,
    /// Bytes to hold read ahead.
    chunk: usize,
    /// The ordinal of the next line to read (comments included).
    ordinal: u64,
    last_second: Option<u64>,
    /// The first problem in file order: the line's ordinal, and the reason.
    failure: Option<(u64, String)>,
}

/// An interval of a log: its second and where its base64 histogram is (file offsets).
#[derive(Debug, Clone, Copy)]
struct Line {
    second: u64,
    start: u64,
    end: u64,
    ordinal: u64,
}

impl Cursor {
    fn fail(&mut self, ordinal: u64, reason: String) {
        // Keep the first problem in file order, whichever was found first.
        if !matches!(&self.failure, Some((first, _)) if *first <= ordinal) {
            self.failure = Some((ordinal, reason));
        }
    }

    /// The seconds below this one are all read (none of them is beyond what was fetched);
    /// `None` when every second is.
    fn covered(&self) -> Option<u64> {
        if self.stopped {
            return None;
        }
        Some(self.lines.back().map_or(0, |l| l.second))
    }

    /// Reads the complete lines fetched so far.
    fn read_lines(&mut self, at_end: bool) {
        while !self.stopped {
            let rest = &self.buf[self.parsed..];
            if rest.is_empty() {
                self.stopped = at_end;
                return;
            }
            let offset = self.at + self.parsed as u64;
            let ordinal = self.ordinal;
            match next_hlog_line(rest) {
                HlogLine::Line { len, interval } => {
                    if let Some((second, text)) = interval {
                        if second > MAX_SECOND {
                            self.fail(
                                ordinal,
                                format!(
                                    "{HLOG_FILE} has a histogram for second {second}, beyond any run"
                                ),
                            );
                            self.stopped = true;
                            return;
                        }
                        if let Some(last) = self.last_second.filter(|&last| second < last) {
                            self.fail(
                                ordinal,
                                format!(
                                    "{HLOG_FILE} goes back from second {last} to second {second}: \
                                     its intervals must be in order"
                                ),
                            );
                            self.stopped = true;
                            return;
                        }
                        self.last_second = Some(second);
                        let start =
                            offset + (text.as_ptr() as usize - rest.as_ptr() as usize) as u64;
                        self.lines.push_back(Line {
                            second,
                            start,
                            end: start + text.len() as u64,
                            ordinal,
                        });
                    }
                    self.parsed += len;
                    self.ordinal += 1;
                }
                HlogLine::Incomplete if !at_end => return,
                HlogLine::Incomplete | HlogLine::Malformed => {
                    self.fail(ordinal, format!("{:#}", malformed_hlog(offset)));
                    self.stopped = true;
                    return;
                }
            }
        }
    }

    /// Drops the bytes before the first interval not merged yet.
    fn compact(&mut self) {
        let keep_from = self
            .lines
            .front()
            .map_or(self.parsed, |l| (l.start - self.at) as usize);
        // The start of a line, not of its histogram: back to the byte after a newline.
        let keep_from = self.buf[..keep_from]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.at += keep_from as u64;
            self.parsed -= keep_from;
        }
    }
}

/// The state of one decoding thread, kept from window to window.
#[derive(Default)]
struct Worker {
    decoder: Decoder,
    narrow: NarrowSum,
    sum: Accumulator,
    encoder: Encoder,
}

/// What one second of a window gave: its percentiles and encoding, and the tasks whose
/// histogram of it could not be read.
struct SecondOut {
    second: u64,
    merged: Option<(SecondStats, Vec<u8>)>,
    failures: Vec<(usize, u64, String)>,
}

/// The per-second merge of a run's interval logs.
pub(super) struct SecondsMerge {
    cursors: Vec<Cursor>,
    /// Every second below this one is merged.
    lo: u64,
    writer: SecondsWriter,
    stats: Vec<(u64, SecondStats)>,
    workers: Vec<Worker>,
    /// A task's log could not be read: the seconds merged are no longer written.
    failed: bool,
    /// The merged log could not be written (a full disk): the merge fails with it.
    error: Option<anyhow::Error>,
}

/// The merged seconds, or the tasks whose logs could not be read.
pub(super) struct SecondsDone {
    /// The merged interval log (meaningless when `failures` is not empty).
    pub(super) log: MergedSeconds,
    /// Percentiles of each merged second.
    pub(super) stats: Vec<(u64, SecondStats)>,
    /// Cursor and reason of every log that could not be read.
    pub(super) failures: Vec<(usize, String)>,
}

impl SecondsMerge {
    /// A merge of `tasks` logs into a log whose interval starts count from `base` (the run's
    /// planned start), decoded on up to `threads` threads, reading `window_bytes` of the logs
    /// ahead (all tasks together; at least [`MIN_CHUNK`] a task unless less is asked).
    pub(super) fn new(
        tasks: usize,
        base: chrono::DateTime<chrono::Utc>,
        threads: usize,
        window_bytes: usize,
    ) -> Self {
        let chunk =
            (window_bytes / tasks.max(1)).clamp(MIN_CHUNK.min(window_bytes).max(2), MAX_CHUNK);
        SecondsMerge {
            cursors: (0..tasks)
                .map(|_| Cursor {
                    chunk,
                    ..Cursor::default()
                })
                .collect(),
            lo: 0,
            writer: SecondsWriter::new(base),
            stats: Vec::new(),
            workers: (0..threads.max(1)).map(|_| Worker::default()).collect(),
            failed: false,
            error: None,
        }
    }

    /// The same, with the merged log kept in memory whatever its size: for reports that are in
    /// memory already.
    pub(super) fn in_memory(
        tasks: usize,
        base: chrono::DateTime<chrono::Utc>,
        threads: usize,
    ) -> Self {
        let mut merge = Self::new(tasks, base, threads, WINDOW_BYTES);
        merge.writer = SecondsWriter::in_memory(base);
        merge
    }

    /// The reads needed before the next window can be merged; none when it can.
    pub(super) fn wants(&mut self) -> Vec<Fetch> {
        let lo = self.lo;
        let mut fetches = Vec::new();
        for (i, c) in self.cursors.iter_mut().enumerate() {
            if c.stopped {
                continue;
            }
            let stuck = c.covered().is_some_and(|covered| covered <= lo);
            if c.buf.len() >= c.chunk / 2 && !stuck {
                continue;
            }
            if stuck && c.buf.len() >= c.chunk / 2 {
                // A line, or one second's lines, longer than what is read ahead: read more.
                c.chunk = c.chunk.max(c.buf.len()).saturating_mul(2);
            }
            let len = c.chunk.saturating_sub(c.buf.len()).max(1);
            let mut buf = std::mem::take(&mut c.buf);
            // Exactly: the buffers of a thousand tasks are what the window's memory is.
            buf.reserve_exact(len);
            fetches.push(Fetch {
                cursor: i,
                offset: c.at + buf.len() as u64,
                len,
                held: buf.len(),
                buf,
            });
        }
        fetches
    }

    /// Hands back a [`Fetch`] once its read appended to its buffer (fewer bytes than asked only
    /// at the end of the log): `Ok(false)` when the log is missing, or the reason it could not
    /// be read.
    pub(super) fn feed(&mut self, fetch: Fetch, read: anyhow::Result<bool>) {
        let c = &mut self.cursors[fetch.cursor];
        debug_assert!(
            c.buf.is_empty(),
            "a cursor's buffer is out for one read at a time"
        );
        let got = fetch.buf.len().saturating_sub(fetch.held);
        c.buf = fetch.buf;
        match read {
            Ok(true) => {
                debug_assert_eq!(fetch.offset, c.at + fetch.held as u64);
                c.read_lines(got < fetch.len);
            }
            // A log that cannot be read is unreadable as a whole, whatever its lines hold.
            Ok(false) => {
                c.fail(0, format!("{HLOG_FILE} is missing"));
                c.stopped = true;
            }
            Err(e) => {
                c.fail(0, format!("{e:#}"));
                c.stopped = true;
            }
        }
        if c.failure.is_some() {
            self.failed = true;
        }
    }

    /// Merges the next window (every second below the first one some cursor has not read
    /// whole); `false` when every second is merged. Call it when [`SecondsMerge::wants`] is empty.
    pub(super) fn step(&mut self) -> bool {
        let lo = self.lo;
        let hi = match self.cursors.iter().filter_map(Cursor::covered).min() {
            Some(hi) => hi,
            // Every log is read to its end: the window takes what is left.
            None => match self
                .cursors
                .iter()
                .filter_map(|c| c.lines.back().map(|l| l.second))
                .max()
            {
                Some(last) => last + 1,
                None => return false,
            },
        };
        debug_assert!(hi > lo, "step() called while wants() is not empty");
        let hi = hi.max(lo + 1);

        // The window's intervals, by second, tasks in order within a second.
        let mut refs: Vec<(u64, usize, Line)> = Vec::new();
        for (i, c) in self.cursors.iter_mut().enumerate() {
            while c.lines.front().is_some_and(|l| l.second < hi) {
                let line = c.lines.pop_front().expect("checked");
                refs.push((line.second, i, line));
            }
        }
        refs.sort_by_key(|&(second, _, _)| second);
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        for (k, r) in refs.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if refs[g.start].0 == r.0 => g.end = k + 1,
                _ => groups.push(k..k + 1),
            }
        }

        let outs = self.merge_groups(&refs, &groups);
        for out in outs {
            for (cursor, ordinal, reason) in out.failures {
                self.cursors[cursor].fail(ordinal, reason);
                self.failed = true;
            }
            // Once a task is found unreadable the merge is done again without it: what is
            // merged until then is only read for more failures.
            if self.failed || self.error.is_some() {
                continue;
            }
            if let Some((stats, encoded)) = out.merged {
                match self.writer.push(out.second, stats.max_us, &encoded) {
                    Ok(()) => self.stats.push((out.second, stats)),
                    Err(e) => self.error = Some(e),
                }
            }
        }
        for c in &mut self.cursors {
            c.compact();
        }
        self.lo = hi;
        true
    }

    /// Sums and encodes each group of histograms (one second each), on up to one thread per
    /// worker; the outcomes come back in the groups' order.
    fn merge_groups(
        &mut self,
        refs: &[(u64, usize, Line)],
        groups: &[std::ops::Range<usize>],
    ) -> Vec<SecondOut> {
        let cursors = &self.cursors;
        let next = AtomicUsize::new(0);
        let run = &|worker: &mut Worker| {
            let mut outs = Vec::new();
            loop {
                let g = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = groups.get(g) else {
                    return outs;
                };
                outs.push((g, merge_second(worker, cursors, &refs[range.clone()])));
            }
        };
        let threads = self
            .workers
            .len()
            .min(groups.len().div_ceil(SECONDS_PER_THREAD))
            .max(1);
        let (first, others) = self.workers.split_at_mut(1);
        let mut outs: Vec<(usize, SecondOut)> = if threads == 1 {
            run(&mut first[0])
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = others[..threads - 1]
                    .iter_mut()
                    .map(|w| scope.spawn(move || run(w)))
                    .collect();
                let mut outs = run(&mut first[0]);
                for h in handles {
                    outs.extend(h.join().expect("a decoding thread panicked"));
                }
                outs
            })
        };
        outs.sort_unstable_by_key(|(g, _)| *g);
        outs.into_iter().map(|(_, out)| out).collect()
    }

    /// The merged log and each second's percentiles, or the tasks whose logs could not be read;
    /// an error when the merged log could not be written.
    pub(super) fn finish(self) -> anyhow::Result<SecondsDone> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let failures: Vec<(usize, String)> = self
            .cursors
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| c.failure.map(|(_, reason)| (i, reason)))
            .collect();
        Ok(SecondsDone {
            log: self.writer.finish()?,
            stats: self.stats,
            failures,
        })
    }
}

/// Adds every task's histogram of one second and encodes the sum: in `u32` counters, or, when a
/// sum does not fit them (or a histogram is not of the report's layout), again in `u64` ones.
fn merge_second(worker: &mut Worker, cursors: &[Cursor], refs: &[(u64, usize, Line)]) -> SecondOut {
    let second = refs[0].0;
    // The line's parser checked that each histogram's text is UTF-8.
    let text = |cursor: usize, line: &Line| {
        let c = &cursors[cursor];
        &c.buf[(line.start - c.at) as usize..(line.end - c.at) as usize]
    };
    let failed = |e: anyhow::Error, cursor: usize, line: &Line| {
        let e = e.context(format!("{HLOG_FILE}, second {second}"));
        (cursor, line.ordinal, format!("{e:#}"))
    };
    let mut failures = Vec::new();
    worker.narrow.clear();
    let mut narrow = true;
    for (_, cursor, line) in refs {
        match worker
            .decoder
            .add_narrow(text(*cursor, line), &mut worker.narrow)
        {
            Ok(true) => {}
            Ok(false) => {
                narrow = false;
                break;
            }
            Err(e) => failures.push(failed(e, *cursor, line)),
        }
    }
    if narrow {
        worker.sum.set_to(&worker.narrow);
    } else {
        failures.clear();
        worker.sum.clear();
        for (_, cursor, line) in refs {
            if let Err(e) = worker
                .decoder
                .add_base64_bytes(text(*cursor, line), &mut worker.sum)
            {
                failures.push(failed(e, *cursor, line));
            }
        }
    }
    let mut encoded = Vec::new();
    let merged = match failures.is_empty() {
        true => worker
            .encoder
            .encode(&worker.sum, &mut encoded)
            .map(|stats| (stats, encoded)),
        false => None,
    };
    SecondOut {
        second,
        merged,
        failures,
    }
}

/// Merges logs already in memory (`logs[i]` is cursor `i`'s whole log), reading them a window at
/// a time like the store's.
pub(super) fn merge_in_memory(logs: &[&[u8]], merge: &mut SecondsMerge) {
    loop {
        let wants = merge.wants();
        if wants.is_empty() {
            if !merge.step() {
                return;
            }
            continue;
        }
        for mut fetch in wants {
            let log = logs[fetch.cursor];
            let start = (fetch.offset as usize).min(log.len());
            let end = start.saturating_add(fetch.len).min(log.len());
            fetch.buf.extend_from_slice(&log[start..end]);
            merge.feed(fetch, Ok(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::{new_histogram, parse_hlog, write_hlog};
    use chrono::{DateTime, Utc};
    use hdrhistogram::Histogram;

    fn base() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A task's log: second `s` holds values `v * (s + 1)` for `v` in `values`.
    fn log(seconds: std::ops::Range<u64>, values: &[u64]) -> Vec<u8> {
        let per_second: Vec<(u64, Histogram<u64>)> = seconds
            .map(|s| {
                let mut h = new_histogram();
                for v in values {
                    h.record(v * (s + 1)).unwrap();
                }
                (s, h)
            })
            .collect();
        write_hlog(base(), &per_second)
    }

    fn merge(logs: &[Vec<u8>], threads: usize, window: Option<usize>) -> SecondsDone {
        let mut m = SecondsMerge::in_memory(logs.len(), base(), threads);
        if let Some(chunk) = window {
            for c in &mut m.cursors {
                c.chunk = chunk;
            }
        }
        let slices: Vec<&[u8]> = logs.iter().map(Vec::as_slice).collect();
        merge_in_memory(&slices, &mut m);
        m.finish().unwrap()
    }

    /// The merged log read back, second by second.
    fn read(done: &SecondsDone) -> Vec<(u64, Histogram<u64>)> {
        (0..done.log.len())
            .map(|i| {
                let s = done.log.get(i).unwrap();
                (s.second, s.histogram().unwrap())
            })
            .collect()
    }

    #[test]
    fn windows_of_any_size_give_the_sum_of_every_task_in_every_second() {
        // Tasks of different lengths and starts, one with a gap and a second logged twice.
        let mut gapped = log(0..3, &[100]);
        gapped.extend(
            log(9..12, &[7, 7])
                .split(|&b| b == b'\n')
                .skip(3)
                .flat_map(|l| {
                    let mut l = l.to_vec();
                    if !l.is_empty() {
                        l.push(b'\n');
                    }
                    l
                }),
        );
        let twice = {
            let mut l = log(0..2, &[5]);
            let extra = log(1..2, &[6]);
            let last = extra.split(|&b| b == b'\n').rev().nth(1).unwrap().to_vec();
            l.extend(last);
            l.push(b'\n');
            l
        };
        let logs = vec![
            log(0..12, &[1000, 2000, 3000]),
            log(4..8, &[50_000]),
            gapped,
            twice,
            log(0..0, &[]),
        ];
        // What every second must hold: the crate's sum of every task's histograms of it.
        let mut expected: std::collections::BTreeMap<u64, Histogram<u64>> = Default::default();
        for l in &logs {
            for (s, h) in parse_hlog(l).unwrap() {
                expected
                    .entry(s)
                    .or_insert_with(new_histogram)
                    .add(&h)
                    .unwrap();
            }
        }
        let expected: Vec<(u64, Histogram<u64>)> = expected.into_iter().collect();
        let whole = merge(&logs, 1, None);
        assert!(whole.failures.is_empty(), "{:?}", whole.failures);
        assert_eq!(read(&whole), expected);
        for (threads, chunk) in [(1, 40), (2, 1), (3, 300), (2, 5000)] {
            let done = merge(&logs, threads, Some(chunk));
            assert!(done.failures.is_empty(), "{:?}", done.failures);
            assert_eq!(
                read(&done),
                expected,
                "{threads} threads, chunks of {chunk} bytes"
            );
            assert_eq!(
                done.stats.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                expected.iter().map(|(s, _)| *s).collect::<Vec<_>>()
            );
            // The log itself is byte for byte the same, however it was read.
            let bytes = |d: &SecondsDone| match d.log.log().unwrap() {
                super::super::merged::LogBytes::Memory(b) => b.to_vec(),
                super::super::merged::LogBytes::File(p) => std::fs::read(p).unwrap(),
            };
            assert_eq!(bytes(&done), bytes(&whole));
        }
    }

    #[test]
    fn a_second_past_u32_counters_or_of_another_layout_is_summed_exactly() {
        // Second 0: two tasks whose sum of one bucket passes u32; second 1: a histogram of
        // another layout (2 digits) beside one of the report's; second 2: plain u32 sums.
        let big = |n: u64| {
            let mut h = new_histogram();
            h.record_n(1234, n).unwrap();
            h.record(99_000).unwrap();
            h
        };
        let mut other = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
        other.record_n(5_555, 3).unwrap();
        let mut small = new_histogram();
        small.record_n(70, 2).unwrap();
        let logs = vec![
            write_hlog(
                base(),
                &[(0, big(3_000_000_000)), (1, other), (2, small.clone())],
            ),
            write_hlog(
                base(),
                &[(0, big(2_000_000_000)), (1, small.clone()), (2, small)],
            ),
        ];
        let mut expected: std::collections::BTreeMap<u64, Histogram<u64>> = Default::default();
        for l in &logs {
            for (s, h) in parse_hlog(l).unwrap() {
                let sum = expected.entry(s).or_insert_with(|| {
                    let mut h = new_histogram();
                    h.auto(true);
                    h
                });
                sum.add(&h).unwrap();
            }
        }
        let done = merge(&logs, 2, None);
        assert!(done.failures.is_empty(), "{:?}", done.failures);
        let got = read(&done);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.count_at(1234), 5_000_000_000);
        for ((s, h), (es, e)) in got.iter().zip(&expected) {
            assert_eq!(s, es);
            assert_eq!(h.len(), e.len(), "second {s}");
            for q in [0.0, 0.5, 0.99, 1.0] {
                assert_eq!(h.value_at_quantile(q), e.value_at_quantile(q), "second {s}");
            }
        }
        let stats: Vec<u64> = done.stats.iter().map(|(_, st)| st.count).collect();
        assert_eq!(stats, vec![5_000_000_002, 5, 4]);
    }

    #[test]
    fn names_the_first_problem_of_each_unreadable_log() {
        let good = log(0..6, &[1000]);
        let text = String::from_utf8(good.clone()).unwrap();
        // Second 2's histogram damaged, and a malformed line after it: the histogram comes first.
        let damaged: String = text
            .lines()
            .map(|l| match l.split(',').next() {
                Some("2.000") => format!("2.000,1.000,3.000,AAAAB{}\n", &l[30..]),
                Some("4.000") => "garbage\n".to_string(),
                _ => format!("{l}\n"),
            })
            .collect();
        let backwards: String = text
            .lines()
            .map(|l| match l.split(',').next() {
                Some("3.000") => format!("1{}\n", &l[1..]),
                _ => format!("{l}\n"),
            })
            .collect();
        let beyond = format!("{text}{}.000,1.000,1.000,AAAA\n", MAX_SECOND + 1);
        let mut cut = good.clone();
        cut.truncate(cut.len() - 10);
        let logs = vec![
            good.clone(),
            damaged.into_bytes(),
            backwards.into_bytes(),
            beyond.into_bytes(),
            cut,
        ];
        for chunk in [None, Some(64)] {
            let done = merge(&logs, 2, chunk);
            let reasons: Vec<(usize, &str)> = done
                .failures
                .iter()
                .map(|(i, r)| (*i, r.as_str()))
                .collect();
            assert_eq!(reasons.len(), 4, "{reasons:?}");
            assert_eq!(reasons[0].0, 1);
            assert!(
                reasons[0].1.starts_with("histograms.hlog, second 2: "),
                "{reasons:?}"
            );
            assert_eq!(
                reasons[1],
                (
                    2,
                    "histograms.hlog goes back from second 2 to second 1: its intervals must be \
                     in order"
                )
            );
            assert_eq!(reasons[2].0, 3);
            assert!(reasons[2].1.contains("beyond any run"), "{reasons:?}");
            assert_eq!(reasons[3].0, 4);
            assert!(
                reasons[3].1.starts_with("histograms.hlog is malformed"),
                "{reasons:?}"
            );
        }
        // A log the store could not read, or that vanished, is named with the store's reason.
        let mut m = SecondsMerge::new(2, base(), 1, WINDOW_BYTES);
        let mut wants = m.wants().into_iter();
        m.feed(
            wants.next().unwrap(),
            Err(anyhow::anyhow!("could not read s3://b/k")),
        );
        m.feed(wants.next().unwrap(), Ok(false));
        assert!(!m.step());
        let done = m.finish().unwrap();
        assert_eq!(
            done.failures,
            vec![
                (0, "could not read s3://b/k".to_string()),
                (1, "histograms.hlog is missing".to_string())
            ]
        );
    }
}
