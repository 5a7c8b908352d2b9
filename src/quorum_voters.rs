//! Dynamic voters of the metadata quorum (KIP-853's AddRaftVoter and RemoveRaftVoter) as
//! openraft membership changes, run on the quorum leader.
//!
//! - [`add_voter`]: promotes a learner to voter. Every broker that is not a voter joins the
//!   quorum as a learner by itself (its heartbeat to the controller: `MetadataQuorum::
//!   admit_learner`), so adding a voter means starting the broker, then promoting it. The
//!   learner must have replicated the leader's log to within [`MAX_LAG_ENTRIES`] (Kafka refuses
//!   a voter that has not caught up, with REQUEST_TIMED_OUT).
//! - [`remove_voter`]: demotes a voter to learner (a running broker keeps receiving the
//!   metadata; a dead one is never heard from). Removing the last voter is refused, and so is
//!   a removal after which the voters still alive would not be a majority (it could never
//!   commit, and the quorum would stay stuck in the joint configuration).
//!
//! Both go through openraft's joint consensus (old and new voter sets must each have a
//! majority while the change commits), one change at a time; they wait for the change to
//! commit up to the request's timeout.
//!
//! May depend on: `quorum` (the node), openraft. Not on `api` or the network.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use crate::quorum::MetadataQuorum;
use crate::raft::NodeId;

/// How far (in metadata log entries) a learner may trail the leader's log and still be
/// promoted.
pub const MAX_LAG_ENTRIES: u64 = 100;

/// Why a voter change was refused; `api::raft_voters` maps each to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoterChangeError {
    #[error("this broker is not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("broker {0} is already a voter of the metadata quorum")]
    DuplicateVoter(NodeId),
    #[error(
        "broker {0} has not joined the metadata quorum as a learner; start it (a broker outside \
         the voters joins as a learner through its heartbeat) and retry"
    )]
    NotALearner(NodeId),
    #[error(
        "broker {id} has not caught up with the metadata log (replicated up to {matched:?}, \
         leader at {leader_end}); retry once it has"
    )]
    NotCaughtUp {
        id: NodeId,
        matched: Option<u64>,
        leader_end: u64,
    },
    #[error("broker {0} is not a voter of the metadata quorum")]
    VoterNotFound(NodeId),
    #[error("removing broker {0}, the last voter, would leave the metadata quorum without voters")]
    LastVoter(NodeId),
    #[error(
        "removing broker {id} would leave voters {remaining:?} of which only {live:?} are alive: \
         no majority, the change could not commit; remove dead voters first or restart them"
    )]
    NoQuorum {
        id: NodeId,
        remaining: BTreeSet<NodeId>,
        live: BTreeSet<NodeId>,
    },
    #[error("another change of the quorum's voters is in progress; retry when it has committed")]
    InProgress,
    #[error("the change of voters did not commit within {0:?}")]
    Timeout(Duration),
    #[error("the metadata quorum node has stopped: {0}")]
    Fatal(String),
}

/// The current voters and learners, as this (leader) node knows them.
fn membership(q: &MetadataQuorum) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let metrics = q.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    (
        membership.voter_ids().collect(),
        membership.learner_ids().collect(),
    )
}

fn ensure_leader(q: &MetadataQuorum) -> Result<(), VoterChangeError> {
    if q.is_leader() && q.current_leader() == Some(q.node_id()) {
        Ok(())
    } else {
        Err(VoterChangeError::NotLeader {
            leader: q.current_leader(),
        })
    }
}

/// Promotes learner `id` to voter (see the module documentation); returns the new voters.
pub async fn add_voter(
    q: &MetadataQuorum,
    id: NodeId,
    timeout: Duration,
) -> Result<BTreeSet<NodeId>, VoterChangeError> {
    ensure_leader(q)?;
    let (voters, learners) = membership(q);
    if voters.contains(&id) {
        return Err(VoterChangeError::DuplicateVoter(id));
    }
    if !learners.contains(&id) {
        return Err(VoterChangeError::NotALearner(id));
    }
    let (matched, leader_end) = {
        let metrics = q.metrics();
        let m = metrics.borrow();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        (matched, m.last_log_index.unwrap_or(0))
    };
    if matched.is_none_or(|i| i + MAX_LAG_ENTRIES < leader_end) {
        return Err(VoterChangeError::NotCaughtUp {
            id,
            matched,
            leader_end,
        });
    }
    change(q, ChangeMembers::AddVoterIds(BTreeSet::from([id])), timeout).await?;
    tracing::info!(
        broker = id,
        "broker added as a voter of the metadata quorum"
    );
    Ok(membership(q).0)
}

/// Demotes voter `id` to learner (see the module documentation); returns the new voters.
/// `live` are the brokers the caller knows alive (the controller's heartbeat leases): a change
/// after which the live voters would not be a majority is refused, since it could never
/// commit and would leave the quorum stuck in the joint configuration.
pub async fn remove_voter(
    q: &MetadataQuorum,
    id: NodeId,
    live: &BTreeSet<NodeId>,
    timeout: Duration,
) -> Result<BTreeSet<NodeId>, VoterChangeError> {
    ensure_leader(q)?;
    let (voters, _) = membership(q);
    if !voters.contains(&id) {
        return Err(VoterChangeError::VoterNotFound(id));
    }
    if voters.len() == 1 {
        return Err(VoterChangeError::LastVoter(id));
    }
    let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    let alive: BTreeSet<NodeId> = remaining
        .iter()
        .copied()
        .filter(|v| *v == q.node_id() || live.contains(v))
        .collect();
    if alive.len() * 2 <= remaining.len() {
        return Err(VoterChangeError::NoQuorum {
            id,
            remaining,
            live: alive,
        });
    }
    change(
        q,
        ChangeMembers::RemoveVoters(BTreeSet::from([id])),
        timeout,
    )
    .await?;
    tracing::info!(
        broker = id,
        "broker removed from the voters of the metadata quorum"
    );
    Ok(membership(q).0)
}

async fn change(
    q: &MetadataQuorum,
    what: ChangeMembers<NodeId, crate::raft::BrokerNode>,
    timeout: Duration,
) -> Result<(), VoterChangeError> {
    // `retain`: a removed voter stays a learner (a running broker still needs the metadata).
    match tokio::time::timeout(timeout, q.raft().change_membership(what, true)).await {
        Err(_) => Err(VoterChangeError::Timeout(timeout)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(VoterChangeError::NotLeader {
                leader: f.leader_id,
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(match e {
            ChangeMembershipError::InProgress(_) => VoterChangeError::InProgress,
            ChangeMembershipError::EmptyMembership(_) => VoterChangeError::Fatal(e.to_string()),
            ChangeMembershipError::LearnerNotFound(l) => VoterChangeError::NotALearner(l.node_id),
        }),
        Ok(Err(RaftError::Fatal(e))) => Err(VoterChangeError::Fatal(e.to_string())),
    }
}
