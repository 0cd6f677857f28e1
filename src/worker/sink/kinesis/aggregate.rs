//! Aggregation (`FLEETLOAD_KINESIS_AGGREGATE=on`): user records packed into KPL aggregated
//! records (`model::kpl`), one open aggregate per shard, as the Kinesis Producer Library does.
//!
//! - **Which shard.** The MD5 of a user record's partition key against the shard map
//!   (`ListShards`). Only user records bound for one shard share an aggregate, and the
//!   aggregate carries an explicit hash key (its first user record's), so it lands on that
//!   shard: a de-aggregating consumer reading the shard finds each user record where its own
//!   key says (the KCL drops user records whose hash key lies outside the shard it reads).
//! - **Before the map is read** (it is read in the background from the preflight on, normally
//!   long before the start instant), and for a key the map does not cover, a user record goes
//!   alone as a plain Kinesis record with its own partition key, which Kinesis places exactly
//!   where it belongs. Aggregating without the map could put user records on a shard their
//!   keys do not belong to; holding them back until it comes would stall production on a
//!   slow or refused `ListShards`.
//! - **Closing.** An aggregate closes when the next user record would take it past
//!   [`AGGREGATE_MAX_BYTES`] (KPL's `AggregationMaxSize`), or when its first user record has
//!   waited [`MAX_BUFFERED`] (KPL's `RecordMaxBufferedTime`). A user record too big for any
//!   aggregate goes alone. An aggregate that closes holding one user record is sent as that
//!   record, plain, as the KPL does.
//! - **Resharding.** When the map is read again (an answer came from another shard than the
//!   map said), the open aggregates keep the shard they were filled for and close at their
//!   time; new user records fill new ones.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::carried::RecordMeta;
use super::shards::{hash_key, ShardMap, ShardMaps};
use crate::model::kpl::Aggregate;

/// Largest aggregated record (magic, body, digest): KPL's `AggregationMaxSize` default, far
/// below the 1 MiB a Kinesis record may hold, so that a shard's 1 MiB/s is shared in small
/// steps and a retry resends little.
pub const AGGREGATE_MAX_BYTES: usize = 51_200;
/// Longest a user record waits in an aggregate (and the aggregate for its request): KPL's
/// `RecordMaxBufferedTime` default.
pub const MAX_BUFFERED: Duration = Duration::from_millis(100);
/// Partition key of an aggregated record. Its explicit hash key places it, and each user
/// record inside carries its own key, so one byte does (the KPL writes the same).
pub const AGGREGATE_PARTITION_KEY: &[u8] = b"a";
/// Bytes an aggregate is allocated with when it opens.
const OPEN_CAPACITY: usize = 8 * 1024;
/// Partition keys remembered by their number (hash, shard, place in the open aggregate's
/// table), so that a key's MD5 is computed once: keys 1 to this; beyond, each time.
const KEYS_REMEMBERED: u64 = 1 << 16;
/// [`Place::slot`] of a key no shard of the map covers.
const NO_SHARD: u32 = u32::MAX;

/// A Kinesis record's data.
#[derive(Debug)]
pub enum Payload {
    /// One user record's own bytes.
    Plain(Vec<u8>),
    /// An aggregated record without its MD5 trailer yet: the trailers of a request's
    /// aggregates are computed together when it is built (`kpl::md5_each`).
    Aggregate(Aggregate),
}

/// A Kinesis record ready for a request.
#[derive(Debug)]
pub struct Ready {
    /// Its data.
    pub data: Payload,
    /// Its partition key.
    pub key: Cow<'static, [u8]>,
    /// Its explicit hash key (aggregated records).
    pub hash_key: Option<u128>,
    /// The user records it carries.
    pub users: Vec<RecordMeta>,
    /// The shard it was aggregated for: an answer from another means the map is out of date.
    pub expected: Option<Arc<str>>,
    /// When its first user record has waited its buffering time.
    pub deadline: Instant,
}

impl Ready {
    /// What it counts against a request's 5 MiB and a record's 1 MiB: data and partition key.
    pub fn size(&self) -> usize {
        let data = match &self.data {
            Payload::Plain(d) => d.len(),
            Payload::Aggregate(a) => a.size(),
        };
        data + self.key.len()
    }

    fn plain(key: &[u8], data: &[u8], meta: RecordMeta, deadline: Instant) -> Self {
        Ready {
            data: Payload::Plain(data.to_vec()),
            key: Cow::Owned(key.to_vec()),
            hash_key: None,
            users: vec![meta],
            expected: None,
            deadline,
        }
    }
}

/// An aggregate being filled for one shard.
#[derive(Debug)]
struct Open {
    agg: Aggregate,
    users: Vec<RecordMeta>,
    /// Hash key of its first user record: the aggregate's explicit hash key.
    first_hash: u128,
    shard: Arc<str>,
    deadline: Instant,
    /// Tells this aggregate from any other the slot held before.
    serial: u64,
}

impl Open {
    fn close(self) -> Ready {
        if let Some(only) = self.agg.only_record() {
            let meta = self.users[0];
            return Ready::plain(only.partition_key, only.data, meta, self.deadline);
        }
        Ready {
            data: Payload::Aggregate(self.agg),
            key: Cow::Borrowed(AGGREGATE_PARTITION_KEY),
            hash_key: Some(self.first_hash),
            users: self.users,
            expected: Some(self.shard),
            deadline: self.deadline,
        }
    }
}

/// Where a partition key goes: its shard, and its entry in the table of the aggregate that
/// last took it. Kept by key number, apart from the hashes (needed only when an aggregate
/// opens), so that a user record reads 24 bytes about its key.
#[derive(Debug, Clone, Copy, Default)]
struct Place {
    /// The map `slot` belongs to; 0: nothing known yet (maps are numbered from 1).
    generation: u32,
    /// Its shard's index in that map, or [`NO_SHARD`].
    slot: u32,
    /// The aggregate whose table holds it at `index` (serials start at 1).
    serial: u64,
    index: u32,
}

/// The open aggregates, one per shard, and when each is due.
pub struct Aggregator {
    maps: Arc<ShardMaps>,
    map: Option<Arc<ShardMap>>,
    generation: u64,
    /// By shard index in `map`.
    open: Vec<Option<Open>>,
    /// `(deadline, serial, slot)` in the order aggregates opened, so deadlines ascend. An
    /// entry whose aggregate closed early (full) is dropped when it reaches the front.
    due: VecDeque<(Instant, u64, usize)>,
    /// Aggregates opened under an earlier map, closed at their time.
    retired: Vec<Open>,
    next_serial: u64,
    /// By key number - 1, as far as [`KEYS_REMEMBERED`].
    places: Vec<Place>,
    hashes: Vec<u128>,
}

impl Aggregator {
    /// No aggregate open; the shard map comes from `maps` once it is read.
    pub fn new(maps: Arc<ShardMaps>) -> Self {
        Aggregator {
            maps,
            map: None,
            generation: 0,
            open: Vec::new(),
            due: VecDeque::new(),
            retired: Vec::new(),
            next_serial: 1,
            places: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Takes one user record, with its partition key's number (see `Event::key_number`).
    /// Returns the Kinesis record it closed, if it closed one: the aggregate it would have
    /// overfilled, or itself alone (no map yet, or too big).
    pub fn add(
        &mut self,
        key: &[u8],
        key_number: u64,
        data: &[u8],
        meta: RecordMeta,
    ) -> Option<Ready> {
        self.follow_map();
        let Some(map) = &self.map else {
            return Some(Ready::plain(key, data, meta, Instant::now() + MAX_BUFFERED));
        };
        if Aggregate::size_of_one(key.len(), data.len()) > AGGREGATE_MAX_BYTES {
            return Some(Ready::plain(key, data, meta, Instant::now() + MAX_BUFFERED));
        }
        let (mut fresh, mut fresh_hash) = (Place::default(), 0u128);
        let (info, hash) = if (1..=KEYS_REMEMBERED).contains(&key_number) {
            let i = (key_number - 1) as usize;
            if self.places.len() <= i {
                self.places.resize(i + 1, Place::default());
                self.hashes.resize(i + 1, 0);
            }
            (&mut self.places[i], &mut self.hashes[i])
        } else {
            (&mut fresh, &mut fresh_hash)
        };
        if info.generation == 0 {
            *hash = hash_key(key);
        }
        // Maps are numbered from 1; a number past u32 would take billions of reshards.
        let generation = self.generation as u32;
        if info.generation != generation {
            info.slot = map.index_of_hash(*hash).map_or(NO_SHARD, |i| i as u32);
            info.generation = generation;
        }
        if info.slot == NO_SHARD {
            return Some(Ready::plain(key, data, meta, Instant::now() + MAX_BUFFERED));
        }
        let slot = info.slot as usize;
        let hash = *hash;
        let place = &mut self.open[slot];
        let mut known = match place.as_ref() {
            Some(o) if o.serial == info.serial => Some(info.index),
            _ => None,
        };
        let mut closed = None;
        if place
            .as_ref()
            .is_some_and(|o| o.agg.size_with(known, key.len(), data.len()) > AGGREGATE_MAX_BYTES)
        {
            closed = place.take().map(Open::close);
            known = None;
        }
        let o = place.get_or_insert_with(|| {
            let serial = self.next_serial;
            self.next_serial += 1;
            let deadline = Instant::now() + MAX_BUFFERED;
            self.due.push_back((deadline, serial, slot));
            Open {
                // Grown as it fills: a stream of many shards at a low rate keeps many open.
                agg: Aggregate::with_capacity(OPEN_CAPACITY),
                users: Vec::new(),
                first_hash: hash,
                shard: map.shard(slot).id.clone(),
                deadline,
                serial,
            }
        });
        let index = match known {
            Some(i) => i,
            None => {
                let i = o.agg.add_key(key);
                info.serial = o.serial;
                info.index = i;
                i
            }
        };
        o.agg.add_record(index, data);
        o.users.push(meta);
        if closed.is_some() {
            self.trim();
        }
        closed
    }

    /// When the next open aggregate is due.
    pub fn next_due(&self) -> Option<Instant> {
        let retired = self.retired.iter().map(|o| o.deadline).min();
        let open = self.due.front().map(|&(deadline, ..)| deadline);
        match (retired, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes one aggregate whose time has come by `now`, if any.
    pub fn take_due(&mut self, now: Instant) -> Option<Ready> {
        if let Some(i) = self.retired.iter().position(|o| o.deadline <= now) {
            return Some(self.retired.swap_remove(i).close());
        }
        let &(deadline, _, slot) = self.due.front()?;
        if deadline > now {
            return None;
        }
        self.due.pop_front();
        let ready = self.open[slot].take().map(Open::close);
        self.trim();
        ready
    }

    /// Closes every aggregate (the end of production).
    pub fn take_all(&mut self) -> Vec<Ready> {
        self.due.clear();
        let mut out: Vec<Ready> = self.retired.drain(..).map(Open::close).collect();
        out.extend(
            self.open
                .iter_mut()
                .filter_map(|o| o.take().map(Open::close)),
        );
        out.sort_by_key(|r| r.deadline);
        out
    }

    /// Drops the front entries of `due` whose aggregate already closed, so that the front is
    /// the next one due.
    fn trim(&mut self) {
        while let Some(&(_, serial, slot)) = self.due.front() {
            let open = self.open.get(slot).and_then(Option::as_ref);
            if open.is_some_and(|o| o.serial == serial) {
                break;
            }
            self.due.pop_front();
        }
    }

    /// Takes the shard map's latest version: the aggregates open under the previous one are
    /// retired (they close at their time), and user records fill new ones.
    fn follow_map(&mut self) {
        let generation = self.maps.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.map = self.maps.get();
        let shards = self.map.as_ref().map_or(0, |m| m.len());
        self.retired.extend(self.open.drain(..).flatten());
        self.open.resize_with(shards, || None);
        self.due.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kpl::deaggregate;
    use crate::worker::sink::kinesis::shards::Shard;

    fn meta(seq: u64) -> RecordMeta {
        RecordMeta {
            intended_ns: seq,
            sent_ns: seq,
            seq,
            bytes: 10,
        }
    }

    fn four_shards() -> ShardMap {
        let q = u128::MAX / 4;
        ShardMap::new(
            (0..4u128)
                .map(|i| Shard {
                    id: format!("shardId-{i:012}").into(),
                    start: q * i + i,
                    end: if i == 3 { u128::MAX } else { q * (i + 1) + i },
                })
                .collect(),
        )
    }

    fn key(i: u64) -> Vec<u8> {
        format!("sensor-{i}").into_bytes()
    }

    fn reading(i: u64) -> Vec<u8> {
        format!("{{\"sensorId\":\"sensor-{i}\",\"temperature\":42.5}}").into_bytes()
    }

    /// Every user record of `ready`, read back: (partition key, data, seq).
    fn read_back(ready: &Ready) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
        let data = match &ready.data {
            Payload::Plain(d) => d.clone(),
            Payload::Aggregate(a) => a.clone().finish(),
        };
        assert_eq!(data.len() + ready.key.len(), ready.size());
        match deaggregate(&data) {
            Some(users) => {
                assert_eq!(&*ready.key, AGGREGATE_PARTITION_KEY);
                assert_eq!(users.len(), ready.users.len());
                users
                    .iter()
                    .zip(&ready.users)
                    .map(|(u, m)| (u.partition_key.to_vec(), u.data.to_vec(), m.seq))
                    .collect()
            }
            None => {
                assert_eq!(
                    ready.users.len(),
                    1,
                    "a plain record carries one user record"
                );
                assert_eq!(ready.hash_key, None);
                vec![(ready.key.to_vec(), data, ready.users[0].seq)]
            }
        }
    }

    #[test]
    fn without_a_shard_map_every_user_record_goes_alone() {
        let maps = ShardMaps::fixed(None);
        let mut a = Aggregator::new(maps);
        for i in 0..5 {
            let ready = a
                .add(&key(i), i + 1, &reading(i), meta(i))
                .expect("sent alone");
            assert_eq!(read_back(&ready), [(key(i), reading(i), i)]);
        }
        assert_eq!(a.next_due(), None);
        assert!(a.take_all().is_empty());
    }

    #[test]
    fn user_records_of_one_shard_share_an_aggregate_placed_by_its_first_hash_key() {
        let map = four_shards();
        let mut a = Aggregator::new(ShardMaps::fixed(Some(map.clone())));
        let mut out = Vec::new();
        // 1,000 keys, each used several times: the table keeps each key once per aggregate.
        for i in 0..20_000u64 {
            out.extend(a.add(&key(i % 1000), i % 1000 + 1, &reading(i % 1000), meta(i)));
        }
        assert!(a.next_due().is_some());
        out.extend(a.take_all());
        assert_eq!(a.next_due(), None);
        let mut seqs: Vec<u64> = Vec::new();
        for ready in &out {
            assert!(ready.size() <= AGGREGATE_MAX_BYTES + 1, "{}", ready.size());
            let users = read_back(ready);
            assert!(users.len() > 1);
            let expected = ready
                .expected
                .as_ref()
                .expect("an aggregate names its shard");
            let h = ready.hash_key.expect("and carries an explicit hash key");
            assert_eq!(h, hash_key(&users[0].0), "the first user record's hash key");
            for (k, data, seq) in &users {
                assert_eq!(&map.shard_of_key(k).unwrap().id, expected, "{seq}");
                assert_eq!(data, &reading(*seq % 1000));
                assert_eq!(k, &key(*seq % 1000));
            }
            seqs.extend(users.iter().map(|u| u.2));
        }
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..20_000).collect::<Vec<_>>(),
            "every user record once"
        );
        // Full aggregates: ~40 bytes of reading and key each, 50 KiB a record.
        assert!(out.len() < 40, "{} Kinesis records", out.len());
    }

    #[test]
    fn keys_past_those_remembered_are_placed_and_tabled_all_the_same() {
        let map = four_shards();
        let mut a = Aggregator::new(ShardMaps::fixed(Some(map.clone())));
        let mut out = Vec::new();
        for i in 0..2_000u64 {
            // Numbers past the remembered ones (and 0, which no generator hands out).
            let number = if i % 2 == 0 {
                KEYS_REMEMBERED + 1 + i % 100
            } else {
                0
            };
            out.extend(a.add(&key(i % 100), number, &reading(i % 100), meta(i)));
        }
        out.extend(a.take_all());
        let mut n = 0;
        for ready in &out {
            for (k, data, seq) in read_back(ready) {
                assert_eq!(
                    &map.shard_of_key(&k).unwrap().id,
                    ready.expected.as_ref().unwrap()
                );
                assert_eq!((k, data), (key(seq % 100), reading(seq % 100)));
                n += 1;
            }
        }
        assert_eq!(n, 2_000);
    }

    #[test]
    fn an_aggregate_is_due_after_its_buffering_time_and_a_lonely_one_goes_plain() {
        let mut a = Aggregator::new(ShardMaps::fixed(Some(four_shards())));
        let before = Instant::now();
        assert!(a.add(&key(1), 2, &reading(1), meta(1)).is_none());
        let due = a.next_due().unwrap();
        assert!(due >= before + MAX_BUFFERED && due <= Instant::now() + MAX_BUFFERED);
        assert!(a.take_due(due - Duration::from_millis(1)).is_none());
        let ready = a.take_due(due).unwrap();
        assert_eq!(read_back(&ready), [(key(1), reading(1), 1)]);
        assert_eq!(ready.expected, None, "plain, placed by its own key");
        assert_eq!(a.next_due(), None);
        // A user record too big for any aggregate goes alone at once.
        let big = vec![b'x'; AGGREGATE_MAX_BYTES];
        let ready = a.add(&key(2), 3, &big, meta(2)).unwrap();
        assert!(matches!(&ready.data, Payload::Plain(d) if *d == big));
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn a_new_shard_map_retires_the_open_aggregates_to_close_at_their_time() {
        let maps = ShardMaps::fixed(Some(four_shards()));
        let mut a = Aggregator::new(maps.clone());
        for i in 0..40 {
            assert!(a.add(&key(i), i + 1, &reading(i), meta(i)).is_none());
        }
        let due = a.next_due().unwrap();
        // Resharded: one shard now.
        maps.set(ShardMap::new(vec![Shard {
            id: "shardId-000000000009".into(),
            start: 0,
            end: u128::MAX,
        }]));
        for i in 40..80 {
            assert!(a.add(&key(i), i + 1, &reading(i), meta(i)).is_none());
        }
        assert_eq!(a.next_due(), Some(due), "the retired aggregates come first");
        let all = a.take_all();
        assert_eq!(all.len(), 5, "4 retired, 1 on the new shard");
        let new: Vec<_> = all
            .iter()
            .filter(|r| r.expected.as_deref() == Some("shardId-000000000009"))
            .collect();
        assert_eq!(new.len(), 1);
        assert_eq!(
            new[0].users.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (40..80).collect::<Vec<_>>()
        );
    }
}
