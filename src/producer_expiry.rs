//! Expiry of idempotent-producer state: every `producer.id.expiration.check.interval.ms`,
//! each hosted partition drops the entries of producer ids that have not written to it for
//! `producer.id.expiration.ms` (Kafka's settings and defaults: 1 day, checked every 10 min).
//!
//! Every replica expires by its own clock: the entries only recognise retries, and a retry
//! a day late is no retry. Kafka measures from the batch's max timestamp (the producer's
//! clock); raftka uses the broker's clock at append, so a producer cannot keep its state
//! alive forever with timestamps in the future.
//!
//! May depend on: `broker` (settings, logs), `log`, `clock`. Not on the network.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::clock::unix_ms as now_ms;

/// One expiry pass over every open partition log; returns how many entries were dropped.
pub fn expire_all(broker: &Broker, now_ms: i64) -> usize {
    let mut dropped = 0;
    let expiration_ms = crate::broker_dynamic::millis(
        broker,
        "producer.id.expiration.ms",
        u64::try_from(broker.config.producer_id_expiration_ms).unwrap_or(u64::MAX),
    );
    let expiration_ms = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
    for (topic, partition) in broker.logs.open_partitions() {
        let Some(log) = broker.logs.partition(&topic, partition) else {
            continue;
        };
        match log.expire_producers(now_ms, expiration_ms) {
            Ok(n) => dropped += n,
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "cannot expire producer ids")
            }
        }
    }
    dropped
}

/// Hands memory freed by a large expiry back to the operating system (glibc keeps freed
/// small blocks in its arenas otherwise, so the broker's RSS would not show the expiry).
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs expiry passes until the broker shuts down.
pub async fn run(broker: Arc<Broker>) {
    let every = Duration::from_millis(broker.config.producer_id_expiration_check_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || expire_all(&b, now_ms())).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(expired = n, "expired idle producer ids");
                if n >= 1000 {
                    release_freed_heap();
                }
            }
            Err(e) => tracing::error!(error = %e, "producer id expiry panicked"),
        }
    }
}
