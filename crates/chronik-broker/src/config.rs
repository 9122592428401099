//! Settings of one broker process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chronik_raft::NodeId;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// Where the Kafka listener binds.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Create a topic when a client asks for metadata of, or produces to, an unknown one.
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// Requests larger than this are refused and the connection is closed.
    pub max_request_bytes: usize,
    /// How often retention deletes old segments.
    pub retention_check_interval: Duration,
    /// Partitions of `__consumer_offsets`, fixed when it is first created.
    pub offsets_topic_partitions: i32,
    /// Kafka's group.initial.rebalance.delay.ms: how long a new group waits
    /// for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: i64,
    /// Kafka's offsets.retention.minutes.
    pub offsets_retention_minutes: i64,
}
