//! Leader elections asked for by an administrator (Kafka's ElectLeaders, KIP-460), as
//! Kafka's controller decides them: a *preferred* election moves leadership to the first
//! replica when it is alive and in the ISR; an *unclean* election gives a leaderless
//! partition a leader — from the ISR when any member is alive, else the first alive replica
//! outside it, which then forms the ISR alone (records it lacks are lost, which is what
//! "unclean" means).
//!
//! Pure functions of a partition and the set of live brokers; `ClusterImage::apply` runs them
//! when the `ElectLeader` command is applied, so every broker decides the same.
//!
//! May depend on: `metadata::image` types. Nothing else.

use serde::{Deserialize, Serialize};

use super::{MetadataError, PartitionMeta};

/// Kafka's `ElectionType` (0 = preferred, 1 = unclean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    /// The type a request's `election_type` byte names; `None` for values Kafka does not know.
    pub fn from_wire(v: i8) -> Option<Self> {
        match v {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Whether an election of `kind` would change anything: Kafka answers ELECTION_NOT_NEEDED
/// when the preferred replica already leads (preferred) or the partition has a leader
/// (unclean).
pub fn needed(p: &PartitionMeta, kind: ElectionType) -> bool {
    match kind {
        ElectionType::Preferred => p.replicas.first() != Some(&p.leader),
        ElectionType::Unclean => p.leader < 0,
    }
}

/// Elects a leader for `p` (`name` only labels errors); on success the leader and partition
/// epochs grow by one. `alive(b)`: broker `b` is registered and unfenced.
pub fn elect(
    name: &str,
    p: &mut PartitionMeta,
    kind: ElectionType,
    alive: impl Fn(i32) -> bool,
) -> Result<(), MetadataError> {
    if !needed(p, kind) {
        return Err(MetadataError::ElectionNotNeeded(format!(
            "{name}-{}: leader {} is already the {}",
            p.index,
            p.leader,
            match kind {
                ElectionType::Preferred => "preferred replica",
                ElectionType::Unclean => "elected leader",
            }
        )));
    }
    let (leader, isr) = match kind {
        ElectionType::Preferred => {
            let Some(&preferred) = p.replicas.first() else {
                return Err(MetadataError::PreferredLeaderNotAvailable(format!(
                    "{name}-{}: the partition has no replicas",
                    p.index
                )));
            };
            if !p.isr.contains(&preferred) || !alive(preferred) {
                return Err(MetadataError::PreferredLeaderNotAvailable(format!(
                    "{name}-{}: preferred replica {preferred} is {}",
                    p.index,
                    if alive(preferred) {
                        "not in the ISR"
                    } else {
                        "not alive"
                    }
                )));
            }
            (preferred, p.isr.clone())
        }
        ElectionType::Unclean => {
            let clean = p
                .replicas
                .iter()
                .copied()
                .find(|r| p.isr.contains(r) && alive(*r));
            match clean {
                Some(r) => (r, p.isr.clone()),
                None => match p.replicas.iter().copied().find(|r| alive(*r)) {
                    Some(r) => (r, vec![r]),
                    None => {
                        return Err(MetadataError::EligibleLeadersNotAvailable(format!(
                            "{name}-{}: none of the replicas {:?} is alive",
                            p.index, p.replicas
                        )))
                    }
                },
            }
        }
    };
    p.leader = leader;
    p.isr = isr;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionMeta {
        PartitionMeta {
            index: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    #[test]
    fn preferred_election_needs_the_preferred_replica_alive_and_in_sync() {
        let all = |_| true;
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 1);
        assert!(matches!(
            elect("t", &mut p, ElectionType::Preferred, all),
            Err(MetadataError::ElectionNotNeeded(_))
        ));
        let mut p = part(&[1, 2, 3], &[2, 3], 2);
        assert!(matches!(
            elect("t", &mut p, ElectionType::Preferred, all),
            Err(MetadataError::PreferredLeaderNotAvailable(_))
        ));
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 2);
        assert!(matches!(
            elect("t", &mut p, ElectionType::Preferred, |b| b != 1),
            Err(MetadataError::PreferredLeaderNotAvailable(_))
        ));
        elect("t", &mut p, ElectionType::Preferred, all).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 6, 10));
        assert_eq!(p.isr, vec![1, 2, 3]);
    }

    #[test]
    fn unclean_election_prefers_the_isr_and_only_then_leaves_it() {
        // A partition with a leader needs no election.
        let mut p = part(&[1, 2, 3], &[1], 1);
        assert!(matches!(
            elect("t", &mut p, ElectionType::Unclean, |_| true),
            Err(MetadataError::ElectionNotNeeded(_))
        ));
        // An alive ISR member wins over earlier replicas outside the ISR.
        let mut p = part(&[1, 2, 3], &[3], -1);
        elect("t", &mut p, ElectionType::Unclean, |_| true).unwrap();
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (3, vec![3], 6));
        // No ISR member alive: the first alive replica leads and is the ISR alone.
        let mut p = part(&[1, 2, 3], &[3], -1);
        elect("t", &mut p, ElectionType::Unclean, |b| b == 2).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        // Nobody alive.
        let mut p = part(&[1, 2, 3], &[3], -1);
        let before = p.clone();
        assert!(matches!(
            elect("t", &mut p, ElectionType::Unclean, |_| false),
            Err(MetadataError::EligibleLeadersNotAvailable(_))
        ));
        assert_eq!(p, before);
    }
}
