//! Adding HdrHistogram V2 encodings without materialising each one as a full histogram.
//!
//! Why not `report::decode_histogram` + `Histogram::add`: a report histogram covers 1 µs to one
//! hour at 3 significant digits, so decoding one allocates and zeroes ~180 KB and adding it walks
//! ~22,000 counters — about 30 µs, while a per-second histogram of a task holds a few hundred
//! non-zero counters. A 1,000-task, 300-second run has 300,000 of them: 9 s of the merge's
//! budget. Here an encoding is inflated and its run-length counts are added straight into the
//! dense counters of a second's sum ([`Decoder::add_narrow`], [`Decoder::add_base64_bytes`]: the
//! per-second path), or read into `(index, count)` pairs first ([`Decoder::decode_base64`] into a
//! [`Batch`], for the whole-run histograms of a summary, which must be checked whole before
//! anything is added). The result is the same histogram, bucket for bucket (the tests check it
//! against the hdrhistogram crate's own deserializer and `add`).

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;

use crate::model::report::{HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};

/// Cookie of an uncompressed V2 encoding.
pub(super) const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
/// Cookie of a deflate-compressed V2 encoding.
pub(super) const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// Size of the V2 header: cookie, payload length, normalizing offset, digits, low, high, ratio.
pub(super) const V2_HEADER: usize = 40;
/// Refuse a bucket count beyond this (a trillion values): no report holds it, and splitting it
/// into `u32` entries must stay bounded.
const MAX_COUNT: u64 = 1 << 40;
/// Refuse encodings that inflate beyond this: a histogram's payload is a few KB at most, so
/// anything larger is a corrupt or hostile file, not a report.
const MAX_INFLATED: usize = 16 << 20;

/// The bucket layout of a histogram: which value a counter index stands for. It depends only
/// on the lowest discernible value and the significant digits, not on the highest value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    unit_magnitude: u32,
    sub_bucket_half_count_magnitude: u32,
}

impl Layout {
    /// The layout of a histogram with lowest discernible value `low` and `sigfig` digits.
    pub fn new(low: u64, sigfig: u32) -> Option<Layout> {
        if low == 0 || sigfig > 5 {
            return None;
        }
        let largest = 2 * 10u64.pow(sigfig);
        let sub_bucket_count_magnitude = 64 - (largest - 1).leading_zeros();
        let unit_magnitude = 63 - low.leading_zeros();
        if unit_magnitude + sub_bucket_count_magnitude > 63 {
            return None;
        }
        Some(Layout {
            unit_magnitude,
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude - 1,
        })
    }

    /// The layout of every fleetload histogram (`report::new_histogram`).
    pub fn report() -> Layout {
        Layout::new(1, u32::from(HISTOGRAM_SIGFIG)).expect("the report layout is valid")
    }

    /// The largest index [`Layout::value_at`] maps to a value.
    pub fn max_index(&self) -> u64 {
        // value_at needs bucket + unit_magnitude + half_count_magnitude + 1 <= 64.
        let buckets = 64 - self.unit_magnitude - self.sub_bucket_half_count_magnitude - 1;
        let top = ((u64::from(buckets) + 2) << self.sub_bucket_half_count_magnitude) - 1;
        top.min(u64::from(u32::MAX))
    }

    /// The lowest value counted at `index`, or `None` past the representable range.
    pub fn value_at(&self, index: usize) -> Option<u64> {
        let half_count = 1usize << self.sub_bucket_half_count_magnitude;
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i64 - 1;
        let mut sub_bucket = (index & (half_count - 1)) + half_count;
        if bucket < 0 {
            sub_bucket -= half_count;
            bucket = 0;
        }
        let shift = bucket as u32 + self.unit_magnitude;
        // The top of the sub-bucket must stay representable in a u64.
        if shift + self.sub_bucket_half_count_magnitude + 1 > 64 {
            return None;
        }
        Some((sub_bucket as u64) << shift)
    }

    /// The highest value counted at `index` (`Histogram::highest_equivalent` of its lowest).
    pub fn highest_at(&self, index: usize) -> u64 {
        let bucket = ((index >> self.sub_bucket_half_count_magnitude) as u32).saturating_sub(1);
        let low = self.value_at(index).expect("checked when decoded");
        low.saturating_add((1u64 << (bucket + self.unit_magnitude)) - 1)
    }
}

/// Decoded histograms, flat: the non-zero counters of each histogram in index order, in one
/// vector reused from task to task, so that decoding a task's 300 (or 3,600) per-second
/// histograms allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `(index, count)`; a count above `u32::MAX` is split over several entries of the same
    /// index, which halves the memory the hot loops walk.
    entries: Vec<(u32, u32)>,
    histograms: Vec<Decoded>,
}

/// One histogram of a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct Decoded {
    slot: u32,
    layout: Layout,
    start: usize,
    end: usize,
}

impl Batch {
    /// Forgets every histogram (keeps the memory).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.histograms.clear();
    }

    /// A mark to [`Batch::truncate`] back to: what the batch holds now.
    pub fn mark(&self) -> (usize, usize) {
        (self.entries.len(), self.histograms.len())
    }

    /// Forgets every histogram decoded since `mark`.
    pub fn truncate(&mut self, mark: (usize, usize)) {
        self.entries.truncate(mark.0);
        self.histograms.truncate(mark.1);
    }

    /// The histograms decoded since the last [`Batch::clear`]: the slot each was decoded for,
    /// its layout and its `(index, count)` counters.
    pub fn histograms(&self) -> impl Iterator<Item = (u32, Layout, &[(u32, u32)])> + '_ {
        self.histograms
            .iter()
            .map(|h| (h.slot, h.layout, &self.entries[h.start..h.end]))
    }
}

/// Reusable inflate state and buffers: one per decoding thread.
///
/// A histogram is a few KB, so it is inflated in one call into a buffer that is already large
/// enough (libdeflate, faster on whole buffers than a streaming inflater), and its base64 is
/// decoded with SIMD.
pub struct Decoder {
    inflater: Inflater,
    raw: Vec<u8>,
    /// Counters of a histogram of another layout on their way into an accumulator.
    foreign: Vec<(u32, u32)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflater: Inflater {
                inflate: libdeflater::Decompressor::new(),
                inflated: vec![0; 16 * 1024],
            },
            raw: Vec::with_capacity(4096),
            foreign: Vec::new(),
        }
    }
}

impl Decoder {
    /// Decodes base64 of a V2 (deflate or plain) encoding, as `report::encode_histogram`
    /// writes, into `batch` under `slot`. On error the batch holds no part of this histogram.
    pub fn decode_base64(
        &mut self,
        text: &str,
        slot: u32,
        batch: &mut Batch,
    ) -> anyhow::Result<()> {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let result = base64_simd::STANDARD
            .decode_append(text.trim().as_bytes(), &mut raw)
            .map_err(|_| anyhow::anyhow!("histogram is not base64"))
            .and_then(|()| self.decode(&raw, slot, batch));
        self.raw = raw;
        result
    }

    /// Decodes a V2 (deflate or plain) encoding into `batch` under `slot`.
    pub fn decode(&mut self, bytes: &[u8], slot: u32, batch: &mut Batch) -> anyhow::Result<()> {
        ensure!(bytes.len() >= 8, "histogram encoding is truncated");
        let start = batch.entries.len();
        let result = match be_u32(bytes, 0) {
            V2_COOKIE => parse_v2(bytes, &mut batch.entries),
            V2_COMPRESSED_COOKIE => {
                let len = be_u32(bytes, 4) as usize;
                let compressed = bytes
                    .get(8..8 + len)
                    .context("compressed histogram is truncated");
                compressed.and_then(|c| {
                    let n = self.inflater.inflate(c)?;
                    parse_v2(&self.inflater.inflated[..n], &mut batch.entries)
                })
            }
            other => Err(anyhow::anyhow!(
                "histogram has cookie {other:#010x}, not an HdrHistogram V2 encoding"
            )),
        };
        match result {
            Ok(layout) => {
                batch.histograms.push(Decoded {
                    slot,
                    layout,
                    start,
                    end: batch.entries.len(),
                });
                Ok(())
            }
            Err(e) => {
                batch.entries.truncate(start);
                Err(e)
            }
        }
    }

    /// [`Decoder::add_base64_bytes`] of a string.
    #[cfg(test)]
    pub fn add_base64(&mut self, text: &str, acc: &mut Accumulator) -> anyhow::Result<()> {
        self.add_base64_bytes(text.as_bytes(), acc)
    }

    /// Decodes base64 of a V2 (deflate or plain) encoding, given as the bytes of an interval
    /// log's line (UTF-8 already checked), and adds its counts straight into `acc`, with no list
    /// of counters in between: the per-second path, where a histogram is added once and kept
    /// nowhere else, so its counters are read and added while they are in the cache. On error
    /// part of the histogram may already be in `acc`: the caller discards the sum (the merge of
    /// the seconds starts again without the task, see `seconds`).
    pub fn add_base64_bytes(&mut self, text: &[u8], acc: &mut Accumulator) -> anyhow::Result<()> {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let mut decoded = base64_simd::STANDARD.decode_append(text.trim_ascii(), &mut raw);
        if decoded.is_err() && !text.is_ascii() {
            // Whitespace beyond ASCII around the text, trimmed as `str::trim` would.
            if let Ok(text) = std::str::from_utf8(text) {
                raw.clear();
                decoded = base64_simd::STANDARD.decode_append(text.trim().as_bytes(), &mut raw);
            }
        }
        let result = decoded
            .map_err(|_| anyhow::anyhow!("histogram is not base64"))
            .and_then(|()| self.add_encoded(&raw, acc));
        self.raw = raw;
        result
    }

    /// Adds a V2 (deflate or plain) encoding to `acc` (see [`Decoder::add_base64_bytes`]).
    pub fn add_encoded(&mut self, bytes: &[u8], acc: &mut Accumulator) -> anyhow::Result<()> {
        let plain = self.inflater.plain(bytes)?;
        acc.add_v2(plain, &mut self.foreign)
    }

    /// Like [`Decoder::add_base64_bytes`] into a second's `u32` sum; `Ok(false)` when a sum does not
    /// fit or the histogram has another layout: the caller then sums the second again into an
    /// [`Accumulator`], which also finds any error this stopped before.
    pub fn add_narrow(&mut self, text: &[u8], sum: &mut NarrowSum) -> anyhow::Result<bool> {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let result = match base64_simd::STANDARD.decode_append(text.trim_ascii(), &mut raw) {
            Ok(()) => self
                .inflater
                .plain(&raw)
                .and_then(|plain| sum.add_v2(plain)),
            // Not plain base64: the general path says why, or trims what this did not.
            Err(_) => Ok(false),
        };
        self.raw = raw;
        result
    }
}

/// Inflate state and its output buffer, reused from histogram to histogram.
struct Inflater {
    inflate: libdeflater::Decompressor,
    inflated: Vec<u8>,
}

impl Inflater {
    /// The plain V2 encoding of a V2 (deflate or plain) encoding: `bytes` itself, or inflated.
    fn plain<'a>(&'a mut self, bytes: &'a [u8]) -> anyhow::Result<&'a [u8]> {
        ensure!(bytes.len() >= 8, "histogram encoding is truncated");
        match be_u32(bytes, 0) {
            V2_COOKIE => Ok(bytes),
            V2_COMPRESSED_COOKIE => {
                let len = be_u32(bytes, 4) as usize;
                let compressed = bytes
                    .get(8..8 + len)
                    .context("compressed histogram is truncated")?;
                let n = self.inflate(compressed)?;
                Ok(&self.inflated[..n])
            }
            other => Err(anyhow::anyhow!(
                "histogram has cookie {other:#010x}, not an HdrHistogram V2 encoding"
            )),
        }
    }

    /// Inflates a zlib stream into `self.inflated` and returns its length. The buffer is
    /// initialised once and reused; only when the stream does not fit is it doubled and the
    /// stream inflated again.
    fn inflate(&mut self, input: &[u8]) -> anyhow::Result<usize> {
        use libdeflater::DecompressionError;
        loop {
            match self.inflate.zlib_decompress(input, &mut self.inflated) {
                Ok(n) => return Ok(n),
                Err(DecompressionError::BadData) => {
                    bail!("compressed histogram does not inflate (corrupt or truncated)")
                }
                Err(DecompressionError::InsufficientSpace) => {
                    ensure!(
                        self.inflated.len() < MAX_INFLATED,
                        "histogram inflates beyond {MAX_INFLATED} bytes"
                    );
                    let grown = self.inflated.len() * 2;
                    self.inflated.resize(grown, 0);
                }
            }
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The layout and the payload (LEB128 zig-zag counts) of an uncompressed V2 encoding.
fn v2_header(b: &[u8]) -> anyhow::Result<(Layout, &[u8])> {
    ensure!(
        b.len() >= V2_HEADER && be_u32(b, 0) == V2_COOKIE,
        "histogram payload is not a V2 encoding"
    );
    let payload_len = be_u32(b, 4) as usize;
    let normalizing_offset = be_u32(b, 8);
    let sigfig = be_u32(b, 12);
    let low = be_u64(b, 16);
    let high = be_u64(b, 24);
    let ratio = f64::from_bits(be_u64(b, 32));
    ensure!(
        normalizing_offset == 0 && ratio == 1.0,
        "histogram uses normalizing offsets or double values, which fleetload does not write"
    );
    let layout = Layout::new(low, sigfig)
        .with_context(|| format!("histogram has invalid bounds: low {low}, {sigfig} digits"))?;
    ensure!(
        high >= 2 * low,
        "histogram has invalid bounds: high {high} < 2 × low {low}"
    );
    let payload = b
        .get(V2_HEADER..V2_HEADER + payload_len)
        .context("histogram payload is truncated")?;
    Ok((layout, payload))
}

/// Parses an uncompressed V2 encoding (header, then LEB128 zig-zag counts where a negative
/// number is a run of that many empty counters) and appends its non-zero counters to `entries`.
fn parse_v2(b: &[u8], entries: &mut Vec<(u32, u32)>) -> anyhow::Result<Layout> {
    let (layout, payload) = v2_header(b)?;
    // Every non-zero counter takes at least one byte of payload, so `payload.len()` slots are
    // enough. The loop writes a slot for every number and keeps it only for a non-zero count:
    // runs of zeros and counts alternate unpredictably, and a branch on them would be
    // mispredicted about half the time.
    let base = entries.len();
    entries.resize(base + payload.len(), (0, 0));
    let out = &mut entries[base..];
    let mut kept = 0;
    let mut index: u64 = 0;
    let mut big = Vec::new();
    let mut rest = payload;
    while let Some((&byte, tail)) = rest.split_first() {
        // Most numbers are small: a one-byte varint, read without the general loop.
        let zz = if byte < 0x80 {
            rest = tail;
            u64::from(byte)
        } else {
            let (value, used) = read_varint(rest).context("histogram payload is truncated")?;
            rest = &rest[used..];
            value
        };
        // Zig-zag: an even number 2c is a count c, an odd one 2r-1 a run of r empty counters.
        let is_run = zz & 1;
        let half = zz >> 1;
        let count = half * (is_run ^ 1);
        if count > u64::from(u32::MAX) {
            ensure!(
                count <= MAX_COUNT,
                "histogram counts {count} values in one bucket, which no report holds"
            );
            big.push((index, count));
        }
        out[kept] = (index as u32, count as u32);
        kept += usize::from(count != 0 && count <= u64::from(u32::MAX));
        index = index.saturating_add(if is_run == 1 { half + 1 } else { 1 });
    }
    entries.truncate(base + kept);
    // Counts beyond u32 (never seen in practice) become several entries of one index, put
    // back in index order, which the accumulator relies on.
    if !big.is_empty() {
        for (i, mut left) in big {
            while left > 0 {
                let part = left.min(u64::from(u32::MAX));
                entries.push((i as u32, part as u32));
                left -= part;
            }
        }
        entries[base..].sort_unstable_by_key(|&(i, _)| i);
    }
    // The index only grows, so where it ends bounds every entry.
    ensure!(
        index <= layout.max_index() + 1,
        "histogram has more counters than its value range allows"
    );
    Ok(layout)
}

/// LEB128 as HdrHistogram writes it: at most 9 bytes, the 9th contributing all 8 bits.
/// Returns the value and the bytes it took.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().take(9).enumerate() {
        if i == 8 {
            return Some((value | (u64::from(byte) << 56), 9));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Sums histograms of the report layout in a dense range of `u64` counters, growing the range
/// as needed; histograms of another layout are added to an ordinary histogram on the side.
///
/// The merge keeps a handful of them at a time (the run's two whole-run sums, and one second
/// being summed per decoding thread), so their size does not grow with the run.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    /// The index of `counts[0]`.
    pub(super) base: usize,
    pub(super) counts: Vec<u64>,
    pub(super) other: Option<Histogram<u64>>,
}

/// Grows `v`, whose first counter has index `base`, to cover `first..=last`.
fn cover(v: &mut Vec<u64>, base: &mut usize, first: usize, last: usize) {
    if v.is_empty() {
        *base = first;
        v.resize(last - first + 1, 0);
        return;
    }
    if first < *base {
        let mut grown = vec![0; *base - first];
        grown.extend_from_slice(v);
        *v = grown;
        *base = first;
    }
    if last >= *base + v.len() {
        v.resize(last - *base + 1, 0);
    }
}

impl Accumulator {
    /// Empties the sum and keeps its memory, for the next second.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        if let Some(o) = &mut self.other {
            o.reset();
        }
    }

    /// Adds the counters of one decoded histogram (in index order, as [`Batch`] holds them).
    pub fn add(&mut self, layout: Layout, entries: &[(u32, u32)]) {
        let (Some(&(first, _)), Some(&(last, _))) = (entries.first(), entries.last()) else {
            return;
        };
        if layout != Layout::report() {
            self.add_foreign(layout, entries);
            return;
        }
        let (first, last) = (first as usize, last as usize);
        cover(&mut self.counts, &mut self.base, first, last);
        let counts = &mut self.counts[first - self.base..];
        for &(i, c) in entries {
            let slot = &mut counts[i as usize - first];
            *slot = slot.saturating_add(u64::from(c));
        }
    }

    /// Histograms not written by fleetload (another layout): added value by value, still
    /// exactly.
    fn add_foreign(&mut self, layout: Layout, entries: &[(u32, u32)]) {
        let other = self.other.get_or_insert_with(|| {
            let mut o = crate::model::report::new_histogram();
            o.auto(true);
            o
        });
        for &(i, c) in entries {
            let v = layout.value_at(i as usize).expect("checked when decoded");
            other.saturating_record_n(v, u64::from(c));
        }
    }

    /// Adds an uncompressed V2 encoding. Counts of the report layout are read and added in one
    /// pass over the payload; another layout goes through `foreign` (its counters, then
    /// [`Accumulator::add`]).
    fn add_v2(&mut self, b: &[u8], foreign: &mut Vec<(u32, u32)>) -> anyhow::Result<()> {
        let (layout, payload) = v2_header(b)?;
        if layout != Layout::report() {
            foreign.clear();
            parse_v2(b, foreign)?;
            self.add(layout, foreign);
            return Ok(());
        }
        if self.base != 0 && !self.counts.is_empty() {
            let last = self.base + self.counts.len() - 1;
            cover(&mut self.counts, &mut self.base, 0, last);
        }
        self.base = 0;
        if self.counts.len() < *REPORT_COUNTERS {
            // Every counter up to the report's highest value (one hour), once: the few values
            // beyond it (never written by the worker, which saturates) grow the range below.
            self.counts.resize(*REPORT_COUNTERS, 0);
        }
        add_payload(&mut self.counts, layout, payload)?;
        Ok(())
    }

    /// Sets the sum to `narrow`'s counts (of the report layout).
    pub fn set_to(&mut self, narrow: &NarrowSum) {
        self.base = 0;
        self.counts.clear();
        self.counts
            .extend(narrow.counts.iter().map(|&c| u64::from(c)));
        self.other = None;
    }

    /// The sum as a histogram of the report layout. With `full_range` it covers 1 µs to one hour
    /// like every report histogram; without, only up to the largest value recorded.
    pub fn to_histogram(&self, full_range: bool) -> Histogram<u64> {
        let layout = Layout::report();
        let counts = &self.counts;
        let top_index = counts.iter().rposition(|&c| c > 0);
        // Recording a value needs `high` at or above it; the counters then cover its bucket.
        let mut high = top_index
            .and_then(|i| layout.value_at(self.base + i))
            .unwrap_or(2)
            .max(2);
        if let Some(o) = &self.other {
            if !o.is_empty() {
                high = high.max(o.max());
            }
        }
        if full_range {
            high = high.max(HISTOGRAM_MAX_US);
        }
        let mut h =
            Histogram::new_with_bounds(1, high, HISTOGRAM_SIGFIG).expect("valid histogram bounds");
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 {
                let v = layout
                    .value_at(self.base + i)
                    .expect("checked when decoded");
                h.saturating_record_n(v, c);
            }
        }
        if let Some(o) = &self.other {
            h.auto(true);
            h.add(o).expect("auto-resizing histograms always add");
            h.auto(false);
        }
        h
    }
}

/// A counter the merge adds counts into: `u64` (never too narrow: saturates at 2^64, which no
/// report reaches), or `u32` for a second's sum, which wraps: the caller knows from the total
/// of the counts added whether any counter can have wrapped.
trait Slot: Copy + Default {
    /// Adds `count`.
    fn add_count(&mut self, count: u64);
}

impl Slot for u64 {
    fn add_count(&mut self, count: u64) {
        *self = self.saturating_add(count);
    }
}

impl Slot for u32 {
    fn add_count(&mut self, count: u64) {
        *self = self.wrapping_add(count as u32);
    }
}

/// Adds the counts of a V2 payload of the report layout into `counts` (from index 0), growing
/// them past a value beyond one hour. Returns the total of the counts added (no counter can have
/// wrapped while the totals of a sum stay below its counters' maximum).
fn add_payload<T: Slot>(
    counts: &mut Vec<T>,
    layout: Layout,
    payload: &[u8],
) -> anyhow::Result<u64> {
    let max_index = layout.max_index() as usize;
    // The counts are added over a slice, whose length stays in a register; a counter past its
    // end stops the loop, which grows the counters and goes on.
    let (mut at, mut index, mut total) = (0, 0, 0u64);
    let index = loop {
        match add_counts(counts, payload, at, index)? {
            Added::All { index, total: t } => {
                total = total.saturating_add(t);
                break index;
            }
            Added::Until {
                at: stop,
                index: i,
                total: t,
            } => {
                total = total.saturating_add(t);
                ensure!(
                    i <= max_index,
                    "histogram has more counters than its value range allows"
                );
                let grown = (i + 1).max(counts.len() * 2).min(max_index + 1);
                counts.resize(grown, T::default());
                (at, index) = (stop, i);
            }
        }
    };
    // The index only grows, so where it ends bounds every counter.
    ensure!(
        index as u64 <= layout.max_index() + 1,
        "histogram has more counters than its value range allows"
    );
    Ok(total)
}

/// How far [`add_counts`] went, and the total of the counts it added.
enum Added {
    /// Every count of the payload; `index` is where the counters ended.
    All { index: usize, total: u64 },
    /// Up to the number at byte `at`, a count for counter `index`, past the counters' end.
    Until { at: usize, index: usize, total: u64 },
}

/// Adds the LEB128 zig-zag counts of a V2 payload, from byte `at` (counter `index`), into
/// `counts`.
fn add_counts<T: Slot>(
    counts: &mut [T],
    payload: &[u8],
    mut at: usize,
    mut index: usize,
) -> anyhow::Result<Added> {
    // Below 2^40 a count, at most one per payload byte: the total cannot overflow.
    let mut total = 0u64;
    loop {
        // Eight numbers at a time while all eight are one byte each (counts below 64, runs
        // below 65): no varint loop, no check of the payload's end between them. An index
        // below the counters' end at the start of the eight stays far from overflowing.
        while let Some(eight) = payload.get(at..at + 8) {
            let word = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
            if word & 0x8080_8080_8080_8080 != 0 || index >= counts.len() {
                break;
            }
            for k in 0..8 {
                let zz = (word >> (8 * k)) & 0x7f;
                let is_run = zz & 1;
                let half = zz >> 1;
                let count = half & is_run.wrapping_sub(1);
                match counts.get_mut(index) {
                    Some(counter) => {
                        counter.add_count(count);
                        total += count;
                    }
                    None if count != 0 => {
                        return Ok(Added::Until {
                            at: at + k,
                            index,
                            total,
                        })
                    }
                    None => {}
                }
                index += 1 + (half & 0u64.wrapping_sub(is_run)) as usize;
            }
            at += 8;
        }
        let Some(&byte) = payload.get(at) else {
            break;
        };
        // Most numbers are small: a one-byte varint (a count below 64), read without the
        // general loop.
        let (zz, used) = if byte < 0x80 {
            (u64::from(byte), 1)
        } else {
            let (zz, used) =
                read_varint(&payload[at..]).context("histogram payload is truncated")?;
            ensure!(
                zz & 1 == 1 || zz >> 1 <= MAX_COUNT,
                "histogram counts {} values in one bucket, which no report holds",
                zz >> 1
            );
            (zz, used)
        };
        // Zig-zag: an even number 2c is a count c, an odd one 2r-1 a run of r empty counters.
        // A run adds 0 where it starts, so counts and runs take one path: they alternate
        // unpredictably, and a branch on them would be mispredicted about half the time.
        let is_run = zz & 1;
        let half = zz >> 1;
        let count = half & is_run.wrapping_sub(1);
        match counts.get_mut(index) {
            Some(counter) => {
                counter.add_count(count);
                total += count;
            }
            None if count != 0 => return Ok(Added::Until { at, index, total }),
            None => {}
        }
        at += used;
        index = index.saturating_add(1 + (half & 0u64.wrapping_sub(is_run)) as usize);
    }
    Ok(Added::All { index, total })
}

/// One second's sum in `u32` counters, which take half the cache of `u64` ones: adding a
/// thousand tasks' histograms into one second is what the merge spends its time on. A sum that
/// does not fit, or a histogram of another layout, is said ([`Decoder::add_narrow`] returns
/// `false`), and the second is then summed again into an [`Accumulator`]: exact either way.
#[derive(Debug, Default)]
pub struct NarrowSum {
    counts: Vec<u32>,
    /// The total of every count added: while it fits a `u32`, so does every counter, and none
    /// can have wrapped (checking the total once per histogram, not each counter as it is added,
    /// is a fifth of the adding loop).
    total: u64,
}

impl NarrowSum {
    /// Empties the sum and keeps its memory, for the next second.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }

    /// Adds an uncompressed V2 encoding; `false` when it does not fit.
    fn add_v2(&mut self, b: &[u8]) -> anyhow::Result<bool> {
        let (layout, payload) = v2_header(b)?;
        if layout != Layout::report() {
            return Ok(false);
        }
        if self.counts.len() < *REPORT_COUNTERS {
            self.counts.resize(*REPORT_COUNTERS, 0);
        }
        let added = add_payload(&mut self.counts, layout, payload)?;
        self.total = self.total.saturating_add(added);
        Ok(self.total <= u64::from(u32::MAX))
    }
}

/// Counters of a report histogram up to its highest value, one hour (index of the highest
/// value's bucket, plus one).
static REPORT_COUNTERS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    let layout = Layout::report();
    let mut i = 0usize;
    while layout
        .value_at(i)
        .is_some_and(|lowest| lowest <= HISTOGRAM_MAX_US)
    {
        i += 1;
    }
    i
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::merge::hdr_encode::{push_varint, Encoder};
    use crate::model::report::{decode_histogram, encode_histogram, new_histogram};
    use base64::Engine;
    use hdrhistogram::serialization::{
        Deserializer, Serializer, V2DeflateSerializer, V2Serializer,
    };
    use proptest::prelude::*;

    /// Adds every histogram of a batch into one accumulator.
    fn add_all(acc: &mut Accumulator, batch: &Batch) {
        for (_, layout, entries) in batch.histograms() {
            acc.add(layout, entries);
        }
    }

    fn recorded(batch: &Batch) -> u64 {
        batch.entries.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    #[test]
    fn single_values_land_in_their_bucket() {
        let mut d = Decoder::default();
        for v in [
            1u64,
            2,
            1023,
            2047,
            2048,
            2049,
            4095,
            4096,
            1_000_000,
            HISTOGRAM_MAX_US,
        ] {
            let mut one = new_histogram();
            one.record(v).unwrap();
            let mut batch = Batch::default();
            d.decode_base64(&encode_histogram(&one), 7, &mut batch)
                .unwrap();
            let mut acc = Accumulator::default();
            add_all(&mut acc, &batch);
            let back = acc.to_histogram(true);
            assert_eq!(back, one, "value {v}");
            assert_eq!(back.min(), one.lowest_equivalent(v));
            assert_eq!(batch.histograms().next().unwrap().0, 7);
        }
        let layout = Layout::report();
        assert!(layout.value_at(layout.max_index() as usize).is_some());
        assert!(layout.value_at(layout.max_index() as usize + 1).is_none());
    }

    #[test]
    fn rejects_garbage_and_keeps_nothing_of_it() {
        let mut d = Decoder::default();
        let mut batch = Batch::default();
        assert!(d.decode_base64("not base64!", 0, &mut batch).is_err());
        assert!(d.decode_base64("AAAA", 0, &mut batch).is_err());
        let mut h = new_histogram();
        for v in 1..500 {
            h.record(v * 7).unwrap();
        }
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encode_histogram(&h))
            .unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(d.decode(&bytes, 0, &mut batch).is_err());
        // A plain V2 encoding cut short.
        let mut plain = Vec::new();
        V2Serializer::new().serialize(&h, &mut plain).unwrap();
        plain.truncate(plain.len() - 1);
        let longer = u32::from_be_bytes(plain[4..8].try_into().unwrap()) + 5;
        plain[4..8].copy_from_slice(&longer.to_be_bytes());
        assert!(d.decode(&plain, 0, &mut batch).is_err());
        assert_eq!(batch.histograms().count(), 0);
        assert!(batch.entries.is_empty());
        // The decoder still works after errors.
        d.decode_base64(&encode_histogram(&h), 0, &mut batch)
            .unwrap();
        assert_eq!(recorded(&batch), 499);
    }

    #[test]
    fn large_encodings_inflate_across_buffer_growth() {
        let mut h = new_histogram();
        for v in (1..40_000u64).chain((1..2_000).map(|k| k * 1_000_000)) {
            h.record_n(v, v % 5 + 1).unwrap();
        }
        let mut d = Decoder::default();
        let mut batch = Batch::default();
        d.decode_base64(&encode_histogram(&h), 0, &mut batch)
            .unwrap();
        let mut acc = Accumulator::default();
        add_all(&mut acc, &batch);
        assert_eq!(acc.to_histogram(true), h);
        // And the decoder is reusable for a small one afterwards.
        let mut small = new_histogram();
        small.record(7).unwrap();
        batch.clear();
        d.decode_base64(&encode_histogram(&small), 0, &mut batch)
            .unwrap();
        assert_eq!(recorded(&batch), 1);
    }

    #[test]
    fn counts_beyond_u32_are_exact() {
        let mut h = new_histogram();
        h.record_n(1234, 3 * u64::from(u32::MAX) + 17).unwrap();
        h.record_n(99_000, 5).unwrap();
        let mut batch = Batch::default();
        Decoder::default()
            .decode_base64(&encode_histogram(&h), 0, &mut batch)
            .unwrap();
        let mut acc = Accumulator::default();
        add_all(&mut acc, &batch);
        assert_eq!(acc.to_histogram(true), h);
    }

    #[test]
    fn sums_beyond_u32_are_exact_on_both_paths() {
        // Each histogram fits u32 counters; their sum in one bucket does not.
        let mut a = new_histogram();
        a.record_n(1234, 3_000_000_000).unwrap();
        a.record_n(5, 7).unwrap();
        let mut b = new_histogram();
        b.record_n(1234, 3_000_000_000).unwrap();
        b.record_n(99_000, 11).unwrap();
        let mut sum = a.clone();
        sum.add(&b).unwrap();
        let mut d = Decoder::default();
        // Through the counters of a batch.
        let mut batch = Batch::default();
        d.decode_base64(&encode_histogram(&a), 0, &mut batch)
            .unwrap();
        d.decode_base64(&encode_histogram(&b), 0, &mut batch)
            .unwrap();
        let mut listed = Accumulator::default();
        add_all(&mut listed, &batch);
        // Straight into the counters.
        let mut direct = Accumulator::default();
        d.add_base64(&encode_histogram(&a), &mut direct).unwrap();
        d.add_base64(&encode_histogram(&b), &mut direct).unwrap();
        let mut theirs = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&sum, &mut theirs)
            .unwrap();
        for acc in [listed, direct] {
            assert_eq!(acc.to_histogram(true), sum);
            assert_eq!(acc.to_histogram(true).count_at(1234), 6_000_000_000);
            let mut ours = Vec::new();
            Encoder::default().encode(&acc, &mut ours).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn adding_straight_into_the_counters_refuses_what_the_batch_refuses() {
        let mut d = Decoder::default();
        let mut acc = Accumulator::default();
        assert!(d.add_base64("not base64!", &mut acc).is_err());
        assert!(d.add_base64("AAAA", &mut acc).is_err());
        let mut h = new_histogram();
        for v in 1..500 {
            h.record(v * 7).unwrap();
        }
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encode_histogram(&h))
            .unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(d.add_encoded(&bytes, &mut acc).is_err());
        let mut plain = Vec::new();
        V2Serializer::new().serialize(&h, &mut plain).unwrap();
        plain.truncate(plain.len() - 1);
        let longer = u32::from_be_bytes(plain[4..8].try_into().unwrap()) + 5;
        plain[4..8].copy_from_slice(&longer.to_be_bytes());
        assert!(d.add_encoded(&plain, &mut acc).is_err());
        // A count no report holds, and a run past the layout's last counter.
        let header = |payload: &[u8]| {
            let mut b = Vec::new();
            V2Serializer::new()
                .serialize(&new_histogram(), &mut b)
                .unwrap();
            b.truncate(V2_HEADER);
            b[4..8].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            b.extend_from_slice(payload);
            b
        };
        let mut huge = Vec::new();
        push_varint(&mut huge, (MAX_COUNT + 1) << 1);
        let error = d.add_encoded(&header(&huge), &mut acc).unwrap_err();
        assert!(error.to_string().contains("no report holds"), "{error}");
        let mut beyond = Vec::new();
        push_varint(&mut beyond, ((Layout::report().max_index() + 1) << 1) - 1);
        push_varint(&mut beyond, 2);
        let error = d.add_encoded(&header(&beyond), &mut acc).unwrap_err();
        assert!(error.to_string().contains("value range"), "{error}");
        // After the errors, a cleared sum adds a good histogram exactly.
        acc.clear();
        d.add_base64(&encode_histogram(&h), &mut acc).unwrap();
        assert_eq!(acc.to_histogram(true), h);
    }

    #[test]
    fn encodes_what_the_crate_serializer_writes() {
        let mut h = new_histogram();
        for v in [
            1u64, 2, 3, 900, 1500, 1501, 2047, 2048, 4097, 123_456, 2_999_999,
        ] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        h.record_n(77, 1 << 36).unwrap();
        let mut batch = Batch::default();
        Decoder::default()
            .decode_base64(&encode_histogram(&h), 0, &mut batch)
            .unwrap();
        let mut acc = Accumulator::default();
        add_all(&mut acc, &batch);
        let mut ours = Vec::new();
        let stats = Encoder::default().encode(&acc, &mut ours).unwrap();
        let mut theirs = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&h, &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(stats.max_us, h.max());
        assert_eq!(stats.p50_us, h.value_at_quantile(0.5));
        assert!(Encoder::default()
            .encode(&Accumulator::default(), &mut ours)
            .is_none());
    }

    fn plain_v2(h: &Histogram<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        V2Serializer::new().serialize(h, &mut out).unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sum_equals_the_crate_sum(
            groups in prop::collection::vec(
                prop::collection::vec((1u64..=HISTOGRAM_MAX_US, 1u64..1000), 0..60), 1..8),
            low_pow in 0u32..4,
            sigfig in 1u8..=5,
        ) {
            let mut expected = new_histogram();
            let mut decoder = Decoder::default();
            let mut batch = Batch::default();
            for (n, group) in groups.iter().enumerate() {
                // Every other group comes from a histogram of another layout.
                let mut h = if n % 2 == 0 {
                    new_histogram()
                } else {
                    Histogram::new_with_bounds(1 << low_pow, HISTOGRAM_MAX_US, sigfig).unwrap()
                };
                for &(v, c) in group {
                    h.record_n(v.max(1 << low_pow), c).unwrap();
                }
                expected.add(decode_histogram(&encode_histogram(&h)).unwrap()).unwrap();
                let before = recorded(&batch);
                if n % 3 == 0 {
                    decoder.decode(&plain_v2(&h), n as u32, &mut batch).unwrap();
                } else {
                    decoder.decode_base64(&encode_histogram(&h), n as u32, &mut batch).unwrap();
                }
                prop_assert_eq!(recorded(&batch) - before, h.len());
            }
            let mut acc = Accumulator::default();
            add_all(&mut acc, &batch);
            // The same histograms added straight into the counters of a used, cleared sum.
            let mut direct = Accumulator::default();
            decoder.add_base64(&encode_histogram(&expected), &mut direct).unwrap();
            direct.clear();
            for (n, group) in groups.iter().enumerate() {
                let mut h = if n % 2 == 0 {
                    new_histogram()
                } else {
                    Histogram::new_with_bounds(1 << low_pow, HISTOGRAM_MAX_US, sigfig).unwrap()
                };
                for &(v, c) in group {
                    h.record_n(v.max(1 << low_pow), c).unwrap();
                }
                if n % 3 == 0 {
                    decoder.add_encoded(&plain_v2(&h), &mut direct).unwrap();
                } else {
                    decoder.add_base64(&encode_histogram(&h), &mut direct).unwrap();
                }
            }
            prop_assert_eq!(direct.to_histogram(true), acc.to_histogram(true));
            let (mut ours, mut listed) = (Vec::new(), Vec::new());
            prop_assert_eq!(
                Encoder::default().encode(&direct, &mut ours),
                Encoder::default().encode(&acc, &mut listed)
            );
            prop_assert_eq!(ours, listed);
            let got = acc.to_histogram(true);
            prop_assert_eq!(got.len(), expected.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(got.value_at_quantile(q), expected.value_at_quantile(q));
            }
            prop_assert_eq!(got.max(), expected.max());
            prop_assert_eq!(got.min(), expected.min());
            let tight = acc.to_histogram(false);
            prop_assert_eq!(tight.len(), expected.len());
            prop_assert_eq!(tight.value_at_quantile(0.99), expected.value_at_quantile(0.99));
            prop_assert_eq!(tight.max(), expected.max());
            // Encoded straight from the counters: the same histogram, the same percentiles.
            let mut encoded = Vec::new();
            let stats = Encoder::default().encode(&acc, &mut encoded);
            if expected.is_empty() {
                prop_assert!(stats.is_none());
            } else {
                let stats = stats.unwrap();
                let back: Histogram<u64> = Deserializer::new().deserialize(&mut &encoded[..]).unwrap();
                prop_assert_eq!(&back, &expected);
                prop_assert_eq!(stats.count, expected.len());
                prop_assert_eq!(stats.p50_us, expected.value_at_quantile(0.5));
                prop_assert_eq!(stats.p99_us, expected.value_at_quantile(0.99));
                prop_assert_eq!(stats.max_us, expected.max());
            }
        }
    }
}
