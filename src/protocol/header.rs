//! Request headers: the fixed prefix every version shares, and the full versioned header.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// A header that cannot be read; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("request frame too short for a header")]
    Truncated,
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// The part of a request header that is the same in every version: enough to answer
/// an ApiVersions request of a version the broker does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed prefix without consuming the frame.
pub fn peek_header(frame: &[u8]) -> Result<RequestPrefix, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::Truncated);
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the full header of a known API and version, leaving `frame` at the body.
pub fn decode_header(
    key: ApiKey,
    version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, HeaderError> {
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    let _ = frame.remaining();
    Ok(header)
}
