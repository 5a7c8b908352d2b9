//! Shared helpers for integration tests: a broker process on a free loopback port.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A raftka broker running as a child process; killed on drop.
pub struct BrokerProcess {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl BrokerProcess {
    /// Starts a broker with `extra` flags and waits until it answers ApiVersions.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(port, dir.path(), &extra);
        let b = Self {
            child,
            port,
            dir,
            extra,
        };
        b.wait_ready();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (polling, bounded) until the broker answers an ApiVersions request.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(self.addr()) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(&api_versions_frame(0, 7)).is_ok() && read_frame(&mut s).is_some() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("broker on port {} did not become ready", self.port);
    }

    /// Sends SIGKILL and starts the broker again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.dir.path(), &self.extra);
        self.wait_ready();
    }
}

fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftka"));
    cmd.arg("--listeners")
        .arg(format!("PLAINTEXT://127.0.0.1:{port}"));
    if !extra.iter().any(|a| a == "--http.listener") {
        // Kafka port + 2 (the default) may belong to another test's ephemeral socket.
        cmd.args(["--http.listener", "127.0.0.1:0"]);
    }
    cmd.arg("--log.dirs")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start raftka")
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ApiVersions request frame (header v1) of the given version, without a body
/// (v0-v2 have none; callers use v0 or an unknown version).
pub fn api_versions_frame(version: i16, correlation: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Reads one response frame; `None` when the connection closed or timed out.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// True when the peer closed the connection (read returns EOF or reset).
pub fn is_closed(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Sends one request encoded by the codec crate and decodes its response.
pub fn call<R: kafka_protocol::protocol::Request>(
    s: &mut TcpStream,
    version: i16,
    correlation: i32,
    req: &R,
) -> Option<R::Response> {
    use bytes::BytesMut;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")))
        .encode(&mut buf, R::header_version(version))
        .ok()?;
    req.encode(&mut buf, version).ok()?;
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    s.write_all(&frame).ok()?;
    let resp = read_frame(s)?;
    let mut body = bytes::Bytes::from(resp);
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let h = kafka_protocol::messages::ResponseHeader::decode(&mut body, header_version).ok()?;
    assert_eq!(h.correlation_id, correlation, "correlation id echoed");
    R::Response::decode(&mut body, version).ok()
}
