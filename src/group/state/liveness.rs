//! Keeping members alive and letting them go: Heartbeat, LeaveGroup, the membership check
//! of offset commits, and the timers (sessions, lapsed member ids, join and sync deadlines).
//!
//! May depend on: the group state (`super`).

use tokio::time::Instant;

use super::*;

impl Group {
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

    pub(super) fn remove_member(&mut self, id: &str, now: Instant) {
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
}
