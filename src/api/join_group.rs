//! JoinGroup (key 11): a member joins (or rejoins) a group and, once the join phase ends,
//! learns the generation, the chosen protocol and the leader; the leader also gets every
//! member's metadata. The response may wait for other members (up to the rebalance timeout).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_code_of;
use super::{authz, RequestContext};
use crate::group::state::Protocol;
use crate::group::GroupCoordinator;
use crate::group::JoinRequest;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    if !authz::group(ctx, Operation::Read, &req.group_id.0) {
        return JoinGroupResponse::default().with_error_code(authz::group_denied());
    }
    let v = ctx.api_version;
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout bounds the join phase.
        rebalance_timeout_ms: if v == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: v >= 4,
    };
    let r = groups.join(&req.group_id.0, join).await;
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_metadata(m.metadata);
            if v >= 5 {
                member.with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
            } else {
                member
            }
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(group_code_of(&r.error))
        .with_generation_id(r.generation_id)
        .with_protocol_type(if v >= 7 {
            r.protocol_type.map(StrBytes::from_string)
        } else {
            None
        })
        // Nullable from v7; before that an empty string stands for "none".
        .with_protocol_name(match r.protocol_name {
            Some(n) => Some(StrBytes::from_string(n)),
            None if v >= 7 => None,
            None => Some(StrBytes::default()),
        })
        .with_leader(StrBytes::from_string(r.leader))
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(members)
}
