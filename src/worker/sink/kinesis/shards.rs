//! The stream's shard map: which open shard owns which range of the 128-bit hash key space,
//! read with `ListShards`. Kinesis puts a record on the shard whose range holds the MD5 of its
//! partition key (or its explicit hash key); the map lets the sink name the shard of a record
//! Kinesis did not name (a failure without a shard in its message), and lets aggregation pack
//! together only user records bound for the same shard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

use crate::model::backoff::Backoff;
use crate::model::target::StreamRef;

/// The shard map is read again at most this often when answers say it is out of date:
/// requests already in flight under the old map keep saying so for a moment.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// Between failed attempts to read the first map: up to 1 s, growing to 30 s.
const LOAD_BACKOFF: Backoff = Backoff::full(Duration::from_secs(1), Duration::from_secs(30));

/// One open shard and its hash key range (both ends included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `shardId-000000000000`.
    pub id: Arc<str>,
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

    /// Shard `i` (an index from [`ShardMap::index_of_hash`]).
    pub fn shard(&self, i: usize) -> &Shard {
        &self.shards[i]
    }

    /// How many open shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }
}

/// The stream's shard map as last read, shared by the sink and its send tasks. Read in the
/// background, so that a slow or refused `ListShards` never delays production, and read again
/// when an answer shows it is out of date (an aggregated record landed on another shard than
/// the map said: the stream was resharded).
pub struct ShardMaps {
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
    current: RwLock<Option<Arc<ShardMap>>>,
    /// Bumped with every new map, so that a reader can tell cheaply that its copy is old.
    generation: AtomicU64,
    refreshing: AtomicBool,
    /// What a missing map costs, for the warning: failures named `unknown`, and with
    /// aggregation user records sent one per Kinesis record.
    without_map: &'static str,
}

impl ShardMaps {
    /// No map yet; [`ShardMaps::load`] reads the first.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: StreamRef,
        without_map: &'static str,
    ) -> Arc<Self> {
        Arc::new(ShardMaps {
            client,
            stream,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            refreshing: AtomicBool::new(true),
            without_map,
        })
    }

    /// Reads the first map in the background, trying again with backoff until it has one.
    pub fn load(self: &Arc<Self>) {
        let maps = Arc::clone(self);
        tokio::spawn(async move {
            let mut attempt = 0;
            loop {
                match list_open_shards(&maps.client, &maps.stream).await {
                    Ok(map) => {
                        maps.set(map);
                        break;
                    }
                    Err(e) => {
                        if attempt == 0 {
                            tracing::warn!(
                                "no shard map of Kinesis stream {} yet: {e}; {} (trying again)",
                                maps.stream,
                                maps.without_map
                            );
                        }
                        tokio::time::sleep(LOAD_BACKOFF.delay(attempt)).await;
                        attempt += 1;
                    }
                }
            }
            maps.refreshing.store(false, Ordering::Release);
        });
    }

    /// The map, once read.
    pub fn get(&self) -> Option<Arc<ShardMap>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes whenever a new map is set (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A map that is never read from a stream: `map`, or none (for tests of what uses it).
    #[cfg(test)]
    pub fn fixed(map: Option<ShardMap>) -> Arc<Self> {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .build();
        let maps = ShardMaps::new(
            aws_sdk_kinesis::Client::from_conf(config),
            StreamRef::Name("test".into()),
            "",
        );
        if let Some(map) = map {
            maps.set(map);
        }
        maps
    }

    /// Sets the map: read from the stream, or given by a test.
    pub fn set(&self, map: ShardMap) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(map));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads the map again in the background, unless a read is under way or one ended less
    /// than [`REFRESH_AT_MOST_EVERY`] ago.
    pub fn refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let maps = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            match list_open_shards(&maps.client, &maps.stream).await {
                Ok(map) => {
                    tracing::info!(
                        shards = map.len(),
                        "Kinesis stream {}: an answer named another shard than the shard map, which was read again",
                        maps.stream
                    );
                    maps.set(map);
                }
                Err(e) => tracing::warn!(
                    "Kinesis stream {}: the shard map is out of date and could not be read again: {e}",
                    maps.stream
                ),
            }
            tokio::time::sleep_until((started + REFRESH_AT_MOST_EVERY).into()).await;
            maps.refreshing.store(false, Ordering::Release);
        });
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
                id: Arc::from(s.shard_id()),
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
                    id: format!("shardId-{i:012}").into(),
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
        assert_eq!(&*m.shards[0].id, "shardId-000000000000");
        assert_eq!(m.index_of_hash(0), Some(0));
        assert_eq!(m.index_of_hash(u128::MAX), Some(3));
        for (i, s) in m.shards.iter().enumerate() {
            assert_eq!(m.index_of_hash(s.start), Some(i));
            assert_eq!(m.index_of_hash(s.end), Some(i));
        }
        // "a" hashes into the first quarter.
        assert_eq!(&*m.shard_of_key(b"a").unwrap().id, "shardId-000000000000");
        // A gap (a shard missing from the map) owns nothing.
        let gap = ShardMap::new(vec![Shard {
            id: Arc::from("s"),
            start: 10,
            end: 20,
        }]);
        assert_eq!(gap.index_of_hash(9), None);
        assert_eq!(gap.index_of_hash(21), None);
        assert_eq!(gap.index_of_hash(15), Some(0));
    }
}
