//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::errors::{group_code, NONE};
use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::group::MemberRef;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    if !authz::group(ctx, Operation::Read, &req.group_id.0) {
        return HeartbeatResponse::default().with_error_code(authz::group_denied());
    }
    let who = MemberRef {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
    };
    let error = match groups.heartbeat(&req.group_id.0, &who, req.generation_id) {
        Ok(()) => NONE,
        Err(e) => group_code(&e),
    };
    HeartbeatResponse::default().with_error_code(error)
}
