//! Who is asking, how they proved it and what they may do: the principal of a Kafka
//! connection ([`principal`]), TLS for the SSL listeners ([`tls`]), SASL (PLAIN,
//! SCRAM-SHA-256/512) for the SASL listeners ([`sasl`], [`plain`], [`scram`]), Kafka's ACLs
//! ([`acl`]) and the authorizer that decides with them ([`authorizer`]).
//!
//! `principal`, `acl`, `authorizer`, `plain` and `scram` depend on nothing else in the crate,
//! so the connection layer (which authenticates), the API handlers (which authorize) and the
//! metadata image (which stores ACLs and SCRAM credentials) can all use them; `tls` and `sasl`
//! also read their settings from `config`, and [`exposure`] (what the settings leave open,
//! warned about at startup) reads nothing else.

pub mod acl;
pub mod authorizer;
pub mod exposure;
pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

pub use principal::Principal;
