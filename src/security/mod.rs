//! Who is asking: the authenticated principal of a Kafka connection.
//!
//! Holds identity types only; it depends on nothing else in the crate, so the connection
//! layer (which authenticates), the API handlers (which authorize) and the metadata image
//! (which stores ACLs and credentials) can all use it.

pub mod principal;

pub use principal::Principal;
