//! `log.flush.interval.messages`, as Kafka defines it: a partition's log is flushed (sled
//! fsync) once N messages have been appended to it since the last flush. sled flushes the whole
//! database at once, so one partition reaching N flushes every partition, and every
//! partition's count starts again from zero: never less durable than Kafka's per-log rule.
//!
//! Appends count under their partition's lock ([`FlushPolicy::note`]); the append path
//! (`LogStore::after_append`, awaited before a produce is answered or a follower fetches
//! again) flushes when [`FlushPolicy::take_due`] says so. N = 1 flushes after every append;
//! the default, `i64::MAX`, never (sled's periodic `log.flush.interval.ms` flush only).
//!
//! May depend on: nothing else in the crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The flush rule shared by every partition of one database.
#[derive(Debug)]
pub struct FlushPolicy {
    /// Flush once a partition holds this many unflushed messages.
    interval: u64,
    /// Bumped when a flush starts: counts from an older generation are already flushed.
    generation: AtomicU64,
    /// Some partition reached the interval since the last flush started.
    due: AtomicBool,
}

/// A partition's messages appended since the last flush (kept under the partition's lock).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unflushed {
    generation: u64,
    messages: u64,
}

impl FlushPolicy {
    /// Flush once `interval` messages accumulated in a partition; values below 1 mean 1.
    pub fn every(interval: u64) -> Self {
        Self {
            interval: interval.max(1),
            generation: AtomicU64::new(0),
            due: AtomicBool::new(false),
        }
    }

    /// Only sled's periodic flush.
    pub fn never() -> Self {
        Self::every(u64::MAX)
    }

    /// Counts `messages` appended to the partition whose counter is `unflushed`.
    pub fn note(&self, unflushed: &mut Unflushed, messages: u64) {
        let generation = self.generation.load(Ordering::Acquire);
        if unflushed.generation != generation {
            *unflushed = Unflushed {
                generation,
                messages: 0,
            };
        }
        unflushed.messages = unflushed.messages.saturating_add(messages);
        if unflushed.messages >= self.interval {
            self.due.store(true, Ordering::Release);
        }
    }

    /// True when a flush is due; the caller must then flush. Counts noted before this call
    /// are covered by that flush and start again from zero.
    pub fn take_due(&self) -> bool {
        if !self.due.swap(false, Ordering::AcqRel) {
            return false;
        }
        // Bumped before the flush runs: anything appended before this point is written
        // before the flush starts, so the flush covers it.
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_once_n_messages_accumulate_in_a_partition() {
        let p = FlushPolicy::every(5);
        let (mut a, mut b) = (Unflushed::default(), Unflushed::default());
        p.note(&mut a, 2);
        p.note(&mut b, 2);
        assert!(!p.take_due(), "4 messages over two partitions: not yet");
        p.note(&mut a, 2);
        assert!(!p.take_due());
        p.note(&mut a, 1);
        assert!(p.take_due(), "partition a reached 5");
        assert!(!p.take_due(), "one flush per time due");
        // The flush covered b's messages too: b starts from zero again.
        p.note(&mut b, 4);
        assert!(!p.take_due());
        p.note(&mut b, 1);
        assert!(p.take_due());
        // One append bigger than N is due at once.
        p.note(&mut a, 7);
        assert!(p.take_due());
    }

    #[test]
    fn one_flushes_every_append_and_never_flushes_never() {
        let one = FlushPolicy::every(1);
        let never = FlushPolicy::never();
        let (mut a, mut b) = (Unflushed::default(), Unflushed::default());
        for _ in 0..3 {
            one.note(&mut a, 1);
            assert!(one.take_due());
            never.note(&mut b, 1_000_000);
            assert!(!never.take_due());
        }
    }
}
