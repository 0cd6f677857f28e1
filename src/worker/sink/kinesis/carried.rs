//! What one PutRecords request carries: its user records (the events, what the report counts),
//! grouped by the Kinesis record that carries them. Unaggregated, each Kinesis record carries
//! one; aggregated, one or more, and a Kinesis record that fails fails (or is retried as) all
//! of its user records.

use std::sync::Arc;

/// One user record: when it was meant to go, when it was handed over, and how to name it.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta {
    /// Intended send time, ns from the origin.
    pub intended_ns: u64,
    /// When it was handed to the sink, ns from the origin; set again when its request is sent.
    pub sent_ns: u64,
    /// The event's sequence number, to name it when it fails.
    pub seq: u64,
    /// Its bytes (data and partition key), counted when acknowledged.
    pub bytes: u64,
}

/// One Kinesis record's share of [`Carried::users`], when it is not one user record.
#[derive(Debug, Clone)]
struct Group {
    /// End (exclusive) of its user records in `users`; it starts where the previous ends.
    end: u32,
    /// The shard its explicit hash key was chosen for (aggregated records): an answer from
    /// another shard means the shard map is out of date.
    expected: Option<Arc<str>>,
}

/// The user records of one request, in request order, grouped by Kinesis record.
#[derive(Debug, Default)]
pub struct Carried {
    users: Vec<RecordMeta>,
    /// Empty when every Kinesis record carries exactly one user record (aggregation off),
    /// which costs nothing per record.
    groups: Vec<Group>,
}

impl Carried {
    /// One user record per Kinesis record.
    pub fn one_each(users: Vec<RecordMeta>) -> Self {
        Carried {
            users,
            groups: Vec::new(),
        }
    }

    /// Room for `records` Kinesis records carrying about `users` user records.
    pub fn grouped(records: usize, users: usize) -> Self {
        Carried {
            users: Vec::with_capacity(users),
            groups: Vec::with_capacity(records),
        }
    }

    /// Appends a Kinesis record carrying `users`, aggregated for shard `expected`.
    pub fn push_group(&mut self, users: &[RecordMeta], expected: Option<Arc<str>>) {
        self.users.extend_from_slice(users);
        self.groups.push(Group {
            end: self.users.len() as u32,
            expected,
        });
    }

    /// Kinesis records.
    pub fn len(&self) -> usize {
        if self.groups.is_empty() {
            self.users.len()
        } else {
            self.groups.len()
        }
    }

    /// Every user record.
    pub fn users(&self) -> &[RecordMeta] {
        &self.users
    }

    /// Every user record, to stamp their send time.
    pub fn users_mut(&mut self) -> &mut [RecordMeta] {
        &mut self.users
    }

    /// The user records Kinesis record `i` carries.
    pub fn users_of(&self, i: usize) -> &[RecordMeta] {
        if self.groups.is_empty() {
            return std::slice::from_ref(&self.users[i]);
        }
        let start = if i == 0 {
            0
        } else {
            self.groups[i - 1].end as usize
        };
        &self.users[start..self.groups[i].end as usize]
    }

    /// The shard Kinesis record `i` was aggregated for, if it was.
    pub fn expected(&self, i: usize) -> Option<&Arc<str>> {
        self.groups.get(i).and_then(|g| g.expected.as_ref())
    }

    /// The Kinesis records at `indices` (in that order), for a retry.
    pub fn subset(&self, indices: &[usize]) -> Carried {
        if self.groups.is_empty() {
            return Carried::one_each(indices.iter().map(|&i| self.users[i]).collect());
        }
        let mut out = Carried::grouped(indices.len(), self.users.len());
        for &i in indices {
            out.push_group(self.users_of(i), self.groups[i].expected.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> RecordMeta {
        RecordMeta {
            intended_ns: seq,
            sent_ns: seq,
            seq,
            bytes: 1,
        }
    }

    fn seqs(users: &[RecordMeta]) -> Vec<u64> {
        users.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn one_each_and_grouped_records_name_their_user_records() {
        let one = Carried::one_each((0..3).map(meta).collect());
        assert_eq!(one.len(), 3);
        assert_eq!(seqs(one.users_of(1)), [1]);
        assert_eq!(one.expected(1), None);
        assert_eq!(seqs(one.subset(&[2, 0]).users()), [2, 0]);

        let mut g = Carried::grouped(3, 6);
        let shard: Arc<str> = Arc::from("shardId-000000000001");
        g.push_group(&[meta(0), meta(1), meta(2)], Some(shard.clone()));
        g.push_group(&[meta(3)], None);
        g.push_group(&[meta(4), meta(5)], Some(shard.clone()));
        assert_eq!(g.len(), 3);
        assert_eq!(g.users().len(), 6);
        assert_eq!(seqs(g.users_of(0)), [0, 1, 2]);
        assert_eq!(seqs(g.users_of(1)), [3]);
        assert_eq!(seqs(g.users_of(2)), [4, 5]);
        assert_eq!(g.expected(0), Some(&shard));
        assert_eq!(g.expected(1), None);
        // A retry of the first and last Kinesis records carries all of their user records.
        let retry = g.subset(&[0, 2]);
        assert_eq!(retry.len(), 2);
        assert_eq!(seqs(retry.users_of(0)), [0, 1, 2]);
        assert_eq!(seqs(retry.users_of(1)), [4, 5]);
        assert_eq!(retry.expected(1), Some(&shard));
    }
}
