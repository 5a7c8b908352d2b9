//! The replica manager's role listener for `__consumer_offsets`: loads an offsets partition
//! (and hands its groups to the coordinator) when this broker becomes its leader, and drops it
//! when it stops leading.
//!
//! May depend on: `group`, `replication` (the `RoleListener` trait), the store next to it.

use std::sync::Weak;

use super::store::{load_partition, ReplicatedOffsetStore};
use super::OFFSETS_TOPIC;
use crate::group::GroupCoordinator;
use crate::replication::manager::RoleListener;

/// Loads and drops offsets partitions as this broker gains and loses their leadership, and
/// tells the group coordinator (see the module documentation).
pub struct OffsetsLoader {
    pub store: Weak<ReplicatedOffsetStore>,
    pub groups: Weak<GroupCoordinator>,
}

impl RoleListener for OffsetsLoader {
    fn roles_changed(&self, gained: &[(String, i32, i32)], lost: &[(String, i32)]) {
        let (Some(store), Some(groups)) = (self.store.upgrade(), self.groups.upgrade()) else {
            return;
        };
        let lost: Vec<i32> = lost
            .iter()
            .filter(|(t, _)| t == OFFSETS_TOPIC)
            .map(|(_, p)| *p)
            .collect();
        if !lost.is_empty() {
            for p in &lost {
                store.unload(*p);
            }
            groups.groups_unloaded(|g| {
                store
                    .partition_of(g)
                    .map_or(true, |p| lost.contains(&p) && !store.is_held(p))
            });
            tracing::info!(partitions = ?lost, "dropped offsets partitions (no longer leader)");
        }
        for (topic, p, epoch) in gained {
            if topic != OFFSETS_TOPIC {
                continue;
            }
            let (p, epoch) = (*p, *epoch);
            store.start_loading(p, epoch);
            let Some(log) = store.logs.partition(OFFSETS_TOPIC, p) else {
                continue;
            };
            let store = store.clone();
            let groups = groups.clone();
            let task = move || {
                let started = std::time::Instant::now();
                match load_partition(&log) {
                    Ok(mut offsets) => {
                        // Groups are restored before the partition opens, so no member
                        // request finds its group missing.
                        let restored = offsets.take_group_metadata();
                        let restored_ids: Vec<String> =
                            restored.iter().map(|(g, _)| g.clone()).collect();
                        groups.groups_restored(restored);
                        let entries: usize = offsets
                            .groups()
                            .iter()
                            .map(|g| offsets.group_offsets(g).len())
                            .sum();
                        if let Some(ids) = store.finish_loading(p, epoch, offsets) {
                            tracing::info!(
                                partition = p,
                                epoch,
                                groups = ids.len(),
                                offsets = entries,
                                ms = started.elapsed().as_millis() as u64,
                                "loaded offsets partition"
                            );
                            groups.groups_loaded(ids);
                        } else {
                            // The partition changed hands meanwhile: forget what was restored.
                            groups.groups_unloaded(|g| {
                                restored_ids.iter().any(|i| i == g) && !store.is_held(p)
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition = p, epoch, error = %e, "cannot load offsets partition");
                    }
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(task);
                }
                Err(_) => task(),
            }
        }
    }
}
