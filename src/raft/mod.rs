//! Storage and types of the metadata quorum (openraft 0.9): the Raft log and vote in sled
//! ([`log_store`]), the state machine that applies [`MetadataCommand`](crate::metadata::MetadataCommand)s
//! to the [`ClusterImage`](crate::metadata::ClusterImage) ([`state_machine`]), and the type
//! configuration tying them together ([`types`]).
//!
//! Nothing here touches the network: the gRPC transport lives in `rpc/`, and `quorum.rs`
//! wires both into a running node.
//!
//! May depend on: `metadata`, `sled`, `serde`, `openraft`. Not on `rpc`, `api` or the codec.

pub mod log_store;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::{AppliedImage, StateMachine};
pub use types::{
    BrokerNode, Command, CommandResponse, LogId, MetadataRaft, NodeId, NodeListener, TypeConfig,
};

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::types::StorageError;
    use super::*;

    struct SledStores;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledStores {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = sled::Config::new()
                .path(dir.path())
                .open()
                .expect("open sled");
            let log = LogStore::open(&db).expect("open log store");
            let sm = StateMachine::open(&db)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage test suite against the sled log store and state machine. A
    /// plain `#[test]`: the suite makes its own runtime per case.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(SledStores).expect("openraft storage suite");
    }
}
