//! Command-line flags, the `--config` file, and the settings they resolve to.
//! Each server flag can also be set through a `CHRONIK_*` variable; a flag or
//! variable wins over the file, the file over the default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chronik_broker::BrokerConfig;
use chronik_broker::config::ClusterConfig;
use chronik_broker::security::listener::{ListenerConfig, SecurityProtocol};
use chronik_raft::grpc::PeerSecurity;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::cluster_cli::ClusterCommand;
use crate::security_args::{FileSecurity, KafkaSecurity, ListenerArgs, PeerSecurityArgs};
use crate::user_cli::UserCommand;

#[derive(Debug, Parser)]
#[command(
    name = "chronik-server",
    version,
    about = "A Kafka-compatible event-streaming broker built on Raft"
)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run this node as a member of a cluster: every partition is replicated by its own Raft group.
    RaftCluster(RaftClusterArgs),
    /// Ask a running cluster about its state (over its admin gRPC service).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage SASL users (over a member's admin gRPC service).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A TOML file with these settings (keys as the flags, with '_' for '-';
    /// cluster settings in a [raft_cluster] table, listeners and security in [security]).
    #[arg(long, env = "CHRONIK_CONFIG")]
    pub config: Option<PathBuf>,

    /// Where topics and the Raft log are stored [default: ./data].
    #[arg(long, env = "CHRONIK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address the Kafka listener binds to [default: 127.0.0.1:9092].
    #[arg(long, env = "CHRONIK_LISTEN")]
    pub listen: Option<String>,

    /// Port of the Kafka listener; overrides the port of --listen. 0 picks a free one.
    #[arg(long, env = "CHRONIK_KAFKA_PORT")]
    pub kafka_port: Option<u16>,

    /// Host (or host:port) clients are told to connect to. Defaults to the listener's address.
    #[arg(long, env = "CHRONIK_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,

    /// This node's id: its Kafka broker id and Raft peer id [default: 1].
    #[arg(long, env = "CHRONIK_NODE_ID")]
    pub node_id: Option<u64>,

    /// Create topics on first use (Metadata or Produce) [default: true].
    #[arg(long, env = "CHRONIK_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,

    /// Partitions of an auto-created topic, or of one created without a count [default: 1].
    #[arg(long, env = "CHRONIK_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,

    /// Largest request accepted, in bytes [default: 104857600].
    #[arg(long, env = "CHRONIK_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Bytes of requests read but not yet answered, over all connections (Kafka's
    /// queued.max.request.bytes); reading waits while they are in use [default: 268435456].
    #[arg(long, env = "CHRONIK_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,

    /// Most record bytes one Fetch response carries, whatever the client asks for
    /// (Kafka's fetch.max.bytes) [default: 57671680].
    #[arg(long, env = "CHRONIK_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,

    /// Below this much free space on the data directory's volume, produce requests get
    /// KAFKA_STORAGE_ERROR and the node stops taking replicated data, until space is freed
    /// [default: 5% of the volume, at most 268435456].
    #[arg(long, env = "CHRONIK_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,

    /// How often retention deletes expired segments, in milliseconds [default: 300000].
    #[arg(long, env = "CHRONIK_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,

    /// How long the log cleaner waits between passes over the compacted partitions, in
    /// milliseconds [default: 15000].
    #[arg(long, env = "CHRONIK_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,

    /// Partitions of the internal __consumer_offsets topic, when it is first created [default: 50].
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<i32>,

    /// The chronik.version level a new cluster starts at; ignored once the data directory
    /// holds one. A lower level lets nodes of an older build join [default: the newest].
    #[arg(long, env = "CHRONIK_INITIAL_VERSION")]
    pub initial_version: Option<i16>,

    /// Partitions of the internal __transaction_state topic, when the first transactional
    /// producer creates it [default: 50].
    #[arg(long, env = "CHRONIK_TRANSACTION_STATE_PARTITIONS")]
    pub transaction_state_partitions: Option<i32>,

    /// The longest transaction.timeout.ms a transactional producer may ask for
    /// [default: 900000].
    #[arg(long, env = "CHRONIK_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,

    /// How long a new consumer group waits for more members before its first rebalance [default: 3000].
    #[arg(long, env = "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i64>,

    /// Committed offsets of a group without members are deleted after this long [default: 10080].
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,

    /// A member of a consumer-protocol group (KIP-848) that does not heartbeat for this long is fenced [default: 45000].
    #[arg(long, env = "CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<i64>,

    /// How often members of consumer-protocol groups heartbeat [default: 5000].
    #[arg(long, env = "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,

    /// A follower stays in sync while at most this many Raft entries behind its leader [default: 1000].
    #[arg(long, env = "CHRONIK_ISR_MAX_LAG_ENTRIES")]
    pub isr_max_lag_entries: Option<u64>,

    /// Applied Raft entries a leader keeps for a follower that lacks them; one further
    /// behind gets a snapshot [default: 10000].
    #[arg(long, env = "CHRONIK_RAFT_LOG_RETAIN_ENTRIES")]
    pub raft_log_retain_entries: Option<u64>,

    /// Log filter when RUST_LOG is unset (e.g. info, debug, chronik_broker=debug) [default: info].
    #[arg(long, env = "CHRONIK_LOG")]
    pub log_level: Option<String>,

    /// How log lines are written to stderr: text, or json (one object per line) [default: text].
    #[arg(long, env = "CHRONIK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Where the HTTP endpoint listens: /metrics (Prometheus), /health, /ready and the
    /// console at /. "off" turns it off [default: 127.0.0.1:9644].
    #[arg(long, env = "CHRONIK_HTTP_ADDR")]
    pub http_addr: Option<String>,

    /// Record Prometheus metrics; when false, /metrics answers 404 [default: true].
    #[arg(long, env = "CHRONIK_METRICS")]
    pub metrics: Option<bool>,

    #[command(flatten)]
    pub listener: ListenerArgs,

    #[command(flatten)]
    pub peer: PeerSecurityArgs,
}

#[derive(Debug, Args, Default)]
pub struct RaftClusterArgs {
    /// Where this node's Raft and admin gRPC services listen, e.g. 0.0.0.0:5001.
    #[arg(long, env = "CHRONIK_RAFT_ADDR")]
    pub raft_addr: Option<String>,

    /// The Raft address peers reach this node at, if not --raft-addr (with the
    /// --advertised-addr host when --raft-addr binds all interfaces).
    #[arg(long, env = "CHRONIK_ADVERTISED_RAFT_ADDR")]
    pub advertised_raft_addr: Option<String>,

    /// The other nodes: ID@HOST:PORT of their Raft addresses, comma-separated.
    #[arg(long, env = "CHRONIK_PEERS")]
    pub peers: Option<String>,

    /// Form a new cluster of this node and its peers (start every node of it with
    /// --bootstrap and the same peers). Ignored once the data directory holds a cluster.
    #[arg(long, env = "CHRONIK_BOOTSTRAP")]
    pub bootstrap: bool,

    /// Join a running cluster through the Raft address of any of its members.
    /// The node serves nothing until `cluster add-node` makes it a member.
    /// Ignored once the data directory holds a cluster.
    #[arg(long, env = "CHRONIK_JOIN", conflicts_with = "bootstrap")]
    pub join: Option<String>,
}

/// The `--config` file. Unknown keys are an error, so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    kafka_port: Option<u16>,
    advertised_addr: Option<String>,
    node_id: Option<u64>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<i32>,
    max_request_bytes: Option<usize>,
    queued_max_request_bytes: Option<usize>,
    fetch_max_bytes: Option<usize>,
    min_free_bytes: Option<u64>,
    retention_check_interval_ms: Option<u64>,
    log_cleaner_backoff_ms: Option<u64>,
    offsets_topic_partitions: Option<i32>,
    initial_version: Option<i16>,
    transaction_state_partitions: Option<i32>,
    transaction_max_timeout_ms: Option<i32>,
    group_initial_rebalance_delay_ms: Option<i64>,
    offsets_retention_minutes: Option<i64>,
    group_consumer_session_timeout_ms: Option<i64>,
    group_consumer_heartbeat_interval_ms: Option<i32>,
    isr_max_lag_entries: Option<u64>,
    raft_log_retain_entries: Option<u64>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    http_addr: Option<String>,
    metrics: Option<bool>,
    raft_cluster: Option<FileCluster>,
    /// Listeners, TLS, SASL, ACL defaults and peer authentication.
    security: Option<FileSecurity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    raft_addr: Option<String>,
    advertised_raft_addr: Option<String>,
    /// "2@host:5002,3@host:5003" or ["2@host:5002", "3@host:5003"].
    peers: Option<Peers>,
    bootstrap: Option<bool>,
    join: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Peers {
    Joined(String),
    List(Vec<String>),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub(crate) fn parse_config_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

/// Server settings after flags, environment, file and defaults are combined.
#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    pub kafka_port: Option<u16>,
    pub advertised_addr: Option<String>,
    pub node_id: u64,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_request_bytes: usize,
    pub queued_max_request_bytes: usize,
    pub fetch_max_bytes: usize,
    pub min_free_bytes: Option<u64>,
    pub retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    pub offsets_topic_partitions: i32,
    pub initial_version: i16,
    pub transaction_state_partitions: i32,
    pub transaction_max_timeout_ms: i32,
    pub group_initial_rebalance_delay_ms: i64,
    pub offsets_retention_minutes: i64,
    pub group_consumer_session_timeout_ms: i64,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub isr_max_lag_entries: u64,
    pub raft_log_retain_entries: u64,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `None` when the HTTP endpoint is off.
    pub http_addr: Option<String>,
    pub metrics: bool,
    pub cluster: Option<ClusterSettings>,
    pub kafka_security: KafkaSecurity,
}

#[derive(Debug)]
pub struct ClusterSettings {
    pub raft_addr: String,
    pub advertised_raft_addr: Option<String>,
    pub peers: Vec<(u64, String)>,
    pub bootstrap: bool,
    pub join: Option<String>,
    pub peer_security: PeerSecurity,
}

/// A Kafka listener to bind.
#[derive(Debug)]
pub struct ListenerBinding {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub addr: SocketAddr,
}

impl Settings {
    pub fn resolve(args: ServerArgs, cluster: Option<RaftClusterArgs>) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                parse_config_file(&text).with_context(|| format!("the config file {} is not valid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        let file_security = file.security.unwrap_or_default();
        let kafka_security = args.listener.resolve(&file_security)?;
        if kafka_security.listeners.is_some() && (args.listen.is_some() || file.listen.is_some()) {
            bail!("give the Kafka listeners with --listeners or --listen, not both");
        }
        let peer_security = args.peer.resolve(&file_security)?;
        let cluster = match (cluster, file.raft_cluster) {
            (None, None) => None,
            (flags, from_file) => {
                let flags = flags.unwrap_or_default();
                let from_file = from_file.unwrap_or_default();
                let raft_addr = flags.raft_addr.or(from_file.raft_addr).context(
                    "a cluster node needs --raft-addr (where its Raft service listens), e.g. --raft-addr 0.0.0.0:5001",
                )?;
                let peers = match (flags.peers, from_file.peers) {
                    (Some(peers), _) | (None, Some(Peers::Joined(peers))) => parse_peers(&peers, node_id)?,
                    (None, Some(Peers::List(list))) => parse_peers(&list.join(","), node_id)?,
                    (None, None) => Vec::new(),
                };
                let bootstrap = flags.bootstrap || from_file.bootstrap.unwrap_or(false);
                if bootstrap && peers.is_empty() {
                    bail!(
                        "--bootstrap forms a new cluster and needs --peers with its other nodes, \
                         e.g. --peers \"2@localhost:5002,3@localhost:5003\""
                    );
                }
                let join = flags.join.or(from_file.join);
                if bootstrap && join.is_some() {
                    bail!("--bootstrap forms a new cluster and --join joins a running one: give only one");
                }
                if peer_security.secret.is_none() && peer_security.tls.is_none() {
                    bail!(
                        "a cluster node needs to know its peers: give the cluster a shared secret \
                         (--cluster-secret-file, or CHRONIK_CLUSTER_SECRET) or mutual TLS \
                         (--peer-tls-cert, --peer-tls-key and --peer-tls-ca)"
                    );
                }
                Some(ClusterSettings {
                    raft_addr,
                    advertised_raft_addr: flags.advertised_raft_addr.or(from_file.advertised_raft_addr),
                    peers,
                    bootstrap,
                    join,
                    peer_security,
                })
            }
        };
        Ok(Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:9092".to_string()),
            kafka_port: args.kafka_port.or(file.kafka_port),
            advertised_addr: args.advertised_addr.or(file.advertised_addr),
            node_id,
            auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            default_partitions: args.default_partitions.or(file.default_partitions).unwrap_or(1),
            max_request_bytes: args
                .max_request_bytes
                .or(file.max_request_bytes)
                .unwrap_or(100 * 1024 * 1024),
            queued_max_request_bytes: args
                .queued_max_request_bytes
                .or(file.queued_max_request_bytes)
                .unwrap_or(256 << 20),
            fetch_max_bytes: args.fetch_max_bytes.or(file.fetch_max_bytes).unwrap_or(55 << 20),
            min_free_bytes: args.min_free_bytes.or(file.min_free_bytes),
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(300_000),
            log_cleaner_backoff_ms: args
                .log_cleaner_backoff_ms
                .or(file.log_cleaner_backoff_ms)
                .unwrap_or(15_000),
            offsets_topic_partitions: args
                .offsets_topic_partitions
                .or(file.offsets_topic_partitions)
                .unwrap_or(50),
            initial_version: args
                .initial_version
                .or(file.initial_version)
                .unwrap_or(chronik_state::version::NEWEST),
            transaction_state_partitions: args
                .transaction_state_partitions
                .or(file.transaction_state_partitions)
                .unwrap_or(50),
            transaction_max_timeout_ms: args
                .transaction_max_timeout_ms
                .or(file.transaction_max_timeout_ms)
                .unwrap_or(900_000),
            group_initial_rebalance_delay_ms: args
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(3_000),
            offsets_retention_minutes: args
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes)
                .unwrap_or(10_080),
            group_consumer_session_timeout_ms: args
                .group_consumer_session_timeout_ms
                .or(file.group_consumer_session_timeout_ms)
                .unwrap_or(45_000),
            group_consumer_heartbeat_interval_ms: args
                .group_consumer_heartbeat_interval_ms
                .or(file.group_consumer_heartbeat_interval_ms)
                .unwrap_or(5_000),
            isr_max_lag_entries: args.isr_max_lag_entries.or(file.isr_max_lag_entries).unwrap_or(1000),
            raft_log_retain_entries: args
                .raft_log_retain_entries
                .or(file.raft_log_retain_entries)
                .unwrap_or(10_000),
            log_level: args.log_level.or(file.log_level).unwrap_or_else(|| "info".to_string()),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            http_addr: Some(
                args.http_addr
                    .or(file.http_addr)
                    .unwrap_or_else(|| "127.0.0.1:9644".to_string()),
            )
            .filter(|addr| addr != "off"),
            metrics: args.metrics.or(file.metrics).unwrap_or(true),
            cluster,
            kafka_security,
        })
    }

    /// The Kafka listeners to bind: those of --listeners, or one PLAINTEXT
    /// listener at --listen. --kafka-port sets the port of the first.
    pub fn listener_bindings(&self) -> anyhow::Result<Vec<ListenerBinding>> {
        let mut bindings = match &self.kafka_security.listeners {
            None => vec![ListenerBinding {
                name: SecurityProtocol::Plaintext.name().to_string(),
                protocol: SecurityProtocol::Plaintext,
                addr: resolve(&self.listen)
                    .with_context(|| format!("--listen '{}' is not a host:port address", self.listen))?,
            }],
            Some(specs) => specs
                .iter()
                .map(|spec| {
                    let addr = resolve(&format!("{}:{}", spec.host, spec.port))
                        .or_else(|_| resolve(&format!("[{}]:{}", spec.host, spec.port)))
                        .with_context(|| format!("listener {}: '{}' does not resolve", spec.name, spec.host))?;
                    Ok(ListenerBinding {
                        name: spec.name.clone(),
                        protocol: spec.protocol,
                        addr,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        if let Some(port) = self.kafka_port {
            bindings[0].addr.set_port(port);
        }
        Ok(bindings)
    }

    pub fn http_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(addr) = &self.http_addr else { return Ok(None) };
        resolve(addr)
            .with_context(|| format!("--http-addr '{addr}' is not a host:port address (or \"off\")"))
            .map(Some)
    }

    pub fn raft_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(cluster) = &self.cluster else { return Ok(None) };
        resolve(&cluster.raft_addr)
            .with_context(|| format!("--raft-addr '{}' is not a host:port address", cluster.raft_addr))
            .map(Some)
    }

    /// The broker's settings, given the addresses the listeners actually bound.
    pub fn broker_config(
        &self,
        bound: &[(ListenerBinding, SocketAddr)],
        raft_bound: Option<SocketAddr>,
    ) -> anyhow::Result<BrokerConfig> {
        if self.node_id == 0 || self.node_id > i32::MAX as u64 {
            bail!("--node-id must be between 1 and {}, got {}", i32::MAX, self.node_id);
        }
        if self.default_partitions < 1 {
            bail!(
                "--default-partitions must be at least 1, got {}",
                self.default_partitions
            );
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            bail!(
                "--offsets-topic-partitions must be between 1 and 1000, got {}",
                self.offsets_topic_partitions
            );
        }
        if !(chronik_state::version::FIRST..=chronik_state::version::NEWEST).contains(&self.initial_version) {
            bail!(
                "--initial-version must be between {} and {}, the levels this build reads, got {}",
                chronik_state::version::FIRST,
                chronik_state::version::NEWEST,
                self.initial_version
            );
        }
        if !(1..=1000).contains(&self.transaction_state_partitions) {
            bail!(
                "--transaction-state-partitions must be between 1 and 1000, got {}",
                self.transaction_state_partitions
            );
        }
        if self.transaction_max_timeout_ms < 1 {
            bail!(
                "--transaction-max-timeout-ms must be at least 1, got {}",
                self.transaction_max_timeout_ms
            );
        }
        if self.group_initial_rebalance_delay_ms < 0 || self.offsets_retention_minutes < 1 {
            bail!("--group-initial-rebalance-delay-ms must be >= 0 and --offsets-retention-minutes >= 1");
        }
        if self.group_consumer_heartbeat_interval_ms < 1
            || self.group_consumer_session_timeout_ms <= i64::from(self.group_consumer_heartbeat_interval_ms)
        {
            bail!(
                "--group-consumer-heartbeat-interval-ms must be >= 1 and below --group-consumer-session-timeout-ms (got {} and {})",
                self.group_consumer_heartbeat_interval_ms,
                self.group_consumer_session_timeout_ms
            );
        }
        if self.queued_max_request_bytes < self.max_request_bytes {
            bail!(
                "--queued-max-request-bytes ({}) must be at least --max-request-bytes ({}), or no request of the largest size could be read",
                self.queued_max_request_bytes,
                self.max_request_bytes
            );
        }
        if self.fetch_max_bytes == 0 {
            bail!("--fetch-max-bytes must be at least 1");
        }
        let mut listeners = Vec::with_capacity(bound.len());
        for (i, (binding, addr)) in bound.iter().enumerate() {
            let (advertised_host, advertised_port) = match self.kafka_security.advertised.get(&binding.name) {
                Some((host, port)) => (host.clone(), *port),
                // --advertised-addr describes the first listener, as it did the only one.
                None if i == 0 => self.advertised(*addr)?,
                None => default_advertised(*addr),
            };
            listeners.push(ListenerConfig {
                name: binding.name.clone(),
                protocol: binding.protocol,
                bound: *addr,
                advertised_host,
                advertised_port,
            });
        }
        let host = listeners[0].advertised_host.clone();
        let cluster = match (&self.cluster, raft_bound) {
            (Some(cluster), Some(raft_bound)) => {
                let raft_advertised = match &cluster.advertised_raft_addr {
                    Some(addr) => addr.clone(),
                    None if raft_bound.ip().is_unspecified() => format!("{host}:{}", raft_bound.port()),
                    None => raft_bound.to_string(),
                };
                Some(ClusterConfig {
                    raft_listen: raft_bound,
                    raft_advertised,
                    peers: cluster.peers.clone(),
                    bootstrap: cluster.bootstrap,
                    join: cluster.join.clone(),
                    peer_security: cluster.peer_security.clone(),
                })
            }
            _ => None,
        };
        Ok(BrokerConfig {
            node_id: self.node_id,
            data_dir: self.data_dir.clone(),
            listeners,
            security: self.kafka_security.config.clone(),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_request_bytes: self.max_request_bytes,
            queued_max_request_bytes: self.queued_max_request_bytes,
            fetch_max_bytes: self.fetch_max_bytes,
            min_free_bytes: self.min_free_bytes,
            retention_check_interval: Duration::from_millis(self.retention_check_interval_ms.max(10)),
            log_cleaner_backoff: Duration::from_millis(self.log_cleaner_backoff_ms.max(10)),
            offsets_topic_partitions: self.offsets_topic_partitions,
            initial_version: self.initial_version,
            transaction_state_partitions: self.transaction_state_partitions,
            transaction_max_timeout_ms: self.transaction_max_timeout_ms,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            offsets_retention_minutes: self.offsets_retention_minutes,
            group_consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            cluster,
            isr_max_lag_entries: self.isr_max_lag_entries,
            raft_log_retain_entries: self.raft_log_retain_entries.max(1),
        })
    }

    fn advertised(&self, bound: SocketAddr) -> anyhow::Result<(String, u16)> {
        let Some(addr) = &self.advertised_addr else {
            return Ok(default_advertised(bound));
        };
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                let port = port
                    .parse()
                    .with_context(|| format!("--advertised-addr '{addr}': '{port}' is not a port number"))?;
                Ok((host.to_string(), port))
            }
            _ => Ok((addr.clone(), bound.port())),
        }
    }
}

/// Where clients reach a listener that binds `bound`: that address, with
/// localhost for one that binds every interface.
fn default_advertised(bound: SocketAddr) -> (String, u16) {
    let ip = if bound.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    };
    (ip.to_string(), bound.port())
}

/// Parses `ID@HOST:PORT,...`, refusing what cannot form a cluster.
pub fn parse_peers(text: &str, own_id: u64) -> anyhow::Result<Vec<(u64, String)>> {
    let mut peers: Vec<(u64, String)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('@') else {
            bail!("peer '{item}' in --peers is not ID@HOST:PORT, e.g. 2@localhost:5002");
        };
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .with_context(|| format!("peer '{item}' in --peers: '{id}' is not a node id (a positive integer)"))?;
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => bail!("peer '{item}' in --peers: '{addr}' is not HOST:PORT"),
        }
        if id == own_id {
            bail!("--peers lists node {id}, which is this node (--node-id); list only the other nodes");
        }
        if peers.iter().any(|(known, _)| *known == id) {
            bail!("--peers lists node {id} twice");
        }
        peers.push((id, addr.to_string()));
    }
    Ok(peers)
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .context("the address resolves to nothing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lists_are_checked() {
        assert_eq!(
            parse_peers("2@localhost:5002, 3@10.0.0.3:5003", 1).unwrap(),
            vec![(2, "localhost:5002".to_string()), (3, "10.0.0.3:5003".to_string())]
        );
        for (bad, why) in [
            ("2localhost:5002", "not ID@HOST:PORT"),
            ("x@localhost:5002", "not a node id"),
            ("2@localhost", "not HOST:PORT"),
            ("1@localhost:5001", "which is this node"),
            ("2@a:1,2@b:2", "twice"),
        ] {
            let error = parse_peers(bad, 1).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn the_config_file_fills_what_flags_leave_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "a-secret-of-some-length\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "node_id = 2\nkafka_port = 9093\n[raft_cluster]\nraft_addr = \"127.0.0.1:5002\"\n\
                 peers = [\"1@127.0.0.1:5001\"]\nbootstrap = true\n[security]\ncluster_secret_file = {:?}\n\
                 listeners = \"SASL_PLAINTEXT://127.0.0.1:0\"\n",
                secret.display().to_string()
            ),
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "chronik-server",
            "--config",
            path.to_str().unwrap(),
            "--kafka-port",
            "9999",
        ])
        .unwrap();
        let settings = Settings::resolve(cli.server, None).unwrap();
        assert_eq!(settings.node_id, 2);
        assert_eq!(settings.kafka_port, Some(9999), "a flag wins over the file");
        assert_eq!(
            settings.listener_bindings().unwrap()[0].protocol,
            SecurityProtocol::SaslPlaintext
        );
        let cluster = settings.cluster.unwrap();
        assert_eq!(cluster.peers, vec![(1, "127.0.0.1:5001".to_string())]);
        assert!(cluster.bootstrap);
        assert_eq!(
            cluster.peer_security.secret.as_deref(),
            Some("a-secret-of-some-length"),
            "the secret file is read and trimmed"
        );

        std::fs::write(&path, "[raft_cluster]\nraft_addr = \"127.0.0.1:5002\"\n").unwrap();
        let cli = Cli::try_parse_from(["chronik-server", "--config", path.to_str().unwrap()]).unwrap();
        let error = format!("{:#}", Settings::resolve(cli.server, None).unwrap_err());
        assert!(
            error.contains("--cluster-secret-file"),
            "a cluster needs peer security: {error}"
        );

        std::fs::write(&path, "node_idd = 2\n").unwrap();
        let cli = Cli::try_parse_from(["chronik-server", "--config", path.to_str().unwrap()]).unwrap();
        let error = format!("{:#}", Settings::resolve(cli.server, None).unwrap_err());
        assert!(error.contains("node_idd"), "{error}");
    }
}
