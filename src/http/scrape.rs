//! `/metrics`: the counters of `metrics` plus gauges computed now from the metadata image,
//! the quorum, the logs and the group coordinator, encoded as OpenMetrics text.
//!
//! Names follow what Kafka's JMX exporter (and, for lag, kafka-exporter) produce for the
//! same meaning; where Kafka reports a value only on the active controller (offline
//! partitions, fenced brokers), so does raftka, so that sums over brokers stay right.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::broker::Broker;

/// Labels of `kafka_consumergroup_lag` (kafka-exporter's names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabel {
    consumergroup: String,
    topic: String,
    partition: String,
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    r.register(name, help, g);
}

/// The text of one scrape.
pub fn render(broker: &Broker) -> String {
    let mut r = Registry::default();
    broker.metrics.register(&mut r);
    let me = broker.config.node_id;
    let image = broker.metadata.image();
    let quorum = broker.metadata.quorum();
    let controller = broker.known_controller();
    let active = match quorum {
        None => true,
        Some(_) => controller == Some(me),
    };

    let (mut leaders, mut hosted, mut under, mut offline) = (0, 0, 0, 0);
    let mut open_txns = 0i64;
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.replicas.contains(&me) {
                hosted += 1;
            }
            if p.leader == me {
                leaders += 1;
                if let Some(log) = i32::try_from(i)
                    .ok()
                    .and_then(|i| broker.logs.partition(&t.name, i))
                {
                    open_txns += log.open_transactions() as i64;
                }
                if p.isr.len() < p.replicas.len() {
                    under += 1;
                }
            }
            if p.leader < 0 || image.brokers.get(&p.leader).is_none_or(|b| b.fenced) {
                offline += 1;
            }
        }
    }
    gauge(
        &mut r,
        "kafka_server_replicamanager_leadercount",
        "Partitions this broker leads",
        leaders,
    );
    gauge(
        &mut r,
        "raftka_partition_open_transactions",
        "Transactions open in the partitions this broker leads (one per producer and partition)",
        open_txns,
    );
    gauge(
        &mut r,
        "kafka_server_replicamanager_partitioncount",
        "Partitions with a replica on this broker",
        hosted,
    );
    gauge(
        &mut r,
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Partitions this broker leads whose ISR is smaller than their replica set",
        under,
    );
    gauge(
        &mut r,
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 on the active controller (the metadata quorum leader confirmed by a majority)",
        i64::from(active),
    );
    let fenced = image.brokers.values().filter(|b| b.fenced).count() as i64;
    let unfenced = image.brokers.len() as i64 - fenced;
    gauge(
        &mut r,
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "Partitions without a live leader (reported by the active controller only)",
        if active { offline } else { 0 },
    );
    gauge(
        &mut r,
        "kafka_controller_kafkacontroller_fencedbrokercount",
        "Registered brokers the controller has fenced (reported by the active controller only)",
        if active { fenced } else { 0 },
    );
    gauge(
        &mut r,
        "kafka_controller_kafkacontroller_activebrokercount",
        "Registered brokers not fenced (reported by the active controller only)",
        if active { unfenced } else { 0 },
    );
    if let Some(q) = quorum {
        let (term, last, applied) = {
            let metrics = q.metrics();
            let m = metrics.borrow();
            (
                m.current_term,
                m.last_log_index,
                m.last_applied.map(|l| l.index),
            )
        };
        gauge(
            &mut r,
            "kafka_server_raft_metrics_current_leader",
            "The metadata quorum leader this broker knows of (-1: none)",
            controller.map_or(-1, i64::from),
        );
        gauge(
            &mut r,
            "kafka_server_raft_metrics_current_epoch",
            "The metadata quorum's Raft term as this broker knows it",
            term as i64,
        );
        gauge(
            &mut r,
            "kafka_server_raft_metrics_log_end_offset",
            "Index of the last entry in this broker's metadata log",
            last.map_or(-1, |i| i as i64),
        );
        gauge(
            &mut r,
            "kafka_server_raft_metrics_high_watermark",
            "Index of the last metadata entry this broker has applied (committed entries only)",
            applied.map_or(-1, |i| i as i64),
        );
    }
    gauge(
        &mut r,
        "raftka_broker_ready",
        "1 while /ready answers 200",
        i64::from(super::ready::check(broker).ready),
    );
    gauge(
        &mut r,
        "raftka_sled_size_on_disk_bytes",
        "Size of this broker's sled database on disk",
        broker
            .logs
            .db()
            .size_on_disk()
            .map_or(-1, |s| s.min(i64::MAX as u64) as i64),
    );

    let lag = Family::<LagLabel, Gauge>::default();
    for g in broker.groups.list(&[]) {
        for l in super::view::group_lag(broker, &g.group_id) {
            lag.get_or_create(&LagLabel {
                consumergroup: g.group_id.clone(),
                topic: l.topic,
                partition: l.partition.to_string(),
            })
            .set(l.lag);
        }
    }
    r.register(
        "kafka_consumergroup_lag",
        "High watermark minus committed offset, per group and partition (groups this broker \
         coordinates)",
        lag,
    );

    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}
