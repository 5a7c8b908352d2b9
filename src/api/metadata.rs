//! Metadata (key 3): brokers, controller, and topics with partition leadership.
//! Creates unknown topics when the broker and the request allow it. Topics may be asked for
//! by id (v10+, KIP-516): a known id is answered with its topic, an unknown one with
//! UNKNOWN_TOPIC_ID.
//!
//! Authorization as in Kafka: listing all topics shows only those the principal may
//! DESCRIBE; a named topic it may not describe is answered TOPIC_AUTHORIZATION_FAILED
//! (whether or not it exists), and auto-creating one needs CREATE on the cluster or topic.
//!
//! Leadership answers (differences from Kafka, for fast client failover): a fenced broker whose
//! inter-broker port refused this broker recently (a dead process) stays in the broker list
//! for that while (librdkafka drops its connection handle for a broker that disappears and
//! forgets the partition's leader, which costs it another refresh), but never leads; other
//! fenced brokers are left out, as Kafka does — for a paused or cut-off broker that is what
//! makes librdkafka abandon the requests in flight on its still-open connection (listed, an
//! idempotent producer waited for them until `request.timeout.ms`, 30 s, before writing to the
//! new leader); and a partition whose leader is *suspect* — the controller finds its heartbeat overdue (see
//! `metadata::controller`), or its inter-broker port refused this broker's follower fetch (see
//! `cluster`) — is answered with no leader and LEADER_NOT_AVAILABLE, as during an election, so
//! clients keep refreshing quickly (librdkafka's fast leader query) instead of waiting on a
//! dead leader until their next periodic refresh.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

use super::errors::{code, metadata_code, topics_code};
use super::{authorized_ops, authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::{validate_topic_name, TopicMeta};
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    let v = ctx.api_version;
    // v10+: topics may be named by id instead (name null), as Kafka 3.x answers them: a known
    // id with its topic, an unknown one with UNKNOWN_TOPIC_ID; never auto-created.
    let by_id: Vec<Uuid> = match &req.topics {
        Some(t) if v >= 10 => t
            .iter()
            .filter(|t| t.name.is_none() && !t.topic_id.is_nil())
            .map(|t| t.topic_id)
            .collect(),
        _ => Vec::new(),
    };
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
    let with_topic_ops = v >= 8 && req.include_topic_authorized_operations;
    let topic_ops = |name: &str| {
        if with_topic_ops {
            authorized_ops::topic(ctx, name)
        } else {
            authorized_ops::NOT_REQUESTED
        }
    };
    let cluster_ops = if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        authorized_ops::cluster(ctx)
    } else {
        authorized_ops::NOT_REQUESTED
    };
    let describable = |name: &str| authz::topic(ctx, Operation::Describe, name);
    let leaders = Leaders::new(broker);
    let listed = |b: &crate::metadata::BrokerMeta| !b.fenced || leaders.refusing.contains(&b.id);
    let mut topics = Vec::new();
    match requested {
        None => {
            for t in broker.metadata.image().topics.values() {
                if describable(&t.name) {
                    topics.push(
                        topic_entry(t, &leaders)
                            .with_topic_authorized_operations(topic_ops(&t.name)),
                    );
                }
            }
        }
        Some(names) => {
            for name in names {
                let image = broker.metadata.image();
                let denied = code(ResponseError::TopicAuthorizationFailed);
                let entry = match image.topics.get(&name) {
                    _ if !describable(&name) => error_entry(&name, denied),
                    Some(t) => {
                        topic_entry(t, &leaders).with_topic_authorized_operations(topic_ops(&name))
                    }
                    None => match validate_topic_name(&name) {
                        Err(e) => error_entry(&name, metadata_code(&e)),
                        Ok(()) if allow_auto && !authz::create_topic(ctx, &name) => {
                            error_entry(&name, denied)
                        }
                        Ok(()) if allow_auto => match broker.topics.auto_create(&name).await {
                            Ok(t) => topic_entry(&t, &leaders)
                                .with_topic_authorized_operations(topic_ops(&name)),
                            Err(e) => error_entry(&name, topics_code(&e)),
                        },
                        Ok(()) => error_entry(&name, code(ResponseError::UnknownTopicOrPartition)),
                    },
                };
                topics.push(entry);
            }
        }
    }
    let image = broker.metadata.image();
    for id in by_id {
        let entry = match super::topic_ids::find(&image, &id) {
            Some(t) if describable(&t.name) => {
                topic_entry(t, &leaders).with_topic_authorized_operations(topic_ops(&t.name))
            }
            Some(_) => MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(code(ResponseError::TopicAuthorizationFailed)),
            None => MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(code(ResponseError::UnknownTopicId)),
        };
        topics.push(entry);
    }
    // Fenced brokers are left out, as Kafka does, except dead ones for a while (see the module
    // docs); none leads. Brokers without the listener this client came through are left out:
    // it could not reach them.
    let brokers = image
        .brokers
        .values()
        .filter(|b| listed(b))
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

/// Which brokers may be named as partition leaders in this answer, and which fenced ones are
/// listed.
struct Leaders {
    /// Fenced, or suspect in the controller's newest liveness table.
    not: BTreeSet<i32>,
    /// Brokers whose port refused this broker recently (listed even when fenced).
    refusing: BTreeSet<i32>,
}

impl Leaders {
    fn new(broker: &Broker) -> Self {
        // A table older than a few heartbeat intervals is not current: no suspects from it. A
        // refusal this broker saw counts until the controller had a session to act on it.
        let fresh = Duration::from_millis(broker.config.heartbeat_interval_ms.saturating_mul(4));
        let refused_for = Duration::from_millis(broker.config.session_timeout_ms);
        let mut not: BTreeSet<i32> = broker
            .liveness
            .suspects(fresh, refused_for)
            .into_iter()
            .collect();
        let image = broker.metadata.image();
        not.extend(image.brokers.values().filter(|b| b.fenced).map(|b| b.id));
        let refusing = broker.liveness.refusing(refused_for).into_iter().collect();
        Self { not, refusing }
    }

    fn answer(&self, leader: i32) -> i32 {
        if self.not.contains(&leader) {
            -1
        } else {
            leader
        }
    }
}

fn topic_entry(t: &TopicMeta, leaders: &Leaders) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            let leader = leaders.answer(p.leader);
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|b| BrokerId(*b)).collect())
                .with_isr_nodes(p.isr.iter().map(|b| BrokerId(*b)).collect())
                .with_error_code(if leader < 0 {
                    code(ResponseError::LeaderNotAvailable)
                } else {
                    0
                })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(super::topic_ids::of(t))
        .with_is_internal(authz::is_internal_topic(&t.name))
        .with_partitions(partitions)
}

fn error_entry(name: &str, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_error_code(error)
}
