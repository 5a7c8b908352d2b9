//! Records for `topic produce` and `topic consume`: one v2 record batch per partition from
//! input lines, Kafka's default key partitioner (murmur2), complete batches parsed out of a
//! Fetch answer, and the output formats of consumed records.

use crate::protocol::batch_builder::{BatchBuildError, BatchBuilder};
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde_json::json;

/// One record to send: key (None: no key), value and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

/// Splits an input line into key and value at the first `separator` (no separator given, or
/// not found in the line: no key, the whole line is the value).
pub fn parse_line(line: &str, separator: Option<&str>, headers: &[(String, Bytes)]) -> Outgoing {
    let (key, value) = match separator.filter(|s| !s.is_empty()) {
        Some(sep) => match line.split_once(sep) {
            Some((k, v)) => (Some(Bytes::copy_from_slice(k.as_bytes())), v),
            None => (None, line),
        },
        None => (None, line),
    };
    Outgoing {
        key,
        value: Bytes::copy_from_slice(value.as_bytes()),
        headers: headers.to_vec(),
    }
}

/// Parses `k=v` (a header given on the command line).
pub fn parse_header(s: &str) -> Result<(String, Bytes), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Bytes::copy_from_slice(v.as_bytes()))),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

/// Encodes `records` as one uncompressed v2 batch (no producer id: not idempotent).
pub fn encode_batch(records: &[Outgoing], timestamp_ms: i64) -> Result<Bytes, BatchBuildError> {
    records
        .iter()
        .fold(BatchBuilder::new().timestamp(timestamp_ms), |b, r| {
            let b = b.record(r.key.as_deref(), Some(&r.value));
            r.headers.iter().fold(b, |b, (k, v)| b.header(k, Some(v)))
        })
        .build()
}

/// Kafka's default partitioner for keyed records (the Java client's murmur2, positive
/// modulo), so a key lands where a Java producer would put it.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// MurmurHash2 with the seed Kafka's `Utils.murmur2` uses.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// A record read back, with where it was found.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The data records of every complete batch in `data` (a partition's Fetch records), and
/// the offset after the last batch read (None when no complete batch was there). A trailing
/// partial batch, which Fetch may return, is left for the next fetch; control records are
/// skipped.
pub fn parse_batches(data: &Bytes) -> Result<(Vec<Record>, Option<i64>), String> {
    let mut rest = data.clone();
    let mut records = Vec::new();
    let mut next = None;
    // base offset (8) + batch length (4) + leader epoch (4) + magic (1) + crc (4) +
    // attributes (2) + last offset delta (4)
    while rest.len() >= 27 {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let batch_len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(batch_len).map_err(|_| "negative batch length")?;
        if rest.len() < total {
            break;
        }
        let last_delta = i32::from_be_bytes(rest[23..27].try_into().expect("4 bytes"));
        let mut batch = rest.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        records.extend(set.records.into_iter().filter(|r| !r.control));
        next = Some(base_offset + i64::from(last_delta) + 1);
    }
    Ok((records, next))
}

/// How consumed records are printed: a kcat-style format string or one JSON object per line.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    /// `%t` topic, `%p` partition, `%o` offset, `%k` key, `%v` (or `%s`) value, `%h` headers
    /// as `k=v,k2=v2`, `%T` timestamp (ms), `%%` a percent sign; `\n`, `\t`, `\\` escapes.
    Template(String),
    Json,
}

impl OutputFormat {
    /// `json`, or a template.
    pub fn parse(s: &str) -> Self {
        if s == "json" {
            Self::Json
        } else {
            Self::Template(s.to_string())
        }
    }

    /// The record as this format prints it (templates carry their own newlines).
    pub fn render(&self, r: &Consumed) -> String {
        match self {
            Self::Json => {
                let text =
                    |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                let headers: Vec<_> = r
                    .headers
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": text(v)}))
                    .collect();
                format!(
                    "{}\n",
                    json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "timestamp": r.timestamp,
                        "key": text(&r.key),
                        "value": text(&r.value),
                        "headers": headers,
                    })
                )
            }
            Self::Template(t) => render_template(t, r),
        }
    }
}

fn render_template(t: &str, r: &Consumed) -> String {
    let lossy = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(&r.topic),
                Some('p') => out.push_str(&r.partition.to_string()),
                Some('o') => out.push_str(&r.offset.to_string()),
                Some('k') => out.push_str(&lossy(&r.key)),
                Some('v') | Some('s') => out.push_str(&lossy(&r.value)),
                Some('T') => out.push_str(&r.timestamp.to_string()),
                Some('h') => {
                    let hs: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}={}", lossy(v)))
                        .collect();
                    out.push_str(&hs.join(","));
                }
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data) as i32, *expected, "{:?}", data);
        }
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        let o = parse_line("user1:a:b", Some(":"), &[]);
        assert_eq!(o.key.as_deref(), Some(&b"user1"[..]));
        assert_eq!(&o.value[..], b"a:b");
        let o = parse_line("novalue", Some(":"), &[]);
        assert_eq!(o.key, None);
        assert_eq!(
            parse_line("k:v", None, &[]).value,
            Bytes::from_static(b"k:v")
        );
    }

    #[test]
    fn batches_round_trip_with_keys_and_headers() {
        let h = vec![parse_header("source=web").unwrap()];
        let recs = vec![
            parse_line("k1=v1", Some("="), &h),
            parse_line("v2", Some("="), &h),
        ];
        let mut batch = BytesMut::from(&encode_batch(&recs, 1234).unwrap()[..]);
        // The broker assigns offsets: rewrite the base offset as 7.
        batch[0..8].copy_from_slice(&7i64.to_be_bytes());
        let mut data = batch.to_vec();
        data.extend_from_slice(&[0, 0, 0]); // a partial trailing batch
        let (out, next) = parse_batches(&Bytes::from(data)).unwrap();
        // one batch: the base sequence (bytes 53..57) is -1, as for a non-idempotent producer
        assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), -1);
        assert_eq!(next, Some(9));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].offset, 7);
        assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(out[1].key, None);
        assert_eq!(out[1].headers.len(), 1);
    }

    #[test]
    fn templates_expand_like_kcat() {
        let r = Consumed {
            topic: "t".into(),
            partition: 2,
            offset: 5,
            timestamp: 9,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("a".into(), Some(Bytes::from_static(b"1")))],
        };
        let f = OutputFormat::parse("%t/%p@%o %k=%v %h %T 100%%\\n");
        assert_eq!(f.render(&r), "t/2@5 k=v a=1 9 100%\n");
    }
}
