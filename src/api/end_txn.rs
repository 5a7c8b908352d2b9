//! EndTxn (key 26): a transactional producer commits or aborts its transaction. The
//! coordinator persists PrepareCommit/PrepareAbort before answering; the markers and the
//! Complete state follow in the background (see `txn::coordinator`). WRITE on the
//! transactional id is required.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::security::acl::Operation;
use crate::txn::TxnCoordinator;

pub async fn handle(
    txns: &std::sync::Arc<TxnCoordinator>,
    ctx: &RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let id = req.transactional_id.0.as_str();
    if !authz::transactional_id(ctx, Operation::Write, id) {
        return EndTxnResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    match txns
        .end_txn(id, req.producer_id.0, req.producer_epoch, req.committed)
        .await
    {
        Ok(()) => EndTxnResponse::default(),
        Err(e) => {
            tracing::debug!(transactional_id = %id, error = %e, "EndTxn refused");
            EndTxnResponse::default().with_error_code(e.code_for(ctx.api_version, 2))
        }
    }
}
