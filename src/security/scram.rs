//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: the stored
//! credential (salt, StoredKey, ServerKey, iterations) and the server side of the exchange.
//!
//! Depends on nothing else in the crate (the metadata image stores [`ScramCredential`]s, the
//! SASL layer runs [`ScramServer`]). The cryptography is RustCrypto's (hmac, sha2, pbkdf2);
//! this module only arranges the messages.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's smallest and largest accepted iteration counts (ScramMechanism.minIterations and
/// ScramFormatter's limit).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

/// A SCRAM mechanism, numbered as Kafka's AlterUserScramCredentials/Describe… number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The mechanism of Kafka's type byte (1: SCRAM-SHA-256, 2: SCRAM-SHA-512).
    pub fn from_type(t: i8) -> Option<Self> {
        match t {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Kafka's type byte.
    pub fn type_id(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this mechanism's HMAC (the salted password
    /// AlterUserScramCredentials carries).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    /// The stored credential for a salted password.
    pub fn credential(
        self,
        salt: &[u8],
        salted_password: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut m = <M as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// What the broker keeps of a SCRAM password (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// Why a SCRAM exchange failed; the message goes to the client with
/// SASL_AUTHENTICATION_FAILED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("Authentication failed: invalid SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("Authentication failed: channel binding is not supported")]
    ChannelBinding,
    #[error("Authentication failed: SCRAM extensions (delegation tokens) are not supported")]
    Extensions,
    #[error("Authentication failed: Invalid user credentials")]
    UnknownUser,
    #[error("Authentication failed: Invalid nonce")]
    Nonce,
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    BadProof(&'static str),
}

/// The server side of one SCRAM exchange: client-first → server-first, client-final →
/// server-final.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    SentFirst {
        user: String,
        credential: ScramCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
    Done,
}

/// Outcome of one step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and expect another client message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send these bytes (server-final) and stop.
    Done { user: String, reply: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self {
            mechanism,
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Handles the next client message. `lookup` finds a user's credential for this
    /// mechanism.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Step, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => self.client_first(text, lookup),
            State::SentFirst {
                user,
                credential,
                client_first_bare,
                server_first,
                nonce,
                gs2_header,
            } => {
                let reply = self.client_final(
                    text,
                    &credential,
                    &client_first_bare,
                    &server_first,
                    &nonce,
                    &gs2_header,
                )?;
                Ok(Step::Done { user, reply })
            }
            State::Done => Err(ScramError::Malformed("the exchange is already complete")),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Step, ScramError> {
        // gs2-header: "n,," or "y,," (no channel binding); "p=..." asks for binding.
        let (gs2_flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match gs2_flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let gs2_header = format!("{gs2_flag},{authzid},");
        let mut user = None;
        let mut cnonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("n", v))) => user = Some(decode_saslname(v)?),
                (1, Some(("r", v))) if !v.is_empty() => cnonce = Some(v.to_string()),
                (0 | 1, _) => return Err(ScramError::Malformed("expected n=<user>,r=<nonce>")),
                (_, Some(("m", _))) => return Err(ScramError::Malformed("mandatory extension")),
                // Kafka's extensions (tokenauth=true): delegation tokens are not supported.
                (_, Some(("tokenauth", v))) if v.eq_ignore_ascii_case("true") => {
                    return Err(ScramError::Extensions)
                }
                _ => {}
            }
        }
        let (user, cnonce) = match (user, cnonce) {
            (Some(u), Some(n)) if !u.is_empty() => (u, n),
            _ => return Err(ScramError::Malformed("expected n=<user>,r=<nonce>")),
        };
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_saslname(a)? != user {
                return Err(ScramError::Malformed(
                    "authorization id differs from the user",
                ));
            }
        }
        let credential = lookup(&user).ok_or(ScramError::UnknownUser)?;
        let snonce: [u8; 24] = rand::random();
        let nonce = format!(
            "{cnonce}{}",
            B64.encode(snonce).replace(['+', '/', '='], "x")
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
            gs2_header,
        };
        Ok(Step::Continue(reply))
    }

    fn client_final(
        &self,
        text: &str,
        credential: &ScramCredential,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
        gs2_header: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut got_nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => got_nonce = Some(v),
                _ => {}
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        // Kafka's check is `endsWith`: librdkafka (2.0) sends its own nonce again in front of
        // the combined one, and Kafka brokers accept that.
        if !got_nonce.is_some_and(|n| n.ends_with(nonce)) {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let m = self.mechanism;
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof(m.name()));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let computed = m.hash(&client_key);
        if !bool::from(computed.ct_eq(&credential.stored_key)) {
            return Err(ScramError::BadProof(m.name()));
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side written from RFC 5802's formulas, to drive the server.
    fn client_final(
        m: ScramMechanism,
        password: &str,
        first_bare: &str,
        server_first: &str,
    ) -> String {
        let attrs: std::collections::HashMap<&str, &str> = server_first
            .split(',')
            .filter_map(|a| a.split_once('='))
            .collect();
        let salt = B64.decode(attrs["s"]).unwrap();
        let iters: u32 = attrs["i"].parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iters);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored = m.hash(&client_key);
        let without_proof = format!("c=biws,r={}", attrs["r"]);
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let sig = m.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn rfc7677_test_vector_credential() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations; the server signature must match the RFC's.
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = m.credential(&salt, &salted, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_sig = m.hmac(&cred.server_key, auth.as_bytes());
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let client_key = m.hmac(&salted, b"Client Key");
        let proof: Vec<u8> = client_key
            .iter()
            .zip(m.hmac(&cred.stored_key, auth.as_bytes()))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    #[test]
    fn full_exchange_and_wrong_password() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salt = b"0123456789abcdef";
            let cred = m.credential(salt, &m.salted_password(b"s3cret", salt, 4096), 4096);
            let lookup = |u: &str| (u == "al,ice").then(|| cred.clone());
            for (password, ok) in [("s3cret", true), ("wrong", false)] {
                let mut s = ScramServer::new(m);
                let first_bare = "n=al=2Cice,r=abcdef";
                let Step::Continue(sf) = s
                    .step(format!("n,,{first_bare}").as_bytes(), lookup)
                    .unwrap()
                else {
                    panic!("expected server-first")
                };
                let sf = String::from_utf8(sf).unwrap();
                assert!(sf.starts_with("r=abcdef"), "{sf}");
                let cf = client_final(m, password, first_bare, &sf);
                let r = s.step(cf.as_bytes(), lookup);
                if ok {
                    let Step::Done { user, reply } = r.unwrap() else {
                        panic!()
                    };
                    assert_eq!(user, "al,ice");
                    assert!(reply.starts_with(b"v="));
                } else {
                    assert_eq!(r.unwrap_err(), ScramError::BadProof(m.name()));
                }
            }
        }
    }

    #[test]
    fn hostile_messages_are_refused() {
        let m = ScramMechanism::Sha512;
        let none = |_: &str| None;
        for bad in [
            "",
            "n",
            "x,,n=a,r=b",
            "n,,r=b",
            "n,,n=a",
            "n,,n=a=zz,r=b",
            "p=tls-unique,,n=a,r=b",
        ] {
            assert!(
                ScramServer::new(m).step(bad.as_bytes(), none).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ScramServer::new(m)
                .step(b"n,,n=ghost,r=abc", none)
                .unwrap_err(),
            ScramError::UnknownUser
        );
        assert!(ScramServer::new(m).step(&[0xff, 0xfe], none).is_err());
    }
}
