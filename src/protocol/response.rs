//! Response encoding: size prefix, the response header of the right version, the body.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

/// Encodes a complete response frame (size prefix included).
///
/// Fails only when the body holds a field the version cannot carry, which is a broker bug;
/// the caller logs it and closes the connection.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &R,
) -> anyhow::Result<BytesMut> {
    encode_with_header_version(correlation_id, R::header_version(version), version, body)
}

/// Like [`encode_response`] with an explicit header version (ApiVersions' v0 fallback).
pub fn encode_with_header_version<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &R,
) -> anyhow::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}
