//! DescribeGroups (key 15): state, protocol and members of groups. An unknown group is
//! described as Dead with no error, as Kafka does (tools rely on it).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::ResponseError;

use super::errors::{code, group_code};
use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let v = ctx.api_version;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let g = DescribedGroup::default().with_group_id(id.clone());
            if !authz::group(ctx, Operation::Describe, &id.0) {
                return g.with_error_code(code(ResponseError::GroupAuthorizationFailed));
            }
            let g = if v >= 3 && req.include_authorized_operations {
                g.with_authorized_operations(super::authorized_ops::group(ctx, &id.0))
            } else {
                g
            };
            let d = match groups.describe(&id.0) {
                Ok(d) => d,
                Err(e) => return g.with_error_code(group_code(&e)),
            };
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if v >= 4 {
                        member
                            .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                    } else {
                        member
                    }
                })
                .collect();
            g.with_group_state(StrBytes::from_static_str(d.state.as_str()))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol_name))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
