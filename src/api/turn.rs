//! The append order of pipelined Produce requests on one connection.
//!
//! A connection lets several Produce requests be in progress at once (`server::connection`),
//! but their appends must happen in request order, as if they had been handled one at a time:
//! an idempotent producer's batch 2 appended before its batch 1 would be refused as out of
//! sequence, and a plain producer's records would change order. Each pipelined request gets an
//! [`AppendTurn`] chained to the previous request's: it waits for the previous request to pass
//! its turn on (after appending, or when it ends in any way) before appending, and passes its
//! own on right after appending, so the slow part — the flush and the wait for replication —
//! overlaps between requests while the appends stay in order.
//!
//! May depend on: tokio's `oneshot`. Nothing else in the crate.

use std::sync::Mutex;

use tokio::sync::oneshot;

/// One request's place in its connection's append order (see the module documentation).
#[derive(Debug)]
pub struct AppendTurn {
    /// Resolves when the previous request passed its turn on (or ended).
    previous: Mutex<Option<oneshot::Receiver<()>>>,
    /// Dropped to let the next request append.
    next: Mutex<Option<oneshot::Sender<()>>>,
}

/// Hands out the chained turns of one connection, in request order.
#[derive(Debug, Default)]
pub struct TurnChain {
    last: Option<oneshot::Receiver<()>>,
}

impl TurnChain {
    /// The turn of the next request: after every turn handed out before it.
    pub fn next_turn(&mut self) -> AppendTurn {
        let (tx, rx) = oneshot::channel();
        AppendTurn {
            previous: Mutex::new(self.last.replace(rx)),
            next: Mutex::new(Some(tx)),
        }
    }
}

impl AppendTurn {
    /// Waits until every earlier request of the connection appended (or ended).
    pub async fn wait(&self) {
        let previous = lock(&self.previous).take();
        if let Some(rx) = previous {
            // An error means the previous request ended without passing explicitly: also go.
            let _ = rx.await;
        }
    }

    /// Lets the next request append. Dropping the turn does the same.
    pub fn pass(&self) {
        lock(&self.next).take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Poll;

    async fn ready<F: Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_ready()))
            .await
    }

    #[tokio::test]
    async fn a_turn_waits_for_every_earlier_one_and_a_dropped_turn_passes() {
        let mut chain = TurnChain::default();
        let (a, b, c) = (chain.next_turn(), chain.next_turn(), chain.next_turn());
        a.wait().await; // the first waits for nobody
        let mut wb = Box::pin(b.wait());
        let mut wc = Box::pin(c.wait());
        assert!(!ready(&mut wb).await);
        assert!(!ready(&mut wc).await);
        a.pass();
        assert!(ready(&mut wb).await);
        assert!(!ready(&mut wc).await, "c still waits for b");
        drop(wb);
        drop(b); // ended without passing explicitly
        assert!(ready(&mut wc).await);
    }
}
