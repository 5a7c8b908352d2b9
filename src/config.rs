//! Broker settings: one table of Kafka-named settings drives the config file, the
//! `RAFTKA_*` environment variables, the command-line flags and DescribeConfigs.
//!
//! Depends on nothing else in the crate but `security` (the authorizer settings type).
//! Precedence, lowest to highest: built-in default, `--config FILE` (Java properties),
//! environment, command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors found while reading settings; each names the setting and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: unknown setting `{name}` (run `raftka --help` for the list)")]
    Unknown { origin: String, name: String },
    #[error("setting `{name}`: invalid value `{value}`: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Cli(String),
}

/// The type of a setting's value, used for validation and reported by DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    Int,
    Long,
    /// A floating-point number (topic configs such as `min.cleanable.dirty.ratio`).
    Double,
    Str,
    List,
    /// A secret: DescribeConfigs reports it as sensitive, without its value.
    Password,
}

/// One broker setting as the table describes it.
#[derive(Debug)]
pub struct SettingDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ValueType,
    pub doc: &'static str,
}

/// Kafka's default of settings that mean "never" (`Long.MAX_VALUE`); `--help` says "never".
const NEVER: &str = "9223372036854775807";

/// Every broker setting raftka understands. Names and defaults follow Apache Kafka where
/// Kafka has the setting; `sled.*` settings are raftka's own.
pub const SETTINGS: &[SettingDef] = &[
    SettingDef { name: "node.id", default: "1", kind: ValueType::Int, doc: "This broker's id." },
    SettingDef { name: "listeners", default: "PLAINTEXT://127.0.0.1:9092", kind: ValueType::List, doc: "Where the Kafka listener binds, as NAME://host:port." },
    SettingDef { name: "advertised.listeners", default: "", kind: ValueType::List, doc: "Addresses given to clients in Metadata, per listener name (NAME://host:port); a listener not named here advertises its bind address." },
    SettingDef { name: "listener.security.protocol.map", default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", kind: ValueType::List, doc: "Security protocol of each listener name, as NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (e.g. INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL)." },
    SettingDef { name: "ssl.keystore.type", default: "PEM", kind: ValueType::Str, doc: "Format of ssl.keystore.location; raftka reads PEM only (Kafka's default JKS and PKCS12 are refused with a message)." },
    SettingDef { name: "ssl.keystore.location", default: "", kind: ValueType::Str, doc: "PEM file with the broker's private key and its certificate chain (Kafka's PEM keystore), for SSL and SASL_SSL listeners; or use ssl.key.location with ssl.certificate.location. Re-read when the file changes." },
    SettingDef { name: "ssl.key.location", default: "", kind: ValueType::Str, doc: "raftka: PEM file with the broker's private key alone (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with ssl.key.password), used with ssl.certificate.location instead of ssl.keystore.location. Re-read when the file changes." },
    SettingDef { name: "ssl.certificate.location", default: "", kind: ValueType::Str, doc: "raftka: PEM file with the broker's certificate chain (its own certificate first), used with ssl.key.location. Re-read when the file changes." },
    SettingDef { name: "ssl.key.password", default: "", kind: ValueType::Password, doc: "Password of an encrypted PKCS#8 private key (-----BEGIN ENCRYPTED PRIVATE KEY-----) in the keystore or key file." },
    SettingDef { name: "ssl.truststore.type", default: "PEM", kind: ValueType::Str, doc: "Format of ssl.truststore.location; raftka reads PEM only." },
    SettingDef { name: "ssl.truststore.location", default: "", kind: ValueType::Str, doc: "PEM file with the CA certificates that client certificates must chain to (needed when ssl.client.auth is required or requested). Re-read when the file changes." },
    SettingDef { name: "ssl.client.auth", default: "none", kind: ValueType::Str, doc: "Client certificates on SSL listeners: required (handshake fails without a valid one), requested (checked when sent) or none. A verified certificate makes the principal User:<subject DN> (RFC 2253, e.g. User:CN=alice,OU=eng). On SASL_SSL listeners the SASL identity is the principal." },
    SettingDef { name: "ssl.principal.mapping.rules", default: "DEFAULT", kind: ValueType::Str, doc: "How a client certificate's subject becomes a principal name; raftka supports DEFAULT only (the full distinguished name, as Kafka's default)." },
    SettingDef { name: "sasl.enabled.mechanisms", default: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", kind: ValueType::List, doc: "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners: any of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Kafka's default GSSAPI is not supported)." },
    SettingDef { name: "sasl.jaas.config", default: "", kind: ValueType::Password, doc: "PLAIN users in Kafka's JAAS form: org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\" ...; (only the user_ options are read)." },
    SettingDef { name: "sasl.jaas.file", default: "", kind: ValueType::Str, doc: "raftka: a JAAS file (as java.security.auth.login.config names, e.g. a KafkaServer { PlainLoginModule required user_alice=\"...\"; }; section) whose user_<name>=\"<password>\" options are PLAIN users too. Read at start." },
    SettingDef { name: "sasl.scram.users", default: "", kind: ValueType::Password, doc: "raftka: SCRAM users from settings, in kafka-storage --add-scram's form, e.g. SCRAM-SHA-512=[name=admin,password=admin-secret] (several separated by spaces). Used when the metadata quorum holds no credential of that user and mechanism: a way to log in the first admin, who then manages users with AlterUserScramCredentials. Each broker salts them itself at start." },
    SettingDef { name: "connections.max.reauth.ms", default: "0", kind: ValueType::Long, doc: "SASL session lifetime given to clients in SaslAuthenticate (KIP-368); a client that has not re-authenticated within it is disconnected at its next request. 0: sessions do not expire." },
    SettingDef { name: "broker.rack", default: "", kind: ValueType::Str, doc: "Rack of this broker, reported to clients; empty: none." },
    SettingDef { name: "broker.heartbeat.interval.ms", default: "100", kind: ValueType::Long, doc: "How often a broker renews its lease with the controller (Kafka: 2000). Three intervals without a heartbeat make a broker suspect: the controller probes its inter-broker port and fences it at once if the connection is refused." },
    SettingDef { name: "broker.session.timeout.ms", default: "1500", kind: ValueType::Long, doc: "A broker without a heartbeat for this long is fenced and loses leadership (Kafka: 9000; shorter for ~2 s failover)." },
    SettingDef { name: "replica.lag.time.max.ms", default: "10000", kind: ValueType::Long, doc: "A follower not caught up for this long leaves the ISR (Kafka: 30000)." },
    SettingDef { name: "auto.leader.rebalance.enable", default: "true", kind: ValueType::Bool, doc: "Move leadership back to preferred replicas once they are in sync." },
    SettingDef { name: "leader.imbalance.check.interval.seconds", default: "10", kind: ValueType::Long, doc: "How often preferred leaders are restored (Kafka: 300)." },
    SettingDef { name: "controller.quorum.voters", default: "", kind: ValueType::List, doc: "Voters of the metadata quorum as id@host:port (the port is their raft.listener port), comma separated, the same list on every broker. Empty: this broker alone, at raft.listener." },
    SettingDef { name: "raft.listener", default: "127.0.0.1:9093", kind: ValueType::Str, doc: "host:port where the broker's inter-broker gRPC service (Raft RPCs) binds." },
    SettingDef { name: "http.listener", default: "", kind: ValueType::Str, doc: "host:port of the HTTP admin listener (/metrics, /health, /ready, /v1/cluster, the web console at /); empty: the first Kafka listener's bind address with its port + 2 (9094 next to 9092; + 1 is raft.listener's default)." },
    SettingDef { name: "raft.advertised.listener", default: "", kind: ValueType::Str, doc: "host:port other brokers use to reach this broker's gRPC service when it joins as a learner (not in controller.quorum.voters); empty: raft.listener, a wildcard address replaced by the host name." },
    SettingDef { name: "controller.quorum.election.timeout.ms", default: "200", kind: ValueType::Int, doc: "Minimum Raft election timeout; the maximum is twice this and the leader heartbeat a third of it. A follower starts an election the maximum plus its own timeout after the leader's last heartbeat (openraft's leader lease): 600-800 ms at the default." },
    SettingDef { name: "authorizer.class.name", default: "", kind: ValueType::Str, doc: "Authorizer of client requests. Empty (the default): no authorization at all, as in Kafka. org.apache.kafka.metadata.authorizer.StandardAuthorizer (or kafka.security.authorizer.AclAuthorizer): ACLs stored in the metadata quorum decide (CreateAcls/DescribeAcls/DeleteAcls)." },
    SettingDef { name: "super.users", default: "", kind: ValueType::Str, doc: "Principals allowed everything when an authorizer is configured, semicolon separated (User:admin;User:ops)." },
    SettingDef { name: "allow.everyone.if.no.acl.found", default: "false", kind: ValueType::Bool, doc: "With an authorizer: allow every principal on resources that no ACL covers (Kafka's default: deny)." },
    SettingDef { name: "inter.broker.secret", default: "", kind: ValueType::Password, doc: "Shared secret of the cluster's brokers (at least 16 characters, the same on every broker): every inter-broker gRPC call carries an HMAC-SHA256 token made with it, bound to the sending broker, the RPC and the time, and calls without a valid token are refused. Empty: the gRPC port is unauthenticated (a WARN at startup) and binds to the Kafka listener's host. Prefer inter.broker.secret.file." },
    SettingDef { name: "inter.broker.secret.file", default: "", kind: ValueType::Str, doc: "File holding inter.broker.secret (surrounding whitespace ignored); keeps the secret out of the command line and the environment." },
    SettingDef { name: "log.dirs", default: "./data", kind: ValueType::Str, doc: "Directory of the broker's sled database." },
    SettingDef { name: "num.partitions", default: "1", kind: ValueType::Int, doc: "Partitions of a topic created without an explicit count." },
    SettingDef { name: "default.replication.factor", default: "1", kind: ValueType::Int, doc: "Replication factor of a topic created without an explicit one." },
    SettingDef { name: "auto.create.topics.enable", default: "true", kind: ValueType::Bool, doc: "Create unknown topics on Metadata and Produce requests." },
    SettingDef { name: "message.max.bytes", default: "1048588", kind: ValueType::Int, doc: "Largest record batch the broker accepts (topic override: max.message.bytes)." },
    SettingDef { name: "socket.request.max.bytes", default: "104857600", kind: ValueType::Int, doc: "Largest request frame; bigger frames close the connection." },
    SettingDef { name: "max.records.per.user.op", default: "10000", kind: ValueType::Int, doc: "Most metadata records one CreateTopics or CreatePartitions request may create: one per topic, per partition and per config (Kafka's controller limit, fixed there at 10000). A larger request is refused whole with POLICY_VIOLATION before anything is placed, validate_only too." },
    SettingDef { name: "fetch.max.bytes", default: "57671680", kind: ValueType::Int, doc: "Most record bytes in one Fetch response, whatever the request asks for (the first batch of the first non-empty partition is returned even when larger, so consumers progress)." },
    SettingDef { name: "replica.fetch.max.bytes", default: "1048576", kind: ValueType::Int, doc: "Record bytes a follower asks for per partition in one replica fetch (at least one batch is always returned)." },
    SettingDef { name: "replica.fetch.response.max.bytes", default: "10485760", kind: ValueType::Int, doc: "Record bytes a follower asks for in one replica fetch; the leader also caps replica fetches at fetch.max.bytes." },
    SettingDef { name: "max.connections", default: "2147483647", kind: ValueType::Int, doc: "Most client connections the broker keeps over all listeners; a connection beyond it is accepted and closed at once." },
    SettingDef { name: "max.connections.per.ip", default: "2147483647", kind: ValueType::Int, doc: "Most client connections from one IP address; a connection beyond it is accepted and closed at once." },
    SettingDef { name: "max.connections.per.ip.overrides", default: "", kind: ValueType::List, doc: "Per-IP exceptions to max.connections.per.ip, as ip:count, comma separated (e.g. 127.0.0.1:200)." },
    SettingDef { name: "connections.max.idle.ms", default: "600000", kind: ValueType::Long, doc: "A connection that completes no request for this long is closed (a frame sent only in part does not count as activity)." },
    SettingDef { name: "log.dir.min.free.bytes", default: "67108864", kind: ValueType::Long, doc: "Appends are refused with KAFKA_STORAGE_ERROR while the file system of log.dirs has less free space than this; deletions still work, and appends resume once space is freed. 0: no check." },
    SettingDef { name: "producer.id.expiration.ms", default: "86400000", kind: ValueType::Int, doc: "Idempotent-producer state of a producer id that has not written to a partition for this long is dropped from memory and disk." },
    SettingDef { name: "producer.id.expiration.check.interval.ms", default: "600000", kind: ValueType::Int, doc: "How often expired producer ids are looked for." },
    SettingDef { name: "log.flush.interval.ms", default: "500", kind: ValueType::Long, doc: "Period of sled's background flush to disk. Unless this or log.flush.interval.messages is set explicitly, every write is also flushed (group commit) before it is acknowledged, and followers flush before reporting their log end." },
    SettingDef { name: "log.flush.interval.messages", default: NEVER, kind: ValueType::Long, doc: "Never by default. Kafka's rule, used only when this or log.flush.interval.ms is set explicitly: flush (fsync) a partition's log before answering once this many messages accumulated in it since the last flush (1 = before every produce answer). By default every write is flushed before it is acknowledged instead (group commit)." },
    SettingDef { name: "replica.high.watermark.checkpoint.interval.ms", default: "5000", kind: ValueType::Long, doc: "How often the high watermarks are written to disk (they are kept in memory; a restarted broker may start from an older one and catches up from the leader)." },
    SettingDef { name: "log.retention.hours", default: "168", kind: ValueType::Int, doc: "Default retention time in hours (topic config retention.ms)." },
    SettingDef { name: "log.retention.ms", default: "", kind: ValueType::Long, doc: "Default retention time in ms; overrides log.retention.hours when set." },
    SettingDef { name: "log.retention.bytes", default: "-1", kind: ValueType::Long, doc: "Default retention size per partition (topic config retention.bytes)." },
    SettingDef { name: "log.retention.check.interval.ms", default: "300000", kind: ValueType::Long, doc: "How often retention is checked." },
    SettingDef { name: "log.cleanup.policy", default: "delete", kind: ValueType::List, doc: "Default cleanup.policy of topics." },
    SettingDef { name: "min.insync.replicas", default: "1", kind: ValueType::Int, doc: "Default min.insync.replicas of topics." },
    SettingDef { name: "group.min.session.timeout.ms", default: "6000", kind: ValueType::Int, doc: "Smallest session timeout a group member may ask for." },
    SettingDef { name: "group.max.session.timeout.ms", default: "1800000", kind: ValueType::Int, doc: "Largest session timeout a group member may ask for." },
    SettingDef { name: "group.initial.rebalance.delay.ms", default: "3000", kind: ValueType::Int, doc: "How long the first rebalance of an empty group waits for more members (extended while members keep joining, up to the rebalance timeout)." },
    SettingDef { name: "group.max.size", default: "2147483647", kind: ValueType::Int, doc: "Most members a consumer group may have." },
    SettingDef { name: "offset.metadata.max.bytes", default: "4096", kind: ValueType::Int, doc: "Longest metadata string an offset commit may carry." },
    SettingDef { name: "offsets.topic.num.partitions", default: "10", kind: ValueType::Int, doc: "Partitions of the internal __consumer_offsets topic (cluster mode; Kafka: 50). Fixed once the topic exists." },
    SettingDef { name: "offsets.topic.replication.factor", default: "3", kind: ValueType::Int, doc: "Replication factor of __consumer_offsets, capped at the number of live brokers when the topic is created (cluster mode)." },
    SettingDef { name: "offsets.commit.timeout.ms", default: "5000", kind: ValueType::Int, doc: "How long an OffsetCommit waits for the in-sync replicas of its __consumer_offsets partition before answering REQUEST_TIMED_OUT (cluster mode)." },
    SettingDef { name: "log.level", default: "info", kind: ValueType::Str, doc: "Level of the broker's log (stderr): error, warn, info, debug or trace; libraries (openraft, tonic) stay at warn. RUST_LOG, in tracing's EnvFilter syntax, wins when set." },
    SettingDef { name: "log.format", default: "text", kind: ValueType::Str, doc: "Log line format: text, or json (one JSON object per line)." },
    SettingDef { name: "sled.cache.capacity.bytes", default: "67108864", kind: ValueType::Long, doc: "Size of sled's page cache (sled's own default is 1 GiB)." },
    SettingDef { name: "sled.segment.bytes", default: "16777216", kind: ValueType::Int, doc: "sled log segment size for a new data directory: a power of two from 65536 to 16777216 (sled's default is 524288). Log entries above a quarter of it become blob files. An existing data directory keeps the size it was created with." },
];

/// Looks up a setting definition by name.
pub fn setting(name: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Where a setting's value came from (reported by DescribeConfigs as the config source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    Static,
    /// Set for one broker through the metadata quorum (IncrementalAlterConfigs/AlterConfigs).
    DynamicBroker,
    /// Set for every broker (resource name "") through the metadata quorum.
    DynamicDefault,
}

/// A listener: its name, bind address and the address advertised to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// Its `listener.security.protocol.map` entry.
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// How a listener's connections are secured (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// TLS on the connection.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// SASL authentication before any other request.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// How a TLS listener asks for client certificates (`ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// TLS settings shared by the SSL and SASL_SSL listeners (paths to PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslConfig {
    /// `ssl.keystore.location`: key and chain in one file.
    pub keystore: Option<PathBuf>,
    /// `ssl.key.location` + `ssl.certificate.location`: key and chain in two files.
    pub key: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key_password: Option<String>,
    /// `ssl.truststore.location`: CAs for client certificates.
    pub truststore: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
}

/// SASL settings of the SASL listeners.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`, in the configured order.
    pub mechanisms: Vec<String>,
    /// `sasl.jaas.config` text and the `sasl.jaas.file` path (PLAIN users).
    pub jaas_config: String,
    pub jaas_file: Option<PathBuf>,
    /// `connections.max.reauth.ms`; 0: sessions do not expire.
    pub max_reauth_ms: u64,
    /// `sasl.scram.users`: (mechanism, user, password) from settings.
    pub scram_users: Vec<(String, String, String)>,
}

/// A voter of the metadata quorum, as `controller.quorum.voters` names it: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: i32,
    pub host: String,
    /// The voter's `raft.listener` port.
    pub port: u16,
}

impl QuorumVoter {
    /// `host:port`, with IPv6 literals in brackets.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The broker's settings after all sources have been merged and validated.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Raw values by name, with where each came from; DescribeConfigs reports these.
    values: BTreeMap<&'static str, (String, Source)>,
    pub node_id: i32,
    pub listeners: Vec<Listener>,
    /// `broker.rack`, when set.
    pub rack: Option<String>,
    /// The metadata quorum's voters (`controller.quorum.voters`); empty: this broker alone.
    pub quorum_voters: Vec<QuorumVoter>,
    /// Bind address of the inter-broker gRPC service (`raft.listener`).
    pub raft_listener: SocketAddr,
    /// Where other brokers reach this broker's gRPC service (`raft.advertised.listener`).
    pub raft_advertised: String,
    /// Bind address of the HTTP admin listener (`http.listener`).
    pub http_listener: SocketAddr,
    /// Minimum Raft election timeout (`controller.quorum.election.timeout.ms`).
    pub quorum_election_timeout_ms: u64,
    pub data_dir: PathBuf,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub message_max_bytes: i32,
    pub socket_request_max_bytes: usize,
    /// Most metadata records one CreateTopics/CreatePartitions request may create.
    pub max_records_per_user_op: usize,
    /// Cap on the record bytes of every Fetch response (`fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// Per-partition and per-response sizes of this broker's replica fetches.
    pub replica_fetch_max_bytes: usize,
    pub replica_fetch_response_max_bytes: usize,
    /// Connection limits (`max.connections`, `max.connections.per.ip` and its overrides).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// A connection without a complete request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// Appends are refused while the data directory's file system has less free space.
    pub log_dir_min_free_bytes: u64,
    /// Idempotent-producer state unused for this long is dropped, checked at this interval.
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub flush_interval_ms: u64,
    /// `log.flush.interval.messages`: a partition's appends are fsynced before they are
    /// answered once this many accumulated since the last flush (`i64::MAX`: never). Only
    /// when `flush_before_ack` is off.
    pub flush_interval_messages: u64,
    /// Neither `log.flush.interval.ms` nor `log.flush.interval.messages` was set: every write
    /// is flushed (group commit) before it is acknowledged or reported to a leader.
    pub flush_before_ack: bool,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub hw_checkpoint_interval_ms: u64,
    pub sled_cache_bytes: u64,
    /// `sled.segment.bytes`: the sled segment size of a new data directory.
    pub sled_segment_bytes: usize,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub retention_check_interval_ms: u64,
    pub min_insync_replicas: i32,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub replica_lag_time_max_ms: u64,
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_ms: u64,
    /// Bounds on the session timeout a JoinGroup may ask for.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Delay of the first rebalance of an empty group, so members starting together land in
    /// one generation instead of one rebalance each.
    pub group_initial_rebalance_delay_ms: i32,
    pub group_max_size: i32,
    pub offset_metadata_max_bytes: i32,
    /// Partitions and replication factor of `__consumer_offsets` (cluster mode).
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    /// How long an OffsetCommit waits for its records to be replicated.
    pub offsets_commit_timeout_ms: u64,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::authorizer::AuthorizerSettings,
    /// `inter.broker.secret` (or the content of `inter.broker.secret.file`); `None`: the
    /// inter-broker gRPC port is unauthenticated.
    pub inter_broker_secret: Option<InterBrokerSecret>,
    /// `raft.listener` was a wildcard address moved to the Kafka listener's host because no
    /// inter-broker secret is set (logged at startup).
    pub raft_listener_narrowed: bool,
    /// TLS settings of SSL/SASL_SSL listeners.
    pub ssl: SslConfig,
    /// SASL settings of SASL_PLAINTEXT/SASL_SSL listeners.
    pub sasl: SaslConfig,
}

/// The cluster secret of the inter-broker port. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct InterBrokerSecret(pub Vec<u8>);

impl std::fmt::Debug for InterBrokerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterBrokerSecret(<redacted>)")
    }
}

/// Shortest `inter.broker.secret` accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::from_pairs(Vec::<(String, String, String)>::new())
            .expect("the built-in defaults are valid")
    }
}

impl BrokerConfig {
    /// Reads settings from the process's arguments and environment.
    pub fn from_env_and_args(args: Vec<String>) -> Result<Self, ConfigError> {
        let matches = cli().try_get_matches_from(args).map_err(|e| {
            // --help and --version are not errors for the user; clap prints them itself.
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            ConfigError::Cli(e.to_string())
        })?;
        let mut pairs: Vec<(String, String, String)> = Vec::new();
        if let Some(path) = matches.get_one::<String>("config") {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            for (name, value) in parse_properties(&text) {
                pairs.push((format!("config file {}", path.display()), name, value));
            }
        }
        for def in SETTINGS {
            if let Ok(value) = std::env::var(env_name(def.name)) {
                pairs.push((
                    format!("environment {}", env_name(def.name)),
                    def.name.to_string(),
                    value,
                ));
            }
        }
        for def in SETTINGS {
            if let Some(value) = matches.get_one::<String>(def.name) {
                pairs.push(("command line".into(), def.name.to_string(), value.clone()));
            }
        }
        Self::from_pairs(pairs)
    }

    /// Builds a config from `(origin, name, value)` triples, later ones winning.
    pub fn from_pairs<I>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String, String)>,
    {
        let mut values: BTreeMap<&'static str, (String, Source)> = SETTINGS
            .iter()
            .map(|d| (d.name, (d.default.to_string(), Source::Default)))
            .collect();
        for (origin, name, value) in pairs {
            let def = setting(&name).ok_or_else(|| ConfigError::Unknown {
                origin,
                name: name.clone(),
            })?;
            check_type(def, &value)?;
            values.insert(def.name, (value, Source::Static));
        }
        let get = |n: &str| values[n].0.clone();
        let int = |n: &str| -> Result<i64, ConfigError> {
            get(n)
                .trim()
                .parse::<i64>()
                .map_err(|e| invalid(n, &get(n), &e.to_string()))
        };
        let node_id = i32::try_from(int("node.id")?)
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid("node.id", &get("node.id"), "must be 0 or more"))?;
        let listeners = parse_listeners(&get("listeners"), &get("advertised.listeners"))?;
        let mut listeners = listeners;
        check_protocols(&mut listeners, &get("listener.security.protocol.map"))?;
        let ssl = parse_ssl(&get, &listeners)?;
        let sasl = parse_sasl(&get)?;
        let rack = Some(get("broker.rack").trim().to_string()).filter(|r| !r.is_empty());
        let quorum_voters = parse_voters(&get("controller.quorum.voters"))?;
        let mut raft_listener = parse_bind("raft.listener", get("raft.listener").trim())?;
        let inter_broker_secret = parse_secret(
            &get("inter.broker.secret"),
            &get("inter.broker.secret.file"),
        )?;
        // Without a secret, the unauthenticated gRPC port listens no wider than the Kafka
        // listener: a wildcard raft.listener moves to the first Kafka listener's address.
        let kafka_ip = listeners[0].bind.ip();
        let raft_listener_narrowed = inter_broker_secret.is_none()
            && raft_listener.ip().is_unspecified()
            && !kafka_ip.is_unspecified();
        if raft_listener_narrowed {
            raft_listener.set_ip(kafka_ip);
        }
        let authorizer = parse_authorizer(
            &get("authorizer.class.name"),
            &get("super.users"),
            get("allow.everyone.if.no.acl.found").trim() == "true",
        )?;
        let raft_advertised = match get("raft.advertised.listener").trim() {
            "" if raft_listener.ip().is_unspecified() => {
                format!("{}:{}", host_name(), raft_listener.port())
            }
            "" => raft_listener.to_string(),
            a if a
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
            {
                a.to_string()
            }
            a => return Err(invalid("raft.advertised.listener", a, "expected host:port")),
        };
        let http_listener = match get("http.listener").trim() {
            "" => http_next_to(listeners[0].bind)?,
            a => parse_bind("http.listener", a)?,
        };
        let positive = |n: &str| -> Result<i64, ConfigError> {
            let v = int(n)?;
            if v <= 0 {
                return Err(invalid(n, &get(n), "must be greater than 0"));
            }
            Ok(v)
        };
        let non_negative = |n: &str| -> Result<i64, ConfigError> {
            let v = int(n)?;
            if v < 0 {
                return Err(invalid(n, &get(n), "must be 0 or more"));
            }
            Ok(v)
        };
        let retention_ms = match get("log.retention.ms").trim() {
            "" => int("log.retention.hours")?.saturating_mul(3_600_000),
            _ => int("log.retention.ms")?,
        };
        Ok(Self {
            node_id,
            listeners,
            rack,
            quorum_voters,
            raft_listener,
            raft_advertised,
            http_listener,
            quorum_election_timeout_ms: positive("controller.quorum.election.timeout.ms")? as u64,
            data_dir: PathBuf::from(get("log.dirs")),
            num_partitions: clamp_i32("num.partitions", positive("num.partitions")?)?,
            default_replication_factor: i16::try_from(positive("default.replication.factor")?)
                .map_err(|_| {
                    invalid(
                        "default.replication.factor",
                        &get("default.replication.factor"),
                        "too large",
                    )
                })?,
            auto_create_topics: get("auto.create.topics.enable").trim() == "true",
            message_max_bytes: clamp_i32("message.max.bytes", positive("message.max.bytes")?)?,
            socket_request_max_bytes: positive("socket.request.max.bytes")? as usize,
            max_records_per_user_op: positive("max.records.per.user.op")? as usize,
            fetch_max_bytes: positive("fetch.max.bytes")? as usize,
            replica_fetch_max_bytes: positive("replica.fetch.max.bytes")? as usize,
            replica_fetch_response_max_bytes: positive("replica.fetch.response.max.bytes")?
                as usize,
            max_connections: positive("max.connections")? as usize,
            max_connections_per_ip: positive("max.connections.per.ip")? as usize,
            max_connections_per_ip_overrides: parse_ip_overrides(&get(
                "max.connections.per.ip.overrides",
            ))?,
            connections_max_idle_ms: positive("connections.max.idle.ms")? as u64,
            log_dir_min_free_bytes: non_negative("log.dir.min.free.bytes")? as u64,
            producer_id_expiration_ms: positive("producer.id.expiration.ms")?,
            producer_id_expiration_check_interval_ms: positive(
                "producer.id.expiration.check.interval.ms",
            )? as u64,
            flush_interval_ms: positive("log.flush.interval.ms")? as u64,
            flush_interval_messages: positive("log.flush.interval.messages")? as u64,
            flush_before_ack: ["log.flush.interval.ms", "log.flush.interval.messages"]
                .iter()
                .all(|n| values[*n].1 == Source::Default),
            hw_checkpoint_interval_ms: positive("replica.high.watermark.checkpoint.interval.ms")?
                as u64,
            sled_cache_bytes: positive("sled.cache.capacity.bytes")? as u64,
            sled_segment_bytes: match int("sled.segment.bytes")? {
                // log::sled_config::{MIN,MAX}_SEGMENT_BYTES (sled refuses more than 16 MiB)
                v if (65536..=16_777_216).contains(&v) && v.count_ones() == 1 => v as usize,
                _ => {
                    return Err(invalid(
                        "sled.segment.bytes",
                        &get("sled.segment.bytes"),
                        "must be a power of two from 65536 to 16777216",
                    ))
                }
            },
            retention_ms,
            retention_bytes: int("log.retention.bytes")?,
            retention_check_interval_ms: positive("log.retention.check.interval.ms")? as u64,
            heartbeat_interval_ms: positive("broker.heartbeat.interval.ms")? as u64,
            session_timeout_ms: positive("broker.session.timeout.ms")? as u64,
            replica_lag_time_max_ms: positive("replica.lag.time.max.ms")? as u64,
            auto_leader_rebalance: get("auto.leader.rebalance.enable").trim() == "true",
            leader_imbalance_check_ms: positive("leader.imbalance.check.interval.seconds")? as u64
                * 1000,
            min_insync_replicas: clamp_i32(
                "min.insync.replicas",
                positive("min.insync.replicas")?,
            )?,
            group_min_session_timeout_ms: clamp_i32(
                "group.min.session.timeout.ms",
                positive("group.min.session.timeout.ms")?,
            )?,
            group_max_session_timeout_ms: clamp_i32(
                "group.max.session.timeout.ms",
                positive("group.max.session.timeout.ms")?,
            )?,
            group_initial_rebalance_delay_ms: clamp_i32(
                "group.initial.rebalance.delay.ms",
                non_negative("group.initial.rebalance.delay.ms")?,
            )?,
            group_max_size: clamp_i32("group.max.size", positive("group.max.size")?)?,
            offset_metadata_max_bytes: clamp_i32(
                "offset.metadata.max.bytes",
                non_negative("offset.metadata.max.bytes")?,
            )?,
            offsets_topic_num_partitions: clamp_i32(
                "offsets.topic.num.partitions",
                positive("offsets.topic.num.partitions")?,
            )?,
            offsets_topic_replication_factor: positive("offsets.topic.replication.factor")?
                .min(i16::MAX as i64) as i16,
            offsets_commit_timeout_ms: positive("offsets.commit.timeout.ms")? as u64,
            authorizer,
            inter_broker_secret,
            raft_listener_narrowed,
            ssl,
            sasl,
            values: hide_secrets(values),
        })
    }

    /// The value of a setting and where it came from.
    pub fn raw(&self, name: &str) -> Option<(&str, Source)> {
        self.values.get(name).map(|(v, s)| (v.as_str(), *s))
    }
}

/// The raw values with every set secret replaced by `[hidden]` (as Kafka logs passwords): the
/// parsed secret lives in its own field, and the raw values reach DescribeConfigs and Debug.
fn hide_secrets(
    mut values: BTreeMap<&'static str, (String, Source)>,
) -> BTreeMap<&'static str, (String, Source)> {
    for def in SETTINGS.iter().filter(|d| d.kind == ValueType::Password) {
        if let Some((v, _)) = values.get_mut(def.name) {
            if !v.is_empty() {
                *v = "[hidden]".to_string();
            }
        }
    }
    values
}

/// `inter.broker.secret` or the content of `inter.broker.secret.file` (not both).
fn parse_secret(value: &str, file: &str) -> Result<Option<InterBrokerSecret>, ConfigError> {
    let secret = match (value.trim(), file.trim()) {
        ("", "") => return Ok(None),
        (v, "") => v.to_string(),
        ("", f) => std::fs::read_to_string(f)
            .map_err(|source| ConfigError::ReadFile {
                path: PathBuf::from(f),
                source,
            })?
            .trim()
            .to_string(),
        _ => {
            return Err(invalid(
                "inter.broker.secret.file",
                file,
                "set either inter.broker.secret or inter.broker.secret.file, not both",
            ))
        }
    };
    if secret.len() < MIN_SECRET_LEN {
        return Err(invalid(
            "inter.broker.secret",
            "<redacted>",
            &format!("must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"),
        ));
    }
    Ok(Some(InterBrokerSecret(secret.into_bytes())))
}

/// The authorizer settings; `authorizer.class.name` must be empty or a class raftka
/// implements.
fn parse_authorizer(
    class: &str,
    super_users: &str,
    allow_everyone_if_no_acl_found: bool,
) -> Result<crate::security::authorizer::AuthorizerSettings, ConfigError> {
    use crate::security::authorizer::{AuthorizerSettings, ACCEPTED_CLASS_NAMES};
    let class = class.trim();
    if !class.is_empty() && !ACCEPTED_CLASS_NAMES.contains(&class) {
        return Err(invalid(
            "authorizer.class.name",
            class,
            &format!("raftka implements {}", ACCEPTED_CLASS_NAMES.join(" and ")),
        ));
    }
    Ok(AuthorizerSettings {
        enabled: !class.is_empty(),
        super_users: AuthorizerSettings::parse_super_users(super_users)
            .map_err(|e| invalid("super.users", super_users, &e))?,
        allow_everyone_if_no_acl_found,
    })
}

fn clamp_i32(name: &str, v: i64) -> Result<i32, ConfigError> {
    i32::try_from(v).map_err(|_| invalid(name, &v.to_string(), "too large"))
}

fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn check_type(def: &SettingDef, value: &str) -> Result<(), ConfigError> {
    let v = value.trim();
    let ok = match def.kind {
        ValueType::Bool => v == "true" || v == "false",
        ValueType::Int => v.parse::<i32>().is_ok(),
        ValueType::Long => v.is_empty() && def.default.is_empty() || v.parse::<i64>().is_ok(),
        ValueType::Double => v.parse::<f64>().is_ok_and(f64::is_finite),
        ValueType::Str | ValueType::List | ValueType::Password => true,
    };
    if ok {
        Ok(())
    } else {
        let expected = match def.kind {
            ValueType::Bool => "expected true or false",
            ValueType::Int => "expected a 32-bit integer",
            ValueType::Double => "expected a number",
            _ => "expected a 64-bit integer",
        };
        Err(invalid(def.name, value, expected))
    }
}

/// The environment variable that sets `name`: `RAFTKA_` + upper snake case.
pub fn env_name(name: &str) -> String {
    format!("RAFTKA_{}", name.replace(['.', '-'], "_").to_uppercase())
}

/// Parses Java-properties style text: `key=value` (or `key: value`) lines, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let idx = l.find(['=', ':'])?;
            Some((l[..idx].trim().to_string(), l[idx + 1..].trim().to_string()))
        })
        .collect()
}

fn parse_listeners(listeners: &str, advertised: &str) -> Result<Vec<Listener>, ConfigError> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let parse_one = |setting: &str, item: &str| -> Result<(String, String, u16), ConfigError> {
        let (name, hostport) = item
            .split_once("://")
            .ok_or_else(|| invalid(setting, item, "expected NAME://host:port"))?;
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| invalid(setting, item, "expected NAME://host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(setting, item, "port must be 0-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok((name.to_string(), host.to_string(), port))
    };
    let adv: Vec<(String, String, u16)> = split(advertised)
        .iter()
        .map(|a| parse_one("advertised.listeners", a))
        .collect::<Result<_, _>>()?;
    let mut out: Vec<Listener> = Vec::new();
    for item in split(listeners) {
        let (name, host, port) = parse_one("listeners", &item)?;
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(
                "listeners",
                listeners,
                &format!("listener name {name} appears twice; each listener needs its own name"),
            ));
        }
        let bind_host = if host.is_empty() { "0.0.0.0" } else { &host };
        let bind: SocketAddr = format!("{bind_host}:{port}")
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(bind_host, port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(())
            })
            .map_err(|_| {
                invalid(
                    "listeners",
                    &item,
                    "host is not an address or a resolvable name",
                )
            })?;
        let (advertised_host, advertised_port) = match adv.iter().find(|a| a.0 == name) {
            Some((_, h, p)) => (h.clone(), *p),
            // A wildcard bind address is no use to clients: advertise the host name instead.
            None if bind.ip().is_unspecified() => (host_name(), port),
            None => (bind.ip().to_string(), port),
        };
        out.push(Listener {
            name,
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised_host,
            advertised_port,
        });
    }
    if out.is_empty() {
        return Err(invalid(
            "listeners",
            listeners,
            "at least one listener is needed",
        ));
    }
    if let Some((name, _, _)) = adv.iter().find(|a| !out.iter().any(|l| l.name == a.0)) {
        return Err(invalid(
            "advertised.listeners",
            advertised,
            &format!("{name} is not a name used in listeners"),
        ));
    }
    Ok(out)
}

/// Reads `listener.security.protocol.map` (`NAME:PROTOCOL,…`) into each listener's protocol:
/// every listener needs an entry, as in Kafka.
fn check_protocols(listeners: &mut [Listener], map: &str) -> Result<(), ConfigError> {
    let mut entries = Vec::new();
    for item in map.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (name, protocol) = item.split_once(':').ok_or_else(|| {
            invalid(
                "listener.security.protocol.map",
                map,
                "expected NAME:PROTOCOL entries",
            )
        })?;
        entries.push((name.trim(), protocol.trim()));
    }
    for l in listeners {
        match entries.iter().find(|(n, _)| *n == l.name) {
            None => {
                return Err(invalid(
                    "listener.security.protocol.map",
                    map,
                    &format!(
                        "listener {} has no entry (add {}:PLAINTEXT)",
                        l.name, l.name
                    ),
                ))
            }
            Some((_, p)) => {
                l.protocol = SecurityProtocol::parse(p).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        map,
                        &format!(
                        "listener {} uses {p}; expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                        l.name
                    ),
                    )
                })?
            }
        }
    }
    Ok(())
}

/// The `ssl.*` settings; a TLS listener needs a key and certificate.
fn parse_ssl(
    get: &dyn Fn(&str) -> String,
    listeners: &[Listener],
) -> Result<SslConfig, ConfigError> {
    let path = |n: &str| {
        Some(get(n).trim().to_string())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    for n in ["ssl.keystore.type", "ssl.truststore.type"] {
        if !get(n).trim().eq_ignore_ascii_case("PEM") {
            return Err(invalid(
                n,
                &get(n),
                "raftka reads PEM files only (convert a JKS or PKCS12 store with keytool/openssl)",
            ));
        }
    }
    if get("ssl.principal.mapping.rules").trim() != "DEFAULT" {
        return Err(invalid(
            "ssl.principal.mapping.rules",
            &get("ssl.principal.mapping.rules"),
            "raftka supports DEFAULT only (the certificate's full subject)",
        ));
    }
    let client_auth = match get("ssl.client.auth").trim().to_ascii_lowercase().as_str() {
        "none" | "" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        other => {
            return Err(invalid(
                "ssl.client.auth",
                other,
                "expected required, requested or none",
            ))
        }
    };
    let c = SslConfig {
        keystore: path("ssl.keystore.location"),
        key: path("ssl.key.location"),
        certificate: path("ssl.certificate.location"),
        key_password: Some(get("ssl.key.password")).filter(|v| !v.is_empty()),
        truststore: path("ssl.truststore.location"),
        client_auth: Some(client_auth),
    };
    if let Some(l) = listeners.iter().find(|l| l.protocol.tls()) {
        if c.keystore.is_none() && (c.key.is_none() || c.certificate.is_none()) {
            return Err(invalid("ssl.keystore.location", "", &format!("listener {} uses TLS: set ssl.keystore.location (key and chain in one PEM file) or ssl.key.location and ssl.certificate.location", l.name)));
        }
        if client_auth != ClientAuth::None && c.truststore.is_none() {
            return Err(invalid("ssl.truststore.location", "", "ssl.client.auth asks for client certificates: set the CA file that they must chain to"));
        }
    }
    Ok(c)
}

/// The `sasl.*` settings.
fn parse_sasl(get: &dyn Fn(&str) -> String) -> Result<SaslConfig, ConfigError> {
    let mut mechanisms = Vec::new();
    for m in get("sasl.enabled.mechanisms")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        let m = m.to_ascii_uppercase();
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
            return Err(invalid(
                "sasl.enabled.mechanisms",
                &m,
                "raftka supports PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512",
            ));
        }
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    let reauth = get("connections.max.reauth.ms")
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| {
            invalid(
                "connections.max.reauth.ms",
                &get("connections.max.reauth.ms"),
                "must be 0 or more",
            )
        })?;
    let scram_users = parse_scram_users(&get("sasl.scram.users"))?;
    Ok(SaslConfig {
        scram_users,
        mechanisms,
        jaas_config: get("sasl.jaas.config"),
        jaas_file: Some(get("sasl.jaas.file").trim().to_string())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        max_reauth_ms: reauth as u64,
    })
}

/// Parses `sasl.scram.users`: `MECHANISM=[name=USER,password=PASSWORD]` entries separated by
/// spaces or commas (the password runs to the closing bracket).
fn parse_scram_users(value: &str) -> Result<Vec<(String, String, String)>, ConfigError> {
    const NAME: &str = "sasl.scram.users";
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let bad = |why: &str| invalid(NAME, value, why);
        let (mechanism, after) = rest
            .split_once("=[")
            .ok_or_else(|| bad("expected MECHANISM=[name=USER,password=PASSWORD]"))?;
        let mechanism = mechanism.trim().to_ascii_uppercase();
        if mechanism != "SCRAM-SHA-256" && mechanism != "SCRAM-SHA-512" {
            return Err(bad("the mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512"));
        }
        let (body, after) = after.split_once(']').ok_or_else(|| bad("missing ]"))?;
        let (name, password) = body
            .strip_prefix("name=")
            .and_then(|b| b.split_once(",password="))
            .ok_or_else(|| bad("expected name=USER,password=PASSWORD inside the brackets"))?;
        if name.is_empty() || password.is_empty() {
            return Err(bad("the name and password must not be empty"));
        }
        out.push((mechanism, name.to_string(), password.to_string()));
        rest = after.trim_start_matches([',', ' ']).trim();
    }
    Ok(out)
}

/// Parses `controller.quorum.voters`: `id@host:port,id@host:port,…` (Kafka's KRaft format).
pub fn parse_voters(value: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    const NAME: &str = "controller.quorum.voters";
    let mut out: Vec<QuorumVoter> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let bad = |reason: &str| invalid(NAME, item, reason);
        let (id, hostport) = item
            .split_once('@')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| bad("the id must be a node.id (0 or more)"))?;
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be 1-65535"))?;
        if out.iter().any(|v| v.id == id) {
            return Err(bad("this id is listed twice"));
        }
        out.push(QuorumVoter {
            id,
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// Parses `max.connections.per.ip.overrides`: `ip:count,ip:count,…` (IPv6 as `[ip]:count`).
fn parse_ip_overrides(value: &str) -> Result<BTreeMap<std::net::IpAddr, usize>, ConfigError> {
    const NAME: &str = "max.connections.per.ip.overrides";
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (ip, count) = item
            .rsplit_once(':')
            .ok_or_else(|| invalid(NAME, item, "expected ip:count"))?;
        let ip: std::net::IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| invalid(NAME, item, "not an IP address"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| invalid(NAME, item, "the count must be 0 or more"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

/// The default HTTP listener: the Kafka listener's address with its port + 2 (port 0, an
/// ephemeral port, stays 0).
fn http_next_to(kafka: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let port = match kafka.port() {
        0 => 0,
        p => p.checked_add(2).ok_or_else(|| {
            invalid(
                "http.listener",
                "",
                &format!("the Kafka port {p} leaves no room for port + 2; set http.listener"),
            )
        })?,
    };
    Ok(SocketAddr::new(kafka.ip(), port))
}

/// Parses a `host:port` bind address (an IP literal or a resolvable name).
fn parse_bind(name: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = value.parse() {
        return Ok(a);
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| invalid(name, value, "expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(name, value, "port must be 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| invalid(name, value, "host is not an address or a resolvable name"))
}

/// This machine's host name (what Kafka advertises for a wildcard listener).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The command line: `--config FILE` plus one `--<name> <value>` flag per setting.
fn cli() -> clap::Command {
    let mut cmd = clap::Command::new("raftka")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Kafka-compatible, Raft-replicated event streaming broker")
        .after_help(
            "Every setting can also be given in the config file (name=value) or as the \
             environment variable RAFTKA_<NAME_IN_UPPER_SNAKE>, e.g. RAFTKA_NUM_PARTITIONS=3.\n\n\
             Admin commands (a Kafka client, run `raftka <command> --help`): \
             raftka cluster health|status, raftka topic create|list|describe|delete|produce|consume, \
             raftka group list|describe.",
        )
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("Java-properties file with settings (name=value)"),
        );
    for def in SETTINGS {
        cmd = cmd.arg(
            clap::Arg::new(def.name)
                .long(def.name)
                .value_name("VALUE")
                .help(format!("{} [default: {}]", def.doc, shown_default(def))),
        );
    }
    cmd
}

/// A setting's default as `--help` shows it: Kafka's "never" (`Long.MAX_VALUE`) in words.
fn shown_default(def: &SettingDef) -> &'static str {
    if def.default == NEVER {
        "never"
    } else {
        def.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_settings_parse_and_are_checked() {
        let c = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| ("t".to_string(), k.to_string(), v.to_string())),
            )
        };
        let d = c(&[]).unwrap();
        assert!(!d.authorizer.enabled && d.inter_broker_secret.is_none());
        let a = c(&[
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:admin;User:ops"),
            ("allow.everyone.if.no.acl.found", "true"),
            ("inter.broker.secret", "0123456789abcdef"),
        ])
        .unwrap();
        assert!(a.authorizer.enabled && a.authorizer.allow_everyone_if_no_acl_found);
        assert_eq!(a.authorizer.super_users.len(), 2);
        assert_eq!(
            a.inter_broker_secret.as_ref().unwrap().0,
            b"0123456789abcdef"
        );
        assert!(
            !format!("{a:?}").contains("0123456789abcdef"),
            "secret in Debug"
        );
        for bad in [
            vec![("authorizer.class.name", "com.example.Mine")],
            vec![("super.users", "admin")],
            vec![("inter.broker.secret", "short")],
            vec![
                ("inter.broker.secret", "0123456789abcdef"),
                ("inter.broker.secret.file", "/x"),
            ],
        ] {
            assert!(c(&bad).is_err(), "{bad:?}");
        }
        // From a file, trimmed.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "  fedcba9876543210fedcba\n").unwrap();
        let s = c(&[("inter.broker.secret.file", f.to_str().unwrap())]).unwrap();
        assert_eq!(s.inter_broker_secret.unwrap().0, b"fedcba9876543210fedcba");
        // Without a secret a wildcard gRPC listener narrows to the Kafka listener's host;
        // with one it stays.
        let open = c(&[
            ("listeners", "PLAINTEXT://127.0.0.5:9092"),
            ("raft.listener", "0.0.0.0:9093"),
        ])
        .unwrap();
        assert_eq!(open.raft_listener.to_string(), "127.0.0.5:9093");
        assert!(open.raft_listener_narrowed);
        let closed = c(&[
            ("listeners", "PLAINTEXT://127.0.0.5:9092"),
            ("raft.listener", "0.0.0.0:9093"),
            ("inter.broker.secret", "0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(closed.raft_listener.to_string(), "0.0.0.0:9093");
    }

    #[test]
    fn env_names_are_upper_snake() {
        assert_eq!(
            env_name("auto.create.topics.enable"),
            "RAFTKA_AUTO_CREATE_TOPICS_ENABLE"
        );
    }

    #[test]
    fn later_sources_win_and_are_reported_static() {
        let c = BrokerConfig::from_pairs(vec![
            ("file".into(), "num.partitions".into(), "3".into()),
            ("env".into(), "num.partitions".into(), "5".into()),
        ])
        .unwrap();
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.raw("num.partitions"), Some(("5", Source::Static)));
        assert_eq!(
            c.raw("message.max.bytes"),
            Some(("1048588", Source::Default))
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = BrokerConfig::from_pairs(vec![("x".into(), "num.partitions".into(), "0".into())])
            .unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e =
            BrokerConfig::from_pairs(vec![("x".into(), "nope".into(), "1".into())]).unwrap_err();
        assert!(matches!(e, ConfigError::Unknown { .. }));
        let e = BrokerConfig::from_pairs(vec![(
            "x".into(),
            "auto.create.topics.enable".into(),
            "yes".into(),
        )])
        .unwrap_err();
        assert!(e.to_string().contains("true or false"));
    }

    #[test]
    fn flags_parse_with_kafka_names() {
        let c = BrokerConfig::from_env_and_args(
            [
                "raftka",
                "--num.partitions",
                "4",
                "--listeners=PLAINTEXT://127.0.0.1:19092",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.listeners[0].bind.port(), 19092);
        assert_eq!(c.listeners[0].advertised_host, "127.0.0.1");
    }

    #[test]
    fn properties_and_listeners() {
        let p = parse_properties("# c\nnum.partitions = 3\n\nlisteners=PLAINTEXT://0.0.0.0:9092\n");
        assert_eq!(p[0], ("num.partitions".into(), "3".into()));
        let l = parse_listeners("PLAINTEXT://0.0.0.0:9092", "PLAINTEXT://broker1:19092").unwrap();
        assert_eq!(l[0].advertised_host, "broker1");
        assert_eq!(l[0].advertised_port, 19092);
        assert!(parse_listeners("localhost9092", "").is_err());
        let l = parse_listeners("PLAINTEXT://0.0.0.0:9092", "").unwrap();
        assert_ne!(l[0].advertised_host, "0.0.0.0");
    }

    #[test]
    fn named_listeners_need_a_protocol() {
        let l = parse_listeners(
            "INTERNAL://127.0.0.1:9092,EXTERNAL://127.0.0.1:19092",
            "INTERNAL://broker1:9092,EXTERNAL://localhost:19092",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[1].name.as_str(), l[1].advertised_host.as_str()),
            ("EXTERNAL", "localhost")
        );
        let mut l = l;
        assert!(check_protocols(&mut l, "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT").is_ok());
        let missing = check_protocols(&mut l, "INTERNAL:PLAINTEXT")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("EXTERNAL"), "{missing}");
        assert!(check_protocols(&mut l, "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL").is_ok());
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert!(check_protocols(&mut l, "INTERNAL:PLAINTEXT,EXTERNAL:KERBEROS").is_err());
        assert!(parse_listeners("A://127.0.0.1:1,A://127.0.0.1:2", "").is_err());
        assert!(parse_listeners("A://127.0.0.1:1", "B://h:1").is_err());
        let pairs = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = BrokerConfig::from_pairs(pairs(&[
            ("listeners", "INTERNAL://127.0.0.1:9092"),
            ("listener.security.protocol.map", "INTERNAL:PLAINTEXT"),
            ("broker.rack", "r1"),
        ]))
        .unwrap();
        assert_eq!(c.rack.as_deref(), Some("r1"));
        let no_map = pairs(&[("listeners", "INTERNAL://127.0.0.1:9092")]);
        assert!(BrokerConfig::from_pairs(no_map).is_err());
    }

    #[test]
    fn quorum_voters_in_kraft_format() {
        let v = parse_voters("1@127.0.0.1:9093, 2@broker2:9093,3@[::1]:9095").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].id, 2);
        assert_eq!(v[1].addr(), "broker2:9093");
        assert_eq!(v[2].addr(), "[::1]:9095");
        assert!(parse_voters("").unwrap().is_empty());
        for bad in ["1@h", "x@h:1", "1@:9093", "1@h:0", "1@h:1,1@g:2", "h:1"] {
            let e = parse_voters(bad).unwrap_err();
            assert!(
                e.to_string().contains("controller.quorum.voters"),
                "{bad}: {e}"
            );
        }
        let c = BrokerConfig::from_pairs(vec![
            (
                "x".into(),
                "controller.quorum.voters".into(),
                "1@a:1,2@b:2".into(),
            ),
            ("x".into(), "raft.listener".into(), "0.0.0.0:19093".into()),
        ])
        .unwrap();
        assert_eq!(c.quorum_voters.len(), 2);
        assert_eq!(c.raft_listener.port(), 19093);
        assert_eq!(c.quorum_election_timeout_ms, 200);
    }

    #[test]
    fn http_listener_defaults_next_to_the_kafka_port() {
        let c = BrokerConfig::default();
        assert_eq!(c.http_listener, "127.0.0.1:9094".parse().unwrap());
        let pairs = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c =
            BrokerConfig::from_pairs(pairs(&[("listeners", "PLAINTEXT://127.0.0.1:0")])).unwrap();
        assert_eq!(c.http_listener.port(), 0);
        let c = BrokerConfig::from_pairs(pairs(&[("http.listener", "0.0.0.0:8080")])).unwrap();
        assert_eq!(c.http_listener, "0.0.0.0:8080".parse().unwrap());
        let e = BrokerConfig::from_pairs(pairs(&[("listeners", "PLAINTEXT://127.0.0.1:65535")]))
            .unwrap_err();
        assert!(e.to_string().contains("http.listener"), "{e}");
    }

    #[test]
    fn security_settings() {
        let pairs = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        // A TLS listener needs a key and certificate.
        let e = BrokerConfig::from_pairs(pairs(&[("listeners", "SSL://127.0.0.1:0")])).unwrap_err();
        assert!(e.to_string().contains("ssl.keystore.location"), "{e}");
        let c = BrokerConfig::from_pairs(pairs(&[
            ("listeners", "SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.client.auth", "requested"),
            ("ssl.truststore.location", "/ca.pem"),
            ("sasl.enabled.mechanisms", "scram-sha-512"),
            (
                "sasl.scram.users",
                "SCRAM-SHA-512=[name=admin,password=a,b] SCRAM-SHA-256=[name=x,password=y]",
            ),
        ]))
        .unwrap();
        assert_eq!(c.listeners[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.ssl.client_auth, Some(ClientAuth::Requested));
        assert_eq!(c.sasl.mechanisms, vec!["SCRAM-SHA-512".to_string()]);
        assert_eq!(
            c.sasl.scram_users[0],
            ("SCRAM-SHA-512".into(), "admin".into(), "a,b".into())
        );
        assert_eq!(c.sasl.scram_users.len(), 2);
        for (k, v) in [
            ("ssl.keystore.type", "JKS"),
            ("ssl.client.auth", "sometimes"),
            ("sasl.enabled.mechanisms", "GSSAPI"),
            ("sasl.scram.users", "SCRAM-SHA-1=[name=a,password=b]"),
            ("ssl.principal.mapping.rules", "RULE:^CN=(.*?),.*$/$1/"),
        ] {
            let e = BrokerConfig::from_pairs(pairs(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
        // Client certificates need a CA to check them against.
        let e = BrokerConfig::from_pairs(pairs(&[
            ("listeners", "SSL://127.0.0.1:0"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.client.auth", "required"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("ssl.truststore.location"), "{e}");
    }

    #[test]
    fn retention_ms_overrides_hours() {
        let c = BrokerConfig::default();
        assert_eq!(c.retention_ms, 168 * 3_600_000);
        let c =
            BrokerConfig::from_pairs(vec![("x".into(), "log.retention.ms".into(), "1000".into())])
                .unwrap();
        assert_eq!(c.retention_ms, 1000);
    }
}
