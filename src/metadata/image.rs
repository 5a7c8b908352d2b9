//! The metadata image and the commands that change it. `apply` is deterministic and pure
//! apart from the image itself, so every broker applying the same commands in the same order
//! ends with the same image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config_ops::{apply_ops, ConfigOp, ConfigResource};
use super::election::{self, ElectionType};
use super::reassign;
use super::MetadataError;
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::{ScramCredential, ScramMechanism};

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: i32,
    /// The address of the broker's first listener (what a client of an unnamed listener sees).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// A fenced broker's lease expired: it leads nothing and is in no ISR it can be removed from.
    #[serde(default)]
    pub fenced: bool,
    /// The broker process that registered (random per start; 0: a broker without a quorum or
    /// from before incarnations existed).
    #[serde(default)]
    pub incarnation: u64,
    /// Every named listener's advertised address; empty for brokers registered before named
    /// listeners existed (they are reached at `host:port` whatever the listener).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerMeta {
    /// The address a client connected through `listener` should use for this broker, as
    /// Kafka does: the broker's endpoint of the same listener name; `None` when the broker has
    /// no such listener (clients of that listener cannot reach it). Without a listener name
    /// (in-process callers) the first listener's address.
    pub fn endpoint(&self, listener: Option<&str>) -> Option<(&str, i32)> {
        match listener {
            Some(name) if !self.endpoints.is_empty() => self
                .endpoints
                .iter()
                .find(|e| e.listener == name)
                .map(|e| (e.host.as_str(), e.port)),
            _ => Some((self.host.as_str(), self.port)),
        }
    }

    /// True when `other` registers the same addresses and rack (fencing aside).
    pub fn same_registration(&self, other: &BrokerMeta) -> bool {
        self.id == other.id
            && self.host == other.host
            && self.port == other.port
            && self.rack == other.rack
            && self.incarnation == other.incarnation
            && self.endpoints == other.endpoints
    }
}

/// A partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub index: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when no replica can lead.
    pub leader: i32,
    /// Grows by one at every leader change; never goes backwards.
    pub leader_epoch: i32,
    /// Grows by one at every change of the partition (leader or ISR); lets the controller
    /// refuse ISR updates computed from a stale view (Kafka's partition epoch).
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas a running reassignment adds (KIP-455; `metadata::reassign`): in `replicas`,
    /// not yet all in the ISR. Empty when no reassignment runs.
    #[serde(default)]
    pub adding: Vec<i32>,
    /// Replicas a running reassignment removes once every adding replica is in the ISR.
    #[serde(default)]
    pub removing: Vec<i32>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub partitions: Vec<PartitionMeta>,
    /// Configs set on the topic (overrides); defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
    /// The topic id (KIP-516) as stored; 0 for topics created before ids were stored (see
    /// [`TopicMeta::topic_id`]).
    #[serde(default)]
    pub id: u128,
}

impl TopicMeta {
    /// The topic's id: the stored one, or for a topic created before raftka stored ids one
    /// derived from its name (the same on every broker; see `metadata::topic_id`).
    pub fn topic_id(&self) -> u128 {
        if self.id == 0 {
            super::topic_id::legacy(&self.name)
        } else {
            self.id
        }
    }

    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map(|p| p.replicas.len() as i16)
            .unwrap_or(0)
    }
}

/// A change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    RegisterBroker(BrokerMeta),
    CreateTopic {
        name: String,
        /// Replica list of each partition, in partition order; the first replica leads.
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
        /// The new topic's id, drawn by the proposer (`topic_id::random`), so that applying
        /// stays deterministic; 0 (commands logged before ids existed) = derived from the name.
        #[serde(default)]
        id: u128,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        /// Replica lists of the new partitions, appended after the existing ones.
        assignments: Vec<Vec<i32>>,
    },
    /// The broker's lease expired: move leadership away from it and shrink ISRs.
    FenceBroker {
        id: i32,
    },
    /// A fenced broker heartbeats again: it may lead partitions that have no leader. Refused
    /// when `incarnation` is not the registered one (the heartbeat came from a process that
    /// has since been replaced); 0 (commands logged before incarnations were checked) matches
    /// any.
    UnfenceBroker {
        id: i32,
        #[serde(default)]
        incarnation: u64,
    },
    /// A partition leader changes its ISR (shrink for lagging followers, expand for caught-up
    /// ones). Refused when computed from a stale leader or partition epoch.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Move leadership back to the preferred (first) replica if it is in the ISR and unfenced.
    ElectPreferredLeader {
        topic: String,
        partition: i32,
    },
    /// An administrator's leader election (ElectLeaders): see `metadata::election`. Refused
    /// with ElectionNotNeeded / PreferredLeaderNotAvailable / EligibleLeadersNotAvailable.
    ElectLeader {
        topic: String,
        partition: i32,
        election: ElectionType,
    },
    /// Change the config overrides of a topic or the dynamic settings of brokers
    /// (AlterConfigs with `replace`, IncrementalAlterConfigs without). Refused as a whole when
    /// any operation is invalid.
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<(String, ConfigOp)>,
        replace: bool,
    },
    /// Adds ACLs (CreateAcls); a binding already present is not added twice.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes every ACL that any of the filters selects (DeleteAcls).
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// Starts (`Some`: target replicas), replaces or cancels (`None`) the reassignment of a
    /// partition (AlterPartitionReassignments, KIP-455; see `metadata::reassign`).
    AlterReassignment {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Removes a broker's registration (UnregisterBroker); refused while it hosts replicas.
    UnregisterBroker {
        id: i32,
    },
    /// Sets (`Some`) or removes (`None`) a user's SCRAM credential of one mechanism
    /// (AlterUserScramCredentials). Removing a missing credential changes nothing.
    ScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: Option<ScramCredential>,
    },
}

/// Everything a broker knows about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Dynamic broker settings: "" → the cluster-wide defaults, "`<id>`" → one broker's.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The cluster's ACLs (see `security::authorizer`), without duplicates, in creation order.
    #[serde(default)]
    pub acls: Vec<AclBinding>,
    /// SCRAM credentials by user and mechanism (salted keys, never passwords).
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl ClusterImage {
    /// An image of unfenced brokers `ids` (at 127.0.0.1, port 0) and no topic: the start of
    /// an image built by hand (tests, harnesses).
    pub fn with_brokers(ids: impl IntoIterator<Item = i32>) -> Self {
        let mut image = ClusterImage::default();
        for id in ids {
            image.brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: "127.0.0.1".into(),
                    port: 0,
                    rack: None,
                    fenced: false,
                    incarnation: 0,
                    endpoints: Vec::new(),
                },
            );
        }
        image
    }

    /// Adds topic `name` with these replica lists (the first replica of each leads), as
    /// `CreateTopic` does.
    pub fn with_topic(
        mut self,
        name: &str,
        assignments: Vec<Vec<i32>>,
    ) -> Result<Self, MetadataError> {
        self.apply(&MetadataCommand::CreateTopic {
            name: name.into(),
            assignments,
            configs: Default::default(),
            id: 0,
        })?;
        Ok(self)
    }

    /// A user's SCRAM credential of one mechanism.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.scram.get(user)?.get(&mechanism)
    }

    /// Applies a command, or explains why it cannot apply (the image is then unchanged).
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<(), MetadataError> {
        match cmd {
            MetadataCommand::RegisterBroker(b) => {
                // Re-registration updates addresses but not fencing: only the controller's
                // Unfence (after fresh heartbeats) gives leadership back.
                let old = self.brokers.get(&b.id);
                let fenced = old.is_some_and(|old| old.fenced);
                // A new process of a known broker (Kafka's broker epoch): it may have lost an
                // unflushed tail that the ISR acknowledged, so its previous incarnation is
                // fenced — other in-sync replicas take over its partitions with a new leader
                // epoch and it leaves the ISRs until it has caught up — even when it came back
                // before its lease expired.
                let restarted =
                    b.incarnation != 0 && old.is_some_and(|old| old.incarnation != b.incarnation);
                self.brokers.insert(
                    b.id,
                    BrokerMeta {
                        fenced,
                        ..b.clone()
                    },
                );
                if restarted {
                    self.fence(b.id)?;
                }
            }
            MetadataCommand::CreateAcls { acls } => {
                for acl in acls {
                    if !self.acls.contains(acl) {
                        self.acls.push(acl.clone());
                    }
                }
            }
            MetadataCommand::DeleteAcls { filters } => {
                self.acls.retain(|b| !filters.iter().any(|f| f.matches(b)));
            }
            MetadataCommand::FenceBroker { id } => self.fence(*id)?,
            MetadataCommand::AlterReassignment {
                topic,
                partition,
                target,
            } => {
                let live = self.unfenced_ids();
                let known: Vec<i32> = self.brokers.keys().copied().collect();
                let p = self.partition_mut(topic, *partition)?;
                match target {
                    Some(target) => reassign::start(topic, p, target, &known, &live)?,
                    None => reassign::cancel(topic, p, &live)?,
                }
            }
            MetadataCommand::UnregisterBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(MetadataError::UnknownBroker(*id));
                }
                let hosted = reassign::hosted_by(self, *id);
                if !hosted.is_empty() {
                    return Err(MetadataError::BrokerHostsReplicas {
                        id: *id,
                        partitions: hosted.len(),
                        first: hosted[0].clone(),
                    });
                }
                // Its dynamic settings stay, as Kafka keeps them: they apply again if the
                // broker registers again.
                self.brokers.remove(id);
            }
            MetadataCommand::UnfenceBroker { id, incarnation } => {
                self.unfence(*id, *incarnation)?
            }
            MetadataCommand::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let fenced = self.fenced_ids();
                let p = self.partition_mut(topic, *partition)?;
                if *leader != p.leader || *leader_epoch != p.leader_epoch {
                    return Err(MetadataError::FencedLeaderEpoch(format!(
                        "{topic}-{partition}: request from leader {leader} epoch {leader_epoch}, \
                         current leader {} epoch {}",
                        p.leader, p.leader_epoch
                    )));
                }
                if *partition_epoch != p.partition_epoch {
                    return Err(MetadataError::InvalidUpdateVersion(format!(
                        "{topic}-{partition}: partition epoch {partition_epoch} is stale, \
                         current is {}",
                        p.partition_epoch
                    )));
                }
                if !isr.contains(leader) || isr.iter().any(|b| !p.replicas.contains(b)) {
                    return Err(MetadataError::InvalidReplicaAssignment(format!(
                        "{topic}-{partition}: ISR {isr:?} must contain the leader and only replicas"
                    )));
                }
                if let Some(b) = isr
                    .iter()
                    .find(|b| !p.isr.contains(b) && fenced.contains(b))
                {
                    return Err(MetadataError::IneligibleReplica(format!(
                        "{topic}-{partition}: fenced broker {b} cannot join the ISR"
                    )));
                }
                let mut sorted = isr.clone();
                sorted.sort_unstable();
                sorted.dedup();
                p.isr = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| sorted.contains(r))
                    .collect();
                p.partition_epoch += 1;
                // The last adding replica joining the ISR completes a reassignment.
                let live = self.unfenced_ids();
                if let Ok(p) = self.partition_mut(topic, *partition) {
                    reassign::try_complete(p, &live);
                }
            }
            MetadataCommand::ElectPreferredLeader { topic, partition } => {
                let fenced = self.fenced_ids();
                let p = self.partition_mut(topic, *partition)?;
                let preferred = p.replicas[0];
                if p.leader != preferred
                    && p.isr.contains(&preferred)
                    && !fenced.contains(&preferred)
                {
                    p.leader = preferred;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
            MetadataCommand::ElectLeader {
                topic,
                partition,
                election,
            } => {
                let alive: Vec<i32> = self
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .map(|b| b.id)
                    .collect();
                let p = self.partition_mut(topic, *partition)?;
                election::elect(topic, p, *election, |b| alive.contains(&b))?;
            }
            MetadataCommand::CreateTopic {
                name,
                assignments,
                configs,
                id,
            } => {
                if self.topics.contains_key(name) {
                    return Err(MetadataError::TopicExists(name.clone()));
                }
                if *id != 0 && self.topics.values().any(|t| t.topic_id() == *id) {
                    return Err(MetadataError::InvalidTopicName {
                        name: name.clone(),
                        reason: format!("topic id {id:032x} is already in use"),
                    });
                }
                self.check_assignments(assignments)?;
                let partitions = assignments
                    .iter()
                    .enumerate()
                    .map(|(i, r)| new_partition(i as i32, r))
                    .collect();
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name: name.clone(),
                        partitions,
                        configs: configs.clone(),
                        id: *id,
                    },
                );
            }
            MetadataCommand::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return Err(MetadataError::UnknownTopic(name.clone()));
                }
            }
            MetadataCommand::AlterConfigs {
                resource,
                ops,
                replace,
            } => match resource {
                ConfigResource::Topic(name) => {
                    let topic = self
                        .topics
                        .get_mut(name)
                        .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                    topic.configs = apply_ops(resource, &topic.configs, ops, *replace)?;
                }
                ConfigResource::Broker(id) => {
                    if let Some(id) = id {
                        if !self.brokers.contains_key(id) {
                            return Err(MetadataError::UnknownBroker(*id));
                        }
                    }
                    let key = ConfigResource::broker_key(*id);
                    let current = self.broker_configs.get(&key).cloned().unwrap_or_default();
                    let new = apply_ops(resource, &current, ops, *replace)?;
                    if new.is_empty() {
                        self.broker_configs.remove(&key);
                    } else {
                        self.broker_configs.insert(key, new);
                    }
                }
            },
            MetadataCommand::ScramCredential {
                user,
                mechanism,
                credential,
            } => match credential {
                Some(c) => {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, c.clone());
                }
                None => {
                    if let Some(m) = self.scram.get_mut(user) {
                        m.remove(mechanism);
                        if m.is_empty() {
                            self.scram.remove(user);
                        }
                    }
                }
            },
            MetadataCommand::CreatePartitions { name, assignments } => {
                self.check_assignments(assignments)?;
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                let start = topic.partitions.len() as i32;
                for (i, r) in assignments.iter().enumerate() {
                    topic.partitions.push(new_partition(start + i as i32, r));
                }
            }
        }
        Ok(())
    }

    fn unfenced_ids(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    fn fenced_ids(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| b.fenced)
            .map(|b| b.id)
            .collect()
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionMeta, MetadataError> {
        self.topics
            .get_mut(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            })
            .ok_or_else(|| MetadataError::UnknownTopic(format!("{topic}-{partition}")))
    }

    /// Fences a broker: for every partition it led, the first replica in assignment order
    /// that is in the ISR and not fenced becomes leader (epoch + 1), or none (-1) — never a
    /// replica outside the ISR unless the topic allows unclean election. The broker leaves
    /// every ISR except where it is the last member (Kafka keeps the last one, so the
    /// partition can come back when that broker does).
    fn fence(&mut self, id: i32) -> Result<(), MetadataError> {
        let b = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        b.fenced = true;
        let fenced = self.fenced_ids();
        for topic in self.topics.values_mut() {
            let unclean = topic
                .configs
                .get("unclean.leader.election.enable")
                .is_some_and(|v| v == "true");
            for p in &mut topic.partitions {
                let mut changed = false;
                if p.isr.contains(&id) && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    changed = true;
                }
                if p.leader == id {
                    let from_isr = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| p.isr.contains(r) && !fenced.contains(r));
                    let new_leader = match from_isr {
                        Some(r) => r,
                        None if unclean => {
                            match p.replicas.iter().copied().find(|r| !fenced.contains(r)) {
                                Some(r) => {
                                    p.isr = vec![r];
                                    r
                                }
                                None => -1,
                            }
                        }
                        None => -1,
                    };
                    p.leader = new_leader;
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
        Ok(())
    }

    /// Unfences incarnation `incarnation` of a broker (0: whichever is registered); leaderless
    /// partitions whose ISR holds it get it as leader.
    fn unfence(&mut self, id: i32, incarnation: u64) -> Result<(), MetadataError> {
        let b = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if incarnation != 0 && b.incarnation != incarnation {
            return Err(MetadataError::StaleBrokerEpoch(format!(
                "broker {id}: unfencing was decided for incarnation {incarnation}, but \
                 incarnation {} has registered since",
                b.incarnation
            )));
        }
        b.fenced = false;
        for p in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if p.leader == -1 && p.isr.contains(&id) {
                p.leader = id;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
        // A reassignment that waited for a live target replica to lead may complete now.
        let live = self.unfenced_ids();
        for p in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .filter(|p| reassign::in_progress(p))
        {
            reassign::try_complete(p, &live);
        }
        Ok(())
    }

    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), MetadataError> {
        if assignments.is_empty() {
            return Err(MetadataError::InvalidPartitions(
                "number of partitions must be larger than 0".into(),
            ));
        }
        for (i, replicas) in assignments.iter().enumerate() {
            if replicas.is_empty() {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "partition {i} has no replicas"
                )));
            }
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != replicas.len() {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "partition {i} lists a broker twice: {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "partition {i} names unknown broker {b}"
                )));
            }
        }
        Ok(())
    }

    /// Spreads `count` partitions with `rf` replicas over the known brokers, round-robin,
    /// starting at partition index `first` so leaders keep rotating when partitions are added.
    pub fn place_replicas(
        &self,
        count: i32,
        rf: i16,
        first: i32,
    ) -> Result<Vec<Vec<i32>>, MetadataError> {
        // Fenced brokers get no new replicas (as in KRaft); with racks set, consecutive
        // brokers of the list are in different racks, so a partition's replicas spread over
        // racks as far as the replication factor allows.
        let ids = rack_interleaved(self.brokers.values().filter(|b| !b.fenced));
        if rf < 1 || rf as usize > ids.len() {
            return Err(MetadataError::InvalidReplicationFactor(format!(
                "replication factor {rf} is invalid: it must be between 1 and the number of \
                 available brokers ({})",
                ids.len()
            )));
        }
        if count < 1 {
            return Err(MetadataError::InvalidPartitions(
                "number of partitions must be larger than 0".into(),
            ));
        }
        Ok((0..count)
            .map(|p| {
                (0..rf as usize)
                    .map(|r| ids[(first as usize + p as usize + r) % ids.len()])
                    .collect()
            })
            .collect())
    }
}

/// Broker ids ordered for placement: by id when no broker has a rack; otherwise one broker of
/// each rack in turn (racks by name, brokers of a rack by id; no rack counts as a rack of its
/// own), like Kafka's rack-alternated broker list.
fn rack_interleaved<'a>(brokers: impl Iterator<Item = &'a BrokerMeta>) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| by_rack.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
}

fn new_partition(index: i32, replicas: &[i32]) -> PartitionMeta {
    PartitionMeta {
        index,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader: replicas[0],
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: i32) -> ClusterImage {
        let mut img = ClusterImage::default();
        for id in 1..=n {
            img.apply(&MetadataCommand::RegisterBroker(BrokerMeta {
                id,
                host: "h".into(),
                port: 1,
                rack: None,
                fenced: false,
                incarnation: 0,
                endpoints: Vec::new(),
            }))
            .unwrap();
        }
        img
    }

    #[test]
    fn create_delete_and_grow_topics() {
        let mut img = image(1);
        let a = img.place_replicas(2, 1, 0).unwrap();
        let create = MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: a,
            configs: Default::default(),
            id: 0,
        };
        img.apply(&create).unwrap();
        assert_eq!(
            img.apply(&create),
            Err(MetadataError::TopicExists("t".into()))
        );
        img.apply(&MetadataCommand::CreatePartitions {
            name: "t".into(),
            assignments: vec![vec![1]],
        })
        .unwrap();
        let t = &img.topics["t"];
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[2].index, 2);
        assert_eq!(t.partitions[2].leader, 1);
        img.apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(img
            .apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .is_err());
    }

    #[test]
    fn a_restarted_broker_loses_leadership_and_isr_membership() {
        let register = |id: i32, incarnation: u64| {
            MetadataCommand::RegisterBroker(BrokerMeta {
                id,
                host: "h".into(),
                port: 1,
                rack: None,
                fenced: false,
                incarnation,
                endpoints: Vec::new(),
            })
        };
        let mut img = ClusterImage::default();
        for id in 1..=3 {
            img.apply(&register(id, 10 + id as u64)).unwrap();
        }
        img.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![2, 3, 1], vec![1, 2]],
            configs: Default::default(),
            id: 0,
        })
        .unwrap();
        // The same process registering again (a retry) changes nothing.
        let before = img.clone();
        img.apply(&register(2, 12)).unwrap();
        assert_eq!(img, before);
        // Broker 2 restarted (new incarnation) before its lease expired: the ISR takes over
        // with a new epoch, and broker 2 is fenced until the controller sees it heartbeat.
        img.apply(&register(2, 99)).unwrap();
        let p0 = &img.topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch), (3, 1));
        assert_eq!(p0.isr, vec![3, 1]);
        let p1 = &img.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (1, 0, vec![1])
        );
        assert!(img.brokers[&2].fenced);
        assert_eq!(img.brokers[&2].incarnation, 99);
        // The last in-sync replica restarting keeps its ISR place but leads only once
        // unfenced, in a new epoch.
        img.apply(&register(1, 77)).unwrap();
        let p1 = &img.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (-1, 1, vec![1])
        );
        // An unfencing decided on the old process's heartbeat does not apply to the new one.
        let before = img.clone();
        assert!(matches!(
            img.apply(&MetadataCommand::UnfenceBroker {
                id: 1,
                incarnation: 11,
            }),
            Err(MetadataError::StaleBrokerEpoch(_))
        ));
        assert_eq!(img, before);
        img.apply(&MetadataCommand::UnfenceBroker {
            id: 1,
            incarnation: 77,
        })
        .unwrap();
        let p1 = &img.topics["t"].partitions[1];
        assert_eq!((p1.leader, p1.leader_epoch), (1, 2));
    }

    #[test]
    fn placement_skips_fenced_brokers_and_spreads_over_racks() {
        let mut img = ClusterImage::default();
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            img.apply(&MetadataCommand::RegisterBroker(BrokerMeta {
                id,
                host: "h".into(),
                port: 1,
                rack: Some(rack.into()),
                fenced: false,
                incarnation: 0,
                endpoints: Vec::new(),
            }))
            .unwrap();
        }
        let rack = |id: &i32| img.brokers[id].rack.clone();
        for (first, replicas) in img.place_replicas(6, 3, 0).unwrap().iter().enumerate() {
            let racks: std::collections::BTreeSet<_> = replicas.iter().map(rack).collect();
            assert_eq!(
                racks.len(),
                3,
                "partition {first}: {replicas:?} not on three racks"
            );
        }
        img.apply(&MetadataCommand::FenceBroker { id: 3 }).unwrap();
        let a = img.place_replicas(5, 2, 0).unwrap();
        assert!(a.iter().flatten().all(|b| *b != 3), "{a:?}");
        assert!(img.place_replicas(1, 6, 0).is_err());
    }

    #[test]
    fn placement_spreads_leaders_and_checks_rf() {
        let img = image(3);
        let a = img.place_replicas(3, 2, 0).unwrap();
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3]);
        assert!(a.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        assert!(img.place_replicas(1, 4, 0).is_err());
        assert!(img.place_replicas(0, 1, 0).is_err());
    }

    #[test]
    fn config_changes_apply_to_topics_and_brokers_or_not_at_all() {
        let mut img = image(2);
        img.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![1]],
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            id: 0,
        })
        .unwrap();
        let alter = |resource, ops: Vec<(&str, ConfigOp)>, replace| MetadataCommand::AlterConfigs {
            resource,
            ops: ops.into_iter().map(|(k, o)| (k.to_string(), o)).collect(),
            replace,
        };
        let topic = ConfigResource::Topic("t".into());
        img.apply(&alter(
            topic.clone(),
            vec![("retention.bytes", ConfigOp::Set("5".into()))],
            false,
        ))
        .unwrap();
        assert_eq!(img.topics["t"].configs.len(), 2);
        // One bad operation refuses the whole change.
        let before = img.clone();
        let bad = alter(
            topic.clone(),
            vec![
                ("retention.ms", ConfigOp::Delete),
                ("retention.bytes", ConfigOp::Set("lots".into())),
            ],
            false,
        );
        assert!(matches!(
            img.apply(&bad),
            Err(MetadataError::InvalidConfig { .. })
        ));
        assert_eq!(img, before);
        assert!(img
            .apply(&alter(ConfigResource::Topic("nope".into()), vec![], false))
            .is_err());
        // Brokers: one broker's settings and the cluster-wide defaults; unknown brokers refused.
        let set = || vec![("log.retention.ms", ConfigOp::Set("60000".into()))];
        img.apply(&alter(ConfigResource::Broker(Some(2)), set(), false))
            .unwrap();
        img.apply(&alter(ConfigResource::Broker(None), set(), false))
            .unwrap();
        assert_eq!(img.broker_configs["2"]["log.retention.ms"], "60000");
        assert_eq!(img.broker_configs[""]["log.retention.ms"], "60000");
        assert_eq!(
            img.apply(&alter(ConfigResource::Broker(Some(9)), set(), false)),
            Err(MetadataError::UnknownBroker(9))
        );
        // Replacing with nothing removes the entry.
        img.apply(&alter(ConfigResource::Broker(None), vec![], true))
            .unwrap();
        assert!(!img.broker_configs.contains_key(""));
    }

    #[test]
    fn acls_are_added_once_and_deleted_by_filter() {
        use crate::security::acl::AclBinding;
        let acl =
            |name: &str, op: i8| AclBinding::from_codes(2, name, 3, "User:a", "*", op, 3).unwrap();
        let mut img = image(1);
        img.apply(&MetadataCommand::CreateAcls {
            acls: vec![acl("t", 3), acl("t", 4), acl("t", 3)],
        })
        .unwrap();
        img.apply(&MetadataCommand::CreateAcls {
            acls: vec![acl("u", 3), acl("t", 4)],
        })
        .unwrap();
        assert_eq!(img.acls, vec![acl("t", 3), acl("t", 4), acl("u", 3)]);
        let reads = AclFilter::from_codes(2, None, 1, None, None, 3, 1).unwrap();
        img.apply(&MetadataCommand::DeleteAcls {
            filters: vec![reads],
        })
        .unwrap();
        assert_eq!(img.acls, vec![acl("t", 4)]);
        // An image written before ACLs existed reads back without any.
        let mut old = serde_json::to_value(&img).unwrap();
        old.as_object_mut().unwrap().remove("acls");
        let back: ClusterImage = serde_json::from_value(old).unwrap();
        assert!(back.acls.is_empty());
    }

    #[test]
    fn a_reassignment_completes_when_the_isr_expands_and_unregistering_needs_no_replicas() {
        let mut img = image(3);
        img.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![1]],
            configs: Default::default(),
            id: 0,
        })
        .unwrap();
        let reassign = |target: Option<Vec<i32>>| MetadataCommand::AlterReassignment {
            topic: "t".into(),
            partition: 0,
            target,
        };
        // Unknown partitions and brokers are refused.
        assert!(matches!(
            img.apply(&MetadataCommand::AlterReassignment {
                topic: "t".into(),
                partition: 3,
                target: Some(vec![2]),
            }),
            Err(MetadataError::UnknownTopic(_))
        ));
        assert!(matches!(
            img.apply(&reassign(Some(vec![7]))),
            Err(MetadataError::InvalidReplicaAssignment(_))
        ));
        img.apply(&reassign(Some(vec![2]))).unwrap();
        let p = img.topics["t"].partitions[0].clone();
        assert_eq!(
            (p.replicas.clone(), p.adding.clone()),
            (vec![2, 1], vec![2])
        );
        // Broker 1 still hosts a replica: it cannot be unregistered.
        assert!(matches!(
            img.apply(&MetadataCommand::UnregisterBroker { id: 1 }),
            Err(MetadataError::BrokerHostsReplicas { .. })
        ));
        // The leader adds caught-up broker 2 to the ISR: the move completes in that change.
        img.apply(&MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2],
        })
        .unwrap();
        let q = &img.topics["t"].partitions[0];
        assert_eq!((q.replicas.clone(), q.isr.clone()), (vec![2], vec![2]));
        assert_eq!((q.leader, q.leader_epoch), (2, p.leader_epoch + 1));
        assert!(q.adding.is_empty() && q.removing.is_empty());
        assert!(matches!(
            img.apply(&reassign(None)),
            Err(MetadataError::NoReassignmentInProgress(_))
        ));
        img.apply(&MetadataCommand::UnregisterBroker { id: 1 })
            .unwrap();
        assert!(!img.brokers.contains_key(&1));
        assert_eq!(
            img.apply(&MetadataCommand::UnregisterBroker { id: 1 }),
            Err(MetadataError::UnknownBroker(1))
        );
        // An unregistered broker gets no new replicas.
        assert!(img
            .place_replicas(4, 2, 0)
            .unwrap()
            .iter()
            .flatten()
            .all(|b| *b != 1));
    }

    #[test]
    fn a_removing_only_move_waits_for_its_target_to_rejoin_the_isr() {
        let mut img = image(2);
        img.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![1, 2]],
            configs: Default::default(),
            id: 0,
        })
        .unwrap();
        // Move to [2]: removing-only, but broker 2 is fenced and cannot lead yet.
        img.apply(&MetadataCommand::FenceBroker { id: 2 }).unwrap();
        let p = img.topics["t"].partitions[0].clone();
        assert_eq!(p.isr, vec![1]);
        img.apply(&MetadataCommand::AlterReassignment {
            topic: "t".into(),
            partition: 0,
            target: Some(vec![2]),
        })
        .unwrap();
        assert!(reassign::in_progress(&img.topics["t"].partitions[0]));
        img.apply(&MetadataCommand::UnfenceBroker {
            id: 2,
            incarnation: 0,
        })
        .unwrap();
        // Unfenced but not in the ISR: still waiting (the ISR without broker 1 is empty).
        let p = img.topics["t"].partitions[0].clone();
        assert!(reassign::in_progress(&p));
        img.apply(&MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2],
        })
        .unwrap();
        let q = &img.topics["t"].partitions[0];
        assert_eq!((q.replicas.clone(), q.leader), (vec![2], 2));
    }

    #[test]
    fn bad_assignments_leave_the_image_unchanged() {
        let mut img = image(1);
        let before = img.clone();
        let r = img.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![1, 1]],
            configs: Default::default(),
            id: 0,
        });
        assert!(matches!(r, Err(MetadataError::InvalidReplicaAssignment(_))));
        assert_eq!(img, before);
    }
}
