//! Kafka's follower replication quota (KIP-73): `follower.replication.throttled.rate` (a
//! dynamic broker config, bytes per second, this broker's value over the cluster-wide one)
//! caps how fast this broker copies the partitions named for it in the topic config
//! `follower.replication.throttled.replicas` (`*` or `partition:broker` pairs) while its
//! replica is outside the ISR — a replica a reassignment adds, or one catching up after a
//! restart — so a move does not starve the in-sync replication it shares the network with.
//! In-sync replicas are never throttled (as in Kafka).
//!
//! The fetch loops share one [`Pacer`]: throttled partitions are left out of follower fetches
//! until the bytes they brought have been "paid for" at the rate; the other partitions of the
//! same leader keep being fetched.
//!
//! May depend on: `metadata` (image types). Time is passed in.

use std::time::{Duration, Instant};

use crate::metadata::ClusterImage;

pub const RATE_KEY: &str = "follower.replication.throttled.rate";
pub const REPLICAS_KEY: &str = "follower.replication.throttled.replicas";

/// This broker's follower throttle rate in bytes per second (`None`: unlimited, Kafka's
/// default `Long.MAX_VALUE`): its own dynamic setting, else the cluster-wide one.
pub fn rate(image: &ClusterImage, me: i32) -> Option<u64> {
    let value = |key: &str| image.broker_configs.get(key)?.get(RATE_KEY).cloned();
    let v = value(&me.to_string()).or_else(|| value(""))?;
    let r: i64 = v.trim().parse().ok()?;
    (r < i64::MAX).then(|| r.max(1) as u64)
}

/// True when a `*.replication.throttled.replicas` value names replica `partition` on
/// `broker` (`*`: every replica).
pub fn names(value: &str, partition: i32, broker: i32) -> bool {
    let v = value.trim();
    v == "*"
        || v.split(',').any(|pair| {
            pair.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<i32>() == Ok(partition) && b.trim().parse::<i32>() == Ok(broker)
            })
        })
}

/// The shared budget of throttled replication.
#[derive(Debug)]
pub struct Pacer {
    rate: Option<u64>,
    /// Throttled partitions are fetched again from this moment on.
    next: Instant,
}

impl Pacer {
    pub fn new(now: Instant) -> Self {
        Self {
            rate: None,
            next: now,
        }
    }

    pub fn set_rate(&mut self, rate: Option<u64>, now: Instant) {
        if rate != self.rate {
            self.rate = rate;
            self.next = now;
        }
    }

    /// How long throttled partitions must still wait (zero: fetch them now).
    pub fn wait(&self, now: Instant) -> Duration {
        match self.rate {
            None => Duration::ZERO,
            Some(_) => self.next.saturating_duration_since(now),
        }
    }

    /// Throttled partitions brought `bytes`: they pause for as long as the rate needs.
    pub fn spent(&mut self, bytes: usize, now: Instant) {
        if let Some(rate) = self.rate {
            if bytes > 0 {
                let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
                self.next = self.next.max(now) + cost;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::config_ops::{ConfigOp, ConfigResource};
    use crate::metadata::{BrokerMeta, MetadataCommand};

    #[test]
    fn replica_lists_name_partitions_on_brokers() {
        assert!(names("*", 3, 7));
        assert!(names(" 0:1, 1:2", 1, 2));
        assert!(!names("0:1,1:2", 1, 1));
        assert!(!names("", 0, 1));
    }

    #[test]
    fn the_rate_comes_from_this_broker_then_the_cluster_default() {
        let mut img = ClusterImage::default();
        for id in [1, 2] {
            img.apply(&MetadataCommand::RegisterBroker(BrokerMeta {
                id,
                host: "h".into(),
                port: 1,
                rack: None,
                fenced: false,
                incarnation: 0,
                endpoints: Vec::new(),
            }))
            .unwrap();
        }
        assert_eq!(rate(&img, 1), None);
        let set = |id: Option<i32>, v: &str| MetadataCommand::AlterConfigs {
            resource: ConfigResource::Broker(id),
            ops: vec![(RATE_KEY.to_string(), ConfigOp::Set(v.into()))],
            replace: false,
        };
        img.apply(&set(None, "1000")).unwrap();
        img.apply(&set(Some(2), "50")).unwrap();
        assert_eq!((rate(&img, 1), rate(&img, 2)), (Some(1000), Some(50)));
        img.apply(&set(Some(2), "9223372036854775807")).unwrap();
        assert_eq!(rate(&img, 2), None);
        assert!(img.apply(&set(None, "-1")).is_err());
        assert!(img.apply(&set(None, "fast")).is_err());
    }

    #[test]
    fn bytes_pause_throttled_fetches_for_their_cost() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.spent(1_000_000, t0);
        assert_eq!(p.wait(t0), Duration::ZERO, "unlimited without a rate");
        p.set_rate(Some(1000), t0);
        p.spent(500, t0);
        assert_eq!(p.wait(t0), Duration::from_millis(500));
        p.spent(1000, t0 + Duration::from_millis(100));
        assert_eq!(p.wait(t0), Duration::from_millis(1500));
        assert_eq!(p.wait(t0 + Duration::from_secs(2)), Duration::ZERO);
    }
}
