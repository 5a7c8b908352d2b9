//! What the transaction coordinator needs of the broker.
//!
//! [`TxnHost`] is implemented by [`Broker`](crate::broker::Broker) (in `broker`, which sits
//! above this module); the coordinator holds it weakly (bound once the
//! broker is built). `__transaction_state` itself is created by the topic admin service on the
//! first FindCoordinator for a transactional id
//! ([`Topics::ensure_txn_topic`](crate::topics::Topics::ensure_txn_topic)).
//!
//! May depend on: `metadata`, `log`.

use std::sync::Arc;

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
