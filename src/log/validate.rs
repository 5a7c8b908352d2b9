//! Record-level checks of v2 record batches, after Kafka's `LogValidator`: the batch header and
//! CRC are checked by [`super::batch`]; here every record of the batch is walked, after
//! inflating compressed records through the bounded reader of [`super::decompress`].
//!
//! A record must lie inside its batch (varint lengths in range and within the bytes left), its
//! fields must fill exactly the length it declares, the batch must hold exactly the records its
//! header counts (no more, no fewer, no bytes after them), and offset deltas must be the ones
//! the header implies: `0..n-1` for a produced batch, increasing and within the batch's offset
//! span for a stored one (compaction leaves gaps). Produce refuses a batch breaking any of these
//! with INVALID_RECORD (see `api::errors`) and a message naming the record and the problem, so
//! nothing is stored that a consumer, the cleaner or the offsets loader could not read back.
//!
//! The walk borrows from the (inflated) records and allocates nothing per record, so a batch
//! declaring 10^9 records costs nothing before it is found to hold fewer.
//!
//! May depend on: `batch`, `decompress`, `bytes`. Knows nothing about the network.

use bytes::Bytes;

use super::batch::{split_batches, BatchError, BatchHeader, HEADER_LEN};
use super::decompress::{self, Codec, DecompressError};
use super::LogError;

/// Why a batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("record {index}: {problem}")]
    Record { index: usize, problem: String },
    #[error("the batch header declares {declared} records but the batch holds only {found}")]
    FewerRecords { declared: i32, found: usize },
    #[error("{bytes} bytes follow the batch's {declared} declared records")]
    TrailingBytes { bytes: usize, declared: i32 },
    #[error("record batch header is inconsistent: {0}")]
    Header(String),
    #[error(
        "{} of the batch's records have no key (the first: record {}); compacted topics need a \
         key on every record",
        indexes.len(),
        indexes.first().copied().unwrap_or_default()
    )]
    MissingKeys {
        /// Every keyless record's index within its batch (KIP-467 names each one).
        indexes: Vec<usize>,
    },
    #[error(
        "produce v{version} requests must carry record batches of message format v2 (magic 2), \
         found magic {magic}"
    )]
    OldMagic { version: i16, magic: i8 },
    #[error("zstd compression needs produce v7 or later; this request is v{0}")]
    ZstdNeedsV7(i16),
}

impl RecordError {
    /// The indexes (within their batch) of the records at fault, for KIP-467's per-record
    /// errors; empty when the problem is not with particular records.
    pub fn record_indexes(&self) -> Vec<usize> {
        match self {
            RecordError::Record { index, .. } => vec![*index],
            RecordError::MissingKeys { indexes } => indexes.clone(),
            _ => Vec::new(),
        }
    }
}

/// One record, borrowed from its batch's (inflated) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Record attributes (unused by Kafka; kept as sent).
    pub attributes: i8,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record from its key length through its last header, as stored: a rebuilt batch
    /// copies it verbatim.
    pub tail: &'a [u8],
}

/// Which offset deltas a batch may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// From a client: deltas are exactly `0..record_count`.
    Produced,
    /// From the log: increasing and within the batch's span (compaction leaves gaps).
    Stored,
}

/// The checked records of one batch.
#[derive(Debug, Clone)]
pub struct BatchRecords {
    pub header: BatchHeader,
    pub codec: Codec,
    /// The records part, inflated.
    data: Bytes,
}

impl BatchRecords {
    /// Checks the header fields that bound the records, inflates them (bounded) and walks
    /// every record. `batch` is one whole batch whose framing and CRC were already checked.
    fn parse(batch: &Bytes, origin: Origin) -> Result<Self, RecordError> {
        let header = BatchHeader::read(batch).map_err(|e| RecordError::Header(e.to_string()))?;
        if batch.len() < HEADER_LEN {
            return Err(RecordError::Header("shorter than its header".into()));
        }
        let codec = Codec::from_attributes(header.attributes)?;
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(RecordError::Header(format!(
                "negative record count ({}) or last offset delta ({})",
                header.record_count, header.last_offset_delta
            )));
        }
        if origin == Origin::Produced {
            if header.record_count == 0 {
                return Err(RecordError::Header(
                    "a produced batch holds no records".into(),
                ));
            }
            if header.last_offset_delta != header.record_count - 1 {
                return Err(RecordError::Header(format!(
                    "last offset delta {} does not match the record count {}",
                    header.last_offset_delta, header.record_count
                )));
            }
        }
        let data = decompress::decompress(
            codec,
            batch.slice(HEADER_LEN..),
            decompress::inflate_limit(batch.len()),
        )?;
        let out = Self {
            header,
            codec,
            data,
        };
        let mut it = out.iter();
        let mut prev: Option<i64> = None;
        let mut found = 0usize;
        for r in &mut it {
            let r = r?;
            let delta = r.offset - header.base_offset;
            let ok = match origin {
                Origin::Produced => delta == found as i64,
                Origin::Stored => {
                    prev.is_none_or(|p| r.offset > p)
                        && (0..=header.last_offset_delta as i64).contains(&delta)
                }
            };
            if !ok {
                return Err(RecordError::Record {
                    index: found,
                    problem: format!(
                        "offset delta {delta} is out of order (expected {} for a batch of {} \
                         records with last offset delta {})",
                        match origin {
                            Origin::Produced => found.to_string(),
                            Origin::Stored => "an increasing delta".into(),
                        },
                        header.record_count,
                        header.last_offset_delta
                    ),
                });
            }
            prev = Some(r.offset);
            found += 1;
        }
        if found < header.record_count as usize {
            return Err(RecordError::FewerRecords {
                declared: header.record_count,
                found,
            });
        }
        if !it.rest.is_empty() {
            return Err(RecordError::TrailingBytes {
                bytes: it.rest.len(),
                declared: header.record_count,
            });
        }
        Ok(out)
    }

    /// The batch's records in order. Every item is `Ok` for a batch that parsed.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            rest: &self.data,
            header: self.header,
            index: 0,
        }
    }

    /// The number of inflated bytes the records take.
    pub fn inflated_len(&self) -> usize {
        self.data.len()
    }
}

/// What produce requires of one partition's records.
#[derive(Debug, Clone, Copy)]
pub struct ProduceRules {
    /// `max.message.bytes` of the topic: the largest batch, as sent.
    pub max_batch_bytes: usize,
    /// The topic is compacted: every record needs a key.
    pub require_keys: bool,
    /// The Produce request's version (v3+ require magic 2, zstd requires v7+).
    pub produce_version: i16,
}

/// Splits the records of a produce request into batches and checks every record of every
/// batch; returns the batches to append, or the first problem found. Nothing is appended
/// unless every batch passes.
pub fn produced_batches(records: &Bytes, rules: &ProduceRules) -> Result<Vec<Bytes>, LogError> {
    let batches = split_batches(records, rules.max_batch_bytes).map_err(|e| match e {
        // Produce v0-v2 may carry message format v0/v1, which raftka does not store
        // (UNSUPPORTED_FOR_MESSAGE_FORMAT); from v3 on Kafka requires v2 (INVALID_RECORD).
        BatchError::OldMagic(magic) if rules.produce_version >= 3 => {
            LogError::Records(RecordError::OldMagic {
                version: rules.produce_version,
                magic,
            })
        }
        e => LogError::Batch(e),
    })?;
    for b in &batches {
        // A request-level rule in Kafka, checked before the records.
        if BatchHeader::read(b)?.attributes & 0x7 == 4 && rules.produce_version < 7 {
            return Err(RecordError::ZstdNeedsV7(rules.produce_version).into());
        }
        let recs = BatchRecords::parse(b, Origin::Produced)?;
        if rules.require_keys {
            let mut indexes = Vec::new();
            for (index, r) in recs.iter().enumerate() {
                if r?.key.is_none() {
                    indexes.push(index);
                }
            }
            if !indexes.is_empty() {
                return Err(RecordError::MissingKeys { indexes }.into());
            }
        }
    }
    Ok(batches)
}

/// The records of a batch read back from the log (compaction, ListOffsets by timestamp, the
/// offsets loader): the same bounded inflation and checks as produce, allowing the offset
/// gaps compaction leaves. A batch that fails is reported as corrupt stored data.
pub fn stored_records(batch: &Bytes) -> Result<BatchRecords, LogError> {
    BatchRecords::parse(batch, Origin::Stored).map_err(|e| {
        let base = BatchHeader::read(batch)
            .map(|h| h.base_offset)
            .unwrap_or(-1);
        LogError::Corrupt(format!("stored batch at offset {base}: {e}"))
    })
}

/// Walks records in inflated record data; stops at the first malformed record.
#[derive(Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    header: BatchHeader,
    index: usize,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.header.record_count.max(0) as usize || self.rest.is_empty() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let r = read_record(&mut self.rest, &self.header).map_err(|problem| {
            // A malformed record ends the walk: nothing after it can be located.
            self.rest = &[];
            self.index = usize::MAX;
            RecordError::Record { index, problem }
        });
        Some(r)
    }
}

/// Reads one record (length-prefixed) from the front of `buf`.
fn read_record<'a>(buf: &mut &'a [u8], h: &BatchHeader) -> Result<RecordView<'a>, String> {
    let len = varint(buf).map_err(|e| format!("record length: {e}"))?;
    if len < 0 {
        return Err(format!("negative record length {len}"));
    }
    let len = len as usize;
    if len > buf.len() {
        return Err(format!(
            "record length {len} exceeds the {} bytes left in the batch",
            buf.len()
        ));
    }
    let (mut body, rest) = buf.split_at(len);
    *buf = rest;
    let (&attributes, after) = body
        .split_first()
        .ok_or_else(|| "empty record (no attributes)".to_string())?;
    body = after;
    let ts_delta = varlong(&mut body).map_err(|e| format!("timestamp delta: {e}"))?;
    let offset_delta = varint(&mut body).map_err(|e| format!("offset delta: {e}"))?;
    let tail_start = body;
    let key = bytes_field(&mut body, "key")?;
    let value = bytes_field(&mut body, "value")?;
    let headers = varint(&mut body).map_err(|e| format!("header count: {e}"))?;
    if headers < 0 {
        return Err(format!("negative header count {headers}"));
    }
    for i in 0..headers {
        let klen = varint(&mut body).map_err(|e| format!("header {i} key length: {e}"))?;
        if klen < 0 {
            return Err(format!("header {i}: negative key length {klen}"));
        }
        take(&mut body, klen as usize, &format!("header {i} key"))?;
        bytes_field(&mut body, &format!("header {i} value"))?;
    }
    if !body.is_empty() {
        return Err(format!(
            "{} bytes left over after the record's fields (its length says {len})",
            body.len()
        ));
    }
    Ok(RecordView {
        attributes: attributes as i8,
        offset: h.base_offset + offset_delta as i64,
        timestamp: h.base_timestamp.wrapping_add(ts_delta),
        key,
        value,
        tail: tail_start,
    })
}

/// A varint-length-prefixed byte field; -1 is null.
fn bytes_field<'a>(buf: &mut &'a [u8], what: &str) -> Result<Option<&'a [u8]>, String> {
    let len = varint(buf).map_err(|e| format!("{what} length: {e}"))?;
    match len {
        -1 => Ok(None),
        l if l < -1 => Err(format!("negative {what} length {l}")),
        l => take(buf, l as usize, what).map(Some),
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if n > buf.len() {
        return Err(format!(
            "{what} length {n} exceeds the {} bytes left in the record",
            buf.len()
        ));
    }
    let (v, rest) = buf.split_at(n);
    *buf = rest;
    Ok(v)
}

/// A zig-zag varint of at most `max_bytes` bytes whose value fits in `bits` bits.
fn unsigned_var(buf: &mut &[u8], max_bytes: usize, bits: u32) -> Result<u64, &'static str> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(i) else {
            return Err("truncated varint");
        };
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            if bits < 64 && v >> bits != 0 {
                return Err("varint out of range");
            }
            *buf = &buf[i + 1..];
            return Ok(v);
        }
    }
    Err("varint longer than its type allows")
}

fn varint(buf: &mut &[u8]) -> Result<i32, &'static str> {
    let v = unsigned_var(buf, 5, 32)? as u32;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn varlong(buf: &mut &[u8]) -> Result<i64, &'static str> {
    let v = unsigned_var(buf, 10, 64)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::protocol::batch_builder;
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, Record};

    pub(crate) const RULES: ProduceRules = ProduceRules {
        max_batch_bytes: 1 << 20,
        require_keys: false,
        produce_version: 9,
    };

    /// Rewrites the CRC after a test changed bytes it covers.
    pub(crate) fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A whole uncompressed v2 batch (base offset 0, no producer id) whose records (key "k",
    /// value "v") have the given timestamps, written byte by byte so that timestamp deltas
    /// beyond 32 bits can be expressed (kafka-protocol's encoder refuses them).
    pub(crate) fn batch_with_timestamps(timestamps: &[i64]) -> Bytes {
        use crate::log::compaction::put_varint;
        let base = timestamps.iter().copied().min().unwrap_or(0);
        let max = timestamps.iter().copied().max().unwrap_or(0);
        let mut records = Vec::new();
        for (i, ts) in timestamps.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, ts - base);
            put_varint(&mut body, i as i64);
            for field in [&b"k"[..], b"v"] {
                put_varint(&mut body, field.len() as i64);
                body.extend_from_slice(field);
            }
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend(body);
        }
        let n = timestamps.len() as i32;
        let mut b = BytesMut::from(&make_batch(1, -1, -1)[..HEADER_LEN]);
        b.extend_from_slice(&records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
        b[27..35].copy_from_slice(&base.to_be_bytes());
        b[35..43].copy_from_slice(&max.to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
        fix_crc(&mut b);
        b.freeze()
    }

    #[test]
    fn timestamp_deltas_are_varlongs() {
        let far = 999_999_999_999;
        let b = batch_with_timestamps(&[1_234, far]);
        let recs = stored_records(&b).unwrap();
        let ts: Vec<i64> = recs.iter().map(|r| r.unwrap().timestamp).collect();
        assert_eq!(ts, vec![1_234, far]);
    }

    /// An uncompressed batch with the given raw record bytes and header count.
    fn raw_batch(records: &[u8], count: i32) -> Bytes {
        let mut b = BytesMut::from(&make_batch(1, -1, -1)[..HEADER_LEN]);
        b.extend_from_slice(records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut b);
        b.freeze()
    }

    fn record(offset_delta: u8, key_len: u8) -> Vec<u8> {
        // attributes 0, ts delta 0, offset delta, key (zig-zag len), value null, no headers.
        let mut body = vec![0, 0, offset_delta * 2, key_len];
        let klen = if key_len == 1 {
            0
        } else {
            (key_len / 2) as usize
        };
        body.extend(std::iter::repeat_n(b'k', klen));
        body.extend([1, 0]);
        let mut r = vec![(body.len() * 2) as u8];
        r.extend(body);
        r
    }

    fn err(b: &Bytes) -> String {
        produced_batches(b, &RULES).unwrap_err().to_string()
    }

    #[test]
    fn well_formed_batches_pass_and_walk() {
        let b = make_batch(3, 7, 0);
        assert_eq!(produced_batches(&b, &RULES).unwrap().len(), 1);
        let recs = stored_records(&b).unwrap();
        let keys: Vec<_> = recs.iter().map(|r| r.unwrap().key.unwrap()).collect();
        assert_eq!(keys, vec![&b"k0"[..], b"k1", b"k2"]);
        let raw = raw_batch(&[record(0, 4), record(1, 4)].concat(), 2);
        assert!(produced_batches(&raw, &RULES).is_ok());
    }

    #[test]
    fn malformed_records_are_named() {
        // Garbage record bytes under a valid CRC.
        let e = err(&raw_batch(&[0x7f; 20], 1));
        assert!(e.contains("record 0"), "{e}");
        // Negative key length (-2 → zig-zag 3).
        let mut r = record(0, 2);
        r[4] = 3;
        assert!(err(&raw_batch(&r, 1)).contains("negative key length -2"));
        // Negative record length.
        let mut r = record(0, 2);
        r[0] = 5;
        assert!(err(&raw_batch(&r, 1)).contains("negative record length -3"));
        // A count of 10^9 with one record.
        let e = err(&raw_batch(&record(0, 2), 1_000_000_000));
        assert!(
            e.contains("declares 1000000000 records but the batch holds only 1"),
            "{e}"
        );
        // Offset deltas out of order.
        let e = err(&raw_batch(&[record(0, 2), record(5, 2)].concat(), 2));
        assert!(e.contains("record 1: offset delta 5"), "{e}");
        // A record shorter than its fields, and bytes after the last record.
        let mut r = record(0, 8);
        r[0] -= 2;
        assert!(err(&raw_batch(&r, 1)).contains("record 0"));
        let e = err(&raw_batch(&[record(0, 2), vec![9, 9]].concat(), 1));
        assert!(e.contains("2 bytes follow"), "{e}");
        // Unknown codec.
        let mut b = BytesMut::from(&make_batch(1, -1, -1)[..]);
        b[22] |= 7;
        fix_crc(&mut b);
        assert!(err(&b.freeze()).contains("unknown compression codec id 7"));
    }

    #[test]
    fn compacted_topics_need_keys_and_old_formats_are_named() {
        let rules = ProduceRules {
            require_keys: true,
            ..RULES
        };
        let nokey = raw_batch(&record(0, 1), 1);
        let e = produced_batches(&nokey, &rules).unwrap_err();
        assert!(e.to_string().contains("(the first: record 0)"), "{e}");
        let mut two = record(0, 4); // key "kk"... (zig-zag 4 = length 2)
        two.extend(record(1, 1)); // null key
        two.extend(record(2, 4));
        two.extend(record(3, 1));
        match produced_batches(&raw_batch(&two, 4), &rules) {
            Err(LogError::Records(e)) => assert_eq!(e.record_indexes(), vec![1, 3]),
            other => panic!("expected missing keys, got {other:?}"),
        }
        let mut old = BytesMut::from(&make_batch(1, -1, -1)[..]);
        old[16] = 1;
        let old = old.freeze();
        assert!(matches!(
            produced_batches(&old, &RULES),
            Err(LogError::Records(RecordError::OldMagic { magic: 1, .. }))
        ));
        let v2 = ProduceRules {
            produce_version: 2,
            ..RULES
        };
        assert!(matches!(
            produced_batches(&old, &v2),
            Err(LogError::Batch(BatchError::OldMagic(1)))
        ));
    }

    /// Builds a batch with the codec crate's encoder from arbitrary records.
    pub(crate) fn encode(records: &[Record], compression: Compression) -> Bytes {
        batch_builder::encode(records, compression).unwrap()
    }

    /// A non-idempotent record at offset `i` (partition leader epoch 0).
    pub(crate) fn rec(i: i64, key: Option<Vec<u8>>, value: Option<Vec<u8>>, ts: i64) -> Record {
        Record {
            partition_leader_epoch: 0,
            ..batch_builder::record(i, key.map(Bytes::from), value.map(Bytes::from), ts)
        }
    }

    #[test]
    fn compressed_batches_validate_and_zstd_needs_v7() {
        let records: Vec<Record> = (0..50)
            .map(|i| rec(i, Some(vec![i as u8; 3]), Some(vec![7; 100]), 1_000 + i))
            .collect();
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encode(&records, c);
            assert!(produced_batches(&b, &RULES).is_ok(), "{c:?}");
            let recs = stored_records(&b).unwrap();
            assert_eq!(recs.iter().count(), 50);
        }
        let v6 = ProduceRules {
            produce_version: 6,
            ..RULES
        };
        assert!(matches!(
            produced_batches(&encode(&records, Compression::Zstd), &v6),
            Err(LogError::Records(RecordError::ZstdNeedsV7(6)))
        ));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn compression() -> impl Strategy<Value = Compression> {
            prop_oneof![
                Just(Compression::None),
                Just(Compression::Gzip),
                Just(Compression::Snappy),
                Just(Compression::Lz4),
                Just(Compression::Zstd),
            ]
        }

        type Fields = (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Vec<(String, Option<Vec<u8>>)>,
            i32,
        );

        fn fields() -> impl Strategy<Value = Fields> {
            (
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                proptest::collection::vec(
                    (
                        "[a-z]{0,8}",
                        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                    ),
                    0..3,
                ),
                -100_000..100_000i32,
            )
        }

        /// A batch built by the codec crate's encoder (a builder that is not ours).
        fn batch() -> impl Strategy<Value = (Vec<Fields>, Compression, Bytes)> {
            (proptest::collection::vec(fields(), 1..20), compression()).prop_map(|(fs, c)| {
                let records: Vec<Record> = fs
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v, hs, ts))| {
                        let mut r = rec(i as i64, k.clone(), v.clone(), 1_000_000 + *ts as i64);
                        for (hk, hv) in hs {
                            r.headers
                                .insert(hk.clone().into(), hv.clone().map(Bytes::from));
                        }
                        r
                    })
                    .collect();
                let b = encode(&records, c);
                (fs, c, b)
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            #[test]
            fn encoded_batches_always_validate((fs, c, b) in batch()) {
                prop_assert!(produced_batches(&b, &RULES).is_ok(), "{:?}", c);
                let recs = stored_records(&b).unwrap();
                let got: Vec<_> = recs.iter().map(|r| r.unwrap()).collect();
                prop_assert_eq!(got.len(), fs.len());
                for (i, (r, (k, v, _, ts))) in got.iter().zip(&fs).enumerate() {
                    prop_assert_eq!(r.offset, i as i64);
                    prop_assert_eq!(r.key, k.as_deref());
                    prop_assert_eq!(r.value, v.as_deref());
                    prop_assert_eq!(r.timestamp, 1_000_000 + *ts as i64);
                }
            }

            /// Arbitrary byte changes (with the CRC fixed up, so the record walk is reached),
            /// header counts and truncation: never a panic, and whatever produce accepts can
            /// be read back.
            #[test]
            fn mutated_batches_never_panic(
                (_, _, b) in batch(),
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..8),
                count in proptest::option::of(any::<i32>()),
                cut in proptest::option::of(any::<proptest::sample::Index>()),
                fix in any::<bool>(),
            ) {
                let mut m = BytesMut::from(&b[..]);
                for (at, byte) in edits {
                    let i = HEADER_LEN + at.index(m.len() - HEADER_LEN);
                    m[i] = byte;
                }
                if let Some(n) = count {
                    m[57..61].copy_from_slice(&n.to_be_bytes());
                    m[23..27].copy_from_slice(&n.wrapping_sub(1).to_be_bytes());
                }
                if let Some(c) = cut {
                    let keep = HEADER_LEN + c.index(m.len() - HEADER_LEN + 1);
                    m.truncate(keep);
                    let len = (keep - 12) as i32;
                    m[8..12].copy_from_slice(&len.to_be_bytes());
                }
                if fix {
                    fix_crc(&mut m);
                }
                let m = m.freeze();
                if let Ok(batches) = produced_batches(&m, &RULES) {
                    for b in batches {
                        let recs = stored_records(&b).unwrap();
                        prop_assert!(recs.iter().all(|r| r.is_ok()));
                    }
                }
                let _ = stored_records(&m);
            }
        }
    }

    /// Not an assertion: prints what validating a 1 MiB batch costs (run with --nocapture).
    #[test]
    fn validation_cost_figure() {
        let records: Vec<Record> = (0..1024)
            .map(|i| rec(i, Some(vec![1; 16]), Some(vec![(i % 7) as u8; 1000]), i))
            .collect();
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let b = encode(&records, c);
            let start = std::time::Instant::now();
            let rules = ProduceRules {
                max_batch_bytes: 2 << 20,
                ..RULES
            };
            for _ in 0..10 {
                produced_batches(&b, &rules).unwrap();
            }
            let all = start.elapsed() / 10;
            let start = std::time::Instant::now();
            for _ in 0..10 {
                stored_records(&b).unwrap();
            }
            println!(
                "validating a 1 MiB batch of 1024 records ({c:?}, {} bytes sent): {all:?} \
                 each, of which inflating and walking the records {:?} (the rest is the CRC)",
                b.len(),
                start.elapsed() / 10
            );
        }
    }
}
