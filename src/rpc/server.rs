//! The `Raft` gRPC service: decodes each request, checks that it was meant for this node and
//! that its sender may send it, hands it to the local openraft node and returns openraft's
//! result (errors included) as the reply payload.
//!
//! # Who may send what
//! Only voters take part in elections and only a voter can lead, so `Vote`, `AppendEntries`
//! and `InstallSnapshot` are refused (PERMISSION_DENIED) unless the node they name as
//! candidate or leader is a voter of the newest membership this node knows — before openraft
//! sees them, so a stranger's term never reaches this node's vote or term. A node that has no
//! membership yet (a voter before bootstrap, a learner before its first append) checks
//! against `controller.quorum.voters`. Learners still receive the log: they are senders of
//! nothing but `ClientWrite`, which any member may forward.
//!
//! With `inter.broker.secret` set, every call must carry a token proving its sender, and with
//! `security.inter.broker.protocol=SSL` the connection's certificate proves it (see
//! [`super::auth`], [`super::tls`]); the node id a request names as its sender must be the
//! proven one.
//! `ClientWrite` is taken only from members of the quorum (voters and learners), and a
//! command that speaks for a broker (its registration, its ISR changes as leader) only from
//! that broker.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::Vote;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::auth::{method, same_sender, RpcAuth};
use super::pb::raft_server::{Raft as RaftRpc, RaftServer};
use super::pb::{RaftReply, RaftRequest};
use super::{decode, encode, MAX_MESSAGE_BYTES};
use crate::metadata::MetadataCommand;
use crate::raft::types::{Command, MetadataRaft, NodeId};

/// Serves the Raft RPCs of one node.
#[derive(Clone)]
pub struct RaftService {
    id: NodeId,
    raft: MetadataRaft,
    /// `controller.quorum.voters`: the voters while this node knows no membership yet.
    static_voters: BTreeSet<NodeId>,
    /// Checks the cluster-secret token of each call.
    auth: Arc<RpcAuth>,
}

impl RaftService {
    /// The service of node `id`; `static_voters` are the configured voters (see the module
    /// docs).
    pub fn new(
        id: NodeId,
        raft: MetadataRaft,
        static_voters: BTreeSet<NodeId>,
        auth: Arc<RpcAuth>,
    ) -> Self {
        Self {
            id,
            raft,
            static_voters,
            auth,
        }
    }

    /// Whether `node` is a voter or learner of the newest membership this node knows (or a
    /// configured voter).
    fn is_member(&self, node: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        self.static_voters.contains(&node)
            || m.membership_config
                .membership()
                .nodes()
                .any(|(id, _)| *id == node)
    }

    /// Refuses a forwarded command from a node that is not a member, or (when the sender is
    /// `proven` by the cluster secret or its certificate) that speaks for another broker.
    fn check_client_write(&self, from: NodeId, proven: bool, cmd: &Command) -> Result<(), Status> {
        if !self.is_member(from) {
            return Err(Status::permission_denied(format!(
                "raft node {} refuses a metadata command from node {from}: not a member of the                  metadata quorum",
                self.id
            )));
        }
        let speaks_for = match &cmd.command {
            MetadataCommand::RegisterBroker(b) => Some(b.id),
            MetadataCommand::AlterPartition { leader, .. } => Some(*leader),
            _ => None,
        };
        match speaks_for {
            Some(b) if proven && i64::from(b) != from as i64 => {
                Err(Status::permission_denied(format!(
                    "raft node {} refuses a metadata command of broker {b} sent by node {from}",
                    self.id
                )))
            }
            _ => Ok(()),
        }
    }

    /// Verifies the token of a call of `rpc` and that the request's `from` is the proven
    /// sender; returns the request and whether its sender is proven.
    fn authenticate(
        &self,
        request: Request<RaftRequest>,
        rpc: &str,
    ) -> Result<(RaftRequest, bool), Status> {
        let proven = self.auth.verify(&request, rpc)?;
        let req = self.accept(request)?;
        same_sender(proven, i64::try_from(req.from).unwrap_or(-1), rpc)?;
        Ok((req, proven.is_some()))
    }

    /// Whether `node` is a voter of the newest membership this node knows.
    fn is_voter(&self, node: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        if voters.is_empty() {
            self.static_voters.contains(&node)
        } else {
            voters.contains(&node)
        }
    }

    /// Refuses a Raft message whose candidate or leader (named in `vote`) is not a voter, or
    /// is not the node the request says sent it.
    fn check_sender(&self, rpc: &str, from: NodeId, vote: &Vote<NodeId>) -> Result<(), Status> {
        let sender = vote.leader_id().voted_for();
        if sender != Some(from) {
            return Err(Status::invalid_argument(format!(
                "raft {rpc} from node {from} names node {sender:?} as its sender"
            )));
        }
        if !self.is_voter(from) {
            tracing::warn!(
                node_id = self.id,
                from,
                term = vote.leader_id().get_term(),
                rpc,
                "refused a raft message from a node that is not a voter"
            );
            return Err(Status::permission_denied(format!(
                "raft node {} refuses {rpc} from node {from}: only voters of the metadata quorum \
                 (controller.quorum.voters) may send it",
                self.id
            )));
        }
        Ok(())
    }

    /// The tonic service with raised message size limits.
    pub fn into_server(self) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Refuses requests meant for another node id (a stale or wrong address).
    fn accept(&self, request: Request<RaftRequest>) -> Result<RaftRequest, Status> {
        let req = request.into_inner();
        if req.target != self.id {
            return Err(Status::failed_precondition(format!(
                "this is raft node {}, not node {} (request from node {}); check \
                 controller.quorum.voters",
                self.id, req.target, req.from
            )));
        }
        Ok(req)
    }
}

fn bad_payload(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("cannot decode the raft request: {e}"))
}

fn reply<T: serde::Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let payload = encode(result)
        .map_err(|e| Status::internal(format!("cannot encode the raft reply: {e}")))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (req, _) = self.authenticate(request, method::APPEND_ENTRIES)?;
        let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> =
            decode(&req.payload).map_err(bad_payload)?;
        self.check_sender("AppendEntries", req.from, &rpc.vote)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (req, _) = self.authenticate(request, method::VOTE)?;
        let rpc: openraft::raft::VoteRequest<NodeId> = decode(&req.payload).map_err(bad_payload)?;
        self.check_sender("Vote", req.from, &rpc.vote)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (req, _) = self.authenticate(request, method::INSTALL_SNAPSHOT)?;
        let mut rpc: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> =
            decode(&req.payload).map_err(bad_payload)?;
        self.check_sender("InstallSnapshot", req.from, &rpc.vote)?;
        rpc.data = req.data;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn client_write(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (req, proven) = self.authenticate(request, method::CLIENT_WRITE)?;
        let cmd: Command = decode(&req.payload).map_err(bad_payload)?;
        self.check_client_write(req.from, proven, &cmd)?;
        reply(&self.raft.client_write(cmd).await)
    }
}

/// Serves `service` on `listener` until `shutdown` is cancelled: over mutual TLS when the
/// service's [`RpcAuth`] has it (only connections with a broker certificate reach the
/// services), else in plain HTTP/2.
pub async fn serve(
    listener: TcpListener,
    service: RaftService,
    cluster: Option<super::cluster::ClusterService>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let tls = service.auth.tls().cloned();
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service.into_server())
        .add_optional_service(cluster.map(|c| c.into_server()));
    match tls {
        Some(tls) => {
            let incoming = super::tls::incoming(listener, tls, shutdown.clone());
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown.cancelled_owned(),
                )
                .await
        }
    }
}
