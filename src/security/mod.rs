//! Who is asking and how they proved it: the principal of a Kafka connection, TLS for the
//! SSL listeners, and SASL (PLAIN, SCRAM-SHA-256/512) for the SASL listeners.
//!
//! `principal`, `plain` and `scram` depend on nothing else in the crate, so the connection
//! layer (which authenticates), the API handlers (which authorize) and the metadata image
//! (which stores ACLs and SCRAM credentials) can all use them; `tls` and `sasl` also read
//! their settings from `config`.

pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

pub use principal::Principal;
