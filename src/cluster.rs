//! A cluster member's background loops and the controller's state: following every applied
//! metadata image with the partition roles and logs, recording controller changes,
//! registration, heartbeats to the controller, the controller's own loop (leases and probes
//! of overdue brokers' ports → fencing, unfencing, preferred leaders) while this broker leads
//! the quorum, and ISR proposals. `node` builds the broker and starts them ([`spawn`]).
//!
//! The controller's leases ([`ControllerLeases`]) live here, shared by the controller loop and
//! the answers to heartbeats (`node`'s `Cluster` handler and this broker's own heartbeats);
//! the broker sees them only as [`HeardBrokers`] (DescribeQuorum, RemoveRaftVoter).
//!
//! May depend on: `broker`, `config`, `events`, `lease`, `metadata`, `quorum`,
//! `replication`, `rpc::cluster` (heartbeats and their answers, the peers), `clock`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::events::{self, Change};
use crate::lease::{HeardBrokers, Liveness};
use crate::metadata::controller::{plan, to_probe, Leases, PlanInput, Timing};
use crate::metadata::{ClusterImage, MetadataCommand, MetadataError};
use crate::replication::manager::{BoxFuture, IsrProposer};
use crate::replication::PeerError;
use crate::rpc::cluster::{BrokerHeartbeat, ClusterPeers, HeartbeatAnswer, HeartbeatRefusal};

/// Why a heartbeat renewed nothing (logged; the next tick tries again).
#[derive(Debug, thiserror::Error)]
enum HeartbeatFailed {
    /// The controller this broker knew (or this broker itself) did not take it.
    #[error(transparent)]
    Refused(#[from] HeartbeatRefusal),
    /// It did not reach the controller.
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Starts the background loops of a built cluster member; they end with `broker.shutdown`.
pub fn spawn(broker: Arc<Broker>, leases: Arc<ControllerLeases>, peers: Arc<ClusterPeers>) {
    tokio::spawn(follow_images(broker.clone()));
    tokio::spawn(watch_controller(broker.clone()));
    tokio::spawn(register(broker.clone()));
    tokio::spawn(heartbeats(broker.clone(), peers, leases.clone()));
    tokio::spawn(controller(broker.clone(), leases));
    // A stopping broker's inter-broker port may close before it exits, and a refusing port
    // gets a broker fenced at once: it must not count itself live meanwhile.
    let stopping = broker.clone();
    tokio::spawn(async move {
        stopping.shutdown.cancelled().await;
        stopping.self_lease.revoke();
    });
    let proposer: Arc<dyn IsrProposer> = Arc::new(Proposer(broker.clone()));
    tokio::spawn(broker.replication.clone().isr_loop(
        proposer,
        Duration::from_millis(250),
        broker.shutdown.clone(),
    ));
}

/// The controller's broker leases while this broker is the active controller (`None`
/// otherwise): renewed by heartbeats, read and reset by the controller loop.
#[derive(Debug, Default)]
pub struct ControllerLeases(Mutex<Option<Leases>>);

impl ControllerLeases {
    fn lock(&self) -> MutexGuard<'_, Option<Leases>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers `hb` as the controller: renews the sender's lease and hands out the liveness
    /// table; `Err` when this broker is not the controller.
    pub fn answer_heartbeat(
        &self,
        broker: &Broker,
        hb: &BrokerHeartbeat,
    ) -> Result<HeartbeatAnswer, HeartbeatRefusal> {
        let me = broker.config.node_id;
        let q = broker
            .metadata
            .quorum()
            .ok_or(HeartbeatRefusal::NotClusterMember(me))?;
        if !q.is_leader() {
            return Err(HeartbeatRefusal::NotController {
                me,
                leader: q.current_leader(),
            });
        }
        if let Ok(id) = u64::try_from(hb.broker) {
            q.admit_learner(id, &hb.raft_addr);
        }
        let applied = q.applied();
        let now = now_ms();
        let mut leases = self.lock();
        let liveness = match leases.as_mut() {
            Some(l) => {
                l.heartbeat(hb.broker, hb.incarnation, now);
                l.table(&applied.image, now, timing(&broker.config))
                    .into_iter()
                    .map(|r| Liveness {
                        broker: r.broker,
                        heard_ms_ago: r.heard_ms_ago,
                        suspect: r.suspect,
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        drop(leases);
        Ok(HeartbeatAnswer {
            fenced: applied
                .image
                .brokers
                .get(&hb.broker)
                .is_some_and(|b| b.fenced),
            metadata_index: applied.applied_index(),
            liveness,
        })
    }
}

impl HeardBrokers for ControllerLeases {
    fn last_heard(&self) -> Option<HashMap<i32, u64>> {
        self.lock().as_ref().map(Leases::last_heard)
    }
}

/// Whether a TCP connection to `addr` is refused (no process listens there). An accepted
/// connection, a timeout or any other error is not a refusal.
pub(crate) async fn refuses(addr: &str, wait: Duration) -> bool {
    matches!(
        tokio::time::timeout(wait, TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

struct Proposer(Arc<Broker>);

impl IsrProposer for Proposer {
    fn propose(&self, cmd: MetadataCommand) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async move { self.0.metadata.submit(&cmd).await.map(|_| ()) })
    }
}

/// The controller's liveness timing from the broker settings.
fn timing(config: &BrokerConfig) -> Timing {
    Timing::new(config.session_timeout_ms, config.heartbeat_interval_ms)
}

/// Milliseconds on the controller's monotonic clock (the time base of `Leases`):
/// [`crate::clock::monotonic_ms`].
use crate::clock::monotonic_ms as now_ms;

/// Follows every applied image: opens logs of newly assigned partitions, drops logs of
/// deleted topics and of replicas a reassignment moved away, and takes up leader/follower
/// roles.
async fn follow_images(broker: Arc<Broker>) {
    let Some(q) = broker.metadata.quorum() else {
        return;
    };
    let mut rx = q.subscribe();
    let mut prev = rx.borrow().image.clone();
    loop {
        let image = rx.borrow_and_update().image.clone();
        record_changes(&broker, &prev, &image);
        prev = image.clone();
        let registered = image
            .brokers
            .get(&broker.config.node_id)
            .is_some_and(|b| b.incarnation == broker.incarnation);
        for topic in image.topics.values() {
            // Logs of an older topic of the same name (deleted while this broker was down or
            // behind) go before any role is taken — only with an image holding this process's
            // registration, i.e. newer than any log this broker wrote (a stale image read at
            // start could name the older id of a topic whose newer log is here).
            if registered {
                if let Err(e) = broker.topics.drop_older_logs(topic) {
                    tracing::error!(topic = %topic.name, error = %e, "cannot delete logs of an older topic");
                }
            }
            if let Err(e) = broker.topics.open_logs(topic) {
                tracing::error!(topic = %topic.name, error = %e, "cannot open partition logs");
            }
        }
        for (topic, partition) in broker.logs.open_partitions() {
            let meta = image
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.iter().find(|p| p.index == partition));
            // A replica a reassignment removed from this broker: stop serving it and delete
            // its data — only with an image newer than this process's registration, so a
            // stale image read at start (before a later move back here) deletes nothing.
            // Either way the newest image decides (`delete_unassigned`): this one may be
            // older than the one an API handler's role sync just opened the log with.
            if let Some(p) = meta {
                if registered && !p.replicas.contains(&broker.config.node_id) {
                    match broker
                        .replication
                        .delete_unassigned(&topic, partition, || broker.metadata.image())
                    {
                        Ok(true) => {
                            tracing::info!(%topic, partition, replicas = ?p.replicas, "replica moved off this broker: deleted its data");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(%topic, partition, error = %e, "cannot delete partition log");
                        }
                    }
                }
                continue;
            }
            match broker
                .replication
                .delete_unassigned(&topic, partition, || broker.metadata.image())
            {
                Ok(true) => {
                    // Every broker forgets the deleted topic's committed offsets in the
                    // offsets partitions it leads (tombstones), whoever handled the deletion.
                    if let Err(e) = broker.groups.topic_deleted(&topic) {
                        tracing::warn!(%topic, error = %e, "cannot delete committed offsets of topic");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(%topic, partition, error = %e, "cannot delete partition log");
                }
            }
        }
        // A restarted broker takes up no role before the metadata holds its new registration:
        // until then the image may still name it leader in an epoch whose acknowledged tail
        // it may have lost with the crash (unflushed), and followers would truncate to it.
        // The registration fences the old incarnation (new leaders, new epochs; see
        // `MetadataCommand::RegisterBroker`).
        if !registered {
            tracing::debug!("waiting for this broker's registration before taking up roles");
        } else if let Err(e) = broker.sync_roles() {
            tracing::error!(error = %e, "cannot take up partition roles");
        }
        // Leadership or ISR changes may let fetches and acks=all waits progress.
        broker.logs.appended().notify_waiters();
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// Records what changed between two applied images in the event ring and the ISR counters
/// (an ISR change counts on the broker leading the partition, as in Kafka).
fn record_changes(broker: &Broker, old: &ClusterImage, new: &ClusterImage) {
    if std::ptr::eq(old, new) {
        return;
    }
    let me = broker.config.node_id;
    for change in events::diff(old, new) {
        match &change {
            Change::IsrShrunk { leader, .. } if *leader == me => broker.metrics.isr_shrunk(),
            Change::IsrExpanded { leader, .. } if *leader == me => broker.metrics.isr_expanded(),
            Change::LeaderChanged { .. } => broker.metrics.leader_changed(),
            _ => {}
        }
        broker.events.push(change);
    }
}

/// Records every change of the metadata quorum's leader (the controller) as an event.
async fn watch_controller(broker: Arc<Broker>) {
    let Some(q) = broker.metadata.quorum() else {
        return;
    };
    let mut rx = q.metrics();
    let mut known = None;
    loop {
        let (leader, term) = {
            let m = rx.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if leader != known {
            broker.events.push(Change::ControllerChanged {
                old: known,
                new: leader,
                term,
            });
            known = leader;
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// Registers this broker's Kafka address in the metadata, retrying until the quorum takes it.
async fn register(broker: Arc<Broker>) {
    let me = Broker::me(&broker.config, broker.incarnation);
    loop {
        let current = broker.metadata.image().brokers.get(&me.id).cloned();
        if current.as_ref().is_some_and(|b| b.same_registration(&me)) {
            return;
        }
        match broker
            .metadata
            .submit(&MetadataCommand::RegisterBroker(me.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(node_id = me.id, host = %me.host, port = me.port, "registered broker");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "registration not accepted yet"),
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Renews this broker's lease with the controller every `broker.heartbeat.interval.ms`.
async fn heartbeats(broker: Arc<Broker>, peers: Arc<ClusterPeers>, leases: Arc<ControllerLeases>) {
    let Some(q) = broker.metadata.quorum() else {
        return;
    };
    let me = broker.config.node_id;
    let hb = BrokerHeartbeat {
        broker: me,
        incarnation: broker.incarnation,
        raft_addr: broker.config.raft_advertised.clone(),
    };
    let voters: Vec<i32> = broker.config.quorum_voters.iter().map(|v| v.id).collect();
    let period = Duration::from_millis(broker.config.heartbeat_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempt = 0usize;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Learn the gRPC address of every member (learners that joined after start).
        for (id, addr) in q.members() {
            if let Ok(id) = i32::try_from(id) {
                peers.learn(id, &addr);
            }
        }
        // A broker that is not a member yet knows no leader: it asks the voters in turn, and
        // the controller among them admits it as a learner.
        let controller = match q.current_leader() {
            Some(c) => c as i32,
            None if voters.is_empty() => continue,
            None => {
                attempt += 1;
                voters[attempt % voters.len()]
            }
        };
        let sent = broker.self_lease.now_ms();
        let result = if controller == me {
            // The controller renews its own self-lease only with a quorum's confirmation that
            // it still leads (a resumed, deposed leader believes it leads until it hears).
            match q.linearizable_image().await {
                Ok(_) => leases
                    .answer_heartbeat(&broker, &hb)
                    .map_err(HeartbeatFailed::from),
                Err(e) => Err(HeartbeatRefusal::NotConfirmed {
                    me,
                    reason: e.to_string(),
                }
                .into()),
            }
        } else {
            // Not shorter than half a second: a busy controller's answer still renews the
            // self-lease (a short interval must not make answers time out under load).
            let timeout = (period * 2).max(Duration::from_millis(500));
            peers
                .heartbeat(controller, &hb, timeout)
                .await
                .map_err(HeartbeatFailed::from)
        };
        match result {
            Ok(answer) => {
                // An active controller's table holds at least the controller itself; an
                // empty one (a controller not active yet) must not replace the table this
                // broker would carry over on becoming controller.
                if !answer.liveness.is_empty() {
                    broker.liveness.record(answer.liveness);
                }
                // Renew only once this broker has applied what the controller had applied:
                // then it knows of every fencing and leader change made while it was away.
                // Waited for aside, so a broker catching up keeps heartbeating on time.
                let mut images = q.subscribe();
                let lease = broker.self_lease.clone();
                tokio::spawn(async move {
                    let caught_up = tokio::time::timeout(
                        (period * 4).max(Duration::from_secs(1)),
                        images.wait_for(|a| a.applied_index() >= answer.metadata_index),
                    )
                    .await;
                    if matches!(caught_up, Ok(Ok(_))) {
                        lease.renew(sent);
                    }
                });
            }
            Err(e) => tracing::debug!(controller, error = %e, "heartbeat failed"),
        }
    }
}

/// The controller's loop, active while this broker leads the quorum: fence brokers whose
/// lease expired or that are overdue with a refusing inter-broker port, unfence those
/// heartbeating again, restore preferred leaders (the rules are `metadata::controller`'s).
async fn controller(broker: Arc<Broker>, state: Arc<ControllerLeases>) {
    let Some(q) = broker.metadata.quorum() else {
        return;
    };
    let me = broker.config.node_id;
    let t = timing(&broker.config);
    let mut tick = tokio::time::interval(Duration::from_millis(
        (broker.config.heartbeat_interval_ms / 2).max(50),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rebalance = 0u64;
    let mut last_tick = now_ms();
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Forget what this controller heard: it becomes active afresh (a new grace period for
        // unfenced brokers only; fenced ones stay fenced until they heartbeat to it).
        let reset = |state: &ControllerLeases| *state.lock() = None;
        // A long gap (the process was paused or starved) makes every lease look expired:
        // start afresh rather than fence brokers that were alive all along.
        let gap = now_ms().saturating_sub(last_tick);
        last_tick = now_ms();
        if gap > broker.config.session_timeout_ms / 2 {
            reset(&state);
        }
        if !q.is_leader() {
            reset(&state);
            continue;
        }
        // openraft 0.9 has no check-quorum: a leader cut off (or paused) still believes it
        // leads. Confirm leadership with a quorum before acting, and plan from the image that
        // confirmation returns.
        let image = match q.linearizable_image().await {
            Ok(applied) => applied.image,
            Err(e) => {
                tracing::debug!(error = %e, "leadership not confirmed; controller idle");
                reset(&state);
                continue;
            }
        };
        let now = now_ms();
        let leases = {
            let mut l = state.lock();
            let leases = l.get_or_insert_with(|| {
                // Keep the liveness the previous controller could prove: when it last heard
                // each broker, from the table this broker last received (overdue test only).
                let mut fresh = Leases::new(now);
                let carried = broker.liveness.heard_ms_ago();
                for (id, ago) in &carried {
                    fresh.carry(*id, now.saturating_sub(*ago));
                }
                tracing::info!(
                    node_id = me,
                    carried = ?carried,
                    "controller active; unfenced brokers get one session to heartbeat (fenced \
                     at once if overdue with a refusing port), fenced ones stay fenced until \
                     they do"
                );
                fresh
            });
            // The controller hears itself.
            leases.heartbeat(me, broker.incarnation, now);
            leases.clone()
        };
        // Probe the inter-broker ports of overdue brokers; a refusal fences them at once.
        let refused = probe(q, to_probe(&image, &leases, me, now, t), t).await;
        for id in refused.keys() {
            broker.liveness.refused(*id);
        }
        let (now, leases) = if refused.is_empty() {
            (now, leases)
        } else {
            // Heartbeats that arrived while probing count (they beat the refusal).
            let l = state.lock();
            match l.as_ref() {
                Some(l) => (now_ms(), l.clone()),
                None => continue,
            }
        };
        let rebalance = broker.config.auto_leader_rebalance
            && now.saturating_sub(last_rebalance) >= broker.config.leader_imbalance_check_ms;
        let commands = plan(
            &image,
            &leases,
            &PlanInput {
                now_ms: now,
                timing: t,
                refused: &refused,
                auto_leader_rebalance: rebalance,
            },
        );
        if rebalance
            && commands
                .iter()
                .all(|c| matches!(c, MetadataCommand::ElectPreferredLeader { .. }))
        {
            last_rebalance = now;
        }
        for cmd in commands {
            log_decision(&broker, &cmd, &refused);
            match broker.metadata.submit(&cmd).await {
                Ok(_) => {
                    if let MetadataCommand::FenceBroker { id } = &cmd {
                        if let Some(l) = state.lock().as_mut() {
                            l.fenced(*id);
                        }
                    }
                }
                Err(MetadataError::UnknownTopic(_)) => {}
                Err(e) => tracing::warn!(error = %e, ?cmd, "controller decision not applied"),
            }
        }
    }
}

/// Tries a TCP connection to the inter-broker (gRPC) port of each broker in `ids`, at once;
/// returns those whose connection was *refused*, with when the probe started. An accepted
/// connection, a timeout or any other error proves nothing (a paused broker's kernel still
/// accepts; a partitioned one's port times out).
async fn probe(q: &crate::quorum::MetadataQuorum, ids: Vec<i32>, t: Timing) -> HashMap<i32, u64> {
    if ids.is_empty() {
        return HashMap::new();
    }
    let members = q.members();
    // A refusal comes back within a round trip; a partitioned broker's port times out, so keep
    // the wait short (the controller's tick waits for it).
    let wait = Duration::from_millis(t.overdue_ms.clamp(50, 200));
    let mut probes = tokio::task::JoinSet::new();
    for id in ids {
        let Some(addr) = u64::try_from(id)
            .ok()
            .and_then(|m| members.get(&m))
            .cloned()
        else {
            continue;
        };
        probes.spawn(async move {
            let started = now_ms();
            refuses(&addr, wait).await.then_some((id, started))
        });
    }
    let mut refused = HashMap::new();
    while let Some(r) = probes.join_next().await {
        if let Ok(Some((id, started))) = r {
            refused.insert(id, started);
        }
    }
    refused
}

fn log_decision(broker: &Broker, cmd: &MetadataCommand, refused: &HashMap<i32, u64>) {
    let image = broker.metadata.image();
    match cmd {
        MetadataCommand::FenceBroker { id } => {
            let led: Vec<String> = image
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.leader == *id)
                        .map(move |p| format!("{}-{} (epoch {})", t.name, p.index, p.leader_epoch))
                })
                .collect();
            let why = if refused.contains_key(id) {
                "heartbeat overdue and its inter-broker port refuses connections"
            } else {
                "lease expired"
            };
            tracing::info!(broker = id, partitions_led = ?led, "fencing broker: {why}; electing new leaders from the ISR");
        }
        MetadataCommand::UnfenceBroker { id, incarnation } => {
            tracing::info!(
                broker = id,
                incarnation,
                "unfencing broker: heartbeats resumed"
            );
        }
        MetadataCommand::ElectPreferredLeader { topic, partition } => {
            tracing::info!(%topic, partition, "restoring preferred leader");
        }
        _ => {}
    }
}
