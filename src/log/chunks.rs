//! How a stored record batch is laid out over sled keys: whole under its batch key when it
//! is at most [`MAX_INLINE_VALUE`] bytes, otherwise its first [`MAX_INLINE_VALUE`] bytes
//! under the batch key and the rest in chunks of at most that size under chunk keys.
//!
//! Why: sled keeps a tree leaf (up to 17 entries) in its log only while the whole leaf is
//! below a quarter of a segment; a larger leaf becomes a blob file, which stalls the writer
//! and which sled's page cache does not count, so memory grows with data written (see
//! `sled_config`). Chunking bounds every leaf at 17 × [`MAX_INLINE_VALUE`] plus keys,
//! whatever the producers' batch sizes, up to `message.max.bytes`.
//!
//! Keys: `b` + base offset (big-endian) → the batch, or its head; `c` + base offset +
//! chunk number (big-endian u16, from 1) → the following chunks. `c` sorts between `b` and
//! `e`, so scans over batch keys never see chunks. A batch is chunked exactly when its head
//! is shorter than the size the batch declares (12 + its batchLength field), so batches
//! written before this layout (whole under the batch key, whatever their size) read as they
//! are. Every write goes through a `sled::Batch` of the partition's tree, so a batch and its
//! chunks are written and removed atomically.
//!
//! May depend on: `sled`, `bytes`, `super::sled_config`.

use bytes::{Bytes, BytesMut};

use super::partition::batch_key;
pub use super::sled_config::MAX_INLINE_VALUE;
use super::LogError;

/// The key of chunk `n` (from 1) of the batch at `base_offset`.
pub(super) fn chunk_key(base_offset: i64, n: u16) -> [u8; 11] {
    let mut k = [0u8; 11];
    k[0] = b'c';
    k[1..9].copy_from_slice(&base_offset.to_be_bytes());
    k[9..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The size a stored batch declares (12 + batchLength), read from its first 12 bytes;
/// `head.len()` when they are not there.
pub(super) fn declared_len(head: &[u8]) -> usize {
    if head.len() < 12 {
        return head.len();
    }
    let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    usize::try_from(len).map_or(head.len(), |l| l.saturating_add(12))
}

/// Adds the writes that store `batch` at `base_offset` to `write`.
pub(super) fn put(write: &mut sled::Batch, base_offset: i64, batch: &[u8]) {
    let mut parts = batch.chunks(MAX_INLINE_VALUE);
    write.insert(&batch_key(base_offset), parts.next().unwrap_or_default());
    for (n, part) in parts.enumerate() {
        write.insert(&chunk_key(base_offset, n as u16 + 1), part);
    }
}

/// Adds the removal of the chunks of every batch based in `from..to` to `write` (the batch
/// keys themselves are the caller's).
pub(super) fn remove_range(
    tree: &sled::Tree,
    write: &mut sled::Batch,
    from: i64,
    to: i64,
) -> Result<(), LogError> {
    if from >= to {
        return Ok(());
    }
    for k in tree.range(chunk_key(from, 0)..chunk_key(to, 0)).keys() {
        write.remove(k?);
    }
    Ok(())
}

/// Adds the removal of the batch at `base_offset`, chunks included, to `write`.
pub(super) fn remove_one(
    tree: &sled::Tree,
    write: &mut sled::Batch,
    base_offset: i64,
) -> Result<(), LogError> {
    write.remove(&batch_key(base_offset));
    remove_range(tree, write, base_offset, base_offset.saturating_add(1))
}

/// Appends the whole batch whose head (the value under its batch key) is `head` to `out`.
/// Returns false, leaving `out` as it was, when chunks are missing: the batch was deleted
/// (retention, truncation) between reading its head and its chunks.
pub(super) fn extend_whole(
    tree: &sled::Tree,
    base_offset: i64,
    head: &[u8],
    out: &mut BytesMut,
) -> Result<bool, LogError> {
    let want = declared_len(head);
    if head.len() >= want {
        out.extend_from_slice(head);
        return Ok(true);
    }
    let mark = out.len();
    out.reserve(want);
    out.extend_from_slice(head);
    let mut next = 1u16;
    for kv in tree.range(chunk_key(base_offset, 1)..chunk_key(base_offset.saturating_add(1), 0)) {
        let (k, v) = kv?;
        if k.as_ref() != chunk_key(base_offset, next) || out.len() - mark + v.len() > want {
            break;
        }
        out.extend_from_slice(&v);
        next = next.wrapping_add(1);
    }
    if out.len() - mark != want {
        out.truncate(mark);
        return Ok(false);
    }
    Ok(true)
}

/// The whole batch whose head is `head`, or `None` when its chunks are gone (see
/// [`extend_whole`]).
pub(super) fn whole(
    tree: &sled::Tree,
    base_offset: i64,
    head: &[u8],
) -> Result<Option<Bytes>, LogError> {
    let mut out = BytesMut::new();
    Ok(extend_whole(tree, base_offset, head, &mut out)?.then(|| out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn big_batch(bytes: usize) -> Bytes {
        // make_batch's records are small; pad the batch by declaring and appending bytes
        // (the layout only looks at the length field).
        let b = make_batch(1, -1, -1);
        let mut v = BytesMut::from(&b[..]);
        v.resize(bytes, 7);
        let len = (bytes - 12) as i32;
        v[8..12].copy_from_slice(&len.to_be_bytes());
        v.freeze()
    }

    #[test]
    fn large_batches_round_trip_through_chunks_and_small_ones_stay_whole() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let small = big_batch(1000);
        let large = big_batch(MAX_INLINE_VALUE * 3 + 5);
        let exact = big_batch(MAX_INLINE_VALUE * 2);
        let mut w = sled::Batch::default();
        put(&mut w, 10, &small);
        put(&mut w, 20, &large);
        put(&mut w, 30, &exact);
        tree.apply_batch(w).unwrap();
        assert_eq!(tree.len(), 1 + 4 + 2);
        for (off, b) in [(10, &small), (20, &large), (30, &exact)] {
            let head = tree.get(batch_key(off)).unwrap().unwrap();
            assert!(head.len() <= MAX_INLINE_VALUE);
            assert_eq!(&whole(&tree, off, &head).unwrap().unwrap(), b);
        }
        // Removing a range takes the chunks of the batches in it and no others.
        let mut w = sled::Batch::default();
        remove_range(&tree, &mut w, 0, 30).unwrap();
        w.remove(&batch_key(20));
        tree.apply_batch(w).unwrap();
        assert_eq!(tree.len(), 1 + 2);
        let head = tree.get(batch_key(30)).unwrap().unwrap();
        assert_eq!(&whole(&tree, 30, &head).unwrap().unwrap(), &exact);
        let mut w = sled::Batch::default();
        remove_one(&tree, &mut w, 30).unwrap();
        tree.apply_batch(w).unwrap();
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn a_batch_whose_chunks_are_gone_reads_as_missing() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let large = big_batch(MAX_INLINE_VALUE + 100);
        let mut w = sled::Batch::default();
        put(&mut w, 5, &large);
        tree.apply_batch(w).unwrap();
        let head = tree.get(batch_key(5)).unwrap().unwrap();
        tree.remove(chunk_key(5, 1)).unwrap();
        let mut out = BytesMut::from(&b"xy"[..]);
        assert!(!extend_whole(&tree, 5, &head, &mut out).unwrap());
        assert_eq!(&out[..], b"xy");
    }
}
