//! The broker's counters and histograms that events on the request path move (requests,
//! latencies, bytes and messages per topic, failed requests, acks=all waits, ISR changes),
//! registered with `prometheus-client` under the names Kafka's JMX exporter gives the same
//! meaning, so existing Kafka dashboards and alerts work.
//!
//! The hot path touches atomics only: per-API handles (a counter and [`LatencyHistogram`],
//! which unlike prometheus-client's `Histogram` takes no lock) sit in a fixed table filled on
//! first use; per-topic handles in a map read under a short `RwLock` read (never held across
//! an await; a write only the first time a topic is seen). Gauges that describe state (leaders,
//! under-replicated partitions, consumer lag, …) are not kept here: `http::scrape` computes
//! them from the metadata image and the logs when `/metrics` is read.
//!
//! Depends on nothing else in the crate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Label of per-API request metrics (Kafka: `request="Produce"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub request: String,
}

/// Label of per-topic metrics (Kafka: `topic="orders"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// Label of the delayed-operation gauge (Kafka: `delayedOperation="Produce"`; the field keeps
/// Kafka's casing because the derive uses field names as label keys).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct DelayedLabel {
    pub delayedOperation: String,
}

type LatencyFamily = Family<RequestLabel, LatencyHistogram, fn() -> LatencyHistogram>;

/// Upper bounds of the latency buckets: 0.5 ms … ~33 s in powers of four, in milliseconds like
/// Kafka's TotalTimeMs (the last, +Inf, bucket is implicit).
const LATENCY_BOUNDS_MS: [f64; 9] = [0.5, 2.0, 8.0, 32.0, 128.0, 512.0, 2048.0, 8192.0, 32768.0];

/// A histogram of request latencies on plain atomics (prometheus-client's own `Histogram`
/// takes a mutex per observation): per-bucket counts, the count and the sum in microseconds.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    inner: Arc<LatencyCells>,
}

#[derive(Debug, Default)]
struct LatencyCells {
    /// Non-cumulative counts; the last cell is the +Inf bucket.
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Records one request that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let ms = us as f64 / 1000.0;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_us.fetch_add(us, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_MS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.buckets.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the sum of the buckets read, so the +Inf bucket always equals it.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Handles of one API's request metrics (clones share the atomics of the registered family).
struct RequestHandles {
    count: Counter,
    latency: LatencyHistogram,
}

/// Handles of one topic's counters.
struct TopicHandles {
    bytes_in: Counter,
    messages_in: Counter,
    bytes_out: Counter,
    failed_produce: Counter,
    failed_fetch: Counter,
}

/// Kafka API keys are below this (the table of per-API handles has one slot per key).
const API_KEYS: usize = 128;

fn latency_histogram() -> LatencyHistogram {
    LatencyHistogram::default()
}

/// See the module documentation.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabel, Counter>,
    latency: LatencyFamily,
    bytes_in: Family<TopicLabel, Counter>,
    messages_in: Family<TopicLabel, Counter>,
    bytes_out: Family<TopicLabel, Counter>,
    failed_produce: Family<TopicLabel, Counter>,
    failed_fetch: Family<TopicLabel, Counter>,
    /// Produce requests waiting for acks=all (Kafka's produce purgatory size).
    purgatory: Family<DelayedLabel, Gauge>,
    produce_waits: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    leader_changes: Counter,
    /// One slot per API key, filled the first time the API is used.
    by_api: Vec<OnceLock<RequestHandles>>,
    by_topic: RwLock<HashMap<String, Arc<TopicHandles>>>,
}

impl std::fmt::Debug for RequestHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHandles")
    }
}

impl std::fmt::Debug for TopicHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicHandles")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        let purgatory = Family::<DelayedLabel, Gauge>::default();
        let produce_waits = purgatory.get_or_create_owned(&DelayedLabel {
            delayedOperation: "Produce".into(),
        });
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            messages_in: Family::default(),
            bytes_out: Family::default(),
            failed_produce: Family::default(),
            failed_fetch: Family::default(),
            purgatory,
            produce_waits,
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            leader_changes: Counter::default(),
            by_api: (0..API_KEYS).map(|_| OnceLock::new()).collect(),
            by_topic: RwLock::new(HashMap::new()),
        }
    }

    /// One request of API `key` (named `name()` the first time) took `elapsed`.
    pub fn observe_request(&self, key: i16, name: impl FnOnce() -> String, elapsed: Duration) {
        let Some(slot) = usize::try_from(key).ok().and_then(|k| self.by_api.get(k)) else {
            return;
        };
        let h = slot.get_or_init(|| {
            let label = RequestLabel { request: name() };
            RequestHandles {
                count: self.requests.get_or_create_owned(&label),
                latency: self.latency.get_or_create_owned(&label),
            }
        });
        h.count.inc();
        h.latency.observe(elapsed);
    }

    fn topic(&self, topic: &str) -> Arc<TopicHandles> {
        if let Some(h) = self
            .by_topic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return h.clone();
        }
        let label = TopicLabel {
            topic: topic.to_string(),
        };
        let h = Arc::new(TopicHandles {
            bytes_in: self.bytes_in.get_or_create_owned(&label),
            messages_in: self.messages_in.get_or_create_owned(&label),
            bytes_out: self.bytes_out.get_or_create_owned(&label),
            failed_produce: self.failed_produce.get_or_create_owned(&label),
            failed_fetch: self.failed_fetch.get_or_create_owned(&label),
        });
        self.by_topic
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label.topic)
            .or_insert(h)
            .clone()
    }

    /// A produce appended `bytes` of batches holding `messages` records to `topic`.
    pub fn produced(&self, topic: &str, bytes: u64, messages: u64) {
        let h = self.topic(topic);
        h.bytes_in.inc_by(bytes);
        h.messages_in.inc_by(messages);
    }

    /// A produce to a partition of `topic` failed.
    pub fn produce_failed(&self, topic: &str) {
        self.topic(topic).failed_produce.inc();
    }

    /// A fetch answered `bytes` of records from `topic` (`failed`: with an error).
    pub fn fetched(&self, topic: &str, bytes: u64, failed: bool) {
        let h = self.topic(topic);
        h.bytes_out.inc_by(bytes);
        if failed {
            h.failed_fetch.inc();
        }
    }

    /// `n` partitions of a produce start (positive) or end (negative) waiting for acks=all.
    pub fn produce_waiting(&self, n: i64) {
        self.produce_waits.inc_by(n);
    }

    /// The ISR of a partition this broker leads lost a replica.
    pub fn isr_shrunk(&self) {
        self.isr_shrinks.inc();
    }

    /// The ISR of a partition this broker leads gained a replica.
    pub fn isr_expanded(&self) {
        self.isr_expands.inc();
    }

    /// A partition's leader changed (counted by every broker that sees the new image).
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// Registers the counters (handles sharing these atomics) in `registry`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "kafka_network_requestmetrics_requests",
            "Requests handled, per Kafka API",
            self.requests.clone(),
        );
        r.register(
            "kafka_network_requestmetrics_totaltimems",
            "Time from reading a request to having its response, in milliseconds, per Kafka API",
            self.latency.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesin",
            "Bytes of record batches appended by produce requests, per topic",
            self.bytes_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_messagesin",
            "Records appended by produce requests, per topic",
            self.messages_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesout",
            "Bytes of records returned to consumers by fetch requests, per topic",
            self.bytes_out.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_failedproducerequests",
            "Partitions of produce requests answered with an error, per topic",
            self.failed_produce.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_failedfetchrequests",
            "Partitions of fetch requests answered with an error, per topic",
            self.failed_fetch.clone(),
        );
        r.register(
            "kafka_server_delayedoperationpurgatory_purgatorysize",
            "Partitions of produce requests waiting for acks=all",
            self.purgatory.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrshrinks",
            "ISR shrinks of partitions this broker leads",
            self.isr_shrinks.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrexpands",
            "ISR expansions of partitions this broker leads",
            self.isr_expands.clone(),
        );
        r.register(
            "raftka_partition_leader_changes",
            "Partition leader changes seen in the metadata",
            self.leader_changes.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn counters_appear_under_kafka_names() {
        let m = Metrics::new();
        m.produced("orders", 100, 3);
        m.produced("orders", 50, 1);
        m.fetched("orders", 70, true);
        m.observe_request(0, || "Produce".into(), Duration::from_millis(3));
        m.observe_request(999, || unreachable!(), Duration::ZERO);
        m.produce_waiting(2);
        let t = text(&m);
        assert!(
            t.contains("kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders\"} 150"),
            "{t}"
        );
        assert!(t.contains("kafka_server_brokertopicmetrics_messagesin_total{topic=\"orders\"} 4"));
        assert!(t.contains("kafka_server_brokertopicmetrics_bytesout_total{topic=\"orders\"} 70"));
        assert!(t.contains(
            "kafka_server_brokertopicmetrics_failedfetchrequests_total{topic=\"orders\"} 1"
        ));
        assert!(t.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 1"));
        assert!(t.contains("kafka_network_requestmetrics_totaltimems_count{request=\"Produce\"} 1"));
        assert!(t.contains(
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"2.0\",request=\"Produce\"} 0"
        ));
        assert!(t.contains(
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"8.0\",request=\"Produce\"} 1"
        ));
        assert!(t.contains("kafka_network_requestmetrics_totaltimems_sum{request=\"Produce\"} 3.0"));
        assert!(t.contains(
            "kafka_server_delayedoperationpurgatory_purgatorysize{delayedOperation=\"Produce\"} 2"
        ));
    }
}
