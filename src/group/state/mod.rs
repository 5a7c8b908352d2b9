//! One consumer group's state machine (Kafka's classic group protocol).
//!
//! States and what moves between them:
//! - `Empty`: no members (possibly committed offsets). A join starts a rebalance that first
//!   waits `group.initial.rebalance.delay.ms` so members starting together share a generation.
//! - `PreparingRebalance`: waiting for every known member to (re)join. It ends when all have
//!   joined, or at the rebalance timeout (the largest member's), when members that did not
//!   rejoin are dropped. The generation is bumped, a protocol is chosen, the leader gets every
//!   member's metadata → `CompletingRebalance` (or `Empty` if nobody is left).
//! - `CompletingRebalance`: waiting for the leader's SyncGroup with the assignment; followers
//!   that sync earlier wait for it. The assignment is handed out untouched → `Stable`.
//! - `Stable`: heartbeats keep members alive. A join with new protocols, a join of the
//!   leader, a new member, a leave or an expired session → `PreparingRebalance`.
//! - `Dead`: the group was deleted.
//!
//! Requests that must wait (JoinGroup until the join phase ends, SyncGroup until the leader's
//! assignment arrives) get a [`Reply::Later`] with a one-shot receiver; the state machine
//! completes it. Nothing here sleeps or locks: the caller passes the current time, calls
//! [`Group::tick`] when [`Group::next_deadline`] has passed, and never holds the group across
//! an await.
//!
//! May depend on: `group` (errors, subscription parsing), `tokio` (Instant, oneshot), `bytes`.
//!
//! The request and answer types are in [`crate::group::messages`]; the steps are split by
//! concern: `join` (JoinGroup and the join phase), `sync` (SyncGroup and assignments),
//! `liveness` (heartbeats, leaving, commits' membership check, timers), `persist` (the
//! group as its metadata record stores it, and a group restored from one).

mod join;
mod liveness;
mod persist;
mod sync;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use super::messages::{
    GroupDescription, GroupLimits, GroupState, JoinRequest, JoinResponse, JoinedMember,
    MemberDescription, MemberRef, Protocol, Reply, SyncRequest, SyncResponse,
    CONSUMER_PROTOCOL_TYPE,
};
use super::subscription::subscribed_topics;
use super::GroupError;

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    /// Present while the member's JoinGroup waits for the join phase to end.
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    /// Present while the member's SyncGroup waits for the leader's assignment.
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    /// The session ends at this instant unless a heartbeat (or join, sync, commit) comes first.
    /// Members waiting on a join or sync are never expired: the rebalance timeout bounds them.
    expires: Instant,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn awaiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// The current join phase of a group in PreparingRebalance.
#[derive(Debug, Clone, Copy)]
struct JoinPhase {
    /// When the phase ends whoever has joined.
    deadline: Instant,
    /// Set during the initial delay of an empty group: the phase may be extended by this much
    /// more while new members keep arriving, and does not end early when all have joined.
    initial_remaining: Option<Duration>,
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    id: String,
    limits: GroupLimits,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In join order; the first member to join an empty group leads it.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse if unused. They
    /// hold up the join phase until they join or lapse.
    pending: BTreeMap<String, Instant>,
    join_phase: Option<JoinPhase>,
    /// A member joined during the initial delay (extends it once more).
    new_member_added: bool,
    /// After a join phase: members that must send SyncGroup by `sync_deadline`.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    /// A rebalance completed or the group emptied since the coordinator last persisted it
    /// (`persist`): its metadata record is due.
    dirty: bool,
    /// A metadata record of this group was written or loaded (deleting the group then needs a
    /// tombstone).
    persisted: bool,
}

impl Group {
    /// A new group in state Empty.
    pub fn new(id: impl Into<String>, limits: GroupLimits) -> Self {
        Self {
            id: id.into(),
            limits,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending: BTreeMap::new(),
            join_phase: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            sync_deadline: None,
            dirty: false,
            persisted: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn static_member_id(&self, instance: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Marks the group deleted: waiting requests are answered with `error` and every member
    /// is dropped.
    pub fn mark_dead(&mut self) {
        for m in &mut self.members {
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinResponse::error(
                    &m.id,
                    GroupError::CoordinatorNotAvailable,
                ));
            }
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(SyncResponse::error(GroupError::CoordinatorNotAvailable));
            }
        }
        self.members.clear();
        self.pending.clear();
        self.pending_sync.clear();
        self.join_phase = None;
        self.sync_deadline = None;
        self.leader = None;
        self.state = GroupState::Dead;
    }

    /// Topics the members subscribe to, or `None` if that cannot be known (not the consumer
    /// protocol, no generation yet, unreadable metadata): then every topic counts as used.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            topics.extend(subscribed_topics(&m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// A summary for DescribeGroups.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}
