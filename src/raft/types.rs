//! The openraft type configuration of the metadata quorum: what a log entry carries
//! ([`Command`]), what applying it answers ([`CommandResponse`]), and who the members are
//! ([`NodeId`], [`BrokerNode`]).
//!
//! Everything here is serde-serializable: entries are stored as JSON in sled and travel as
//! JSON inside the gRPC messages of `rpc/`.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataCommand, MetadataError};

/// A Raft node id. It is the broker's `node.id` (Kafka's KRaft uses the same id space).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The metadata quorum's type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = BrokerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The running Raft node of the metadata quorum.
pub type MetadataRaft = openraft::Raft<TypeConfig>;
/// A Raft log id (leader term + node, index).
pub type LogId = openraft::LogId<NodeId>;
/// A log entry of the metadata quorum.
pub type Entry = openraft::Entry<TypeConfig>;
/// The vote a node has granted or holds.
pub type Vote = openraft::Vote<NodeId>;
/// Cluster membership as stored with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, BrokerNode>;
/// Storage failures; any of them stops the Raft node (see `log_store`).
pub type StorageError = openraft::StorageError<NodeId>;

/// The payload of a normal log entry: one metadata command.
///
/// A wrapper rather than `MetadataCommand` itself so that per-entry envelope data (a request
/// id for deduplicating client retries, the submitting broker) can be added later without
/// touching the metadata layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub command: MetadataCommand,
}

impl From<MetadataCommand> for Command {
    fn from(command: MetadataCommand) -> Self {
        Self { command }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.command)
    }
}

/// What applying one log entry answered. Business failures (topic exists, unknown broker…)
/// are *data* here: the entry is committed and applied (as a no-op) on every node alike, and
/// the submitter gets the error back. Storage errors are the only failures that stop Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// A blank entry (a new leader's first entry) or a membership change: no command ran.
    NoCommand,
    /// The command changed the image.
    Applied,
    /// The command was refused; the image is unchanged.
    Rejected(MetadataError),
}

/// How other members reach a broker of the quorum.
///
/// The initial membership is derived from `controller.quorum.voters` alone, which names only
/// Raft addresses, and every voter must bootstrap with an *identical* membership; so the
/// bootstrap voters carry no Kafka listeners here. Clients' addresses are authoritative in the
/// metadata image (`MetadataCommand::RegisterBroker`); `listeners` is filled for brokers that
/// join later through `add_learner`, where the joining broker states them itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerNode {
    /// `host:port` of the broker's Raft gRPC listener (`raft.listener`).
    pub raft_addr: String,
    /// Kafka listeners of the broker, when known (see the type's docs).
    #[serde(default)]
    pub listeners: Vec<NodeListener>,
}

/// A Kafka listener as advertised to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeListener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl BrokerNode {
    /// A node known only by its Raft address (a bootstrap voter).
    pub fn new(raft_addr: impl Into<String>) -> Self {
        Self {
            raft_addr: raft_addr.into(),
            listeners: Vec::new(),
        }
    }
}

impl fmt::Display for BrokerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft://{}", self.raft_addr)
    }
}
