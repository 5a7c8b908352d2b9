//! Who is asking and what they may do: the authenticated principal of a Kafka connection
//! ([`principal`]), Kafka's ACLs ([`acl`]) and the authorizer that decides with them
//! ([`authorizer`]).
//!
//! Pure types and decisions; it depends on nothing else in the crate, so the connection
//! layer (which authenticates), the API handlers (which authorize) and the metadata image
//! (which stores ACLs and credentials) can all use it.

pub mod acl;
pub mod authorizer;
pub mod principal;

pub use principal::Principal;
