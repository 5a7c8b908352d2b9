//! Partition reassignment (KIP-455) as partition changes.
//!
//! A reassignment is recorded in the partition itself, as in Kafka's KRaft controller:
//! `replicas` becomes the union of the target and the current replicas (target first),
//! `adding` the target replicas not yet in the replica set, `removing` the current ones not in
//! the target. Adding replicas start as followers outside the ISR, catch up, and join the ISR
//! through the leader's ordinary ISR expansion (`MetadataCommand::AlterPartition`). The
//! change that puts the last adding replica into the ISR also completes the reassignment
//! ([`try_complete`]): the replica set becomes the target, removing replicas leave the ISR,
//! and when the leader is not in the target leadership moves to the first target replica in
//! the ISR that is not fenced (leader epoch + 1). Removed brokers then stop fetching and delete
//! their copy (`cluster::follow_images`). A reassignment that adds nothing completes at once
//! when the ISR keeps a member.
//!
//! Because the ISR only grows by caught-up replicas and the new leader comes from the ISR,
//! every acknowledged (acks=all) record is on the new leader, as in an ordinary election.
//!
//! Kafka's rules kept: a new reassignment of a moving partition replaces the running one
//! (computed from the current, union, replica set); cancelling reverts to the replicas before
//! the move (the union minus the adding replicas) and is refused when none of those is in the
//! ISR (raftka never reverts uncleanly); a target must be non-empty, without duplicates, and
//! name registered brokers (it may change the replication factor).
//!
//! May depend on: `metadata::image` only. Pure functions; the image applies them.

use super::{ClusterImage, MetadataError, PartitionMeta};

/// True when a reassignment of the partition is running.
pub fn in_progress(p: &PartitionMeta) -> bool {
    !p.adding.is_empty() || !p.removing.is_empty()
}

/// The replicas a running reassignment moves to (the whole replica set when none runs).
pub fn target(p: &PartitionMeta) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.removing.contains(r))
        .collect()
}

/// Checks a target replica list as Kafka's controller does.
pub fn validate(target: &[i32], known: &[i32]) -> Result<(), MetadataError> {
    if target.is_empty() {
        return Err(MetadataError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    // Longer than the broker list: it names a broker twice or an unknown one (and a hostile
    // list of any length is refused before the quadratic duplicate check below).
    if target.len() > known.len() {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "The manual partition assignment lists {} replicas, but only {} brokers are \
             registered.",
            target.len(),
            known.len()
        )));
    }
    for (i, b) in target.iter().enumerate() {
        if target[..i].contains(b) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {b} more than once."
            )));
        }
        if !known.contains(b) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {b}, but no such broker is \
                 registered."
            )));
        }
    }
    Ok(())
}

/// Starts (or replaces) a reassignment of `p` to `target`; `known` are the registered
/// brokers, `live` the unfenced ones. Completes at once when nothing has to catch up.
pub fn start(
    _topic: &str,
    p: &mut PartitionMeta,
    target: &[i32],
    known: &[i32],
    live: &[i32],
) -> Result<(), MetadataError> {
    validate(target, known)?;
    let current = p.replicas.clone();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !current.contains(r))
        .collect();
    let removing: Vec<i32> = current
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    p.isr = replicas
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r))
        .collect();
    p.replicas = replicas;
    p.adding = adding;
    p.removing = removing;
    p.partition_epoch += 1;
    try_complete(p, live);
    Ok(())
}

/// Cancels the running reassignment of `p`: back to the replicas before it.
pub fn cancel(topic: &str, p: &mut PartitionMeta, live: &[i32]) -> Result<(), MetadataError> {
    if !in_progress(p) {
        return Err(MetadataError::NoReassignmentInProgress(format!(
            "{topic}-{}",
            p.index
        )));
    }
    let original: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| !p.adding.contains(r))
        .collect();
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| original.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(MetadataError::EligibleLeadersNotAvailable(format!(
            "{topic}-{}: cannot revert the reassignment, no replica of {original:?} is in the \
             ISR {:?}",
            p.index, p.isr
        )));
    }
    let leader = if original.contains(&p.leader) {
        p.leader
    } else {
        match original
            .iter()
            .copied()
            .find(|r| isr.contains(r) && live.contains(r))
        {
            Some(r) => r,
            None => {
                return Err(MetadataError::EligibleLeadersNotAvailable(format!(
                    "{topic}-{}: cannot revert the reassignment, no replica of {original:?} in \
                     the ISR is alive to lead",
                    p.index
                )))
            }
        }
    };
    set_leader(p, leader);
    p.replicas = original;
    p.isr = isr;
    p.adding.clear();
    p.removing.clear();
    p.partition_epoch += 1;
    Ok(())
}

/// Completes the running reassignment of `p` when every adding replica is in the ISR, the ISR
/// keeps a member without the removing replicas, and a target replica can lead. Returns
/// whether it completed.
pub fn try_complete(p: &mut PartitionMeta, live: &[i32]) -> bool {
    if !in_progress(p) || p.adding.iter().any(|r| !p.isr.contains(r)) {
        return false;
    }
    let target = target(p);
    let isr: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r))
        .collect();
    if isr.is_empty() {
        return false;
    }
    let leader = if target.contains(&p.leader) || p.leader < 0 {
        p.leader
    } else {
        match isr.iter().copied().find(|r| live.contains(r)) {
            Some(r) => r,
            None => return false,
        }
    };
    set_leader(p, leader);
    p.replicas = target;
    p.isr = isr;
    p.adding.clear();
    p.removing.clear();
    p.partition_epoch += 1;
    true
}

fn set_leader(p: &mut PartitionMeta, leader: i32) {
    if leader != p.leader {
        p.leader = leader;
        p.leader_epoch += 1;
    }
}

/// The partitions (`topic-index`) of which broker `id` is a replica (also as an adding or
/// removing replica of a running reassignment).
pub fn hosted_by(image: &ClusterImage, id: i32) -> Vec<String> {
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(move |p| p.replicas.contains(&id))
                .map(move |p| format!("{}-{}", t.name, p.index))
        })
        .collect()
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

    const ALL: &[i32] = &[1, 2, 3, 4];

    #[test]
    fn a_move_grows_to_the_union_then_completes_when_the_new_replica_joins_the_isr() {
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 1);
        start("t", &mut p, &[2, 3, 4], ALL, ALL).unwrap();
        assert_eq!(p.replicas, vec![2, 3, 4, 1]);
        assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
        assert_eq!(p.isr, vec![2, 3, 1]);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 5, 10));
        // Not complete while 4 is outside the ISR.
        assert!(!try_complete(&mut p, ALL));
        // 4 joins: the move completes, leadership leaves broker 1 for the first target
        // replica in the ISR, with a new leader epoch.
        p.isr.push(4);
        assert!(try_complete(&mut p, ALL));
        assert_eq!(p.replicas, vec![2, 3, 4]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 6, 11));
        assert!(!in_progress(&p));
    }

    #[test]
    fn a_leader_kept_by_the_target_keeps_its_epoch_and_fenced_brokers_do_not_lead() {
        let mut p = part(&[1], &[1], 1);
        start("t", &mut p, &[2], ALL, ALL).unwrap();
        assert_eq!(p.replicas, vec![2, 1]);
        p.isr = vec![2, 1];
        // Broker 2 is fenced: the move waits rather than leave the partition leaderless.
        assert!(!try_complete(&mut p, &[1, 3, 4]));
        assert!(try_complete(&mut p, ALL));
        assert_eq!(
            (p.replicas.clone(), p.leader, p.leader_epoch),
            (vec![2], 2, 6)
        );
        let mut q = part(&[1, 2], &[1, 2], 1);
        start("t", &mut q, &[1, 3], ALL, ALL).unwrap();
        q.isr.push(3);
        assert!(try_complete(&mut q, ALL));
        assert_eq!(
            (q.replicas.clone(), q.leader, q.leader_epoch),
            (vec![1, 3], 1, 5)
        );
    }

    #[test]
    fn removing_only_or_reordering_completes_at_once() {
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 1);
        start("t", &mut p, &[3, 2], ALL, ALL).unwrap();
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![3, 2], vec![3, 2])
        );
        assert_eq!((p.leader, p.leader_epoch), (3, 6));
        assert!(!in_progress(&p));
        let mut q = part(&[1, 2], &[1, 2], 1);
        start("t", &mut q, &[2, 1], ALL, ALL).unwrap();
        assert_eq!(
            (q.replicas.clone(), q.leader, q.leader_epoch),
            (vec![2, 1], 1, 5)
        );
        assert!(!in_progress(&q));
        // Removing the only in-sync replicas waits for the others to catch up.
        let mut r = part(&[1, 2, 3], &[1], 1);
        start("t", &mut r, &[2, 3], ALL, ALL).unwrap();
        assert!(in_progress(&r));
        assert_eq!(r.leader, 1);
    }

    #[test]
    fn cancel_reverts_and_a_new_target_replaces_a_running_one() {
        let mut p = part(&[1, 2], &[1, 2], 1);
        assert!(matches!(
            cancel("t", &mut p, ALL),
            Err(MetadataError::NoReassignmentInProgress(_))
        ));
        start("t", &mut p, &[3, 4], ALL, ALL).unwrap();
        assert_eq!(p.replicas, vec![3, 4, 1, 2]);
        p.isr.push(3);
        assert!(!try_complete(&mut p, ALL));
        // Replace: [2, 3]; 4 is dropped again, 3 (in the ISR) stays.
        start("t", &mut p, &[2, 3], ALL, ALL).unwrap();
        assert_eq!(p.replicas, vec![2, 3]);
        assert!(!in_progress(&p), "{p:?}");
        assert_eq!(p.leader, 2);
        // Cancel goes back to the replicas before the move.
        let mut q = part(&[1, 2], &[1, 2], 1);
        start("t", &mut q, &[3, 4], ALL, ALL).unwrap();
        q.isr.push(3);
        let epoch = q.partition_epoch;
        cancel("t", &mut q, ALL).unwrap();
        assert_eq!(
            (q.replicas.clone(), q.isr.clone()),
            (vec![1, 2], vec![1, 2])
        );
        assert_eq!((q.leader, q.leader_epoch), (1, 5));
        assert_eq!(q.partition_epoch, epoch + 1);
        assert!(!in_progress(&q));
    }

    #[test]
    fn a_revert_without_an_original_replica_in_the_isr_is_refused() {
        let mut p = part(&[1], &[1], 1);
        start("t", &mut p, &[2, 1], ALL, ALL).unwrap();
        // An ISR of the adding replica only (broker 1 fell out): no clean revert.
        p.isr = vec![2];
        p.leader = 2;
        let before = p.clone();
        assert!(cancel("t", &mut p, ALL).is_err());
        assert_eq!(p, before);
    }

    #[test]
    fn invalid_targets_are_refused() {
        let mut p = part(&[1], &[1], 1);
        let before = p.clone();
        let long: Vec<i32> = (0..100_000).collect();
        for bad in [&[][..], &[2, 2], &[1, 9], &long] {
            assert!(matches!(
                start("t", &mut p, bad, ALL, ALL),
                Err(MetadataError::InvalidReplicaAssignment(_))
            ));
            assert_eq!(p, before);
        }
    }
}
