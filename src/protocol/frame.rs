//! Length-prefixed frames: a 4-byte big-endian size followed by that many bytes.
//!
//! [`FrameReader::parse`] answers "is a whole frame buffered?"; it never blocks and never
//! panics on hostile sizes. The caller owns the socket and calls
//! [`FrameReader::reserve_for_read`] before each read: the buffer grows with the bytes that
//! actually arrive, never to a size a frame only declares (a 12-byte request declaring
//! 100 MB costs a few KiB, not 100 MB).

use bytes::{Buf, Bytes, BytesMut};

/// A frame that cannot be accepted; the connection that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("frame size {0} is negative or too small to hold a request header")]
    BadSize(i32),
}

/// Accumulates bytes from a socket and cuts them into frames.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes read from the socket but not yet returned as a frame.
    pub buf: BytesMut,
    /// Largest frame accepted (Kafka's `socket.request.max.bytes`).
    max: usize,
}

/// Most bytes reserved ahead of a read (a connection waiting for a request holds this much;
/// larger frames grow the buffer geometrically from here).
pub const READ_CHUNK: usize = 4 * 1024;
/// Capacity an empty buffer may keep between requests.
const KEEP_IDLE: usize = 64 * 1024;

/// The smallest request: api key, version, correlation id and a client-id length.
const MIN_FRAME: i32 = 10;

impl FrameReader {
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Changes the largest frame accepted from now on (a SASL connection accepts only small
    /// frames until it has authenticated).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Makes room for the next socket read: up to [`READ_CHUNK`] bytes, fewer when the frame
    /// being read needs fewer. `BytesMut` grows geometrically, so a large frame that really
    /// arrives is read in few allocations, while capacity stays within about twice the bytes
    /// received. An empty buffer left large by an earlier frame is given back.
    pub fn reserve_for_read(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_IDLE {
            self.buf = BytesMut::new();
        }
        let wanted = if self.buf.len() >= 4 {
            let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            (4 + size.max(0) as usize).saturating_sub(self.buf.len())
        } else {
            4 - self.buf.len()
        };
        self.buf.reserve(wanted.clamp(1, READ_CHUNK));
    }

    /// Returns the next whole frame (without its size prefix) if one is buffered.
    pub fn parse(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if size < MIN_FRAME {
            return Err(FrameError::BadSize(size));
        }
        let size_usize = size as usize;
        if size_usize > self.max {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: self.max,
            });
        }
        if self.buf.len() < 4 + size_usize {
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size_usize).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_frames_and_waits_for_partial_ones() {
        let mut r = FrameReader::new(1000);
        r.buf.extend_from_slice(&12i32.to_be_bytes());
        r.buf.extend_from_slice(&[7u8; 12]);
        r.buf.extend_from_slice(&12i32.to_be_bytes());
        r.buf.extend_from_slice(&[8u8; 5]);
        assert_eq!(r.parse().unwrap().unwrap(), Bytes::from(vec![7u8; 12]));
        assert_eq!(r.parse().unwrap(), None);
        r.buf.extend_from_slice(&[8u8; 7]);
        assert_eq!(r.parse().unwrap().unwrap(), Bytes::from(vec![8u8; 12]));
    }

    #[test]
    fn a_declared_size_reserves_nothing_beyond_what_arrives() {
        let mut r = FrameReader::new(200 << 20);
        // 12 bytes that declare a 100 MB frame.
        r.buf.extend_from_slice(&(100i32 << 20).to_be_bytes());
        r.buf.extend_from_slice(&[1u8; 8]);
        for _ in 0..3 {
            assert_eq!(r.parse(), Ok(None));
            r.reserve_for_read();
        }
        assert!(r.buf.capacity() <= 2 * READ_CHUNK, "{}", r.buf.capacity());
        // A frame that really arrives is read whole, and its capacity given back after.
        let mut r = FrameReader::new(200 << 20);
        let size = 1 << 20;
        let mut sent = (size as i32).to_be_bytes().to_vec();
        sent.extend(std::iter::repeat_n(3u8, size));
        let mut at = 0;
        let frame = loop {
            if let Some(f) = r.parse().unwrap() {
                break f;
            }
            r.reserve_for_read();
            let n = (r.buf.capacity() - r.buf.len()).min(sent.len() - at);
            assert!(n > 0);
            r.buf.extend_from_slice(&sent[at..at + n]);
            at += n;
            assert!(
                r.buf.capacity() <= 2 * (at + READ_CHUNK),
                "{}",
                r.buf.capacity()
            );
        };
        assert_eq!(frame.len(), size);
        drop(frame);
        r.reserve_for_read();
        assert!(r.buf.capacity() <= READ_CHUNK);
    }

    #[test]
    fn rejects_hostile_sizes() {
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(r.parse(), Err(FrameError::BadSize(-5)));
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(r.parse(), Err(FrameError::TooLarge { .. })));
    }
}
