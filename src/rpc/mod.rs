//! gRPC between brokers (tonic 0.14 + prost, services in `proto/raftka.proto`).
//!
//! - [`auth`]: the cluster-secret token every call carries, and its checks (token and
//!   certificate).
//! - [`tls`]: mutual TLS between brokers: the broker identity in a certificate, the TLS
//!   listener and the TLS connector of the channels.
//! - [`server`]: the `Raft` service, which hands each RPC to the local openraft node.
//! - [`cluster`]: the `Cluster` service (heartbeats, replica fetch) and its clients.
//! - [`network`]: openraft's `RaftNetworkFactory`/`RaftNetwork` over one long-lived, lazily
//!   connected tonic `Channel` per peer, and the forwarding of metadata commands to the leader.
//!
//! openraft's messages travel as JSON in `bytes` fields (see the .proto for why); protobuf
//! types stay inside this module.
//!
//! May depend on: `raft` (types), `metadata` (through them), `config` and `security::tls`
//! (the TLS files, in `tls`), `replication` and `txn::markers` (the plain structs the
//! `Cluster` service converts to and from). `metadata` and `raft` never depend on `rpc`.

pub mod auth;
pub mod cluster;
pub mod network;
pub mod server;
pub mod tls;

/// Code generated from `proto/raftka.proto` (package `raftka.v1`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("raftka.v1");
}

pub use network::{ForwardError, NetworkFactory, Peers};
pub use server::{serve, RaftService};

/// Largest gRPC message either side sends or accepts (tonic's default is 4 MiB). Raft append
/// batches are bounded by openraft's `max_payload_entries` and snapshot chunks by
/// `snapshot_max_chunk_size`, both far below this.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(b)
}
