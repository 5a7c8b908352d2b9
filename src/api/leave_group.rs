//! LeaveGroup (key 13): one member (v0-2) or a batch identified by member id or
//! `group.instance.id` (v3+) leaves; the group rebalances without waiting for a timeout.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::{group_code, NONE};
use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::group::MemberRef;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if !authz::group(ctx, Operation::Read, &req.group_id.0) {
        return LeaveGroupResponse::default().with_error_code(authz::group_denied());
    }
    let v = ctx.api_version;
    let members: Vec<MemberRef> = if v >= 3 {
        req.members
            .into_iter()
            .map(|m| MemberRef {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![MemberRef {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let results = match groups.leave(&req.group_id.0, &members) {
        Ok(r) => r,
        Err(e) => return LeaveGroupResponse::default().with_error_code(group_code(&e)),
    };
    let code_of = |r: &Result<(), _>| r.as_ref().err().map_or(NONE, group_code);
    if v < 3 {
        // One member: its error is the response's error.
        let error = results.first().map_or(NONE, code_of);
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let responses = members
        .into_iter()
        .zip(&results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                .with_error_code(code_of(r))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
