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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::subscription::subscribed_topics;
use super::GroupError;

/// The protocol type of Kafka consumers (as opposed to Connect workers and others).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Where a group is in its life cycle; [`GroupState::as_str`] gives Kafka's exact names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report (tools match these exactly).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name as ListGroups filters give it (case-insensitive, like Kafka).
    pub fn parse(s: &str) -> Option<Self> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|g| g.as_str().eq_ignore_ascii_case(s))
    }
}

/// Limits every group obeys (broker settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

/// One protocol a member supports (e.g. `range`) and its metadata for it (for consumers, the
/// subscription), in the member's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request, decoupled from the wire version.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member is first given its id with MEMBER_ID_REQUIRED and
    /// only becomes a member when it joins again with it.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol; only the leader gets it.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(member_id: &str, error: GroupError) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// v5+: checked against the group's when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id, passed through untouched.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup: this member's assignment bytes as the leader sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: GroupError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A member as Heartbeat, LeaveGroup and OffsetCommit name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberRef {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// An answer now, or a receiver the state machine completes later.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What DescribeGroups reports about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the chosen protocol and the assignment; empty unless the group is Stable.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// What DescribeGroups reports about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol while Stable, else empty.
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

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

    // ---------------------------------------------------------------------------------------
    // JoinGroup

    /// Handles a JoinGroup. `new_member_id` is used if the request has no member id.
    pub fn join(
        &mut self,
        req: JoinRequest,
        new_member_id: String,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let err = |e| Reply::Now(JoinResponse::error(&req.member_id, e));
        if self.state == GroupState::Dead {
            return err(GroupError::CoordinatorNotAvailable);
        }
        let l = &self.limits;
        if req.session_timeout_ms < l.min_session_timeout_ms
            || req.session_timeout_ms > l.max_session_timeout_ms
        {
            return err(GroupError::InvalidSessionTimeout {
                got: req.session_timeout_ms,
                min: l.min_session_timeout_ms,
                max: l.max_session_timeout_ms,
            });
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return err(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, new_member_id, now)
        } else {
            self.join_known_member(req, now)
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        member_id: String,
        now: Instant,
    ) -> Reply<JoinResponse> {
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old) = self.static_member_id(&instance).map(str::to_string) {
                return self.replace_static_member(&old, member_id, req, now);
            }
        }
        if self.members.len() + self.pending.len() >= self.limits.max_size {
            return Reply::Now(JoinResponse::error(
                "",
                GroupError::GroupMaxSizeReached(self.limits.max_size),
            ));
        }
        if req.group_instance_id.is_none() && req.require_known_member_id {
            let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
            self.pending.insert(member_id.clone(), now + session);
            return Reply::Now(JoinResponse::error(
                &member_id,
                GroupError::MemberIdRequired,
            ));
        }
        self.add_member(member_id, req, now)
    }

    fn join_known_member(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
        let id = req.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return self.add_member(id, req, now);
        }
        let who = MemberRef {
            member_id: id.clone(),
            group_instance_id: req.group_instance_id.clone(),
        };
        if let Err(e) = self.validate_member(&who) {
            return Reply::Now(JoinResponse::error(&id, e));
        }
        let same_protocols = self
            .member(&id)
            .is_some_and(|m| m.protocols == req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member(req, now),
            GroupState::CompletingRebalance if same_protocols => {
                // The member missed its join response: send it again.
                self.touch(&id, now);
                Reply::Now(self.generation_response(&id, self.leader() == Some(&id)))
            }
            GroupState::Stable if same_protocols && self.leader() != Some(&id) => {
                self.touch(&id, now);
                Reply::Now(self.generation_response(&id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member(req, now),
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinResponse::error(
                &id,
                GroupError::UnknownMemberId(id.clone()),
            )),
        }
    }

    /// The current generation as one member should see it.
    fn generation_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    fn member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    fn add_member(&mut self, id: String, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.push(Member {
            id,
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: millis(req.session_timeout_ms),
            rebalance_timeout: millis(req.rebalance_timeout_ms),
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            expires: now + millis(req.session_timeout_ms),
        });
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn update_member(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.member_mut(&req.member_id) {
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResponse::error(&m.id, GroupError::RebalanceInProgress));
            }
            m.protocols = req.protocols;
            m.session_timeout = millis(req.session_timeout_ms);
            m.rebalance_timeout = millis(req.rebalance_timeout_ms);
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.expires = now + m.session_timeout;
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    /// A static member (known `group.instance.id`) rejoined without its member id: it takes
    /// over the old member's place under a new id, and the old id is fenced.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let was_leader = self.leader.as_deref() == Some(old_id);
        let instance = req.group_instance_id.clone().unwrap_or_default();
        let Some(m) = self.members.iter_mut().find(|m| m.id == old_id) else {
            return Reply::Now(JoinResponse::error(
                "",
                GroupError::UnknownMemberId(old_id.into()),
            ));
        };
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(JoinResponse::error(
                old_id,
                GroupError::FencedInstanceId(instance.clone()),
            ));
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(SyncResponse::error(GroupError::FencedInstanceId(instance)));
        }
        m.id = new_id.clone();
        m.protocols = req.protocols;
        m.session_timeout = millis(req.session_timeout_ms);
        m.rebalance_timeout = millis(req.rebalance_timeout_ms);
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.expires = now + m.session_timeout;
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.state == GroupState::Stable
            && self.protocol_name.as_deref() == Some(self.select_protocol().as_str())
        {
            // A member restarted with the same subscription: no rebalance; it syncs and gets
            // its previous assignment back. As Kafka does, the answer names the *old* leader
            // id when the leader itself restarted, so the client does not take itself for the
            // leader and compute an assignment that a Stable group would never hand out.
            let mut r = self.generation_response(&new_id, false);
            if was_leader {
                r.leader = old_id.to_string();
            }
            return Reply::Now(r);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.member_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(now)
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.iter().all(|m| m.supports(&p.name)))
    }

    /// The protocol every member supports that most members prefer (ties: the first member's
    /// order of preference).
    fn select_protocol(&self) -> String {
        let Some(first) = self.members.first() else {
            return String::new();
        };
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &self.members {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let n = votes.get(c).copied().unwrap_or(0);
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c.to_string())
            .or_else(|| first.protocols.first().map(|p| p.name.clone()))
            .unwrap_or_default()
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncResponse::error(GroupError::RebalanceInProgress));
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        let delay = self.limits.initial_rebalance_delay;
        self.join_phase = Some(if self.state == GroupState::Empty && !delay.is_zero() {
            JoinPhase {
                deadline: now + delay,
                initial_remaining: Some(timeout.saturating_sub(delay)),
            }
        } else {
            JoinPhase {
                deadline: now + timeout,
                initial_remaining: None,
            }
        });
        self.state = GroupState::PreparingRebalance;
        // Everyone may already be in (e.g. the last member left).
        self.try_complete_join(now);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.join_waiter.is_some())
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let initial = self
            .join_phase
            .is_some_and(|p| p.initial_remaining.is_some());
        if !initial && self.all_joined() {
            self.complete_join(now);
        }
    }

    /// The join phase's deadline passed.
    fn join_deadline_passed(&mut self, now: Instant) {
        if let Some(JoinPhase {
            initial_remaining: Some(remaining),
            ..
        }) = self.join_phase
        {
            if self.new_member_added && !remaining.is_zero() {
                self.new_member_added = false;
                let delay = self.limits.initial_rebalance_delay.min(remaining);
                self.join_phase = Some(JoinPhase {
                    deadline: now + delay,
                    initial_remaining: Some(remaining.saturating_sub(delay)),
                });
                return;
            }
        }
        self.complete_join(now);
    }

    fn complete_join(&mut self, now: Instant) {
        // Dynamic members that did not rejoin are out; static ones keep their place.
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.retain(|m| &m.id != id);
        }
        self.new_member_added = false;
        let timeout = self.rebalance_timeout();
        if !self.members.is_empty() && self.members.iter().all(|m| m.join_waiter.is_none()) {
            // Only static members that have not rejoined are left: wait for them (or for
            // their sessions to end).
            self.join_phase = Some(JoinPhase {
                deadline: now + timeout,
                initial_remaining: None,
            });
            return;
        }
        self.join_phase = None;
        let leader_joined = self
            .leader
            .as_deref()
            .and_then(|l| self.member(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            self.leader = self
                .members
                .iter()
                .find(|m| m.join_waiter.is_some())
                .map(|m| m.id.clone());
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = GroupState::Empty;
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        self.state = GroupState::CompletingRebalance;
        let everyone = self.member_metadata();
        let leader = self.leader.clone().unwrap_or_default();
        for m in &mut self.members {
            m.expires = now + m.session_timeout;
            self.pending_sync.insert(m.id.clone());
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinResponse {
                    error: None,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        self.sync_deadline = Some(now + timeout);
    }

    // ---------------------------------------------------------------------------------------
    // SyncGroup, Heartbeat, LeaveGroup

    /// Checks that `who` is a current member (and not a fenced static member).
    fn validate_member(&self, who: &MemberRef) -> Result<(), GroupError> {
        if let Some(instance) = &who.group_instance_id {
            if let Some(current) = self.static_member_id(instance) {
                if current != who.member_id {
                    return Err(GroupError::FencedInstanceId(instance.clone()));
                }
            }
        }
        if self.member(&who.member_id).is_none() {
            return Err(GroupError::UnknownMemberId(who.member_id.clone()));
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.member_mut(member_id) {
            m.expires = now + m.session_timeout;
        }
    }

    /// Handles a SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, now: Instant) -> Reply<SyncResponse> {
        let err = |e| Reply::Now(SyncResponse::error(e));
        if self.state == GroupState::Dead {
            return err(GroupError::CoordinatorNotAvailable);
        }
        let who = MemberRef {
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
        };
        if let Err(e) = self.validate_member(&who) {
            return err(e);
        }
        if req.generation_id != self.generation {
            return err(GroupError::IllegalGeneration {
                got: req.generation_id,
                current: self.generation,
            });
        }
        let type_differs = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t));
        let name_differs = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| self.protocol_name.as_ref() != Some(n));
        if type_differs || name_differs {
            return err(GroupError::InconsistentGroupProtocol);
        }
        let id = req.member_id.clone();
        match self.state {
            GroupState::Empty | GroupState::Dead => err(GroupError::UnknownMemberId(id)),
            GroupState::PreparingRebalance => err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.synced(&id, now);
                if let Some(m) = self.member_mut(&id) {
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResponse::error(GroupError::RebalanceInProgress));
                    }
                }
                if self.leader.as_deref() == Some(id.as_str()) {
                    self.assign(req.assignments);
                }
                Reply::Later(rx)
            }
            GroupState::Stable => {
                self.synced(&id, now);
                Reply::Now(self.sync_response(&id))
            }
        }
    }

    fn synced(&mut self, id: &str, now: Instant) {
        self.touch(id, now);
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    fn sync_response(&self, id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .member(id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// The leader's assignment arrived: store it, answer every waiting SyncGroup → Stable.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for m in &mut self.members {
            m.assignment = by_member.remove(&m.id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        let waiting: Vec<(oneshot::Sender<SyncResponse>, String)> = self
            .members
            .iter_mut()
            .filter_map(|m| m.sync_waiter.take().map(|tx| (tx, m.id.clone())))
            .collect();
        for (tx, id) in waiting {
            let _ = tx.send(self.sync_response(&id));
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        who: &MemberRef,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(who)?;
        if self.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId(who.member_id.clone()));
        }
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation_id,
                current: self.generation,
            });
        }
        self.touch(&who.member_id, now);
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup. An empty member id with a `group.instance.id`
    /// removes that static member (administrative removal).
    pub fn leave(&mut self, who: &MemberRef, now: Instant) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if who.member_id.is_empty() {
            let id = who
                .group_instance_id
                .as_deref()
                .and_then(|i| self.static_member_id(i))
                .map(str::to_string)
                .ok_or_else(|| GroupError::UnknownMemberId(String::new()))?;
            self.remove_member(&id, now);
            return Ok(());
        }
        if self.pending.remove(&who.member_id).is_some() {
            self.try_complete_join(now);
            return Ok(());
        }
        self.validate_member(who)?;
        self.remove_member(&who.member_id, now);
        Ok(())
    }

    fn remove_member(&mut self, id: &str, now: Instant) {
        let Some(pos) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let mut m = self.members.remove(pos);
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(JoinResponse::error(
                id,
                GroupError::UnknownMemberId(id.into()),
            ));
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(SyncResponse::error(GroupError::UnknownMemberId(id.into())));
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // Offsets and timers

    /// Whether `who` may commit offsets with `generation_id` now. Commits with generation -1,
    /// no member id and no instance id are allowed while the group is Empty (admin tools,
    /// consumers that only store offsets). A valid commit counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        who: &MemberRef,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id >= 0 || !who.member_id.is_empty() || who.group_instance_id.is_some() {
            self.validate_member(who)?;
            if generation_id != self.generation {
                return Err(GroupError::IllegalGeneration {
                    got: generation_id,
                    current: self.generation,
                });
            }
        } else if self.state != GroupState::Empty {
            return Err(GroupError::UnknownMemberId(who.member_id.clone()));
        }
        match self.state {
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.touch(&who.member_id, now);
                Ok(())
            }
            GroupState::Empty | GroupState::Dead => Ok(()),
        }
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

    /// The earliest instant at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .iter()
            .filter(|m| !m.awaiting())
            .map(|m| m.expires);
        let pending = self.pending.values().copied();
        let join = self.join_phase.map(|p| p.deadline);
        let sync = self.sync_deadline;
        sessions.chain(pending).chain(join).chain(sync).min()
    }

    /// Applies every timeout due at `now`: lapsed MEMBER_ID_REQUIRED ids, expired sessions,
    /// members that did not sync in time, and the end of a join phase. Returns the ids of the
    /// members removed.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        let mut removed = Vec::new();
        if self.state == GroupState::Dead {
            return removed;
        }
        let lapsed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending.remove(&id);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting() && m.expires <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, now);
            removed.push(id);
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline.is_some_and(|d| d <= now)
        {
            self.sync_deadline = None;
            let late: Vec<String> = self.pending_sync.drain().collect();
            for id in late {
                if self.member(&id).is_some() {
                    self.remove_member(&id, now);
                    removed.push(id);
                }
            }
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_phase.is_some_and(|p| p.deadline <= now)
        {
            let before = self.member_ids();
            self.join_deadline_passed(now);
            removed.extend(before.into_iter().filter(|id| self.member(id).is_none()));
        }
        self.try_complete_join(now);
        removed
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const DELAY: Duration = Duration::from_secs(3);
    const SESSION_MS: i32 = 10_000;
    const REBALANCE_MS: i32 = 30_000;

    fn limits() -> GroupLimits {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 300_000,
            initial_rebalance_delay: DELAY,
            max_size: 10,
        }
    }

    fn protocols(names: &[&str]) -> Vec<Protocol> {
        names
            .iter()
            .map(|n| Protocol {
                name: n.to_string(),
                metadata: Bytes::from(format!("meta-{n}")),
            })
            .collect()
    }

    fn join_req(member_id: &str, names: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols(names),
            require_known_member_id: false,
        }
    }

    fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected the request to wait"),
        }
    }

    fn now<T: std::fmt::Debug>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    /// The answer, whether given at once or already sent to the receiver.
    fn answer<T: std::fmt::Debug>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Later(mut rx) => ready(&mut rx),
        }
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("answer should be ready")
    }

    fn pending<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) {
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
    }

    /// Advances paused time and applies the group's timeouts.
    async fn pass(g: &mut Group, d: Duration) -> Vec<String> {
        advance(d).await;
        g.tick(Instant::now())
    }

    fn sync_req(member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
        SyncRequest {
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
                .collect(),
        }
    }

    fn who(id: &str) -> MemberRef {
        MemberRef {
            member_id: id.into(),
            group_instance_id: None,
        }
    }

    /// Two members "a" (leader) and "b" joined and synced: generation 1, Stable.
    async fn stable_pair() -> Group {
        let mut g = Group::new("g", limits());
        let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
        let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
        pass(&mut g, DELAY).await;
        // b arrived during the initial delay: it is extended once.
        pending(&mut a);
        pass(&mut g, DELAY).await;
        assert_eq!(ready(&mut a).generation_id, 1);
        assert_eq!(ready(&mut b).generation_id, 1);
        let mut sb = later(g.sync(sync_req("b", 1, &[]), Instant::now()));
        let _ = answer(g.sync(
            sync_req("a", 1, &[("a", b"A"), ("b", b"B")]),
            Instant::now(),
        ));
        assert_eq!(ready(&mut sb).assignment, Bytes::from_static(b"B"));
        assert_eq!(g.state(), GroupState::Stable);
        g
    }

    #[tokio::test(start_paused = true)]
    async fn first_join_waits_for_the_initial_delay() {
        let mut g = Group::new("g", limits());
        let mut rx = later(g.join(join_req("", &["range"]), "m1".into(), Instant::now()));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        pass(&mut g, DELAY - Duration::from_millis(1)).await;
        pending(&mut rx);
        pass(&mut g, Duration::from_millis(1)).await;
        let r = ready(&mut rx);
        assert_eq!(r.error, None);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader, "m1");
        assert_eq!(r.member_id, "m1");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
    }

    #[tokio::test(start_paused = true)]
    async fn member_id_required_round_trip() {
        let mut g = Group::new("g", limits());
        let mut first = join_req("", &["range"]);
        first.require_known_member_id = true;
        let r = now(g.join(first.clone(), "m1".into(), Instant::now()));
        assert_eq!(r.error, Some(GroupError::MemberIdRequired));
        assert_eq!(r.member_id, "m1");
        assert_eq!(g.state(), GroupState::Empty);
        let mut again = first;
        again.member_id = "m1".into();
        let mut rx = later(g.join(again, "unused".into(), Instant::now()));
        pass(&mut g, DELAY).await;
        assert_eq!(ready(&mut rx).member_id, "m1");
    }

    #[tokio::test(start_paused = true)]
    async fn unused_member_id_lapses_after_the_session_timeout() {
        let mut g = Group::new("g", limits());
        let mut first = join_req("", &["range"]);
        first.require_known_member_id = true;
        let _ = now(g.join(first, "m1".into(), Instant::now()));
        assert!(!g.is_empty());
        pass(&mut g, Duration::from_millis(SESSION_MS as u64)).await;
        assert!(g.is_empty());
        let r = now(g.join(join_req("m1", &["range"]), "x".into(), Instant::now()));
        assert_eq!(r.error, Some(GroupError::UnknownMemberId("m1".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn leader_gets_metadata_followers_wait_for_its_assignment() {
        let mut g = Group::new("g", limits());
        let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
        let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
        pass(&mut g, DELAY).await;
        pass(&mut g, DELAY).await;
        let ra = ready(&mut a);
        let rb = ready(&mut b);
        assert_eq!((ra.leader.as_str(), rb.leader.as_str()), ("a", "a"));
        assert_eq!(
            ra.members
                .iter()
                .map(|m| (m.member_id.as_str(), m.metadata.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("a", Bytes::from("meta-range")),
                ("b", Bytes::from("meta-range"))
            ]
        );
        assert!(rb.members.is_empty());
        // The follower syncs first and waits; the leader's assignment completes it.
        let mut sb = later(g.sync(sync_req("b", 1, &[]), Instant::now()));
        pending(&mut sb);
        let sa = answer(g.sync(
            sync_req(
                "a",
                1,
                &[("a", b"\x00\x01A"), ("b", b"\x00\x01B"), ("zz", b"?")],
            ),
            Instant::now(),
        ));
        assert_eq!(sa.assignment, Bytes::from_static(b"\x00\x01A"));
        assert_eq!(ready(&mut sb).assignment, Bytes::from_static(b"\x00\x01B"));
        assert_eq!(g.state(), GroupState::Stable);
        // A member syncing again in Stable gets its assignment at once.
        let again = now(g.sync(sync_req("b", 1, &[]), Instant::now()));
        assert_eq!(again.assignment, Bytes::from_static(b"\x00\x01B"));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_errors() {
        let mut g = stable_pair().await;
        let t = Instant::now();
        assert_eq!(g.heartbeat(&who("a"), 1, t), Ok(()));
        assert_eq!(
            g.heartbeat(&who("a"), 0, t),
            Err(GroupError::IllegalGeneration { got: 0, current: 1 })
        );
        assert_eq!(
            g.heartbeat(&who("nobody"), 1, t),
            Err(GroupError::UnknownMemberId("nobody".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_member_triggers_a_rebalance_and_bumps_the_generation() {
        let mut g = stable_pair().await;
        let mut c = later(g.join(join_req("", &["range"]), "c".into(), Instant::now()));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&who("a"), 1, Instant::now()),
            Err(GroupError::RebalanceInProgress)
        );
        // Syncs and commits of the old generation: rebalance in progress / still allowed.
        assert_eq!(
            now(g.sync(sync_req("a", 1, &[]), Instant::now())).error,
            Some(GroupError::RebalanceInProgress)
        );
        assert_eq!(g.validate_commit(&who("a"), 1, Instant::now()), Ok(()));
        let mut a = later(g.join(join_req("a", &["range"]), "x".into(), Instant::now()));
        pending(&mut c);
        let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
        // Everyone rejoined: no need to wait for the rebalance timeout.
        for rx in [&mut a, &mut b, &mut c] {
            assert_eq!(ready(rx).generation_id, 2);
        }
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        assert_eq!(
            g.validate_commit(&who("a"), 2, Instant::now()),
            Err(GroupError::RebalanceInProgress)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_leader_hands_over_and_remaining_member_rebalances() {
        let mut g = stable_pair().await;
        assert_eq!(g.leave(&who("a"), Instant::now()), Ok(()));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&who("b"), 1, Instant::now()),
            Err(GroupError::RebalanceInProgress)
        );
        let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
        let r = ready(&mut b);
        assert_eq!((r.generation_id, r.leader.as_str()), (2, "b"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(
            g.leave(&who("a"), Instant::now()),
            Err(GroupError::UnknownMemberId("a".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn last_member_leaving_empties_the_group() {
        let mut g = stable_pair().await;
        g.leave(&who("a"), Instant::now()).unwrap();
        g.leave(&who("b"), Instant::now()).unwrap();
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(g.generation(), 2);
        assert_eq!(g.describe().members, vec![]);
        // Admin-style commits are allowed again.
        assert_eq!(
            g.validate_commit(&MemberRef::default(), -1, Instant::now()),
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_session_evicts_the_member() {
        let mut g = stable_pair().await;
        // b keeps heartbeating, a goes silent.
        for _ in 0..3 {
            advance(Duration::from_secs(3)).await;
            g.heartbeat(&who("b"), 1, Instant::now()).unwrap();
            assert!(g.tick(Instant::now()).is_empty());
        }
        let removed = pass(&mut g, Duration::from_secs(1)).await;
        assert_eq!(removed, vec!["a".to_string()]);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&who("b"), 1, Instant::now()),
            Err(GroupError::RebalanceInProgress)
        );
        let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
        assert_eq!(ready(&mut b).leader, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
        let mut g = stable_pair().await;
        let mut c = later(g.join(join_req("", &["range"]), "c".into(), Instant::now()));
        let mut a = later(g.join(join_req("a", &["range"]), "x".into(), Instant::now()));
        // b only heartbeats (told to rejoin, it never does).
        advance(Duration::from_secs(5)).await;
        assert_eq!(
            g.heartbeat(&who("b"), 1, Instant::now()),
            Err(GroupError::RebalanceInProgress)
        );
        let removed = pass(&mut g, Duration::from_millis(REBALANCE_MS as u64 - 5_000)).await;
        assert_eq!(removed, vec!["b".to_string()]);
        let ra = ready(&mut a);
        assert_eq!(ra.generation_id, 2);
        assert_eq!(ra.members.len(), 2);
        assert_eq!(ready(&mut c).generation_id, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn members_that_do_not_sync_are_dropped_at_the_rebalance_timeout() {
        let mut g = Group::new("g", limits());
        let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
        let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
        pass(&mut g, DELAY).await;
        pass(&mut g, DELAY).await;
        ready(&mut a);
        ready(&mut b);
        let _ = answer(g.sync(sync_req("a", 1, &[("a", b"A")]), Instant::now()));
        // b keeps heartbeating but never syncs.
        for _ in 0..9 {
            advance(Duration::from_secs(3)).await;
            g.heartbeat(&who("a"), 1, Instant::now()).unwrap();
            let _ = g.heartbeat(&who("b"), 1, Instant::now());
            g.tick(Instant::now());
        }
        let removed = pass(&mut g, Duration::from_secs(3)).await;
        assert_eq!(removed, vec!["b".to_string()]);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[tokio::test(start_paused = true)]
    async fn protocol_every_member_supports_with_most_votes_wins() {
        let mut g = Group::new("g", limits());
        let mut rxs = [
            later(g.join(
                join_req("", &["range", "roundrobin"]),
                "a".into(),
                Instant::now(),
            )),
            later(g.join(
                join_req("", &["roundrobin", "range"]),
                "b".into(),
                Instant::now(),
            )),
            later(g.join(
                join_req("", &["roundrobin", "sticky", "range"]),
                "c".into(),
                Instant::now(),
            )),
        ];
        let r = now(g.join(join_req("", &["sticky"]), "d".into(), Instant::now()));
        assert_eq!(r.error, Some(GroupError::InconsistentGroupProtocol));
        let mut other_type = join_req("", &["range"]);
        other_type.protocol_type = "connect".into();
        assert_eq!(
            now(g.join(other_type, "e".into(), Instant::now())).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        pass(&mut g, DELAY).await;
        pass(&mut g, DELAY).await;
        let r = ready(&mut rxs[0]);
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
        assert!(r.members.iter().all(|m| m.metadata == "meta-roundrobin"));
    }

    #[tokio::test(start_paused = true)]
    async fn session_timeout_must_be_in_range() {
        let mut g = Group::new("g", limits());
        let mut r = join_req("", &["range"]);
        r.session_timeout_ms = 1_000;
        assert!(matches!(
            now(g.join(r, "a".into(), Instant::now())).error,
            Some(GroupError::InvalidSessionTimeout { got: 1_000, .. })
        ));
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[tokio::test(start_paused = true)]
    async fn static_member_restart_keeps_its_assignment_without_rebalance() {
        let mut g = Group::new("g", limits());
        let mut ja = join_req("", &["range"]);
        ja.group_instance_id = Some("ia".into());
        let mut jb = join_req("", &["range"]);
        jb.group_instance_id = Some("ib".into());
        let mut a = later(g.join(ja.clone(), "a1".into(), Instant::now()));
        let mut b = later(g.join(jb.clone(), "b1".into(), Instant::now()));
        pass(&mut g, DELAY).await;
        pass(&mut g, DELAY).await;
        ready(&mut a);
        ready(&mut b);
        let mut sb = later(g.sync(sync_req("b1", 1, &[]), Instant::now()));
        answer(g.sync(
            sync_req("a1", 1, &[("a1", b"A"), ("b1", b"B")]),
            Instant::now(),
        ));
        ready(&mut sb);
        // b restarts: new member id, same instance id, no rebalance.
        let r = now(g.join(jb, "b2".into(), Instant::now()));
        assert_eq!(
            (r.error, r.generation_id, r.member_id.as_str()),
            (None, 1, "b2")
        );
        assert_eq!(g.state(), GroupState::Stable);
        let mut s = sync_req("b2", 1, &[]);
        s.group_instance_id = Some("ib".into());
        assert_eq!(
            now(g.sync(s, Instant::now())).assignment,
            Bytes::from_static(b"B")
        );
        // The old incarnation is fenced.
        let old = MemberRef {
            member_id: "b1".into(),
            group_instance_id: Some("ib".into()),
        };
        assert_eq!(
            g.heartbeat(&old, 1, Instant::now()),
            Err(GroupError::FencedInstanceId("ib".into()))
        );
        // The leader restarting does not rebalance either: it is answered as a follower (the
        // leader named is its old id) and syncs to get its assignment back.
        let r = now(g.join(ja, "a2".into(), Instant::now()));
        assert_eq!(
            (
                r.error,
                r.generation_id,
                r.member_id.as_str(),
                r.leader.as_str()
            ),
            (None, 1, "a2", "a1")
        );
        assert!(r.members.is_empty());
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.leader(), Some("a2"));
        let mut s = sync_req("a2", 1, &[]);
        s.group_instance_id = Some("ia".into());
        assert_eq!(
            now(g.sync(s, Instant::now())).assignment,
            Bytes::from_static(b"A")
        );
        // Admin removal by instance id: now the group rebalances, led by a2.
        let by_instance = MemberRef {
            member_id: String::new(),
            group_instance_id: Some("ib".into()),
        };
        assert_eq!(g.leave(&by_instance, Instant::now()), Ok(()));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.member_ids(), vec!["a2".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn commits_outside_the_group_protocol_only_while_empty() {
        let mut g = stable_pair().await;
        let admin = MemberRef::default();
        assert_eq!(
            g.validate_commit(&admin, -1, Instant::now()),
            Err(GroupError::UnknownMemberId(String::new()))
        );
        assert_eq!(
            g.validate_commit(&who("a"), 7, Instant::now()),
            Err(GroupError::IllegalGeneration { got: 7, current: 1 })
        );
        assert_eq!(g.validate_commit(&who("a"), 1, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn describe_reports_metadata_only_when_stable() {
        let mut g = Group::new("g", limits());
        let _rx = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
        let d = g.describe();
        assert_eq!(d.state.as_str(), "PreparingRebalance");
        assert_eq!(d.protocol_name, "");
        assert_eq!(d.members[0].metadata, Bytes::new());
        let g = stable_pair().await.describe();
        assert_eq!(
            (g.state.as_str(), g.protocol_type.as_str()),
            ("Stable", "consumer")
        );
        assert_eq!(g.protocol_name, "range");
        assert_eq!(g.members[1].assignment, Bytes::from_static(b"B"));
        assert_eq!(g.members[1].client_host, "/127.0.0.1");
    }

    #[tokio::test(start_paused = true)]
    async fn dead_group_refuses_everything() {
        let mut g = stable_pair().await;
        g.mark_dead();
        assert_eq!(
            g.heartbeat(&who("a"), 1, Instant::now()),
            Err(GroupError::CoordinatorNotAvailable)
        );
        assert_eq!(
            now(g.join(join_req("", &["range"]), "z".into(), Instant::now())).error,
            Some(GroupError::CoordinatorNotAvailable)
        );
    }

    #[test]
    fn state_names_are_kafkas() {
        for (s, n) in [
            (GroupState::Empty, "Empty"),
            (GroupState::Stable, "Stable"),
            (GroupState::PreparingRebalance, "PreparingRebalance"),
            (GroupState::CompletingRebalance, "CompletingRebalance"),
            (GroupState::Dead, "Dead"),
        ] {
            assert_eq!(s.as_str(), n);
            assert_eq!(GroupState::parse(&n.to_lowercase()), Some(s));
        }
        assert_eq!(GroupState::parse("Bogus"), None);
    }
}
