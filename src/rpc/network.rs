//! openraft's network over gRPC: [`NetworkFactory`] hands out [`PeerNetwork`]s that share
//! one long-lived tonic `Channel` per peer from [`Peers`], and [`Peers::forward_client_write`]
//! sends a metadata command to the leader.
//!
//! Channels connect lazily (openraft calls `new_client` often — per replication stream, per
//! election, per linearizable read — and it must not dial) and reconnect by themselves after
//! a peer restarts. Every call is bounded by the deadline openraft gives in `RPCOption`
//! (AppendEntries: the heartbeat interval; Vote: the minimum election timeout; snapshot
//! chunks: `install_snapshot_timeout`). Transport failures map to openraft's `Unreachable`
//! (peer down: back off) or `Network` (retry); errors raised by the remote Raft node arrive
//! as data and become `RemoteError`.
//!
//! openraft retries an unreachable peer several times a second; [`Peers`] remembers which
//! peers are down, so a peer that stops answering is one `peer unreachable` line and its
//! return one `peer reachable again` line (openraft's own per-retry lines are filtered out
//! by the default log filter, see logging.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes};
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::auth::{method, RpcAuth};
use super::pb::raft_client::RaftClient;
use super::pb::RaftRequest;
use super::{decode, encode, MAX_MESSAGE_BYTES};
use crate::raft::types::{BrokerNode, Command, NodeId, TypeConfig};

/// How long a broker waits before retrying a peer that refused connections. openraft's
/// default is 500 ms; shorter lets a restarted broker catch up sooner (it is a local dial).
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// One cached channel per peer node id, shared by every openraft client and the forwarder.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Mutex<HashMap<NodeId, Peer>>>,
    /// Reachability of each peer, so that an outage is logged when it starts and when it
    /// ends, not on every retry.
    states: Arc<Mutex<HashMap<NodeId, PeerState>>>,
    /// Bound on establishing a TCP + HTTP/2 connection.
    connect_timeout: Duration,
    /// Signs every call with the cluster secret; dials over mutual TLS when it has it.
    auth: Arc<RpcAuth>,
}

/// How long Raft RPCs to a peer may keep timing out before it is reported unreachable.
const SLOW_PEER_GRACE: Duration = Duration::from_secs(1);

/// What the log has said about one peer.
#[derive(Default)]
struct PeerState {
    /// When the current run of failed RPCs began (None: the last RPC was answered).
    down_since: Option<Instant>,
    /// Whether this run of failures has been logged.
    logged_down: bool,
    /// Whether the peer ever answered (a peer that never did is starting, not failing).
    ever_reached: bool,
}

struct Peer {
    addr: String,
    /// `Err` when the address cannot form a URI; reported on every call instead of panicking.
    client: Result<RaftClient<Channel>, String>,
}

impl Peers {
    /// An empty cache; `connect_timeout` bounds each (re)connection attempt; `auth` signs
    /// the calls.
    pub fn new(connect_timeout: Duration, auth: Arc<RpcAuth>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            states: Arc::new(Mutex::new(HashMap::new())),
            connect_timeout,
            auth,
        }
    }

    /// Records that a Raft RPC from `from` to `target` failed in transport. Logs once per
    /// outage: at once when the connection was refused, after [`SLOW_PEER_GRACE`] of
    /// failures when calls only time out (one slow answer is not an outage); at info for a
    /// peer that never answered yet (it is starting), at warn for one that did.
    fn note_unreachable(
        &self,
        from: NodeId,
        target: NodeId,
        refused: bool,
        error: &dyn std::fmt::Display,
    ) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let s = states.entry(target).or_default();
        let since = *s.down_since.get_or_insert_with(Instant::now);
        if s.logged_down || !(refused || since.elapsed() >= SLOW_PEER_GRACE) {
            return;
        }
        s.logged_down = true;
        if s.ever_reached {
            tracing::warn!(
                node_id = from,
                peer = target,
                %error,
                "peer unreachable; retrying quietly (logged again when it answers)"
            );
        } else {
            tracing::info!(
                node_id = from,
                peer = target,
                %error,
                "peer not answering yet; retrying quietly (logged when it answers)"
            );
        }
    }

    /// Records that `target` answered a Raft RPC; logs when it had been reported down.
    fn note_reachable(&self, from: NodeId, target: NodeId) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let s = states.entry(target).or_default();
        s.ever_reached = true;
        if let Some(since) = s.down_since.take() {
            if std::mem::take(&mut s.logged_down) {
                tracing::info!(
                    node_id = from,
                    peer = target,
                    down_ms = since.elapsed().as_millis() as u64,
                    "peer reachable again"
                );
            }
        }
    }

    /// The client for `target` at `addr`, reusing the cached channel unless the address
    /// changed. Never dials: the channel connects on its first call.
    pub fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, String> {
        let mut peers = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&target) {
            if p.addr == addr {
                return p.client.clone();
            }
        }
        let client = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid raft address '{addr}' of node {target}: {e}"))
            .and_then(|ep| {
                let ep = ep
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                let channel = match self.auth.tls() {
                    Some(tls) => super::tls::channel(ep, tls, target)?,
                    None => ep.connect_lazy(),
                };
                Ok(RaftClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES))
            });
        peers.insert(
            target,
            Peer {
                addr: addr.to_string(),
                client: client.clone(),
            },
        );
        client
    }

    /// Sends `cmd` to `target` (believed to be the leader) and returns its `client_write`
    /// result: the committed response, or openraft's error (ForwardToLeader when `target`
    /// is not the leader either).
    pub async fn forward_client_write(
        &self,
        from: NodeId,
        target: NodeId,
        node: &BrokerNode,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<ClientWriteResult, ForwardError> {
        let client = self
            .client(target, &node.raft_addr)
            .map_err(ForwardError::Transport)?;
        let req = RaftRequest {
            target,
            from,
            payload: encode(cmd).map_err(|e| ForwardError::Decode(e.to_string()))?,
            data: Vec::new(),
        };
        match call(client, &self.auth, Rpc::ClientWrite, req, timeout).await {
            Ok(payload) => decode(&payload).map_err(|e| ForwardError::Decode(e.to_string())),
            Err(CallError::Timeout) => Err(ForwardError::Timeout(timeout)),
            Err(CallError::Status(s)) => Err(ForwardError::Transport(format!(
                "{}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}

/// What the leader's `client_write` answered.
pub type ClientWriteResult = Result<
    ClientWriteResponse<TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, BrokerNode>>,
>;

/// Why a forwarded command got no answer from the node it was sent to.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    #[error("no answer from the metadata leader within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the metadata leader: {0}")]
    Transport(String),
    #[error("cannot decode the metadata leader's answer: {0}")]
    Decode(String),
}

/// Builds openraft network clients for one node.
pub struct NetworkFactory {
    /// This node's id (sent with every request, and named in timeouts).
    id: NodeId,
    peers: Peers,
}

impl NetworkFactory {
    pub fn new(id: NodeId, peers: Peers) -> Self {
        Self { id, peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BrokerNode) -> PeerNetwork {
        PeerNetwork {
            id: self.id,
            target,
            client: self.peers.client(target, &node.raft_addr),
            peers: self.peers.clone(),
        }
    }
}

/// openraft's client for one peer.
pub struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
    /// For logging the peer's reachability changes.
    peers: Peers,
}

#[derive(Clone, Copy, Debug)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    ClientWrite,
}

enum CallError {
    Timeout,
    Status(tonic::Status),
}

/// One unary call with a deadline; returns the reply payload.
async fn call(
    mut client: RaftClient<Channel>,
    auth: &RpcAuth,
    rpc: Rpc,
    req: RaftRequest,
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let mut req = tonic::Request::new(req);
    auth.sign(
        &mut req,
        match rpc {
            Rpc::AppendEntries => method::APPEND_ENTRIES,
            Rpc::Vote => method::VOTE,
            Rpc::InstallSnapshot => method::INSTALL_SNAPSHOT,
            Rpc::ClientWrite => method::CLIENT_WRITE,
        },
    );
    let fut = async move {
        match rpc {
            Rpc::AppendEntries => client.append_entries(req).await,
            Rpc::Vote => client.vote(req).await,
            Rpc::InstallSnapshot => client.install_snapshot(req).await,
            Rpc::ClientWrite => client.client_write(req).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Ok(Ok(reply)) => Ok(reply.into_inner().payload),
    }
}

type RaftRpcError<E = openraft::error::Infallible> =
    RPCError<NodeId, BrokerNode, RaftError<NodeId, E>>;

impl PeerNetwork {
    /// Sends one openraft RPC and decodes `Result<Resp, RaftError<E>>` from the reply.
    async fn send<Resp, E>(
        &mut self,
        rpc: Rpc,
        action: RPCTypes,
        payload: Vec<u8>,
        data: Vec<u8>,
        option: &RPCOption,
        entries: u64,
    ) -> Result<Resp, RaftRpcError<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(e)))),
        };
        let req = RaftRequest {
            target: self.target,
            from: self.id,
            payload,
            data,
        };
        let timeout = option.hard_ttl();
        let payload = match call(client, &self.peers.auth, rpc, req, timeout).await {
            Ok(p) => {
                self.peers.note_reachable(self.id, self.target);
                p
            }
            Err(CallError::Timeout) => {
                self.peers.note_unreachable(
                    self.id,
                    self.target,
                    false,
                    &format_args!("{rpc:?}: no answer within {timeout:?}"),
                );
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }));
            }
            Err(CallError::Status(s)) => {
                let err = map_status(&s, rpc, entries);
                if matches!(err, RPCError::Unreachable(_)) {
                    self.peers.note_unreachable(
                        self.id,
                        self.target,
                        true,
                        &format_args!("{rpc:?}: {}: {}", s.code(), s.message()),
                    );
                }
                return Err(err);
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Maps a gRPC status to openraft's transport errors.
fn map_status<E: std::error::Error>(s: &tonic::Status, rpc: Rpc, entries: u64) -> RaftRpcError<E> {
    let err = AnyError::error(format!("{rpc:?}: {}: {}", s.code(), s.message()));
    match s.code() {
        // Connection refused/reset, or the address belongs to another node id.
        Code::Unavailable | Code::FailedPrecondition => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        // Message over the size limit: ask openraft for smaller batches — only when there is
        // something to split. HTTP/2 refusing the stream (a peer resuming from a pause with too
        // many queued streams: "h2 protocol error") is ResourceExhausted too but is transport
        // trouble; answered with PayloadTooLarge, openraft 0.9 re-sends at once and trips its
        // "two actions with payload in flight" assertion, which ended replication to that peer.
        Code::OutOfRange | Code::ResourceExhausted
            if matches!(rpc, Rpc::AppendEntries)
                && entries > 1
                && !s.message().starts_with("h2 protocol error") =>
        {
            RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)).with_source_error(&err),
            )
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

fn encode_err<E: std::error::Error>(e: serde_json::Error) -> RaftRpcError<E> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        let entries = rpc.entries.len() as u64;
        let payload = encode(&rpc).map_err(encode_err)?;
        self.send(
            Rpc::AppendEntries,
            RPCTypes::AppendEntries,
            payload,
            Vec::new(),
            &option,
            entries,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        let payload = encode(&rpc).map_err(encode_err)?;
        self.send(Rpc::Vote, RPCTypes::Vote, payload, Vec::new(), &option, 0)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        // The chunk travels as raw bytes, not as a JSON array of numbers.
        let data = std::mem::take(&mut rpc.data);
        let payload = encode(&rpc).map_err(encode_err)?;
        self.send(
            Rpc::InstallSnapshot,
            RPCTypes::InstallSnapshot,
            payload,
            data,
            &option,
            0,
        )
        .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_oversized_batch_of_several_entries_asks_for_smaller_batches() {
        let too_large = tonic::Status::out_of_range("decoded message length too large");
        let e: RaftRpcError = map_status(&too_large, Rpc::AppendEntries, 8);
        assert!(matches!(e, RPCError::PayloadTooLarge(_)), "{e}");
        // nothing to split
        let e: RaftRpcError = map_status(&too_large, Rpc::AppendEntries, 1);
        assert!(matches!(e, RPCError::Network(_)), "{e}");
        // HTTP/2 refusing streams is transport trouble, whatever the batch
        let refused = tonic::Status::resource_exhausted("h2 protocol error: http2 error");
        let e: RaftRpcError = map_status(&refused, Rpc::AppendEntries, 8);
        assert!(matches!(e, RPCError::Network(_)), "{e}");
    }
}
