//! InitProducerId (key 22): hands out producer ids for idempotent producers. Ids come from
//! sled's durable id generator, so they never repeat across restarts. Transactions are not
//! supported: a transactional id is refused.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::errors::code;
use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
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
            // sled ids start at 0; keep producer ids positive and below i64::MAX.
            .with_producer_id(ProducerId((id as i64 & i64::MAX) + 1))
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
