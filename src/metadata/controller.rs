//! The controller's decisions, as pure functions of the metadata image, broker leases and
//! probe results: which brokers to fence or unfence, which to probe, which to report as
//! suspect, and where to restore preferred leaders. The Raft leader runs [`plan`] periodically
//! and proposes the commands it returns; applying them (`ClusterImage::apply`) does the
//! elections and epoch bumps.
//!
//! Leases are soft state, as in Kafka's KRaft controller, with Kafka's two rules:
//! - A broker is unfenced only on a *real* heartbeat this controller received from it, sent by
//!   the incarnation the metadata has registered. Nothing else — a controller change, a missed
//!   leadership confirmation, a paused controller, carried liveness — ever unfences a broker.
//! - A controller that becomes (or, after a missed confirmation, again becomes) active gives
//!   every *unfenced* broker one session of grace from that moment, so a controller change
//!   never fences a live broker on the session timeout; a broker that does not heartbeat within
//!   it is fenced.
//!
//! And one rule of raftka's (not Kafka's), for sub-second failover: a broker whose heartbeat is
//! *overdue* ([`Timing::overdue_ms`], a few heartbeat intervals) is probed — a TCP connect to its
//! inter-broker port — and fenced at once when the connection was *refused* after the last sign
//! of life the controller has of it. A refusal proves that no process listens there any more
//! (the broker died or was stopped); a paused or partitioned broker's port accepts or times
//! out, so such a broker keeps its full session, and so does one whose port cannot be probed.
//!
//! A new controller starts the session grace afresh, but it keeps the liveness it can prove for
//! the overdue test: the previous controller's table of when it last heard each broker, which
//! every broker receives with its heartbeat answers ([`Leases::carry`]). So a broker that died
//! with (or shortly before) the old controller is probed as soon as the new one is active.
//!
//! May depend on: `metadata::image` only. Time is passed in (milliseconds), never read here.

use std::collections::HashMap;

use super::{BrokerMeta, ClusterImage, MetadataCommand};

/// The controller's liveness timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub session_timeout_ms: u64,
    /// A broker not heard from for this long is suspect: its partitions are answered without
    /// a leader, and its inter-broker port is probed (fenced at once if refused).
    pub overdue_ms: u64,
}

impl Timing {
    /// How many heartbeat intervals without a heartbeat make a broker overdue.
    pub const OVERDUE_INTERVALS: u64 = 3;

    /// The timing of `broker.session.timeout.ms` and `broker.heartbeat.interval.ms`: overdue
    /// after [`Timing::OVERDUE_INTERVALS`] intervals (never later than the session timeout).
    pub fn new(session_timeout_ms: u64, heartbeat_interval_ms: u64) -> Self {
        Self {
            session_timeout_ms,
            overdue_ms: (heartbeat_interval_ms * Self::OVERDUE_INTERVALS).min(session_timeout_ms),
        }
    }
}

/// The newest heartbeat this controller received from one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    /// The sending process (`BrokerMeta::incarnation`).
    incarnation: u64,
    at_ms: u64,
}

/// One row of the liveness table a controller hands out with its heartbeat answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessRow {
    pub broker: i32,
    /// Milliseconds since the last sign of life the controller has of the broker (its own
    /// heartbeats, or carried from the previous controller's table).
    pub heard_ms_ago: u64,
    /// The broker is suspect ([`Leases::suspect`]): clients are told its partitions have no
    /// leader until it heartbeats again or is fenced.
    pub suspect: bool,
}

/// What this controller has heard from the brokers since it became active.
#[derive(Debug, Clone)]
pub struct Leases {
    /// When this controller became active: unfenced brokers count as live for one session
    /// from then (the grace period), fenced ones do not.
    active_since_ms: u64,
    heard: HashMap<i32, Heard>,
    /// When the previous controller last heard each broker (a lower bound, on this
    /// controller's clock). Used only for the overdue test — never to fence on the session
    /// timeout or to unfence.
    carried: HashMap<i32, u64>,
}

impl Leases {
    /// A controller that became active at `now_ms` and has heard from nobody yet.
    pub fn new(now_ms: u64) -> Self {
        Self {
            active_since_ms: now_ms,
            heard: HashMap::new(),
            carried: HashMap::new(),
        }
    }

    /// The previous controller heard `broker` at `at_ms` (or later), on this controller's
    /// clock: what this broker learnt from the last liveness table it received.
    pub fn carry(&mut self, broker: i32, at_ms: u64) {
        let e = self.carried.entry(broker).or_insert(at_ms);
        *e = (*e).max(at_ms);
    }

    /// `broker` was fenced: what was heard from it before no longer counts, so only a
    /// heartbeat received after the fence unfences it (a broker fenced at once, well within
    /// its session, must not be unfenced by the heartbeats that preceded its death).
    pub fn fenced(&mut self, broker: i32) {
        self.heard.remove(&broker);
        self.carried.remove(&broker);
    }

    /// A heartbeat from `incarnation` of `broker` arrived at `now_ms`.
    pub fn heartbeat(&mut self, broker: i32, incarnation: u64, now_ms: u64) {
        self.heard.insert(
            broker,
            Heard {
                incarnation,
                at_ms: now_ms,
            },
        );
    }

    /// When the newest heartbeat from `broker` arrived (DescribeQuorum reports it).
    pub fn last_heard_ms(&self, broker: i32) -> Option<u64> {
        self.heard.get(&broker).map(|h| h.at_ms)
    }

    /// When the newest heartbeat from each broker arrived.
    pub fn last_heard(&self) -> HashMap<i32, u64> {
        self.heard.iter().map(|(id, h)| (*id, h.at_ms)).collect()
    }

    /// A heartbeat from the registered incarnation of `b` arrived within the session.
    fn heard_from(&self, b: &BrokerMeta, now_ms: u64, session_timeout_ms: u64) -> bool {
        self.heard.get(&b.id).is_some_and(|h| {
            h.incarnation == b.incarnation && now_ms.saturating_sub(h.at_ms) < session_timeout_ms
        })
    }

    /// Still within the grace period of a controller that just became active.
    fn in_grace(&self, now_ms: u64, session_timeout_ms: u64) -> bool {
        now_ms.saturating_sub(self.active_since_ms) < session_timeout_ms
    }

    /// The newest sign of life of `broker`: a heartbeat of any of its processes that this
    /// controller received, or the previous controller's (carried).
    fn evidence(&self, broker: i32) -> Option<u64> {
        let heard = self.heard.get(&broker).map(|h| h.at_ms);
        heard.max(self.carried.get(&broker).copied())
    }

    /// No sign of life of `broker` for [`Timing::overdue_ms`] (counted from this controller's
    /// activation when it has none): its port is worth probing.
    pub fn overdue(&self, broker: i32, now_ms: u64, t: Timing) -> bool {
        let since = self.evidence(broker).unwrap_or(self.active_since_ms);
        now_ms.saturating_sub(since) >= t.overdue_ms
    }

    /// Overdue, and this controller has been active for the overdue time too (a live broker
    /// needs a moment to find a new controller), so clients should stop waiting on it.
    pub fn suspect(&self, broker: i32, now_ms: u64, t: Timing) -> bool {
        let since = self
            .evidence(broker)
            .map_or(self.active_since_ms, |e| e.max(self.active_since_ms));
        now_ms.saturating_sub(since) >= t.overdue_ms
    }

    /// The table handed to brokers with heartbeat answers: every registered broker this
    /// controller has a sign of life of, with its age and whether it is suspect.
    pub fn table(&self, image: &ClusterImage, now_ms: u64, t: Timing) -> Vec<LivenessRow> {
        image
            .brokers
            .values()
            .filter_map(|b| {
                let at = self.evidence(b.id)?;
                Some(LivenessRow {
                    broker: b.id,
                    heard_ms_ago: now_ms.saturating_sub(at),
                    suspect: !b.fenced && self.suspect(b.id, now_ms, t),
                })
            })
            .collect()
    }
}

/// Unfenced brokers other than `me` that are overdue: the controller probes their
/// inter-broker ports and passes the refusals to [`plan`].
pub fn to_probe(
    image: &ClusterImage,
    leases: &Leases,
    me: i32,
    now_ms: u64,
    t: Timing,
) -> Vec<i32> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced && b.id != me && leases.overdue(b.id, now_ms, t))
        .map(|b| b.id)
        .collect()
}

/// The controller's inputs besides the image and the leases.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub now_ms: u64,
    pub timing: Timing,
    /// Broker → when a probe of its inter-broker port that was refused *started*.
    pub refused: &'a HashMap<i32, u64>,
    /// Move leadership back to preferred replicas (`auto.leader.rebalance.enable`, due now).
    pub auto_leader_rebalance: bool,
}

/// What the controller should propose now, in order: fence unfenced brokers it has not heard
/// from within a session (after its grace period) or that are overdue and whose port refused a
/// probe started after their last sign of life, unfence fenced brokers whose registered
/// incarnation heartbeat within a session, and (when enabled) move leadership back to
/// preferred replicas.
pub fn plan(image: &ClusterImage, leases: &Leases, input: &PlanInput<'_>) -> Vec<MetadataCommand> {
    let (now_ms, t) = (input.now_ms, input.timing);
    let mut out = Vec::new();
    for b in image.brokers.values() {
        let heard = leases.heard_from(b, now_ms, t.session_timeout_ms);
        if b.fenced {
            if heard {
                out.push(MetadataCommand::UnfenceBroker {
                    id: b.id,
                    incarnation: b.incarnation,
                });
            }
            continue;
        }
        let expired = !heard && !leases.in_grace(now_ms, t.session_timeout_ms);
        let dead = leases.overdue(b.id, now_ms, t)
            && input
                .refused
                .get(&b.id)
                .is_some_and(|probed| leases.evidence(b.id).is_none_or(|e| *probed > e));
        if expired || dead {
            out.push(MetadataCommand::FenceBroker { id: b.id });
        }
    }
    if input.auto_leader_rebalance && out.is_empty() {
        for t in image.topics.values() {
            for p in &t.partitions {
                let preferred = p.replicas[0];
                let ok = image.brokers.get(&preferred).is_some_and(|b| !b.fenced);
                if p.leader != preferred && ok && p.isr.contains(&preferred) {
                    out.push(MetadataCommand::ElectPreferredLeader {
                        topic: t.name.clone(),
                        partition: p.index,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! A seeded simulation of a replicated partition under broker deaths, restarts,
    //! follower lag, lost and late heartbeats (also from replaced incarnations), controller
    //! changes and missed leadership confirmations (the controller forgets its leases), and
    //! controller decisions, and (in one test) partition reassignments and their cancels,
    //! which move the partition over four brokers (a removed replica deletes its copy),
    //! without sockets. It checks the properties the cluster promises:
    //! leader epochs never go backwards, leaders are in the ISR, no record below a high
    //! watermark (an acknowledged acks=all write) is ever lost from the leader's log, a
    //! broker is unfenced only after a heartbeat from its current incarnation, and a dead
    //! broker never enters an ISR.

    use super::*;
    use crate::metadata::{BrokerMeta, MetadataError};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const SESSION_MS: u64 = 1000;
    const STEP_MS: u64 = 100;
    const TIMING: Timing = Timing {
        session_timeout_ms: SESSION_MS,
        overdue_ms: 300,
    };

    /// [`plan`] without refused probes.
    fn plan_at(
        image: &ClusterImage,
        leases: &Leases,
        now_ms: u64,
        auto_leader_rebalance: bool,
    ) -> Vec<MetadataCommand> {
        plan_probed(
            image,
            leases,
            now_ms,
            &HashMap::new(),
            auto_leader_rebalance,
        )
    }

    fn plan_probed(
        image: &ClusterImage,
        leases: &Leases,
        now_ms: u64,
        refused: &HashMap<i32, u64>,
        auto_leader_rebalance: bool,
    ) -> Vec<MetadataCommand> {
        plan(
            image,
            leases,
            &PlanInput {
                now_ms,
                timing: TIMING,
                refused,
                auto_leader_rebalance,
            },
        )
    }

    struct Replica {
        alive: bool,
        /// Process starts so far: each restart registers a new incarnation.
        incarnation: u64,
        /// Record ids in log order.
        log: Vec<u64>,
        /// Steps since this replica last fetched from the leader (lag detection).
        idle_steps: u32,
        /// A heartbeat of the current incarnation has reached the controller.
        heard: bool,
    }

    struct Sim {
        image: ClusterImage,
        leases: Leases,
        now: u64,
        replicas: HashMap<i32, Replica>,
        next_record: u64,
        /// Every record that was ever below a high watermark, with its offset.
        committed: Vec<(usize, u64)>,
        hw: usize,
        max_epoch_seen: i32,
        /// Random partition reassignments (and cancels) are among the actions.
        reassign: bool,
    }

    impl Sim {
        fn new(n: i32) -> Self {
            let mut image = ClusterImage::default();
            for id in 1..=n {
                image
                    .apply(&MetadataCommand::RegisterBroker(BrokerMeta {
                        id,
                        host: "h".into(),
                        port: 1,
                        rack: None,
                        fenced: false,
                        incarnation: 1,
                        endpoints: Vec::new(),
                    }))
                    .unwrap();
            }
            let a = image.place_replicas(1, 3, 0).unwrap();
            image
                .apply(&MetadataCommand::CreateTopic {
                    name: "t".into(),
                    assignments: a.clone(),
                    configs: Default::default(),
                    id: 0,
                })
                .unwrap();
            // Every broker has a (possibly empty) log: reassignments move the partition around.
            let replicas = (1..=n)
                .map(|id| {
                    (
                        id,
                        Replica {
                            alive: true,
                            incarnation: 1,
                            log: vec![],
                            idle_steps: 0,
                            heard: true,
                        },
                    )
                })
                .collect();
            Self {
                leases: Leases::new(0),
                image,
                now: 0,
                replicas,
                next_record: 0,
                committed: vec![],
                hw: 0,
                max_epoch_seen: 0,
                reassign: false,
            }
        }

        fn part(&self) -> crate::metadata::PartitionMeta {
            self.image.topics["t"].partitions[0].clone()
        }

        fn apply(&mut self, cmd: MetadataCommand) {
            let isr_before = self.part().isr;
            match self.image.apply(&cmd) {
                Ok(()) => {
                    if let MetadataCommand::UnfenceBroker { id, .. } = &cmd {
                        let r = &self.replicas[id];
                        assert!(
                            r.alive && r.heard,
                            "broker {id} unfenced without a heartbeat from its current \
                             incarnation (alive: {})",
                            r.alive
                        );
                    }
                }
                // Stale proposals are refused, as they would be in the cluster; so are cancels
                // without a move and reverts without an old replica in the ISR.
                Err(
                    MetadataError::FencedLeaderEpoch(_)
                    | MetadataError::InvalidUpdateVersion(_)
                    | MetadataError::IneligibleReplica(_)
                    | MetadataError::NoReassignmentInProgress(_)
                    | MetadataError::EligibleLeadersNotAvailable(_),
                ) => {}
                Err(e) => panic!("unexpected refusal of {cmd:?}: {e}"),
            }
            let p = self.part();
            // A broker no longer a replica deletes its copy (`cluster::follow_images`).
            for (id, r) in self.replicas.iter_mut() {
                if !p.replicas.contains(id) {
                    r.log.clear();
                }
            }
            for id in p.isr.iter().filter(|i| !isr_before.contains(i)) {
                assert!(
                    self.replicas[id].alive,
                    "dead broker {id} re-entered the ISR {:?} after {cmd:?}",
                    p.isr
                );
            }
            assert!(
                p.leader_epoch >= self.max_epoch_seen,
                "leader epoch went backwards"
            );
            self.max_epoch_seen = p.leader_epoch;
            assert!(
                p.leader == -1 || p.isr.contains(&p.leader),
                "leader outside ISR: {p:?}"
            );
            assert!(!p.isr.is_empty() && p.isr.iter().all(|r| p.replicas.contains(r)));
            // A live leader must hold every acknowledged record. A dead one serves nothing: it
            // may have lost an unflushed tail and still be named leader until it is fenced
            // (longer when a controller change gives it a grace period), but a restart
            // registers a new incarnation, which fences the old one before the broker takes up
            // any role (`cluster::follow_images`); if it leads again, it is checked then.
            if p.leader >= 0 && self.replicas[&p.leader].alive {
                let log = &self.replicas[&p.leader].log;
                for (offset, id) in &self.committed {
                    assert_eq!(
                        log.get(*offset),
                        Some(id),
                        "acknowledged record {id} at offset {offset} lost by new leader {}",
                        p.leader
                    );
                }
            }
        }

        /// A dead broker restarts and registers its new incarnation (nothing if it is alive).
        fn restart(&mut self, id: i32) {
            let r = self.replicas.get_mut(&id).unwrap();
            if r.alive {
                return;
            }
            r.alive = true;
            r.heard = false;
            r.incarnation += 1;
            let incarnation = r.incarnation;
            self.apply(MetadataCommand::RegisterBroker(BrokerMeta {
                id,
                host: "h".into(),
                port: 1,
                rack: None,
                fenced: false,
                incarnation,
                endpoints: Vec::new(),
            }));
        }

        fn step(&mut self, rng: &mut StdRng, faults: bool) {
            self.now += STEP_MS;
            let p = self.part();
            let ids: Vec<i32> = p.replicas.clone();
            let action = rng.gen_range(if faults { 0 } else { 10 }..100);
            match action {
                // A broker dies (SIGKILL): its stored log stays on disk, except for a tail
                // not flushed yet, which may hold records the ISR acknowledged. (Only as a
                // single fault — every replica alive and in the ISR: a second fault before the
                // tail is flushed, e.g. the ISR shrunk to the crashing broker, can lose
                // acknowledged records with the default asynchronous flush — documented, and
                // closed by `log.flush.interval.messages=1`.)
                0..=3 => {
                    let id = ids[rng.gen_range(0..ids.len())];
                    // (With reassignments the replication factor may drop to one: a lone copy
                    // has no other replica to recover an unflushed tail from, as in Kafka, so
                    // it loses none here — the default durable flush guarantees that.)
                    let healthy = self.replicas.values().all(|r| r.alive)
                        && ids.iter().all(|i| p.isr.contains(i))
                        && p.isr.len() >= 2;
                    let lost = if healthy { rng.gen_range(0..=2) } else { 0 };
                    let r = self.replicas.get_mut(&id).unwrap();
                    if r.alive {
                        r.alive = false;
                        let keep = r.log.len().saturating_sub(lost);
                        r.log.truncate(keep);
                    }
                }
                // A dead broker restarts (often before its lease expired) and registers its
                // new incarnation.
                4..=9 => {
                    let id = ids[rng.gen_range(0..ids.len())];
                    self.restart(id);
                }
                // The leader appends a record (a produce).
                10..=59 if p.leader >= 0 && self.replicas[&p.leader].alive => {
                    let id = self.next_record;
                    self.next_record += 1;
                    self.replicas.get_mut(&p.leader).unwrap().log.push(id);
                }
                // The controller changes, or misses a leadership confirmation (a pause, CPU
                // starvation) and becomes active afresh: it forgets every heartbeat it heard.
                // The new controller carries the old one's table as relayed to it a little
                // while ago (lower bounds of when each broker was heard).
                60..=61 if faults => {
                    let lag = rng.gen_range(0..3 * STEP_MS);
                    let mut fresh = Leases::new(self.now);
                    for (id, h) in &self.leases.heard {
                        fresh.carry(*id, h.at_ms.saturating_sub(lag));
                    }
                    self.leases = fresh;
                }
                // An administrator moves the partition to 1-3 random brokers, or cancels a move.
                65..=67 if self.reassign => {
                    use rand::seq::SliceRandom;
                    let target = rng.gen_bool(0.8).then(|| {
                        let mut all: Vec<i32> = self.replicas.keys().copied().collect();
                        all.sort_unstable();
                        all.shuffle(rng);
                        all.truncate(rng.gen_range(1..=3));
                        all
                    });
                    self.apply(MetadataCommand::AlterReassignment {
                        topic: "t".into(),
                        partition: 0,
                        target,
                    });
                }
                // A heartbeat a replaced incarnation sent before it died arrives late.
                62..=64 if faults => {
                    let id = ids[rng.gen_range(0..ids.len())];
                    let old = self.replicas[&id].incarnation.saturating_sub(1);
                    if old > 0 {
                        self.leases.heartbeat(id, old, self.now);
                    }
                }
                _ => {}
            }
            // A restart's registration may have moved leadership, a reassignment the replicas:
            // act on the current image.
            let p = self.part();
            let ids: Vec<i32> = p.replicas.clone();
            // Heartbeats from live brokers (one in five lost or late).
            for (id, r) in self.replicas.iter_mut() {
                if r.alive && (!faults || rng.gen_bool(0.8)) {
                    self.leases.heartbeat(*id, r.incarnation, self.now);
                    r.heard = true;
                }
            }
            // Followers fetch: truncate to the common prefix (the leader-epoch rule), then copy.
            if p.leader >= 0 && self.replicas[&p.leader].alive {
                let leader_log = self.replicas[&p.leader].log.clone();
                for id in ids.iter().filter(|i| **i != p.leader) {
                    let r = self.replicas.get_mut(id).unwrap();
                    if !r.alive || rng.gen_bool(0.3) {
                        r.idle_steps += 1;
                        continue;
                    }
                    r.idle_steps = 0;
                    let common = r
                        .log
                        .iter()
                        .zip(&leader_log)
                        .take_while(|(a, b)| a == b)
                        .count();
                    r.log.truncate(common);
                    let upto = (common + rng.gen_range(1..4)).min(leader_log.len());
                    r.log.extend_from_slice(&leader_log[common..upto]);
                }
                // The leader advances the high watermark to the minimum over the ISR.
                let matched = |r: &Replica| {
                    r.log
                        .iter()
                        .zip(&leader_log)
                        .take_while(|(a, b)| a == b)
                        .count()
                };
                let hw = p
                    .isr
                    .iter()
                    .map(|i| matched(&self.replicas[i]))
                    .min()
                    .unwrap_or(0);
                if hw > self.hw {
                    // Acknowledged (acks=all, min.insync.replicas=2) only with two in-sync
                    // replicas; below that the producer gets NOT_ENOUGH_REPLICAS.
                    if p.isr.len() >= 2 {
                        for (offset, rec) in leader_log.iter().enumerate().take(hw).skip(self.hw) {
                            self.committed.push((offset, *rec));
                        }
                    }
                    self.hw = hw;
                }
                // ISR maintenance by the leader: drop followers idle for 3 steps, add those
                // caught up to the high watermark.
                let mut isr: Vec<i32> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|i| *i == p.leader || self.replicas[i].idle_steps < 3)
                    .collect();
                for id in &ids {
                    let r = &self.replicas[id];
                    if !isr.contains(id) && r.alive && r.idle_steps == 0 && matched(r) >= self.hw {
                        isr.push(*id);
                    }
                }
                isr.sort_unstable();
                let mut current = p.isr.clone();
                current.sort_unstable();
                if isr != current {
                    self.apply(MetadataCommand::AlterPartition {
                        topic: "t".into(),
                        partition: 0,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        isr,
                    });
                }
            }
            // The controller (not one of the replicas) probes overdue brokers: a dead one's
            // port refuses, a live one's accepts.
            let refused: HashMap<i32, u64> =
                to_probe(&self.image, &self.leases, -1, self.now, TIMING)
                    .into_iter()
                    .filter(|id| !self.replicas[id].alive)
                    .map(|id| (id, self.now))
                    .collect();
            for cmd in plan_probed(&self.image, &self.leases, self.now, &refused, true) {
                if let MetadataCommand::FenceBroker { id } = &cmd {
                    // No false fencing: a live broker is fenced only on the session rule.
                    let b = &self.image.brokers[id];
                    assert!(
                        !self.replicas[id].alive
                            || (!self.leases.heard_from(b, self.now, SESSION_MS)
                                && !self.leases.in_grace(self.now, SESSION_MS)),
                        "live broker {id} fenced within its session"
                    );
                    self.apply(cmd.clone());
                    self.leases.fenced(*id);
                    continue;
                }
                self.apply(cmd);
            }
        }
    }

    #[test]
    fn elections_never_lose_acknowledged_records() {
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sim = Sim::new(3);
            for _ in 0..400 {
                sim.step(&mut rng, true);
            }
            // Heal: every dead broker restarts, time passes, the partition must have a leader
            // again.
            for id in 1..=3 {
                sim.restart(id);
            }
            for _ in 0..30 {
                sim.step(&mut rng, false);
            }
            assert!(
                sim.part().leader >= 0,
                "seed {seed}: no leader after healing"
            );
            assert!(sim.next_record > 0);
        }
    }

    #[test]
    fn reassignments_under_faults_never_lose_acknowledged_records() {
        let mut moved = 0;
        for seed in 0..120u64 {
            let mut rng = StdRng::seed_from_u64(1_000 + seed);
            let mut sim = Sim::new(4);
            sim.reassign = true;
            let first = sim.part().replicas;
            for _ in 0..400 {
                sim.step(&mut rng, true);
            }
            moved += usize::from(sim.part().replicas != first);
            for id in 1..=4 {
                sim.restart(id);
            }
            sim.reassign = false;
            // Long enough for an empty new replica to copy a 400-step log (1-3 records per
            // fetch) while writes go on.
            for _ in 0..800 {
                sim.step(&mut rng, false);
            }
            let p = sim.part();
            assert!(p.leader >= 0, "seed {seed}: no leader after healing: {p:?}");
            // Healed and left alone, a running move completes (every target replica is alive
            // and catches up).
            assert!(
                !crate::metadata::reassign::in_progress(&p),
                "seed {seed}: move still running after healing: {p:?}"
            );
        }
        assert!(
            moved > 50,
            "only {moved} of 200 runs ended on other replicas"
        );
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_and_bumps_epochs() {
        let mut sim = Sim::new(3);
        let before = sim.part();
        let old_leader = before.leader;
        let mut leases = Leases::new(0);
        for id in before.replicas.iter().filter(|i| **i != old_leader) {
            leases.heartbeat(*id, 1, 1500);
        }
        let cmds = plan_at(&sim.image, &leases, 1500, true);
        assert_eq!(cmds, vec![MetadataCommand::FenceBroker { id: old_leader }]);
        sim.apply(cmds[0].clone());
        leases.fenced(old_leader);
        let after = sim.part();
        assert_ne!(after.leader, old_leader);
        assert!(before.isr.contains(&after.leader));
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert!(!after.isr.contains(&old_leader));
        // The old leader comes back: unfenced, and (once in the ISR again) preferred.
        leases.heartbeat(old_leader, 1, 1600);
        let cmds = plan_at(&sim.image, &leases, 1600, true);
        assert_eq!(
            cmds,
            vec![MetadataCommand::UnfenceBroker {
                id: old_leader,
                incarnation: 1
            }]
        );
        sim.apply(cmds[0].clone());
        let p = sim.part();
        let mut isr = p.isr.clone();
        isr.push(old_leader);
        sim.apply(MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        });
        let cmds = plan_at(&sim.image, &leases, 1600, true);
        assert_eq!(cmds.len(), 1);
        sim.apply(cmds[0].clone());
        assert_eq!(sim.part().leader, old_leader);
        assert_eq!(sim.part().leader_epoch, before.leader_epoch + 2);
    }

    #[test]
    fn a_new_controller_never_unfences_a_dead_broker() {
        let mut sim = Sim::new(3);
        let mut leases = Leases::new(0);
        for t in (100..=1500).step_by(100) {
            leases.heartbeat(1, 1, t);
            leases.heartbeat(2, 1, t);
        }
        // Broker 3 died at 0: fenced once the grace of the controller's start is over.
        assert_eq!(
            plan_at(&sim.image, &leases, 1500, false),
            vec![MetadataCommand::FenceBroker { id: 3 }]
        );
        sim.replicas.get_mut(&3).unwrap().alive = false;
        sim.apply(MetadataCommand::FenceBroker { id: 3 });
        // The controller changes (or misses a leadership confirmation) at 1600: brokers 1 and
        // 2 get a session of grace, broker 3 stays fenced, during the grace and after it.
        let mut fresh = Leases::new(1600);
        for now in [1600, 2000, 2599, 2600, 5000] {
            if now <= 2599 {
                assert_eq!(plan_at(&sim.image, &fresh, now, false), vec![]);
            }
            assert!(!plan_at(&sim.image, &fresh, now, false)
                .iter()
                .any(|c| matches!(c, MetadataCommand::UnfenceBroker { .. })));
        }
        // A late heartbeat of a replaced incarnation unfences nothing ...
        sim.apply(MetadataCommand::RegisterBroker(BrokerMeta {
            id: 3,
            host: "h".into(),
            port: 1,
            rack: None,
            fenced: false,
            incarnation: 2,
            endpoints: Vec::new(),
        }));
        fresh.heartbeat(3, 1, 2700);
        fresh.heartbeat(1, 1, 2700);
        fresh.heartbeat(2, 1, 2700);
        assert_eq!(plan_at(&sim.image, &fresh, 2700, false), vec![]);
        // ... a heartbeat of the registered one does.
        sim.replicas.get_mut(&3).unwrap().alive = true;
        fresh.heartbeat(3, 2, 2800);
        assert_eq!(
            plan_at(&sim.image, &fresh, 2800, false),
            vec![MetadataCommand::UnfenceBroker {
                id: 3,
                incarnation: 2
            }]
        );
    }

    /// Leases of a controller active since 0 that heard brokers 1 and 2 until `now` and
    /// broker 3 last at `last3`.
    fn heard_until(now: u64, last3: u64) -> Leases {
        let mut leases = Leases::new(0);
        for t in (0..=now).step_by(100) {
            leases.heartbeat(1, 1, t);
            leases.heartbeat(2, 1, t);
            if t <= last3 {
                leases.heartbeat(3, 1, t);
            }
        }
        leases
    }

    #[test]
    fn an_overdue_broker_whose_port_refuses_is_fenced_at_once() {
        let sim = Sim::new(3);
        let fence3 = vec![MetadataCommand::FenceBroker { id: 3 }];
        let leases = heard_until(2000, 1000);
        // Not overdue yet (200 ms < 300 ms): not probed, and a refusal does not fence.
        assert!(!leases.overdue(3, 1200, TIMING));
        assert_eq!(
            to_probe(&sim.image, &leases, 1, 1200, TIMING),
            Vec::<i32>::new()
        );
        let refused = HashMap::from([(3, 1200)]);
        assert_eq!(
            plan_probed(&sim.image, &leases, 1200, &refused, false),
            vec![]
        );
        // Overdue: probed; refused by a probe started after the last heartbeat: fenced, long
        // before the session (1000 ms after the last heartbeat) ends.
        assert_eq!(to_probe(&sim.image, &leases, 1, 1300, TIMING), vec![3]);
        assert!(leases.suspect(3, 1300, TIMING));
        let refused = HashMap::from([(3, 1300)]);
        assert_eq!(
            plan_probed(&sim.image, &leases, 1300, &refused, false),
            fence3
        );
        // A refusal seen before the last heartbeat proves nothing about the broker now.
        let stale = HashMap::from([(3, 900)]);
        assert_eq!(
            plan_probed(&sim.image, &leases, 1300, &stale, false),
            vec![]
        );
        // The controller never probes itself, and fenced brokers are not probed.
        assert_eq!(
            to_probe(&sim.image, &leases, 3, 1300, TIMING),
            Vec::<i32>::new()
        );
        let mut img = sim.image.clone();
        img.apply(&fence3[0]).unwrap();
        assert_eq!(to_probe(&img, &leases, 1, 1300, TIMING), Vec::<i32>::new());
        // Fenced well within its session: the heartbeats heard before the fence must not
        // unfence it — only one received after the fence does.
        let mut leases = leases;
        leases.fenced(3);
        assert_eq!(plan_at(&img, &leases, 1400, false), vec![]);
        leases.heartbeat(3, 1, 1500);
        assert_eq!(
            plan_at(&img, &leases, 1500, false),
            vec![MetadataCommand::UnfenceBroker {
                id: 3,
                incarnation: 1
            }]
        );
    }

    #[test]
    fn a_paused_or_partitioned_broker_keeps_its_full_session() {
        let sim = Sim::new(3);
        let leases = heard_until(3000, 1000);
        // Its port accepts or times out: no refusal, so only the session fences it.
        for now in [1300, 1500, 1999] {
            assert!(leases.suspect(3, now, TIMING));
            assert_eq!(plan_at(&sim.image, &leases, now, false), vec![]);
        }
        assert_eq!(
            plan_at(&sim.image, &leases, 2000, false),
            vec![MetadataCommand::FenceBroker { id: 3 }]
        );
    }

    #[test]
    fn a_new_controller_probes_with_the_liveness_it_carried() {
        let sim = Sim::new(3);
        let fence3 = vec![MetadataCommand::FenceBroker { id: 3 }];
        // The old controller (broker 3) died at about 4800; the new one is active at 5000 and
        // carries the table it last received: brokers 1 and 2 heard at 4950, 3 at 4800.
        let mut carried = Leases::new(5000);
        carried.carry(1, 4950);
        carried.carry(2, 4950);
        carried.carry(3, 4700);
        carried.carry(3, 4800); // the newest lower bound counts
        let refused = HashMap::from([(3, 5100)]);
        assert_eq!(to_probe(&sim.image, &carried, 1, 5100, TIMING), vec![3]);
        assert_eq!(
            plan_probed(&sim.image, &carried, 5100, &refused, false),
            fence3
        );
        // Without the carried table it waits the overdue time from its activation.
        let fresh = Leases::new(5000);
        assert_eq!(
            plan_probed(&sim.image, &fresh, 5100, &refused, false),
            vec![]
        );
        let later = HashMap::from([(3, 5300)]);
        assert_eq!(plan_probed(&sim.image, &fresh, 5300, &later, false), fence3);
        // Carried liveness never fences on the session timeout: the grace holds.
        assert_eq!(plan_at(&sim.image, &carried, 5999, false), vec![]);
        // Nor does it unfence anybody.
        let mut img = sim.image.clone();
        img.apply(&MetadataCommand::FenceBroker { id: 3 }).unwrap();
        let mut c = Leases::new(5000);
        c.carry(3, 5000);
        assert_eq!(plan_at(&img, &c, 5001, false), vec![]);
        // Live brokers that have not found the new controller yet are not suspect at once,
        // though their carried liveness is older than the overdue time.
        let mut c = Leases::new(5000);
        c.carry(1, 4500);
        assert!(c.overdue(1, 5000, TIMING));
        assert!(!c.suspect(1, 5000, TIMING));
        assert!(c.suspect(1, 5300, TIMING));
    }

    #[test]
    fn the_liveness_table_reports_ages_and_suspects() {
        let mut img = Sim::new(3).image;
        let leases = heard_until(2000, 1000);
        let table = leases.table(&img, 2000, TIMING);
        assert_eq!(
            table,
            vec![
                LivenessRow {
                    broker: 1,
                    heard_ms_ago: 0,
                    suspect: false
                },
                LivenessRow {
                    broker: 2,
                    heard_ms_ago: 0,
                    suspect: false
                },
                LivenessRow {
                    broker: 3,
                    heard_ms_ago: 1000,
                    suspect: true
                },
            ]
        );
        // A fenced broker leads nothing: it is not reported as suspect.
        img.apply(&MetadataCommand::FenceBroker { id: 3 }).unwrap();
        assert!(!leases.table(&img, 2000, TIMING)[2].suspect);
        assert_eq!(
            Timing::new(1500, 100),
            Timing {
                session_timeout_ms: 1500,
                overdue_ms: 300
            }
        );
        assert_eq!(Timing::new(500, 250).overdue_ms, 500);
    }

    #[test]
    fn a_new_controller_gives_unfenced_brokers_one_session() {
        let sim = Sim::new(3);
        let mut leases = Leases::new(5000);
        leases.heartbeat(1, 1, 5900);
        leases.heartbeat(2, 1, 5900);
        assert_eq!(plan_at(&sim.image, &leases, 5999, false), vec![]);
        assert_eq!(
            plan_at(&sim.image, &leases, 6000, false),
            vec![MetadataCommand::FenceBroker { id: 3 }]
        );
    }

    #[test]
    fn the_last_isr_member_is_kept_and_leads_again_on_return() {
        let mut sim = Sim::new(3);
        let p = sim.part();
        // Shrink the ISR to the leader alone, then fence it: no unclean election.
        sim.apply(MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![p.leader],
        });
        sim.apply(MetadataCommand::FenceBroker { id: p.leader });
        let q = sim.part();
        assert_eq!(q.leader, -1);
        assert_eq!(q.isr, vec![p.leader]);
        sim.apply(MetadataCommand::UnfenceBroker {
            id: p.leader,
            incarnation: 1,
        });
        assert_eq!(sim.part().leader, p.leader);
        assert_eq!(sim.part().leader_epoch, p.leader_epoch + 2);
    }

    #[test]
    fn a_fenced_broker_cannot_join_an_isr() {
        let mut img = Sim::new(3).image;
        let p = img.topics["t"].partitions[0].clone();
        let other = *p.replicas.iter().find(|r| **r != p.leader).unwrap();
        img.apply(&MetadataCommand::FenceBroker { id: other })
            .unwrap();
        let p = img.topics["t"].partitions[0].clone();
        assert!(!p.isr.contains(&other));
        let mut isr = p.isr.clone();
        isr.push(other);
        let expand = MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        };
        let before = img.clone();
        assert!(matches!(
            img.apply(&expand),
            Err(MetadataError::IneligibleReplica(_))
        ));
        assert_eq!(img, before);
        img.apply(&MetadataCommand::UnfenceBroker {
            id: other,
            incarnation: 1,
        })
        .unwrap();
        img.apply(&expand).unwrap();
        assert!(img.topics["t"].partitions[0].isr.contains(&other));
    }

    #[test]
    fn stale_isr_updates_are_refused() {
        let mut img = Sim::new(3).image;
        let p = img.topics["t"].partitions[0].clone();
        let stale = MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![p.leader],
        };
        img.apply(&stale).unwrap();
        assert!(matches!(
            img.apply(&stale),
            Err(MetadataError::InvalidUpdateVersion(_))
        ));
        img.apply(&MetadataCommand::FenceBroker { id: p.leader })
            .unwrap();
        let fresh_epoch = img.topics["t"].partitions[0].partition_epoch;
        let old_leader = MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: fresh_epoch,
            isr: vec![p.leader],
        };
        assert!(matches!(
            img.apply(&old_leader),
            Err(MetadataError::FencedLeaderEpoch(_))
        ));
    }
}
