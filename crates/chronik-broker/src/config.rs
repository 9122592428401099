//! Settings of one broker process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chronik_raft::NodeId;
use chronik_raft::grpc::PeerSecurity;

use crate::security::SecurityConfig;
use crate::security::listener::ListenerConfig;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// The Kafka listeners, bound; the first is the one the node registers
    /// as its main address.
    pub listeners: Vec<ListenerConfig>,
    /// TLS, SASL and authorization settings of the Kafka listeners.
    pub security: SecurityConfig,
    /// Create a topic when a client asks for metadata of, or produces to, an unknown one.
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// Requests larger than this are refused and the connection is closed.
    pub max_request_bytes: usize,
    /// Bytes of requests read and not yet answered, over all connections;
    /// reading more waits (Kafka's queued.max.request.bytes).
    pub queued_max_request_bytes: usize,
    /// Record bytes one Fetch response carries at most (Kafka's fetch.max.bytes).
    pub fetch_max_bytes: usize,
    /// Below this much free space on the data directory's volume the node
    /// refuses writes; `None`: 5% of the volume, at most 256 MiB.
    pub min_free_bytes: Option<u64>,
    /// How often retention deletes old segments.
    pub retention_check_interval: Duration,
    /// How long the cleaner waits between passes over compacted partitions.
    pub log_cleaner_backoff: Duration,
    /// Partitions of `__consumer_offsets`, fixed when it is first created.
    pub offsets_topic_partitions: i32,
    /// The `chronik.version` level a new cluster starts at.
    pub initial_version: i16,
    /// Partitions of `__transaction_state`, fixed when it is first created.
    pub transaction_state_partitions: i32,
    /// Kafka's transaction.max.timeout.ms.
    pub transaction_max_timeout_ms: i32,
    /// Kafka's group.initial.rebalance.delay.ms: how long a new group waits
    /// for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: i64,
    /// Kafka's offsets.retention.minutes.
    pub offsets_retention_minutes: i64,
    /// Kafka's group.consumer.session.timeout.ms (KIP-848 groups).
    pub group_consumer_session_timeout_ms: i64,
    /// Kafka's group.consumer.heartbeat.interval.ms (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Set when this node is one of a cluster; `None` for a single node.
    pub cluster: Option<ClusterConfig>,
    /// A follower stays in the ISR while at most this many Raft entries behind.
    pub isr_max_lag_entries: u64,
    /// Applied Raft entries a leader keeps for followers that lack them.
    pub raft_log_retain_entries: u64,
}

impl BrokerConfig {
    /// The listener clients reach this node on first.
    pub fn main_listener(&self) -> &ListenerConfig {
        self.listeners.first().expect("a broker has at least one listener")
    }
}

/// How a node finds and joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where the Raft and admin gRPC services bind.
    pub raft_listen: SocketAddr,
    /// The address peers are told to reach this node's Raft service at.
    pub raft_advertised: String,
    /// The other nodes: id and Raft address.
    pub peers: Vec<(NodeId, String)>,
    /// Form a new cluster from this node and its peers if the data directory is empty.
    pub bootstrap: bool,
    /// Join a running cluster through this member's Raft address if the data
    /// directory is empty.
    pub join: Option<String>,
    /// How nodes prove to each other that they belong to the cluster.
    pub peer_security: PeerSecurity,
}
