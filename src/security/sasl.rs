//! The broker's SASL settings (enabled mechanisms, PLAIN users) and one authentication
//! exchange of a mechanism, independent of the Kafka framing around it (SaslHandshake and
//! SaslAuthenticate live in the connection layer).
//!
//! May depend on: `config`, `security::{plain, scram, principal}`. SCRAM credentials are
//! looked up through a closure, so this module does not know the metadata image.

use std::collections::BTreeMap;

use super::plain::{self, PlainError};
use super::scram::{ScramCredential, ScramError, ScramMechanism, ScramServer, Step};
use super::Principal;
use crate::config::SaslConfig;

/// Why SASL settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SaslSetupError {
    #[error("cannot read sasl.jaas.file {path}: {reason}")]
    ReadJaas { path: String, reason: String },
    #[error("{setting}: {reason}")]
    Jaas {
        setting: &'static str,
        reason: String,
    },
}

/// What the SASL listeners offer.
#[derive(Debug, Clone, Default)]
pub struct SaslSettings {
    /// Enabled mechanisms, as SaslHandshake lists them.
    pub mechanisms: Vec<String>,
    /// PLAIN users and passwords (`sasl.jaas.config` and `sasl.jaas.file`).
    pub plain_users: BTreeMap<String, String>,
    /// `connections.max.reauth.ms` (0: no expiry).
    pub max_reauth_ms: u64,
    /// SCRAM credentials from `sasl.scram.users`, salted at start; the metadata quorum's
    /// credential of the same user and mechanism wins.
    pub scram_users: BTreeMap<(String, ScramMechanism), ScramCredential>,
}

impl SaslSettings {
    pub fn from_config(c: &SaslConfig) -> Result<Self, SaslSetupError> {
        let mut plain_users =
            plain::jaas_users(&c.jaas_config).map_err(|reason| SaslSetupError::Jaas {
                setting: "sasl.jaas.config",
                reason,
            })?;
        if let Some(path) = &c.jaas_file {
            let text = std::fs::read_to_string(path).map_err(|e| SaslSetupError::ReadJaas {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let more = plain::jaas_users(&text).map_err(|reason| SaslSetupError::Jaas {
                setting: "sasl.jaas.file",
                reason,
            })?;
            plain_users.extend(more);
        }
        let mut scram_users = BTreeMap::new();
        for (mechanism, user, password) in &c.scram_users {
            let Some(m) = ScramMechanism::from_name(mechanism) else {
                continue; // config.rs accepts SCRAM mechanisms only
            };
            let salt: [u8; 16] = rand::random();
            let iterations = super::scram::MIN_ITERATIONS;
            let salted = m.salted_password(password.as_bytes(), &salt, iterations as u32);
            scram_users.insert((user.clone(), m), m.credential(&salt, &salted, iterations));
        }
        Ok(Self {
            mechanisms: c.mechanisms.clone(),
            plain_users,
            max_reauth_ms: c.max_reauth_ms,
            scram_users,
        })
    }

    pub fn enabled(&self, mechanism: &str) -> bool {
        self.mechanisms.iter().any(|m| m == mechanism)
    }
}

/// An authentication failure; its message goes to the client with
/// SASL_AUTHENTICATION_FAILED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Plain(#[from] PlainError),
    #[error(transparent)]
    Scram(#[from] ScramError),
}

/// One exchange of one mechanism.
#[derive(Debug)]
pub enum Exchange {
    Plain,
    Scram(Box<ScramServer>),
}

/// The result of a client token.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Send the bytes, expect another token.
    Challenge(Vec<u8>),
    /// Authenticated; send the bytes (possibly empty) as the last server message.
    Done(Principal, Vec<u8>),
}

impl Exchange {
    /// Starts an exchange of an enabled mechanism; `None` for mechanisms raftka lacks.
    pub fn start(mechanism: &str) -> Option<Self> {
        match mechanism {
            "PLAIN" => Some(Self::Plain),
            m => ScramMechanism::from_name(m).map(|m| Self::Scram(Box::new(ScramServer::new(m)))),
        }
    }

    /// Handles a client token. `scram` finds a user's credential of a SCRAM mechanism.
    pub fn step(
        &mut self,
        token: &[u8],
        settings: &SaslSettings,
        scram: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Progress, AuthError> {
        match self {
            Self::Plain => {
                let user = plain::authenticate(token, &settings.plain_users)?;
                Ok(Progress::Done(Principal::user(user), Vec::new()))
            }
            Self::Scram(s) => {
                let m = s.mechanism();
                let lookup = |user: &str| {
                    scram(user)
                        .or_else(|| settings.scram_users.get(&(user.to_string(), m)).cloned())
                };
                match s.step(token, lookup)? {
                    Step::Continue(reply) => Ok(Progress::Challenge(reply)),
                    Step::Done { user, reply } => Ok(Progress::Done(Principal::user(user), reply)),
                }
            }
        }
    }
}
