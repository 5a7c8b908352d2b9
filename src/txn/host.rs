//! What the transaction coordinator needs of the broker.
//!
//! [`TxnHost`] is implemented by [`Broker`]; the coordinator holds it weakly (bound once the
//! broker is built). `__transaction_state` itself is created by the topic admin service on the
//! first FindCoordinator for a transactional id
//! ([`Topics::ensure_txn_topic`](crate::topics::Topics::ensure_txn_topic)).
//!
//! May depend on: `broker`, `metadata`, `log`.

use std::sync::Arc;

use crate::broker::Broker;
use crate::log::TxnMarker;
use crate::metadata::ClusterImage;

/// See the module documentation.
pub trait TxnHost: Send + Sync + 'static {
    /// The broker's current metadata image.
    fn image(&self) -> Arc<ClusterImage>;
    /// Applies `marker` to the group offsets of `__consumer_offsets` partition `partition`
    /// on a broker that keeps offsets without that topic (a single broker); false when it
    /// cannot (yet).
    fn offsets_marker_without_topic(&self, partition: i32, marker: TxnMarker) -> bool;
}

impl TxnHost for Broker {
    fn image(&self) -> Arc<ClusterImage> {
        self.metadata.image()
    }

    fn offsets_marker_without_topic(&self, partition: i32, marker: TxnMarker) -> bool {
        let _ = partition;
        // A single broker keeps transactional offsets in the group coordinator's store
        // (`group::offsets`), which applies or drops them here.
        self.groups
            .end_txn_without_topic(marker.producer_id, marker.commit)
    }
}
