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
//! May depend on: `libc` (statvfs). Nothing else in the crate.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::LogError;

/// How long a free-space reading is reused before the file system is asked again.
const RECHECK: Duration = Duration::from_millis(100);

/// The reserve of one data directory.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    /// Appends are refused below this many free bytes; 0 disables the guard.
    min_free: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked_at: Option<Instant>,
    free: u64,
    /// Inside a low-space episode (logged when it starts and ends).
    low: bool,
}

impl DiskSpace {
    /// A guard for `dir` keeping `min_free` bytes free (0: no guard).
    pub fn new(dir: &Path, min_free: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            min_free,
            state: Mutex::new(State::default()),
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
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = st.checked_at.is_some_and(|t| t.elapsed() < RECHECK);
        if !fresh {
            match free_bytes(&self.dir) {
                Ok(free) => st.free = free,
                // Unknown: keep the last reading rather than refuse or allow blindly.
                Err(e) => tracing::debug!(dir = %self.dir.display(), error = %e, "statvfs failed"),
            }
            st.checked_at = Some(Instant::now());
            let low = st.free < self.min_free;
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
                    "data directory has space again: appends resume"
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
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
