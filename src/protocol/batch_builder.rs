//! Builds Kafka v2 record batches the way a client does, with the `kafka-protocol` crate's
//! encoder (an encoder that is not ours): the one batch builder for code that writes records
//! itself (the `__consumer_offsets` store, the admin CLI's producer) and for tests.
//!
//! A batch from [`BatchBuilder`] is one batch: records get offsets 0, 1, … and sequences
//! `base_sequence + i`, so the encoder (which starts a new batch wherever `offset - sequence`
//! changes) keeps them together, and a producer that is not idempotent gets base sequence -1.
//!
//! May depend on: `kafka-protocol` and `bytes` only (like the rest of `protocol`).

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Encoding a batch failed (in practice only a compression codec can fail).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a {compression:?} record batch of {records} record(s)")]
pub struct BatchBuildError {
    /// The batch's compression.
    pub compression: Compression,
    /// How many records it held.
    pub records: usize,
    /// What the encoder said.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// One record of a producer that is not idempotent (producer id and epoch -1), at `offset`
/// with sequence `offset - 1`, creation time `timestamp` and no headers; the building block
/// for tests that shape records one by one before [`encode`].
pub fn record(offset: i64, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32 - 1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// Encodes `records` as v2 batches with `compression` (one batch as long as the records
/// agree on producer, epoch, leader epoch and `offset - sequence`).
pub fn encode(records: &[Record], compression: Compression) -> Result<Bytes, BatchBuildError> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| BatchBuildError {
        compression,
        records: records.len(),
        source: e.into(),
    })?;
    Ok(buf.freeze())
}

/// A v2 record batch under construction: records in order, one producer, one compression.
///
/// ```
/// use raftka::protocol::batch_builder::BatchBuilder;
/// let batch = BatchBuilder::new()
///     .timestamp(1_000)
///     .record(Some(b"k"), Some(b"v"))
///     .header("h", Some(b"x"))
///     .value(b"no key")
///     .build()
///     .unwrap();
/// assert_eq!(i32::from_be_bytes(batch[57..61].try_into().unwrap()), 2); // record count
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<Record>,
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    partition_leader_epoch: i32,
    timestamp: i64,
    transactional: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty, uncompressed batch of a producer that is not idempotent (producer id, epoch
    /// and base sequence -1), partition leader epoch -1 (what clients send), timestamp 0.
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            partition_leader_epoch: -1,
            timestamp: 0,
            transactional: false,
        }
    }

    /// Marks the batch transactional (a transactional producer's records; needs a producer).
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// The producer id, epoch and the first record's sequence (idempotent producers).
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// The batch's compression codec.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The partition leader epoch written in the batch header.
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// The creation timestamp of the records added after this call.
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = timestamp_ms;
        self
    }

    /// Appends a record with this key and value (None: null).
    pub fn record(mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        let offset = self.records.len() as i64;
        self.records.push(record(
            offset,
            key.map(Bytes::copy_from_slice),
            value.map(Bytes::copy_from_slice),
            self.timestamp,
        ));
        self
    }

    /// Appends a record with no key.
    pub fn value(self, value: &[u8]) -> Self {
        self.record(None, Some(value))
    }

    /// Appends a record for each value, with no key.
    pub fn values<V: AsRef<[u8]>>(self, values: impl IntoIterator<Item = V>) -> Self {
        values.into_iter().fold(self, |b, v| b.value(v.as_ref()))
    }

    /// Adds a header (None: a null value) to the last record; no-op when there is none.
    pub fn header(mut self, key: &str, value: Option<&[u8]>) -> Self {
        if let Some(r) = self.records.last_mut() {
            r.headers.insert(
                StrBytes::from_string(key.to_string()),
                value.map(Bytes::copy_from_slice),
            );
        }
        self
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The encoded batch (empty bytes when there is no record).
    pub fn build(&self) -> Result<Bytes, BatchBuildError> {
        let records: Vec<Record> = self
            .records
            .iter()
            .cloned()
            .map(|mut r| {
                r.producer_id = self.producer_id;
                r.producer_epoch = self.producer_epoch;
                r.partition_leader_epoch = self.partition_leader_epoch;
                r.sequence = self.base_sequence.wrapping_add(r.offset as i32);
                r.transactional = self.transactional;
                r
            })
            .collect();
        encode(&records, self.compression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn header_i32(b: &[u8], at: usize) -> i32 {
        i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn one_batch_with_offsets_sequences_and_producer() {
        let b = BatchBuilder::new()
            .producer(7, 2, 10)
            .partition_leader_epoch(3)
            .timestamp(5)
            .values(["a", "b", "c"])
            .build()
            .unwrap();
        assert_eq!(
            header_i32(&b, 8) as usize,
            b.len() - 12,
            "one batch: its length is all"
        );
        assert_eq!(header_i32(&b, 12), 3, "partition leader epoch");
        assert_eq!(header_i32(&b, 23), 2, "last offset delta");
        assert_eq!(i64::from_be_bytes(b[43..51].try_into().unwrap()), 7);
        assert_eq!(i16::from_be_bytes(b[51..53].try_into().unwrap()), 2);
        assert_eq!(header_i32(&b, 53), 10, "base sequence");
        assert_eq!(header_i32(&b, 57), 3, "record count");
    }

    #[test]
    fn not_idempotent_by_default_and_round_trips_through_the_decoder() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = BatchBuilder::new()
                .compression(c)
                .timestamp(1_000)
                .record(Some(b"k"), None)
                .header("h", Some(b""))
                .header("g", Some(b"x"))
                .timestamp(2_000)
                .value(b"v")
                .build()
                .unwrap();
            assert_eq!(header_i32(&b, 53), -1, "base sequence");
            let mut bytes = b.clone();
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            let recs = &set.records;
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(recs[0].value, None);
            assert_eq!(recs[0].timestamp, 1_000);
            assert_eq!(recs[0].headers.len(), 2);
            assert_eq!(recs[1].key, None);
            assert_eq!(recs[1].value.as_deref(), Some(&b"v"[..]));
            assert_eq!(recs[1].timestamp, 2_000);
        }
    }

    #[test]
    fn an_empty_builder_builds_nothing() {
        let b = BatchBuilder::new();
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert!(b.build().unwrap().is_empty());
    }
}
