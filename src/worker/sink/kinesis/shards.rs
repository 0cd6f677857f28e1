//! The stream's shard map: which open shard owns which range of the 128-bit hash key space,
//! read with `ListShards`. Kinesis puts a record on the shard whose range holds the MD5 of its
//! partition key (or its explicit hash key); the map lets the sink name the shard of a record
//! Kinesis did not name (a failure without a shard in its message), and lets aggregation pack
//! together only user records bound for the same shard.

use md5::{Digest as _, Md5};

use crate::model::scenario::StreamRef;

/// One open shard and its hash key range (both ends included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `shardId-000000000000`.
    pub id: String,
    /// First hash key of the range.
    pub start: u128,
    /// Last hash key of the range.
    pub end: u128,
}

/// The open shards of a stream, ordered by hash key range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
}

/// The hash key of a partition key: its MD5 read as a big-endian 128-bit number.
pub fn hash_key(partition_key: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key).into())
}

impl ShardMap {
    /// A map of these shards (in any order); overlapping ranges (a stream in the middle of a
    /// reshard listed with its parents) keep the later-starting child.
    pub fn new(mut shards: Vec<Shard>) -> Self {
        shards.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)));
        ShardMap { shards }
    }

    /// The index (in [`ShardMap::shards`]) of the shard owning hash key `h`.
    pub fn index_of_hash(&self, h: u128) -> Option<usize> {
        let i = self.shards.partition_point(|s| s.start <= h);
        let i = i.checked_sub(1)?;
        (self.shards[i].end >= h).then_some(i)
    }

    /// The shard owning partition key `key`.
    pub fn shard_of_key(&self, key: &[u8]) -> Option<&Shard> {
        self.index_of_hash(hash_key(key)).map(|i| &self.shards[i])
    }
}

/// The open shards of `stream`, page by page (`ListShards`, 1,000 a page).
pub async fn list_open_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamRef,
) -> Result<ShardMap, String> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = client.list_shards();
        request = match &next {
            // With a token, the stream must not be named again.
            Some(token) => request.next_token(token),
            None => match stream {
                StreamRef::Name(n) => request.stream_name(n),
                StreamRef::Arn(a) => request.stream_arn(a),
            },
        };
        let out = request.send().await.map_err(|e| {
            format!(
                "ListShards failed: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?;
        for s in out.shards() {
            // A closed shard (after a reshard) has an ending sequence number.
            if s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some()
            {
                continue;
            }
            let Some(range) = s.hash_key_range() else {
                continue;
            };
            let parse = |v: &str| {
                v.parse::<u128>()
                    .map_err(|e| format!("ListShards: hash key {v:?} of {}: {e}", s.shard_id()))
            };
            shards.push(Shard {
                id: s.shard_id().to_string(),
                start: parse(range.starting_hash_key())?,
                end: parse(range.ending_hash_key())?,
            });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(ShardMap::new(shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> ShardMap {
        let q = u128::MAX / 4;
        ShardMap::new(
            (0..4u128)
                .rev()
                .map(|i| Shard {
                    id: format!("shardId-{i:012}"),
                    start: q * i + i,
                    end: if i == 3 { u128::MAX } else { q * (i + 1) + i },
                })
                .collect(),
        )
    }

    #[test]
    fn hash_key_is_the_md5_of_the_partition_key() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key(b"a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn a_hash_key_belongs_to_the_shard_whose_range_holds_it() {
        let m = four();
        assert_eq!(m.shards[0].id, "shardId-000000000000");
        assert_eq!(m.index_of_hash(0), Some(0));
        assert_eq!(m.index_of_hash(u128::MAX), Some(3));
        for (i, s) in m.shards.iter().enumerate() {
            assert_eq!(m.index_of_hash(s.start), Some(i));
            assert_eq!(m.index_of_hash(s.end), Some(i));
        }
        // "a" hashes into the first quarter.
        assert_eq!(m.shard_of_key(b"a").unwrap().id, "shardId-000000000000");
        // A gap (a shard missing from the map) owns nothing.
        let gap = ShardMap::new(vec![Shard {
            id: "s".into(),
            start: 10,
            end: 20,
        }]);
        assert_eq!(gap.index_of_hash(9), None);
        assert_eq!(gap.index_of_hash(21), None);
        assert_eq!(gap.index_of_hash(15), Some(0));
    }
}
