//! Per-partition readiness for long polls: a fetch subscribes to the watches of the partitions
//! it reads (the high watermark for consumers, the log end for followers) *before* reading, and
//! then sleeps until one of them moves — an append to another partition never wakes it.
//!
//! May depend on: tokio's `watch`, `futures-util`. Nothing else in the crate.

use futures_util::future::select_all;
use tokio::sync::watch;

/// The watches a long poll sleeps on.
#[derive(Debug, Default)]
pub struct Readiness {
    watches: Vec<watch::Receiver<i64>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a partition's watch (subscribe before reading the partition, so a change made
    /// between the read and the wait is not missed).
    pub fn add(&mut self, rx: watch::Receiver<i64>) {
        self.watches.push(rx);
    }

    /// Resolves once any watched value changed since it was subscribed (or its partition
    /// went away); never, when nothing is watched.
    pub async fn changed(&mut self) {
        if self.watches.is_empty() {
            return std::future::pending().await;
        }
        let _ = select_all(self.watches.iter_mut().map(|rx| Box::pin(rx.changed()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_on_a_watched_partition_only() {
        let (a, _) = watch::channel(0i64);
        let (b, _) = watch::channel(0i64);
        let mut r = Readiness::new();
        r.add(a.subscribe());
        // An unwatched partition moves: still asleep.
        b.send_replace(5);
        assert!(tokio::time::timeout(Duration::from_millis(50), r.changed())
            .await
            .is_err());
        a.send_replace(1);
        tokio::time::timeout(Duration::from_secs(5), r.changed())
            .await
            .expect("woken by its own partition");
    }
}
