//! InitProducerId (key 22): hands out producer ids. An id is this broker's `node.id` in the
//! top 16 bits and a number from sled's durable id generator below, so ids never repeat
//! across restarts nor between brokers (each broker allocates alone, no round trip to the
//! controller; Kafka uses controller-allocated blocks for the same goal).
//!
//! With a transactional id the transaction coordinator answers (see `txn::coordinator`): the
//! id's producer id with its epoch bumped, an ongoing transaction aborted first.

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
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        return transactional(broker, ctx, &id.0, &req).await;
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
    // (Kafka 3.x).
    if !authz::cluster(ctx, Operation::IdempotentWrite)
        && !authz::any_of_type(ctx, Operation::Write, ResourceType::Topic)
    {
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match allocate(broker) {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
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

/// A new producer id.
fn allocate(broker: &Broker) -> Result<i64, String> {
    broker
        .logs
        .db()
        .generate_id()
        .map(|id| producer_id(broker.config.node_id, id))
        .map_err(|e| e.to_string())
}

/// How long InitProducerId waits for the abort of a previous transaction before answering
/// CONCURRENT_TRANSACTIONS (the client retries).
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// InitProducerId for transactional id `id`: WRITE on it is required.
async fn transactional(
    broker: &Broker,
    ctx: &RequestContext,
    id: &str,
    req: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |error: i16| {
        InitProducerIdResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if !authz::transactional_id(ctx, Operation::Write, id) {
        return fail(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    // v3+ (KIP-360): a producer re-initialising names its current id and epoch.
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let alloc = || allocate(broker);
    match broker
        .txns
        .init_producer_id(id, req.transaction_timeout_ms, expected, &alloc, ABORT_WAIT)
        .await
    {
        Ok((pid, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = %id, error = %e, "InitProducerId refused");
            // PRODUCER_FENCED exists from v4 on.
            fail(e.code_for(ctx.api_version, 4))
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
