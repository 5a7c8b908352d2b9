//! Bounded decompression of a record batch's records section: gzip, snappy (raw, or the
//! xerial framing Java producers write), lz4 (frame format) and zstd, each read through a
//! reader that stops once the output passes a limit. A compression bomb is refused with an
//! error after at most `limit` bytes of output; nothing here allocates by a size the input
//! declares. Depends on nothing in the crate.

use std::io::Read;

/// Kafka's codec ids (the low three bits of a batch's attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a batch's attributes, or `None` for an id Kafka does not define.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        Some(match attributes & 0x07 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }
}

/// Why a records section could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("records inflate to more than {limit} bytes (a compression bomb or a batch far above the broker's limits)")]
    TooLarge { limit: usize },
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt { codec: Codec, reason: String },
}

/// Decompresses `data` with `codec`, refusing output above `limit` bytes. `Codec::None`
/// returns a copy (checked against the limit too).
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Codec::None => {
            if data.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            Ok(data.to_vec())
        }
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), limit, codec),
        Codec::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(data).map_err(corrupt)?;
            read_bounded(d, limit, codec)
        }
        Codec::Lz4 => {
            let d = lz4::Decoder::new(data).map_err(corrupt)?;
            read_bounded(d, limit, codec)
        }
        Codec::Snappy => snappy(data, limit),
    }
}

/// Reads `r` to its end, failing once more than `limit` bytes came out. The buffer grows with
/// the bytes actually produced.
fn read_bounded<R: Read>(r: R, limit: usize, codec: Codec) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

/// The xerial snappy-java stream header: magic, then version and compatible version (i32 each).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt {
        codec: Codec::Snappy,
        reason,
    };
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        // The declared length is checked against the limit before anything is allocated.
        let len = snap::raw::decompress_len(raw).map_err(|e| corrupt(e.to_string()))?;
        if out.len().saturating_add(len) > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(start + n);
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("truncated xerial block length".into()));
        };
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| corrupt("negative xerial block length".into()))?;
        let raw = tail
            .get(..len)
            .ok_or_else(|| corrupt("truncated xerial block".into()))?;
        block(raw, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, r) = e.finish();
        r.unwrap();
        out
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for chunk in data.chunks(1000) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as i32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let cases = [
            (Codec::None, data.clone()),
            (Codec::Gzip, gzip(&data)),
            (
                Codec::Snappy,
                snap::raw::Encoder::new().compress_vec(&data).unwrap(),
            ),
            (Codec::Snappy, xerial(&data)),
            (Codec::Lz4, lz4(&data)),
            (Codec::Zstd, zstd::encode_all(&data[..], 3).unwrap()),
        ];
        for (codec, compressed) in cases {
            assert_eq!(
                decompress(codec, &compressed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let limit = 1 << 20;
        let cases = [
            (Codec::Gzip, gzip(&zeros)),
            (
                Codec::Snappy,
                snap::raw::Encoder::new().compress_vec(&zeros).unwrap(),
            ),
            (Codec::Snappy, xerial(&zeros)),
            (Codec::Lz4, lz4(&zeros)),
            (Codec::Zstd, zstd::encode_all(&zeros[..], 3).unwrap()),
        ];
        for (codec, bomb) in cases {
            assert!(bomb.len() < limit / 2, "{codec:?} compresses");
            assert!(
                matches!(
                    decompress(codec, &bomb, limit),
                    Err(DecompressError::TooLarge { .. })
                ),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            for junk in [&b""[..], b"\x00", b"\x82SNAPPY\x00\x00", &[0xff; 64]] {
                let _ = decompress(codec, junk, 1 << 20);
            }
        }
        assert!(Codec::from_attributes(7).is_none());
        assert_eq!(Codec::from_attributes(0x14), Some(Codec::Zstd));
    }
}
