//! The `Cluster` gRPC service (heartbeats to the controller, follower fetches from partition
//! leaders) and its client side: a [`ReplicaTransport`] and a heartbeat sender over one
//! cached channel per broker. The protobuf messages are converted to the plain structs of
//! `replication` here, at the edge.
//!
//! Every call carries the cluster-secret token of [`super::auth`]; with a secret configured,
//! a heartbeat is taken only from the broker it is for and a replica fetch only from the
//! replica it names (the handler then serves only partitions that replica belongs to).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::auth::{method, same_sender, RpcAuth};
use super::pb::cluster_client::ClusterClient;
use super::pb::cluster_server::{Cluster, ClusterServer};
use super::pb::{self, HeartbeatReply, HeartbeatRequest, ReplicaFetchReply};
use super::MAX_MESSAGE_BYTES;
use crate::lease::Liveness;
use crate::replication::manager::{BoxFuture, ReplicaTransport};
use crate::replication::{
    FetchRefusal, PartitionFetch, PartitionFetchResult, ReplicaFetchRequest, ReplicaFetchResponse,
};

/// The controller's answer to a broker heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The controller sees the broker fenced.
    pub fenced: bool,
    /// The controller's applied metadata log index.
    pub metadata_index: u64,
    /// The controller's liveness table (see `lease::ClusterLiveness`).
    pub liveness: Vec<Liveness>,
}

/// A broker's heartbeat to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHeartbeat {
    pub broker: i32,
    /// The sending process (`BrokerMeta::incarnation`): the controller unfences only the
    /// registered incarnation, so a late heartbeat of a replaced process unfences nothing.
    pub incarnation: u64,
    /// The sender's advertised gRPC address (a learner is admitted at it).
    pub raft_addr: String,
}

/// What the broker does with the service's requests.
pub trait ClusterHandler: Send + Sync + 'static {
    /// Renews the sender's lease; `Err` when this broker is not the controller.
    fn heartbeat(&self, hb: &BrokerHeartbeat) -> Result<HeartbeatAnswer, String>;
    /// Answers a follower's fetch. Partitions of which `req.replica_id` is not a replica are
    /// refused (UnknownPartition) without data.
    fn replica_fetch(&self, req: ReplicaFetchRequest) -> BoxFuture<'_, ReplicaFetchResponse>;
}

/// The handler is bound after the broker is built (the quorum starts first); until then the
/// service answers UNAVAILABLE.
pub type HandlerSlot = Arc<OnceLock<Arc<dyn ClusterHandler>>>;

/// The tonic service.
#[derive(Clone)]
pub struct ClusterService {
    handler: HandlerSlot,
    /// Checks the cluster-secret token of each call.
    auth: Arc<RpcAuth>,
}

impl ClusterService {
    pub fn new(handler: HandlerSlot, auth: Arc<RpcAuth>) -> Self {
        Self { handler, auth }
    }

    pub fn into_server(self) -> ClusterServer<Self> {
        ClusterServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn handler(&self) -> Result<&Arc<dyn ClusterHandler>, Status> {
        self.handler
            .get()
            .ok_or_else(|| Status::unavailable("broker is starting"))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let proven = self.auth.verify(&request, method::HEARTBEAT)?;
        let req = request.into_inner();
        same_sender(proven, i64::from(req.broker_id), "a heartbeat")?;
        let hb = BrokerHeartbeat {
            broker: req.broker_id,
            incarnation: req.incarnation,
            raft_addr: req.raft_addr,
        };
        match self.handler()?.heartbeat(&hb) {
            Ok(a) => Ok(Response::new(HeartbeatReply {
                fenced: a.fenced,
                metadata_index: a.metadata_index,
                liveness: a
                    .liveness
                    .iter()
                    .map(|l| pb::BrokerLiveness {
                        broker_id: l.broker,
                        heard_ms_ago: l.heard_ms_ago,
                        suspect: l.suspect,
                    })
                    .collect(),
            })),
            Err(e) => Err(Status::failed_precondition(e)),
        }
    }

    async fn replica_fetch(
        &self,
        request: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchReply>, Status> {
        let proven = self.auth.verify(&request, method::REPLICA_FETCH)?;
        let req = from_pb_request(request.into_inner());
        same_sender(proven, i64::from(req.replica_id), "a replica fetch")?;
        let resp = self.handler()?.replica_fetch(req).await;
        Ok(Response::new(ReplicaFetchReply {
            partitions: resp.partitions.into_iter().map(to_pb_result).collect(),
        }))
    }
}

fn from_pb_request(r: pb::ReplicaFetchRequest) -> ReplicaFetchRequest {
    ReplicaFetchRequest {
        replica_id: r.replica_id,
        max_wait_ms: r.max_wait_ms.min(30_000),
        max_bytes: usize::try_from(r.max_bytes).unwrap_or(usize::MAX),
        partition_max_bytes: match r.partition_max_bytes {
            0 => usize::try_from(r.max_bytes).unwrap_or(usize::MAX),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
        partitions: r
            .partitions
            .into_iter()
            .map(|p| PartitionFetch {
                topic: p.topic,
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
            })
            .collect(),
    }
}

fn to_pb_request(r: ReplicaFetchRequest) -> pb::ReplicaFetchRequest {
    pb::ReplicaFetchRequest {
        replica_id: r.replica_id,
        max_wait_ms: r.max_wait_ms,
        max_bytes: r.max_bytes as u64,
        partition_max_bytes: r.partition_max_bytes as u64,
        partitions: r
            .partitions
            .into_iter()
            .map(|p| pb::PartitionFetch {
                topic: p.topic,
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
            })
            .collect(),
    }
}

fn to_pb_result(r: PartitionFetchResult) -> pb::PartitionFetchResult {
    use pb::FetchRefusal as P;
    let refusal = match r.refusal {
        None => P::None,
        Some(FetchRefusal::NotLeader) => P::NotLeader,
        Some(FetchRefusal::FencedLeaderEpoch) => P::FencedLeaderEpoch,
        Some(FetchRefusal::UnknownLeaderEpoch) => P::UnknownLeaderEpoch,
        Some(FetchRefusal::OffsetOutOfRange) => P::OffsetOutOfRange,
        Some(FetchRefusal::UnknownPartition) => P::UnknownPartition,
        Some(FetchRefusal::Storage) => P::Storage,
    };
    let (diverging, de, deo) = match r.diverging {
        Some((e, o)) => (true, e, o),
        None => (false, -1, -1),
    };
    pb::PartitionFetchResult {
        topic: r.topic,
        partition: r.partition,
        refusal: refusal as i32,
        high_watermark: r.high_watermark,
        log_start: r.log_start,
        diverging,
        diverging_epoch: de,
        diverging_end_offset: deo,
        records: r.records.to_vec(),
    }
}

fn from_pb_result(r: pb::PartitionFetchResult) -> PartitionFetchResult {
    use pb::FetchRefusal as P;
    let refusal = match P::try_from(r.refusal).unwrap_or(P::Storage) {
        P::None => None,
        P::NotLeader => Some(FetchRefusal::NotLeader),
        P::FencedLeaderEpoch => Some(FetchRefusal::FencedLeaderEpoch),
        P::UnknownLeaderEpoch => Some(FetchRefusal::UnknownLeaderEpoch),
        P::OffsetOutOfRange => Some(FetchRefusal::OffsetOutOfRange),
        P::UnknownPartition => Some(FetchRefusal::UnknownPartition),
        P::Storage => Some(FetchRefusal::Storage),
    };
    PartitionFetchResult {
        topic: r.topic,
        partition: r.partition,
        refusal,
        high_watermark: r.high_watermark,
        log_start: r.log_start,
        diverging: r
            .diverging
            .then_some((r.diverging_epoch, r.diverging_end_offset)),
        records: r.records.into(),
    }
}

/// Clients of the `Cluster` service on other brokers: one lazily connected channel each.
pub struct ClusterPeers {
    /// Broker id → gRPC address: the static voters, plus every quorum member learned later
    /// (see [`ClusterPeers::learn`]).
    addrs: Mutex<BTreeMap<i32, String>>,
    clients: Mutex<HashMap<i32, ClusterClient<Channel>>>,
    /// Signs every call with the cluster secret.
    auth: Arc<RpcAuth>,
}

impl ClusterPeers {
    /// `addrs`: broker id → gRPC address (`host:port`); `auth` signs the calls.
    pub fn new(addrs: BTreeMap<i32, String>, auth: Arc<RpcAuth>) -> Arc<Self> {
        Arc::new(Self {
            addrs: Mutex::new(addrs),
            clients: Mutex::new(HashMap::new()),
            auth,
        })
    }

    /// Records `broker`'s gRPC address (a learner that joined, or a changed address); a
    /// cached channel to an old address is dropped.
    pub fn learn(&self, broker: i32, addr: &str) {
        // Never holds both locks at once here (`client` takes clients, then addrs).
        let changed = {
            let mut addrs = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
            addrs.insert(broker, addr.to_string()).as_deref() != Some(addr)
        };
        if changed {
            self.clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&broker);
        }
    }

    /// The gRPC address known for `broker`.
    pub fn addr(&self, broker: i32) -> Option<String> {
        let addrs = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        addrs.get(&broker).cloned()
    }

    fn client(&self, broker: i32) -> Result<ClusterClient<Channel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&broker) {
            return Ok(c.clone());
        }
        let addr = self
            .addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .cloned()
            .ok_or_else(|| format!("no gRPC address known for broker {broker}"))?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad gRPC address {addr} of broker {broker}: {e}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let client = ClusterClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(broker, client.clone());
        Ok(client)
    }

    /// Sends `hb` to `controller`; returns the controller's answer.
    pub async fn heartbeat(
        &self,
        controller: i32,
        hb: &BrokerHeartbeat,
        timeout: Duration,
    ) -> Result<HeartbeatAnswer, String> {
        let mut c = self.client(controller)?;
        let mut req = Request::new(HeartbeatRequest {
            broker_id: hb.broker,
            raft_addr: hb.raft_addr.clone(),
            incarnation: hb.incarnation,
        });
        req.set_timeout(timeout);
        self.auth.sign(&mut req, method::HEARTBEAT);
        c.heartbeat(req)
            .await
            .map(|r| {
                let r = r.into_inner();
                HeartbeatAnswer {
                    fenced: r.fenced,
                    metadata_index: r.metadata_index,
                    liveness: r
                        .liveness
                        .into_iter()
                        .map(|l| Liveness {
                            broker: l.broker_id,
                            heard_ms_ago: l.heard_ms_ago,
                            suspect: l.suspect,
                        })
                        .collect(),
                }
            })
            .map_err(|s| s.message().to_string())
    }
}

impl ReplicaTransport for ClusterPeers {
    fn fetch(
        &self,
        leader: i32,
        req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, String>> {
        Box::pin(async move {
            let mut c = self.client(leader)?;
            let wait = Duration::from_millis(req.max_wait_ms);
            let mut r = Request::new(to_pb_request(req));
            r.set_timeout(wait + Duration::from_secs(2));
            self.auth.sign(&mut r, method::REPLICA_FETCH);
            let resp = c
                .replica_fetch(r)
                .await
                .map_err(|s| format!("fetch from broker {leader}: {}", s.message()))?;
            Ok(ReplicaFetchResponse {
                partitions: resp
                    .into_inner()
                    .partitions
                    .into_iter()
                    .map(from_pb_result)
                    .collect(),
            })
        })
    }
}
