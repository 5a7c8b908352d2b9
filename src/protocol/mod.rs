//! The Kafka wire format at the edge of the broker: length-prefixed frames, request headers,
//! response encoding, and the record-batch builder for code and tests that write records.
//! Knows nothing about tokio, storage or the APIs' meaning.
//!
//! May depend on: `kafka-protocol` (the generated codec) and `bytes` only.

pub mod batch_builder;
pub mod frame;
pub mod header;
pub mod response;

pub use frame::{FrameError, FrameReader};
pub use header::{peek_header, HeaderError, RequestPrefix};
pub use response::encode_response;
