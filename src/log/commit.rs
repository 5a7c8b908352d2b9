//! Group commit: one sled flush (write + fsync) covers every caller waiting when it starts,
//! as Redpanda batches fsyncs of concurrent requests.
//!
//! A dedicated thread per database runs the flushes, so no tokio worker ever blocks on
//! `fsync`. A caller takes a ticket (a sequence number) after its writes and waits until a
//! flush that started after the ticket was taken has finished. While a flush runs, new tickets
//! queue up and the next flush covers all of them at once: under load the number of flushes
//! per second is bounded by the disk's fsync latency, not by the number of requests.
//!
//! sled's `flush` makes every write issued before it durable (its log is written in order), so
//! a flush that starts after a write returned covers it, whichever thread wrote.
//!
//! May depend on: `sled`, tokio's `watch` (to wake async waiters). Nothing else in the crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

/// Why a flush failed (shared by every waiter it covered).
#[derive(Debug, Clone, thiserror::Error)]
#[error("flushing the log to disk failed: {0}")]
pub struct FlushError(Arc<str>);

/// The outcome of the latest finished flush.
#[derive(Debug, Clone)]
struct Done {
    /// Every ticket up to this one is covered by it.
    upto: u64,
    result: Result<(), FlushError>,
}

#[derive(Debug, Default)]
struct Queue {
    /// The last ticket handed out.
    requested: u64,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    done: watch::Sender<Done>,
    flushes: AtomicU64,
}

/// The group-commit flusher of one sled database (see the module documentation).
#[derive(Debug)]
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the flusher thread of `db`.
    pub fn start(db: sled::Db) -> Self {
        Self::start_with(move || db.flush().map(|_| ()).map_err(|e| e.to_string()))
    }

    /// Starts a flusher thread running `flush` (tests substitute their own).
    fn start_with(flush: impl FnMut() -> Result<(), String> + Send + 'static) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            done: watch::channel(Done {
                upto: 0,
                result: Ok(()),
            })
            .0,
            flushes: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("raftka-flush".into())
            .spawn(move || flusher(&s, flush))
            .ok();
        if thread.is_none() {
            tracing::error!("cannot start the flush thread: flushes will fail");
        }
        Self { shared, thread }
    }

    /// Waits until everything written before this call is on disk. Concurrent callers share
    /// one flush.
    pub async fn flush(&self) -> Result<(), FlushError> {
        if self.thread.is_none() {
            return Err(FlushError("the flush thread is not running".into()));
        }
        let ticket = {
            let mut q = lock(&self.shared.queue);
            q.requested += 1;
            q.requested
        };
        self.shared.wake.notify_one();
        let mut rx = self.shared.done.subscribe();
        let done = rx
            .wait_for(|d| d.upto >= ticket)
            .await
            .map_err(|_| FlushError("the flush thread stopped".into()))?;
        // A later flush that succeeded covers this ticket even if the one in between failed.
        done.result.clone()
    }

    /// Flushes performed so far (tests and diagnostics).
    pub fn flushes(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn flusher(shared: &Shared, mut flush: impl FnMut() -> Result<(), String>) {
    let mut handled = 0u64;
    loop {
        let target = {
            let mut q = lock(&shared.queue);
            while q.requested == handled && !q.stop {
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.requested == handled {
                return; // stopping, nothing pending
            }
            q.requested
        };
        // Every ticket up to `target` was taken after its writes, and before this flush starts.
        let result = flush().map_err(|e| FlushError(e.into()));
        if let Err(e) = &result {
            tracing::error!(error = %e, "group commit flush failed");
        }
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        handled = target;
        shared.done.send_replace(Done {
            upto: target,
            result,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::mpsc;
    use std::task::Poll;

    /// Polls `f` once: true when it is still pending.
    async fn pending<F: Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_pending()))
            .await
    }

    #[tokio::test]
    async fn callers_arriving_during_a_flush_share_the_next_one() {
        let (started_tx, started) = mpsc::channel::<()>();
        let (go, go_rx) = mpsc::channel::<()>();
        let commit = GroupCommit::start_with(move || {
            started_tx.send(()).ok();
            go_rx.recv().ok();
            Ok(())
        });
        // The first caller's flush starts and is held.
        let mut first = Box::pin(commit.flush());
        assert!(pending(&mut first).await);
        started.recv().unwrap();
        // 50 callers arrive while it runs.
        let mut rest: Vec<_> = (0..50).map(|_| Box::pin(commit.flush())).collect();
        for f in &mut rest {
            assert!(pending(f).await);
        }
        go.send(()).unwrap(); // the first flush ends: it does not cover the 50
        first.await.unwrap();
        started.recv().unwrap(); // one more flush starts, for all 50
        go.send(()).unwrap();
        for f in rest {
            f.await.unwrap();
        }
        assert_eq!(commit.flushes(), 2);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_callers_and_the_next_success_covers_later_ones() {
        let mut n = 0;
        let commit = GroupCommit::start_with(move || {
            n += 1;
            if n == 1 {
                Err("disk on fire".into())
            } else {
                Ok(())
            }
        });
        let e = commit.flush().await.unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        commit.flush().await.unwrap();
    }
}
