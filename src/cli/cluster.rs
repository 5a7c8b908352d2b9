//! `raftka cluster health` and `raftka cluster status`.
//!
//! Health asks every bootstrap broker, and every broker they list, for Metadata, and reads
//! the controller's answer when it can (a broker cut off from the quorum may hold a stale
//! view). The cluster is unhealthy when a broker is down (a bootstrap or listed broker does
//! not answer, or a broker that holds replicas is missing from Metadata: fenced or gone), when
//! there is no controller, or when a partition has no leader (offline) or fewer in-sync
//! replicas than replicas (under-replicated).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kafka_protocol::messages::MetadataResponse;
use serde_json::json;

use super::client::{host_port, metadata_request, Client, Connection, METADATA_VERSION};
use super::table::{id_list, Table};
use super::Format;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Is every broker up, is there a controller, does every partition have a leader and a
    /// full ISR? Exits 1 when not.
    Health(HealthArgs),
    /// Brokers, controller, and topic and partition counts.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Keep checking every --interval seconds and print the report whenever it changes.
    #[arg(long)]
    pub watch: bool,
    /// Keep checking until the cluster is healthy, then exit 0 (with --timeout: exit 1 if it
    /// is not healthy by then).
    #[arg(long)]
    pub exit_when_healthy: bool,
    /// Seconds between checks with --watch or --exit-when-healthy.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Give up after this many seconds (with --watch or --exit-when-healthy); exit 1 if the
    /// cluster is unhealthy then.
    #[arg(long)]
    pub timeout: Option<f64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(client: &mut Client, cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Health(a) => health(client, a).await,
        ClusterCommand::Status(a) => status(client, a).await,
    }
}

/// What one health check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    pub controller: Option<i32>,
    /// Brokers in the Metadata answer used for the report (registered and not fenced).
    pub live: BTreeSet<i32>,
    /// Brokers known to exist (listed by some broker, or holding a replica) but down: missing
    /// from Metadata (fenced or gone) or not answering.
    pub down: BTreeSet<i32>,
    /// Addresses (bootstrap or advertised) that did not answer.
    pub unreachable: BTreeSet<String>,
    pub leaderless: Vec<String>,
    pub under_replicated: Vec<String>,
    /// Controller id → addresses of the brokers that named it, kept only when they disagree.
    pub controller_views: BTreeMap<i32, Vec<String>>,
}

impl Health {
    /// The reasons the cluster is unhealthy; empty when healthy.
    pub fn reasons(&self) -> Vec<String> {
        let mut r = Vec::new();
        if self.controller.is_none() {
            r.push("no controller (no metadata quorum leader known)".to_string());
        }
        if self.controller_views.len() > 1 {
            r.push("brokers disagree on the controller".to_string());
        }
        if !self.down.is_empty() {
            r.push(format!("brokers down: {}", id_list(&self.down)));
        }
        if !self.unreachable.is_empty() {
            let list: Vec<&str> = self.unreachable.iter().map(String::as_str).collect();
            r.push(format!("not answering: {}", list.join(",")));
        }
        if !self.leaderless.is_empty() {
            r.push(format!("{} leaderless partitions", self.leaderless.len()));
        }
        if !self.under_replicated.is_empty() {
            r.push(format!(
                "{} under-replicated partitions",
                self.under_replicated.len()
            ));
        }
        r
    }

    pub fn healthy(&self) -> bool {
        self.reasons().is_empty()
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "healthy": self.healthy(),
            "unhealthy_reasons": self.reasons(),
            "controller_id": self.controller,
            "all_nodes": self.live.iter().chain(self.down.iter()).collect::<BTreeSet<_>>(),
            "nodes_down": self.down,
            "unreachable_addresses": self.unreachable,
            "leaderless_partitions": self.leaderless,
            "under_replicated_partitions": self.under_replicated,
        })
    }

    fn to_text(&self) -> String {
        let all: BTreeSet<i32> = self.live.union(&self.down).copied().collect();
        let controller = self
            .controller
            .map_or_else(|| "none".to_string(), |c| c.to_string());
        let reasons = self.reasons();
        let mut out = String::new();
        out.push_str("CLUSTER HEALTH OVERVIEW\n=======================\n");
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<34}{v}\n"));
        line("Healthy:", self.healthy().to_string());
        line("Unhealthy reasons:", format!("[{}]", reasons.join("; ")));
        line("Controller ID:", controller);
        line("All nodes:", id_list(&all));
        line("Nodes down:", id_list(&self.down));
        line(
            "Unreachable addresses:",
            format!(
                "[{}]",
                self.unreachable
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        line(
            &format!("Leaderless partitions ({}):", self.leaderless.len()),
            format!("[{}]", self.leaderless.join(" ")),
        );
        line(
            &format!(
                "Under-replicated partitions ({}):",
                self.under_replicated.len()
            ),
            format!("[{}]", self.under_replicated.join(" ")),
        );
        out
    }
}

/// Runs one health check against the cluster behind `client`'s bootstrap list.
pub async fn check(client: &Client) -> Health {
    let timeout = client.timeout();
    let mut health = Health::default();
    // Address → its Metadata answer; every bootstrap address first, then every listed broker.
    let mut answers: BTreeMap<String, MetadataResponse> = BTreeMap::new();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<(Option<i32>, String)> = client
        .bootstrap()
        .iter()
        .map(|a| (None, a.clone()))
        .collect();
    let mut listed: BTreeMap<i32, String> = BTreeMap::new();
    while let Some((id, addr)) = queue.pop() {
        if !asked.insert(addr.clone()) {
            continue;
        }
        match ask_metadata(&addr, timeout).await {
            Some(md) => {
                for b in &md.brokers {
                    let a = host_port(&b.host, b.port);
                    listed.insert(b.node_id.0, a.clone());
                    queue.push((Some(b.node_id.0), a));
                }
                answers.insert(addr, md);
            }
            None => {
                if let Some(id) = id {
                    health.down.insert(id);
                }
                health.unreachable.insert(addr);
            }
        }
    }
    for (addr, md) in &answers {
        health
            .controller_views
            .entry(md.controller_id.0)
            .or_default()
            .push(addr.clone());
    }
    // The view to judge partitions by: the controller's own answer when it gave one.
    let controller_answer = answers.values().find_map(|md| {
        let c = md.controller_id.0;
        listed
            .get(&c)
            .and_then(|a| answers.get(a))
            .filter(|cmd| cmd.controller_id.0 == c)
    });
    let Some(view) = controller_answer.or_else(|| answers.values().next()) else {
        return health;
    };
    health.live = view.brokers.iter().map(|b| b.node_id.0).collect();
    let c = view.controller_id.0;
    health.controller = (c >= 0 && health.live.contains(&c)).then_some(c);
    let mut known: BTreeSet<i32> = listed.keys().copied().collect();
    for t in &view.topics {
        let name = t.name.as_deref().map(|s| s.to_string()).unwrap_or_default();
        for p in &t.partitions {
            known.extend(p.replica_nodes.iter().map(|r| r.0));
            let leader = p.leader_id.0;
            if leader < 0 || !health.live.contains(&leader) {
                health
                    .leaderless
                    .push(format!("{name}/{}", p.partition_index));
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                health
                    .under_replicated
                    .push(format!("{name}/{}", p.partition_index));
            }
        }
    }
    for id in known {
        if !health.live.contains(&id) {
            health.down.insert(id);
        }
    }
    // A listed broker whose address did not answer (asked as a bootstrap address) is down.
    for (id, addr) in &listed {
        if health.unreachable.contains(addr) {
            health.down.insert(*id);
        }
    }
    // Only a disagreement among brokers that are up matters.
    if health.controller_views.len() <= 1 {
        health.controller_views.clear();
    }
    health
}

/// Metadata (every topic) from the broker at `addr`, or None when it does not answer.
async fn ask_metadata(addr: &str, timeout: Duration) -> Option<MetadataResponse> {
    let mut conn = Connection::connect(addr, timeout).await.ok()?;
    conn.send(&metadata_request(None), METADATA_VERSION, Duration::ZERO)
        .await
        .ok()
}

async fn health(client: &mut Client, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    let repeat = args.watch || args.exit_when_healthy;
    let mut last: Option<Health> = None;
    loop {
        let h = check(client).await;
        if last.as_ref() != Some(&h) {
            match args.format {
                Format::Text => {
                    if repeat && last.is_some() {
                        println!();
                    }
                    print!("{}", h.to_text())
                }
                Format::Json => println!("{}", h.to_json()),
            }
        }
        let healthy = h.healthy();
        last = Some(h);
        if !repeat || (args.exit_when_healthy && healthy) {
            return Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if args
            .timeout
            .is_some_and(|t| start.elapsed() >= Duration::from_secs_f64(t.max(0.0)))
        {
            return Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(interval).await;
    }
}

async fn status(client: &mut Client, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let md = client.metadata(None).await?;
    let controller = md.controller_id.0;
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut partitions, mut under, mut offline) = (0usize, 0usize, 0usize);
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            *leaders.entry(p.leader_id.0).or_default() += 1;
            for r in &p.replica_nodes {
                *replicas.entry(r.0).or_default() += 1;
            }
            if p.leader_id.0 < 0 {
                offline += 1;
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                under += 1;
            }
        }
    }
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    let cluster_id = md.cluster_id.as_deref().unwrap_or("").to_string();
    match args.format {
        Format::Json => {
            let bs: Vec<_> = brokers
                .iter()
                .map(|b| {
                    json!({
                        "node_id": b.node_id.0,
                        "address": host_port(&b.host, b.port),
                        "rack": b.rack.as_deref(),
                        "controller": b.node_id.0 == controller,
                        "leaders": leaders.get(&b.node_id.0).copied().unwrap_or(0),
                        "replicas": replicas.get(&b.node_id.0).copied().unwrap_or(0),
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "cluster_id": cluster_id,
                    "controller_id": controller,
                    "brokers": bs,
                    "topics": md.topics.len(),
                    "partitions": partitions,
                    "under_replicated_partitions": under,
                    "offline_partitions": offline,
                })
            );
        }
        Format::Text => {
            println!("CLUSTER\n=======");
            println!("{cluster_id}\n");
            println!("BROKERS\n=======");
            let mut t = Table::new(&["ID", "ADDRESS", "RACK", "LEADERS", "REPLICAS"]);
            for b in &brokers {
                let id = if b.node_id.0 == controller {
                    format!("{}*", b.node_id.0)
                } else {
                    b.node_id.0.to_string()
                };
                t.row(vec![
                    id,
                    host_port(&b.host, b.port),
                    b.rack.as_deref().unwrap_or("-").to_string(),
                    leaders.get(&b.node_id.0).copied().unwrap_or(0).to_string(),
                    replicas.get(&b.node_id.0).copied().unwrap_or(0).to_string(),
                ]);
            }
            print!("{}", t.render());
            println!("(* = controller)\n");
            println!("TOPICS\n======");
            println!("{:<28}{}", "Topics:", md.topics.len());
            println!("{:<28}{partitions}", "Partitions:");
            println!("{:<28}{under}", "Under-replicated:");
            println!("{:<28}{offline}", "Offline:");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_cluster_is_healthy_and_gaps_are_reasons() {
        let mut h = Health {
            controller: Some(1),
            live: [1, 2, 3].into(),
            ..Health::default()
        };
        assert!(h.healthy(), "{:?}", h.reasons());
        h.down.insert(3);
        h.under_replicated.push("t/0".into());
        assert_eq!(
            h.reasons(),
            vec!["brokers down: [3]", "1 under-replicated partitions"]
        );
        h.controller = None;
        assert!(h.reasons()[0].starts_with("no controller"));
    }
}
