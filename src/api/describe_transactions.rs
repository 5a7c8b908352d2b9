//! DescribeTransactions (key 65): the coordinator's state of transactional ids (state,
//! producer id and epoch, timeout, start time, partitions), as `kafka-transactions.sh
//! describe` shows it. Sent to the id's coordinator: other brokers answer NOT_COORDINATOR.
//! DESCRIBE on the id is required; topics the principal may not DESCRIBE are left out.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::security::acl::Operation;
use crate::txn::TxnCoordinator;

pub async fn handle(
    txns: &TxnCoordinator,
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let base = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if !authz::transactional_id(ctx, Operation::Describe, &id.0) {
            out.push(base.with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed)));
            continue;
        }
        match txns.describe(&id.0) {
            Ok(m) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (t, p) in &m.partitions {
                    if !authz::topic(ctx, Operation::Describe, t) {
                        continue;
                    }
                    match topics.last_mut() {
                        Some(last) if last.topic.0.as_str() == t => last.partitions.push(*p),
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(t.clone())))
                                .with_partitions(vec![*p]),
                        ),
                    }
                }
                out.push(
                    base.with_transaction_state(StrBytes::from_static_str(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics),
                );
            }
            Err(e) => out.push(base.with_error_code(e.kafka().code())),
        }
    }
    DescribeTransactionsResponse::default().with_transaction_states(out)
}
