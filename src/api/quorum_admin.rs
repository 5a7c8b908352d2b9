//! The metadata quorum's admin APIs that only the quorum leader can answer: AddRaftVoter
//! (key 80) and RemoveRaftVoter (key 81) here, DescribeQuorum (key 55) in `describe_quorum` —
//! and their forwarding from any broker to the leader.
//!
//! The broker a client reaches authorizes the request (cluster ALTER for the voter changes,
//! cluster DESCRIBE for DescribeQuorum), then either answers it (it is the leader) or
//! forwards it once, as the Kafka request body, over the authenticated inter-broker gRPC
//! `Cluster.QuorumAdmin` call ([`forward`]; signed with the cluster secret, whatever the
//! client listeners' security) to the leader, which answers it from
//! [`answer_forwarded`] — or refuses with NOT_LEADER_OR_FOLLOWER if it no longer leads.
//!
//! Voter changes (`quorum_voters`): AddRaftVoter promotes a broker that already joined the
//! quorum as a learner (every broker outside the voters does, by itself) — DUPLICATE_VOTER if
//! it is a voter, INVALID_REQUEST if it is not a learner, REQUEST_TIMED_OUT if it has not
//! caught up or the change did not commit within the request's timeout. RemoveRaftVoter
//! demotes a voter to learner — VOTER_NOT_FOUND if it is not a voter, INVALID_REQUEST for the
//! last voter or when the voters left alive (heartbeats within `broker.session.timeout.ms`)
//! would not be a majority. The voter directory id and the listeners of the request are not used (raftka
//! has no directory ids; a learner's address is already known from its heartbeat).
//!
//! May depend on: `broker`, `quorum`, `quorum_voters`, `rpc::cluster` (the forwarding call),
//! the codec.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, ApiKey, DescribeQuorumRequest,
    RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::quorum_voters::{self, VoterChangeError};
use crate::raft::NodeId;
use crate::rpc::cluster::ForwardedRequestError;
use crate::security::acl::Operation;

/// DUPLICATE_VOTER (not in the codec's error list).
pub const DUPLICATE_VOTER: i16 = 126;
/// VOTER_NOT_FOUND (not in the codec's error list).
pub const VOTER_NOT_FOUND: i16 = 127;

/// How long a RemoveRaftVoter (which has no timeout field) may wait for its change to commit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra time a forwarded request may take over its own timeout (the hop and the answer).
const FORWARD_SLACK: Duration = Duration::from_secs(5);

/// Kafka's answer to a refused voter change: (error code, message).
fn voter_error(e: &VoterChangeError) -> (i16, String) {
    let c = match e {
        VoterChangeError::NotLeader { .. } => code(ResponseError::NotLeaderOrFollower),
        VoterChangeError::DuplicateVoter(_) => DUPLICATE_VOTER,
        VoterChangeError::VoterNotFound(_) => VOTER_NOT_FOUND,
        VoterChangeError::NotALearner(_)
        | VoterChangeError::LastVoter(_)
        | VoterChangeError::NoQuorum { .. } => code(ResponseError::InvalidRequest),
        VoterChangeError::NotCaughtUp { .. }
        | VoterChangeError::InProgress
        | VoterChangeError::Timeout(_) => code(ResponseError::RequestTimedOut),
        VoterChangeError::Fatal(_) => code(ResponseError::UnknownServerError),
    };
    (c, e.to_string())
}

fn node_id(voter_id: i32) -> Option<NodeId> {
    u64::try_from(voter_id).ok()
}

/// Whether this broker leads the metadata quorum (and so answers quorum admin requests).
pub fn is_quorum_leader(broker: &Broker) -> bool {
    broker
        .metadata
        .quorum()
        .is_some_and(|q| q.is_leader() && q.current_leader() == Some(q.node_id()))
}

/// Sends `req` to the quorum leader over the inter-broker gRPC service and decodes its
/// answer.
pub async fn forward<Req: Encodable, Resp: Decodable>(
    broker: &Broker,
    key: ApiKey,
    version: i16,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, String> {
    let q = broker.metadata.quorum().ok_or("not a cluster member")?;
    let leader = q
        .current_leader()
        .ok_or("no metadata quorum leader known")?;
    let addr = q
        .members()
        .get(&leader)
        .cloned()
        .ok_or_else(|| format!("no gRPC address known for the leader {leader}"))?;
    let mut body = BytesMut::new();
    req.encode(&mut body, version).map_err(|e| e.to_string())?;
    let mut answer = crate::rpc::cluster::forward_quorum_admin(
        q.auth(),
        leader,
        &addr,
        key as i16,
        version,
        body.freeze(),
        timeout,
    )
    .await?;
    Resp::decode(&mut answer, version).map_err(|e| format!("undecodable answer: {e}"))
}

/// Answers a quorum admin request forwarded by another broker (which authorized it): the
/// Kafka response body at the request's version.
pub async fn answer_forwarded(
    broker: &Broker,
    key: i16,
    version: i16,
    mut body: Bytes,
) -> Result<Bytes, ForwardedRequestError> {
    let key = ApiKey::try_from(key).map_err(|_| ForwardedRequestError::UnknownApi(key))?;
    let codec = |e: anyhow::Error| ForwardedRequestError::Codec {
        api: format!("{key:?}"),
        version,
        reason: e.to_string(),
    };
    let mut out = BytesMut::new();
    let encoded = match key {
        ApiKey::DescribeQuorum => {
            check_version(key, version, 0, 2)?;
            DescribeQuorumRequest::decode(&mut body, version).map_err(codec)?;
            super::describe_quorum::leader_answer(broker, version).encode(&mut out, version)
        }
        ApiKey::AddRaftVoter => {
            check_version(key, version, 0, 0)?;
            let req = AddRaftVoterRequest::decode(&mut body, version).map_err(codec)?;
            add_on_leader(broker, &req).await.encode(&mut out, version)
        }
        ApiKey::RemoveRaftVoter => {
            check_version(key, version, 0, 0)?;
            let req = RemoveRaftVoterRequest::decode(&mut body, version).map_err(codec)?;
            remove_on_leader(broker, &req)
                .await
                .encode(&mut out, version)
        }
        other => return Err(ForwardedRequestError::NotQuorumAdmin(format!("{other:?}"))),
    };
    encoded.map_err(codec)?;
    Ok(out.freeze())
}

fn check_version(
    key: ApiKey,
    version: i16,
    min: i16,
    max: i16,
) -> Result<(), ForwardedRequestError> {
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(ForwardedRequestError::UnsupportedVersion {
            api: format!("{key:?}"),
            version,
        })
    }
}

fn add_response(code: i16, message: Option<String>) -> AddRaftVoterResponse {
    AddRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
}

fn remove_response(code: i16, message: Option<String>) -> RemoveRaftVoterResponse {
    RemoveRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
}

fn add_timeout(req: &AddRaftVoterRequest) -> Duration {
    Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).clamp(1, 600_000))
}

async fn add_on_leader(broker: &Broker, req: &AddRaftVoterRequest) -> AddRaftVoterResponse {
    let Some(q) = broker.metadata.quorum() else {
        return add_response(
            code(ResponseError::InvalidRequest),
            Some("a single broker has no metadata quorum to change".into()),
        );
    };
    let Some(id) = node_id(req.voter_id) else {
        return add_response(
            code(ResponseError::InvalidRequest),
            Some(format!("invalid voter id {}", req.voter_id)),
        );
    };
    match quorum_voters::add_voter(q, id, add_timeout(req)).await {
        Ok(_) => add_response(0, None),
        Err(e) => {
            let (c, m) = voter_error(&e);
            add_response(c, Some(m))
        }
    }
}

async fn remove_on_leader(
    broker: &Broker,
    req: &RemoveRaftVoterRequest,
) -> RemoveRaftVoterResponse {
    let Some(q) = broker.metadata.quorum() else {
        return remove_response(
            code(ResponseError::InvalidRequest),
            Some("a single broker has no metadata quorum to change".into()),
        );
    };
    let Some(id) = node_id(req.voter_id) else {
        return remove_response(VOTER_NOT_FOUND, Some(format!("no voter {}", req.voter_id)));
    };
    let live = live_brokers(broker);
    match quorum_voters::remove_voter(q, id, &live, REMOVE_TIMEOUT).await {
        Ok(_) => remove_response(0, None),
        Err(e) => {
            let (c, m) = voter_error(&e);
            remove_response(c, Some(m))
        }
    }
}

/// Brokers whose heartbeat the controller (this broker, the quorum leader) heard within
/// `broker.session.timeout.ms`.
fn live_brokers(broker: &Broker) -> std::collections::BTreeSet<NodeId> {
    let now = crate::clock::monotonic_ms();
    let session = broker.config.session_timeout_ms;
    let Some(heard) = broker.heard_brokers.last_heard() else {
        return Default::default();
    };
    broker
        .metadata
        .image()
        .brokers
        .keys()
        .filter(|b| {
            heard
                .get(*b)
                .is_some_and(|at| now.saturating_sub(*at) < session)
        })
        .filter_map(|b| u64::try_from(*b).ok())
        .collect()
}

fn not_leader_message(broker: &Broker, e: &str) -> String {
    let leader = broker.metadata.quorum().and_then(|q| q.current_leader());
    format!("cannot reach the metadata quorum leader ({leader:?}): {e}")
}

/// Handles an AddRaftVoter (cluster ALTER).
pub async fn handle_add(
    broker: &Broker,
    ctx: &RequestContext,
    req: AddRaftVoterRequest,
) -> AddRaftVoterResponse {
    if !authz::cluster(ctx, Operation::Alter) {
        return add_response(code(ResponseError::ClusterAuthorizationFailed), None);
    }
    if broker.metadata.quorum().is_none() || is_quorum_leader(broker) {
        return add_on_leader(broker, &req).await;
    }
    let timeout = add_timeout(&req) + FORWARD_SLACK;
    match forward(broker, ApiKey::AddRaftVoter, ctx.api_version, &req, timeout).await {
        Ok(r) => r,
        Err(e) => add_response(
            code(ResponseError::NotLeaderOrFollower),
            Some(not_leader_message(broker, &e)),
        ),
    }
}

/// Handles a RemoveRaftVoter (cluster ALTER).
pub async fn handle_remove(
    broker: &Broker,
    ctx: &RequestContext,
    req: RemoveRaftVoterRequest,
) -> RemoveRaftVoterResponse {
    if !authz::cluster(ctx, Operation::Alter) {
        return remove_response(code(ResponseError::ClusterAuthorizationFailed), None);
    }
    if broker.metadata.quorum().is_none() || is_quorum_leader(broker) {
        return remove_on_leader(broker, &req).await;
    }
    let timeout = REMOVE_TIMEOUT + FORWARD_SLACK;
    match forward(
        broker,
        ApiKey::RemoveRaftVoter,
        ctx.api_version,
        &req,
        timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => remove_response(
            code(ResponseError::NotLeaderOrFollower),
            Some(not_leader_message(broker, &e)),
        ),
    }
}
