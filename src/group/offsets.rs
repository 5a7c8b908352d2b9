//! Committed offsets: the [`OffsetStore`] seam and its single-broker implementation, a sled
//! tree in the broker's database that is fsynced before a commit is acknowledged.
//!
//! Tree `group_offsets`, one entry per (group, topic, partition):
//! - key: group length (u32 BE), group, topic length (u16 BE), topic, partition (i32 BE), so
//!   one group's offsets are one key prefix;
//! - value: format version 1 (u8), offset (i64 BE), leader epoch (i32 BE), commit timestamp
//!   (i64 BE, ms), then the metadata string's UTF-8 bytes.
//!
//! Tree `group_txn_offsets` holds a single broker's transactional offset commits until their
//! transaction ends (TxnOffsetCommit): key = producer id (i64 BE) + the key above, value as
//! above. The transaction coordinator's marker for the group's offsets partition moves them
//! into `group_offsets` (commit) or drops them (abort): [`OffsetStore::end_txn`].
//!
//! In a cluster the offsets live in the internal topic `__consumer_offsets` instead (the
//! store is `offsets_topic::ReplicatedOffsetStore`), as records in Kafka's layout
//! ([`super::records`]).
//!
//! May depend on: `sled`. Nothing of groups' membership lives here.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, BytesMut};

use super::GroupError;

/// The sled tree holding committed offsets.
pub const OFFSETS_TREE: &str = "group_offsets";
/// The sled tree holding a single broker's transactional offsets until their transaction ends.
pub const TXN_OFFSETS_TREE: &str = "group_txn_offsets";

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
    /// Stores `group`'s metadata record (`None`: the group was deleted), made durable by the
    /// next [`sync`](OffsetStore::sync) like offsets. On one broker membership is not kept
    /// (members rejoin after a restart): nothing to do.
    fn put_group(
        &self,
        _group: &str,
        _record: Option<&super::group_records::GroupSnapshot>,
    ) -> Result<(), GroupError> {
        Ok(())
    }
    /// Stores offsets committed inside `producer_id`'s open transaction (TxnOffsetCommit):
    /// durable after [`OffsetStore::sync`] like any commit, but invisible to reads until the
    /// transaction's commit marker reaches the store (`group::txn_offsets`).
    fn put_txn(
        &self,
        _group: &str,
        _producer_id: i64,
        _producer_epoch: i16,
        _offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        Err(GroupError::TransactionsUnsupported)
    }
    /// The partitions of `group` with transactional offsets waiting for their transaction.
    fn pending_txn(&self, _group: &str) -> Result<Vec<TopicPartition>, GroupError> {
        Ok(Vec::new())
    }
    /// Ends `producer_id`'s transaction in a store that has no offsets topic to carry the
    /// marker (a single broker): a commit makes its offsets visible, an abort drops them.
    /// Returns false when this store cannot (markers reach it through its log instead).
    fn end_txn(&self, _producer_id: i64, _commit: bool) -> Result<bool, GroupError> {
        Ok(false)
    }
}

/// Offsets in a sled tree of the broker's database.
pub struct SledOffsetStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Transactional offsets waiting for their transaction (see the module documentation).
    txn: sled::Tree,
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
            txn: db.open_tree(TXN_OFFSETS_TREE).map_err(storage)?,
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

    fn put_txn(
        &self,
        group: &str,
        producer_id: i64,
        _producer_epoch: i16,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        let mut batch = sled::Batch::default();
        for (tp, o) in offsets {
            let mut k = producer_id.to_be_bytes().to_vec();
            k.extend(key(group, tp));
            batch.insert(k, encode_value(o));
        }
        self.txn.apply_batch(batch).map_err(storage)
    }

    fn pending_txn(&self, group: &str) -> Result<Vec<TopicPartition>, GroupError> {
        let mut out = Vec::new();
        for k in self.txn.iter().keys() {
            let k = k.map_err(storage)?;
            if let Some((g, tp)) = k.get(8..).and_then(parse_key) {
                if g == group {
                    out.push(tp);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn end_txn(&self, producer_id: i64, commit: bool) -> Result<bool, GroupError> {
        let mut gone = sled::Batch::default();
        let mut applied = sled::Batch::default();
        for kv in self.txn.scan_prefix(producer_id.to_be_bytes()) {
            let (k, v) = kv.map_err(storage)?;
            if commit {
                if let Some(inner) = k.get(8..) {
                    applied.insert(inner, v);
                }
            }
            gone.remove(k);
        }
        // Applied first: a crash in between applies them again at the next marker.
        self.tree.apply_batch(applied).map_err(storage)?;
        self.txn.apply_batch(gone).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

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
