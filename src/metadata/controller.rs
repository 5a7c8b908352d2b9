//! The controller's decisions, as pure functions of the metadata image and broker leases:
//! which brokers to fence or unfence, and where to restore preferred leaders. The Raft
//! leader runs [`plan`] periodically and proposes the commands it returns; applying them
//! (`ClusterImage::apply`) does the elections and epoch bumps.
//!
//! Leases are soft state, as in Kafka's KRaft controller, with Kafka's two rules:
//! - A broker is unfenced only on a *real* heartbeat this controller received from it, sent by
//!   the incarnation the metadata has registered. Nothing else — a controller change, a missed
//!   leadership confirmation, a paused controller — ever unfences a broker.
//! - A controller that becomes (or, after a missed confirmation, again becomes) active gives
//!   every *unfenced* broker one session of grace from that moment, so a controller change
//!   never fences a live broker; a broker that does not heartbeat within it is fenced.
//!
//! May depend on: `metadata::image` only. Time is passed in (milliseconds), never read here.

use std::collections::HashMap;

use super::{BrokerMeta, ClusterImage, MetadataCommand};

/// The newest heartbeat this controller received from one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    /// The sending process (`BrokerMeta::incarnation`).
    incarnation: u64,
    at_ms: u64,
}

/// What this controller has heard from the brokers since it became active.
#[derive(Debug, Clone)]
pub struct Leases {
    /// When this controller became active: unfenced brokers count as live for one session
    /// from then (the grace period), fenced ones do not.
    active_since_ms: u64,
    heard: HashMap<i32, Heard>,
}

impl Leases {
    /// A controller that became active at `now_ms` and has heard from nobody yet.
    pub fn new(now_ms: u64) -> Self {
        Self {
            active_since_ms: now_ms,
            heard: HashMap::new(),
        }
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
}

/// What the controller should propose now, in order: fence unfenced brokers it has not heard
/// from within a session (after its grace period), unfence fenced brokers whose registered
/// incarnation heartbeat within a session, and (when enabled) move leadership back to
/// preferred replicas.
pub fn plan(
    image: &ClusterImage,
    leases: &Leases,
    now_ms: u64,
    session_timeout_ms: u64,
    auto_leader_rebalance: bool,
) -> Vec<MetadataCommand> {
    let mut out = Vec::new();
    for b in image.brokers.values() {
        let heard = leases.heard_from(b, now_ms, session_timeout_ms);
        if b.fenced {
            if heard {
                out.push(MetadataCommand::UnfenceBroker {
                    id: b.id,
                    incarnation: b.incarnation,
                });
            }
        } else if !heard && !leases.in_grace(now_ms, session_timeout_ms) {
            out.push(MetadataCommand::FenceBroker { id: b.id });
        }
    }
    if auto_leader_rebalance && out.is_empty() {
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
    //! controller decisions, without sockets. It checks the properties the cluster promises:
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
            let replicas = a[0]
                .iter()
                .map(|id| {
                    (
                        *id,
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
                // Stale proposals are refused, as they would be in the cluster.
                Err(
                    MetadataError::FencedLeaderEpoch(_)
                    | MetadataError::InvalidUpdateVersion(_)
                    | MetadataError::IneligibleReplica(_),
                ) => {}
                Err(e) => panic!("unexpected refusal of {cmd:?}: {e}"),
            }
            let p = self.part();
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
                    let healthy = self.replicas.values().all(|r| r.alive)
                        && ids.iter().all(|i| p.isr.contains(i));
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
                60..=61 if faults => self.leases = Leases::new(self.now),
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
            // A restart's registration may have moved leadership: act on the current image.
            let p = self.part();
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
            for cmd in plan(&self.image, &self.leases, self.now, SESSION_MS, true) {
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
    fn fencing_moves_leadership_within_the_isr_and_bumps_epochs() {
        let mut sim = Sim::new(3);
        let before = sim.part();
        let old_leader = before.leader;
        let mut leases = Leases::new(0);
        for id in before.replicas.iter().filter(|i| **i != old_leader) {
            leases.heartbeat(*id, 1, 1500);
        }
        let cmds = plan(&sim.image, &leases, 1500, SESSION_MS, true);
        assert_eq!(cmds, vec![MetadataCommand::FenceBroker { id: old_leader }]);
        sim.apply(cmds[0].clone());
        let after = sim.part();
        assert_ne!(after.leader, old_leader);
        assert!(before.isr.contains(&after.leader));
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert!(!after.isr.contains(&old_leader));
        // The old leader comes back: unfenced, and (once in the ISR again) preferred.
        leases.heartbeat(old_leader, 1, 1600);
        let cmds = plan(&sim.image, &leases, 1600, SESSION_MS, true);
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
        let cmds = plan(&sim.image, &leases, 1600, SESSION_MS, true);
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
            plan(&sim.image, &leases, 1500, SESSION_MS, false),
            vec![MetadataCommand::FenceBroker { id: 3 }]
        );
        sim.replicas.get_mut(&3).unwrap().alive = false;
        sim.apply(MetadataCommand::FenceBroker { id: 3 });
        // The controller changes (or misses a leadership confirmation) at 1600: brokers 1 and
        // 2 get a session of grace, broker 3 stays fenced, during the grace and after it.
        let mut fresh = Leases::new(1600);
        for now in [1600, 2000, 2599, 2600, 5000] {
            if now <= 2599 {
                assert_eq!(plan(&sim.image, &fresh, now, SESSION_MS, false), vec![]);
            }
            assert!(!plan(&sim.image, &fresh, now, SESSION_MS, false)
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
        assert_eq!(plan(&sim.image, &fresh, 2700, SESSION_MS, false), vec![]);
        // ... a heartbeat of the registered one does.
        sim.replicas.get_mut(&3).unwrap().alive = true;
        fresh.heartbeat(3, 2, 2800);
        assert_eq!(
            plan(&sim.image, &fresh, 2800, SESSION_MS, false),
            vec![MetadataCommand::UnfenceBroker {
                id: 3,
                incarnation: 2
            }]
        );
    }

    #[test]
    fn a_new_controller_gives_unfenced_brokers_one_session() {
        let sim = Sim::new(3);
        let mut leases = Leases::new(5000);
        leases.heartbeat(1, 1, 5900);
        leases.heartbeat(2, 1, 5900);
        assert_eq!(plan(&sim.image, &leases, 5999, SESSION_MS, false), vec![]);
        assert_eq!(
            plan(&sim.image, &leases, 6000, SESSION_MS, false),
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
