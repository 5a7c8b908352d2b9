//! The one way the broker inflates compressed records: every codec goes through a reader that
//! stops at a limit, so a small batch that inflates to gigabytes (a compression bomb) is
//! refused after reading `limit + 1` bytes instead of exhausting memory.
//!
//! The limit is a function of the batch alone ([`inflate_limit`]: 64 × the batch's size, at
//! least 64 MiB), not of a topic setting that may change later: a batch the produce check
//! accepted can always be inflated again by compaction, ListOffsets and the offsets loader.
//! Produce already caps a batch at `max.message.bytes` (1 MiB by default), so with the
//! defaults nothing a client sends inflates beyond 64 MiB. Kafka has no such cap (it inflates
//! record by record as it walks the batch); this is a deliberate difference.
//!
//! May depend on: the codec crates (`flate2`, `snap`, `lz4`, `zstd`) and `bytes`.

use std::io::Read;

use bytes::Bytes;

/// How many times its own size a batch's records may inflate to.
pub const INFLATE_RATIO: usize = 64;

/// Batches smaller than this are allowed to inflate as if they were this large.
pub const INFLATE_FLOOR: usize = 1 << 20;

/// The most bytes the records of a batch of `batch_len` bytes may inflate to.
pub fn inflate_limit(batch_len: usize) -> usize {
    batch_len.max(INFLATE_FLOOR).saturating_mul(INFLATE_RATIO)
}

/// A record batch's compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec named by a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, DecompressError> {
        Ok(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            id => return Err(DecompressError::UnknownCodec(id)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why compressed records could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error(
        "unknown compression codec id {0} in the batch attributes \
         (known: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)"
    )]
    UnknownCodec(i16),
    #[error(
        "{codec} records inflate to more than {limit} bytes ({INFLATE_RATIO} × the batch size, \
         at least {INFLATE_RATIO} MiB); refused as a likely compression bomb"
    )]
    TooLarge { codec: &'static str, limit: usize },
    #[error("{codec} records do not decompress: {reason}")]
    Malformed { codec: &'static str, reason: String },
}

/// The largest zstd window accepted: 16 MiB. Producers compress batches of about a megabyte,
/// and zstd levels 1-19 use windows of at most 8 MiB; only the "ultra" levels 20-22 with
/// large inputs declare more, and such batches are refused as malformed.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Inflates `data` (the records part of a batch) with `codec`, refusing output beyond `limit`
/// bytes. Uncompressed data is returned as is (no copy).
pub fn decompress(codec: Codec, data: Bytes, limit: usize) -> Result<Bytes, DecompressError> {
    let malformed = |reason: String| DecompressError::Malformed {
        codec: codec.name(),
        reason,
    };
    match codec {
        Codec::None => Ok(data),
        Codec::Gzip => bounded(flate2::read::MultiGzDecoder::new(&data[..]), codec, limit),
        Codec::Lz4 => {
            let d = lz4::Decoder::new(&data[..]).map_err(|e| malformed(e.to_string()))?;
            bounded(d, codec, limit)
        }
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(&data[..])
                .map_err(|e| malformed(e.to_string()))?;
            // The decoder allocates the window a frame declares before producing output, so
            // a tiny frame could cost 128 MiB (zstd's default cap) per decompression in flight.
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| malformed(e.to_string()))?;
            bounded(d, codec, limit)
        }
        Codec::Snappy => snappy(&data, limit),
    }
}

/// Reads `r` to its end, or fails once it yields more than `limit` bytes. The output buffer
/// never grows beyond `limit` (it doubles, capped there), so memory stays within the limit
/// plus one 64 KiB chunk whatever the input claims.
fn bounded<R: Read>(mut r: R, codec: Codec, limit: usize) -> Result<Bytes, DecompressError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecompressError::Malformed {
                    codec: codec.name(),
                    reason: e.to_string(),
                })
            }
        };
        if n > limit - out.len() {
            return Err(DecompressError::TooLarge {
                codec: codec.name(),
                limit,
            });
        }
        if out.capacity() - out.len() < n {
            let want = (out.capacity() * 2).max(out.len() + n).min(limit);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out.into())
}

/// The header of snappy-java's framing (Java clients), followed by a version and a
/// compatible-version i32; then blocks of (i32 length, raw snappy data).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Snappy as Kafka clients send it: raw snappy (librdkafka) or snappy-java's framing (Java).
/// The inflated size is declared up front in each raw block, so it is checked before any
/// output is allocated.
fn snappy(data: &[u8], limit: usize) -> Result<Bytes, DecompressError> {
    let malformed = |reason: String| DecompressError::Malformed {
        codec: "snappy",
        reason,
    };
    let too_large = || DecompressError::TooLarge {
        codec: "snappy",
        limit,
    };
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let n = snap::raw::decompress_len(raw).map_err(|e| malformed(e.to_string()))?;
        if n > limit - out.len() {
            return Err(too_large());
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|e| malformed(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if data.len() >= XERIAL_HEADER_LEN && data.starts_with(XERIAL_MAGIC) {
        let mut rest = &data[XERIAL_HEADER_LEN..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(malformed("truncated snappy-java block length".into()));
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if len > rest.len() {
                return Err(malformed(format!(
                    "snappy-java block of {len} bytes, only {} left",
                    rest.len()
                )));
            }
            block(&rest[..len], &mut out)?;
            rest = &rest[len..];
        }
    } else {
        block(data, &mut out)?;
    }
    Ok(out.into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A zstd frame of `len` zero bytes built from RLE blocks (4 bytes per 128 KiB), so a
    /// test can make a bomb of any size without compressing anything.
    pub(crate) fn zstd_zeros_frame(len: usize) -> Vec<u8> {
        const BLOCK: usize = 128 << 10;
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // magic, no content size, 128 KiB window
        let mut left = len;
        loop {
            let n = left.min(BLOCK);
            left -= n;
            let last = (left == 0) as u32;
            let h = last | (1 << 1) | ((n as u32) << 3); // RLE block of n bytes
            f.extend_from_slice(&h.to_le_bytes()[..3]);
            f.push(0);
            if left == 0 {
                return f;
            }
        }
    }

    #[test]
    fn a_zstd_frame_declaring_a_huge_window_is_refused_before_allocating_it() {
        let mut frame = zstd_zeros_frame(1000);
        // Window descriptor: exponent (byte >> 3) + 10, so 0x88 declares 2^27 = 128 MiB.
        frame[5] = 0x88;
        assert!(matches!(
            decompress(Codec::Zstd, frame.into(), 1 << 20),
            Err(DecompressError::Malformed { codec: "zstd", .. })
        ));
        let mut frame = zstd_zeros_frame(1000);
        frame[5] = (ZSTD_WINDOW_LOG_MAX as u8 - 10) << 3; // exactly the largest accepted
        assert_eq!(
            decompress(Codec::Zstd, frame.into(), 1 << 20)
                .unwrap()
                .len(),
            1000
        );
    }

    #[test]
    fn a_small_zstd_bomb_is_cut_off_at_the_limit() {
        let bomb = zstd_zeros_frame(1 << 30);
        assert!(bomb.len() < 40 << 10, "{} bytes", bomb.len());
        assert_eq!(
            decompress(Codec::Zstd, zstd_zeros_frame(1000).into(), 1000).unwrap(),
            vec![0u8; 1000]
        );
        assert!(matches!(
            decompress(Codec::Zstd, bomb.into(), inflate_limit(40 << 10)),
            Err(DecompressError::TooLarge { codec: "zstd", .. })
        ));
    }

    fn zeros(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
        match codec {
            Codec::None => data.to_vec(),
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            Codec::Lz4 => {
                let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
                e.write_all(data).unwrap();
                e.finish().0
            }
            Codec::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
        }
    }

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in ALL {
            let z = compress(c, &data);
            assert_eq!(&decompress(c, z.into(), data.len()).unwrap()[..], &data[..]);
        }
    }

    #[test]
    fn output_beyond_the_limit_is_refused() {
        let data = zeros(1 << 20);
        for c in ALL.into_iter().skip(1) {
            let z = compress(c, &data);
            assert!(z.len() < 64 << 10, "{c:?} compresses zeros well");
            assert_eq!(
                decompress(c, z.into(), (1 << 20) - 1),
                Err(DecompressError::TooLarge {
                    codec: c.name(),
                    limit: (1 << 20) - 1
                }),
                "{c:?}"
            );
        }
    }

    #[test]
    fn snappy_java_framing_is_understood_and_bounded() {
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for part in [&b"hello "[..], &b"world"[..]] {
            let z = compress(Codec::Snappy, part);
            framed.extend_from_slice(&(z.len() as u32).to_be_bytes());
            framed.extend_from_slice(&z);
        }
        let out = decompress(Codec::Snappy, framed.clone().into(), 100).unwrap();
        assert_eq!(&out[..], b"hello world");
        assert!(matches!(
            decompress(Codec::Snappy, framed.into(), 8),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_unknown_codecs_are_errors() {
        for c in ALL.into_iter().skip(1) {
            assert!(matches!(
                decompress(c, Bytes::from_static(b"\x01\x02garbage!"), 1 << 20),
                Err(DecompressError::Malformed { .. })
            ));
        }
        assert_eq!(
            Codec::from_attributes(7),
            Err(DecompressError::UnknownCodec(7))
        );
        assert_eq!(Codec::from_attributes(0x14), Ok(Codec::Zstd));
    }

    #[test]
    fn the_limit_scales_with_the_batch() {
        assert_eq!(inflate_limit(100), 64 << 20);
        assert_eq!(inflate_limit(2 << 20), 128 << 20);
    }
}
