//! The KPL aggregated-record format: many user records in one Kinesis record, as the Kinesis
//! Producer Library writes them and de-aggregating consumers (the KCL, Flink's Kinesis
//! connector, Lambda with the deaggregation modules) read them.
//!
//! A record's data is the magic number `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the
//! MD5 of that protobuf body (16 bytes):
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! The protobuf is written by hand: a user record costs two tags, three varints and one copy of
//! its bytes, and a partition key already in the table is not written again. Table entries
//! and records are written as they come, interleaved, which protobuf allows (a repeated field's
//! entries may appear anywhere; parsers append them in order). [`deaggregate`] reads any field
//! order and skips fields it does not know, as a protobuf parser does. The MD5 trailers of a
//! request's aggregates are computed together ([`md5_each`]: eight at a time with AVX2).

mod digest;

use md5::{Digest as _, Md5};

pub use digest::md5_each;

/// The first four bytes of every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;
/// Bytes an aggregated record adds around its protobuf body: the magic and the trailer.
pub const FRAME_LEN: usize = MAGIC.len() + DIGEST_LEN;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `AggregatedRecord.partition_key_table`, length-delimited.
const TAG_PARTITION_KEY: u8 = 1 << 3 | LEN;
/// `AggregatedRecord.records`, length-delimited.
const TAG_RECORD: u8 = 3 << 3 | LEN;
/// `Record.partition_key_index`, varint.
const TAG_KEY_INDEX: u8 = 1 << 3 | VARINT;
/// `Record.data`, length-delimited.
const TAG_DATA: u8 = 3 << 3 | LEN;

/// Bytes of `v` as a protobuf varint.
pub const fn varint_len(v: u64) -> usize {
    // 7 bits a byte; 0 still takes one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An aggregated record being filled: the magic, then the protobuf body as it grows. Its size
/// is known at every step ([`Aggregate::size_with`]), so the caller can close it before a user
/// record would take it past a cap.
#[derive(Debug, Clone)]
pub struct Aggregate {
    buf: Vec<u8>,
    keys: u32,
    records: u32,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate::with_capacity(0)
    }
}

impl Aggregate {
    /// An empty aggregate with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(MAGIC.len() + DIGEST_LEN));
        buf.extend_from_slice(&MAGIC);
        Aggregate {
            buf,
            keys: 0,
            records: 0,
        }
    }

    /// User records added.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Partition keys in the table.
    pub fn keys(&self) -> u32 {
        self.keys
    }

    /// The finished record's size now (magic, body, trailer).
    pub fn size(&self) -> usize {
        self.buf.len() + DIGEST_LEN
    }

    /// The finished record's size if a user record of `data_len` bytes were added whose
    /// partition key is entry `key_index` of the table, or (`None`) a new entry of `key_len`
    /// bytes.
    pub fn size_with(&self, key_index: Option<u32>, key_len: usize, data_len: usize) -> usize {
        let (index, key_entry) = match key_index {
            Some(i) => (i, 0),
            None => (self.keys, 1 + varint_len(key_len as u64) + key_len),
        };
        let record = record_len(index, data_len);
        self.size() + key_entry + 1 + varint_len(record as u64) + record
    }

    /// The size of an aggregated record holding only a user record of `data_len` bytes with a
    /// partition key of `key_len` bytes.
    pub fn size_of_one(key_len: usize, data_len: usize) -> usize {
        let record = record_len(0, data_len);
        FRAME_LEN
            + 1
            + varint_len(key_len as u64)
            + key_len
            + 1
            + varint_len(record as u64)
            + record
    }

    /// The user record, when the aggregate holds exactly one (which is better sent as itself).
    pub fn only_record(&self) -> Option<UserRecord<'_>> {
        if self.records != 1 {
            return None;
        }
        parse_body(self.body())?.pop()
    }

    /// Adds `key` to the partition key table; its index, for [`Aggregate::add_record`].
    pub fn add_key(&mut self, key: &[u8]) -> u32 {
        self.buf.push(TAG_PARTITION_KEY);
        put_varint(&mut self.buf, key.len() as u64);
        self.buf.extend_from_slice(key);
        self.keys += 1;
        self.keys - 1
    }

    /// Adds a user record whose partition key is entry `key_index` of the table.
    pub fn add_record(&mut self, key_index: u32, data: &[u8]) {
        debug_assert!(key_index < self.keys, "the key is added first");
        let record = record_len(key_index, data.len());
        self.buf.push(TAG_RECORD);
        put_varint(&mut self.buf, record as u64);
        self.buf.push(TAG_KEY_INDEX);
        put_varint(&mut self.buf, u64::from(key_index));
        self.buf.push(TAG_DATA);
        put_varint(&mut self.buf, data.len() as u64);
        self.buf.extend_from_slice(data);
        self.records += 1;
    }

    /// The protobuf body written so far (what the trailer is the MD5 of).
    pub fn body(&self) -> &[u8] {
        &self.buf[MAGIC.len()..]
    }

    /// The Kinesis record's data: magic, body and the MD5 of the body.
    pub fn finish(self) -> Vec<u8> {
        let digest: [u8; DIGEST_LEN] = Md5::digest(self.body()).into();
        self.finish_with(digest)
    }

    /// The same with the body's MD5 computed elsewhere (several bodies hashed together).
    pub fn finish_with(mut self, digest: [u8; DIGEST_LEN]) -> Vec<u8> {
        self.buf.extend_from_slice(&digest);
        self.buf
    }
}

/// Length of a `Record` message with `key_index` and `data_len` bytes of data.
fn record_len(key_index: u32, data_len: usize) -> usize {
    1 + varint_len(u64::from(key_index)) + 1 + varint_len(data_len as u64) + data_len
}

/// One user record read out of an aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// Its partition key.
    pub partition_key: &'a [u8],
    /// Its explicit hash key, when the producer gave one.
    pub explicit_hash_key: Option<&'a [u8]>,
    /// Its data.
    pub data: &'a [u8],
}

/// The user records in a Kinesis record's `data`, when it is a KPL aggregated record: the magic
/// number, a trailer that is the MD5 of the body, and a body that is a well-formed
/// `AggregatedRecord` whose records name keys in its tables. `None` otherwise: a record that is
/// not aggregated (or is damaged) is a user record of its own, as the KCL reads it.
pub fn deaggregate(data: &[u8]) -> Option<Vec<UserRecord<'_>>> {
    let rest = data.strip_prefix(&MAGIC)?;
    if rest.len() < DIGEST_LEN {
        return None;
    }
    let (body, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    parse_body(body)
}

/// The user records of an `AggregatedRecord` protobuf body.
fn parse_body(body: &[u8]) -> Option<Vec<UserRecord<'_>>> {
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    // (partition key index, explicit hash key index, data)
    let mut records: Vec<(u64, Option<u64>, &[u8])> = Vec::new();
    let mut r = Reader(body);
    while !r.0.is_empty() {
        let (field, wire) = r.tag()?;
        match (field, wire) {
            (1, LEN) => keys.push(r.bytes()?),
            (2, LEN) => hash_keys.push(r.bytes()?),
            (3, LEN) => {
                let mut m = Reader(r.bytes()?);
                let (mut key, mut hash_key, mut payload) = (None, None, None);
                while !m.0.is_empty() {
                    let (field, wire) = m.tag()?;
                    match (field, wire) {
                        (1, VARINT) => key = Some(m.varint()?),
                        (2, VARINT) => hash_key = Some(m.varint()?),
                        (3, LEN) => payload = Some(m.bytes()?),
                        _ => m.skip(wire)?,
                    }
                }
                records.push((key?, hash_key, payload?));
            }
            _ => r.skip(wire)?,
        }
    }
    records
        .into_iter()
        .map(|(key, hash_key, data)| {
            Some(UserRecord {
                partition_key: keys.get(usize::try_from(key).ok()?)?,
                explicit_hash_key: match hash_key {
                    Some(i) => Some(*hash_keys.get(usize::try_from(i).ok()?)?),
                    None => None,
                },
                data,
            })
        })
        .collect()
}

/// A protobuf reader over a byte slice; every method returns `None` on malformed input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }

    fn tag(&mut self) -> Option<(u64, u8)> {
        let t = self.varint()?;
        let field = t >> 3;
        (field > 0).then_some((field, (t & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            // Groups (3, 4) are not part of this format.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(records: &[(&[u8], &[u8])]) -> Aggregate {
        let mut a = Aggregate::default();
        let mut table: Vec<&[u8]> = Vec::new();
        for (key, data) in records {
            let before = a.size();
            let known = table.iter().position(|k| k == key);
            let predicted = a.size_with(known.map(|i| i as u32), key.len(), data.len());
            let index = match known {
                Some(i) => i as u32,
                None => {
                    table.push(key);
                    a.add_key(key)
                }
            };
            a.add_record(index, data);
            assert_eq!(a.size(), predicted, "size_with predicts the size");
            assert!(a.size() > before);
        }
        a
    }

    #[test]
    fn varints_take_seven_bits_a_byte() {
        for (v, n) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), n);
            assert_eq!(Reader(&out).varint(), Some(v));
        }
    }

    #[test]
    fn an_aggregate_is_magic_protobuf_and_the_md5_of_the_body() {
        let a = aggregate(&[(b"k1", b"one"), (b"k2", b"two"), (b"k1", b"three")]);
        assert_eq!((a.records(), a.keys()), (3, 2));
        let data = a.finish();
        assert_eq!(&data[..4], &MAGIC);
        let (body, digest) = data[4..].split_at(data.len() - 4 - 16);
        assert_eq!(digest, Md5::digest(body).as_slice());
        // The exact bytes protoc's encoding gives (fields in the order written).
        assert_eq!(
            body,
            b"\x0a\x02k1\x1a\x07\x08\x00\x1a\x03one\x0a\x02k2\x1a\x07\x08\x01\x1a\x03two\x1a\x09\x08\x00\x1a\x05three"
        );
        let users = deaggregate(&data).unwrap();
        let read: Vec<(&[u8], &[u8])> = users.iter().map(|u| (u.partition_key, u.data)).collect();
        assert_eq!(
            read,
            [
                (&b"k1"[..], &b"one"[..]),
                (b"k2", b"two"),
                (b"k1", b"three")
            ]
        );
        assert!(users.iter().all(|u| u.explicit_hash_key.is_none()));
    }

    #[test]
    fn one_record_alone_is_sized_and_read_back() {
        let data = vec![1u8; 300];
        let a = aggregate(&[(b"key", &data)]);
        assert_eq!(Aggregate::size_of_one(3, 300), a.size());
        let only = a.only_record().unwrap();
        assert_eq!((only.partition_key, only.data), (&b"key"[..], &data[..]));
        assert!(aggregate(&[(b"k", b"1"), (b"k", b"2")])
            .only_record()
            .is_none());
        assert!(Aggregate::default().only_record().is_none());
    }

    #[test]
    fn a_record_that_is_not_aggregated_or_is_damaged_is_not_deaggregated() {
        let data = aggregate(&[(b"k", b"v"), (b"k", b"w")]).finish();
        assert!(deaggregate(b"{\"sensorId\":\"x\"}").is_none());
        assert!(deaggregate(&MAGIC).is_none());
        assert!(deaggregate(&data[..data.len() - 1]).is_none());
        let mut flipped = data.clone();
        flipped[8] ^= 1;
        assert!(
            deaggregate(&flipped).is_none(),
            "the digest no longer matches"
        );
        // A body whose record names a key the table lacks, with a correct digest.
        let body = b"\x0a\x01k\x1a\x05\x08\x01\x1a\x01v";
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(body);
        bad.extend_from_slice(&Md5::digest(body));
        assert!(deaggregate(&bad).is_none());
        // Truncated inside a length.
        let body = b"\x0a\x09k";
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(body);
        bad.extend_from_slice(&Md5::digest(body));
        assert!(deaggregate(&bad).is_none());
    }

    #[test]
    fn tables_first_unknown_fields_and_explicit_hash_keys_are_read() {
        // As another producer may write it: both tables first, an explicit hash key, tags
        // (field 4) and an unknown fixed32 field, all of which a reader must accept.
        let mut body = Vec::new();
        body.extend_from_slice(b"\x0a\x01a\x0a\x01b\x12\x0512345");
        body.extend_from_slice(b"\x1a\x0e\x08\x01\x10\x00\x1a\x02hi\x22\x04\x0a\x02tg");
        body.extend_from_slice(b"\x2d\x01\x02\x03\x04");
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(&body));
        let users = deaggregate(&data).unwrap();
        assert_eq!(
            users,
            [UserRecord {
                partition_key: b"b",
                explicit_hash_key: Some(b"12345"),
                data: b"hi",
            }]
        );
    }

    #[test]
    fn large_records_and_many_keys_round_trip() {
        let big = vec![7u8; 70_000];
        let keys: Vec<String> = (0..300).map(|i| format!("sensor-{i}")).collect();
        let mut records: Vec<(&[u8], &[u8])> =
            keys.iter().map(|k| (k.as_bytes(), k.as_bytes())).collect();
        records.push((b"big", &big));
        let data = aggregate(&records).finish();
        let users = deaggregate(&data).unwrap();
        assert_eq!(users.len(), 301);
        assert_eq!(users[299].partition_key, b"sensor-299");
        assert_eq!(users[300].data.len(), 70_000);
    }
}
