//! The Raft log, vote, committed id and purge point of the metadata quorum, in one sled tree
//! (`raft_log`) of the broker's database.
//!
//! Keys: `e` + index (big-endian u64) → entry (JSON); `vote`, `committed`, `purged` → JSON.
//! Big-endian indexes sort numerically, and every other key sorts outside `e`…`f`, so a range
//! scan over `e…` sees exactly the entries.
//!
//! Durability, as openraft requires:
//! - an append writes its entries (they are readable when `append` returns) and hands the
//!   `LogFlushed` callback to one flusher thread, which calls sled's blocking `flush()` and
//!   only then completes the callbacks. Appends arriving while a flush runs are collected and
//!   covered by the next single flush (group commit).
//! - `save_vote` and `truncate` wait for a flush through the same thread before returning.
//! - sled's `flush_async` is never used (concurrent calls can deadlock on sled 0.34).
//!
//! Writes are applied to sled in the order openraft submits them, and a flush covers every
//! write made before it, so the order of durable writes is the submission order.
//!
//! Never delete this tree on a voter: a follower that loses acknowledged entries can make the
//! quorum lose committed metadata.

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return the
// same type so `?` carries it through unchanged instead of boxing and unboxing it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Name of the sled tree holding the Raft log.
pub const LOG_TREE: &str = "raft_log";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
/// First key after every entry key.
const ENTRIES_END: &[u8] = b"f";

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// A flush of the Raft log did not happen; every waiter of the failed round gets a clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    /// sled could not write the tree to disk.
    #[error(
        "cannot flush the raft log (sled tree `{LOG_TREE}`) to disk: {0}; check the data \
         directory's disk (full, read-only or failing)"
    )]
    Sled(#[source] Arc<sled::Error>),
    /// The flusher thread is gone.
    #[error("the raft log flusher thread has stopped (the broker is shutting down)")]
    FlusherStopped,
}

/// Something waiting for the next flush.
enum Waiter {
    Append(LogFlushed<TypeConfig>),
    Sync(oneshot::Sender<Result<(), FlushError>>),
}

/// The log store given to openraft. Cloning it is not offered: openraft owns one, and its
/// readers are [`LogReader`]s.
pub struct LogStore {
    tree: sled::Tree,
    /// To the flusher thread; the thread ends when the store is dropped.
    flusher: mpsc::Sender<Waiter>,
}

/// A read handle on the log (openraft gives one to each replication stream).
#[derive(Clone)]
pub struct LogReader {
    tree: sled::Tree,
}

impl LogStore {
    /// Opens (or creates) the log tree in `db` and starts its flusher thread.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        let tree = db.open_tree(LOG_TREE)?;
        let (tx, rx) = mpsc::channel();
        let flush_tree = tree.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flusher(flush_tree, rx))
            .map_err(sled::Error::Io)?;
        Ok(Self { tree, flusher: tx })
    }

    /// Waits until everything written so far is on disk.
    async fn sync(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.flusher
            .send(Waiter::Sync(tx))
            .map_err(|_| FlushError::FlusherStopped)?;
        rx.await.unwrap_or(Err(FlushError::FlusherStopped))
    }

    fn reader(&self) -> LogReader {
        LogReader {
            tree: self.tree.clone(),
        }
    }
}

/// The flusher thread: one blocking `flush()` per round, covering every waiter queued so far.
fn flusher(tree: sled::Tree, rx: mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        round.extend(rx.try_iter());
        let result = tree
            .flush()
            .map(|_| ())
            .map_err(|e| FlushError::Sled(Arc::new(e)));
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot flush the raft log; the metadata quorum stops");
        }
        for w in round {
            match w {
                Waiter::Append(cb) => cb.log_io_completed(result.clone().map_err(io::Error::other)),
                Waiter::Sync(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}

fn get_json<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, AnyError> {
    match tree.get(key).map_err(|e| AnyError::new(&e))? {
        Some(v) => Ok(Some(
            serde_json::from_slice(&v).map_err(|e| AnyError::new(&e))?,
        )),
        None => Ok(None),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, AnyError> {
    serde_json::to_vec(v).map_err(|e| AnyError::new(&e))
}

impl LogReader {
    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end: Option<u64> = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let from = entry_key(start);
        let iter = match end {
            Some(e) => self.tree.range(from..entry_key(e)),
            None => self.tree.range(from.as_slice()..ENTRIES_END),
        };
        iter.map(|kv| {
            let (_, v) = kv.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            serde_json::from_slice::<Entry>(&v)
                .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)).into())
        })
        .collect()
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self
            .tree
            .range(entry_key(0).as_slice()..ENTRIES_END)
            .next_back()
            .transpose()
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        match last {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(&v)
                    .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                Ok(Some(e.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader().entries(range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            get_json(&self.tree, KEY_PURGED).map_err(StorageIOError::read_logs)?;
        let last_log_id = self.reader().last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = to_json(vote).map_err(StorageIOError::write_vote)?;
        self.tree
            .insert(KEY_VOTE, bytes)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        // Durable before returning: a vote forgotten in a crash could be granted twice.
        self.sync()
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(get_json(&self.tree, KEY_VOTE).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: it only lets a restart re-apply committed entries sooner; losing the
        // latest value is harmless (openraft learns the commit index from the leader again).
        let bytes = to_json(&committed).map_err(StorageIOError::write)?;
        self.tree
            .insert(KEY_COMMITTED, bytes)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c: Option<Option<LogId>> =
            get_json(&self.tree, KEY_COMMITTED).map_err(StorageIOError::read)?;
        Ok(c.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = to_json(&entry).map_err(StorageIOError::write_logs)?;
            batch.insert(&entry_key(entry.log_id.index), bytes);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // Readable now; durable when the flusher completes the callback.
        if let Err(mpsc::SendError(Waiter::Append(cb))) =
            self.flusher.send(Waiter::Append(callback))
        {
            cb.log_io_completed(Err(io::Error::other(FlushError::FlusherStopped)));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self
            .tree
            .range(entry_key(log_id.index).as_slice()..ENTRIES_END)
        {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.remove(k);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // Flushed so that a crash cannot bring back the conflicting tail after newer entries
        // at the same indexes were acknowledged.
        self.sync()
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point and the removal in one atomic batch. Not flushed: if a crash undoes
        // it, the entries are simply still there (they are applied and in a snapshot).
        let mut batch = sled::Batch::default();
        batch.insert(
            KEY_PURGED,
            to_json(&log_id).map_err(StorageIOError::write_logs)?,
        );
        for kv in self
            .tree
            .range(entry_key(0).as_slice()..=entry_key(log_id.index).as_slice())
        {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.remove(k);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }
}
