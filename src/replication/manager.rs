//! The replica manager: turns the metadata image into this broker's roles (leader or
//! follower of each partition), answers followers' fetches for the partitions it leads,
//! runs one fetch loop per leader it follows, and proposes ISR changes.
//!
//! The network and the metadata quorum are behind two small traits, [`ReplicaTransport`] and
//! [`IsrProposer`], so the rules can be tested with in-process fakes and wired to gRPC and
//! Raft by the broker.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Stopwatch;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::log::wake::Readiness;
use crate::log::{LogError, LogStore};
use crate::metadata::{ClusterImage, MetadataCommand, MetadataError};

use super::follower::{self, Applied};
use super::leader::LeaderState;
use super::session::{self, FetchState, FollowerSession, LeaderSession};
use super::throttle::{self, Pacer};
use super::{
    FetchRefusal, PartitionFetchResult, PeerError, ReplicaFetchRequest, ReplicaFetchResponse,
    SessionAnswer, SessionError,
};

/// A boxed future, so the traits stay object-safe without an extra crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a follower's fetch to a leader broker.
pub trait ReplicaTransport: Send + Sync + 'static {
    fn fetch(
        &self,
        leader: i32,
        req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, PeerError>>;
}

/// The transport of a broker without peers (a single broker, tests): every fetch fails with
/// [`PeerError::NoPeers`].
pub struct NoPeers;

impl ReplicaTransport for NoPeers {
    fn fetch(
        &self,
        _leader: i32,
        _req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, PeerError>> {
        Box::pin(async { Err(PeerError::NoPeers) })
    }
}

/// Submits ISR changes to the controller.
pub trait IsrProposer: Send + Sync + 'static {
    fn propose(&self, cmd: MetadataCommand) -> BoxFuture<'_, Result<(), MetadataError>>;
}

/// Told when this broker takes up or gives up the leadership of partitions (after the
/// replica manager has changed its own state, outside its locks). Calls are serialised and
/// in order. `gained` holds (topic, partition, leader epoch), `lost` (topic, partition).
/// Used by the group coordinator to load and drop the offsets of `__consumer_offsets`
/// partitions.
pub trait RoleListener: Send + Sync + 'static {
    fn roles_changed(&self, gained: &[(String, i32, i32)], lost: &[(String, i32)]);
}

/// Replication settings (Kafka names in brackets).
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms` A follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms` Long-poll time of a follower fetch.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes` Record bytes asked for per partition.
    pub fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes` Record bytes asked for per replica fetch.
    pub fetch_response_max_bytes: usize,
    /// `fetch.max.bytes` As leader: the most record bytes of one replica fetch response,
    /// whatever the follower asks for.
    pub leader_response_max_bytes: usize,
    /// Backoff after a failed or refused fetch (`replica.fetch.backoff.ms`).
    pub fetch_backoff_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            fetch_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            leader_response_max_bytes: 55 << 20,
            fetch_backoff_ms: 100,
        }
    }
}

type Key = (String, i32);

/// A partition this broker follows: its leader and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Followed {
    leader: i32,
    leader_epoch: i32,
    /// Named in `follower.replication.throttled.replicas` while outside the ISR.
    throttled: bool,
}

/// See the module documentation.
pub struct ReplicaManager {
    node_id: i32,
    config: ReplicationConfig,
    logs: Arc<LogStore>,
    started: Stopwatch,
    leaders: Mutex<HashMap<Key, LeaderState>>,
    followed: watch::Sender<BTreeMap<Key, Followed>>,
    /// Fenced brokers as of the last image (they may not join an ISR).
    fenced: Mutex<Vec<i32>>,
    /// Leader ids with a running fetch loop.
    loops: Mutex<Vec<i32>>,
    /// Serialises role changes so the listener hears them in order.
    roles: Mutex<()>,
    listener: Mutex<Option<Arc<dyn RoleListener>>>,
    /// The follower replication quota shared by the fetch loops (`replication::throttle`).
    pacer: Mutex<Pacer>,
    /// As leader: each follower broker's fetch session (`replication::session`). Lock order:
    /// `sessions` before `leaders`.
    sessions: Mutex<HashMap<i32, LeaderSession>>,
}

impl ReplicaManager {
    pub fn new(node_id: i32, config: ReplicationConfig, logs: Arc<LogStore>) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            config,
            logs,
            started: Stopwatch::start(),
            leaders: Mutex::new(HashMap::new()),
            followed: watch::channel(BTreeMap::new()).0,
            fenced: Mutex::new(Vec::new()),
            loops: Mutex::new(Vec::new()),
            roles: Mutex::new(()),
            listener: Mutex::new(None),
            pacer: Mutex::new(Pacer::new(Instant::now())),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the listener told about leadership changes (one; a later call replaces it).
    pub fn set_role_listener(&self, listener: Arc<dyn RoleListener>) {
        *lock(&self.listener) = Some(listener);
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed_ms()
    }

    /// Applies a new metadata image: become leader or follower where it says so.
    pub fn on_metadata(
        self: &Arc<Self>,
        image: &ClusterImage,
        transport: &Arc<dyn ReplicaTransport>,
        shutdown: &CancellationToken,
    ) -> Result<(), LogError> {
        let _roles = lock(&self.roles);
        self.take_roles(image, transport, shutdown)
    }

    /// [`ReplicaManager::on_metadata`] with the image `latest` returns, read under the role
    /// lock: concurrent callers (the image follower, API handlers) then apply images in the
    /// order they were applied, and none undoes a newer one's roles with an older image.
    pub fn on_latest_metadata(
        self: &Arc<Self>,
        latest: impl FnOnce() -> Arc<ClusterImage>,
        transport: &Arc<dyn ReplicaTransport>,
        shutdown: &CancellationToken,
    ) -> Result<(), LogError> {
        let _roles = lock(&self.roles);
        self.take_roles(&latest(), transport, shutdown)
    }

    /// Deletes this broker's log of a partition the image `latest` returns (read under the
    /// role lock) does not assign to it: a replica a reassignment moved away, or a deleted
    /// topic's. Returns whether it deleted. An older image saying so is not enough: a newer
    /// one may have moved the replica back here, and a sync with it already opened the log
    /// and follows it — deleting it then would wipe a replica the leader counts on.
    pub fn delete_unassigned(
        &self,
        topic: &str,
        partition: i32,
        latest: impl FnOnce() -> Arc<ClusterImage>,
    ) -> Result<bool, LogError> {
        let _roles = lock(&self.roles);
        let image = latest();
        let assigned = image
            .topics
            .get(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
            .is_some_and(|p| p.replicas.contains(&self.node_id));
        if assigned {
            return Ok(false);
        }
        self.logs.delete_partition(topic, partition)?;
        Ok(true)
    }

    /// Deletes this broker's log of a partition when it was recorded for another topic id
    /// than the one the image `latest` returns (read under the role lock) gives the topic: the
    /// data of a deleted topic of the same name. Returns `(recorded, current)` ids when it
    /// deleted. Judged by the newest image, not the caller's: an older image holds the older
    /// id, and would take the re-created topic's log a newer role sync opened for an old one.
    pub fn delete_older_topic_log(
        &self,
        topic: &str,
        partition: i32,
        latest: impl FnOnce() -> Arc<ClusterImage>,
    ) -> Result<Option<(u128, u128)>, LogError> {
        let _roles = lock(&self.roles);
        let image = latest();
        let Some(t) = image.topics.get(topic) else {
            return Ok(None);
        };
        let assigned = t
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .is_some_and(|p| p.replicas.contains(&self.node_id));
        if !assigned {
            return Ok(None);
        }
        let id = t.topic_id();
        Ok(self
            .logs
            .delete_if_other_topic(topic, partition, id)?
            .map(|old| (old, id)))
    }

    fn take_roles(
        self: &Arc<Self>,
        image: &ClusterImage,
        transport: &Arc<dyn ReplicaTransport>,
        shutdown: &CancellationToken,
    ) -> Result<(), LogError> {
        let now = self.now_ms();
        let mut followed = BTreeMap::new();
        let mut gained = Vec::new();
        let mut lost = Vec::new();
        {
            let mut leaders = lock(&self.leaders);
            let mut still_led = Vec::new();
            for t in image.topics.values() {
                for p in &t.partitions {
                    if !p.replicas.contains(&self.node_id) {
                        continue;
                    }
                    let key = (t.name.clone(), p.index);
                    let log = match self
                        .logs
                        .open_partition_with_id(&t.name, p.index, t.topic_id())
                    {
                        Ok(log) => log,
                        // The log holds a deleted topic's data, not deleted yet (the broker's
                        // registration is not in the image yet): take no role for it.
                        Err(e @ LogError::InconsistentTopicId { .. }) => {
                            tracing::debug!(topic = %t.name, partition = p.index, error = %e, "no role for a log of an older topic");
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if p.leader == self.node_id {
                        still_led.push(key.clone());
                        match leaders.get_mut(&key) {
                            Some(st) if st.leader_epoch == p.leader_epoch => st.update(p, now),
                            _ => {
                                tracing::info!(topic = %t.name, partition = p.index, epoch = p.leader_epoch, isr = ?p.isr, "became leader");
                                let st = LeaderState::new(p, &log, now);
                                st.advance_high_watermark(&log)?;
                                if let Some(old) = leaders.insert(key.clone(), st) {
                                    // A new epoch of a partition still led: report the old
                                    // term's end too, so listeners reload.
                                    lost.push(key.clone());
                                    old.term.cancel();
                                }
                                gained.push((key.0, key.1, p.leader_epoch));
                            }
                        }
                    } else if p.leader >= 0 {
                        let throttled = !p.isr.contains(&self.node_id)
                            && t.configs
                                .get(throttle::REPLICAS_KEY)
                                .is_some_and(|v| throttle::names(v, p.index, self.node_id));
                        followed.insert(
                            key,
                            Followed {
                                leader: p.leader,
                                leader_epoch: p.leader_epoch,
                                throttled,
                            },
                        );
                    }
                }
            }
            leaders.retain(|k, st| {
                let keep = still_led.contains(k);
                if !keep {
                    st.term.cancel();
                    let now = image
                        .topics
                        .get(&k.0)
                        .and_then(|t| t.partitions.iter().find(|p| p.index == k.1));
                    tracing::info!(
                        topic = %k.0,
                        partition = k.1,
                        new_leader = now.map_or(-1, |p| p.leader),
                        epoch = now.map_or(-1, |p| p.leader_epoch),
                        "no longer leader"
                    );
                    lost.push(k.clone());
                }
                keep
            });
        }
        if !gained.is_empty() || !lost.is_empty() {
            let listener = lock(&self.listener).clone();
            if let Some(l) = listener {
                l.roles_changed(&gained, &lost);
            }
        }
        *lock(&self.fenced) = image
            .brokers
            .values()
            .filter(|b| b.fenced)
            .map(|b| b.id)
            .collect();
        lock(&self.pacer).set_rate(throttle::rate(image, self.node_id), Instant::now());
        let leader_ids: Vec<i32> = followed.values().map(|f| f.leader).collect();
        self.followed.send_replace(followed);
        let mut loops = lock(&self.loops);
        for leader in leader_ids {
            if !loops.contains(&leader) {
                loops.push(leader);
                let me = self.clone();
                let transport = transport.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { me.fetch_loop(leader, transport, shutdown).await });
            }
        }
        Ok(())
    }

    /// True when this broker has taken up leadership of the partition in `leader_epoch`
    /// (metadata may name it leader a moment before the roles are synchronised).
    pub fn is_leading(&self, topic: &str, partition: i32, leader_epoch: i32) -> bool {
        lock(&self.leaders)
            .get(&(topic.to_string(), partition))
            .is_some_and(|st| st.leader_epoch == leader_epoch)
    }

    /// The term of this broker's leadership of the partition in `leader_epoch`, if it leads
    /// it in that epoch: a token cancelled the moment that leadership ends.
    pub fn leader_term(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
    ) -> Option<CancellationToken> {
        lock(&self.leaders)
            .get(&(topic.to_string(), partition))
            .filter(|st| st.leader_epoch == leader_epoch)
            .map(|st| st.term.clone())
    }

    /// After a leader append: move the high watermark as far as the ISR allows (all the way
    /// when the leader is alone in the ISR).
    pub fn after_leader_append(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let leaders = lock(&self.leaders);
        if let (Some(st), Some(log)) = (
            leaders.get(&(topic.to_string(), partition)),
            self.logs.partition(topic, partition),
        ) {
            st.advance_high_watermark(&log)?;
        }
        Ok(())
    }

    /// Answers a follower's fetch, long-polling up to `max_wait_ms` when there is nothing new:
    /// sessionless (every partition named and answered), or in a fetch session
    /// ([`super::session`]).
    pub async fn handle_fetch(&self, req: ReplicaFetchRequest) -> ReplicaFetchResponse {
        if req.session.open || req.session.id != 0 {
            return self.handle_session_fetch(req).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms);
        loop {
            // Register before reading, so an append in between is not missed: role changes
            // through the store-wide notifier, appends through each partition's log end.
            let notified = self.logs.appended().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut ready = Readiness::new();
            let resp = self.fetch_once(&req, Some(&mut ready));
            let has_news = resp
                .partitions
                .iter()
                .any(|p| !p.records.is_empty() || p.refusal.is_some() || p.diverging.is_some());
            if has_news || tokio::time::Instant::now() >= deadline {
                return resp;
            }
            let woken = tokio::select! {
                _ = &mut notified => true,
                _ = ready.changed() => true,
                _ = tokio::time::sleep_until(deadline) => false,
            };
            if !woken {
                return self.fetch_once(&req, None);
            }
        }
    }

    fn fetch_once(
        &self,
        req: &ReplicaFetchRequest,
        mut ready: Option<&mut Readiness>,
    ) -> ReplicaFetchResponse {
        let now = self.now_ms();
        let mut leaders = lock(&self.leaders);
        let mut budget = req.max_bytes.min(self.config.leader_response_max_bytes);
        let partition_max = req.partition_max_bytes.min(budget);
        let mut returned_any = false;
        let partitions = req
            .partitions
            .iter()
            .map(|f| {
                let key = (f.topic.clone(), f.partition);
                let (Some(st), Some(log)) = (leaders.get_mut(&key), self.logs.partition(&f.topic, f.partition)) else {
                    return PartitionFetchResult {
                        topic: f.topic.clone(),
                        partition: f.partition,
                        refusal: Some(FetchRefusal::NotLeader),
                        high_watermark: -1,
                        log_start: -1,
                        diverging: None,
                        records: Default::default(),
                    topic_id: 0,
                    };
                };
                if let Some(r) = ready.as_deref_mut() {
                    r.add(log.watch_log_end());
                }
                // Only the first partition with data may exceed the budget (by its first
                // batch, so replication progresses); after that an exhausted budget reads
                // nothing, as in Kafka.
                let limit = partition_max.min(budget);
                let r = st.on_fetch_limited(&log, req.replica_id, f, limit, !returned_any, now);
                returned_any |= !r.records.is_empty();
                budget = budget.saturating_sub(r.records.len());
                // A move wakes this partition's acks=all waits and consumers' long polls
                // through its high-watermark watch.
                if let Err(e) = st.advance_high_watermark(&log) {
                    tracing::error!(topic = %f.topic, partition = f.partition, error = %e, "cannot advance high watermark");
                }
                r
            })
            .collect();
        drop(leaders);
        ReplicaFetchResponse {
            partitions,
            session: SessionAnswer::default(),
        }
    }

    /// Opens the follower's session or checks and applies an incremental request's changes;
    /// returns the session id.
    fn begin_session(&self, req: &ReplicaFetchRequest) -> Result<u64, SessionError> {
        let mut sessions = lock(&self.sessions);
        if req.session.open {
            let s = LeaderSession::open(&req.partitions);
            let id = s.id;
            sessions.insert(req.replica_id, s);
            return Ok(id);
        }
        let s = sessions
            .get_mut(&req.replica_id)
            .filter(|s| s.id == req.session.id)
            .ok_or(SessionError::NotFound)?;
        if s.epoch != req.session.epoch {
            return Err(SessionError::InvalidEpoch);
        }
        s.update(&req.partitions, &req.session.forgotten);
        s.epoch = session::next_epoch(s.epoch);
        Ok(s.id)
    }

    /// A fetch in a session: like the sessionless one, but the answer holds only the
    /// partitions with something to say, and it long-polls until one has.
    async fn handle_session_fetch(&self, req: ReplicaFetchRequest) -> ReplicaFetchResponse {
        let id = match self.begin_session(&req) {
            Ok(id) => id,
            Err(e) => {
                return ReplicaFetchResponse {
                    partitions: Vec::new(),
                    session: SessionAnswer {
                        id: 0,
                        error: Some(e),
                    },
                }
            }
        };
        let answer = |partitions: Option<Vec<PartitionFetchResult>>| match partitions {
            Some(partitions) => ReplicaFetchResponse {
                partitions,
                session: SessionAnswer { id, error: None },
            },
            // Replaced by a newer session of the same follower meanwhile.
            None => ReplicaFetchResponse {
                partitions: Vec::new(),
                session: SessionAnswer {
                    id: 0,
                    error: Some(SessionError::NotFound),
                },
            },
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms);
        loop {
            let notified = self.logs.appended().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut ready = Readiness::new();
            let parts = self.session_pass(&req, id, Some(&mut ready));
            if parts.as_ref().is_none_or(|p| !p.is_empty())
                || tokio::time::Instant::now() >= deadline
            {
                return answer(parts);
            }
            let woken = tokio::select! {
                _ = &mut notified => true,
                _ = ready.changed() => true,
                _ = tokio::time::sleep_until(deadline) => false,
            };
            if !woken {
                return answer(self.session_pass(&req, id, None));
            }
        }
    }

    /// One pass over a session's partitions: the results worth sending (`None`: the session
    /// is gone). A partition the follower did not name, whose follower is caught up and whose
    /// offsets did not move, only has the fetch recorded (for the ISR rules) — no read.
    fn session_pass(
        &self,
        req: &ReplicaFetchRequest,
        id: u64,
        mut ready: Option<&mut Readiness>,
    ) -> Option<Vec<PartitionFetchResult>> {
        let now = self.now_ms();
        let replica = req.replica_id;
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(&replica).filter(|s| s.id == id)?;
        let mut leaders = lock(&self.leaders);
        let mut budget = req.max_bytes.min(self.config.leader_response_max_bytes);
        let partition_max = req.partition_max_bytes.min(budget);
        let mut returned_any = false;
        let mut out = Vec::new();
        let mut served = Vec::new();
        for key in &s.order {
            let Some(e) = s.entries.get_mut(key) else {
                continue;
            };
            let (Some(st), Some(log)) = (leaders.get_mut(key), self.logs.partition_at(key)) else {
                out.push(PartitionFetchResult {
                    topic: key.0.clone(),
                    partition: key.1,
                    refusal: Some(FetchRefusal::NotLeader),
                    high_watermark: -1,
                    log_start: -1,
                    diverging: None,
                    records: Default::default(),
                    topic_id: 0,
                });
                continue;
            };
            if let Some(r) = ready.as_deref_mut() {
                r.add(log.watch_log_end());
            }
            let o = log.offsets();
            let idle = !e.fresh
                && st.leader_epoch == e.fetch.leader_epoch
                && o.log_end <= e.fetch.fetch_offset
                && o.high_watermark == e.sent_high_watermark
                && o.log_start == e.sent_log_start
                && st.on_idle_fetch(
                    replica,
                    e.fetch.fetch_offset,
                    o.log_end,
                    o.high_watermark,
                    now,
                );
            let mut r = if idle {
                None
            } else {
                e.fresh = false;
                let limit = partition_max.min(budget);
                let r = st.on_fetch_limited(&log, replica, &e.fetch, limit, !returned_any, now);
                returned_any |= !r.records.is_empty();
                budget = budget.saturating_sub(r.records.len());
                Some(r)
            };
            // A move wakes this partition's acks=all waits and consumers' long polls through
            // its high-watermark watch (an ISR that shrank moves it without any new record).
            match st.advance_high_watermark(&log) {
                Ok(hw) => {
                    if let Some(r) = r.as_mut() {
                        if r.refusal.is_none() {
                            r.high_watermark = hw;
                        }
                    }
                    if r.is_none() && hw != e.sent_high_watermark {
                        r = Some(PartitionFetchResult {
                            topic: key.0.clone(),
                            partition: key.1,
                            refusal: None,
                            high_watermark: hw,
                            log_start: o.log_start,
                            diverging: None,
                            records: Default::default(),
                            topic_id: log.topic_id().unwrap_or(0),
                        });
                    }
                }
                Err(err) => {
                    tracing::error!(topic = %key.0, partition = key.1, error = %err, "cannot advance high watermark");
                }
            }
            let Some(r) = r else {
                continue;
            };
            let worth = !r.records.is_empty()
                || r.refusal.is_some()
                || r.diverging.is_some()
                || r.high_watermark != e.sent_high_watermark
                || r.log_start != e.sent_log_start;
            if worth {
                if r.refusal.is_none() && r.diverging.is_none() {
                    e.sent_high_watermark = r.high_watermark;
                    e.sent_log_start = r.log_start;
                }
                if !r.records.is_empty() {
                    served.push(key.clone());
                }
                out.push(r);
            }
        }
        drop(leaders);
        s.served_last(&served);
        Some(out)
    }

    /// ISR changes this broker wants as leader right now.
    pub fn wanted_isr_changes(&self) -> Vec<MetadataCommand> {
        let now = self.now_ms();
        let fenced = lock(&self.fenced).clone();
        let mut leaders = lock(&self.leaders);
        leaders
            .iter_mut()
            .filter_map(|((topic, partition), st)| {
                st.prune_joining(now, self.config.lag_time_max_ms, |b| !fenced.contains(&b));
                let log = self.logs.partition(topic, *partition)?;
                let isr = st.wanted_isr(&log, now, self.config.lag_time_max_ms, |b| {
                    !fenced.contains(&b)
                })?;
                Some(MetadataCommand::AlterPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    leader: st.leader,
                    leader_epoch: st.leader_epoch,
                    partition_epoch: st.partition_epoch,
                    isr,
                })
            })
            .collect()
    }

    /// Proposes wanted ISR changes every `period` until shutdown.
    pub async fn isr_loop(
        self: Arc<Self>,
        proposer: Arc<dyn IsrProposer>,
        period: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for cmd in self.wanted_isr_changes() {
                if let MetadataCommand::AlterPartition {
                    topic,
                    partition,
                    isr,
                    leader_epoch,
                    ..
                } = &cmd
                {
                    tracing::info!(%topic, partition, ?isr, epoch = leader_epoch, "proposing ISR change");
                }
                if let Err(e) = proposer.propose(cmd).await {
                    tracing::debug!(error = %e, "ISR change refused");
                }
            }
        }
    }

    async fn fetch_loop(
        self: Arc<Self>,
        leader: i32,
        transport: Arc<dyn ReplicaTransport>,
        shutdown: CancellationToken,
    ) {
        let mut rx = self.followed.subscribe();
        let backoff = Duration::from_millis(self.config.fetch_backoff_ms);
        let mut session = FollowerSession::default();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let mine: Vec<(Key, Followed)> = rx
                .borrow_and_update()
                .iter()
                .filter(|(_, f)| f.leader == leader)
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect();
            if mine.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = rx.changed() => continue,
                }
            }
            // Throttled partitions sit out while the quota is spent.
            let pause = lock(&self.pacer).wait(Instant::now());
            let now: Vec<(Key, FetchState)> = mine
                .iter()
                .filter(|(_, f)| !f.throttled || pause.is_zero())
                .filter_map(|(key, f)| {
                    let log = self.logs.partition_at(key)?;
                    Some((key.clone(), follower::fetch_state(&log, f.leader_epoch)))
                })
                .collect();
            if now.is_empty() && !pause.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            let throttled: Vec<Key> = mine
                .iter()
                .filter(|(_, f)| f.throttled)
                .map(|(k, _)| k.clone())
                .collect();
            let (fields, partitions) = session.next(now);
            let opened = fields.open;
            let req = ReplicaFetchRequest {
                replica_id: self.node_id,
                max_wait_ms: self.config.fetch_wait_max_ms,
                max_bytes: self.config.fetch_response_max_bytes,
                partition_max_bytes: self.config.fetch_max_bytes,
                partitions,
                session: fields,
            };
            let resp = tokio::select! {
                _ = shutdown.cancelled() => return,
                // A leadership change interrupts a long poll so the next request is current;
                // the leader may have taken the request, so the session starts over.
                _ = rx.changed() => {
                    session.reset();
                    continue;
                }
                r = transport.fetch(leader, req) => r,
            };
            let mut refused = false;
            match resp {
                Ok(resp) if resp.session.error.is_some() => {
                    // Open a new session at once (the leader restarted or lost track).
                    tracing::debug!(leader, error = ?resp.session.error, "fetch session refused");
                    session.reset();
                }
                Ok(resp) => {
                    session.answered(resp.session.id, opened);
                    for r in &resp.partitions {
                        if r.refusal.is_some() || r.diverging.is_some() {
                            session.resend(&(r.topic.clone(), r.partition));
                        }
                    }
                    let paid: usize = resp
                        .partitions
                        .iter()
                        .filter(|r| {
                            throttled
                                .iter()
                                .any(|(t, p)| *t == r.topic && *p == r.partition)
                        })
                        .map(|r| r.records.len())
                        .sum();
                    lock(&self.pacer).spent(paid, Instant::now());
                    // Whether this response changed the local log (records or truncation).
                    let wrote = resp.partitions.iter().any(|r| !r.records.is_empty())
                        || resp.partitions.iter().any(|r| r.diverging.is_some());
                    // sled writes (appends, truncations) on a blocking thread: a sled stall
                    // must not hold up the async workers (Raft, other requests).
                    let logs = self.logs.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        resp.partitions
                            .iter()
                            .filter_map(|r| {
                                let log = logs.partition(&r.topic, r.partition)?;
                                Some((r.topic.clone(), r.partition, follower::apply(&log, r)))
                            })
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(leader, error = %e, "applying fetched data failed");
                        refused = true;
                        Vec::new()
                    });
                    for (topic, partition, result) in applied {
                        let r = Part {
                            topic: &topic,
                            partition,
                        };
                        match result {
                            Ok(Applied::Refused(why)) => {
                                tracing::debug!(topic = %r.topic, partition = r.partition, ?why, leader, "fetch refused");
                                refused = true;
                            }
                            Ok(Applied::Truncated { log_end }) => {
                                tracing::info!(node = self.node_id, topic = %r.topic, partition = r.partition, log_end, leader, "truncated divergent log tail");
                            }
                            Ok(Applied::Appended { .. }) => {}
                            // Logged once per episode by the disk-space guard.
                            Err(e @ crate::log::LogError::NoSpace { .. }) => {
                                tracing::debug!(topic = %r.topic, partition = r.partition, error = %e, "cannot apply fetched data");
                                refused = true;
                            }
                            Err(e) => {
                                tracing::warn!(topic = %r.topic, partition = r.partition, error = %e, "cannot apply fetched data");
                                refused = true;
                            }
                        }
                    }
                    // Make the appended records durable (group commit by default; with
                    // `log.flush.interval.messages` only when due) before the next fetch
                    // reports this log end to the leader: the leader's high watermark, and so
                    // every acks=all answer, counts only data on the followers' disks.
                    if wrote {
                        if let Err(e) = self.logs.after_append().await {
                            tracing::error!(error = %e, "flush after replicating failed");
                            refused = true;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(leader, error = %e, "replica fetch failed");
                    session.reset();
                    refused = true;
                }
            }
            if refused {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

/// Names a partition in the fetch loop's log lines.
struct Part<'a> {
    topic: &'a str,
    partition: i32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
