//! The metadata quorum's state machine: the [`ClusterImage`] plus the last applied log id and
//! membership, persisted in the sled tree `raft_sm` of the broker's database.
//!
//! - `apply` runs each committed command through [`ClusterImage::apply`] (deterministic, so
//!   every broker ends with the same image) and answers one [`CommandResponse`] per entry,
//!   blank and membership entries included. A refused command is a `Rejected` answer, never a
//!   storage error. After each batch the state is written and flushed — metadata changes are
//!   rare, and a durable applied state means a restart never needs log entries that were
//!   purged behind a snapshot.
//! - A snapshot is the image as JSON; its last log id and membership travel in openraft's
//!   snapshot meta. The current snapshot is kept (meta and bytes, flushed) so it can be sent
//!   to a lagging broker; installing one replaces the image.
//! - Every applied batch or installed snapshot is published on a `tokio::sync::watch`
//!   channel ([`StateMachine::subscribe`]): the broker reads the newest image with one
//!   `borrow()` and an `Arc` clone, without going through Raft.

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return the
// same type so `?` carries it through unchanged instead of boxing and unboxing it.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{BrokerNode, CommandResponse, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::metadata::ClusterImage;

/// Name of the sled tree holding the state machine and its current snapshot.
pub const SM_TREE: &str = "raft_sm";

const KEY_STATE: &[u8] = b"state";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

type Meta = SnapshotMeta<NodeId, BrokerNode>;
type Membership = StoredMembership<NodeId, BrokerNode>;

/// The newest applied image and the log id it reflects, as published to readers.
#[derive(Debug, Clone, Default)]
pub struct AppliedImage {
    /// The last log entry (or snapshot) applied; `None` before anything was.
    pub applied: Option<LogId>,
    pub image: Arc<ClusterImage>,
}

impl AppliedImage {
    /// The applied log index, 0 before anything was applied.
    pub fn applied_index(&self) -> u64 {
        self.applied.map(|l| l.index).unwrap_or(0)
    }
}

/// What is persisted under `state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId>,
    membership: Membership,
    image: Arc<ClusterImage>,
}

/// The state machine given to openraft.
pub struct StateMachine {
    tree: sled::Tree,
    state: SmState,
    published: watch::Sender<AppliedImage>,
    /// Serialises writes of the current snapshot (builders run concurrently with `apply`).
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    tree: sled::Tree,
    state: SmState,
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

/// sled's blocking flush, off the async worker threads.
async fn flush(tree: &sled::Tree) -> Result<(), StorageError> {
    let tree = tree.clone();
    tokio::task::spawn_blocking(move || tree.flush())
        .await
        .map_err(sm_write_err)?
        .map_err(sm_write_err)?;
    Ok(())
}

impl StateMachine {
    /// Opens (or creates) the state machine tree in `db`, restoring the persisted state.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let tree = db.open_tree(SM_TREE).map_err(sm_read_err)?;
        let state: SmState = match tree.get(KEY_STATE).map_err(sm_read_err)? {
            Some(v) => serde_json::from_slice(&v).map_err(sm_read_err)?,
            None => SmState::default(),
        };
        let (published, _) = watch::channel(AppliedImage {
            applied: state.last_applied,
            image: state.image.clone(),
        });
        Ok(Self {
            tree,
            state,
            published,
            snapshot_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// A receiver of every newly applied image (the current one is available at once).
    pub fn subscribe(&self) -> watch::Receiver<AppliedImage> {
        self.published.subscribe()
    }

    /// Writes and flushes the state, then publishes the image.
    async fn persist_and_publish(&mut self) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&self.state).map_err(sm_write_err)?;
        self.tree.insert(KEY_STATE, bytes).map_err(sm_write_err)?;
        flush(&self.tree).await?;
        self.published.send_replace(AppliedImage {
            applied: self.state.last_applied,
            image: self.state.image.clone(),
        });
        Ok(())
    }
}

/// Stores `meta` + `data` as the current snapshot unless a newer one is already stored
/// (or always, for an installed snapshot), and flushes.
async fn store_snapshot(
    tree: &sled::Tree,
    lock: &tokio::sync::Mutex<()>,
    meta: &Meta,
    data: &[u8],
    force: bool,
) -> Result<(), StorageError> {
    let _guard = lock.lock().await;
    // The error keeps its type name and cause chain (AnyError::from_dyn), not only its text.
    let write_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
        StorageIOError::write_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None)).into()
    };
    if !force {
        if let Some(v) = tree.get(KEY_SNAPSHOT_META).map_err(|e| write_err(&e))? {
            let current: Meta = serde_json::from_slice(&v).map_err(|e| write_err(&e))?;
            if current.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
    }
    let mut batch = sled::Batch::default();
    batch.insert(
        KEY_SNAPSHOT_META,
        serde_json::to_vec(meta).map_err(|e| write_err(&e))?,
    );
    batch.insert(KEY_SNAPSHOT_DATA, data);
    tree.apply_batch(batch).map_err(|e| write_err(&e))?;
    flush(tree).await
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&*self.state.image).map_err(sm_read_err)?;
        let snapshot_id = match self.state.last_applied {
            Some(l) => format!("{}-{}-{:016x}", l.leader_id, l.index, rand::random::<u64>()),
            None => format!("empty-{:016x}", rand::random::<u64>()),
        };
        let meta = Meta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        store_snapshot(&self.tree, &self.snapshot_lock, &meta, &data, false).await?;
        tracing::debug!(last_log_id = ?meta.last_log_id, bytes = data.len(), "metadata snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.state.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::NoCommand,
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::NoCommand
                }
                EntryPayload::Normal(cmd) => {
                    // Copy-on-write: readers keep the image they hold.
                    let image = Arc::make_mut(&mut self.state.image);
                    match image.apply(&cmd.command) {
                        Ok(()) => CommandResponse::Applied,
                        Err(e) => {
                            tracing::debug!(log_id = %entry.log_id, error = %e, "metadata command rejected");
                            CommandResponse::Rejected(e)
                        }
                    }
                }
            };
            responses.push(response);
        }
        if !responses.is_empty() {
            self.persist_and_publish().await?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            tree: self.tree.clone(),
            state: self.state.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: ClusterImage = serde_json::from_slice(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        store_snapshot(&self.tree, &self.snapshot_lock, meta, &data, true).await?;
        self.state = SmState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            image: Arc::new(image),
        };
        self.persist_and_publish().await?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "metadata snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(m) = self.tree.get(KEY_SNAPSHOT_META).map_err(sm_read_err)? else {
            return Ok(None);
        };
        let meta: Meta = serde_json::from_slice(&m).map_err(sm_read_err)?;
        let data = self
            .tree
            .get(KEY_SNAPSHOT_DATA)
            .map_err(sm_read_err)?
            .map(|d| d.to_vec())
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
