//! DeleteGroups (key 42): deletes Empty groups and their committed offsets; groups with
//! members answer NON_EMPTY_GROUP, unknown ones GROUP_ID_NOT_FOUND.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::errors::{group_code, NONE};
use super::{authz, RequestContext};
use crate::group::GroupCoordinator;
use crate::security::acl::Operation;

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    // Groups the principal may not DELETE are answered GROUP_AUTHORIZATION_FAILED; the others
    // are deleted.
    let (allowed, denied): (Vec<_>, Vec<_>) = req
        .groups_names
        .into_iter()
        .partition(|g| authz::group(ctx, Operation::Delete, &g.0));
    let ids: Vec<String> = allowed.iter().map(|g| g.0.to_string()).collect();
    let results = groups.delete_groups(&ids).await;
    let denied = denied.into_iter().map(|id| {
        DeletableGroupResult::default()
            .with_group_id(id)
            .with_error_code(authz::group_denied())
    });
    DeleteGroupsResponse::default().with_results(
        allowed
            .into_iter()
            .zip(results)
            .map(|(id, r)| {
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(r.as_ref().err().map_or(NONE, group_code))
            })
            .chain(denied)
            .collect(),
    )
}
