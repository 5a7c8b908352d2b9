//! InitProducerId (key 22): hands out producer ids for idempotent producers. An id is this
//! broker's `node.id` in the top 16 bits and a number from sled's durable id generator below,
//! so ids never repeat across restarts nor between brokers (each broker allocates alone, no
//! round trip to the controller; Kafka uses controller-allocated blocks for the same goal).
//! Transactions are not supported: a transactional id is refused.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
    // (Kafka 3.x); transactional ids are refused below whatever the ACLs say.
    if !authz::cluster(broker, ctx, Operation::IdempotentWrite)
        && !authz::any_of_type(broker, ctx, Operation::Write, ResourceType::Topic)
    {
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match broker.logs.db().generate_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id(broker.config.node_id, id)))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            InitProducerIdResponse::default()
                .with_error_code(code(ResponseError::KafkaStorageError))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

/// Combines the broker id (top 16 bits, below the sign bit) and a local counter (48 bits).
fn producer_id(node_id: i32, local: u64) -> i64 {
    let node = (node_id as i64 & 0x7fff) << 48;
    node | ((local as i64 + 1) & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::producer_id;

    #[test]
    fn producer_ids_are_distinct_across_brokers_and_positive() {
        assert_ne!(producer_id(1, 0), producer_id(2, 0));
        assert_ne!(producer_id(1, 0), producer_id(1, 1));
        assert!(producer_id(32767, u64::MAX >> 16) > 0);
        assert!(producer_id(0, 0) > 0);
    }
}
