//! ListTransactions (key 66): the transactional ids this broker coordinates (the
//! `__transaction_state` partitions it leads), filtered by state, producer id and (v1) by how
//! long the transaction has been running, as `kafka-transactions.sh list` asks every broker.
//! Ids the principal may not DESCRIBE are left out, as in Kafka.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{authz, RequestContext};
use crate::security::acl::Operation;
use crate::txn::state::TxnState;
use crate::txn::TxnCoordinator;

pub async fn handle(
    txns: &TxnCoordinator,
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for s in &req.state_filters {
        match TxnState::parse(s.as_str()) {
            Some(st) => states.push(st),
            None => unknown.push(s.clone()),
        }
    }
    let now = crate::txn::coordinator::now_ms();
    let min_duration = if ctx.api_version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let listed = txns
        .list()
        .into_iter()
        .filter(|t| states.is_empty() || states.contains(&t.state))
        .filter(|t| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(t.producer_id))
        })
        .filter(|t| min_duration < 0 || (t.start_ms >= 0 && now - t.start_ms >= min_duration))
        .filter(|t| authz::transactional_id(ctx, Operation::Describe, &t.transactional_id))
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
