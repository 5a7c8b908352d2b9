//! The metadata quorum node: wires the Raft storage (`raft/`) and the gRPC transport
//! (`rpc/`) into a running openraft node, bootstraps the group from
//! `controller.quorum.voters`, and offers the broker [`MetadataQuorum::submit`] and local
//! reads of the applied [`ClusterImage`].
//!
//! It sits above both `raft` and `rpc` so that neither depends on the other's side of the
//! wiring (`rpc` uses `raft` types; `raft` and `metadata` know nothing of the network).
//!
//! # Opening and serving
//! [`MetadataQuorum::open`] starts the Raft node without serving; the [`RaftServer`] it returns
//! serves the Raft gRPC service — and the broker's `Cluster` service beside it — once the
//! caller has built the broker that service answers for (`node`). The caller binds the
//! listener first, so the port is taken meanwhile; [`MetadataQuorum::start`] does both at once.
//!
//! # Bootstrap and restart
//! Every voter listed in `controller.quorum.voters` calls `initialize` with the membership
//! built from that list alone — identical on every voter, which openraft documents as safe —
//! unless its stored state says it is already initialized; `NotAllowed` (another voter got
//! there first) counts as success. A broker not in the list never initializes: it waits to be
//! added (as a learner) by the leader. A restart opens the stored log, vote and state machine
//! and rejoins with no further step.
//!
//! # Reads
//! - [`MetadataQuorum::image`] / [`MetadataQuorum::subscribe`] are *local*: the image this
//!   broker has applied, which may lag the leader by the replication delay (one heartbeat,
//!   100 ms by default) and, on a partitioned broker, by longer. That is what Kafka's brokers
//!   serve too (Metadata responses come from the local metadata cache); clients recover from
//!   a stale answer with NOT_LEADER_OR_FOLLOWER and a refresh.
//! - After [`MetadataQuorum::submit`] returns, the local image includes the command
//!   (read-your-writes on the submitting broker).
//! - [`MetadataQuorum::linearizable_image`] confirms leadership with a quorum first; use it
//!   before controller decisions (fencing, leader elections) that must not act on a deposed
//!   leader's view. openraft 0.9 has no CheckQuorum, so a partitioned leader still believes
//!   it leads until this check fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::metadata::{ClusterImage, MetadataCommand, MetadataError};
use crate::raft::types::LogId;
use crate::raft::{
    AppliedImage, BrokerNode, Command, CommandResponse, LogStore, MetadataRaft, NodeId,
    NodeListener, StateMachine,
};
use crate::rpc::auth::RpcAuth;
use crate::rpc::network::ClientWriteResult;
use crate::rpc::{ForwardError, NetworkFactory, Peers, RaftService};

/// Settings of one quorum member.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This broker's id (`node.id`).
    pub node_id: NodeId,
    /// The voters and their Raft addresses (`controller.quorum.voters`). Must be the same on
    /// every voter: it is the initial membership.
    pub voters: BTreeMap<NodeId, String>,
    /// This broker's Kafka listeners, stated when it joins as a learner.
    pub listeners: Vec<NodeListener>,
    /// Minimum election timeout; the maximum is twice this, the heartbeat a third of it.
    pub election_timeout_min_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_interval_entries: u64,
    /// Log entries kept behind a snapshot, so briefly absent followers catch up from the log.
    pub logs_kept_after_snapshot: u64,
    /// How long [`MetadataQuorum::submit`] may take in total, leader changes included.
    pub submit_timeout: Duration,
    /// Signs and verifies inter-broker calls with the cluster secret (`inter.broker.secret`).
    pub auth: Arc<RpcAuth>,
}

impl QuorumConfig {
    /// The quorum settings of a broker.
    pub fn from_broker(config: &BrokerConfig) -> Self {
        let node_id = config.node_id as NodeId;
        let voters = if config.quorum_voters.is_empty() {
            BTreeMap::from([(node_id, config.raft_listener.to_string())])
        } else {
            config
                .quorum_voters
                .iter()
                .map(|v| (v.id as NodeId, v.addr()))
                .collect()
        };
        Self {
            node_id,
            voters,
            listeners: config
                .listeners
                .iter()
                .map(|l| NodeListener {
                    name: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: l.advertised_port,
                })
                .collect(),
            election_timeout_min_ms: config.quorum_election_timeout_ms,
            auth: Arc::new(RpcAuth::new(
                node_id,
                config.inter_broker_secret.as_ref().map(|s| s.0.clone()),
            )),
            ..Self::defaults(node_id, BTreeMap::new())
        }
    }

    /// Default timings for `node_id` among `voters`.
    pub fn defaults(node_id: NodeId, voters: BTreeMap<NodeId, String>) -> Self {
        Self {
            node_id,
            voters,
            listeners: Vec::new(),
            election_timeout_min_ms: 300,
            snapshot_interval_entries: 5000,
            logs_kept_after_snapshot: 1000,
            submit_timeout: Duration::from_secs(10),
            auth: Arc::new(RpcAuth::new(node_id, None)),
        }
    }

    /// openraft's configuration: heartbeat = min/3, election timeout in [min, 2·min), snapshot
    /// chunks given 2 s each (openraft's 200 ms default restarts transfers under load).
    pub fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        let min = self.election_timeout_min_ms;
        openraft::Config {
            cluster_name: "raftka-metadata".into(),
            heartbeat_interval: (min / 3).max(1),
            election_timeout_min: min,
            election_timeout_max: min * 2,
            install_snapshot_timeout: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval_entries),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(Box::new(e)))
    }

    fn is_voter(&self) -> bool {
        self.voters.contains_key(&self.node_id)
    }
}

/// Failures of the metadata quorum.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The command was committed but refused by the state machine (the image is unchanged).
    #[error(transparent)]
    Rejected(#[from] MetadataError),
    #[error(
        "invalid metadata quorum settings (raft.election.timeout.ms, metadata.snapshot.*): {0}"
    )]
    Config(#[source] Box<openraft::ConfigError>),
    /// The Raft log tree could not be opened.
    #[error("cannot open the metadata quorum's log (sled tree `raft_log`): {0}; check the data directory's disk")]
    OpenLog(#[source] sled::Error),
    /// The state machine could not be loaded.
    #[error(
        "cannot load the metadata quorum's state machine: {0}; check the data directory's disk"
    )]
    OpenStateMachine(#[source] Box<crate::raft::types::StorageError>),
    /// Initializing the group with the static voters failed.
    #[error("cannot bootstrap the metadata quorum with the voters of quorum.voters: {0}")]
    Bootstrap(#[source] Box<RaftError<NodeId, InitializeError<NodeId, BrokerNode>>>),
    #[error("cannot set up mutual TLS on the inter-broker port: {0}")]
    Tls(String),
    #[error("cannot bind raft.listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// No leader confirmed the command in time. If it was sent, it may still commit.
    #[error("the metadata quorum did not answer within {0:?} (no leader reachable?)")]
    Timeout(Duration),
    /// A leader-only operation on a broker that is not (or no longer) the leader.
    #[error("this broker is not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The Raft node stopped (storage failure or shutdown).
    #[error("the metadata quorum node has stopped: {0}")]
    Fatal(#[source] Box<openraft::error::Fatal<NodeId>>),
    /// A membership change (adding or promoting a broker) was refused.
    #[error("the metadata quorum refused the membership change: {0}")]
    Membership(#[source] Box<openraft::error::ChangeMembershipError<NodeId>>),
}

impl From<openraft::error::Fatal<NodeId>> for QuorumError {
    fn from(e: openraft::error::Fatal<NodeId>) -> Self {
        QuorumError::Fatal(Box::new(e))
    }
}

/// A committed and applied command.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Where the command sits in the metadata log.
    pub log_id: LogId,
    /// What applying it answered (never `Rejected`: that is [`QuorumError::Rejected`]).
    pub response: CommandResponse,
}

/// A running member of the metadata quorum.
pub struct MetadataQuorum {
    id: NodeId,
    raft: MetadataRaft,
    images: watch::Receiver<AppliedImage>,
    peers: Peers,
    raft_addr: SocketAddr,
    submit_timeout: Duration,
    server_stop: CancellationToken,
    /// The gRPC server task, once [`RaftServer::serve`] started it.
    server: ServerTask,
    /// Learners whose `add_learner` is in flight (see [`MetadataQuorum::admit_learner`]).
    joining: Arc<std::sync::Mutex<BTreeSet<NodeId>>>,
    /// Signs calls to other brokers (requests forwarded to the leader).
    auth: Arc<RpcAuth>,
}

impl MetadataQuorum {
    /// Binds `bind` and starts the node (see [`MetadataQuorum::start`]).
    pub async fn bind_and_start(
        config: QuorumConfig,
        db: &sled::Db,
        bind: SocketAddr,
    ) -> Result<Self, QuorumError> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| QuorumError::Bind { addr: bind, source })?;
        Self::start(config, db, listener).await
    }

    /// Opens the node (see [`MetadataQuorum::open`]) and serves the Raft gRPC service on
    /// `listener` at once.
    pub async fn start(
        config: QuorumConfig,
        db: &sled::Db,
        listener: TcpListener,
    ) -> Result<Self, QuorumError> {
        let raft_addr = local_addr(&listener)?;
        let (quorum, server) = Self::open(config, db, raft_addr).await?;
        server.serve(listener, None);
        Ok(quorum)
    }

    /// Opens the Raft log and state machine in `db` (trees `raft_log`, `raft_sm`), starts the
    /// Raft node and bootstraps the group if this voter never was — without serving: the
    /// returned [`RaftServer`] serves the Raft gRPC service (and the broker's `Cluster`
    /// service beside it) once the caller has built what the `Cluster` service needs.
    /// `raft_addr` is where the listener it will be given is bound; bind it before calling, so
    /// the port is taken and peers' connections wait in its backlog meanwhile (openraft
    /// retries a peer that does not answer for a moment).
    pub async fn open(
        config: QuorumConfig,
        db: &sled::Db,
        raft_addr: SocketAddr,
    ) -> Result<(Self, RaftServer), QuorumError> {
        let id = config.node_id;
        let raft_config = Arc::new(config.raft_config()?);
        let log = LogStore::open(db).map_err(QuorumError::OpenLog)?;
        let sm = StateMachine::open(db).map_err(|e| QuorumError::OpenStateMachine(Box::new(e)))?;
        let images = sm.subscribe();
        let peers = Peers::new(
            Duration::from_millis(config.election_timeout_min_ms),
            config.auth.clone(),
        );
        let network = NetworkFactory::new(id, peers.clone());
        let raft = MetadataRaft::new(id, raft_config, network, log, sm).await?;
        let server_stop = CancellationToken::new();
        let running = Arc::new(std::sync::Mutex::new(None));
        let server = RaftServer {
            service: RaftService::new(
                id,
                raft.clone(),
                config.voters.keys().copied().collect(),
                config.auth.clone(),
            ),
            stop: server_stop.clone(),
            running: running.clone(),
        };
        tokio::spawn(log_leader_changes(raft.metrics()));
        tracing::info!(node_id = id, %raft_addr, voters = ?config.voters, "metadata quorum node started");

        let quorum = Self {
            id,
            raft,
            images,
            peers,
            raft_addr,
            submit_timeout: config.submit_timeout,
            server_stop,
            server: running,
            joining: Arc::default(),
            auth: config.auth.clone(),
        };
        if config.is_voter() {
            quorum.bootstrap(&config).await?;
        } else {
            tracing::info!(
                node_id = id,
                "not in controller.quorum.voters: waiting to be added by the quorum leader"
            );
        }
        Ok((quorum, server))
    }

    /// Initializes the group with the static voters, once (see the module docs).
    async fn bootstrap(&self, config: &QuorumConfig) -> Result<(), QuorumError> {
        let initialized = self.raft.is_initialized().await?;
        if initialized {
            tracing::info!(node_id = self.id, "metadata quorum state found; rejoining");
            return Ok(());
        }
        let members: BTreeMap<NodeId, BrokerNode> = config
            .voters
            .iter()
            .map(|(id, addr)| (*id, BrokerNode::new(addr.clone())))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.id, voters = ?config.voters, "metadata quorum bootstrapped");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!(node_id = self.id, "metadata quorum already bootstrapped");
                Ok(())
            }
            Err(e) => Err(QuorumError::Bootstrap(Box::new(e))),
        }
    }

    /// This broker's node id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Where the Raft gRPC service listens.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The newest locally applied image (a local read: see the module docs).
    pub fn image(&self) -> Arc<ClusterImage> {
        self.images.borrow().image.clone()
    }

    /// The newest locally applied image and the log id it reflects.
    pub fn applied(&self) -> AppliedImage {
        self.images.borrow().clone()
    }

    /// A receiver that sees every newly applied image (for caches and waiting).
    pub fn subscribe(&self) -> watch::Receiver<AppliedImage> {
        self.images.clone()
    }

    /// openraft's metrics (state, leader, term, applied index, snapshot…).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BrokerNode>> {
        self.raft.metrics()
    }

    /// The leader this broker currently knows of (local knowledge, may be stale).
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this broker believes it is the leader (see `linearizable_image` for a checked
    /// answer).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Every member of the quorum (voters and learners) with its gRPC address, from the newest
    /// membership this broker knows.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.raft_addr.clone()))
            .collect()
    }

    /// On the leader: makes broker `id`, which is not a member yet, a Raft learner reached at
    /// `raft_addr`, in the background (openraft's non-blocking `add_learner`); the learner then
    /// receives the log and applies every image like a voter, without a vote. A broker that is
    /// already a member, or whose admission is in flight, is left alone, so a heartbeat can
    /// call this every time.
    pub fn admit_learner(&self, id: NodeId, raft_addr: &str) {
        if raft_addr.is_empty() || !self.is_leader() || self.members().contains_key(&id) {
            return;
        }
        if !self
            .joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return;
        }
        let raft = self.raft.clone();
        let joining = self.joining.clone();
        let node = BrokerNode::new(raft_addr);
        tokio::spawn(async move {
            match raft.add_learner(id, node.clone(), false).await {
                Ok(r) => tracing::info!(
                    broker = id,
                    raft_addr = %node.raft_addr,
                    log_id = %r.log_id,
                    "broker joined the metadata quorum as a learner"
                ),
                Err(e) => tracing::warn!(broker = id, error = %e, "cannot add learner yet"),
            }
            joining
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Signs this broker's calls to other brokers with the cluster secret.
    pub fn auth(&self) -> &Arc<RpcAuth> {
        &self.auth
    }

    /// The openraft handle, for membership changes (`add_learner`, `change_membership`).
    pub fn raft(&self) -> &MetadataRaft {
        &self.raft
    }

    /// Commits `command` through the quorum, forwarding it to the leader when this broker is
    /// not the leader, and waits until this broker has applied it.
    ///
    /// Retries only where the command cannot have been appended (no leader known, the target
    /// was not the leader, the leader's address refused the connection); a timeout is
    /// returned as [`QuorumError::Timeout`] with the outcome unknown, like a Kafka request
    /// timeout. Business refusals are [`QuorumError::Rejected`].
    pub async fn submit(&self, command: MetadataCommand) -> Result<Committed, QuorumError> {
        let deadline = Instant::now() + self.submit_timeout;
        let cmd = Command::from(command);
        let mut metrics = self.raft.metrics();
        let mut hint: Option<(NodeId, Option<BrokerNode>)> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(QuorumError::Timeout(self.submit_timeout));
            }
            let remaining = deadline - now;
            let leader = hint
                .take()
                .or_else(|| metrics.borrow().current_leader.map(|l| (l, None)));
            let result: ClientWriteResult = match leader {
                None => {
                    // No leader known (an election is running): wait for news.
                    wait_change(&mut metrics, remaining).await?;
                    continue;
                }
                Some((leader, _)) if leader == self.id => {
                    match tokio::time::timeout(remaining, self.raft.client_write(cmd.clone())).await
                    {
                        Ok(r) => r,
                        Err(_) => return Err(QuorumError::Timeout(self.submit_timeout)),
                    }
                }
                Some((leader, node)) => {
                    let node = node.or_else(|| {
                        metrics
                            .borrow()
                            .membership_config
                            .membership()
                            .get_node(&leader)
                            .cloned()
                    });
                    let Some(node) = node else {
                        wait_change(&mut metrics, remaining).await?;
                        continue;
                    };
                    match self
                        .peers
                        .forward_client_write(self.id, leader, &node, &cmd, remaining)
                        .await
                    {
                        Ok(r) => r,
                        Err(ForwardError::Timeout(_)) => {
                            return Err(QuorumError::Timeout(self.submit_timeout))
                        }
                        Err(e) => {
                            // Not delivered (refused) or refused by a node that is not who
                            // we meant: wait for the leader to change, a little at most.
                            tracing::debug!(leader, error = %e, "cannot forward to the metadata leader");
                            wait_change(&mut metrics, remaining.min(Duration::from_millis(100)))
                                .await?;
                            continue;
                        }
                    }
                }
            };
            match result {
                Ok(resp) => {
                    self.wait_applied(resp.log_id.index, deadline).await?;
                    return match resp.data {
                        CommandResponse::Rejected(e) => Err(QuorumError::Rejected(e)),
                        response => Ok(Committed {
                            log_id: resp.log_id,
                            response,
                        }),
                    };
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match f.leader_id {
                        Some(l) => hint = Some((l, f.leader_node)),
                        None => wait_change(&mut metrics, remaining).await?,
                    }
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(QuorumError::Membership(Box::new(e)))
                }
                Err(RaftError::Fatal(e)) => return Err(e.into()),
            }
        }
    }

    /// Waits until this broker has applied the log up to `index` (or the deadline passes).
    async fn wait_applied(
        &self,
        index: u64,
        deadline: Instant,
    ) -> Result<AppliedImage, QuorumError> {
        let mut rx = self.images.clone();
        let waited =
            tokio::time::timeout_at(deadline, rx.wait_for(|a| a.applied_index() >= index)).await;
        match waited {
            Ok(Ok(a)) => Ok(a.clone()),
            Ok(Err(_)) => Err(openraft::error::Fatal::Stopped.into()),
            Err(_) => Err(QuorumError::Timeout(self.submit_timeout)),
        }
    }

    /// The image as of a leadership check with a quorum: only on the leader, and only while it
    /// still leads. For controller decisions (see the module docs).
    pub async fn linearizable_image(&self) -> Result<AppliedImage, QuorumError> {
        let deadline = Instant::now() + self.submit_timeout;
        let read = tokio::time::timeout_at(deadline, self.raft.ensure_linearizable())
            .await
            .map_err(|_| QuorumError::Timeout(self.submit_timeout))?;
        match read {
            Ok(log_id) => {
                self.wait_applied(log_id.map(|l| l.index).unwrap_or(0), deadline)
                    .await
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(
                QuorumError::NotLeader { leader: None },
            )
            .inspect_err(|_| tracing::debug!(error = %e, "leadership not confirmed by a quorum")),
            Err(RaftError::Fatal(e)) => Err(e.into()),
        }
    }

    /// Stops the Raft node and the gRPC service. Stored state stays for the next start.
    pub async fn shutdown(self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum node did not stop cleanly");
        }
        self.server_stop.cancel();
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut server) = server {
            // Open peer connections may hold the graceful stop; don't wait long for them.
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        tracing::info!(node_id = self.id, "metadata quorum node stopped");
    }
}

/// The gRPC server task of a quorum node, shared by [`RaftServer::serve`] (which starts it)
/// and [`MetadataQuorum::shutdown`] (which stops it).
type ServerTask = Arc<std::sync::Mutex<Option<JoinHandle<Result<(), tonic::transport::Error>>>>>;

/// The Raft gRPC service of an opened quorum node, not served yet (see
/// [`MetadataQuorum::open`]).
#[must_use = "the quorum node answers no peer until its RaftServer serves"]
pub struct RaftServer {
    service: RaftService,
    stop: CancellationToken,
    running: ServerTask,
}

impl RaftServer {
    /// Serves the Raft service, and the broker's `Cluster` service when given, on `listener`
    /// until [`MetadataQuorum::shutdown`].
    pub fn serve(
        self,
        listener: TcpListener,
        cluster: Option<crate::rpc::cluster::ClusterService>,
    ) {
        let task = tokio::spawn(crate::rpc::serve(
            listener,
            self.service,
            cluster,
            self.stop,
        ));
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }
}

/// The address `listener` is bound to (the Raft address of a node started on it).
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, QuorumError> {
    listener.local_addr().map_err(|source| QuorumError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Waits up to `max` for the metrics to change; fails once the Raft node has stopped.
async fn wait_change(
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, BrokerNode>>,
    max: Duration,
) -> Result<(), QuorumError> {
    match tokio::time::timeout(max, metrics.changed()).await {
        Ok(Err(_)) => Err(openraft::error::Fatal::Stopped.into()),
        _ => Ok(()),
    }
}

/// Logs every change of the known leader (a user watching the logs sees failovers).
async fn log_leader_changes(mut metrics: watch::Receiver<RaftMetrics<NodeId, BrokerNode>>) {
    let mut last: Option<NodeId> = None;
    loop {
        let (leader, term, id, state) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term, m.id, m.state)
        };
        if leader != last {
            tracing::info!(node_id = id, ?leader, previous = ?last, term, ?state, "metadata quorum leader changed");
            last = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
