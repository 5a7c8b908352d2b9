//! The membership check of a transactional offset commit (TxnOffsetCommit, KIP-447), looser
//! than OffsetCommit's as in Kafka: no rebalance check, and a commit without member id or
//! generation (a producer that is not a group member, v0-v2) is accepted in any state.

use super::{Group, GroupError, GroupState, MemberRef};

impl Group {
    /// Checks a TxnOffsetCommit's member and generation (Kafka's `doTxnCommitOffsets`): a
    /// dead group is COORDINATOR_NOT_AVAILABLE, a replaced static member FENCED_INSTANCE_ID,
    /// a named member that is not in the group UNKNOWN_MEMBER_ID, and a generation (>= 0)
    /// that is not the group's ILLEGAL_GENERATION.
    pub fn validate_txn_commit(
        &self,
        who: &MemberRef,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if let Some(instance) = &who.group_instance_id {
            if let Some(current) = self.static_member_id(instance) {
                if current != who.member_id {
                    return Err(GroupError::FencedInstanceId(instance.clone()));
                }
            }
        }
        if !who.member_id.is_empty() && self.member(&who.member_id).is_none() {
            return Err(GroupError::UnknownMemberId(who.member_id.clone()));
        }
        if generation_id >= 0 && generation_id != self.generation {
            return Err(GroupError::IllegalGeneration {
                got: generation_id,
                current: self.generation,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::messages::GroupLimits;

    fn who(member: &str) -> MemberRef {
        MemberRef {
            member_id: member.into(),
            group_instance_id: None,
        }
    }

    #[test]
    fn a_producer_outside_the_group_commits_but_a_stale_member_or_generation_does_not() {
        let g = Group::new(
            "g",
            GroupLimits {
                min_session_timeout_ms: 6_000,
                max_session_timeout_ms: 300_000,
                initial_rebalance_delay: std::time::Duration::from_secs(3),
                max_size: 10,
            },
        );
        // v0-v2 (and producers that are not members): no member id, generation -1.
        assert_eq!(g.validate_txn_commit(&who(""), -1), Ok(()));
        assert_eq!(
            g.validate_txn_commit(&who("gone"), -1),
            Err(GroupError::UnknownMemberId("gone".into()))
        );
        assert_eq!(
            g.validate_txn_commit(&who(""), 3),
            Err(GroupError::IllegalGeneration { got: 3, current: 0 })
        );
    }
}
