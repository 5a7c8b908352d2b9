//! `raftka admin reassignments` and `raftka admin decommission --broker N`.
//!
//! Decommission moves every replica off broker N with AlterPartitionReassignments (keeping
//! each partition's replication factor and replica order: the replacement takes N's place,
//! chosen among the other live brokers of the Metadata answer as the one with the fewest
//! replicas so far — see [`drain`]), waits until ListPartitionReassignments shows none of
//! those moves running and Metadata shows no replica on N, then unregisters N
//! (UnregisterBroker). A partition already moving is drained from its target.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest,
    UnregisterBrokerRequest,
};

use super::client::{error_name, topic_name, Client};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Partition reassignments in progress (replicas during the move, adding, removing).
    Reassignments,
    /// Move every replica off a broker, wait for the moves, then unregister the broker.
    Decommission(DecommissionArgs),
}

#[derive(Debug, Args)]
pub struct DecommissionArgs {
    /// The broker to remove.
    #[arg(long)]
    pub broker: i32,
    /// Seconds to wait for the moves to finish (exit 1 if they have not by then).
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Move the replicas but keep the broker registered.
    #[arg(long)]
    pub no_unregister: bool,
}

pub async fn run(client: &mut Client, cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::Reassignments => {
            for (tp, (replicas, adding, removing)) in ongoing(client).await? {
                println!(
                    "{}/{}\treplicas {replicas:?}\tadding {adding:?}\tremoving {removing:?}",
                    tp.0, tp.1
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Decommission(a) => decommission(client, a).await,
    }
}

type Tp = (String, i32);
/// A running reassignment: replicas (the union), adding, removing.
type Ongoing = BTreeMap<Tp, (Vec<i32>, Vec<i32>, Vec<i32>)>;

async fn ongoing(client: &mut Client) -> anyhow::Result<Ongoing> {
    let resp = client
        .send_any(
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000),
            0,
        )
        .await?;
    if resp.error_code != 0 {
        bail!(
            "ListPartitionReassignments: {}",
            message(resp.error_code, resp.error_message.as_deref())
        );
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.to_string(), p.partition_index),
                    (
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ),
                )
            })
        })
        .collect())
}

fn message(code: i16, msg: Option<&str>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!("{}: {m}", error_name(code)),
        _ => error_name(code),
    }
}

/// Every partition's ISR and leader, from Metadata.
async fn isr_of(client: &mut Client) -> anyhow::Result<BTreeMap<Tp, (Vec<i32>, i32)>> {
    let md = client.metadata(None).await?;
    let mut out = BTreeMap::new();
    for t in &md.topics {
        let name = t.name.as_deref().map(|s| s.to_string()).unwrap_or_default();
        for p in &t.partitions {
            let isr = p.isr_nodes.iter().map(|r| r.0).collect();
            out.insert((name.clone(), p.partition_index), (isr, p.leader_id.0));
        }
    }
    Ok(out)
}

/// Every partition's replicas (targets of running moves) and the live brokers.
async fn layout(client: &mut Client) -> anyhow::Result<(Vec<(String, i32, Vec<i32>)>, Vec<i32>)> {
    let running = ongoing(client).await?;
    let md = client.metadata(None).await?;
    let brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    let mut parts = Vec::new();
    for t in &md.topics {
        let name = t.name.as_deref().map(|s| s.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            bail!("topic `{name}`: {}", error_name(t.error_code));
        }
        for p in &t.partitions {
            let key = (name.clone(), p.partition_index);
            let replicas: Vec<i32> = match running.get(&key) {
                Some((union, _, removing)) => union
                    .iter()
                    .copied()
                    .filter(|r| !removing.contains(r))
                    .collect(),
                None => p.replica_nodes.iter().map(|r| r.0).collect(),
            };
            parts.push((name.clone(), p.partition_index, replicas));
        }
    }
    Ok((parts, brokers))
}

async fn decommission(client: &mut Client, a: DecommissionArgs) -> anyhow::Result<ExitCode> {
    let n = a.broker;
    let (parts, brokers) = layout(client).await?;
    let moves = drain(&parts, &brokers, n)?;
    if !moves.is_empty() {
        let mut topics: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
        for m in &moves {
            println!("moving {}/{} to {:?}", m.topic, m.partition, m.target);
            topics.entry(m.topic.clone()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(m.partition)
                    .with_replicas(Some(m.target.iter().copied().map(BrokerId).collect())),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = client.send_any(&req, 0).await?;
        if resp.error_code != 0 {
            bail!(
                "AlterPartitionReassignments: {}",
                message(resp.error_code, resp.error_message.as_deref())
            );
        }
        let failed: Vec<String> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter(|p| p.error_code != 0).map(|p| {
                    format!(
                        "{}/{}: {}",
                        *t.name,
                        p.partition_index,
                        message(p.error_code, p.error_message.as_deref())
                    )
                })
            })
            .collect();
        if !failed.is_empty() {
            bail!("reassignments refused:\n  {}", failed.join("\n  "));
        }
    }
    // Wait: no move of ours running and no replica left on the broker.
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout.max(0.0));
    let ours: BTreeSet<Tp> = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    loop {
        let running = ongoing(client).await?;
        let pending: Vec<&Tp> = running.keys().filter(|k| ours.contains(*k)).collect();
        let (parts, _) = layout(client).await?;
        let left: Vec<String> = parts
            .iter()
            .filter(|(_, _, r)| r.contains(&n))
            .map(|(t, p, _)| format!("{t}/{p}"))
            .collect();
        if pending.is_empty() && left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "raftka: broker {n} still hosts {} replica(s) ({} move(s) running) after {}s",
                left.len(),
                pending.len(),
                a.timeout
            );
            // Name each move still running, with the ISR it waits on, so the operator sees
            // which replica has not caught up.
            let isrs = isr_of(client).await.unwrap_or_default();
            for k in &pending {
                if let Some((union, adding, removing)) = running.get(*k) {
                    eprintln!(
                        "  {}/{}: replicas {union:?}, adding {adding:?}, removing {removing:?}, \
                         (ISR, leader) {:?}",
                        k.0,
                        k.1,
                        isrs.get(*k).cloned().unwrap_or_default()
                    );
                }
            }
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("broker {n} hosts no replicas");
    if a.no_unregister {
        return Ok(ExitCode::SUCCESS);
    }
    let resp = client
        .send_any(
            &UnregisterBrokerRequest::default().with_broker_id(BrokerId(n)),
            0,
        )
        .await?;
    if resp.error_code != 0 {
        return Err(anyhow!(
            "UnregisterBroker {n}: {}",
            message(resp.error_code, resp.error_message.as_deref())
        ));
    }
    println!("broker {n} unregistered");
    Ok(ExitCode::SUCCESS)
}

/// One partition's move of a decommission plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub target: Vec<i32>,
}

/// Why a broker cannot be drained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    #[error(
        "{topic}/{partition} has replicas {replicas:?}: no other live broker can take broker \
         {broker}'s replica (the replication factor needs more brokers than remain)"
    )]
    NoCandidate {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
        broker: i32,
    },
}

/// The reassignments that move every replica off broker `leaving`, keeping each partition's
/// replication factor and replica order (the replacement takes the leaving broker's place, so
/// a partition it preferred-led gets the replacement as preferred leader). Each replacement
/// is the broker of `brokers` (other than `leaving`) that is not yet a replica of the
/// partition and holds the fewest replicas so far (lowest id on ties), so load spreads.
/// `partitions` are (topic, partition, replicas).
pub fn drain(
    partitions: &[(String, i32, Vec<i32>)],
    brokers: &[i32],
    leaving: i32,
) -> Result<Vec<Move>, DrainError> {
    let mut load: BTreeMap<i32, usize> = brokers
        .iter()
        .filter(|b| **b != leaving)
        .map(|b| (*b, 0))
        .collect();
    for (_, _, replicas) in partitions {
        for r in replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for (topic, partition, replicas) in partitions {
        if !replicas.contains(&leaving) {
            continue;
        }
        let pick = load
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .min_by_key(|(b, n)| (**n, **b))
            .map(|(b, _)| *b);
        let Some(pick) = pick else {
            return Err(DrainError::NoCandidate {
                topic: topic.clone(),
                partition: *partition,
                replicas: replicas.clone(),
                broker: leaving,
            });
        };
        if let Some(n) = load.get_mut(&pick) {
            *n += 1;
        }
        moves.push(Move {
            topic: topic.clone(),
            partition: *partition,
            target: replicas
                .iter()
                .map(|r| if *r == leaving { pick } else { *r })
                .collect(),
        });
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_replaces_the_leaving_broker_spreading_load() {
        let parts = vec![
            ("a".to_string(), 0, vec![4, 1]),
            ("a".to_string(), 1, vec![1, 4]),
            ("a".to_string(), 2, vec![2, 3]),
            ("b".to_string(), 0, vec![4]),
        ];
        let moves = drain(&parts, &[1, 2, 3, 4], 4).unwrap();
        assert_eq!(moves.len(), 3);
        // Load before: 1→2, 2→1, 3→1. a-0 gets 2 (least loaded, lowest id), a-1 then 3, b-0
        // the least loaded then (all at 2 → 1).
        assert_eq!(moves[0].target, vec![2, 1]);
        assert_eq!(moves[1].target, vec![1, 3]);
        assert_eq!(moves[2].target, vec![1]);
        assert!(moves.iter().all(|m| !m.target.contains(&4)));
        // Nothing on the broker: nothing to move.
        assert_eq!(drain(&parts, &[1, 2, 3, 4], 5).unwrap(), vec![]);
        // RF 3 on 3 brokers: nowhere to go.
        let full = vec![("c".to_string(), 0, vec![1, 2, 3])];
        assert!(matches!(
            drain(&full, &[1, 2, 3], 3),
            Err(DrainError::NoCandidate { .. })
        ));
    }
}
