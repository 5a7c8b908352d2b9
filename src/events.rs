//! Recent cluster events for people watching a failover: broker registrations, fencing and
//! unfencing, partition leader and ISR changes (found by comparing consecutive metadata
//! images) and metadata-quorum leader changes, each with its wall-clock time, in a bounded
//! in-memory ring (the newest [`CAPACITY`]). `/v1/cluster` and the web console show them.
//!
//! Depends on: `metadata` (the image types).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::metadata::ClusterImage;

/// How many events are kept.
pub const CAPACITY: usize = 500;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    BrokerRegistered {
        broker: i32,
    },
    BrokerFenced {
        broker: i32,
    },
    BrokerUnfenced {
        broker: i32,
    },
    LeaderChanged {
        topic: String,
        partition: i32,
        /// -1: none.
        old: i32,
        new: i32,
        epoch: i32,
    },
    IsrShrunk {
        topic: String,
        partition: i32,
        old: Vec<i32>,
        new: Vec<i32>,
        leader: i32,
    },
    IsrExpanded {
        topic: String,
        partition: i32,
        old: Vec<i32>,
        new: Vec<i32>,
        leader: i32,
    },
    TopicCreated {
        topic: String,
        partitions: usize,
    },
    TopicDeleted {
        topic: String,
    },
    /// The metadata quorum's leader (the controller) changed; `None`: no leader known.
    ControllerChanged {
        old: Option<u64>,
        new: Option<u64>,
        term: u64,
    },
}

impl Change {
    /// One line for people.
    pub fn describe(&self) -> String {
        let b = |id: i32| {
            if id < 0 {
                "none".to_string()
            } else {
                format!("broker {id}")
            }
        };
        let c = |id: Option<u64>| id.map_or("none".to_string(), |id| format!("broker {id}"));
        match self {
            Change::BrokerRegistered { broker } => format!("broker {broker} registered"),
            Change::BrokerFenced { broker } => format!("broker {broker} fenced (lease expired)"),
            Change::BrokerUnfenced { broker } => format!("broker {broker} unfenced"),
            Change::LeaderChanged {
                topic,
                partition,
                old,
                new,
                epoch,
            } => format!(
                "{topic}-{partition}: leader {} → {} (epoch {epoch})",
                b(*old),
                b(*new)
            ),
            Change::IsrShrunk {
                topic,
                partition,
                old,
                new,
                ..
            } => format!("{topic}-{partition}: ISR shrank {old:?} → {new:?}"),
            Change::IsrExpanded {
                topic,
                partition,
                old,
                new,
                ..
            } => format!("{topic}-{partition}: ISR expanded {old:?} → {new:?}"),
            Change::TopicCreated { topic, partitions } => {
                format!("topic {topic} created ({partitions} partitions)")
            }
            Change::TopicDeleted { topic } => format!("topic {topic} deleted"),
            Change::ControllerChanged { old, new, term } => {
                format!("controller {} → {} (term {term})", c(*old), c(*new))
            }
        }
    }
}

/// The changes from `old` to `new`, brokers first, then topics in name order.
pub fn diff(old: &ClusterImage, new: &ClusterImage) -> Vec<Change> {
    let mut out = Vec::new();
    for (id, b) in &new.brokers {
        match old.brokers.get(id) {
            None => out.push(Change::BrokerRegistered { broker: *id }),
            Some(o) if o.incarnation != b.incarnation => {
                out.push(Change::BrokerRegistered { broker: *id })
            }
            Some(o) if !o.fenced && b.fenced => out.push(Change::BrokerFenced { broker: *id }),
            Some(o) if o.fenced && !b.fenced => out.push(Change::BrokerUnfenced { broker: *id }),
            Some(_) => {}
        }
    }
    for (name, t) in &new.topics {
        let Some(ot) = old.topics.get(name) else {
            out.push(Change::TopicCreated {
                topic: name.clone(),
                partitions: t.partitions.len(),
            });
            continue;
        };
        for p in &t.partitions {
            let Some(op) = ot.partitions.iter().find(|o| o.index == p.index) else {
                continue;
            };
            if op.leader != p.leader {
                out.push(Change::LeaderChanged {
                    topic: name.clone(),
                    partition: p.index,
                    old: op.leader,
                    new: p.leader,
                    epoch: p.leader_epoch,
                });
            }
            if op.isr != p.isr {
                let shrank = op.isr.iter().any(|r| !p.isr.contains(r));
                let grew = p.isr.iter().any(|r| !op.isr.contains(r));
                let (old, new, leader) = (op.isr.clone(), p.isr.clone(), p.leader);
                let (topic, partition) = (name.clone(), p.index);
                if shrank {
                    out.push(Change::IsrShrunk {
                        topic: topic.clone(),
                        partition,
                        old: old.clone(),
                        new: new.clone(),
                        leader,
                    });
                }
                if grew {
                    out.push(Change::IsrExpanded {
                        topic,
                        partition,
                        old,
                        new,
                        leader,
                    });
                }
            }
        }
    }
    for name in old.topics.keys() {
        if !new.topics.contains_key(name) {
            out.push(Change::TopicDeleted {
                topic: name.clone(),
            });
        }
    }
    out
}

/// One recorded event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub text: String,
    #[serde(flatten)]
    pub change: Change,
}

/// The ring of recent events.
#[derive(Debug, Default)]
pub struct Events {
    ring: Mutex<VecDeque<Event>>,
}

impl Events {
    /// Records `change` now.
    pub fn push(&self, change: Change) {
        let at_ms = crate::clock::unix_ms().max(0) as u64;
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(Event {
            at_ms,
            text: change.describe(),
            change,
        });
    }

    /// The kept events, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{BrokerMeta, PartitionMeta, TopicMeta};

    fn image(fenced2: bool, leader: i32, isr: Vec<i32>) -> ClusterImage {
        let mut i = ClusterImage::default();
        for id in [1, 2] {
            i.brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                    fenced: id == 2 && fenced2,
                    incarnation: 1,
                    endpoints: Vec::new(),
                },
            );
        }
        i.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                partitions: vec![PartitionMeta {
                    index: 0,
                    replicas: vec![1, 2],
                    isr,
                    leader,
                    leader_epoch: 1,
                    partition_epoch: 1,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }],
                configs: Default::default(),
                id: 0,
            },
        );
        i
    }

    #[test]
    fn a_failover_reads_as_fence_leader_change_and_isr_shrink() {
        let before = image(false, 2, vec![1, 2]);
        let after = image(true, 1, vec![1]);
        let d = diff(&before, &after);
        assert_eq!(d[0], Change::BrokerFenced { broker: 2 });
        assert!(matches!(d[1], Change::LeaderChanged { old: 2, new: 1, .. }));
        assert!(matches!(d[2], Change::IsrShrunk { leader: 1, .. }));
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].describe(), "t-0: leader broker 2 → broker 1 (epoch 1)");
        let back = diff(&after, &before);
        assert!(back.contains(&Change::BrokerUnfenced { broker: 2 }));
        assert!(back.iter().any(|c| matches!(c, Change::IsrExpanded { .. })));
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let e = Events::default();
        for b in 0..(CAPACITY as i32 + 5) {
            e.push(Change::BrokerFenced { broker: b });
        }
        let r = e.recent();
        assert_eq!(r.len(), CAPACITY);
        assert_eq!(r[0].change, Change::BrokerFenced { broker: 5 });
    }
}
