//! AddOffsetsToTxn (key 25): a transactional producer is about to commit a group's offsets in
//! its transaction (TxnOffsetCommit follows): the group's `__consumer_offsets` partition joins
//! the transaction, so the commit or abort marker reaches the group coordinator too.
//!
//! WRITE on the transactional id and READ on the group are required, as in Kafka.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::offsets_topic::OFFSETS_TOPIC;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.as_str();
    let group = req.group_id.0.as_str();
    let fail = |e: ResponseError| AddOffsetsToTxnResponse::default().with_error_code(code(e));
    if !authz::transactional_id(ctx, Operation::Write, id) {
        return fail(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !authz::group(ctx, Operation::Read, group) {
        return fail(ResponseError::GroupAuthorizationFailed);
    }
    // In a cluster the offsets topic holds the group's commits (created by the first
    // FindCoordinator, which the client has sent already); a single broker keeps offsets
    // without it, and its partition count is the configured one.
    let partitions = if broker.metadata.quorum().is_some() {
        match broker.topics.ensure_offsets_topic().await {
            Ok(t) => t.partitions.len(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot create the offsets topic yet");
                return fail(ResponseError::CoordinatorNotAvailable);
            }
        }
    } else {
        broker.config.offsets_topic_num_partitions.max(1) as usize
    };
    let p = crate::offsets_topic::partition_for(group, partitions);
    match broker
        .txns
        .add_partitions(
            id,
            req.producer_id.0,
            req.producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), p)],
        )
        .await
    {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(e) => {
            tracing::debug!(transactional_id = %id, error = %e, "AddOffsetsToTxn refused");
            AddOffsetsToTxnResponse::default().with_error_code(e.code_for(ctx.api_version, 2))
        }
    }
}
