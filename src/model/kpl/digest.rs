//! The MD5 trailers of many aggregated records at once.
//!
//! MD5 is a chain of dependent 32-bit steps: one message cannot go faster than about 5 CPU
//! cycles a byte (~500 MB/s here), and an aggregated record's trailer covers every byte of the
//! user records it carries, which would cost an aggregating producer more than the SHA-256 its
//! request signature already pays. Independent messages can share the steps, though: with
//! AVX2, eight messages go through the same instructions side by side, one in each 32-bit lane
//! of a 256-bit register, for about eight times the throughput. A request's aggregates are
//! hashed together when the request is built.
//!
//! Messages are grouped by length, so that the eight of a group have about as many 64-byte
//! blocks; the blocks all eight have are hashed in the lanes, and each message's own remaining
//! blocks and its padding are finished one by one with the scalar compression function of the
//! `md-5` crate. Without AVX2 (or for a single message) every message is hashed by `md-5`.

use md5::{Digest as _, Md5};

/// Bytes of one MD5 block.
const BLOCK: usize = 64;
/// MD5's initial state.
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The MD5 of each message, in order.
pub fn md5_each(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    {
        if messages.len() > 1 && std::arch::is_x86_feature_detected!("avx2") {
            return lanes::md5_each(messages);
        }
    }
    messages.iter().map(|m| md5_one(m)).collect()
}

fn md5_one(message: &[u8]) -> [u8; 16] {
    Md5::digest(message).into()
}

/// Finishes the MD5 of `message` from `state`, which has taken its first `done` blocks: the
/// remaining full blocks, then the padding (a 1 bit, zeros, the length in bits).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn finish(mut state: [u32; 4], message: &[u8], done: usize) -> [u8; 16] {
    let rest = &message[done * BLOCK..];
    let full = rest.len() / BLOCK;
    let (blocks, tail) = rest.split_at(full * BLOCK);
    let blocks: Vec<[u8; BLOCK]> = blocks
        .chunks_exact(BLOCK)
        .map(|b| b.try_into().expect("a whole block"))
        .collect();
    md5::block_api::compress(&mut state, &blocks);
    let mut last = [0u8; 2 * BLOCK];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    // The length goes in the last 8 bytes of the first block that has room for them.
    let n = if tail.len() + 1 + 8 <= BLOCK { 1 } else { 2 };
    let bits = (message.len() as u64).wrapping_mul(8);
    last[n * BLOCK - 8..n * BLOCK].copy_from_slice(&bits.to_le_bytes());
    let padding: Vec<[u8; BLOCK]> = last[..n * BLOCK]
        .chunks_exact(BLOCK)
        .map(|b| b.try_into().expect("a whole block"))
        .collect();
    md5::block_api::compress(&mut state, &padding);
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use std::arch::x86_64::*;

    use super::{finish, BLOCK, IV};

    /// Per-step additive constants: `floor(|sin(i + 1)| * 2^32)`.
    const K: [u32; 64] = [
        0xd76a_a478,
        0xe8c7_b756,
        0x2420_70db,
        0xc1bd_ceee,
        0xf57c_0faf,
        0x4787_c62a,
        0xa830_4613,
        0xfd46_9501,
        0x6980_98d8,
        0x8b44_f7af,
        0xffff_5bb1,
        0x895c_d7be,
        0x6b90_1122,
        0xfd98_7193,
        0xa679_438e,
        0x49b4_0821,
        0xf61e_2562,
        0xc040_b340,
        0x265e_5a51,
        0xe9b6_c7aa,
        0xd62f_105d,
        0x0244_1453,
        0xd8a1_e681,
        0xe7d3_fbc8,
        0x21e1_cde6,
        0xc337_07d6,
        0xf4d5_0d87,
        0x455a_14ed,
        0xa9e3_e905,
        0xfcef_a3f8,
        0x676f_02d9,
        0x8d2a_4c8a,
        0xfffa_3942,
        0x8771_f681,
        0x6d9d_6122,
        0xfde5_380c,
        0xa4be_ea44,
        0x4bde_cfa9,
        0xf6bb_4b60,
        0xbebf_bc70,
        0x289b_7ec6,
        0xeaa1_27fa,
        0xd4ef_3085,
        0x0488_1d05,
        0xd9d4_d039,
        0xe6db_99e5,
        0x1fa2_7cf8,
        0xc4ac_5665,
        0xf429_2244,
        0x432a_ff97,
        0xab94_23a7,
        0xfc93_a039,
        0x655b_59c3,
        0x8f0c_cc92,
        0xffef_f47d,
        0x8584_5dd1,
        0x6fa8_7e4f,
        0xfe2c_e6e0,
        0xa301_4314,
        0x4e08_11a1,
        0xf753_7e82,
        0xbd3a_f235,
        0x2ad7_d2bb,
        0xeb86_d391,
    ];
    /// Per-round left rotations.
    const S: [[i32; 4]; 4] = [
        [7, 12, 17, 22],
        [5, 9, 14, 20],
        [4, 11, 16, 23],
        [6, 10, 15, 21],
    ];

    /// Eight messages at a time, grouped by length; each group's common blocks in the lanes.
    pub(super) fn md5_each(messages: &[&[u8]]) -> Vec<[u8; 16]> {
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_by_key(|&i| messages[i].len());
        let mut out = vec![[0u8; 16]; messages.len()];
        for group in order.chunks(8) {
            // A short group fills its idle lanes with its first message; their results are
            // not used.
            let lanes: [&[u8]; 8] =
                std::array::from_fn(|j| messages[group[j.min(group.len() - 1)]]);
            let common = group
                .iter()
                .map(|&i| messages[i].len() / BLOCK)
                .min()
                .unwrap_or(0);
            let mut states = [IV; 8];
            if common > 0 {
                // SAFETY: AVX2 was detected by the caller (`super::md5_each`), and every lane
                // has at least `common` whole blocks.
                unsafe { compress8(&mut states, &lanes, common) };
            }
            for (j, &i) in group.iter().enumerate() {
                out[i] = finish(states[j], messages[i], common);
            }
        }
        out
    }

    /// Runs `blocks` 64-byte blocks of each of the eight `lanes` through MD5's compression,
    /// lane `j` from `states[j]`.
    ///
    /// # Safety
    /// The CPU must have AVX2, and every lane must hold at least `blocks * 64` bytes.
    #[target_feature(enable = "avx2")]
    unsafe fn compress8(states: &mut [[u32; 4]; 8], lanes: &[&[u8]; 8], blocks: usize) {
        for lane in lanes {
            assert!(lane.len() >= blocks * BLOCK);
        }
        // Word w of the state, lane by lane (no closures here: a closure would not inherit
        // this function's AVX2).
        let mut words = [[0u32; 8]; 4];
        for (j, state) in states.iter().enumerate() {
            for w in 0..4 {
                words[w][j] = state[w];
            }
        }
        // SAFETY: unaligned loads of 32 bytes from arrays of 32 bytes.
        let mut a = _mm256_loadu_si256(words[0].as_ptr() as *const __m256i);
        let mut b = _mm256_loadu_si256(words[1].as_ptr() as *const __m256i);
        let mut c = _mm256_loadu_si256(words[2].as_ptr() as *const __m256i);
        let mut d = _mm256_loadu_si256(words[3].as_ptr() as *const __m256i);
        let ones = _mm256_set1_epi32(-1);
        for block in 0..blocks {
            let at = block * BLOCK;
            let mut m = [_mm256_setzero_si256(); 16];
            // Word w of the block, lane by lane: two 8×8 transposes of 32-bit words.
            for half in 0..2 {
                let mut r = [_mm256_setzero_si256(); 8];
                for (row, lane) in r.iter_mut().zip(lanes) {
                    // SAFETY: the lane holds at least `blocks * 64` bytes (asserted above), so
                    // these 32 bytes are inside it; the load is unaligned.
                    *row = _mm256_loadu_si256(lane.as_ptr().add(at + half * 32) as *const __m256i);
                }
                let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                let u0 = _mm256_unpacklo_epi64(t0, t2);
                let u1 = _mm256_unpackhi_epi64(t0, t2);
                let u2 = _mm256_unpacklo_epi64(t1, t3);
                let u3 = _mm256_unpackhi_epi64(t1, t3);
                let u4 = _mm256_unpacklo_epi64(t4, t6);
                let u5 = _mm256_unpackhi_epi64(t4, t6);
                let u6 = _mm256_unpacklo_epi64(t5, t7);
                let u7 = _mm256_unpackhi_epi64(t5, t7);
                let w = half * 8;
                m[w] = _mm256_permute2x128_si256::<0x20>(u0, u4);
                m[w + 1] = _mm256_permute2x128_si256::<0x20>(u1, u5);
                m[w + 2] = _mm256_permute2x128_si256::<0x20>(u2, u6);
                m[w + 3] = _mm256_permute2x128_si256::<0x20>(u3, u7);
                m[w + 4] = _mm256_permute2x128_si256::<0x31>(u0, u4);
                m[w + 5] = _mm256_permute2x128_si256::<0x31>(u1, u5);
                m[w + 6] = _mm256_permute2x128_si256::<0x31>(u2, u6);
                m[w + 7] = _mm256_permute2x128_si256::<0x31>(u3, u7);
            }
            let (aa, bb, cc, dd) = (a, b, c, d);
            for i in 0..64 {
                let round = i / 16;
                let (f, g) = match round {
                    // (b & c) | (!b & d), as d ^ (b & (c ^ d))
                    0 => (
                        _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d))),
                        i,
                    ),
                    // (b & d) | (c & !d), as c ^ (d & (b ^ c))
                    1 => (
                        _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c))),
                        (5 * i + 1) % 16,
                    ),
                    2 => (
                        _mm256_xor_si256(_mm256_xor_si256(b, c), d),
                        (3 * i + 5) % 16,
                    ),
                    _ => (
                        _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones))),
                        (7 * i) % 16,
                    ),
                };
                let sum = _mm256_add_epi32(
                    _mm256_add_epi32(a, f),
                    _mm256_add_epi32(_mm256_set1_epi32(K[i] as i32), m[g]),
                );
                let s = S[round][i % 4];
                let rotated = _mm256_or_si256(
                    _mm256_sll_epi32(sum, _mm_cvtsi32_si128(s)),
                    _mm256_srl_epi32(sum, _mm_cvtsi32_si128(32 - s)),
                );
                let next_b = _mm256_add_epi32(b, rotated);
                a = d;
                d = c;
                c = b;
                b = next_b;
            }
            a = _mm256_add_epi32(a, aa);
            b = _mm256_add_epi32(b, bb);
            c = _mm256_add_epi32(c, cc);
            d = _mm256_add_epi32(d, dd);
        }
        for (w, v) in words.iter_mut().zip([a, b, c, d]) {
            // SAFETY: an unaligned store of 32 bytes into an array of 32 bytes.
            _mm256_storeu_si256(w.as_mut_ptr() as *mut __m256i, v);
        }
        for (j, state) in states.iter_mut().enumerate() {
            *state = [words[0][j], words[1][j], words[2][j], words[3][j]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_around_the_block_and_padding_boundaries_match_md5() {
        let data: Vec<u8> = (0..4000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let lengths = [
            0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 3999, 4000,
        ];
        let messages: Vec<&[u8]> = lengths.iter().map(|&n| &data[..n]).collect();
        let expected: Vec<[u8; 16]> = messages.iter().map(|m| md5_one(m)).collect();
        assert_eq!(md5_each(&messages), expected);
        // The scalar finish alone, from the start.
        for m in &messages {
            assert_eq!(finish(IV, m, 0), md5_one(m), "{}", m.len());
        }
        // MD5("abc"), the RFC 1321 test vector.
        assert_eq!(
            md5_each(&[b"abc", b"abc"])[1],
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn many_messages_hashed_together_match_md5_one_by_one(
            messages in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..3000), 0..20)
        ) {
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let expected: Vec<[u8; 16]> = refs.iter().map(|m| md5_one(m)).collect();
            prop_assert_eq!(md5_each(&refs), expected);
        }
    }
}
