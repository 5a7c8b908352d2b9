//! Metadata (key 3): brokers, controller, and topics with partition leadership.
//! Creates unknown topics when the broker and the request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{authorized_ops, RequestContext};
use crate::broker::Broker;
use crate::metadata::{validate_topic_name, TopicMeta};

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    let v = ctx.api_version;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 the request could not say no, and Kafka auto-created.
    let allow_auto = broker.config.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    // KIP-430: the operations this client may perform (cluster ops only exist in v8-v10).
    let topic_ops = if v >= 8 && req.include_topic_authorized_operations {
        authorized_ops::TOPIC
    } else {
        authorized_ops::NOT_REQUESTED
    };
    let cluster_ops = if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        authorized_ops::CLUSTER
    } else {
        authorized_ops::NOT_REQUESTED
    };
    let mut topics = Vec::new();
    match requested {
        None => {
            for t in broker.metadata.image().topics.values() {
                topics.push(topic_entry(t).with_topic_authorized_operations(topic_ops));
            }
        }
        Some(names) => {
            for name in names {
                let image = broker.metadata.image();
                let entry = match image.topics.get(&name) {
                    Some(t) => topic_entry(t).with_topic_authorized_operations(topic_ops),
                    None => match validate_topic_name(&name) {
                        Err(e) => error_entry(&name, metadata_code(&e)),
                        Ok(()) if allow_auto => match broker.auto_create(&name).await {
                            Ok(t) => topic_entry(&t).with_topic_authorized_operations(topic_ops),
                            Err(e) => error_entry(&name, metadata_code(&e)),
                        },
                        Ok(()) => error_entry(&name, code(ResponseError::UnknownTopicOrPartition)),
                    },
                };
                topics.push(entry);
            }
        }
    }
    let image = broker.metadata.image();
    // Fenced brokers are left out, as Kafka does: clients should not try them. So are brokers
    // without the listener this client came through: it could not reach them.
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoint(ctx.listener.as_deref())?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id().to_string())))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}

fn topic_entry(t: &TopicMeta) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|b| BrokerId(*b)).collect())
                .with_isr_nodes(p.isr.iter().map(|b| BrokerId(*b)).collect())
                .with_error_code(if p.leader < 0 {
                    code(ResponseError::LeaderNotAvailable)
                } else {
                    0
                })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(super::topic_ids::of(t))
        .with_is_internal(t.name == crate::offsets_topic::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn error_entry(name: &str, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_error_code(error)
}
