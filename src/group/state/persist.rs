//! A group as its metadata record stores it ([`Group::take_dirty`], [`Group::snapshot`]) and
//! a group taken over from one ([`Group::restore`]): Stable with the record's generation,
//! protocol, leader, members and assignments, each member's session starting anew at the
//! takeover (or Empty with its generation when the record has no members).
//!
//! May depend on: the group state (`super`), `group::group_records`.

use tokio::time::Instant;

use super::*;
use crate::group::group_records::{GroupSnapshot, MemberSnapshot};

use crate::clock::unix_ms as now_ms;

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Group {
    /// The group's record if one is due (a rebalance completed, the group emptied, a static
    /// member was replaced) since the last call; marks it written.
    pub fn take_dirty(&mut self) -> Option<GroupSnapshot> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        // Only Stable and Empty groups are persisted, as in Kafka; a group that moved on
        // (another rebalance began) is persisted when that one completes.
        if !matches!(self.state, GroupState::Stable | GroupState::Empty) {
            return None;
        }
        self.persisted = true;
        Some(self.snapshot())
    }

    /// Whether a metadata record of this group was written or loaded (its deletion needs a
    /// tombstone).
    pub fn persisted(&self) -> bool {
        self.persisted
    }

    /// The group as its metadata record stores it.
    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol_name.clone();
        GroupSnapshot {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: now_ms(),
            members: self
                .members
                .iter()
                .map(|m| MemberSnapshot {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: ms(m.rebalance_timeout),
                    session_timeout_ms: ms(m.session_timeout),
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group taken over from its metadata record at `now` (see the module documentation).
    pub fn restore(
        id: impl Into<String>,
        limits: GroupLimits,
        s: GroupSnapshot,
        now: Instant,
    ) -> Self {
        let mut g = Group::new(id, limits);
        g.generation = s.generation;
        g.protocol_type = (!s.protocol_type.is_empty()).then_some(s.protocol_type);
        g.persisted = true;
        let protocol = s.protocol.filter(|p| !p.is_empty());
        g.members = s
            .members
            .into_iter()
            .map(|m| Member {
                id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: millis(m.session_timeout_ms),
                rebalance_timeout: millis(m.rebalance_timeout_ms),
                protocols: protocol
                    .iter()
                    .map(|p| Protocol {
                        name: p.clone(),
                        metadata: m.subscription.clone(),
                    })
                    .collect(),
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
                expires: now + millis(m.session_timeout_ms),
            })
            .collect();
        if g.members.is_empty() || protocol.is_none() {
            // Nothing to take over but the generation (Kafka loads such a group as Empty).
            g.members.clear();
            g.state = GroupState::Empty;
            return g;
        }
        g.protocol_name = protocol;
        g.leader = s
            .leader
            .filter(|l| g.member(l).is_some())
            .or_else(|| g.members.first().map(|m| m.id.clone()));
        g.state = GroupState::Stable;
        g
    }
}
