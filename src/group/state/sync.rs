//! SyncGroup: membership checks, the leader's assignment handed to every member, and the
//! members waiting for it.
//!
//! May depend on: the group state (`super`).

use tokio::time::Instant;

use super::*;

impl Group {
    /// Checks that `who` is a current member (and not a fenced static member).
    pub(super) fn validate_member(&self, who: &MemberRef) -> Result<(), GroupError> {
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

    pub(super) fn touch(&mut self, member_id: &str, now: Instant) {
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

    pub(super) fn synced(&mut self, id: &str, now: Instant) {
        self.touch(id, now);
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    pub(super) fn sync_response(&self, id: &str) -> SyncResponse {
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
    pub(super) fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for m in &mut self.members {
            m.assignment = by_member.remove(&m.id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        self.dirty = true;
        let waiting: Vec<(oneshot::Sender<SyncResponse>, String)> = self
            .members
            .iter_mut()
            .filter_map(|m| m.sync_waiter.take().map(|tx| (tx, m.id.clone())))
            .collect();
        for (tx, id) in waiting {
            let _ = tx.send(self.sync_response(&id));
        }
    }
}
