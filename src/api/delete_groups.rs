//! DeleteGroups (key 42): deletes Empty groups and their committed offsets; groups with
//! members answer NON_EMPTY_GROUP, unknown ones GROUP_ID_NOT_FOUND.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::errors::{group_code, NONE};
use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let results = broker.groups.delete_groups(&ids).await;
    DeleteGroupsResponse::default().with_results(
        req.groups_names
            .into_iter()
            .zip(results)
            .map(|(id, r)| {
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(r.as_ref().err().map_or(NONE, group_code))
            })
            .collect(),
    )
}
