//! The records of `__consumer_offsets` in the binary layout of Kafka's offset-commit records
//! ([`encode_record`], [`decode_record`]), and the in-memory replay of one offsets partition
//! ([`OffsetsPartition`]):
//! - key (key version 1): version (i16 BE = 1), group, topic (each an i16 BE length + UTF-8),
//!   partition (i32 BE);
//! - value (value version 3): version (i16 BE = 3), offset (i64 BE), leader epoch (i32 BE),
//!   metadata (i16 BE length + UTF-8), commit timestamp (i64 BE, ms);
//! - a record without a value (a tombstone) removes the offset (OffsetDelete, DeleteGroups,
//!   deleted topics).
//!
//! Group-metadata records (key version 2) are decoded by `super::group_records` and kept
//! apart ([`OffsetsPartition::take_group_metadata`]).
//!
//! May depend on: `group` (offsets types, errors, group records), `bytes`.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, BytesMut};

use super::offsets::{CommittedOffset, TopicPartition};
use super::GroupError;

/// Key version of an offset-commit record (Kafka's OffsetCommitKey v1).
const RECORD_KEY_VERSION: i16 = 1;
/// Value version of an offset-commit record (Kafka's OffsetCommitValue v3).
const RECORD_VALUE_VERSION: i16 = 3;

fn put_str16(b: &mut BytesMut, s: &str) -> Result<(), GroupError> {
    let len = i16::try_from(s.len())
        .map_err(|_| GroupError::Storage(format!("name of {} bytes is too long", s.len())))?;
    b.put_i16(len);
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

fn get_str16(b: &mut &[u8]) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(b.get_i16()).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b[..len].to_vec()).ok()?;
    b.advance(len);
    Some(s)
}

/// The record that stores (`Some`) or deletes (`None`, a tombstone) one committed offset in
/// an offsets partition: (key, value).
pub fn encode_record(
    group: &str,
    tp: &TopicPartition,
    offset: Option<&CommittedOffset>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), GroupError> {
    let mut k = BytesMut::with_capacity(10 + group.len() + tp.topic.len());
    k.put_i16(RECORD_KEY_VERSION);
    put_str16(&mut k, group)?;
    put_str16(&mut k, &tp.topic)?;
    k.put_i32(tp.partition);
    let v = match offset {
        None => None,
        Some(o) => {
            let mut v = BytesMut::with_capacity(24 + o.metadata.len());
            v.put_i16(RECORD_VALUE_VERSION);
            v.put_i64(o.offset);
            v.put_i32(o.leader_epoch);
            put_str16(&mut v, &o.metadata)?;
            v.put_i64(o.commit_timestamp);
            Some(v.to_vec())
        }
    };
    Ok((k.to_vec(), v))
}

/// What one record of an offsets partition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub group: String,
    pub tp: TopicPartition,
    /// `None`: the offset was deleted.
    pub offset: Option<CommittedOffset>,
}

/// Reads a record written by [`encode_record`]; `None` for records of another kind or
/// version (skipped when loading, as Kafka skips group-metadata records it does not need).
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Option<OffsetRecord> {
    let mut k = key;
    if k.remaining() < 2 || k.get_i16() != RECORD_KEY_VERSION {
        return None;
    }
    let group = get_str16(&mut k)?;
    let topic = get_str16(&mut k)?;
    if k.remaining() != 4 {
        return None;
    }
    let tp = TopicPartition::new(topic, k.get_i32());
    let offset = match value {
        None => None,
        Some(mut v) => {
            if v.remaining() < 2 + 8 + 4 || v.get_i16() != RECORD_VALUE_VERSION {
                return None;
            }
            let offset = v.get_i64();
            let leader_epoch = v.get_i32();
            let metadata = get_str16(&mut v)?;
            if v.remaining() != 8 {
                return None;
            }
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp: v.get_i64(),
            })
        }
    };
    Some(OffsetRecord { group, tp, offset })
}

/// The committed offsets of one offsets partition, built by replaying its records in
/// offset order (later records win; tombstones delete), then kept current by the leader.
#[derive(Debug, Clone, Default)]
pub struct OffsetsPartition {
    groups: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    /// The latest group-metadata record of each group (`super::group_records`), while
    /// loading; taken by the loader with [`OffsetsPartition::take_group_metadata`].
    metadata: BTreeMap<String, super::group_records::GroupSnapshot>,
    /// Transactional commits waiting for their transaction's marker (`txn_offsets`).
    pub txn: super::txn_offsets::TxnOffsets,
}

impl OffsetsPartition {
    /// Applies one record (key and value as stored); unknown records are ignored.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(r) = decode_record(key, value) {
            self.apply(r);
        } else if let Some((group, snapshot)) =
            super::group_records::decode_group_record(key, value)
        {
            match snapshot {
                Some(s) => self.metadata.insert(group, s),
                None => self.metadata.remove(&group),
            };
        }
    }

    /// The groups' latest metadata records seen by [`OffsetsPartition::replay`] (deleted
    /// groups excluded); leaves none behind.
    pub fn take_group_metadata(&mut self) -> Vec<(String, super::group_records::GroupSnapshot)> {
        std::mem::take(&mut self.metadata).into_iter().collect()
    }

    pub fn apply(&mut self, r: OffsetRecord) {
        match r.offset {
            Some(o) => {
                self.groups.entry(r.group).or_default().insert(r.tp, o);
            }
            None => {
                if let Some(g) = self.groups.get_mut(&r.group) {
                    g.remove(&r.tp);
                    if g.is_empty() {
                        self.groups.remove(&r.group);
                    }
                }
            }
        }
    }

    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<CommittedOffset> {
        self.groups.get(group)?.get(tp).cloned()
    }

    /// A group's offsets, ordered by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(TopicPartition, CommittedOffset)> {
        self.groups
            .get(group)
            .map(|g| g.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect())
            .unwrap_or_default()
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Every (group, topic partition) with an offset for `topic`.
    pub fn of_topic(&self, topic: &str) -> Vec<(String, TopicPartition)> {
        self.groups
            .iter()
            .flat_map(|(g, tps)| {
                tps.keys()
                    .filter(|tp| tp.topic == topic)
                    .map(move |tp| (g.clone(), tp.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_encoding_round_trips_and_is_kafkas_layout() {
        let tp = TopicPartition::new("orders", 2);
        let o = off(42, "m");
        let (k, v) = encode_record("g", &tp, Some(&o)).unwrap();
        // version 1, "g", "orders", partition 2
        assert_eq!(
            k,
            [&[0, 1, 0, 1, b'g', 0, 6][..], b"orders", &[0, 0, 0, 2]].concat()
        );
        let v = v.unwrap();
        assert_eq!(&v[..2], &[0, 3]);
        assert_eq!(v.len(), 2 + 8 + 4 + 2 + 1 + 8);
        assert_eq!(
            decode_record(&k, Some(&v)),
            Some(OffsetRecord {
                group: "g".into(),
                tp: tp.clone(),
                offset: Some(o)
            })
        );
        let (k2, none) = encode_record("g", &tp, None).unwrap();
        assert_eq!(k2, k);
        assert_eq!(none, None);
        assert_eq!(decode_record(&k, None).unwrap().offset, None);
        // Other record kinds and damaged values are skipped, not misread.
        assert_eq!(decode_record(&[0, 2, 0, 1, b'g'], None), None);
        assert_eq!(decode_record(&k, Some(&v[..v.len() - 1])), None);
        assert_eq!(decode_record(&k[..k.len() - 1], Some(&v)), None);
    }

    #[test]
    fn replay_loads_latest_offsets_and_applies_tombstones() {
        let mut p = OffsetsPartition::default();
        let rec = |g: &str, t: &str, part: i32, o: Option<i64>| {
            let c = o.map(|o| off(o, ""));
            encode_record(g, &TopicPartition::new(t, part), c.as_ref()).unwrap()
        };
        let log = [
            rec("a", "t", 0, Some(1)),
            rec("a", "t", 1, Some(5)),
            rec("b", "t", 0, Some(7)),
            rec("a", "t", 0, Some(3)),
            rec("b", "t", 0, None),
            rec("c", "u", 0, Some(9)),
            (vec![9, 9, 9], Some(vec![1])),
        ];
        for (k, v) in &log {
            p.replay(k, v.as_deref());
        }
        assert_eq!(p.groups(), vec!["a".to_string(), "c".to_string()]);
        assert_eq!(p.get("a", &TopicPartition::new("t", 0)), Some(off(3, "")));
        assert_eq!(p.group_offsets("a").len(), 2);
        assert_eq!(p.get("b", &TopicPartition::new("t", 0)), None);
        assert_eq!(
            p.of_topic("u"),
            vec![("c".to_string(), TopicPartition::new("u", 0))]
        );
    }

    fn off(offset: i64, meta: &str) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: meta.into(),
            commit_timestamp: 1_700_000_000_000,
        }
    }
}
