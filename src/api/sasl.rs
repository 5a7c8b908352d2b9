//! SaslHandshake (key 17) and SaslAuthenticate (key 36) outside an authentication: on a
//! listener without SASL, or after a SASL connection has authenticated and is not
//! re-authenticating, Kafka answers ILLEGAL_SASL_STATE. The exchange itself runs in the
//! connection layer (`server::auth`), before requests reach this router.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::ILLEGAL_SASL_STATE;
use super::RequestContext;
use crate::broker::Broker;

pub async fn handshake(
    _broker: &Broker,
    _ctx: &RequestContext,
    _req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE)
}

pub async fn authenticate(
    _broker: &Broker,
    _ctx: &RequestContext,
    _req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "SASL authentication is not expected here: the listener has no SASL, or the connection is already authenticated",
        )))
}
