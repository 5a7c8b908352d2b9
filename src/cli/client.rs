//! A small Kafka client for the admin CLI: one TCP connection per broker, length-prefixed
//! frames, fixed request versions (every one inside the range raftka advertises, so no
//! ApiVersions round trip), and a broker map from Metadata for routing requests to partition
//! leaders and group coordinators.
//!
//! Depends only on the kafka-protocol crate's message types and tokio; nothing in the broker.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response frame the CLI accepts (a Fetch answer is bounded by its max_bytes).
const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no broker of {0} answers (is the cluster running? set --bootstrap host:port)")]
    NoBroker(String),
    #[error("{addr}: connection failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: cannot encode or decode a message: {reason}")]
    Codec { addr: String, reason: String },
    #[error("{addr}: answered a response of {size} bytes, more than the limit")]
    TooLarge { addr: String, size: usize },
    #[error("broker {0} is not in the cluster's Metadata (fenced or down)")]
    UnknownBroker(i32),
}

/// One connection to one broker; requests are sent one at a time.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    next_correlation_id: i32,
    /// Bound on each request's round trip (a Fetch adds its max_wait to this).
    timeout: Duration,
    /// The client id sent in every request header.
    client_id: &'static str,
}

impl Connection {
    /// Connects to `addr` (host:port) within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    reason: format!("no connection within {timeout:?}"),
                })
            }
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            addr: addr.to_string(),
            next_correlation_id: 1,
            timeout,
            client_id: "raftka-cli",
        })
    }

    /// Sends `client_id` in request headers instead of `raftka-cli` (a broker forwarding a
    /// request to another broker names itself so).
    pub fn with_client_id(mut self, client_id: &'static str) -> Self {
        self.client_id = client_id;
        self
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` as `version` and waits for its response; `extra` lengthens the deadline
    /// (a Fetch's max_wait).
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response, ClientError> {
        let timeout = self.timeout + extra;
        match tokio::time::timeout(timeout, self.round_trip(req, version)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }

    /// Writes `req` without waiting for an answer (a Produce with acks=0 gets none).
    pub async fn send_no_reply<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.write_request(req, version).await.map(|_| ())
    }

    /// Encodes and writes one request frame; returns its correlation id.
    async fn write_request<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| req.encode(&mut buf, version))
            .map_err(|e| self.codec(e))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&buf)
            .await
            .map_err(|e| io(&self.addr, e))?;
        Ok(correlation_id)
    }

    async fn round_trip<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.write_request(req, version).await?;
        let size = self
            .stream
            .read_i32()
            .await
            .map_err(|e| io(&self.addr, e))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge {
                addr: self.addr.clone(),
                size,
            });
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io(&self.addr, e))?;
        let mut body = bytes::Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.codec(e))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Codec {
                addr: self.addr.clone(),
                reason: format!(
                    "correlation id {} answered, {correlation_id} expected",
                    header.correlation_id
                ),
            });
        }
        let resp = R::Response::decode(&mut body, version).map_err(|e| self.codec(e))?;
        if body.has_remaining() {
            return Err(ClientError::Codec {
                addr: self.addr.clone(),
                reason: format!("{} bytes left after the response", body.remaining()),
            });
        }
        Ok(resp)
    }

    fn codec(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Codec {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }
}

fn io(addr: &str, source: std::io::Error) -> ClientError {
    ClientError::Io {
        addr: addr.to_string(),
        source,
    }
}

/// Metadata version the CLI speaks (flexible, with leader epochs and the controller id).
pub const METADATA_VERSION: i16 = 9;

/// A cluster reached through a bootstrap list: one connection per broker, opened on demand.
pub struct Client {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// The connection to the first bootstrap address that answered.
    any: Option<Connection>,
    /// Broker id → advertised host:port, from the last Metadata answer.
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Connection>,
}

impl Client {
    /// A client for `bootstrap` (comma-separated host:port list); connects on first use.
    pub fn new(bootstrap: &str, timeout: Duration) -> Self {
        Self {
            bootstrap: split_bootstrap(bootstrap),
            timeout,
            any: None,
            brokers: HashMap::new(),
            conns: HashMap::new(),
        }
    }

    /// The bootstrap addresses, in the order given.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Bound on each request's round trip.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection to any bootstrap broker (the first that answers).
    pub async fn any(&mut self) -> Result<&mut Connection, ClientError> {
        if self.any.is_none() {
            let mut last = None;
            for addr in &self.bootstrap {
                match Connection::connect(addr, self.timeout).await {
                    Ok(c) => {
                        self.any = Some(c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.any.is_none() {
                return Err(match (last, self.bootstrap.len()) {
                    (Some(e), 1) => e,
                    _ => ClientError::NoBroker(self.bootstrap.join(",")),
                });
            }
        }
        Ok(self.any.as_mut().expect("set above"))
    }

    /// Sends `req` to any bootstrap broker; a failed connection is dropped and the request
    /// tried once more on the next bootstrap broker that answers.
    pub async fn send_any<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        match self.any().await?.send(req, version, Duration::ZERO).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.any = None;
                self.any().await?.send(req, version, Duration::ZERO).await
            }
        }
    }

    /// Metadata for `topics` (None: every topic) from any broker; remembers the brokers.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        let req = metadata_request(topics);
        let resp = self.send_any(&req, METADATA_VERSION).await?;
        self.remember(&resp);
        Ok(resp)
    }

    /// Records the broker addresses of a Metadata answer; connections to brokers whose
    /// address changed are dropped.
    pub fn remember(&mut self, resp: &MetadataResponse) {
        let brokers: HashMap<i32, String> = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, host_port(&b.host, b.port)))
            .collect();
        self.conns
            .retain(|id, c| brokers.get(id).is_some_and(|a| a == c.addr()));
        self.brokers = brokers;
    }

    /// The connection to broker `id` (from the last Metadata), opened on demand.
    pub async fn broker(&mut self, id: i32) -> Result<&mut Connection, ClientError> {
        if !self.conns.contains_key(&id) {
            let addr = self
                .brokers
                .get(&id)
                .ok_or(ClientError::UnknownBroker(id))?
                .clone();
            let c = Connection::connect(&addr, self.timeout).await?;
            self.conns.insert(id, c);
        }
        Ok(self.conns.get_mut(&id).expect("inserted above"))
    }

    /// Sends `req` to broker `id`; on a transport error the connection is dropped so that the
    /// next call reconnects.
    pub async fn send_to<R: Request>(
        &mut self,
        id: i32,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response, ClientError> {
        let result = self.broker(id).await?.send(req, version, extra).await;
        if result.is_err() {
            self.conns.remove(&id);
        }
        result
    }
}

/// A Metadata request for `topics` (None: all) that never creates topics.
pub fn metadata_request(topics: Option<&[String]>) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(t)))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
}

/// `host:port`, with IPv6 literals in brackets.
pub fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits a comma-separated bootstrap list, dropping empty entries.
pub fn split_bootstrap(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A Kafka error code as Kafka names it (`NONE` for 0).
pub fn error_name(code: i16) -> String {
    if code == 0 {
        return "NONE".into();
    }
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_are_split_and_trimmed() {
        assert_eq!(
            split_bootstrap(" a:1, b:2,,"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
        assert_eq!(host_port("h", 9092), "h:9092");
    }
}
