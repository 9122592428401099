//! Command-line flags; each can also be set through a `CHRONIK_*` variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chronik_broker::BrokerConfig;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "chronik-server",
    version,
    about = "A Kafka-compatible event-streaming broker built on Raft"
)]
pub struct Args {
    /// Where topics and the Raft log are stored.
    #[arg(long, env = "CHRONIK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address the Kafka listener binds to.
    #[arg(long, env = "CHRONIK_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: String,

    /// Port of the Kafka listener; overrides the port of --listen. 0 picks a free one.
    #[arg(long, env = "CHRONIK_KAFKA_PORT")]
    pub kafka_port: Option<u16>,

    /// Host (or host:port) clients are told to connect to. Defaults to the listener's address.
    #[arg(long, env = "CHRONIK_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,

    /// This node's id: its Kafka broker id and Raft peer id.
    #[arg(long, env = "CHRONIK_NODE_ID", default_value_t = 1)]
    pub node_id: u64,

    /// Create topics on first use (Metadata or Produce).
    #[arg(long, env = "CHRONIK_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Partitions of an auto-created topic, or of one created without a count.
    #[arg(long, env = "CHRONIK_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,

    /// Largest request accepted, in bytes.
    #[arg(long, env = "CHRONIK_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// How often retention deletes expired segments, in milliseconds.
    #[arg(long, env = "CHRONIK_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000)]
    pub retention_check_interval_ms: u64,

    /// Partitions of the internal __consumer_offsets topic (used when it is first created).
    #[arg(long, env = "CHRONIK_OFFSETS_TOPIC_PARTITIONS", default_value_t = 50)]
    pub offsets_topic_partitions: i32,

    /// How long a new consumer group waits for more members before its first rebalance.
    #[arg(long, env = "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3_000)]
    pub group_initial_rebalance_delay_ms: i64,

    /// Committed offsets of a group without members are deleted after this long.
    #[arg(long, env = "CHRONIK_OFFSETS_RETENTION_MINUTES", default_value_t = 10_080)]
    pub offsets_retention_minutes: i64,

    /// Log filter when RUST_LOG is unset (e.g. info, debug, chronik_broker=debug).
    #[arg(long, env = "CHRONIK_LOG", default_value = "info")]
    pub log_level: String,
}

impl Args {
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        let mut addr =
            resolve(&self.listen).with_context(|| format!("--listen '{}' is not a host:port address", self.listen))?;
        if let Some(port) = self.kafka_port {
            addr.set_port(port);
        }
        Ok(addr)
    }

    /// The broker's settings, given the address the listener actually bound.
    pub fn broker_config(&self, bound: SocketAddr) -> anyhow::Result<BrokerConfig> {
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
        if self.group_initial_rebalance_delay_ms < 0 || self.offsets_retention_minutes < 1 {
            bail!("--group-initial-rebalance-delay-ms must be >= 0 and --offsets-retention-minutes >= 1");
        }
        let (host, port) = self.advertised(bound)?;
        Ok(BrokerConfig {
            node_id: self.node_id,
            data_dir: self.data_dir.clone(),
            listen: bound,
            advertised_host: host,
            advertised_port: port,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_request_bytes: self.max_request_bytes,
            retention_check_interval: Duration::from_millis(self.retention_check_interval_ms.max(10)),
            offsets_topic_partitions: self.offsets_topic_partitions,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            offsets_retention_minutes: self.offsets_retention_minutes,
        })
    }

    fn advertised(&self, bound: SocketAddr) -> anyhow::Result<(String, u16)> {
        let Some(addr) = &self.advertised_addr else {
            let ip = if bound.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                bound.ip()
            };
            return Ok((ip.to_string(), bound.port()));
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

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .context("the address resolves to nothing")
}
