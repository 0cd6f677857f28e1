//! The histograms of a report: microseconds from 1 µs to an hour at 3 significant digits, carried
//! as base64 of the standard HdrHistogram V2 deflate encoding.

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{
    Deserializer, Serializer, V2DeflateSerializer, V2SerializeError, V2Serializer,
};
use hdrhistogram::{Counter, Histogram};

use super::{HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};

/// A new empty latency histogram (microseconds).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
        .expect("valid histogram bounds")
}

/// Encodes a histogram as base64 of the HdrHistogram V2 deflate encoding.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 of an HdrHistogram V2 (deflate or plain) encoding.
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("histogram is not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not an HdrHistogram V2 encoding: {e:?}"))
}

/// The cookie of the V2 encoding inside a zlib stream (HdrHistogram's "compressed" V2).
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// The most bytes one stored deflate block holds.
const STORED_BLOCK: usize = 65_535;

/// The standard V2 deflate encoding — the cookie every HdrHistogram reader looks for, then a
/// zlib stream — whose stream holds the plain V2 bytes in stored (uncompressed) deflate blocks.
///
/// Every zlib inflater reads stored blocks, so every HdrHistogram library reads it; and
/// inflating it is a copy, where a compressed histogram costs the merge a Huffman decoding per
/// task and second (most of its time). The price is size: about 1.6× the compressed bytes.
#[derive(Default)]
pub struct V2StoredSerializer {
    plain: Vec<u8>,
    v2: V2Serializer,
}

impl Serializer for V2StoredSerializer {
    type SerializeError = V2SerializeError;

    fn serialize<T: Counter, W: std::io::Write>(
        &mut self,
        h: &Histogram<T>,
        writer: &mut W,
    ) -> Result<usize, V2SerializeError> {
        self.plain.clear();
        self.v2.serialize(h, &mut self.plain)?;
        let plain = &self.plain;
        let blocks = plain.len().div_ceil(STORED_BLOCK).max(1);
        // zlib header (deflate, 32 KiB window, fastest), the blocks, Adler-32.
        let stream_len = 2 + blocks * 5 + plain.len() + 4;
        let mut out = Vec::with_capacity(8 + stream_len);
        out.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        out.extend_from_slice(&(stream_len as u32).to_be_bytes());
        out.extend_from_slice(&[0x78, 0x01]);
        let mut chunks = plain.chunks(STORED_BLOCK).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let len = chunk.len() as u16;
            out.push(u8::from(last));
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&adler32(plain).to_be_bytes());
        writer.write_all(&out).map_err(V2SerializeError::IoError)?;
        Ok(out.len())
    }
}

/// Adler-32 of `bytes`, as zlib's stream trailer carries it.
fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // The largest run of bytes whose sums cannot overflow a u32 before the modulo.
    const NMAX: usize = 5_552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(NMAX) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trip_through_v2_deflate() {
        let mut h = new_histogram();
        for v in [
            1u64,
            5,
            17,
            250,
            1_000,
            12_345,
            999_999,
            3_000_000,
            HISTOGRAM_MAX_US,
        ] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode_histogram(&h);
        // The standard V2 compressed cookie (0x1c849314) is the first 4 bytes.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        assert_eq!(&raw[..4], &[0x1c, 0x84, 0x93, 0x14]);
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }

    #[test]
    fn stored_encoding_is_read_by_the_crate_and_by_zlib_as_the_same_histogram() {
        let mut small = new_histogram();
        small.record(1).unwrap();
        let mut large = new_histogram();
        for v in 1..60_000u64 {
            large.record_n(v * 13, v % 5 + 1).unwrap();
        }
        for h in [small, large, new_histogram()] {
            let mut stored = Vec::new();
            let n = V2StoredSerializer::default()
                .serialize(&h, &mut stored)
                .unwrap();
            assert_eq!(n, stored.len());
            assert_eq!(&stored[..4], &[0x1c, 0x84, 0x93, 0x14]);
            let back: Histogram<u64> = Deserializer::new()
                .deserialize(&mut stored.as_slice())
                .unwrap();
            assert_eq!(back, h);
            // The stream inflates (checksum included) to the plain V2 encoding.
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::ZlibDecoder::new(&stored[8..]),
                &mut inflated,
            )
            .unwrap();
            let mut plain = Vec::new();
            V2Serializer::new().serialize(&h, &mut plain).unwrap();
            assert_eq!(inflated, plain);
        }
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
