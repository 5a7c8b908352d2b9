//! Coordinator failover: the replica manager's role listener for `__transaction_state`.
//!
//! On becoming leader of a partition, the partition is marked loading (its ids answer
//! COORDINATOR_LOAD_IN_PROGRESS), its log is replayed from start to end (the last record of
//! each id wins; a tombstone forgets it), and the transactions found in PrepareCommit or
//! PrepareAbort get their markers sent again and are completed; ongoing ones go on (their
//! producers may still commit them, or the timeout aborts them). On losing leadership the
//! partition is dropped: its ids answer NOT_COORDINATOR and its completion tasks stop.
//!
//! As for the offsets topic, the log is read to its end, not to the high watermark: the
//! leader's log is the partition's truth from now on.
//!
//! [`Fanout`] lets the offsets loader and this one share the replica manager's one listener.
//!
//! May depend on: `txn::coordinator`, `txn::state`, `log`, `replication` (the listener trait).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::coordinator::TxnCoordinator;
use super::state::{decode_key, decode_value, TxnMeta};
use super::TXN_TOPIC;
use crate::log::{LogError, PartitionLog};
use crate::replication::manager::RoleListener;

/// Replays a `__transaction_state` partition: the last state of every id.
pub fn load_partition(log: &PartitionLog) -> Result<HashMap<String, TxnMeta>, LogError> {
    let offsets = log.offsets();
    let mut txns = HashMap::new();
    log.scan_batches(offsets.log_start, offsets.log_end, |b, pos| {
        let recs = crate::log::validate::stored_records(b)?;
        for r in recs.iter() {
            let r = r?;
            if r.offset < pos || r.offset >= offsets.log_end {
                continue;
            }
            let Some(id) = r.key.and_then(decode_key) else {
                continue;
            };
            match r.value {
                None => {
                    txns.remove(&id);
                }
                Some(v) => match decode_value(v) {
                    Some(meta) => {
                        txns.insert(id, meta);
                    }
                    None => {
                        tracing::warn!(transactional_id = %id, "unreadable transaction state record skipped")
                    }
                },
            }
        }
        Ok(())
    })?;
    Ok(txns)
}

/// See the module documentation.
pub struct TxnLoader {
    pub coordinator: Weak<TxnCoordinator>,
}

impl RoleListener for TxnLoader {
    fn roles_changed(&self, gained: &[(String, i32, i32)], lost: &[(String, i32)]) {
        let Some(c) = self.coordinator.upgrade() else {
            return;
        };
        for (topic, p) in lost {
            if topic == TXN_TOPIC {
                c.unload(*p);
                tracing::info!(
                    partition = p,
                    "dropped transaction state partition (no longer leader)"
                );
            }
        }
        for (topic, p, epoch) in gained {
            if topic != TXN_TOPIC {
                continue;
            }
            let (p, epoch) = (*p, *epoch);
            c.start_loading(p, epoch);
            let Some(log) = c.logs().partition(TXN_TOPIC, p) else {
                continue;
            };
            let c = c.clone();
            let task = move || match load_partition(&log) {
                Ok(txns) => {
                    let n = txns.len();
                    if let Some(preparing) = c.finish_loading(p, epoch, txns) {
                        tracing::info!(
                            partition = p,
                            epoch,
                            transactional_ids = n,
                            completing = preparing.len(),
                            "loaded transaction state partition"
                        );
                        for (id, meta) in preparing {
                            c.spawn_completion(id, meta, p, epoch);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(partition = p, epoch, error = %e, "cannot load transaction state partition")
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    // spawn_completion needs the runtime: run the blocking load on it and
                    // enter the runtime for the spawns.
                    let h2 = h.clone();
                    h.spawn_blocking(move || {
                        let _guard = h2.enter();
                        task()
                    });
                }
                Err(_) => task(),
            }
        }
    }
}

/// Several role listeners behind the replica manager's one.
pub struct Fanout(pub Vec<Arc<dyn RoleListener>>);

impl RoleListener for Fanout {
    fn roles_changed(&self, gained: &[(String, i32, i32)], lost: &[(String, i32)]) {
        for l in &self.0 {
            l.roles_changed(gained, lost);
        }
    }
}
