//! Authentication of the inter-broker gRPC port: the cluster secret
//! (`inter.broker.secret`) and, with `security.inter.broker.protocol=SSL`, the broker
//! certificate of the connection (see [`super::tls`]); either or both.
//!
//! Every call carries, in the `x-raftka-auth` metadata entry, a token
//! `<node id>.<unix ms>.<nonce>.<mac>` where `mac` is HMAC-SHA256 with the secret over the
//! sending node id, the RPC's name, the time and the nonce. The receiver recomputes it
//! (constant-time comparison), accepts times within [`MAX_SKEW`] of its own clock, and
//! refuses a nonce it has seen in that window (a replayed token). The node id proven this way
//! is what the services compare with the ids a request names (a heartbeat for broker 3 only
//! from broker 3): a plain id field is never trusted on its own.
//!
//! With mutual TLS, the connection's certificate proves the caller's broker id (the
//! [`PeerBroker`] the TLS layer attached to the request); with both, the token must name the
//! same broker as the certificate. With neither, [`RpcAuth::verify`] accepts every call and
//! proves no identity (the laptop default; the broker warns at startup). The secret alone
//! signs no request body and encrypts nothing: someone who can alter traffic between brokers
//! is stopped only by TLS.
//!
//! May depend on: tonic, hmac/sha2, [`super::tls`]. Nothing else in the crate.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::{Request, Status};

use super::tls::{InterBrokerTls, PeerBroker};

/// The metadata entry holding the token.
pub const HEADER: &str = "x-raftka-auth";

/// How far a token's time may be from the receiver's clock (brokers' clocks must agree this
/// well, e.g. through NTP).
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Most nonces remembered for replay detection; beyond it the oldest are forgotten early
/// (bounded memory under any load, ~40 bytes each).
const MAX_REMEMBERED: usize = 1_000_000;

/// The names the token binds: one per RPC.
pub mod method {
    pub const APPEND_ENTRIES: &str = "raft.AppendEntries";
    pub const VOTE: &str = "raft.Vote";
    pub const INSTALL_SNAPSHOT: &str = "raft.InstallSnapshot";
    pub const CLIENT_WRITE: &str = "raft.ClientWrite";
    pub const HEARTBEAT: &str = "cluster.Heartbeat";
    pub const REPLICA_FETCH: &str = "cluster.ReplicaFetch";
    pub const QUORUM_ADMIN: &str = "cluster.QuorumAdmin";
    pub const WRITE_TXN_MARKERS: &str = "cluster.WriteTxnMarkers";
    pub const VERIFY_TXN_PARTITIONS: &str = "cluster.VerifyTxnPartitions";
}

/// Signs outgoing calls of one broker and verifies incoming ones.
pub struct RpcAuth {
    /// This broker's node id (the identity its tokens claim).
    node_id: u64,
    secret: Option<Vec<u8>>,
    /// Mutual TLS between brokers (`security.inter.broker.protocol=SSL`).
    tls: Option<Arc<InterBrokerTls>>,
    replay: Mutex<Replay>,
    /// When a refusal was last logged (unix ms), to log at most one a second.
    last_warn_ms: AtomicU64,
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcAuth")
            .field("node_id", &self.node_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Nonces seen recently, in arrival order for expiry.
#[derive(Default)]
struct Replay {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<(u64, [u8; 16])>,
}

impl Replay {
    /// Records `nonce` at `now_ms`; false when it was seen within the window.
    fn fresh(&mut self, nonce: [u8; 16], now_ms: u64) -> bool {
        // A token is acceptable for at most 2·MAX_SKEW after it arrives first.
        let keep = 2 * MAX_SKEW.as_millis() as u64;
        while let Some((at, n)) = self.order.front().copied() {
            if now_ms.saturating_sub(at) <= keep && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&n);
        }
        if !self.seen.insert(nonce) {
            return false;
        }
        self.order.push_back((now_ms, nonce));
        true
    }
}

/// Why a call was refused (UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no {HEADER} token: this cluster requires inter.broker.secret on every broker")]
    Missing,
    #[error("malformed {HEADER} token")]
    Malformed,
    #[error("the token's signature does not match (a different inter.broker.secret?)")]
    BadSignature,
    #[error("the token's time is {0} ms away from this broker's clock (at most 30 s allowed)")]
    Skew(i64),
    #[error("the token was used before (a replayed call)")]
    Replayed,
}

/// The wall clock in milliseconds (tokens carry wall-clock times: brokers compare them).
fn now_ms() -> u64 {
    crate::clock::unix_ms().max(0) as u64
}

fn mac(secret: &[u8], node: u64, method: &str, ts: u64, nonce: &[u8; 16]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(b"raftka-rpc-v1\0");
    m.update(&node.to_be_bytes());
    m.update(method.as_bytes());
    m.update(b"\0");
    m.update(&ts.to_be_bytes());
    m.update(nonce);
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl RpcAuth {
    /// The signer/verifier of broker `node_id`; `secret` `None`: no authentication.
    pub fn new(node_id: u64, secret: Option<Vec<u8>>) -> Self {
        Self {
            node_id,
            secret,
            tls: None,
            replay: Mutex::new(Replay::default()),
            last_warn_ms: AtomicU64::new(0),
        }
    }

    /// Also requires (and, as a client, uses) mutual TLS with `tls`.
    pub fn with_tls(mut self, tls: Arc<InterBrokerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether calls are authenticated (by the secret, a certificate, or both).
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.tls.is_some()
    }

    /// Whether the cluster secret is set.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// The mutual TLS of the inter-broker port, when on.
    pub fn tls(&self) -> Option<&Arc<InterBrokerTls>> {
        self.tls.as_ref()
    }

    /// A token for a call of `method` by this broker, made now.
    pub fn token(&self, method: &str) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let ts = now_ms();
        let nonce: [u8; 16] = rand::random();
        let m = mac(secret, self.node_id, method, ts, &nonce);
        Some(format!(
            "{}.{ts}.{}.{}",
            self.node_id,
            hex(&nonce),
            hex(&m.finalize().into_bytes())
        ))
    }

    /// Adds this broker's token for `method` to an outgoing request (nothing without a
    /// secret).
    pub fn sign<T>(&self, req: &mut Request<T>, method: &str) {
        if let Some(t) = self.token(method) {
            if let Ok(v) = t.parse() {
                req.metadata_mut().insert(HEADER, v);
            }
        }
    }

    /// Checks the token of an incoming call of `method`: `Ok(Some(node))` with the node id it
    /// proves, `Ok(None)` when no secret is configured (nothing proven), UNAUTHENTICATED
    /// otherwise.
    ///
    /// With mutual TLS the node is the one the connection's certificate names; with a secret
    /// as well, the token must name that same node (PERMISSION_DENIED otherwise).
    pub fn verify<T>(&self, req: &Request<T>, method: &str) -> Result<Option<u64>, Status> {
        let certified = match &self.tls {
            None => None,
            Some(_) => match req.extensions().get::<PeerBroker>() {
                Some(p) => Some(p.node),
                None => {
                    // Only a connection that skipped the TLS layer gets here (a bug, never a
                    // client: the listener speaks nothing but TLS).
                    return Err(Status::unauthenticated(format!(
                        "broker {} refuses {method}: no broker certificate on the connection",
                        self.node_id
                    )));
                }
            },
        };
        let signed = match &self.secret {
            None => None,
            Some(secret) => {
                let token = req.metadata().get(HEADER).and_then(|v| v.to_str().ok());
                Some(self.check(secret, token, method).map_err(|e| {
                    self.warn_refusal(method, &e);
                    Status::unauthenticated(format!(
                        "broker {} refuses {method}: {e}",
                        self.node_id
                    ))
                })?)
            }
        };
        match (certified, signed) {
            (Some(c), Some(s)) if c != s => Err(Status::permission_denied(format!(
                "broker {} refuses {method}: the connection's certificate names broker {c} but                  the token broker {s}",
                self.node_id
            ))),
            (c, s) => Ok(c.or(s)),
        }
    }

    fn check(&self, secret: &[u8], token: Option<&str>, method: &str) -> Result<u64, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let mut parts = token.split('.');
        let (Some(node), Some(ts), Some(nonce), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let node: u64 = node.parse().map_err(|_| AuthError::Malformed)?;
        let ts: u64 = ts.parse().map_err(|_| AuthError::Malformed)?;
        let nonce: [u8; 16] = unhex(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or(AuthError::Malformed)?;
        let sig = unhex(sig).ok_or(AuthError::Malformed)?;
        mac(secret, node, method, ts, &nonce)
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        let now = now_ms();
        let skew = now as i64 - ts as i64;
        if skew.unsigned_abs() > MAX_SKEW.as_millis() as u64 {
            return Err(AuthError::Skew(skew));
        }
        let fresh = self
            .replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fresh(nonce, now);
        if !fresh {
            return Err(AuthError::Replayed);
        }
        Ok(node)
    }

    fn warn_refusal(&self, method: &str, e: &AuthError) {
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                node_id = self.node_id,
                rpc = method,
                error = %e,
                "refused an inter-broker call that did not prove the cluster secret \
                 (at most one such line a second)"
            );
        }
    }
}

/// Refuses a request that names `claimed` as its sender when the token or certificate proved
/// `proven` (PERMISSION_DENIED); anything goes without either (`proven` is `None`).
pub fn same_sender(proven: Option<u64>, claimed: i64, what: &str) -> Result<(), Status> {
    match proven {
        Some(p) if i64::try_from(p).ok() != Some(claimed) => Err(Status::permission_denied(
            format!("broker {p} may not send {what} as broker {claimed}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(auth: &RpcAuth, method: &str) -> Request<()> {
        let mut r = Request::new(());
        auth.sign(&mut r, method);
        r
    }

    #[test]
    fn a_token_proves_its_sender_once() {
        let secret = b"0123456789abcdef-secret".to_vec();
        let a = RpcAuth::new(3, Some(secret.clone()));
        let b = RpcAuth::new(1, Some(secret));
        let r = signed(&a, method::HEARTBEAT);
        assert_eq!(b.verify(&r, method::HEARTBEAT).unwrap(), Some(3));
        // replayed
        let e = b.verify(&r, method::HEARTBEAT).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("used before"), "{}", e.message());
        // bound to the method
        let r = signed(&a, method::HEARTBEAT);
        assert!(b.verify(&r, method::REPLICA_FETCH).is_err());
    }

    #[test]
    fn wrong_secret_missing_or_forged_tokens_are_refused() {
        let b = RpcAuth::new(1, Some(b"0123456789abcdef-secret".to_vec()));
        let stranger = RpcAuth::new(3, Some(b"another-secret-of-16+".to_vec()));
        let cases = [
            (Request::new(()), "no x-raftka-auth"),
            (signed(&stranger, method::VOTE), "does not match"),
        ];
        for (r, want) in cases {
            let e = b.verify(&r, method::VOTE).unwrap_err();
            assert!(e.message().contains(want), "{}", e.message());
        }
        // A valid token edited to claim another node no longer matches.
        let a = RpcAuth::new(3, Some(b"0123456789abcdef-secret".to_vec()));
        let t = a.token(method::VOTE).unwrap();
        let forged = format!("2{}", &t[1..]);
        let mut r = Request::new(());
        r.metadata_mut().insert(HEADER, forged.parse().unwrap());
        assert!(b.verify(&r, method::VOTE).is_err());
        for junk in ["", "1.2.3", "x.1.00.00", "1.2.zz.00.5"] {
            let mut r = Request::new(());
            r.metadata_mut().insert(HEADER, junk.parse().unwrap());
            assert!(b.verify(&r, method::VOTE).is_err(), "{junk}");
        }
    }

    #[test]
    fn old_tokens_are_refused() {
        let secret = b"0123456789abcdef-secret".to_vec();
        let b = RpcAuth::new(1, Some(secret.clone()));
        let nonce = [7u8; 16];
        let ts = now_ms() - 31_000;
        let m = mac(&secret, 3, method::VOTE, ts, &nonce)
            .finalize()
            .into_bytes();
        let t = format!("3.{ts}.{}.{}", hex(&nonce), hex(&m));
        assert!(matches!(
            b.check(&secret, Some(&t), method::VOTE),
            Err(AuthError::Skew(_))
        ));
    }

    #[test]
    fn without_a_secret_nothing_is_proven_or_refused() {
        let open = RpcAuth::new(1, None);
        assert_eq!(open.verify(&Request::new(()), method::VOTE).unwrap(), None);
        assert!(same_sender(None, 5, "x").is_ok());
        assert!(same_sender(Some(5), 5, "x").is_ok());
        assert_eq!(
            same_sender(Some(4), 5, "x").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn replay_memory_is_bounded_in_time() {
        let mut r = Replay::default();
        assert!(r.fresh([1; 16], 1000));
        assert!(!r.fresh([1; 16], 2000));
        // after the window the nonce is forgotten (its token is too old to verify anyway)
        assert!(r.fresh([2; 16], 1000 + 2 * MAX_SKEW.as_millis() as u64 + 1));
        assert_eq!(r.seen.len(), 1);
    }
}
