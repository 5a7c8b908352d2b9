//! Length-prefixed frames: a 4-byte big-endian size followed by that many bytes.
//!
//! [`FrameReader::parse`] answers "is a whole frame buffered?"; it never blocks and never
//! panics on hostile sizes. The caller owns the socket.

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

/// The smallest request: api key, version, correlation id and a client-id length.
const MIN_FRAME: i32 = 10;

impl FrameReader {
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            max,
        }
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
            // Make room for the rest of the frame in one allocation.
            self.buf.reserve(4 + size_usize - self.buf.len());
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
    fn rejects_hostile_sizes() {
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(r.parse(), Err(FrameError::BadSize(-5)));
        let mut r = FrameReader::new(100);
        r.buf.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(r.parse(), Err(FrameError::TooLarge { .. })));
    }
}
