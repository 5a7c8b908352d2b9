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
    /// Code asked for a setting the table does not hold (a broker bug, not the user's).
    #[error("setting `{0}` is not in raftka's table of settings (a broker bug)")]
    NotInTable(String),
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

/// Generates, from one list, everything a setting is known by: its constant in [`names`]
/// (code names a setting through it, so a misspelt name does not compile), its row in
/// [`SETTINGS`] (config file, environment, flags, `--help`, DescribeConfigs, the list of
/// known names), and, for a setting parsed on its own, its field of [`Scalars`] with the
/// parser that fills it. An entry:
/// `CONST = "kafka.name", Kind, "default", "doc" [=> /// field doc  field: Type = parser];`
/// where `parser` is a `fn(&'static str, &str) -> Result<Type, ConfigError>` given the
/// setting's name and value.
macro_rules! settings {
    ($(
        $const:ident = $name:literal, $kind:ident, $default:expr, $doc:literal
        $(=> $(#[$attr:meta])* $field:ident: $ty:ty = $parse:ident)?;
    )*) => {
        /// The name of every setting, one constant each.
        pub mod names {
            $(#[doc = concat!("`", $name, "`")] pub const $const: &str = $name;)*
        }

        /// Every broker setting raftka understands. Names and defaults follow Apache Kafka
        /// where Kafka has the setting; `sled.*` settings are raftka's own.
        pub const SETTINGS: &[SettingDef] = &[$(
            SettingDef { name: $name, default: $default, kind: ValueType::$kind, doc: $doc },
        )*];

        /// The settings that are parsed on their own, each into its own field; those read
        /// together (listeners, TLS, SASL, the inter-broker port) are `BrokerConfig`'s own
        /// fields. `BrokerConfig` dereferences to this, so both read as `config.field`.
        #[derive(Debug, Clone)]
        pub struct Scalars {
            $($($(#[$attr])* pub $field: $ty,)?)*
        }

        impl Scalars {
            fn parse(values: &Values) -> Result<Self, ConfigError> {
                Ok(Self {
                    $($($field: $parse(names::$const, values.get(names::$const)?)?,)?)*
                })
            }
        }
    };
}

// The list: one entry a setting.
settings! {
    NODE_ID = "node.id", Int, "1",
        "This broker's id."
        => node_id: i32 = node_id;
    LISTENERS = "listeners", List, "PLAINTEXT://127.0.0.1:9092",
        "Where the Kafka listener binds, as NAME://host:port.";
    ADVERTISED_LISTENERS = "advertised.listeners", List, "",
        "Addresses given to clients in Metadata, per listener name (NAME://host:port); a listener not named here advertises its bind address.";
    LISTENER_SECURITY_PROTOCOL_MAP = "listener.security.protocol.map", List, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "Security protocol of each listener name, as NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (e.g. INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL).";
    SSL_KEYSTORE_TYPE = "ssl.keystore.type", Str, "PEM",
        "Format of ssl.keystore.location; raftka reads PEM only (Kafka's default JKS and PKCS12 are refused with a message).";
    SSL_KEYSTORE_LOCATION = "ssl.keystore.location", Str, "",
        "PEM file with the broker's private key and its certificate chain (Kafka's PEM keystore), for SSL and SASL_SSL listeners; or use ssl.key.location with ssl.certificate.location. Re-read when the file changes.";
    SSL_KEY_LOCATION = "ssl.key.location", Str, "",
        "raftka: PEM file with the broker's private key alone (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with ssl.key.password), used with ssl.certificate.location instead of ssl.keystore.location. Re-read when the file changes.";
    SSL_CERTIFICATE_LOCATION = "ssl.certificate.location", Str, "",
        "raftka: PEM file with the broker's certificate chain (its own certificate first), used with ssl.key.location. Re-read when the file changes.";
    SSL_KEY_PASSWORD = "ssl.key.password", Password, "",
        "Password of an encrypted PKCS#8 private key (-----BEGIN ENCRYPTED PRIVATE KEY-----) in the keystore or key file.";
    SSL_TRUSTSTORE_TYPE = "ssl.truststore.type", Str, "PEM",
        "Format of ssl.truststore.location; raftka reads PEM only.";
    SSL_TRUSTSTORE_LOCATION = "ssl.truststore.location", Str, "",
        "PEM file with the CA certificates that client certificates must chain to (needed when ssl.client.auth is required or requested). Re-read when the file changes.";
    SSL_CLIENT_AUTH = "ssl.client.auth", Str, "none",
        "Client certificates on SSL listeners: required (handshake fails without a valid one), requested (checked when sent) or none. A verified certificate makes the principal User:<subject DN> (RFC 2253, e.g. User:CN=alice,OU=eng). On SASL_SSL listeners the SASL identity is the principal.";
    SSL_PRINCIPAL_MAPPING_RULES = "ssl.principal.mapping.rules", Str, "DEFAULT",
        "How a client certificate's subject becomes a principal name; raftka supports DEFAULT only (the full distinguished name, as Kafka's default).";
    SASL_ENABLED_MECHANISMS = "sasl.enabled.mechanisms", List, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners: any of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Kafka's default GSSAPI is not supported).";
    SASL_JAAS_CONFIG = "sasl.jaas.config", Password, "",
        "PLAIN users in Kafka's JAAS form: org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\" ...; (only the user_ options are read).";
    SASL_JAAS_FILE = "sasl.jaas.file", Str, "",
        "raftka: a JAAS file (as java.security.auth.login.config names, e.g. a KafkaServer { PlainLoginModule required user_alice=\"...\"; }; section) whose user_<name>=\"<password>\" options are PLAIN users too. Read at start.";
    SASL_SCRAM_USERS = "sasl.scram.users", Password, "",
        "raftka: SCRAM users from settings, in kafka-storage --add-scram's form, e.g. SCRAM-SHA-512=[name=admin,password=admin-secret] (several separated by spaces). Used when the metadata quorum holds no credential of that user and mechanism: a way to log in the first admin, who then manages users with AlterUserScramCredentials. Each broker salts them itself at start.";
    CONNECTIONS_MAX_REAUTH_MS = "connections.max.reauth.ms", Long, "0",
        "SASL session lifetime given to clients in SaslAuthenticate (KIP-368); a client that has not re-authenticated within it is disconnected at its next request. 0: sessions do not expire.";
    BROKER_RACK = "broker.rack", Str, "",
        "Rack of this broker, reported to clients; empty: none."
        =>
        /// `broker.rack`, when set.
        rack: Option<String> = optional_str;
    BROKER_HEARTBEAT_INTERVAL_MS = "broker.heartbeat.interval.ms", Long, "100",
        "How often a broker renews its lease with the controller (Kafka: 2000). Three intervals without a heartbeat make a broker suspect: the controller probes its inter-broker port and fences it at once if the connection is refused."
        => heartbeat_interval_ms: u64 = positive_u64;
    BROKER_SESSION_TIMEOUT_MS = "broker.session.timeout.ms", Long, "1500",
        "A broker without a heartbeat for this long is fenced and loses leadership (Kafka: 9000; shorter for ~2 s failover)."
        => session_timeout_ms: u64 = positive_u64;
    REPLICA_LAG_TIME_MAX_MS = "replica.lag.time.max.ms", Long, "10000",
        "A follower not caught up for this long leaves the ISR (Kafka: 30000)."
        => replica_lag_time_max_ms: u64 = positive_u64;
    AUTO_LEADER_REBALANCE_ENABLE = "auto.leader.rebalance.enable", Bool, "true",
        "Move leadership back to preferred replicas once they are in sync."
        => auto_leader_rebalance: bool = boolean;
    LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS = "leader.imbalance.check.interval.seconds", Long, "10",
        "How often preferred leaders are restored (Kafka: 300)."
        => leader_imbalance_check_ms: u64 = positive_seconds_as_ms;
    CONTROLLER_QUORUM_VOTERS = "controller.quorum.voters", List, "",
        "Voters of the metadata quorum as id@host:port (the port is their raft.listener port), comma separated, the same list on every broker. Empty: this broker alone, at raft.listener."
        =>
        /// The metadata quorum's voters (`controller.quorum.voters`); empty: this broker alone.
        quorum_voters: Vec<QuorumVoter> = voters;
    RAFT_LISTENER = "raft.listener", Str, "127.0.0.1:9093",
        "host:port where the broker's inter-broker gRPC service (Raft RPCs) binds.";
    HTTP_LISTENER = "http.listener", Str, "",
        "host:port of the HTTP admin listener (/metrics, /health, /ready, /v1/cluster, the web console at /); empty: the first Kafka listener's bind address with its port + 2 (9094 next to 9092; + 1 is raft.listener's default).";
    RAFT_ADVERTISED_LISTENER = "raft.advertised.listener", Str, "",
        "host:port other brokers use to reach this broker's gRPC service when it joins as a learner (not in controller.quorum.voters); empty: raft.listener, a wildcard address replaced by the host name.";
    CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS = "controller.quorum.election.timeout.ms", Int, "200",
        "Minimum Raft election timeout; the maximum is twice this and the leader heartbeat a third of it. A follower starts an election the maximum plus its own timeout after the leader's last heartbeat (openraft's leader lease): 600-800 ms at the default."
        =>
        /// Minimum Raft election timeout (`controller.quorum.election.timeout.ms`).
        quorum_election_timeout_ms: u64 = positive_u64;
    AUTHORIZER_CLASS_NAME = "authorizer.class.name", Str, "",
        "Authorizer of client requests. Empty (the default): no authorization at all, as in Kafka. org.apache.kafka.metadata.authorizer.StandardAuthorizer (or kafka.security.authorizer.AclAuthorizer): ACLs stored in the metadata quorum decide (CreateAcls/DescribeAcls/DeleteAcls).";
    SUPER_USERS = "super.users", Str, "",
        "Principals allowed everything when an authorizer is configured, semicolon separated (User:admin;User:ops).";
    ALLOW_EVERYONE_IF_NO_ACL_FOUND = "allow.everyone.if.no.acl.found", Bool, "false",
        "With an authorizer: allow every principal on resources that no ACL covers (Kafka's default: deny).";
    INTER_BROKER_SECRET = "inter.broker.secret", Password, "",
        "Shared secret of the cluster's brokers (at least 16 characters, the same on every broker): every inter-broker gRPC call carries an HMAC-SHA256 token made with it, bound to the sending broker, the RPC and the time, and calls without a valid token are refused. Empty (and security.inter.broker.protocol=PLAINTEXT): the gRPC port is unauthenticated (a WARN at startup) and a wildcard raft.listener binds to the Kafka listener's host instead. Prefer inter.broker.secret.file.";
    SECURITY_INTER_BROKER_PROTOCOL = "security.inter.broker.protocol", Str, "PLAINTEXT",
        "How brokers secure their gRPC port (raft.listener): PLAINTEXT, or SSL for mutual TLS. With SSL each broker presents the certificate of ssl.keystore.location (or ssl.key.location + ssl.certificate.location), which must carry the subjectAltName DNS:broker-<node.id>, and accepts only peers whose certificate chains to ssl.truststore.location and names a broker; a caller may then only speak as the broker its certificate names. Combines with inter.broker.secret (both are then checked). SASL_* are refused: the secret plays that role.";
    INTER_BROKER_SECRET_FILE = "inter.broker.secret.file", Str, "",
        "File holding inter.broker.secret (surrounding whitespace ignored); keeps the secret out of the command line and the environment.";
    LOG_DIRS = "log.dirs", Str, "./data",
        "Directory of the broker's sled database."
        => data_dir: PathBuf = path;
    NUM_PARTITIONS = "num.partitions", Int, "1",
        "Partitions of a topic created without an explicit count."
        => num_partitions: i32 = positive_i32;
    DEFAULT_REPLICATION_FACTOR = "default.replication.factor", Int, "1",
        "Replication factor of a topic created without an explicit one."
        => default_replication_factor: i16 = positive_i16;
    AUTO_CREATE_TOPICS_ENABLE = "auto.create.topics.enable", Bool, "true",
        "Create unknown topics on Metadata and Produce requests."
        => auto_create_topics: bool = boolean;
    MESSAGE_MAX_BYTES = "message.max.bytes", Int, "1048588",
        "Largest record batch the broker accepts (topic override: max.message.bytes)."
        => message_max_bytes: i32 = positive_i32;
    SOCKET_REQUEST_MAX_BYTES = "socket.request.max.bytes", Int, "104857600",
        "Largest request frame; bigger frames close the connection."
        => socket_request_max_bytes: usize = positive_usize;
    MAX_IN_FLIGHT_PRODUCE_REQUESTS_PER_CONNECTION = "max.in.flight.produce.requests.per.connection", Int, "32",
        "Most Produce requests of one connection in progress at once (pipelined: appended and answered in request order, their frames together at most socket.request.max.bytes); any other request runs alone. Kafka handles one request per connection at a time."
        =>
        /// Produce requests of one connection in progress at once
        /// (`max.in.flight.produce.requests.per.connection`).
        max_in_flight_produce: usize = positive_usize;
    MAX_RECORDS_PER_USER_OP = "max.records.per.user.op", Int, "10000",
        "Most metadata records one CreateTopics or CreatePartitions request may create: one per topic, per partition and per config (Kafka's controller limit, fixed there at 10000). A larger request is refused whole with POLICY_VIOLATION before anything is placed, validate_only too."
        =>
        /// Most metadata records one CreateTopics/CreatePartitions request may create.
        max_records_per_user_op: usize = positive_usize;
    FETCH_MAX_BYTES = "fetch.max.bytes", Int, "57671680",
        "Most record bytes in one Fetch response, whatever the request asks for (the first batch of the first non-empty partition is returned even when larger, so consumers progress)."
        =>
        /// Cap on the record bytes of every Fetch response (`fetch.max.bytes`).
        fetch_max_bytes: usize = positive_usize;
    MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS = "max.incremental.fetch.session.cache.slots", Int, "1000",
        "Most client fetch sessions (KIP-227) the broker keeps; when full, a new session evicts one unused for 2 minutes, else a less valuable one (a consumer's for a follower's, a smaller one for a larger one), else the fetch is answered without a session. 0: no sessions."
        =>
        /// Most client fetch sessions kept (`max.incremental.fetch.session.cache.slots`).
        fetch_session_cache_slots: usize = non_negative_usize;
    REPLICA_FETCH_MAX_BYTES = "replica.fetch.max.bytes", Int, "1048576",
        "Record bytes a follower asks for per partition in one replica fetch (at least one batch is always returned)."
        =>
        /// Per-partition and per-response sizes of this broker's replica fetches.
        replica_fetch_max_bytes: usize = positive_usize;
    REPLICA_FETCH_RESPONSE_MAX_BYTES = "replica.fetch.response.max.bytes", Int, "10485760",
        "Record bytes a follower asks for in one replica fetch; the leader also caps replica fetches at fetch.max.bytes."
        => replica_fetch_response_max_bytes: usize = positive_usize;
    MAX_CONNECTIONS = "max.connections", Int, "2147483647",
        "Most client connections the broker keeps over all listeners; a connection beyond it is accepted and closed at once."
        =>
        /// Connection limits (`max.connections`, `max.connections.per.ip` and its overrides).
        max_connections: usize = positive_usize;
    MAX_CONNECTIONS_PER_IP = "max.connections.per.ip", Int, "2147483647",
        "Most client connections from one IP address; a connection beyond it is accepted and closed at once."
        => max_connections_per_ip: usize = positive_usize;
    MAX_CONNECTIONS_PER_IP_OVERRIDES = "max.connections.per.ip.overrides", List, "",
        "Per-IP exceptions to max.connections.per.ip, as ip:count, comma separated (e.g. 127.0.0.1:200)."
        => max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize> = ip_overrides;
    CONNECTIONS_MAX_IDLE_MS = "connections.max.idle.ms", Long, "600000",
        "A connection that completes no request for this long is closed (a frame sent only in part does not count as activity)."
        =>
        /// A connection without a complete request for this long is closed.
        connections_max_idle_ms: u64 = positive_u64;
    LOG_DIR_MIN_FREE_BYTES = "log.dir.min.free.bytes", Long, "67108864",
        "Appends are refused with KAFKA_STORAGE_ERROR while the file system of log.dirs has less free space than this; deletions still work, and appends resume once space is freed. 0: no check."
        =>
        /// Appends are refused while the data directory's file system has less free space.
        log_dir_min_free_bytes: u64 = non_negative_u64;
    PRODUCER_ID_EXPIRATION_MS = "producer.id.expiration.ms", Int, "86400000",
        "Idempotent-producer state of a producer id that has not written to a partition for this long is dropped from memory and disk."
        =>
        /// Idempotent-producer state unused for this long is dropped, checked at this interval.
        producer_id_expiration_ms: i64 = positive_i64;
    PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS = "producer.id.expiration.check.interval.ms", Int, "600000",
        "How often expired producer ids are looked for."
        => producer_id_expiration_check_interval_ms: u64 = positive_u64;
    LOG_FLUSH_INTERVAL_MS = "log.flush.interval.ms", Long, "500",
        "Period of sled's background flush to disk. Unless this or log.flush.interval.messages is set explicitly, every write is also flushed (group commit) before it is acknowledged, and followers flush before reporting their log end."
        => flush_interval_ms: u64 = positive_u64;
    LOG_FLUSH_INTERVAL_MESSAGES = "log.flush.interval.messages", Long, NEVER,
        "Never by default. Kafka's rule, used only when this or log.flush.interval.ms is set explicitly: flush (fsync) a partition's log before answering once this many messages accumulated in it since the last flush (1 = before every produce answer). By default every write is flushed before it is acknowledged instead (group commit)."
        =>
        /// `log.flush.interval.messages`: a partition's appends are fsynced before they are
        /// answered once this many accumulated since the last flush (`i64::MAX`: never). Only
        /// when `flush_before_ack` is off.
        flush_interval_messages: u64 = positive_u64;
    REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS = "replica.high.watermark.checkpoint.interval.ms", Long, "5000",
        "How often the high watermarks are written to disk (they are kept in memory; a restarted broker may start from an older one and catches up from the leader)."
        =>
        /// `replica.high.watermark.checkpoint.interval.ms`.
        hw_checkpoint_interval_ms: u64 = positive_u64;
    LOG_RETENTION_HOURS = "log.retention.hours", Int, "168",
        "Default retention time in hours (topic config retention.ms).";
    LOG_RETENTION_MS = "log.retention.ms", Long, "",
        "Default retention time in ms; overrides log.retention.hours when set.";
    LOG_RETENTION_BYTES = "log.retention.bytes", Long, "-1",
        "Default retention size per partition (topic config retention.bytes)."
        => retention_bytes: i64 = long;
    LOG_RETENTION_CHECK_INTERVAL_MS = "log.retention.check.interval.ms", Long, "300000",
        "How often retention is checked."
        => retention_check_interval_ms: u64 = positive_u64;
    LOG_CLEANUP_POLICY = "log.cleanup.policy", List, "delete",
        "Default cleanup.policy of topics.";
    MIN_INSYNC_REPLICAS = "min.insync.replicas", Int, "1",
        "Default min.insync.replicas of topics."
        => min_insync_replicas: i32 = positive_i32;
    LOG_CLEANER_DELETE_RETENTION_MS = "log.cleaner.delete.retention.ms", Long, "86400000",
        "Default delete.retention.ms of topics: how long compaction keeps tombstones. Dynamic.";
    LOG_CLEANER_MIN_COMPACTION_LAG_MS = "log.cleaner.min.compaction.lag.ms", Long, "0",
        "Default min.compaction.lag.ms of topics: records younger than this are not compacted. Dynamic.";
    LOG_MESSAGE_TIMESTAMP_TYPE = "log.message.timestamp.type", Str, "CreateTime",
        "Default message.timestamp.type of topics: CreateTime (the producer's) or LogAppendTime (the broker stamps its append time). Dynamic.";
    GROUP_MIN_SESSION_TIMEOUT_MS = "group.min.session.timeout.ms", Int, "6000",
        "Smallest session timeout a group member may ask for."
        =>
        /// Bounds on the session timeout a JoinGroup may ask for.
        group_min_session_timeout_ms: i32 = positive_i32;
    GROUP_MAX_SESSION_TIMEOUT_MS = "group.max.session.timeout.ms", Int, "1800000",
        "Largest session timeout a group member may ask for."
        => group_max_session_timeout_ms: i32 = positive_i32;
    GROUP_INITIAL_REBALANCE_DELAY_MS = "group.initial.rebalance.delay.ms", Int, "3000",
        "How long the first rebalance of an empty group waits for more members (extended while members keep joining, up to the rebalance timeout)."
        =>
        /// Delay of the first rebalance of an empty group, so members starting together land in
        /// one generation instead of one rebalance each.
        group_initial_rebalance_delay_ms: i32 = non_negative_i32;
    GROUP_MAX_SIZE = "group.max.size", Int, "2147483647",
        "Most members a consumer group may have."
        => group_max_size: i32 = positive_i32;
    OFFSET_METADATA_MAX_BYTES = "offset.metadata.max.bytes", Int, "4096",
        "Longest metadata string an offset commit may carry."
        => offset_metadata_max_bytes: i32 = non_negative_i32;
    OFFSETS_TOPIC_NUM_PARTITIONS = "offsets.topic.num.partitions", Int, "10",
        "Partitions of the internal __consumer_offsets topic (cluster mode; Kafka: 50). Fixed once the topic exists."
        =>
        /// Partitions and replication factor of `__consumer_offsets` (cluster mode).
        offsets_topic_num_partitions: i32 = positive_i32;
    OFFSETS_TOPIC_REPLICATION_FACTOR = "offsets.topic.replication.factor", Int, "3",
        "Replication factor of __consumer_offsets, capped at the number of live brokers when the topic is created (cluster mode)."
        => offsets_topic_replication_factor: i16 = positive_i16_capped;
    OFFSETS_COMMIT_TIMEOUT_MS = "offsets.commit.timeout.ms", Int, "5000",
        "How long an OffsetCommit waits for the in-sync replicas of its __consumer_offsets partition before answering REQUEST_TIMED_OUT (cluster mode)."
        =>
        /// How long an OffsetCommit waits for its records to be replicated.
        offsets_commit_timeout_ms: u64 = positive_u64;
    TRANSACTION_STATE_LOG_NUM_PARTITIONS = "transaction.state.log.num.partitions", Int, "10",
        "Partitions of the internal __transaction_state topic (Kafka: 50; each partition is a replicated log and a coordinator shard, so raftka defaults to 10 like __consumer_offsets). Fixed once the topic exists."
        =>
        /// `__transaction_state` partitions, replication factor and min ISR.
        txn_state_log_num_partitions: i32 = positive_i32;
    TRANSACTION_STATE_LOG_REPLICATION_FACTOR = "transaction.state.log.replication.factor", Int, "3",
        "Replication factor of __transaction_state, capped at the number of live brokers when the topic is created."
        => txn_state_log_replication_factor: i16 = positive_i16_capped;
    TRANSACTION_STATE_LOG_MIN_ISR = "transaction.state.log.min.isr", Int, "2",
        "min.insync.replicas of __transaction_state (capped at its replication factor)."
        => txn_state_log_min_isr: i16 = positive_i16_capped;
    TRANSACTION_MAX_TIMEOUT_MS = "transaction.max.timeout.ms", Int, "900000",
        "Largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above)."
        =>
        /// `transaction.max.timeout.ms`.
        txn_max_timeout_ms: i32 = positive_i32;
    TRANSACTIONAL_ID_EXPIRATION_MS = "transactional.id.expiration.ms", Int, "604800000",
        "A transactional id without a transaction for this long (state Empty, CompleteCommit or CompleteAbort, no change) is forgotten by its coordinator (checked with the timed-out transactions)."
        =>
        /// `transactional.id.expiration.ms`.
        txn_id_expiration_ms: i64 = positive_i64;
    TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS = "transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, "10000",
        "How often the transaction coordinator aborts transactions that exceeded their timeout."
        =>
        /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
        txn_abort_interval_ms: u64 = positive_u64;
    LOG_LEVEL = "log.level", Str, "info",
        "Level of the broker's log (stderr): error, warn, info, debug or trace; libraries (openraft, tonic) stay at warn. RUST_LOG, in tracing's EnvFilter syntax, wins when set.";
    LOG_FORMAT = "log.format", Str, "text",
        "Log line format: text, or json (one JSON object per line).";
    SLED_CACHE_CAPACITY_BYTES = "sled.cache.capacity.bytes", Long, "67108864",
        "Size of sled's page cache (sled's own default is 1 GiB)."
        => sled_cache_bytes: u64 = positive_u64;
    SLED_SEGMENT_BYTES = "sled.segment.bytes", Int, "16777216",
        "sled log segment size for a new data directory: a power of two from 65536 to 16777216 (sled's default is 524288). Log entries above a quarter of it become blob files. An existing data directory keeps the size it was created with."
        =>
        /// `sled.segment.bytes`: the sled segment size of a new data directory.
        sled_segment_bytes: usize = sled_segment;
}

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
    values: Values,
    /// The settings parsed on their own (`config.num_partitions` reads through `Deref`).
    scalars: Scalars,
    pub listeners: Vec<Listener>,
    /// Bind address of the inter-broker gRPC service (`raft.listener`).
    pub raft_listener: SocketAddr,
    /// Where other brokers reach this broker's gRPC service (`raft.advertised.listener`).
    pub raft_advertised: String,
    /// Bind address of the HTTP admin listener (`http.listener`).
    pub http_listener: SocketAddr,
    /// Neither `log.flush.interval.ms` nor `log.flush.interval.messages` was set: every write
    /// is flushed (group commit) before it is acknowledged or reported to a leader.
    pub flush_before_ack: bool,
    pub retention_ms: i64,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::authorizer::AuthorizerSettings,
    /// `inter.broker.secret` (or the content of `inter.broker.secret.file`); `None`: the
    /// inter-broker gRPC port is unauthenticated.
    pub inter_broker_secret: Option<InterBrokerSecret>,
    /// `raft.listener` was a wildcard address moved to the Kafka listener's host because no
    /// inter-broker secret is set (logged at startup).
    pub raft_listener_narrowed: bool,
    /// `security.inter.broker.protocol=SSL`: mutual TLS on the gRPC port with the `ssl.*`
    /// files (`rpc::tls`).
    pub inter_broker_tls: bool,
    /// TLS settings of SSL/SASL_SSL listeners (and of the inter-broker port's mutual TLS).
    pub ssl: SslConfig,
    /// The TLS settings of listeners with `listener.name.<listener>.ssl.*` overrides, by
    /// listener name (upper case): `ssl` with those settings replaced.
    pub listener_ssl: BTreeMap<String, SslConfig>,
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
        // RAFTKA_LISTENER_NAME_<LISTENER>_<SETTING>: listener.name.<listener>.<setting> (the
        // setting is one of LISTENER_SETTINGS, so a listener name may hold underscores).
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.sort();
        for (var, value) in vars {
            if let Some(name) = listener_setting_of_env(&var) {
                pairs.push((format!("environment {var}"), name, value));
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
        let mut values = Values(
            SETTINGS
                .iter()
                .map(|d| (d.name, (d.default.to_string(), Source::Default)))
                .collect(),
        );
        // `listener.name.<listener>.<setting>` (config file and from_pairs only): per-listener
        // TLS settings, checked once the listeners are known.
        let mut overrides: Vec<ListenerOverride> = Vec::new();
        for (origin, name, value) in pairs {
            if let Some(o) = listener_override(&name, &value)? {
                overrides.push(o);
                continue;
            }
            let def = setting(&name).ok_or_else(|| ConfigError::Unknown {
                origin,
                name: name.clone(),
            })?;
            check_type(def, &value)?;
            values.0.insert(def.name, (value, Source::Static));
        }
        let scalars = Scalars::parse(&values)?;
        let get = |n: &str| values.get(n).map(str::to_string);
        let mut listeners =
            parse_listeners(&get(names::LISTENERS)?, &get(names::ADVERTISED_LISTENERS)?)?;
        check_protocols(&mut listeners, &get(names::LISTENER_SECURITY_PROTOCOL_MAP)?)?;
        let (ssl, listener_ssl) = parse_listener_ssl(&get, &listeners, &overrides)?;
        let sasl = parse_sasl(&get)?;
        let mut raft_listener =
            parse_bind(names::RAFT_LISTENER, get(names::RAFT_LISTENER)?.trim())?;
        let inter_broker_secret = parse_secret(
            &get(names::INTER_BROKER_SECRET)?,
            &get(names::INTER_BROKER_SECRET_FILE)?,
        )?;
        let inter_broker_tls = parse_inter_broker_protocol(
            &get(names::SECURITY_INTER_BROKER_PROTOCOL)?,
            &ssl,
            !scalars.quorum_voters.is_empty(),
        )?;
        // Without a secret or TLS, the unauthenticated gRPC port listens no wider than the
        // Kafka listener: a wildcard raft.listener moves to the first Kafka listener's address.
        let kafka_ip = listeners[0].bind.ip();
        let raft_listener_narrowed = inter_broker_secret.is_none()
            && !inter_broker_tls
            && raft_listener.ip().is_unspecified()
            && !kafka_ip.is_unspecified();
        if raft_listener_narrowed {
            raft_listener.set_ip(kafka_ip);
        }
        let authorizer = parse_authorizer(
            &get(names::AUTHORIZER_CLASS_NAME)?,
            &get(names::SUPER_USERS)?,
            get(names::ALLOW_EVERYONE_IF_NO_ACL_FOUND)?.trim() == "true",
        )?;
        let raft_advertised = match get(names::RAFT_ADVERTISED_LISTENER)?.trim() {
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
            a => {
                return Err(invalid(
                    names::RAFT_ADVERTISED_LISTENER,
                    a,
                    "expected host:port",
                ))
            }
        };
        let http_listener = match get(names::HTTP_LISTENER)?.trim() {
            "" => http_next_to(listeners[0].bind)?,
            a => parse_bind(names::HTTP_LISTENER, a)?,
        };
        let retention_ms = match get(names::LOG_RETENTION_MS)?.trim() {
            "" => long(
                names::LOG_RETENTION_HOURS,
                values.get(names::LOG_RETENTION_HOURS)?,
            )?
            .saturating_mul(3_600_000),
            v => long(names::LOG_RETENTION_MS, v)?,
        };
        let flush_before_ack = [
            names::LOG_FLUSH_INTERVAL_MS,
            names::LOG_FLUSH_INTERVAL_MESSAGES,
        ]
        .iter()
        .map(|n| values.source(n))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .all(|s| *s == Source::Default);
        Ok(Self {
            scalars,
            listeners,
            raft_listener,
            raft_advertised,
            http_listener,
            flush_before_ack,
            retention_ms,
            authorizer,
            inter_broker_secret,
            raft_listener_narrowed,
            inter_broker_tls,
            ssl,
            listener_ssl,
            sasl,
            values: values.hide_secrets(),
        })
    }

    /// The value of a setting and where it came from.
    pub fn raw(&self, name: &str) -> Option<(&str, Source)> {
        self.values.0.get(name).map(|(v, s)| (v.as_str(), *s))
    }

    /// The TLS settings of the listener named `listener`: its `listener.name.` overrides on
    /// top of the `ssl.*` settings.
    pub fn ssl_for(&self, listener: &str) -> &SslConfig {
        self.listener_ssl
            .get(&listener.to_ascii_uppercase())
            .unwrap_or(&self.ssl)
    }
}

/// Settings a listener may override as `listener.name.<listener>.<setting>` (Kafka's
/// per-listener prefix); raftka reads it for the TLS settings only.
pub const LISTENER_SETTINGS: &[&str] = &[
    names::SSL_KEYSTORE_TYPE,
    names::SSL_KEYSTORE_LOCATION,
    names::SSL_KEY_LOCATION,
    names::SSL_CERTIFICATE_LOCATION,
    names::SSL_KEY_PASSWORD,
    names::SSL_TRUSTSTORE_TYPE,
    names::SSL_TRUSTSTORE_LOCATION,
    names::SSL_CLIENT_AUTH,
];

/// `listener.name.<listener>.<setting>` for an environment variable
/// `RAFTKA_LISTENER_NAME_<LISTENER>_<SETTING>` (e.g. `RAFTKA_LISTENER_NAME_SASL_SSL_SSL_KEYSTORE_LOCATION`).
pub fn listener_setting_of_env(var: &str) -> Option<String> {
    let rest = var.strip_prefix("RAFTKA_LISTENER_NAME_")?;
    LISTENER_SETTINGS.iter().find_map(|s| {
        let suffix = env_name(s);
        let suffix = suffix.strip_prefix("RAFTKA")?;
        let listener = rest.strip_suffix(suffix)?;
        (!listener.is_empty()).then(|| format!("listener.name.{}.{s}", listener.to_lowercase()))
    })
}

/// One `listener.name.<listener>.<setting>=<value>`.
#[derive(Debug, Clone)]
struct ListenerOverride {
    /// The listener name, upper case.
    listener: String,
    setting: &'static str,
    value: String,
    /// The full setting name, for messages.
    name: String,
}

/// Parses `listener.name.<listener>.<setting>`; `None` for any other name.
fn listener_override(name: &str, value: &str) -> Result<Option<ListenerOverride>, ConfigError> {
    const PREFIX: &str = "listener.name.";
    let Some(rest) = name
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .and_then(|_| name.get(PREFIX.len()..))
    else {
        return Ok(None);
    };
    let (listener, setting) = rest.split_once('.').unwrap_or((rest, ""));
    let def = LISTENER_SETTINGS
        .iter()
        .find(|s| **s == setting)
        .and_then(|s| self::setting(s))
        .filter(|_| !listener.is_empty())
        .ok_or_else(|| {
            invalid(
                name,
                value,
                &format!(
                    "raftka reads listener.name.<listener>.<setting> only for {}",
                    LISTENER_SETTINGS.join(", ")
                ),
            )
        })?;
    check_type(def, value)?;
    Ok(Some(ListenerOverride {
        listener: listener.to_ascii_uppercase(),
        setting: def.name,
        value: value.to_string(),
        name: name.to_string(),
    }))
}

/// The `ssl.*` settings, and the settings of each listener with `listener.name.` overrides.
/// A TLS listener needs a key and certificate from one or the other.
fn parse_listener_ssl(
    get: &dyn Fn(&str) -> Result<String, ConfigError>,
    listeners: &[Listener],
    overrides: &[ListenerOverride],
) -> Result<(SslConfig, BTreeMap<String, SslConfig>), ConfigError> {
    for o in overrides {
        if !listeners
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(&o.listener))
        {
            return Err(invalid(
                &o.name,
                &o.value,
                &format!("no listener is named {} in listeners", o.listener),
            ));
        }
    }
    let overridden = |l: &Listener| {
        overrides
            .iter()
            .any(|o| l.name.eq_ignore_ascii_case(&o.listener))
    };
    let plain: Vec<Listener> = listeners
        .iter()
        .filter(|l| !overridden(l))
        .cloned()
        .collect();
    let base = parse_ssl(get, &plain)?;
    let mut per = BTreeMap::new();
    for l in listeners.iter().filter(|l| overridden(l)) {
        let own = |n: &str| {
            overrides
                .iter()
                .rev()
                .find(|o| o.setting == n && l.name.eq_ignore_ascii_case(&o.listener))
                .map(|o| Ok(o.value.clone()))
                .unwrap_or_else(|| get(n))
        };
        per.insert(
            l.name.to_ascii_uppercase(),
            parse_ssl(&own, std::slice::from_ref(l))?,
        );
    }
    Ok((base, per))
}

impl std::ops::Deref for BrokerConfig {
    type Target = Scalars;
    fn deref(&self) -> &Scalars {
        &self.scalars
    }
}

/// The raw value of every setting by name, with where it came from.
#[derive(Debug, Clone)]
struct Values(BTreeMap<&'static str, (String, Source)>);

impl Values {
    /// The value of setting `name`; an error (never a panic) for a name not in [`SETTINGS`].
    fn get(&self, name: &str) -> Result<&str, ConfigError> {
        self.0
            .get(name)
            .map(|(v, _)| v.as_str())
            .ok_or_else(|| ConfigError::NotInTable(name.to_string()))
    }

    /// Where the value of setting `name` came from.
    fn source(&self, name: &str) -> Result<Source, ConfigError> {
        self.0
            .get(name)
            .map(|(_, s)| *s)
            .ok_or_else(|| ConfigError::NotInTable(name.to_string()))
    }

    /// The values with every set secret replaced by `[hidden]` (as Kafka logs passwords):
    /// the parsed secret lives in its own field, and the raw values reach DescribeConfigs
    /// and Debug.
    fn hide_secrets(mut self) -> Self {
        for def in SETTINGS.iter().filter(|d| d.kind == ValueType::Password) {
            if let Some((v, _)) = self.0.get_mut(def.name) {
                if !v.is_empty() {
                    *v = "[hidden]".to_string();
                }
            }
        }
        self
    }
}

// Parsers of single settings (the `settings!` list names one per scalar field): each gets
// the setting's name, for its error, and its raw value.

/// A 64-bit integer.
fn long(name: &'static str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|e| invalid(name, value, &e.to_string()))
}

fn positive_i64(name: &'static str, value: &str) -> Result<i64, ConfigError> {
    match long(name, value)? {
        v if v <= 0 => Err(invalid(name, value, "must be greater than 0")),
        v => Ok(v),
    }
}

fn non_negative_i64(name: &'static str, value: &str) -> Result<i64, ConfigError> {
    match long(name, value)? {
        v if v < 0 => Err(invalid(name, value, "must be 0 or more")),
        v => Ok(v),
    }
}

fn positive_u64(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    positive_i64(name, value).map(|v| v as u64)
}

fn non_negative_u64(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    non_negative_i64(name, value).map(|v| v as u64)
}

fn positive_usize(name: &'static str, value: &str) -> Result<usize, ConfigError> {
    positive_i64(name, value).map(|v| v as usize)
}

fn non_negative_usize(name: &'static str, value: &str) -> Result<usize, ConfigError> {
    non_negative_i64(name, value).map(|v| v as usize)
}

fn positive_i32(name: &'static str, value: &str) -> Result<i32, ConfigError> {
    clamp_i32(name, positive_i64(name, value)?)
}

fn non_negative_i32(name: &'static str, value: &str) -> Result<i32, ConfigError> {
    clamp_i32(name, non_negative_i64(name, value)?)
}

/// A positive 16-bit integer; larger values are refused.
fn positive_i16(name: &'static str, value: &str) -> Result<i16, ConfigError> {
    i16::try_from(positive_i64(name, value)?).map_err(|_| invalid(name, value, "too large"))
}

/// A positive 16-bit integer; larger values are capped at `i16::MAX`.
fn positive_i16_capped(name: &'static str, value: &str) -> Result<i16, ConfigError> {
    Ok(positive_i64(name, value)?.min(i16::MAX as i64) as i16)
}

/// A positive number of seconds, in milliseconds.
fn positive_seconds_as_ms(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    Ok(positive_u64(name, value)? * 1000)
}

fn boolean(_name: &'static str, value: &str) -> Result<bool, ConfigError> {
    Ok(value.trim() == "true")
}

fn path(_name: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(value))
}

/// A string, `None` when empty.
fn optional_str(_name: &'static str, value: &str) -> Result<Option<String>, ConfigError> {
    Ok(Some(value.trim().to_string()).filter(|r| !r.is_empty()))
}

/// `node.id`: a 32-bit integer, 0 or more.
fn node_id(name: &'static str, value: &str) -> Result<i32, ConfigError> {
    i32::try_from(long(name, value)?)
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| invalid(name, value, "must be 0 or more"))
}

/// `sled.segment.bytes`: log::sled_config::{MIN,MAX}_SEGMENT_BYTES (sled refuses more than
/// 16 MiB).
fn sled_segment(name: &'static str, value: &str) -> Result<usize, ConfigError> {
    match long(name, value)? {
        v if (65536..=16_777_216).contains(&v) && v.count_ones() == 1 => Ok(v as usize),
        _ => Err(invalid(
            name,
            value,
            "must be a power of two from 65536 to 16777216",
        )),
    }
}

fn voters(_name: &'static str, value: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    parse_voters(value)
}

fn ip_overrides(
    _name: &'static str,
    value: &str,
) -> Result<BTreeMap<std::net::IpAddr, usize>, ConfigError> {
    parse_ip_overrides(value)
}

/// `security.inter.broker.protocol`: whether the gRPC port uses mutual TLS (`SSL`), which
/// needs the broker's key and certificate and the CA of `ssl.*`. Checked only for a cluster
/// member (`clustered`): a single broker has no gRPC port.
fn parse_inter_broker_protocol(
    value: &str,
    ssl: &SslConfig,
    clustered: bool,
) -> Result<bool, ConfigError> {
    let name = names::SECURITY_INTER_BROKER_PROTOCOL;
    let tls = match value.trim().to_ascii_uppercase().as_str() {
        "PLAINTEXT" => false,
        "SSL" => true,
        "SASL_PLAINTEXT" | "SASL_SSL" => {
            return Err(invalid(
                name,
                value,
                "raftka's inter-broker gRPC port does not speak SASL: use SSL (mutual TLS)                  and/or inter.broker.secret",
            ))
        }
        _ => return Err(invalid(name, value, "expected PLAINTEXT or SSL")),
    };
    if tls && clustered {
        if ssl.keystore.is_none() && (ssl.key.is_none() || ssl.certificate.is_none()) {
            return Err(invalid(
                names::SSL_KEYSTORE_LOCATION,
                "",
                "security.inter.broker.protocol=SSL: set ssl.keystore.location (or                  ssl.key.location and ssl.certificate.location) to this broker's key and a                  certificate with the subjectAltName DNS:broker-<node.id>",
            ));
        }
        if ssl.truststore.is_none() {
            return Err(invalid(
                names::SSL_TRUSTSTORE_LOCATION,
                "",
                "security.inter.broker.protocol=SSL: set the CA file that every broker's                  certificate chains to",
            ));
        }
    }
    Ok(tls)
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
                names::INTER_BROKER_SECRET_FILE,
                file,
                "set either inter.broker.secret or inter.broker.secret.file, not both",
            ))
        }
    };
    if secret.len() < MIN_SECRET_LEN {
        return Err(invalid(
            names::INTER_BROKER_SECRET,
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
            names::AUTHORIZER_CLASS_NAME,
            class,
            &format!("raftka implements {}", ACCEPTED_CLASS_NAMES.join(" and ")),
        ));
    }
    Ok(AuthorizerSettings {
        enabled: !class.is_empty(),
        super_users: AuthorizerSettings::parse_super_users(super_users)
            .map_err(|e| invalid(names::SUPER_USERS, super_users, &e))?,
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
        .map(|a| parse_one(names::ADVERTISED_LISTENERS, a))
        .collect::<Result<_, _>>()?;
    let mut out: Vec<Listener> = Vec::new();
    for item in split(listeners) {
        let (name, host, port) = parse_one(names::LISTENERS, &item)?;
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(
                names::LISTENERS,
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
                    names::LISTENERS,
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
            names::LISTENERS,
            listeners,
            "at least one listener is needed",
        ));
    }
    if let Some((name, _, _)) = adv.iter().find(|a| !out.iter().any(|l| l.name == a.0)) {
        return Err(invalid(
            names::ADVERTISED_LISTENERS,
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
                names::LISTENER_SECURITY_PROTOCOL_MAP,
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
                    names::LISTENER_SECURITY_PROTOCOL_MAP,
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
                        names::LISTENER_SECURITY_PROTOCOL_MAP,
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
    get: &dyn Fn(&str) -> Result<String, ConfigError>,
    listeners: &[Listener],
) -> Result<SslConfig, ConfigError> {
    let path = |n: &str| -> Result<Option<PathBuf>, ConfigError> {
        Ok(Some(get(n)?.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from))
    };
    for n in [names::SSL_KEYSTORE_TYPE, names::SSL_TRUSTSTORE_TYPE] {
        if !get(n)?.trim().eq_ignore_ascii_case("PEM") {
            return Err(invalid(
                n,
                &get(n)?,
                "raftka reads PEM files only (convert a JKS or PKCS12 store with keytool/openssl)",
            ));
        }
    }
    if get(names::SSL_PRINCIPAL_MAPPING_RULES)?.trim() != "DEFAULT" {
        return Err(invalid(
            names::SSL_PRINCIPAL_MAPPING_RULES,
            &get(names::SSL_PRINCIPAL_MAPPING_RULES)?,
            "raftka supports DEFAULT only (the certificate's full subject)",
        ));
    }
    let client_auth = match get(names::SSL_CLIENT_AUTH)?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "none" | "" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        other => {
            return Err(invalid(
                names::SSL_CLIENT_AUTH,
                other,
                "expected required, requested or none",
            ))
        }
    };
    let c = SslConfig {
        keystore: path(names::SSL_KEYSTORE_LOCATION)?,
        key: path(names::SSL_KEY_LOCATION)?,
        certificate: path(names::SSL_CERTIFICATE_LOCATION)?,
        key_password: Some(get(names::SSL_KEY_PASSWORD)?).filter(|v| !v.is_empty()),
        truststore: path(names::SSL_TRUSTSTORE_LOCATION)?,
        client_auth: Some(client_auth),
    };
    if let Some(l) = listeners.iter().find(|l| l.protocol.tls()) {
        if c.keystore.is_none() && (c.key.is_none() || c.certificate.is_none()) {
            return Err(invalid(names::SSL_KEYSTORE_LOCATION, "", &format!("listener {} uses TLS: set ssl.keystore.location (key and chain in one PEM file) or ssl.key.location and ssl.certificate.location", l.name)));
        }
        if client_auth != ClientAuth::None && c.truststore.is_none() {
            return Err(invalid(names::SSL_TRUSTSTORE_LOCATION, "", "ssl.client.auth asks for client certificates: set the CA file that they must chain to"));
        }
    }
    Ok(c)
}

/// The `sasl.*` settings.
fn parse_sasl(
    get: &dyn Fn(&str) -> Result<String, ConfigError>,
) -> Result<SaslConfig, ConfigError> {
    let mut mechanisms = Vec::new();
    for m in get(names::SASL_ENABLED_MECHANISMS)?
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        let m = m.to_ascii_uppercase();
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
            return Err(invalid(
                names::SASL_ENABLED_MECHANISMS,
                &m,
                "raftka supports PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512",
            ));
        }
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    let reauth_value = get(names::CONNECTIONS_MAX_REAUTH_MS)?;
    let reauth = reauth_value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| {
            invalid(
                names::CONNECTIONS_MAX_REAUTH_MS,
                &reauth_value,
                "must be 0 or more",
            )
        })?;
    let scram_users = parse_scram_users(&get(names::SASL_SCRAM_USERS)?)?;
    Ok(SaslConfig {
        scram_users,
        mechanisms,
        jaas_config: get(names::SASL_JAAS_CONFIG)?,
        jaas_file: Some(get(names::SASL_JAAS_FILE)?.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        max_reauth_ms: reauth as u64,
    })
}

/// Parses `sasl.scram.users`: `MECHANISM=[name=USER,password=PASSWORD]` entries separated by
/// spaces or commas (the password runs to the closing bracket).
fn parse_scram_users(value: &str) -> Result<Vec<(String, String, String)>, ConfigError> {
    const NAME: &str = names::SASL_SCRAM_USERS;
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
    const NAME: &str = names::CONTROLLER_QUORUM_VOTERS;
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
    const NAME: &str = names::MAX_CONNECTIONS_PER_IP_OVERRIDES;
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
                names::HTTP_LISTENER,
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
    fn inter_broker_tls_settings_are_checked() {
        let c = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string())),
            )
        };
        assert!(!BrokerConfig::default().inter_broker_tls);
        let voters = ("controller.quorum.voters", "1@127.0.0.1:9093");
        let ssl = ("security.inter.broker.protocol", "SSL");
        // A cluster member needs its key and the CA.
        let e = c(&[voters, ssl]).unwrap_err().to_string();
        assert!(e.contains("ssl.keystore.location"), "{e}");
        let e = c(&[voters, ssl, ("ssl.keystore.location", "/k.pem")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssl.truststore.location"), "{e}");
        let on = c(&[
            voters,
            ssl,
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
            ("listeners", "PLAINTEXT://127.0.0.5:9092"),
            ("raft.listener", "0.0.0.0:9093"),
        ])
        .unwrap();
        assert!(on.inter_broker_tls);
        // Authenticated by certificates: a wildcard gRPC listener is not narrowed.
        assert_eq!(on.raft_listener.to_string(), "0.0.0.0:9093");
        for bad in ["SASL_SSL", "TLS"] {
            let e = c(&[("security.inter.broker.protocol", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("security.inter.broker.protocol"), "{e}");
        }
    }

    #[test]
    fn listener_name_prefixes_override_tls_settings_per_listener() {
        let c = |pairs: &[(&str, &str)]| {
            BrokerConfig::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string())),
            )
        };
        let two = (
            "listeners",
            "INTERNAL://127.0.0.1:9092,EXTERNAL://127.0.0.1:9192",
        );
        let map = (
            "listener.security.protocol.map",
            "INTERNAL:SSL,EXTERNAL:SSL",
        );
        let cfg = c(&[
            two,
            map,
            ("ssl.keystore.location", "/base.pem"),
            ("listener.name.external.ssl.keystore.location", "/ext.pem"),
            ("listener.name.external.ssl.client.auth", "required"),
            ("listener.name.external.ssl.truststore.location", "/ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            cfg.ssl_for("INTERNAL").keystore.as_deref(),
            Some(std::path::Path::new("/base.pem"))
        );
        let ext = cfg.ssl_for("external");
        assert_eq!(
            ext.keystore.as_deref(),
            Some(std::path::Path::new("/ext.pem"))
        );
        assert_eq!(ext.client_auth, Some(ClientAuth::Required));
        assert_eq!(cfg.ssl.client_auth, Some(ClientAuth::None));
        // The override alone may supply a TLS listener's key.
        c(&[
            ("listeners", "SSL://127.0.0.1:9092"),
            ("listener.name.ssl.ssl.keystore.location", "/k.pem"),
        ])
        .unwrap();
        for (bad, want) in [
            (
                ("listener.name.nope.ssl.keystore.location", "/k.pem"),
                "no listener",
            ),
            (("listener.name.internal.num.partitions", "3"), "only for"),
            (
                ("listener.name.external.ssl.client.auth", "x"),
                "ssl.client.auth",
            ),
        ] {
            let e = c(&[two, map, ("ssl.keystore.location", "/b.pem"), bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        assert_eq!(
            listener_setting_of_env("RAFTKA_LISTENER_NAME_SASL_SSL_SSL_KEYSTORE_LOCATION")
                .as_deref(),
            Some("listener.name.sasl_ssl.ssl.keystore.location")
        );
        assert_eq!(
            listener_setting_of_env("RAFTKA_LISTENER_NAME_SSL_KEY_X"),
            None
        );
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
    fn each_setting_is_named_once_and_a_missing_name_is_an_error_not_a_panic() {
        let mut seen = std::collections::BTreeSet::new();
        for def in SETTINGS {
            assert!(seen.insert(def.name), "{} twice in SETTINGS", def.name);
        }
        let c = BrokerConfig::default();
        assert_eq!(c.raw(names::NUM_PARTITIONS), Some(("1", Source::Default)));
        assert!(matches!(
            c.values.get("num.partitionz"),
            Err(ConfigError::NotInTable(n)) if n == "num.partitionz"
        ));
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
