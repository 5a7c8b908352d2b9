//! `raftka group list` and `raftka group describe`: consumer groups, their members and
//! assignments, and per-partition lag (the partition's high watermark minus the group's
//! committed offset), as `kafka-consumer-groups.sh --describe` prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::{Buf, Bytes};
use clap::{Args, Subcommand};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::json;

use super::client::{error_name, host_port, Client, Connection};
use super::table::Table;
use super::topic::{list_offsets, partitions_of};
use super::Format;

const FIND_COORDINATOR_VERSION: i16 = 3;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const LIST_GROUPS_VERSION: i16 = 4;
const OFFSET_FETCH_VERSION: i16 = 7;

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Every consumer group of the cluster (asked of every broker).
    List(ListArgs),
    /// A group's state, members and per-partition lag.
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[arg(required = true)]
    pub groups: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(client: &mut Client, cmd: GroupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GroupCommand::List(a) => list(client, a).await,
        GroupCommand::Describe(a) => {
            let mut docs = Vec::new();
            for g in &a.groups {
                let d = describe(client, g).await?;
                match a.format {
                    Format::Text => print!("{}", d.to_text()),
                    Format::Json => docs.push(d.to_json()),
                }
            }
            if a.format == Format::Json {
                println!("{}", serde_json::Value::Array(docs));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(client: &mut Client, a: ListArgs) -> anyhow::Result<ExitCode> {
    let md = client.metadata(Some(&[])).await?;
    let mut groups: BTreeMap<String, (String, String, i32)> = BTreeMap::new();
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort();
    for id in ids {
        let resp = client
            .send_to(
                id,
                &ListGroupsRequest::default(),
                LIST_GROUPS_VERSION,
                Duration::ZERO,
            )
            .await
            .map_err(|e| anyhow!("listing groups on broker {id}: {e}"))?;
        if resp.error_code != 0 {
            bail!(
                "listing groups on broker {id}: {}",
                error_name(resp.error_code)
            );
        }
        for g in resp.groups {
            groups.insert(
                g.group_id.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string(), id),
            );
        }
    }
    match a.format {
        Format::Json => {
            let v: Vec<_> = groups
                .iter()
                .map(|(g, (s, p, c))| json!({"group": g, "state": s, "protocol_type": p, "coordinator": c}))
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Text => {
            let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
            for (g, (s, p, c)) in &groups {
                t.row(vec![g.clone(), s.clone(), p.clone(), c.to_string()]);
            }
            print!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One partition's line of a group description.
#[derive(Debug)]
struct PartitionLag {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    end: Option<i64>,
    member: Option<(String, String, String)>,
}

impl PartitionLag {
    fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

/// What `group describe` reports for one group.
#[derive(Debug)]
struct GroupDescription {
    group: String,
    coordinator: i32,
    state: String,
    protocol: String,
    members: usize,
    partitions: Vec<PartitionLag>,
}

impl GroupDescription {
    fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(PartitionLag::lag).sum()
    }

    fn to_text(&self) -> String {
        let mut out = format!(
            "GROUP        {}\nCOORDINATOR  {}\nSTATE        {}\nBALANCER     {}\nMEMBERS      {}\nTOTAL-LAG    {}\n\n",
            self.group,
            self.coordinator,
            self.state,
            self.protocol,
            self.members,
            self.total_lag()
        );
        let mut t = Table::new(&[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "CLIENT-ID",
            "HOST",
        ]);
        let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
        for p in &self.partitions {
            let (m, c, h) = p
                .member
                .clone()
                .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
            t.row(vec![
                p.topic.clone(),
                p.partition.to_string(),
                show(p.committed),
                show(p.end),
                show(p.lag()),
                m,
                c,
                h,
            ]);
        }
        out.push_str(&t.render());
        out.push('\n');
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let ps: Vec<_> = self
            .partitions
            .iter()
            .map(|p| {
                json!({
                    "topic": p.topic, "partition": p.partition,
                    "current_offset": p.committed, "log_end_offset": p.end, "lag": p.lag(),
                    "member_id": p.member.as_ref().map(|m| &m.0),
                    "client_id": p.member.as_ref().map(|m| &m.1),
                    "host": p.member.as_ref().map(|m| &m.2),
                })
            })
            .collect();
        json!({
            "group": self.group, "coordinator": self.coordinator, "state": self.state,
            "balancer": self.protocol, "members": self.members,
            "total_lag": self.total_lag(), "partitions": ps,
        })
    }
}

/// Decodes a consumer-protocol assignment (version prefix, then the body).
fn decode_assignment(mut b: Bytes) -> Option<ConsumerProtocolAssignment> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut b, version).ok()
}

async fn describe(client: &mut Client, group: &str) -> anyhow::Result<GroupDescription> {
    let find = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let fc = client.send_any(&find, FIND_COORDINATOR_VERSION).await?;
    if fc.error_code != 0 {
        bail!(
            "finding the coordinator of group `{group}`: {}",
            error_name(fc.error_code)
        );
    }
    let mut coord = Connection::connect(&host_port(&fc.host, fc.port), client.timeout()).await?;
    let gid = GroupId(StrBytes::from_string(group.to_string()));
    let dg = coord
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![gid.clone()]),
            DESCRIBE_GROUPS_VERSION,
            Duration::ZERO,
        )
        .await?;
    let g = dg
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("group `{group}`: empty DescribeGroups answer"))?;
    if g.error_code != 0 {
        bail!("describing group `{group}`: {}", error_name(g.error_code));
    }
    // Who owns which partition.
    let mut owner: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &g.members {
        if g.protocol_type.as_str() != "consumer" {
            break;
        }
        if let Some(a) = decode_assignment(m.member_assignment.clone()) {
            for tp in a.assigned_partitions {
                for p in tp.partitions {
                    owner.insert(
                        (tp.topic.to_string(), p),
                        (
                            m.member_id.to_string(),
                            m.client_id.to_string(),
                            m.client_host.to_string(),
                        ),
                    );
                }
            }
        }
    }
    let of = coord
        .send(
            &OffsetFetchRequest::default()
                .with_group_id(gid)
                .with_topics(None),
            OFFSET_FETCH_VERSION,
            Duration::ZERO,
        )
        .await?;
    if of.error_code != 0 {
        bail!(
            "fetching offsets of group `{group}`: {}",
            error_name(of.error_code)
        );
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in of.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                committed.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owner.keys()).cloned().collect();
    let topics: Vec<String> = keys
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut leaders = BTreeMap::new();
    if !topics.is_empty() {
        let md = client.metadata(Some(&topics)).await?;
        for t in &topics {
            if let Ok(parts) = partitions_of(&md, t) {
                for (p, i) in parts {
                    if keys.contains(&(t.clone(), p)) {
                        leaders.insert((t.clone(), p), i.leader);
                    }
                }
            }
        }
    }
    let ends = list_offsets(client, &leaders, -1).await;
    let partitions = keys
        .into_iter()
        .map(|k| PartitionLag {
            committed: committed.get(&k).copied(),
            end: ends.get(&k).copied(),
            member: owner.get(&k).cloned(),
            topic: k.0,
            partition: k.1,
        })
        .collect();
    Ok(GroupDescription {
        group: group.to_string(),
        coordinator: fc.node_id.0,
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g.members.len(),
        partitions,
    })
}
