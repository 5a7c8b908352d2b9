//! ListGroups (key 16): the groups this broker coordinates, optionally filtered by state
//! (v4+, names compared case-insensitively) and by type (v5+, KIP-848: every group here is a
//! `classic` group, so a filter without `classic` matches nothing).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::group::GroupState;
use crate::security::acl::Operation;

/// The type of every group raftka coordinates (Kafka's `GroupType.CLASSIC`).
const CLASSIC: &str = "classic";

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let v = ctx.api_version;
    let filter: Vec<GroupState> = req
        .states_filter
        .iter()
        .filter_map(|s| GroupState::parse(s))
        .collect();
    // A filter naming only unknown states matches nothing (not everything).
    if !req.states_filter.is_empty() && filter.is_empty() {
        return ListGroupsResponse::default();
    }
    if v >= 5
        && !req.types_filter.is_empty()
        && !req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(CLASSIC))
    {
        return ListGroupsResponse::default();
    }
    // DESCRIBE on the cluster lists every group; otherwise those the principal may DESCRIBE.
    let all = authz::cluster(ctx, Operation::Describe);
    let groups = groups
        .list(&filter)
        .into_iter()
        .filter(|g| all || authz::group(ctx, Operation::Describe, &g.group_id))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if v >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state.as_str()))
            } else {
                listed
            };
            if v >= 5 {
                listed.with_group_type(StrBytes::from_static_str(CLASSIC))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
