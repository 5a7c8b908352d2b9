//! SASL on a connection of a SASL_PLAINTEXT or SASL_SSL listener, as Kafka's
//! SaslServerAuthenticator runs it: before authentication only ApiVersions, SaslHandshake
//! (v0: raw tokens follow; v1: tokens come in SaslAuthenticate) and SaslAuthenticate are
//! served; anything else closes the connection. A failure is answered
//! (UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED) and then the
//! connection is closed. With `connections.max.reauth.ms` the session expires: the client
//! re-authenticates in-band (KIP-368, same principal and mechanism) or is disconnected at its
//! next request.
//!
//! May depend on: `protocol` (headers, response encoding), `security` (mechanisms),
//! `broker` (the SCRAM credentials in the metadata image). Not on sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::api::errors::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};
use crate::broker::Broker;
use crate::protocol::header::{decode_header, peek_header};
use crate::protocol::response::encode_response;
use crate::security::sasl::{Exchange, Progress, SaslSettings};
use crate::security::scram::ScramMechanism;
use crate::security::Principal;

/// What the connection does with a frame.
#[derive(Debug)]
pub enum Verdict {
    /// An ordinary request: dispatch it as this principal.
    Dispatch(Principal),
    /// Send these bytes (a complete frame) and go on.
    Reply(BytesMut),
    /// Send these bytes, then close (a refused handshake or failed authentication).
    ReplyAndClose(BytesMut, String),
    /// Close without an answer.
    Close(String),
}

enum State {
    /// Waiting for SaslHandshake (first login, or a re-authentication).
    Handshake,
    /// Mid-exchange; `raw`: SaslHandshake v0, so tokens arrive without Kafka headers.
    Exchange {
        exchange: Exchange,
        mechanism: String,
        raw: bool,
    },
}

/// The session of one SASL connection.
pub struct SaslGate {
    settings: Arc<SaslSettings>,
    state: State,
    /// Set once authenticated: the principal, its mechanism and when the session expires.
    session: Option<(Principal, String, Option<Instant>)>,
}

/// Largest frame a SASL connection may send before it has authenticated (Kafka's
/// `sasl.server.max.receive.size` default): an anonymous peer cannot make the broker buffer
/// `socket.request.max.bytes`.
pub const MAX_RECEIVE_BEFORE_AUTH: usize = 524_288;

impl SaslGate {
    /// True once a login succeeded (re-authentications keep it true).
    pub fn authenticated(&self) -> bool {
        self.session.is_some()
    }

    pub fn new(settings: Arc<SaslSettings>) -> Self {
        Self {
            settings,
            state: State::Handshake,
            session: None,
        }
    }

    /// Decides what to do with one frame.
    pub fn on_frame(&mut self, mut frame: Bytes, broker: &Broker) -> Verdict {
        if let State::Exchange { raw: true, .. } = self.state {
            return self.raw_token(&frame, broker);
        }
        let Ok(prefix) = peek_header(&frame) else {
            return Verdict::Close("truncated request header".into());
        };
        let key = ApiKey::try_from(prefix.api_key).ok();
        let version = prefix.api_version;
        match (key, &self.state) {
            (Some(ApiKey::SaslHandshake), State::Handshake) if (0..=1).contains(&version) => {
                let Ok(header) = decode_header(ApiKey::SaslHandshake, version, &mut frame) else {
                    return Verdict::Close("bad SaslHandshake header".into());
                };
                let Ok(req) = SaslHandshakeRequest::decode(&mut frame, version) else {
                    return Verdict::Close("bad SaslHandshake request".into());
                };
                let mechanism = req.mechanism.to_string();
                let mechanisms = self
                    .settings
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_string(m.clone()))
                    .collect();
                let exchange = self
                    .settings
                    .enabled(&mechanism)
                    .then(|| Exchange::start(&mechanism))
                    .flatten();
                let same_as_session = self
                    .session
                    .as_ref()
                    .is_none_or(|(_, m, _)| *m == mechanism);
                let (code, next) = match exchange {
                    Some(exchange) if same_as_session => (0, Some(exchange)),
                    _ => (UNSUPPORTED_SASL_MECHANISM, None),
                };
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(mechanisms);
                let Ok(bytes) = encode_response(header.correlation_id, version, &resp) else {
                    return Verdict::Close("cannot encode SaslHandshake response".into());
                };
                match next {
                    Some(exchange) => {
                        self.state = State::Exchange {
                            exchange,
                            mechanism,
                            raw: version == 0,
                        };
                        Verdict::Reply(bytes)
                    }
                    None => Verdict::ReplyAndClose(
                        bytes,
                        format!("SASL mechanism {mechanism} is not enabled (sasl.enabled.mechanisms) or differs from the session's"),
                    ),
                }
            }
            (Some(ApiKey::SaslAuthenticate), State::Exchange { .. })
                if (0..=2).contains(&version) =>
            {
                let Ok(header) = decode_header(ApiKey::SaslAuthenticate, version, &mut frame)
                else {
                    return Verdict::Close("bad SaslAuthenticate header".into());
                };
                let Ok(req) = SaslAuthenticateRequest::decode(&mut frame, version) else {
                    return Verdict::Close("bad SaslAuthenticate request".into());
                };
                let corr = header.correlation_id;
                match self.step(&req.auth_bytes, broker) {
                    Ok((bytes, done)) => {
                        let mut resp =
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes));
                        if done && version >= 1 {
                            resp.session_lifetime_ms = self.settings.max_reauth_ms as i64;
                        }
                        match encode_response(corr, version, &resp) {
                            Ok(b) => Verdict::Reply(b),
                            Err(_) => {
                                Verdict::Close("cannot encode SaslAuthenticate response".into())
                            }
                        }
                    }
                    Err(message) => {
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(SASL_AUTHENTICATION_FAILED)
                            .with_error_message(Some(StrBytes::from_string(message.clone())));
                        match encode_response(corr, version, &resp) {
                            Ok(b) => Verdict::ReplyAndClose(b, message),
                            Err(_) => Verdict::Close(message),
                        }
                    }
                }
            }
            (Some(ApiKey::SaslAuthenticate), State::Handshake) if (0..=2).contains(&version) => {
                let Ok(header) = decode_header(ApiKey::SaslAuthenticate, version, &mut frame)
                else {
                    return Verdict::Close("bad SaslAuthenticate header".into());
                };
                let message = "Unexpected SaslAuthenticate request: SaslHandshake must come first"
                    .to_string();
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(ILLEGAL_SASL_STATE)
                    .with_error_message(Some(StrBytes::from_string(message.clone())));
                match encode_response(header.correlation_id, version, &resp) {
                    Ok(b) => Verdict::ReplyAndClose(b, message),
                    Err(_) => Verdict::Close(message),
                }
            }
            (Some(ApiKey::SaslHandshake), State::Exchange { .. }) if (0..=1).contains(&version) => {
                let Ok(header) = decode_header(ApiKey::SaslHandshake, version, &mut frame) else {
                    return Verdict::Close("bad SaslHandshake header".into());
                };
                let resp = SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE);
                match encode_response(header.correlation_id, version, &resp) {
                    Ok(b) => Verdict::ReplyAndClose(
                        b,
                        "second SaslHandshake during authentication".into(),
                    ),
                    Err(_) => Verdict::Close("second SaslHandshake".into()),
                }
            }
            (Some(ApiKey::ApiVersions), State::Handshake) => Verdict::Dispatch(
                self.session
                    .as_ref()
                    .map(|s| s.0.clone())
                    .unwrap_or_default(),
            ),
            (_, State::Handshake) => match &self.session {
                Some((principal, _, expiry)) => {
                    if expiry.is_some_and(|e| Instant::now() >= e) {
                        Verdict::Close("the SASL session expired (connections.max.reauth.ms) without re-authentication".into())
                    } else {
                        Verdict::Dispatch(principal.clone())
                    }
                }
                None => Verdict::Close(format!(
                    "unexpected request (api key {}) before SASL authentication",
                    prefix.api_key
                )),
            },
            (_, State::Exchange { .. }) => Verdict::Close(format!(
                "unexpected request (api key {}) during SASL authentication",
                prefix.api_key
            )),
        }
    }

    /// A token after SaslHandshake v0: the frame is the token, the answer a bare
    /// size-prefixed token; a failure closes the connection without an answer.
    fn raw_token(&mut self, frame: &[u8], broker: &Broker) -> Verdict {
        match self.step(frame, broker) {
            Ok((bytes, _)) => {
                let mut out = BytesMut::with_capacity(4 + bytes.len());
                out.put_u32(bytes.len() as u32);
                out.extend_from_slice(&bytes);
                Verdict::Reply(out)
            }
            Err(message) => Verdict::Close(message),
        }
    }

    /// Runs the exchange on a token: the reply and whether the client is now authenticated,
    /// or the failure's message.
    fn step(&mut self, token: &[u8], broker: &Broker) -> Result<(Vec<u8>, bool), String> {
        let State::Exchange {
            exchange,
            mechanism,
            ..
        } = &mut self.state
        else {
            return Err("no SASL exchange in progress".into());
        };
        let image = broker.metadata.image();
        let scram = ScramMechanism::from_name(mechanism);
        let progress = exchange
            .step(token, &self.settings, |user| {
                scram.and_then(|m| image.scram_credential(user, m).cloned())
            })
            .map_err(|e| e.to_string())?;
        match progress {
            Progress::Challenge(bytes) => Ok((bytes, false)),
            Progress::Done(principal, bytes) => {
                if let Some((old, _, _)) = &self.session {
                    if *old != principal {
                        return Err(format!(
                            "Cannot change principals during re-authentication from {old}: {principal}"
                        ));
                    }
                }
                let mechanism = mechanism.clone();
                let expiry = (self.settings.max_reauth_ms > 0)
                    .then(|| Instant::now() + Duration::from_millis(self.settings.max_reauth_ms));
                tracing::debug!(%principal, %mechanism, "SASL authentication succeeded");
                self.session = Some((principal, mechanism, expiry));
                self.state = State::Handshake;
                Ok((bytes, true))
            }
        }
    }
}
