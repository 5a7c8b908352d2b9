//! SyncGroup (key 14): the leader hands in the assignment; every member gets its own part,
//! byte for byte as the leader sent it. Followers may wait for the leader.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_code_of;
use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::group::SyncRequest;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    if !authz::group(ctx, Operation::Read, &req.group_id.0) {
        return SyncGroupResponse::default().with_error_code(authz::group_denied());
    }
    let v = ctx.api_version;
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = groups.sync(&req.group_id.0, sync).await;
    let resp = SyncGroupResponse::default()
        .with_error_code(group_code_of(&r.error))
        .with_assignment(r.assignment);
    if v >= 5 {
        resp.with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
    } else {
        resp
    }
}
