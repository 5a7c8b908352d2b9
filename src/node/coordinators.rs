//! The group and transaction coordinators' settings, shared by both modes (which differ in
//! where a group's offsets are kept and who coordinates it: see `single` and `cluster`).
//!
//! May depend on: `config`, `group`, `log`, `lease`, `writer`, `txn`.

use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::group::state::GroupLimits;
use crate::group::GroupConfig;
use crate::lease::SelfLease;
use crate::log::LogStore;
use crate::writer::PartitionWriter;

/// The group coordinator's limits from the broker settings.
pub(super) fn group_config(c: &BrokerConfig) -> GroupConfig {
    GroupConfig {
        limits: GroupLimits {
            min_session_timeout_ms: c.group_min_session_timeout_ms,
            max_session_timeout_ms: c.group_max_session_timeout_ms,
            initial_rebalance_delay: std::time::Duration::from_millis(
                c.group_initial_rebalance_delay_ms.max(0) as u64,
            ),
            max_size: c.group_max_size.max(1) as usize,
        },
        offset_metadata_max_bytes: c.offset_metadata_max_bytes.max(0) as usize,
    }
}

/// The transaction coordinator (bound to the broker and started once the broker is built).
pub(super) fn open_txns(
    c: &BrokerConfig,
    logs: &Arc<LogStore>,
    writer: &Arc<PartitionWriter>,
    lease: &Arc<SelfLease>,
    cluster: bool,
) -> Arc<crate::txn::TxnCoordinator> {
    crate::txn::TxnCoordinator::new(
        c.node_id,
        crate::txn::TxnSettings {
            max_timeout_ms: c.txn_max_timeout_ms,
            write_timeout: std::time::Duration::from_millis(c.offsets_commit_timeout_ms),
            abort_interval: std::time::Duration::from_millis(c.txn_abort_interval_ms),
            id_expiration_ms: c.txn_id_expiration_ms,
            cluster,
        },
        logs.clone(),
        writer.clone(),
        lease.clone(),
    )
}
