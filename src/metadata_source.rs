//! Where a broker's metadata comes from: its own store (a single broker) or the Raft quorum
//! (a cluster member). One handle, shared (`Arc`) by the `Broker` and the services `node`
//! builds beside it (`topics`), so none of them needs to know which mode it runs in.
//!
//! May depend on: `metadata`, `quorum`. Not on `broker`, the network or the codec.

use std::sync::Arc;

use crate::metadata::{ClusterImage, MetadataCommand, MetadataError, MetadataStore};
use crate::quorum::{MetadataQuorum, QuorumError};

/// Where metadata comes from: this broker alone, or the Raft quorum.
pub enum MetadataSource {
    /// A single broker without `controller.quorum.voters`: commands apply locally.
    Local(MetadataStore),
    /// A cluster member: commands go through Raft; reads are of this broker's applied image
    /// (it may lag the leader by about a heartbeat, like a Kafka broker's metadata cache).
    Quorum(MetadataQuorum),
}

impl MetadataSource {
    /// The current image (a local read).
    pub fn image(&self) -> Arc<ClusterImage> {
        match self {
            MetadataSource::Local(s) => s.image(),
            MetadataSource::Quorum(q) => q.image(),
        }
    }

    /// Applies a command (through Raft in a cluster) and returns the image that has it.
    pub async fn submit(&self, cmd: &MetadataCommand) -> Result<Arc<ClusterImage>, MetadataError> {
        match self {
            MetadataSource::Local(s) => s.submit(cmd),
            MetadataSource::Quorum(q) => match q.submit(cmd.clone()).await {
                Ok(_) => Ok(q.image()),
                Err(QuorumError::Rejected(e)) => Err(e),
                Err(e) => Err(MetadataError::QuorumUnavailable(e.to_string())),
            },
        }
    }

    /// The quorum, in a cluster.
    pub fn quorum(&self) -> Option<&MetadataQuorum> {
        match self {
            MetadataSource::Local(_) => None,
            MetadataSource::Quorum(q) => Some(q),
        }
    }
}
