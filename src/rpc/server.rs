//! The `Raft` gRPC service: decodes each request, checks that it was meant for this node,
//! hands it to the local openraft node and returns openraft's result (errors included) as
//! the reply payload.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::pb::raft_server::{Raft as RaftRpc, RaftServer};
use super::pb::{RaftReply, RaftRequest};
use super::{decode, encode, MAX_MESSAGE_BYTES};
use crate::raft::types::{Command, MetadataRaft, NodeId};

/// Serves the Raft RPCs of one node.
#[derive(Clone)]
pub struct RaftService {
    id: NodeId,
    raft: MetadataRaft,
}

impl RaftService {
    pub fn new(id: NodeId, raft: MetadataRaft) -> Self {
        Self { id, raft }
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
        let req = self.accept(request)?;
        let rpc = decode(&req.payload).map_err(bad_payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = self.accept(request)?;
        let rpc = decode(&req.payload).map_err(bad_payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = self.accept(request)?;
        let mut rpc: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> =
            decode(&req.payload).map_err(bad_payload)?;
        rpc.data = req.data;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn client_write(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = self.accept(request)?;
        let cmd: Command = decode(&req.payload).map_err(bad_payload)?;
        reply(&self.raft.client_write(cmd).await)
    }
}

/// Serves `service` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    service: RaftService,
    cluster: Option<super::cluster::ClusterService>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service.into_server())
        .add_optional_service(cluster.map(|c| c.into_server()))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
}
