//! AddPartitionsToTxn (key 24): a transactional producer names the partitions it is about to
//! write, before its first write to each in a transaction. v0-v3 carry one transaction (the
//! producer's request); v4+ a batch of them and `verify_only` (KIP-890, broker to broker:
//! CLUSTER_ACTION is required, as in Kafka).
//!
//! As in Kafka: WRITE on the transactional id (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
//! every partition), WRITE on each topic (TOPIC_AUTHORIZATION_FAILED) and known partitions
//! (UNKNOWN_TOPIC_OR_PARTITION); when any partition fails those checks, nothing is added and
//! the others answer OPERATION_NOT_ATTEMPTED.

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};
use kafka_protocol::ResponseError;

use super::errors::{code, NONE};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.api_version <= 3 {
        let txn = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(req.v3_and_below_transactional_id)
            .with_producer_id(req.v3_and_below_producer_id)
            .with_producer_epoch(req.v3_and_below_producer_epoch)
            .with_topics(req.v3_and_below_topics);
        let result = one(broker, ctx, txn).await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(result.topic_results);
    }
    if !authz::cluster(ctx, Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for txn in req.transactions {
        results.push(one(broker, ctx, txn).await);
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// Every partition of `topics` with the same error.
fn all(topics: &[AddPartitionsToTxnTopic], error: i16) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(error)
                        })
                        .collect(),
                )
        })
        .collect()
}

async fn one(
    broker: &Broker,
    ctx: &RequestContext,
    txn: AddPartitionsToTxnTransaction,
) -> AddPartitionsToTxnResult {
    let id: TransactionalId = txn.transactional_id.clone();
    let result = |topics| {
        AddPartitionsToTxnResult::default()
            .with_transactional_id(id.clone())
            .with_topic_results(topics)
    };
    if !authz::transactional_id(ctx, Operation::Write, &id.0) {
        return result(all(
            &txn.topics,
            code(ResponseError::TransactionalIdAuthorizationFailed),
        ));
    }
    let image = broker.metadata.image();
    let mut failed = false;
    let mut checked = Vec::with_capacity(txn.topics.len());
    let mut parts = Vec::new();
    for t in &txn.topics {
        let name = t.name.0.as_str();
        let writable = authz::topic(ctx, Operation::Write, name);
        let meta = image.topics.get(name);
        let mut errs = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let err = if !writable {
                authz::topic_denied()
            } else if !meta
                .is_some_and(|m| usize::try_from(*p).is_ok_and(|i| i < m.partitions.len()))
            {
                code(ResponseError::UnknownTopicOrPartition)
            } else {
                parts.push((name.to_string(), *p));
                NONE
            };
            failed |= err != NONE;
            errs.push((*p, err));
        }
        checked.push((t.name.clone(), errs));
    }
    let outcome: Result<Vec<i16>, i16> = if failed {
        Err(code(ResponseError::OperationNotAttempted))
    } else if txn.verify_only {
        let mut codes = Vec::with_capacity(parts.len());
        for (topic, p) in &parts {
            codes.push(
                match broker.txns.verify_partition(
                    &id.0,
                    txn.producer_id.0,
                    txn.producer_epoch,
                    topic,
                    *p,
                ) {
                    Ok(true) => NONE,
                    Ok(false) => code(ResponseError::InvalidTxnState),
                    Err(e) => e.code_for(ctx.api_version, 2),
                },
            );
        }
        Ok(codes)
    } else {
        broker
            .txns
            .add_partitions(&id.0, txn.producer_id.0, txn.producer_epoch, &parts)
            .await
            .map(|()| vec![NONE; parts.len()])
            .map_err(|e| {
                tracing::debug!(transactional_id = %id.0, error = %e, "AddPartitionsToTxn refused");
                e.code_for(ctx.api_version, 2)
            })
    };
    let mut verified = outcome.as_ref().ok().map(|c| c.iter().copied());
    let topics = checked
        .into_iter()
        .map(|(name, errs)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(name)
                .with_results_by_partition(
                    errs.into_iter()
                        .map(|(p, err)| {
                            let e = match (&outcome, err) {
                                (_, e) if e != NONE => e,
                                (Err(e), _) => *e,
                                (Ok(_), _) => {
                                    verified.as_mut().and_then(|v| v.next()).unwrap_or(NONE)
                                }
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    result(topics)
}
