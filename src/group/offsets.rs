//! Committed offsets: the [`OffsetStore`] seam and its single-broker implementation, a sled
//! tree in the broker's database that is fsynced before a commit is acknowledged.
//!
//! Tree `group_offsets`, one entry per (group, topic, partition):
//! - key: group length (u32 BE), group, topic length (u16 BE), topic, partition (i32 BE), so
//!   one group's offsets are one key prefix;
//! - value: format version 1 (u8), offset (i64 BE), leader epoch (i32 BE), commit timestamp
//!   (i64 BE, ms), then the metadata string's UTF-8 bytes.
//!
//! In a cluster the offsets live in the internal topic `__consumer_offsets` instead (the
//! store is `offsets_topic::ReplicatedOffsetStore`); its records use the binary layout of
//! Kafka's offset-commit records, encoded and replayed here ([`encode_record`],
//! [`OffsetsPartition`]):
//! - key (key version 1): version (i16 BE = 1), group, topic (each an i16 BE length + UTF-8),
//!   partition (i32 BE);
//! - value (value version 3): version (i16 BE = 3), offset (i64 BE), leader epoch (i32 BE),
//!   metadata (i16 BE length + UTF-8), commit timestamp (i64 BE, ms);
//! - a record without a value (a tombstone) removes the offset (OffsetDelete, DeleteGroups,
//!   deleted topics).
//!
//! May depend on: `sled`. Nothing of groups' membership lives here.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, BytesMut};

use super::GroupError;

/// The sled tree holding committed offsets.
pub const OFFSETS_TREE: &str = "group_offsets";

const VALUE_VERSION: u8 = 1;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    /// Free text the client stored with the offset ("" when none).
    pub metadata: String,
    /// Milliseconds since the epoch when the commit was accepted.
    pub commit_timestamp: i64,
}

/// A future returned by [`OffsetStore::sync`].
pub type SyncFuture = Pin<Box<dyn Future<Output = Result<(), GroupError>> + Send + 'static>>;

/// Where committed offsets are kept. Writes become visible to reads at once; [`sync`] makes
/// every write so far durable (here: fsync; in the cluster: replicated), and OffsetCommit
/// answers only after it.
///
/// [`sync`]: OffsetStore::sync
pub trait OffsetStore: Send + Sync {
    /// Stores offsets for one group, atomically.
    fn put(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError>;
    /// Makes every earlier write of `group` durable (on one broker every write).
    fn sync(&self, group: &str) -> SyncFuture;
    /// Whether this broker may serve `group`'s offsets now: `CoordinatorLoadInProgress` while
    /// they are being loaded, `NotCoordinator` when another broker has them.
    fn ready(&self, _group: &str) -> Result<(), GroupError> {
        Ok(())
    }
    fn get(&self, group: &str, tp: &TopicPartition) -> Result<Option<CommittedOffset>, GroupError>;
    /// Every committed offset of a group, ordered by topic and partition.
    fn group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, CommittedOffset)>, GroupError>;
    /// Removes some of a group's offsets.
    fn remove(&self, group: &str, tps: &[TopicPartition]) -> Result<(), GroupError>;
    /// Removes all of a group's offsets.
    fn remove_group(&self, group: &str) -> Result<(), GroupError>;
    /// Removes every group's offsets of a deleted topic.
    fn remove_topic(&self, topic: &str) -> Result<(), GroupError>;
    /// Every group that has committed offsets.
    fn groups(&self) -> Result<Vec<String>, GroupError>;
}

/// Offsets in a sled tree of the broker's database.
pub struct SledOffsetStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn storage(e: sled::Error) -> GroupError {
    GroupError::Storage(e.to_string())
}

fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + group.len());
    k.put_u32(group.len() as u32);
    k.extend_from_slice(group.as_bytes());
    k
}

fn key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.put_u16(tp.topic.len() as u16);
    k.extend_from_slice(tp.topic.as_bytes());
    k.put_i32(tp.partition);
    k
}

/// Splits a key into (group, topic partition); `None` if it is not one of ours.
fn parse_key(mut k: &[u8]) -> Option<(String, TopicPartition)> {
    if k.remaining() < 4 {
        return None;
    }
    let glen = k.get_u32() as usize;
    if k.remaining() < glen {
        return None;
    }
    let group = String::from_utf8(k[..glen].to_vec()).ok()?;
    k.advance(glen);
    if k.remaining() < 2 {
        return None;
    }
    let tlen = k.get_u16() as usize;
    if k.remaining() != tlen + 4 {
        return None;
    }
    let topic = String::from_utf8(k[..tlen].to_vec()).ok()?;
    k.advance(tlen);
    Some((group, TopicPartition::new(topic, k.get_i32())))
}

fn encode_value(o: &CommittedOffset) -> Vec<u8> {
    let mut v = BytesMut::with_capacity(21 + o.metadata.len());
    v.put_u8(VALUE_VERSION);
    v.put_i64(o.offset);
    v.put_i32(o.leader_epoch);
    v.put_i64(o.commit_timestamp);
    v.extend_from_slice(o.metadata.as_bytes());
    v.to_vec()
}

fn decode_value(mut v: &[u8]) -> Result<CommittedOffset, GroupError> {
    if v.remaining() < 21 || v[0] != VALUE_VERSION {
        return Err(GroupError::Storage(
            "unreadable committed offset record (unknown format)".into(),
        ));
    }
    v.advance(1);
    let offset = v.get_i64();
    let leader_epoch = v.get_i32();
    let commit_timestamp = v.get_i64();
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        commit_timestamp,
        metadata: String::from_utf8_lossy(v).into_owned(),
    })
}

impl SledOffsetStore {
    /// Opens (or creates) the offsets tree in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, GroupError> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(OFFSETS_TREE).map_err(storage)?,
        })
    }
}

impl OffsetStore for SledOffsetStore {
    fn put(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        let mut batch = sled::Batch::default();
        for (tp, o) in offsets {
            batch.insert(key(group, tp), encode_value(o));
        }
        self.tree.apply_batch(batch).map_err(storage)
    }

    fn sync(&self, _group: &str) -> SyncFuture {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| GroupError::Storage(format!("flush task failed: {e}")))?
                .map(|_| ())
                .map_err(storage)
        })
    }

    fn get(&self, group: &str, tp: &TopicPartition) -> Result<Option<CommittedOffset>, GroupError> {
        match self.tree.get(key(group, tp)).map_err(storage)? {
            Some(v) => decode_value(&v).map(Some),
            None => Ok(None),
        }
    }

    fn group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, CommittedOffset)>, GroupError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(group_prefix(group)) {
            let (k, v) = kv.map_err(storage)?;
            if let Some((g, tp)) = parse_key(&k) {
                if g == group {
                    out.push((tp, decode_value(&v)?));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn remove(&self, group: &str, tps: &[TopicPartition]) -> Result<(), GroupError> {
        let mut batch = sled::Batch::default();
        for tp in tps {
            batch.remove(key(group, tp));
        }
        self.tree.apply_batch(batch).map_err(storage)
    }

    fn remove_group(&self, group: &str) -> Result<(), GroupError> {
        let mut batch = sled::Batch::default();
        for k in self.tree.scan_prefix(group_prefix(group)).keys() {
            batch.remove(k.map_err(storage)?);
        }
        self.tree.apply_batch(batch).map_err(storage)
    }

    fn remove_topic(&self, topic: &str) -> Result<(), GroupError> {
        let mut batch = sled::Batch::default();
        for k in self.tree.iter().keys() {
            let k = k.map_err(storage)?;
            if parse_key(&k).is_some_and(|(_, tp)| tp.topic == topic) {
                batch.remove(k);
            }
        }
        self.tree.apply_batch(batch).map_err(storage)
    }

    fn groups(&self) -> Result<Vec<String>, GroupError> {
        let mut out: Vec<String> = Vec::new();
        for k in self.tree.iter().keys() {
            let k = k.map_err(storage)?;
            if let Some((g, _)) = parse_key(&k) {
                if out.last() != Some(&g) {
                    out.push(g);
                }
            }
        }
        out.dedup();
        Ok(out)
    }
}

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
}

impl OffsetsPartition {
    /// Applies one record (key and value as stored); unknown records are ignored.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(r) = decode_record(key, value) {
            self.apply(r);
        }
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

    fn store() -> (SledOffsetStore, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (SledOffsetStore::open(&db).unwrap(), db)
    }

    fn off(offset: i64, meta: &str) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: meta.into(),
            commit_timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn put_get_list_remove() {
        let (s, _db) = store();
        s.put(
            "g1",
            &[
                (TopicPartition::new("t", 1), off(10, "x")),
                (TopicPartition::new("t", 0), off(5, "")),
            ],
        )
        .unwrap();
        // A group whose name is a prefix of another's must not see its offsets.
        s.put("g", &[(TopicPartition::new("t", 0), off(1, "é"))])
            .unwrap();
        assert_eq!(
            s.get("g1", &TopicPartition::new("t", 1)).unwrap(),
            Some(off(10, "x"))
        );
        let all = s.group_offsets("g1").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, TopicPartition::new("t", 0));
        assert_eq!(s.group_offsets("g").unwrap()[0].1, off(1, "é"));
        let mut groups = s.groups().unwrap();
        groups.sort();
        assert_eq!(groups, vec!["g".to_string(), "g1".to_string()]);
        s.remove("g1", &[TopicPartition::new("t", 0)]).unwrap();
        assert_eq!(s.group_offsets("g1").unwrap().len(), 1);
        s.remove_topic("t").unwrap();
        assert!(s.groups().unwrap().is_empty());
    }

    #[test]
    fn remove_group_keeps_others() {
        let (s, _db) = store();
        s.put("a", &[(TopicPartition::new("t", 0), off(1, ""))])
            .unwrap();
        s.put("b", &[(TopicPartition::new("t", 0), off(2, ""))])
            .unwrap();
        s.remove_group("a").unwrap();
        assert_eq!(s.groups().unwrap(), vec!["b".to_string()]);
    }
}
