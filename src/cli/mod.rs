//! The `raftka` admin commands (`raftka cluster|topic|group|admin …`), modelled on Redpanda's rpk:
//! they speak the Kafka protocol to any broker of `--bootstrap`, so they work against raftka
//! and against any Kafka-compatible cluster.
//!
//! - [`client`]: framing and one connection per broker, routing by Metadata.
//! - [`cluster`]: `cluster health` and `cluster status`.
//! - [`topic`]: `topic create|list|describe|delete|produce|consume`.
//! - [`records`]: record batches for produce, batch parsing and output formats for consume.
//! - [`group`]: `group list|describe` with lag.
//! - [`table`]: aligned text columns.
//! - [`admin`]: `admin reassignments` and `admin decommission` (move replicas off a broker,
//!   then unregister it).
//!
//! Depends on nothing else in the crate but two leaves, the record-batch builder
//! (`protocol::batch_builder`, on the codec crate) and `clock`: the CLI is a client.

pub mod admin;
pub mod client;
pub mod cluster;
pub mod group;
pub mod records;
pub mod table;
pub mod topic;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use client::Client;

/// The first words that select the admin CLI instead of starting a broker.
pub const COMMANDS: &[&str] = &["cluster", "topic", "group", "admin"];

/// True when `args` (the process's arguments, program name first) ask for an admin command
/// rather than a broker: the first argument is a command name, or `--bootstrap`/`--brokers`
/// followed later by one.
pub fn is_admin_command(args: &[String]) -> bool {
    let Some(first) = args.get(1) else {
        return false;
    };
    if COMMANDS.contains(&first.as_str()) {
        return true;
    }
    let is_bootstrap_flag = |a: &str| {
        ["--bootstrap", "--brokers"]
            .iter()
            .any(|f| a == *f || a.starts_with(&format!("{f}=")))
    };
    is_bootstrap_flag(first) && args.iter().skip(2).any(|a| COMMANDS.contains(&a.as_str()))
}

/// `raftka` as an admin client.
#[derive(Debug, Parser)]
#[command(
    name = "raftka",
    version,
    about = "raftka admin commands: inspect and operate a Kafka-compatible cluster",
    after_help = "Run `raftka --help` (no command) for the broker's settings."
)]
pub struct Cli {
    /// Brokers to contact first, host:port[,host:port…]; any one that answers is enough.
    #[arg(
        long,
        global = true,
        visible_alias = "brokers",
        default_value = "127.0.0.1:9092",
        env = "RAFTKA_BOOTSTRAP"
    )]
    pub bootstrap: String,
    /// Seconds to wait for each broker answer.
    #[arg(long = "request-timeout", global = true, default_value_t = 10)]
    pub request_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster health and overview.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, inspect, delete, produce to and consume from topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Consumer groups and their lag.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Partition reassignments and broker decommission.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// Output format of the inspecting commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Text,
    /// One JSON document for scripts.
    Json,
}

/// Parses `args` as an admin command, runs it and returns the process's exit code: 0 on
/// success, 1 when the command failed or (cluster health) the cluster is unhealthy, 2 on a
/// usage error.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftka: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs(cli.request_timeout.max(1));
    let mut client = Client::new(&cli.bootstrap, timeout);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Cluster(c) => cluster::run(&mut client, c).await,
            Command::Topic(c) => topic::run(&mut client, c).await,
            Command::Group(c) => group::run(&mut client, c).await,
            Command::Admin(c) => admin::run(&mut client, c).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raftka: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("raftka")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn broker_flags_start_a_broker() {
        assert!(!is_admin_command(&args(&[])));
        assert!(!is_admin_command(&args(&["--node.id", "1"])));
        assert!(!is_admin_command(&args(&["--version"])));
    }

    #[test]
    fn command_words_select_the_cli() {
        assert!(is_admin_command(&args(&["cluster", "health"])));
        assert!(is_admin_command(&args(&[
            "--bootstrap",
            "h:1",
            "topic",
            "list"
        ])));
        assert!(is_admin_command(&args(&["--brokers=h:1", "group", "list"])));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
