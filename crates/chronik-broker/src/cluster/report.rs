//! A node's view of the cluster as the admin service reports it. The
//! `cluster` CLI prints it, or combines the reports of several nodes.

use chronik_raft::{GroupId, GroupReport, NodeId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub metadata_leader: Option<NodeId>,
    /// The last metadata entry this node applied.
    pub metadata_applied: u64,
    pub nodes: Vec<NodeEntry>,
    pub topics: Vec<TopicEntry>,
    /// The Raft groups this node holds a replica of.
    pub replicas: Vec<ReplicaReport>,
    /// Free space on the node's data volume.
    #[serde(default)]
    pub disk: DiskReport,
    /// The SASL users, with their SCRAM mechanisms and iterations.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// The `chronik.version` level the cluster runs at, in this node's view
    /// (0 from a build before the version).
    #[serde(default)]
    pub version: i16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub name: String,
    /// (mechanism, iterations)
    pub mechanisms: Vec<(String, i32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    /// Below `min_free_bytes`: the node refuses writes.
    pub low: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: NodeId,
    pub raft_addr: String,
    /// Known once the node has started and registered its Kafka listener.
    pub kafka_addr: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    pub name: String,
    pub partitions: Vec<PartitionEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub partition: i32,
    pub group: GroupId,
    pub replicas: Vec<NodeId>,
    /// The replicas a reassignment under way moves it to.
    #[serde(default)]
    pub target: Option<Vec<NodeId>>,
}

/// One replica: its Raft state and, for a partition, its log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub raft: GroupReport,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub log_start_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// Bytes of the partition's segment files.
    #[serde(default)]
    pub log_bytes: Option<u64>,
    /// CRC32C over every stored batch (its offset, then its bytes), hex.
    /// Replicas that hold the same records at the same offsets agree.
    pub checksum: Option<String>,
}

impl NodeReport {
    pub fn replica(&self, group: GroupId) -> Option<&ReplicaReport> {
        self.replicas.iter().find(|r| r.raft.group == group)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionEntry> {
        self.topics
            .iter()
            .find(|t| t.name == topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
    }
}
