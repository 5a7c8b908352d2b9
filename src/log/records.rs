//! The records inside a v2 record batch, read in place: an iterator over the uncompressed
//! records section yielding each record's offset delta, timestamp delta, key and value as
//! slices of the input. Every length is checked against the bytes present, so hostile input
//! gives an error, never a panic or an allocation sized by the input.
//!
//! Record layout (Kafka's DefaultRecord): length varint, attributes i8, timestampDelta
//! **varlong**, offsetDelta varint, keyLength varint, key, valueLength varint, value,
//! headerCount varint, then per header: keyLength varint, key, valueLength varint, value.
//! Varints are zigzag-encoded. [`records_section`] gives a batch's records section,
//! decompressed through [`super::compression`]. Depends on `batch` (header layout) and
//! `compression` only.

use std::borrow::Cow;

use super::batch::{BatchHeader, HEADER_LEN};
use super::compression::{decompress, Codec, DecompressError};

/// The most a stored batch's records may inflate to when the broker reads them back
/// (ListOffsets by timestamp, compaction). Produce refuses batches that inflate beyond their
/// own, smaller limit, so this only bounds what older or damaged data can cost.
pub const STORED_INFLATE_LIMIT: usize = 128 << 20;

/// The most a produced batch of at most `max_batch_bytes` may inflate to: 64× the topic's
/// `max.message.bytes` (64 MiB at Kafka's default), never more than
/// [`STORED_INFLATE_LIMIT`]. Producers bound batches by their uncompressed size
/// (librdkafka's `batch.size`, 1 MB), so real batches stay far below this.
pub fn inflate_limit(max_batch_bytes: usize) -> usize {
    max_batch_bytes
        .saturating_mul(64)
        .clamp(1 << 20, STORED_INFLATE_LIMIT)
}

/// Why a batch's records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    #[error("record batch shorter than its header")]
    Truncated,
    #[error("record batch uses unknown compression codec id {0}")]
    UnknownCodec(i16),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
}

/// The uncompressed records section of a whole v2 batch (header included in `batch`),
/// borrowed when the batch is not compressed.
pub fn records_section(batch: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, SectionError> {
    let h = BatchHeader::read(batch).map_err(|_| SectionError::Truncated)?;
    let body = batch.get(HEADER_LEN..).ok_or(SectionError::Truncated)?;
    match Codec::from_attributes(h.attributes) {
        None => Err(SectionError::UnknownCodec(h.attributes & 0x07)),
        Some(Codec::None) => Ok(Cow::Borrowed(body)),
        Some(codec) => Ok(Cow::Owned(decompress(codec, body, limit)?)),
    }
}

/// A record's timestamp: the batch's max timestamp on LogAppendTime batches (the broker's
/// append time stands for every record), else the base timestamp plus the record's delta.
pub fn record_timestamp(h: &BatchHeader, r: &RecordView<'_>) -> i64 {
    if h.is_log_append_time() {
        h.max_timestamp
    } else {
        h.base_timestamp.saturating_add(r.timestamp_delta)
    }
}

/// Why the records of a batch could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("record {index}: truncated (needs {need} more bytes)")]
    Truncated { index: usize, need: usize },
    #[error("record {index}: malformed varint")]
    Varint { index: usize },
    #[error("record {index}: invalid {what} length {len}")]
    Length {
        index: usize,
        what: &'static str,
        len: i64,
    },
    #[error("record {index}: declared length {declared} but its fields take {actual} bytes")]
    SizeMismatch {
        index: usize,
        declared: usize,
        actual: usize,
    },
}

/// One record, borrowed from the batch's records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    /// Milliseconds after the batch's base timestamp (a varlong: deltas above 2^31 ms, ~25
    /// days, are normal when one batch mixes old and new timestamps).
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: usize,
}

/// Iterates over an uncompressed records section. Yields `Err` once and then stops.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(section: &'a [u8]) -> Self {
        Self {
            buf: section,
            pos: 0,
            index: 0,
            failed: false,
        }
    }

    /// Bytes not yet read (non-zero after the last record means trailing garbage).
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn next_record(&mut self) -> Result<RecordView<'a>, RecordsError> {
        let index = self.index;
        let mut r = Reader {
            buf: self.buf,
            pos: self.pos,
            index,
        };
        let len = r.varint()?;
        let len = usize::try_from(len).map_err(|_| RecordsError::Length {
            index,
            what: "record",
            len: len.into(),
        })?;
        let start = r.pos;
        if self.buf.len() - start < len {
            return Err(RecordsError::Truncated {
                index,
                need: len - (self.buf.len() - start),
            });
        }
        // Read the body within its declared length only.
        let mut r = Reader {
            buf: &self.buf[..start + len],
            pos: start,
            index,
        };
        r.bytes(1)?; // attributes (unused in v2)
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.nullable("key")?;
        let value = r.nullable("value")?;
        let header_count = r.varint()?;
        let header_count = usize::try_from(header_count).map_err(|_| RecordsError::Length {
            index,
            what: "header count",
            len: header_count.into(),
        })?;
        for _ in 0..header_count {
            let k = r.varint()?;
            let k = usize::try_from(k).map_err(|_| RecordsError::Length {
                index,
                what: "header key",
                len: k.into(),
            })?;
            r.bytes(k)?;
            r.nullable("header value")?;
        }
        if r.pos != start + len {
            return Err(RecordsError::SizeMismatch {
                index,
                declared: len,
                actual: r.pos - start,
            });
        }
        self.pos = r.pos;
        self.index += 1;
        Ok(RecordView {
            offset_delta,
            timestamp_delta,
            key,
            value,
            header_count,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_record();
        self.failed = r.is_err();
        Some(r)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordsError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            return Err(RecordsError::Truncated {
                index: self.index,
                need: n - have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An unsigned LEB128 value of at most `max_bytes` bytes.
    fn uleb(&mut self, max_bytes: usize) -> Result<u64, RecordsError> {
        let mut v = 0u64;
        for i in 0..max_bytes {
            let b = *self.bytes(1)?.first().unwrap_or(&0);
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordsError::Varint { index: self.index })
    }

    fn varint(&mut self) -> Result<i32, RecordsError> {
        let u = self.uleb(5)?;
        let u = u32::try_from(u).map_err(|_| RecordsError::Varint { index: self.index })?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let u = self.uleb(10)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A varint length then that many bytes; -1 is null.
    fn nullable(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, RecordsError> {
        let len = self.varint()?;
        match len {
            -1 => Ok(None),
            n if n >= 0 => self.bytes(n as usize).map(Some),
            n => Err(RecordsError::Length {
                index: self.index,
                what,
                len: n.into(),
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A whole uncompressed v2 batch (base offset 0, no producer id) whose records have the
    /// given timestamps, written byte by byte so that deltas beyond 32 bits can be expressed.
    pub(crate) fn batch_with_timestamps(timestamps: &[i64]) -> bytes::Bytes {
        let base = timestamps.iter().copied().min().unwrap_or(0);
        let max = timestamps.iter().copied().max().unwrap_or(0);
        let mut records = Vec::new();
        for (i, ts) in timestamps.iter().enumerate() {
            records.extend(record(ts - base, i as i64, Some(b"k"), b"v"));
        }
        let n = timestamps.len() as i32;
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes()); // base offset
        b.extend_from_slice(&((HEADER_LEN - 12 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        b.push(2); // magic
        b.extend_from_slice(&[0; 4]); // crc, below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes
        b.extend_from_slice(&(n - 1).to_be_bytes()); // last offset delta
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&max.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend(records);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes::Bytes::from(b)
    }

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn put_var(out: &mut Vec<u8>, v: i64) {
        let mut u = zigzag(v);
        loop {
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// One encoded record (test-only encoder, independent of the reader above).
    fn record(ts_delta: i64, off_delta: i64, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        put_var(&mut body, ts_delta);
        put_var(&mut body, off_delta);
        match key {
            Some(k) => {
                put_var(&mut body, k.len() as i64);
                body.extend_from_slice(k);
            }
            None => put_var(&mut body, -1),
        }
        put_var(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_var(&mut body, 1);
        put_var(&mut body, 1);
        body.push(b'h');
        put_var(&mut body, -1);
        let mut out = Vec::new();
        put_var(&mut out, body.len() as i64);
        out.extend(body);
        out
    }

    #[test]
    fn reads_records_with_timestamp_deltas_beyond_i32() {
        let far = 999_999_999_999 - 1_234;
        let mut section = record(0, 0, Some(b"k"), b"v0");
        section.extend(record(far, 1, None, b"v1"));
        let got: Vec<_> = Records::new(&section).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key, Some(&b"k"[..]));
        assert_eq!(got[1].timestamp_delta, far);
        assert_eq!((got[1].offset_delta, got[1].key), (1, None));
        assert_eq!((got[1].value, got[1].header_count), (Some(&b"v1"[..]), 1));
    }

    #[test]
    fn hostile_lengths_are_errors() {
        let good = record(5, 0, Some(b"key"), b"value");
        // Every truncation is an error, never a panic.
        for cut in 1..good.len() {
            let r: Result<Vec<_>, _> = Records::new(&good[..cut]).collect();
            assert!(r.is_err(), "cut at {cut}");
        }
        // A negative key length other than -1.
        let mut bad = good.clone();
        let key_len_at = 1 + 1 + 1 + 1; // length, attributes, ts delta, offset delta
        bad[key_len_at] = 3; // zigzag(-2)
        assert!(matches!(
            Records::new(&bad).next(),
            Some(Err(RecordsError::Length { what: "key", .. }))
        ));
        // A negative record length.
        assert!(matches!(
            Records::new(&[0x01]).next(),
            Some(Err(RecordsError::Length { what: "record", .. }))
        ));
        // An endless varint.
        assert!(matches!(
            Records::new(&[0xff; 12]).next(),
            Some(Err(RecordsError::Varint { .. }))
        ));
        // A declared length longer than the fields (garbage inside the record).
        let mut padded = good.clone();
        padded[0] += 2; // zigzag: +1 byte of length
        padded.push(0);
        assert!(matches!(
            Records::new(&padded).next(),
            Some(Err(RecordsError::SizeMismatch { .. }))
        ));
    }
}
