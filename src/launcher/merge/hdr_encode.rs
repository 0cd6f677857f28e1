//! Encoding a merged second: the sum an [`Accumulator`] holds, written as the V2 deflate bytes
//! the hdrhistogram crate's serializer writes for the same counts, and its percentiles, read from
//! the dense counters in place (the other half of [`super::hdr`], which adds encodings up).

use super::hdr::{Accumulator, Layout, V2_COMPRESSED_COOKIE, V2_COOKIE, V2_HEADER};
use crate::model::report::{HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};

/// What a merged second leaves behind: its percentiles and its V2-deflate encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondStats {
    /// Values summed.
    pub count: u64,
    /// p50, p99 and the maximum, µs, as `Histogram::value_at_quantile` and `max` give them.
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Reusable deflate state and buffers for encoding accumulators: one per merge.
pub struct Encoder {
    deflate: flate2::Compress,
    plain: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            deflate: flate2::Compress::new(flate2::Compression::default(), true),
            plain: Vec::with_capacity(16 * 1024),
        }
    }
}

impl Encoder {
    /// Encodes `acc` as V2 deflate into `out` (cleared first), the bytes `V2DeflateSerializer`
    /// writes for the same counts in a report histogram (1 µs to one hour, 3 digits), and
    /// returns its percentiles; `None` when it is empty. The counters are read in place: no
    /// histogram of 22,000 counters is built per second.
    pub fn encode(&mut self, acc: &Accumulator, out: &mut Vec<u8>) -> Option<SecondStats> {
        out.clear();
        if acc.other.as_ref().is_some_and(|o| !o.is_empty()) {
            // Values of another layout (never written by fleetload): through the crate.
            let h = acc.to_histogram(true);
            hdrhistogram::serialization::Serializer::serialize(
                &mut hdrhistogram::serialization::V2DeflateSerializer::new(),
                &h,
                out,
            )
            .expect("serializing into memory cannot fail");
            return Some(SecondStats {
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            });
        }
        let layout = Layout::report();
        let counts = &acc.counts[..];
        let top = counts.iter().rposition(|&c| c > 0)?;
        let total: u64 = counts.iter().sum();
        let stats = SecondStats {
            count: total,
            p50_us: quantile(layout, acc.base, counts, total, 0.5),
            p99_us: quantile(layout, acc.base, counts, total, 0.99),
            max_us: layout.highest_at(acc.base + top),
        };
        let high = HISTOGRAM_MAX_US.max(stats.max_us);
        let plain = &mut self.plain;
        plain.clear();
        plain.extend_from_slice(&V2_COOKIE.to_be_bytes());
        plain.extend_from_slice(&0u32.to_be_bytes()); // payload length, set below
        plain.extend_from_slice(&0u32.to_be_bytes()); // normalizing offset
        plain.extend_from_slice(&u32::from(HISTOGRAM_SIGFIG).to_be_bytes());
        plain.extend_from_slice(&1u64.to_be_bytes());
        plain.extend_from_slice(&high.to_be_bytes());
        plain.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        // The counters below `base` are empty: one run (or a single zero, which V2 writes as a
        // count of 0), then the dense range up to the highest non-zero counter.
        let mut zeros = acc.base as u64;
        for &c in &counts[..=top] {
            if c == 0 {
                zeros += 1;
                continue;
            }
            push_zeros(plain, zeros);
            zeros = 0;
            push_varint(plain, c.min(i64::MAX as u64) << 1);
        }
        let payload = (plain.len() - V2_HEADER) as u32;
        plain[4..8].copy_from_slice(&payload.to_be_bytes());

        out.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        self.deflate.reset();
        out.reserve(plain.len() / 2 + 64);
        loop {
            let before = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&plain[before..], out, flate2::FlushCompress::Finish)
                .expect("deflating into memory cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(256));
        }
        let compressed = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&compressed.to_be_bytes());
        Some(stats)
    }
}

/// A run of `n` empty counters as V2 writes it: nothing, a count of 0, or a negative run.
fn push_zeros(out: &mut Vec<u8>, n: u64) {
    match n {
        0 => {}
        1 => out.push(0),
        n => push_varint(out, (n << 1) - 1),
    }
}

/// LEB128 as HdrHistogram writes it (the 9th byte carries 8 bits).
pub(super) fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    for _ in 0..8 {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `Histogram::value_at_quantile` over dense counters starting at index `base`.
fn quantile(layout: Layout, base: usize, counts: &[u64], total: u64, q: f64) -> u64 {
    let target = ((q.min(1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= target {
            return if q == 0.0 {
                layout.value_at(base + i).expect("checked when decoded")
            } else {
                layout.highest_at(base + i)
            };
        }
    }
    0
}
