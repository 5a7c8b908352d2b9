//! The `Cluster` gRPC service (heartbeats to the controller, follower fetches from partition
//! leaders, metadata-quorum admin requests forwarded to the quorum leader) and its client
//! side: a [`ReplicaTransport`] and a heartbeat sender over one cached channel per broker,
//! and [`forward_quorum_admin`]. The protobuf messages are converted to the plain structs of
//! `replication` here, at the edge.
//!
//! It also carries transaction markers from a coordinator to partition leaders
//! (`WriteTxnMarkers`, the sender proven as the coordinator it names) and KIP-890
//! verifications back to a coordinator (`VerifyTxnPartitions`).
//!
//! What a broker does with each call is its [`ClusterHandler`], given when the service is
//! built (`node` implements it for the finished broker and only then serves the listener).
//!
//! Every call carries the cluster-secret token of [`super::auth`] and, with mutual TLS, goes
//! over a connection whose certificate names the sender; with either configured, a heartbeat is taken only from the broker it is for and a replica fetch only from the
//! replica it names (the handler then serves only partitions that replica belongs to).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::auth::{method, same_sender, RpcAuth};
use super::pb::cluster_client::ClusterClient;
use super::pb::cluster_server::{Cluster, ClusterServer};
use super::pb::{self, HeartbeatReply, HeartbeatRequest, ReplicaFetchReply};
use super::MAX_MESSAGE_BYTES;
use crate::lease::Liveness;
use crate::log::TxnMarker;
use crate::replication::manager::{BoxFuture, ReplicaTransport};
use crate::replication::{
    FetchRefusal, PartitionFetch, PartitionFetchResult, PeerError, ReplicaFetchRequest,
    ReplicaFetchResponse, SessionAnswer, SessionError, SessionRequest,
};
use crate::txn::markers::{MarkerOutcome, MarkerTransport, MarkerWrite, VerifyTxn};

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

/// Why a broker did not take a heartbeat (the sender asks the controller it knows next).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatRefusal {
    /// This broker is a single broker, not a member of a metadata quorum.
    #[error("broker {0} is not a member of a metadata quorum")]
    NotClusterMember(i32),
    /// This broker does not lead the metadata quorum (`leader`: the one it knows, if any).
    #[error("broker {me} is not the controller (the controller it knows: {leader:?})")]
    NotController { me: i32, leader: Option<u64> },
    /// It leads, but a quorum did not confirm that (a deposed leader that resumed).
    #[error("broker {me} could not confirm its leadership of the metadata quorum: {reason}")]
    NotConfirmed { me: i32, reason: String },
}

/// Why a forwarded quorum admin request was not answered (the forwarding broker answers its
/// client with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedRequestError {
    /// The API key names no Kafka API.
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    /// A Kafka API that is not forwarded to the quorum leader.
    #[error("{0} is not a quorum admin request")]
    NotQuorumAdmin(String),
    /// A version of the API this broker does not answer.
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion { api: String, version: i16 },
    /// The request body did not decode, or the answer did not encode.
    #[error("{api} v{version}: {reason}")]
    Codec {
        api: String,
        version: i16,
        reason: String,
    },
}

/// What the broker does with the service's requests.
pub trait ClusterHandler: Send + Sync + 'static {
    /// Renews the sender's lease; `Err` when this broker is not the controller.
    fn heartbeat(&self, hb: &BrokerHeartbeat) -> Result<HeartbeatAnswer, HeartbeatRefusal>;
    /// Answers a follower's fetch. Partitions of which `req.replica_id` is not a replica are
    /// refused (UnknownPartition) without data.
    fn replica_fetch(&self, req: ReplicaFetchRequest) -> BoxFuture<'_, ReplicaFetchResponse>;
    /// Answers a metadata-quorum admin request another broker forwarded (Kafka API key,
    /// version, request body → response body); `Err` for a request it cannot decode.
    fn quorum_admin(
        &self,
        api_key: i16,
        api_version: i16,
        request: bytes::Bytes,
    ) -> BoxFuture<'_, Result<bytes::Bytes, ForwardedRequestError>>;
    /// Writes transaction markers as the leader of their partitions (one outcome each).
    fn write_txn_markers(
        &self,
        writes: Vec<MarkerWrite>,
        timeout: Duration,
    ) -> BoxFuture<'_, Vec<MarkerOutcome>>;
    /// Answers a partition leader's KIP-890 verification as a transaction coordinator.
    fn verify_txn_partitions(&self, check: VerifyTxn) -> Vec<i16>;
}

/// The tonic service. It is built with the finished broker's handler: the node assembly
/// serves the gRPC listener only once the broker is built (see `MetadataQuorum::open`).
#[derive(Clone)]
pub struct ClusterService {
    handler: Arc<dyn ClusterHandler>,
    /// Checks the cluster-secret token of each call.
    auth: Arc<RpcAuth>,
}

impl ClusterService {
    pub fn new(handler: Arc<dyn ClusterHandler>, auth: Arc<RpcAuth>) -> Self {
        Self { handler, auth }
    }

    pub fn into_server(self) -> ClusterServer<Self> {
        ClusterServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
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
        match self.handler.heartbeat(&hb) {
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
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn replica_fetch(
        &self,
        request: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchReply>, Status> {
        let proven = self.auth.verify(&request, method::REPLICA_FETCH)?;
        let req = from_pb_request(request.into_inner());
        same_sender(proven, i64::from(req.replica_id), "a replica fetch")?;
        let resp = self.handler.replica_fetch(req).await;
        let session_error = match resp.session.error {
            None => pb::FetchSessionError::SessionOk,
            Some(SessionError::NotFound) => pb::FetchSessionError::SessionNotFound,
            Some(SessionError::InvalidEpoch) => pb::FetchSessionError::SessionInvalidEpoch,
        };
        Ok(Response::new(ReplicaFetchReply {
            partitions: resp.partitions.into_iter().map(to_pb_result).collect(),
            session_id: resp.session.id,
            session_error: session_error as i32,
        }))
    }

    async fn quorum_admin(
        &self,
        request: Request<pb::QuorumAdminRequest>,
    ) -> Result<Response<pb::QuorumAdminReply>, Status> {
        // Any broker of the cluster (proven by the secret) may forward; the client's
        // authorization was checked by the broker it connected to.
        self.auth.verify(&request, method::QUORUM_ADMIN)?;
        let req = request.into_inner();
        let (Ok(key), Ok(version)) = (i16::try_from(req.api_key), i16::try_from(req.api_version))
        else {
            return Err(Status::invalid_argument("api key or version out of range"));
        };
        self.handler
            .quorum_admin(key, version, req.request.into())
            .await
            .map(|response| {
                Response::new(pb::QuorumAdminReply {
                    response: response.to_vec(),
                })
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
    async fn write_txn_markers(
        &self,
        request: Request<pb::WriteTxnMarkersRequest>,
    ) -> Result<Response<pb::WriteTxnMarkersReply>, Status> {
        self.write_txn_markers_impl(request).await
    }

    async fn verify_txn_partitions(
        &self,
        request: Request<pb::VerifyTxnPartitionsRequest>,
    ) -> Result<Response<pb::VerifyTxnPartitionsReply>, Status> {
        let proven = self.auth.verify(&request, method::VERIFY_TXN_PARTITIONS)?;
        let req = request.into_inner();
        same_sender(
            proven,
            i64::from(req.sender_id),
            "a transaction verification",
        )?;
        if req.partitions.len() > MAX_MARKERS {
            return Err(Status::invalid_argument(
                "too many partitions in one verification",
            ));
        }
        let check = VerifyTxn {
            transactional_id: req.transactional_id,
            producer_id: req.producer_id,
            producer_epoch: i16::try_from(req.producer_epoch)
                .map_err(|_| Status::invalid_argument("producer epoch out of range"))?,
            partitions: req
                .partitions
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
        };
        let codes = self.handler.verify_txn_partitions(check);
        Ok(Response::new(pb::VerifyTxnPartitionsReply {
            error_codes: codes.into_iter().map(i32::from).collect(),
        }))
    }
}

/// Most markers one WriteTxnMarkers call may carry (a coordinator sends one per partition of a
/// transaction led by the receiver).
const MAX_MARKERS: usize = 100_000;

/// Longest commit wait a coordinator may ask of the receiver.
const MAX_MARKER_WAIT: Duration = Duration::from_secs(60);

impl ClusterService {
    /// WriteTxnMarkers: checks the sender and hands the markers to the broker.
    async fn write_txn_markers_impl(
        &self,
        request: Request<pb::WriteTxnMarkersRequest>,
    ) -> Result<Response<pb::WriteTxnMarkersReply>, Status> {
        let proven = self.auth.verify(&request, method::WRITE_TXN_MARKERS)?;
        let req = request.into_inner();
        same_sender(proven, i64::from(req.coordinator_id), "transaction markers")?;
        if req.markers.len() > MAX_MARKERS {
            return Err(Status::invalid_argument(format!(
                "{} markers in one call (at most {MAX_MARKERS})",
                req.markers.len()
            )));
        }
        let mut writes = Vec::with_capacity(req.markers.len());
        for m in req.markers {
            let epoch = i16::try_from(m.producer_epoch)
                .map_err(|_| Status::invalid_argument("producer epoch out of range"))?;
            writes.push(MarkerWrite {
                topic: m.topic,
                partition: m.partition,
                marker: TxnMarker {
                    producer_id: m.producer_id,
                    producer_epoch: epoch,
                    coordinator_epoch: m.coordinator_epoch,
                    commit: m.commit,
                },
            });
        }
        let timeout = Duration::from_millis(req.timeout_ms).min(MAX_MARKER_WAIT);
        let outcomes = self.handler.write_txn_markers(writes, timeout).await;
        Ok(Response::new(pb::WriteTxnMarkersReply {
            results: outcomes.into_iter().map(to_pb_outcome).collect(),
        }))
    }
}

fn to_pb_outcome(o: MarkerOutcome) -> pb::TxnMarkerResult {
    use pb::TxnMarkerOutcome as P;
    let (outcome, message) = match o {
        MarkerOutcome::Written => (P::MarkerWritten, String::new()),
        MarkerOutcome::NotLeader => (P::MarkerNotLeader, String::new()),
        MarkerOutcome::UnknownPartition => (P::MarkerUnknownPartition, String::new()),
        MarkerOutcome::Failed(m) => (P::MarkerFailed, m),
        MarkerOutcome::Superseded(m) => (P::MarkerSuperseded, m),
    };
    pb::TxnMarkerResult {
        outcome: outcome as i32,
        message,
    }
}

fn from_pb_outcome(r: pb::TxnMarkerResult) -> MarkerOutcome {
    use pb::TxnMarkerOutcome as P;
    match P::try_from(r.outcome) {
        Ok(P::MarkerWritten) => MarkerOutcome::Written,
        Ok(P::MarkerNotLeader) => MarkerOutcome::NotLeader,
        Ok(P::MarkerUnknownPartition) => MarkerOutcome::UnknownPartition,
        Ok(P::MarkerSuperseded) => MarkerOutcome::Superseded(r.message),
        Ok(P::MarkerFailed) | Err(_) => MarkerOutcome::Failed(r.message),
    }
}

/// Forwards a metadata-quorum admin request to broker `leader` (the quorum leader) at gRPC
/// address `addr` over one short-lived channel, signed with the cluster secret and, with
/// mutual TLS between brokers, over TLS expecting `leader`'s certificate; returns its Kafka
/// response body.
pub async fn forward_quorum_admin(
    auth: &RpcAuth,
    leader: u64,
    addr: &str,
    api_key: i16,
    api_version: i16,
    request: bytes::Bytes,
    timeout: Duration,
) -> Result<bytes::Bytes, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr}: {e}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout);
    let channel = match auth.tls() {
        Some(tls) => super::tls::channel(endpoint, tls, leader)?,
        None => endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
    };
    let mut client = ClusterClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut req = Request::new(pb::QuorumAdminRequest {
        api_key: i32::from(api_key),
        api_version: i32::from(api_version),
        request: request.to_vec(),
    });
    req.set_timeout(timeout);
    auth.sign(&mut req, method::QUORUM_ADMIN);
    client
        .quorum_admin(req)
        .await
        .map(|r| bytes::Bytes::from(r.into_inner().response))
        .map_err(|s| s.message().to_string())
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
                topic_id: <[u8; 16]>::try_from(p.topic_id.as_slice())
                    .map_or(0, u128::from_be_bytes),
            })
            .collect(),
        session: SessionRequest {
            open: r.open_session,
            id: r.session_id,
            epoch: r.session_epoch,
            forgotten: r
                .forgotten
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
        },
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
                topic_id: if p.topic_id == 0 {
                    Vec::new()
                } else {
                    p.topic_id.to_be_bytes().to_vec()
                },
            })
            .collect(),
        open_session: r.session.open,
        session_id: r.session.id,
        session_epoch: r.session.epoch,
        forgotten: r
            .session
            .forgotten
            .into_iter()
            .map(|(topic, partition)| pb::PartitionRef { topic, partition })
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
        Some(FetchRefusal::InconsistentTopicId) => P::InconsistentTopicId,
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
        topic_id: if r.topic_id == 0 {
            Vec::new()
        } else {
            r.topic_id.to_be_bytes().to_vec()
        },
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
        P::InconsistentTopicId => Some(FetchRefusal::InconsistentTopicId),
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
        topic_id: <[u8; 16]>::try_from(r.topic_id.as_slice()).map_or(0, u128::from_be_bytes),
    }
}

/// Clients of the `Cluster` service on other brokers: one lazily connected channel each.
pub struct ClusterPeers {
    /// Broker id → gRPC address: the static voters, plus every quorum member learned later
    /// (see [`ClusterPeers::learn`]).
    addrs: Mutex<BTreeMap<i32, String>>,
    clients: Mutex<HashMap<i32, ClusterClient<Channel>>>,
    /// Signs every call with the cluster secret; dials over mutual TLS when it has it.
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

    fn client(&self, broker: i32) -> Result<ClusterClient<Channel>, PeerError> {
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
            .ok_or(PeerError::UnknownBroker(broker))?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| PeerError::Channel {
                broker,
                reason: format!("bad gRPC address {addr}: {e}"),
            })?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let channel = match (self.auth.tls(), u64::try_from(broker)) {
            (Some(tls), Ok(target)) => super::tls::channel(endpoint, tls, target)
                .map_err(|reason| PeerError::Channel { broker, reason })?,
            (Some(_), Err(_)) => {
                return Err(PeerError::Channel {
                    broker,
                    reason: "a negative id names no broker certificate".into(),
                })
            }
            (None, _) => endpoint.connect_lazy(),
        };
        let client = ClusterClient::new(channel)
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
    ) -> Result<HeartbeatAnswer, PeerError> {
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
            .map_err(|s| call_failed(controller, "heartbeat", &s))
    }
}

/// A failed gRPC call to `broker` as a [`PeerError`].
fn call_failed(broker: i32, call: &'static str, s: &Status) -> PeerError {
    PeerError::Call {
        broker,
        call,
        code: s.code() as i32,
        message: s.message().to_string(),
    }
}

impl MarkerTransport for ClusterPeers {
    fn write_markers(
        &self,
        broker: i32,
        coordinator: i32,
        writes: Vec<MarkerWrite>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<MarkerOutcome>, PeerError>> {
        Box::pin(async move {
            let n = writes.len();
            let mut c = self.client(broker)?;
            let mut r = Request::new(pb::WriteTxnMarkersRequest {
                coordinator_id: coordinator,
                markers: writes
                    .into_iter()
                    .map(|w| pb::TxnMarkerWrite {
                        topic: w.topic,
                        partition: w.partition,
                        producer_id: w.marker.producer_id,
                        producer_epoch: i32::from(w.marker.producer_epoch),
                        coordinator_epoch: w.marker.coordinator_epoch,
                        commit: w.marker.commit,
                    })
                    .collect(),
                timeout_ms: timeout.as_millis() as u64,
            });
            r.set_timeout(timeout + Duration::from_secs(2));
            self.auth.sign(&mut r, method::WRITE_TXN_MARKERS);
            let results = c
                .write_txn_markers(r)
                .await
                .map_err(|s| call_failed(broker, "WriteTxnMarkers", &s))?
                .into_inner()
                .results;
            if results.len() != n {
                return Err(PeerError::BadAnswer {
                    broker,
                    call: "WriteTxnMarkers",
                    reason: format!("{} outcomes for {n} markers", results.len()),
                });
            }
            Ok(results.into_iter().map(from_pb_outcome).collect())
        })
    }

    fn verify(
        &self,
        broker: i32,
        sender: i32,
        check: VerifyTxn,
    ) -> BoxFuture<'_, Result<Vec<i16>, PeerError>> {
        Box::pin(async move {
            let mut c = self.client(broker)?;
            let mut r = Request::new(pb::VerifyTxnPartitionsRequest {
                sender_id: sender,
                transactional_id: check.transactional_id,
                producer_id: check.producer_id,
                producer_epoch: i32::from(check.producer_epoch),
                partitions: check
                    .partitions
                    .into_iter()
                    .map(|(topic, partition)| pb::TxnPartition { topic, partition })
                    .collect(),
            });
            r.set_timeout(Duration::from_secs(5));
            self.auth.sign(&mut r, method::VERIFY_TXN_PARTITIONS);
            let codes = c
                .verify_txn_partitions(r)
                .await
                .map_err(|s| call_failed(broker, "VerifyTxnPartitions", &s))?
                .into_inner()
                .error_codes;
            Ok(codes
                .into_iter()
                .map(|c| i16::try_from(c).unwrap_or(-1))
                .collect())
        })
    }
}

impl ReplicaTransport for ClusterPeers {
    fn fetch(
        &self,
        leader: i32,
        req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, PeerError>> {
        Box::pin(async move {
            let mut c = self.client(leader)?;
            let wait = Duration::from_millis(req.max_wait_ms);
            let mut r = Request::new(to_pb_request(req));
            r.set_timeout(wait + Duration::from_secs(2));
            self.auth.sign(&mut r, method::REPLICA_FETCH);
            let resp = c
                .replica_fetch(r)
                .await
                .map_err(|s| call_failed(leader, "ReplicaFetch", &s))?;
            let resp = resp.into_inner();
            let error = match pb::FetchSessionError::try_from(resp.session_error) {
                Ok(pb::FetchSessionError::SessionOk) => None,
                Ok(pb::FetchSessionError::SessionInvalidEpoch) => Some(SessionError::InvalidEpoch),
                // Unknown values too: a new session is always safe.
                _ => Some(SessionError::NotFound),
            };
            Ok(ReplicaFetchResponse {
                partitions: resp.partitions.into_iter().map(from_pb_result).collect(),
                session: SessionAnswer {
                    id: resp.session_id,
                    error,
                },
            })
        })
    }
}
