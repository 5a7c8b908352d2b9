//! JoinGroup: new, known and static members, protocol selection, and the join phase of a
//! rebalance (the initial delay, the rebalance timeout, completing a generation).
//!
//! May depend on: the group state (`super`).

use tokio::time::Instant;

use super::*;

impl Group {
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

    pub(super) fn join_new_member(
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

    pub(super) fn join_known_member(
        &mut self,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResponse> {
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
    pub(super) fn generation_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
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

    pub(super) fn member_metadata(&self) -> Vec<JoinedMember> {
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

    pub(super) fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResponse> {
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

    pub(super) fn update_member(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
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
    pub(super) fn replace_static_member(
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
            // The new member id must survive a coordinator move: persist the group again.
            self.dirty = true;
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

    pub(super) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
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
    pub(super) fn select_protocol(&self) -> String {
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

    pub(super) fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    pub(super) fn maybe_prepare_rebalance(&mut self, now: Instant) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
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

    pub(super) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.join_waiter.is_some())
    }

    pub(super) fn try_complete_join(&mut self, now: Instant) {
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
    pub(super) fn join_deadline_passed(&mut self, now: Instant) {
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

    pub(super) fn complete_join(&mut self, now: Instant) {
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
            self.dirty = true;
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
}
