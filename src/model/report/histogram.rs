//! The histograms of a report: microseconds from 1 µs to an hour at 3 significant digits, carried
//! as base64 of the standard HdrHistogram V2 deflate encoding.

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

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
}
