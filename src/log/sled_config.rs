//! How the broker opens its sled database: the segment size (with the one an existing data
//! directory recorded taking precedence), the page cache bound, and the size limits that
//! follow from the segment size for what sled keeps inline in its log.
//!
//! Why the segment size matters (measured, issue 12): sled writes any log entry larger than
//! a quarter of a segment to a blob file of its own, created on the writing thread and later
//! unlinked while the segment accountant's lock is held. Worse for memory, sled's page cache
//! counts a blob-backed tree node by the size of its pointer, not of its content, so nodes held
//! in blobs are never pushed out by `cache_capacity`: the broker's resident memory grew by
//! about one byte per byte written. A sled tree node holds up to 17 entries (leaves split
//! past 16) and is rewritten whole every tenth change, so the entry that matters is the whole
//! leaf, not one batch: with sled's default 512 KiB segments any leaf above ~128 KiB (17
//! batches of 8 KiB) was a blob. New data directories therefore get sled's largest segment
//! (16 MiB: leaves up to ~4 MiB stay inline) and `log::partition` stores batches above
//! [`MAX_INLINE_VALUE`] in chunks, so a full leaf stays below the inline limit.
//!
//! sled refuses to open a directory with a segment size other than the one it recorded in
//! its `conf` file, so an existing directory is opened with its recorded size.
//!
//! May depend on: `sled`, std.

use std::path::Path;

use super::LogError;

/// Segment size given to new data directories: sled's largest (it refuses more than 16 MiB).
pub const DEFAULT_SEGMENT_BYTES: usize = 16 << 20;
/// sled's own default segment size, which data directories created before
/// `sled.segment.bytes` existed recorded.
pub const SLED_DEFAULT_SEGMENT_BYTES: usize = 512 << 10;
/// Smallest segment size the broker accepts (`sled.segment.bytes`, checked in config.rs;
/// sled's own floor is 256 bytes, which would turn almost every write into a blob file).
pub const MIN_SEGMENT_BYTES: usize = 64 << 10;
/// Largest segment size sled accepts.
pub const MAX_SEGMENT_BYTES: usize = 16 << 20;

/// sled writes a log entry (header included) as a blob file when it is larger than a quarter
/// of a segment less the segment header (`MINIMUM_ITEMS_PER_SEGMENT`, `SEG_HEADER_LEN`,
/// `MAX_MSG_HEADER_LEN` in sled 0.34's pagecache constants).
pub fn inline_limit(segment_bytes: usize) -> usize {
    segment_bytes / 4 - 20 - 32
}

/// Largest value the partition logs store under one sled key; longer batches are split into
/// chunks of this size. A leaf of sled's tree holds at most 17 entries, so a leaf of
/// chunk-sized values (plus keys and sled's per-entry overhead) stays inline with 16 MiB
/// segments: 17 × 192 KiB ≈ 3.2 MiB < [`inline_limit`] (~4 MiB).
pub const MAX_INLINE_VALUE: usize = 192 << 10;

/// Most entries a sled leaf holds before it is written (sled 0.34 splits a leaf once it has
/// more than 16).
pub const LEAF_ENTRIES: usize = 17;

/// Settings for opening the broker's sled database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledSettings {
    /// `sled.cache.capacity.bytes`: sled's page cache.
    pub cache_bytes: u64,
    /// `sled.segment.bytes`: the segment size of a new data directory.
    pub segment_bytes: usize,
    /// `log.flush.interval.ms`: how often sled writes its buffers out and fsyncs.
    pub flush_every_ms: u64,
}

/// An open database and the segment size it runs with.
pub struct OpenedDb {
    pub db: sled::Db,
    pub segment_bytes: usize,
    /// True when the directory's recorded segment size was used instead of the setting.
    pub kept_recorded_size: bool,
}

/// The segment size recorded in the sled database at `dir` (its `conf` file: text lines
/// `name: value` followed by a 4-byte checksum), or `None` when there is no database yet.
/// sled ignores a `conf` file of 8 bytes or less as unwritten; so does this.
pub fn recorded_segment_size(dir: &Path) -> Result<Option<usize>, LogError> {
    let path = dir.join("conf");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::Storage(sled::Error::Io(e))),
    };
    if bytes.len() <= 8 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len() - 4]);
    text.lines()
        .find_map(|l| l.strip_prefix("segment_size:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            LogError::Corrupt(format!(
                "{} has no readable segment_size line; restore it from a backup, or move the \
                 data directory away to start empty",
                path.display()
            ))
        })
}

/// Opens (or creates) the broker's database at `dir`: a new directory gets
/// `settings.segment_bytes`, an existing one the segment size it recorded.
pub fn open(dir: &Path, settings: &SledSettings) -> Result<OpenedDb, LogError> {
    let recorded = recorded_segment_size(dir)?;
    let segment_bytes = recorded.unwrap_or(settings.segment_bytes);
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(settings.cache_bytes)
        .flush_every_ms(Some(settings.flush_every_ms))
        .segment_size(segment_bytes)
        .open()?;
    Ok(OpenedDb {
        db,
        segment_bytes,
        kept_recorded_size: recorded.is_some_and(|r| r != settings.segment_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(segment_bytes: usize) -> SledSettings {
        SledSettings {
            cache_bytes: 8 << 20,
            segment_bytes,
            flush_every_ms: 500,
        }
    }

    #[test]
    fn a_new_directory_records_the_configured_segment_size() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_segment_size(dir.path()).unwrap(), None);
        let opened = open(dir.path(), &settings(DEFAULT_SEGMENT_BYTES)).unwrap();
        assert_eq!(opened.segment_bytes, DEFAULT_SEGMENT_BYTES);
        assert!(!opened.kept_recorded_size);
        drop(opened);
        assert_eq!(
            recorded_segment_size(dir.path()).unwrap(),
            Some(DEFAULT_SEGMENT_BYTES)
        );
    }

    /// Opens `dir`, waiting (up to 10 s) while a database dropped in this process still holds
    /// sled's file lock: sled releases it only when its background flusher thread lets go.
    fn open_once_unlocked(dir: &Path, s: &SledSettings) -> OpenedDb {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match open(dir, s) {
                Ok(o) => return o,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("cannot reopen {}: {e}", dir.display()),
            }
        }
    }

    #[test]
    fn a_directory_created_with_sleds_default_segment_size_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            // As the broker opened it before sled.segment.bytes existed.
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            db.insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        // sled itself refuses the new size for this directory...
        assert!(sled::Config::new()
            .path(dir.path())
            .segment_size(DEFAULT_SEGMENT_BYTES)
            .open()
            .is_err());
        // ...so the broker keeps the recorded one. (sled checks the size before it takes the
        // directory's file lock, so the refusal above is about the size; the open below may
        // still meet the lock of the dropped database, held until its flusher thread ends.)
        let opened = open_once_unlocked(dir.path(), &settings(DEFAULT_SEGMENT_BYTES));
        assert_eq!(opened.segment_bytes, SLED_DEFAULT_SEGMENT_BYTES);
        assert!(opened.kept_recorded_size);
        assert_eq!(opened.db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn an_unreadable_conf_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf"), b"use_compression: false\nxxxx").unwrap();
        let e = open(dir.path(), &settings(DEFAULT_SEGMENT_BYTES))
            .err()
            .unwrap();
        assert!(e.to_string().contains("segment_size"), "{e}");
    }

    #[test]
    fn a_full_leaf_of_chunk_sized_values_stays_inline_with_the_default_segment() {
        // keys are at most 11 bytes; allow sled 64 bytes of framing per entry.
        let leaf = LEAF_ENTRIES * (MAX_INLINE_VALUE + 11 + 64);
        assert!(leaf < inline_limit(DEFAULT_SEGMENT_BYTES), "{leaf}");
    }
}
