//! The free-space guard of the data directory (`log.dir.min.free.bytes`).
//!
//! Why: sled 0.34 cannot recover from a failed write in-process. When a write of its log
//! fails (ENOSPC), it records a global error and refuses every later write until the
//! database is reopened, and the records of the failed buffer never reach the disk. So the
//! broker must not let sled run out of space: appends (produce and replica fetches) are
//! refused with KAFKA_STORAGE_ERROR while the file system has less free space than the
//! reserve, everything else — reads, metadata, offset commits, DeleteTopics,
//! DeleteRecords, retention — goes on and may use the reserve, and appends resume by
//! themselves once space is freed. A full episode is logged once when it starts and once
//! when it ends.
//!
//! Space freed by deleting data is not always given back to the file system: sled reuses
//! the freed parts of its file for new writes but only shrinks the file when they are at its
//! end. So after data was deleted during a low-space episode ([`DiskSpace::space_freed`]),
//! appends are let through again down to half the reserve: if sled fills the freed room,
//! the file system's free space does not move; if it does not, the other half of the reserve
//! is still there when appends stop again (until the next deletion).
//!
//! May depend on: `libc` (statvfs). Nothing else in the crate.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::LogError;

/// The reserve of one data directory.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    /// Appends are refused below this many free bytes; 0 disables the guard.
    min_free: u64,
    state: Mutex<State>,
    /// A write failed and was logged; cleared by the next successful write.
    write_failing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// The last reading.
    free: u64,
    /// Inside a low-space episode (logged when it starts and ends).
    low: bool,
    /// Data was deleted during this episode: appends may go down to half the reserve.
    relaxed: bool,
}

impl DiskSpace {
    /// A guard for `dir` keeping `min_free` bytes free (0: no guard).
    pub fn new(dir: &Path, min_free: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            min_free,
            state: Mutex::new(State::default()),
            write_failing: AtomicBool::new(false),
        }
    }

    /// No guard (tests and logs without a data directory of their own).
    pub fn unlimited() -> Self {
        Self::new(Path::new("."), 0)
    }

    /// Ok when an append may go ahead; [`LogError::NoSpace`] while space is short.
    pub fn check_append(&self) -> Result<(), LogError> {
        if self.min_free == 0 {
            return Ok(());
        }
        // Asked on every append (a statvfs call costs about a microsecond): one append can
        // make sled rewrite a leaf of up to 17 batches, so readings must not go stale.
        let reading = free_bytes(&self.dir);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        {
            match reading {
                Ok(free) => st.free = free,
                // Unknown: keep the last reading rather than refuse or allow blindly.
                Err(e) => tracing::debug!(dir = %self.dir.display(), error = %e, "statvfs failed"),
            }
            let floor = if st.relaxed {
                self.min_free / 2
            } else {
                self.min_free
            };
            let low = st.free < floor;
            if low || st.free >= self.min_free {
                st.relaxed = false;
            }
            if low && !st.low {
                tracing::error!(
                    dir = %self.dir.display(),
                    free_bytes = st.free,
                    min_free_bytes = self.min_free,
                    "data directory nearly full: appends are refused with KAFKA_STORAGE_ERROR \
                     until space is freed (delete topics or records, lower retention, or \
                     grow the file system); reads go on"
                );
            } else if !low && st.low {
                tracing::warn!(
                    dir = %self.dir.display(),
                    free_bytes = st.free,
                    relaxed = st.relaxed,
                    "data directory has space again (relaxed: data was deleted, sled reuses \
                     its room): appends resume"
                );
            }
            st.low = low;
        }
        if st.low {
            return Err(LogError::NoSpace {
                free: st.free,
                min: self.min_free,
            });
        }
        Ok(())
    }
}

impl DiskSpace {
    /// Told after deleted data's space was handed back to sled (DeleteTopics, DeleteRecords,
    /// retention, compaction): during a low-space episode, appends may use half the reserve.
    pub fn space_freed(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.low {
            st.relaxed = true;
        }
    }
}

impl DiskSpace {
    /// Told when an append failed in storage (e.g. ENOSPC because something else filled the
    /// disk, or the reserve was too small): logged once until a write succeeds again.
    pub fn write_failed(&self, error: &dyn std::fmt::Display) {
        if !self.write_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "appends fail in storage; answering KAFKA_STORAGE_ERROR (logged once until a \
                 write succeeds). If the disk is full: free space, and restart the broker if \
                 writes do not resume (sled refuses all writes after a failed log write)"
            );
        }
    }

    /// Told when an append was written.
    pub fn write_succeeded(&self) {
        if self.write_failing.swap(false, Ordering::Relaxed) {
            tracing::warn!(dir = %self.dir.display(), "appends are written again");
        }
    }
}

/// The size of the file system holding `dir` and the bytes available to unprivileged
/// writers on it (DescribeLogDirs' total and usable bytes).
pub fn file_system_bytes(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: as in `free_bytes`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(unit),
        (st.f_bavail as u64).saturating_mul(unit),
    ))
}

/// Bytes available to unprivileged writers on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes into the zeroed struct we own, and `path` is a valid
    // NUL-terminated string for the duration of the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_allows_without_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskSpace::new(dir.path(), 0).check_append().is_ok());
        assert!(DiskSpace::new(dir.path(), 1).check_append().is_ok());
        let e = DiskSpace::new(dir.path(), u64::MAX)
            .check_append()
            .unwrap_err();
        assert!(matches!(e, LogError::NoSpace { .. }), "{e}");
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        // Low; a deletion lets appends use half the reserve, until the floor is reached.
        let guard = DiskSpace::new(dir.path(), free + free / 2);
        assert!(guard.check_append().is_err());
        guard.space_freed();
        assert!(guard.check_append().is_ok());
        let guard = DiskSpace::new(dir.path(), free.saturating_mul(3));
        assert!(guard.check_append().is_err());
        guard.space_freed();
        assert!(guard.check_append().is_err());
        // Without an episode a deletion changes nothing.
        let guard = DiskSpace::new(dir.path(), free + free / 2);
        guard.space_freed();
        assert!(guard.check_append().is_err());
    }
}
