//! The cluster metadata: the state the metadata Raft group replicates, the
//! commands that change it, and their deterministic application.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use chronik_raft::{Effect, GroupId, NodeId};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::acl::{AclBinding, AclSet};
use crate::topic_config;
use crate::users::{CredentialChange, Users};
use crate::version::{self, ClusterVersion};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Upper bound on partitions per topic, so one request cannot exhaust the node.
pub const MAX_PARTITIONS: i32 = 10_000;
/// Replicas of a topic created without an explicit replication factor,
/// capped by the number of nodes.
pub const DEFAULT_REPLICATION_FACTOR: i16 = 3;

/// A member of the cluster: a voter of the metadata group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where its Raft and admin gRPC services listen; empty for a single node.
    pub raft_addr: String,
    /// Added to a running cluster and not started yet (it has not
    /// registered its Kafka listener): new topics place no replica on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The address on the first listener.
    pub host: String,
    pub port: u16,
    /// The advertised address of each named listener, so that a client is
    /// told the addresses of the listener it connected to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, (String, u16)>,
}

impl BrokerInfo {
    /// The address to give a client that connected to `listener`; `None`
    /// if this broker has no such listener (Kafka leaves it out then). A
    /// broker that registered no names has its one address on every one.
    pub fn address_on(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners.get(listener).map(|(host, port)| (host.as_str(), *port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub group: GroupId,
    /// The first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// While a reassignment is under way, the replicas it moves to. The
    /// partition's leader changes the Raft group's members step by step
    /// until they are these, then makes them `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<NodeId>>,
    /// Nodes outside `replicas` given a replica by the reassignment under
    /// way (by its target, or an earlier target it replaced). They keep it
    /// until the reassignment completes: until then they may be members of
    /// the Raft group, and a member's log must not vanish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staging: Vec<NodeId>,
    /// Nodes that left the group and have not yet confirmed that their
    /// replica is deleted. A move may not add them back until they have: a
    /// node that lags on the metadata could otherwise delete its replica
    /// after the group's leader counted it again (its Raft id is its node
    /// id, so the leader cannot tell the two apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaving: Vec<NodeId>,
}

impl PartitionInfo {
    /// The nodes that hold, or are receiving, a replica.
    pub fn hosts(&self) -> Vec<NodeId> {
        let mut hosts = self.replicas.clone();
        hosts.extend(self.staging.iter().copied().filter(|n| !self.replicas.contains(n)));
        hosts
    }

    /// The replicas the group's members are to become.
    pub fn desired(&self) -> &[NodeId] {
        self.target.as_deref().unwrap_or(&self.replicas)
    }
}

/// A partition's new replicas, or `None` to cancel its reassignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<NodeId>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionInfo>,
    /// Only the keys set explicitly; defaults live in `topic_config`.
    pub configs: BTreeMap<String, String>,
    /// The request id of the last CreatePartitions applied, so that a
    /// proposal retried after a lost reply is recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_partitions_request: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    pub cluster_id: String,
    /// The cluster's members; replicas are placed on them.
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Kafka listeners of the members that have started.
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// Partition groups get ids from this counter; group 0 is metadata.
    pub next_group: GroupId,
    /// Producer ids are handed out in blocks from this counter.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The last metadata Raft entry reflected here.
    pub applied_index: u64,
    #[serde(default, skip_serializing_if = "AclSet::is_empty")]
    pub acls: AclSet,
    /// SASL users and their SCRAM credentials.
    #[serde(default)]
    pub users: Users,
    /// Absent in a cluster formed before the version existed: it runs at
    /// the first level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ClusterVersion>,
}

/// A change to the metadata, proposed to the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    InitCluster {
        cluster_id: String,
        nodes: BTreeMap<NodeId, NodeInfo>,
        /// The `chronik.version` level the new cluster starts at.
        #[serde(default = "version::first")]
        version: i16,
    },
    RegisterBroker {
        node: NodeId,
        info: BrokerInfo,
        /// The newest `chronik.version` level the node's build reads; a
        /// build from before the version reads the first.
        #[serde(default = "version::first")]
        reads: i16,
    },
    CreateTopic {
        name: String,
        id: uuid::Uuid,
        partitions: i32,
        /// -1 for the default.
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        /// The replicas of each partition, chosen by the client; `None`
        /// spreads them over the nodes.
        #[serde(default)]
        assignment: Option<Vec<Vec<NodeId>>>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
        /// Unique per request: the same command proposed again after a lost
        /// reply applies once.
        #[serde(default)]
        request: Option<uuid::Uuid>,
        /// The replicas of each new partition, chosen by the client.
        #[serde(default)]
        assignment: Option<Vec<Vec<NodeId>>>,
    },
    /// `None` removes the key, so the default applies again.
    AlterConfigs {
        name: String,
        changes: BTreeMap<String, Option<String>>,
    },
    /// Replaces every explicit setting (the legacy AlterConfigs API).
    ReplaceConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Reserves `count` producer ids for the proposing broker.
    AllocateProducerIds {
        count: i64,
    },
    /// Makes `node` a member: the metadata group's leader adds it to the
    /// group (as a learner, then a voter), and once it has started and
    /// registered its listener, new replicas may be placed on it.
    AddNode {
        node: NodeId,
        raft_addr: String,
    },
    /// Ends `node`'s membership. Refused while it holds replicas.
    RemoveNode {
        node: NodeId,
    },
    /// Starts (or cancels) moving partitions to new replicas.
    ReassignPartitions {
        moves: Vec<Reassignment>,
    },
    /// The leader of `group` reports that its members are `replicas`, the
    /// partition's target: the reassignment is done.
    CompleteReassignment {
        group: GroupId,
        replicas: Vec<NodeId>,
    },
    /// `node` deleted its replica of `group` after leaving it.
    ReplicaDeleted {
        group: GroupId,
        node: NodeId,
    },
    /// Adds ACLs (checked at the edge; those already present are kept once).
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes these exact ACLs; absent ones are ignored.
    DeleteAcls {
        bindings: Vec<AclBinding>,
    },
    /// Creates, replaces or deletes users' SCRAM credentials, in order.
    AlterUsers {
        changes: Vec<CredentialChange>,
    },
    /// Moves the cluster up to `chronik.version` `level`. Proposed only once
    /// every one of `members` has said it reads that level
    /// (`cluster::upgrade`); refused if the cluster has another member by
    /// the time it applies.
    SetVersion {
        level: i16,
        members: Vec<NodeId>,
    },
}

/// What applying a metadata command produced, besides the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataReply {
    Done,
    /// The first of the reserved producer ids.
    ProducerIds {
        first: i64,
    },
}

/// Why a metadata command was refused, as the Kafka error to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({error:?})")]
pub struct MetadataError {
    pub error: ResponseError,
    pub message: String,
}

impl MetadataError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        MetadataError {
            error,
            message: message.into(),
        }
    }
}

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |why: &str| {
        MetadataError::new(
            ResponseError::InvalidTopicException,
            format!("topic name '{name}' {why}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("cannot be '.' or '..'"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid("is longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid("may contain only ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

pub fn validate_configs<'a>(configs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), MetadataError> {
    for (key, value) in configs {
        topic_config::validate(key, value).map_err(|m| MetadataError::new(ResponseError::InvalidConfig, m))?;
    }
    Ok(())
}

impl MetadataState {
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<(&String, &TopicInfo)> {
        self.topics.iter().find(|(_, t)| t.id == id)
    }

    /// The partition group of `topic`/`partition`, if both exist.
    pub fn group_of(&self, topic: &str, partition: i32) -> Option<GroupId> {
        let topic = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .map(|p| p.group)
    }

    /// Applies one command. Every replica reaches the same state, and group
    /// changes it implies are pushed to `effects`.
    pub fn apply(
        &mut self,
        index: u64,
        command: MetadataCommand,
        effects: &mut Vec<Effect>,
    ) -> Result<MetadataReply, MetadataError> {
        self.applied_index = index;
        if self.next_group == 0 {
            self.next_group = 1;
        }
        match command {
            MetadataCommand::InitCluster {
                cluster_id,
                nodes,
                version,
            } => {
                if self.cluster_id.is_empty() {
                    version::check_level(version).map_err(|m| MetadataError::new(ResponseError::InvalidRequest, m))?;
                    self.cluster_id = cluster_id;
                    self.nodes = nodes;
                    self.version = Some(ClusterVersion {
                        level: version,
                        epoch: index,
                    });
                }
                Ok(())
            }
            MetadataCommand::RegisterBroker { node, info, reads } => {
                let level = self.version_level();
                if reads < level {
                    // Its replicas could not apply what the leaders write.
                    return Err(MetadataError::new(
                        ResponseError::UnsupportedVersion,
                        format!(
                            "node {node}'s build reads {} up to {reads} and the cluster runs at {level}: start it with a newer build",
                            version::FEATURE
                        ),
                    ));
                }
                self.brokers.insert(node, info);
                if let Some(member) = self.nodes.get_mut(&node) {
                    member.pending = false;
                }
                Ok(())
            }
            MetadataCommand::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
                assignment,
            } => {
                validate_topic_name(&name)?;
                if self.topics.get(&name).is_some_and(|t| t.id == id) {
                    // This very command, proposed again after its reply was lost.
                    return Ok(MetadataReply::Done);
                }
                if self.topics.contains_key(&name) {
                    return Err(MetadataError::new(
                        ResponseError::TopicAlreadyExists,
                        format!("topic '{name}' already exists"),
                    ));
                }
                check_partition_count(partitions)?;
                validate_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                let partitions = match assignment {
                    Some(assignment) => {
                        self.check_assignment(&assignment, None)?;
                        assignment
                            .into_iter()
                            .map(|replicas| self.partition_on(replicas, effects))
                            .collect()
                    }
                    None => {
                        let replicas = self.replica_count(replication_factor)?;
                        (0..partitions).map(|_| self.new_partition(replicas, effects)).collect()
                    }
                };
                self.topics.insert(
                    name,
                    TopicInfo {
                        id,
                        partitions,
                        configs,
                        last_partitions_request: None,
                    },
                );
                Ok(())
            }
            MetadataCommand::DeleteTopic { name } | MetadataCommand::CreatePartitions { name, .. }
                if crate::is_internal_topic(&name) =>
            {
                Err(MetadataError::new(
                    ResponseError::InvalidTopicException,
                    format!("{name} is internal: Chronik manages it"),
                ))
            }
            MetadataCommand::DeleteTopic { name } => {
                let topic = self.topics.remove(&name).ok_or_else(|| unknown_topic(&name))?;
                effects.extend(topic.partitions.iter().map(|p| Effect::RemoveGroup { group: p.group }));
                Ok(())
            }
            MetadataCommand::CreatePartitions {
                name,
                total,
                request,
                assignment,
            } => {
                let topic = self.topics.get(&name).ok_or_else(|| unknown_topic(&name))?;
                if request.is_some() && topic.last_partitions_request == request {
                    // This very command, proposed again after its reply was lost.
                    return Ok(MetadataReply::Done);
                }
                let existing = topic.partitions.len() as i32;
                if total <= existing {
                    return Err(MetadataError::new(
                        ResponseError::InvalidPartitions,
                        format!("topic '{name}' has {existing} partitions; the new count must be larger, got {total}"),
                    ));
                }
                check_partition_count(total)?;
                let replicas = self.topics[&name].partitions[0].replicas.len();
                let added: Vec<_> = match assignment {
                    Some(assignment) => {
                        if assignment.len() as i32 != total - existing {
                            return Err(MetadataError::new(
                                ResponseError::InvalidReplicaAssignment,
                                format!(
                                    "{} assignments given for {} new partitions",
                                    assignment.len(),
                                    total - existing
                                ),
                            ));
                        }
                        self.check_assignment(&assignment, Some(replicas))?;
                        assignment
                            .into_iter()
                            .map(|replicas| self.partition_on(replicas, effects))
                            .collect()
                    }
                    None => (existing..total)
                        .map(|_| self.new_partition(replicas, effects))
                        .collect(),
                };
                let topic = self.topics.get_mut(&name).expect("checked above");
                topic.partitions.extend(added);
                topic.last_partitions_request = request;
                Ok(())
            }
            MetadataCommand::AlterConfigs { name, changes } => {
                let topic = self.topics.get_mut(&name).ok_or_else(|| unknown_topic(&name))?;
                validate_configs(
                    changes
                        .iter()
                        .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v))),
                )?;
                for (key, value) in changes {
                    match value {
                        Some(value) => topic.configs.insert(key, value),
                        None => topic.configs.remove(&key),
                    };
                }
                Ok(())
            }
            MetadataCommand::ReplaceConfigs { name, configs } => {
                let topic = self.topics.get_mut(&name).ok_or_else(|| unknown_topic(&name))?;
                validate_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                topic.configs = configs;
                Ok(())
            }
            MetadataCommand::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                self.next_producer_id += count.max(1);
                return Ok(MetadataReply::ProducerIds { first });
            }
            MetadataCommand::AddNode { node, raft_addr } => self.add_node(node, raft_addr),
            MetadataCommand::RemoveNode { node } => self.remove_node(node),
            MetadataCommand::ReassignPartitions { moves } => self.reassign(&moves, effects),
            MetadataCommand::CompleteReassignment { group, replicas } => {
                self.complete_reassignment(group, replicas, effects)
            }
            MetadataCommand::ReplicaDeleted { group, node } => {
                if let Some(partition) = self.partition_mut(group) {
                    partition.leaving.retain(|n| *n != node);
                }
                Ok(())
            }
            MetadataCommand::CreateAcls { bindings } => {
                if let Some(message) = bindings.iter().find_map(|b| b.validate().err()) {
                    return Err(MetadataError::new(ResponseError::InvalidRequest, message));
                }
                self.acls
                    .insert_all(bindings)
                    .map_err(|m| MetadataError::new(ResponseError::PolicyViolation, m))
            }
            MetadataCommand::DeleteAcls { bindings } => {
                for binding in &bindings {
                    self.acls.remove(binding);
                }
                Ok(())
            }
            MetadataCommand::AlterUsers { changes } => self
                .users
                .apply(changes)
                .map_err(|m| MetadataError::new(ResponseError::UnacceptableCredential, m)),
            MetadataCommand::SetVersion { level, members } => self.set_version(index, level, &members),
        }
        .map(|()| MetadataReply::Done)
    }

    /// The `chronik.version` level the cluster runs at.
    pub fn version_level(&self) -> i16 {
        self.version.map_or(version::FIRST, |v| v.level)
    }

    /// Every node that is, or is about to become, a member; single nodes
    /// have no member list, only their registration.
    pub fn all_nodes(&self) -> Vec<NodeId> {
        if self.nodes.is_empty() {
            self.brokers.keys().copied().collect()
        } else {
            self.nodes.keys().copied().collect()
        }
    }

    /// Whether the cluster may move to `level`: a level there is, and never
    /// down, since entries of a higher level may be in the logs. Checked by
    /// the node asked before it asks the members, and again at apply.
    pub fn check_version_change(&self, level: i16) -> Result<(), MetadataError> {
        let refuse = |m: String| MetadataError::new(ResponseError::InvalidUpdateVersion, m);
        version::check_level(level).map_err(refuse)?;
        let current = self.version_level();
        if level < current {
            return Err(refuse(format!(
                "{} cannot go down from {current} to {level}: entries of level {current} may be in the logs",
                version::FEATURE
            )));
        }
        Ok(())
    }

    fn set_version(&mut self, index: u64, level: i16, checked: &[NodeId]) -> Result<(), MetadataError> {
        self.check_version_change(level)?;
        if let Some(node) = self.all_nodes().into_iter().find(|n| !checked.contains(n)) {
            return Err(MetadataError::new(
                ResponseError::InvalidUpdateVersion,
                format!("node {node} became a member while the members' builds were checked; try again"),
            ));
        }
        if level > self.version_level() {
            self.version = Some(ClusterVersion { level, epoch: index });
        }
        Ok(())
    }

    /// The partition groups with a replica on `node`, or one being added there.
    pub fn groups_of_node(&self, node: NodeId) -> Vec<GroupId> {
        self.partitions()
            .filter(|(_, _, p)| p.hosts().contains(&node))
            .map(|(_, _, p)| p.group)
            .collect()
    }

    /// How `node` starts each group it hosts: with the other first voters if
    /// it is one of the partition's replicas, else empty, as a replica being
    /// added (its leader sends it a snapshot).
    pub fn creation_effects(&self, node: NodeId) -> Vec<Effect> {
        self.partitions()
            .filter(|(_, _, p)| p.hosts().contains(&node))
            .map(|(_, _, p)| {
                if p.replicas.contains(&node) {
                    Effect::CreateGroup {
                        group: p.group,
                        voters: p.replicas.clone(),
                    }
                } else {
                    Effect::JoinGroup {
                        group: p.group,
                        nodes: vec![node],
                    }
                }
            })
            .collect()
    }

    /// Every partition: its topic, index and info.
    pub fn partitions(&self) -> impl Iterator<Item = (&String, i32, &PartitionInfo)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| t.partitions.iter().enumerate().map(move |(i, p)| (name, i as i32, p)))
    }

    /// The partition of `group`.
    pub fn partition_of_group(&self, group: GroupId) -> Option<(&String, i32, &PartitionInfo)> {
        self.partitions().find(|(_, _, p)| p.group == group)
    }

    fn partition_mut(&mut self, group: GroupId) -> Option<&mut PartitionInfo> {
        self.topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .find(|p| p.group == group)
    }

    fn add_node(&mut self, node: NodeId, raft_addr: String) -> Result<(), MetadataError> {
        if node == 0 || node > i32::MAX as u64 {
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("node id {node} is out of range: use 1 to {}", i32::MAX),
            ));
        }
        if raft_addr.is_empty() {
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                "a node needs a Raft address",
            ));
        }
        match self.nodes.get(&node) {
            Some(known) if known.raft_addr == raft_addr => {}
            Some(known) => {
                return Err(MetadataError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "node {node} is already a member, with Raft address {}; remove it first to change it",
                        known.raft_addr
                    ),
                ));
            }
            None => {
                if let Some((other, _)) = self.nodes.iter().find(|(_, n)| n.raft_addr == raft_addr) {
                    return Err(MetadataError::new(
                        ResponseError::InvalidRequest,
                        format!("Raft address {raft_addr} belongs to node {other} already"),
                    ));
                }
                self.nodes.insert(
                    node,
                    NodeInfo {
                        raft_addr,
                        pending: true,
                    },
                );
            }
        }
        Ok(())
    }

    fn remove_node(&mut self, node: NodeId) -> Result<(), MetadataError> {
        if !self.nodes.contains_key(&node) {
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("node {node} is not a member of the cluster"),
            ));
        }
        if self.nodes.len() == 1 {
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("node {node} is the last member of the cluster"),
            ));
        }
        let held = self.groups_of_node(node).len();
        if held > 0 {
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("node {node} still holds replicas of {held} partition(s); move them off it first"),
            ));
        }
        self.nodes.remove(&node);
        self.brokers.remove(&node);
        // A node that left the cluster comes back only with an empty disk.
        for partition in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            partition.leaving.retain(|n| *n != node);
        }
        Ok(())
    }

    /// Checks every move, then starts them all: one refused move refuses all.
    fn reassign(&mut self, moves: &[Reassignment], effects: &mut Vec<Effect>) -> Result<(), MetadataError> {
        let mut updates = Vec::with_capacity(moves.len());
        for change in moves {
            let partition = self
                .topics
                .get(&change.topic)
                .and_then(|t| usize::try_from(change.partition).ok().and_then(|i| t.partitions.get(i)))
                .ok_or_else(|| {
                    MetadataError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{}' has no partition {}", change.topic, change.partition),
                    )
                })?;
            let target = match &change.replicas {
                // Cancelling goes back to the replicas it had.
                None => partition.replicas.clone(),
                Some(replicas) => {
                    self.check_replicas(replicas)?;
                    replicas.clone()
                }
            };
            if let Some(node) = target.iter().find(|n| partition.leaving.contains(n)) {
                return Err(MetadataError::new(
                    ResponseError::ReassignmentInProgress,
                    format!(
                        "node {node} is still deleting its earlier replica of {}-{}; retry in a moment",
                        change.topic, change.partition
                    ),
                ));
            }
            updates.push((partition.group, target));
        }
        for (group, target) in updates {
            let partition = self.partition_mut(group).expect("checked above");
            let before = partition.hosts();
            for node in &target {
                if !partition.replicas.contains(node) && !partition.staging.contains(node) {
                    partition.staging.push(*node);
                }
            }
            partition.target = Some(target);
            let after = partition.hosts();
            debug_assert!(
                before.iter().all(|n| after.contains(n)),
                "a reassignment only adds hosts"
            );
            push_host_changes(group, &before, &after, effects);
        }
        Ok(())
    }

    /// A replica list must name distinct members, at least one.
    pub fn check_replicas(&self, replicas: &[NodeId]) -> Result<(), MetadataError> {
        let invalid = |why: String| MetadataError::new(ResponseError::InvalidReplicaAssignment, why);
        if replicas.is_empty() {
            return Err(invalid("a partition needs at least one replica".into()));
        }
        for (i, node) in replicas.iter().enumerate() {
            if replicas[..i].contains(node) {
                return Err(invalid(format!("node {node} is named twice in {replicas:?}")));
            }
            if !self.nodes.contains_key(node) {
                return Err(invalid(format!("node {node} is not a member of the cluster")));
            }
        }
        Ok(())
    }

    fn complete_reassignment(
        &mut self,
        group: GroupId,
        replicas: Vec<NodeId>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), MetadataError> {
        let partition = self.partition_mut(group).ok_or_else(|| {
            MetadataError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("no partition has group {group}"),
            )
        })?;
        if partition.target.as_ref() != Some(&replicas) {
            // The target changed since the leader looked; it goes on.
            return Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("group {group} is not moving to {replicas:?}"),
            ));
        }
        let before = partition.hosts();
        partition.replicas = replicas;
        partition.target = None;
        partition.staging.clear();
        let after = partition.hosts();
        for node in before.iter().filter(|n| !after.contains(n)) {
            if !partition.leaving.contains(node) {
                partition.leaving.push(*node);
            }
        }
        push_host_changes(group, &before, &after, effects);
        Ok(())
    }

    /// The nodes new replicas are placed on, in id order: the members but
    /// those added and not started yet.
    pub fn members(&self) -> Vec<NodeId> {
        if self.nodes.is_empty() {
            self.brokers.keys().copied().collect()
        } else {
            self.nodes
                .iter()
                .filter(|(_, n)| !n.pending)
                .map(|(id, _)| *id)
                .collect()
        }
    }

    /// Kafka's rules for a replica assignment chosen by a client: every
    /// partition on the same number of distinct, live member nodes (that of
    /// the topic's other partitions, when it has some).
    pub fn check_assignment(&self, assignment: &[Vec<NodeId>], replicas: Option<usize>) -> Result<(), MetadataError> {
        let invalid = |message: String| MetadataError::new(ResponseError::InvalidReplicaAssignment, message);
        let members = self.members();
        let expected = replicas.or_else(|| assignment.first().map(Vec::len)).unwrap_or(0);
        for (index, nodes) in assignment.iter().enumerate() {
            if nodes.is_empty() {
                return Err(invalid(format!("partition {index} is assigned no replicas")));
            }
            if nodes.len() != expected {
                return Err(invalid(format!(
                    "inconsistent replication factor: partition {index} has {} replicas, others {expected}",
                    nodes.len()
                )));
            }
            let mut seen = BTreeSet::new();
            if let Some(duplicate) = nodes.iter().find(|n| !seen.insert(**n)) {
                return Err(invalid(format!(
                    "duplicate broker {duplicate} in the replicas of partition {index}"
                )));
            }
            let unknown: Vec<String> = nodes
                .iter()
                .filter(|n| !members.contains(n))
                .map(|n| n.to_string())
                .collect();
            if !unknown.is_empty() {
                return Err(invalid(format!(
                    "unknown broker(s) in the replicas of partition {index}: {}",
                    unknown.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn replica_count(&self, replication_factor: i16) -> Result<usize, MetadataError> {
        let members = self.members().len().max(1);
        if replication_factor == -1 {
            return Ok(members.min(DEFAULT_REPLICATION_FACTOR as usize));
        }
        if replication_factor < 1 || replication_factor as usize > members {
            return Err(MetadataError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {replication_factor} is not possible with {members} node(s)"),
            ));
        }
        Ok(replication_factor as usize)
    }

    /// A new partition group whose replicas start one node further along than
    /// the previous group's, so replicas and (first voters being preferred
    /// leaders) leadership spread evenly over the nodes.
    fn new_partition(&mut self, replicas: usize, effects: &mut Vec<Effect>) -> PartitionInfo {
        let group = self.next_group;
        let members = self.members();
        let replicas: Vec<NodeId> = if members.is_empty() {
            Vec::new()
        } else {
            (0..replicas.min(members.len()))
                .map(|i| members[(group as usize + i) % members.len()])
                .collect()
        };
        self.partition_on(replicas, effects)
    }

    /// A new partition group on exactly `replicas`; the first is its
    /// preferred leader.
    fn partition_on(&mut self, replicas: Vec<NodeId>, effects: &mut Vec<Effect>) -> PartitionInfo {
        let group = self.next_group;
        self.next_group += 1;
        effects.push(Effect::CreateGroup {
            group,
            voters: replicas.clone(),
        });
        PartitionInfo {
            group,
            replicas,
            target: None,
            staging: Vec::new(),
            leaving: Vec::new(),
        }
    }

    /// Loads the state saved by [`MetadataState::save`]; a missing file is an empty state.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => MetadataState::decode(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataState::default()),
            Err(e) => Err(e),
        }
    }

    /// The metadata as its file and snapshots hold it. From
    /// `chronik.version` 2 on it is wrapped with the level: a build from
    /// before the version, which would skip the entries it cannot decode
    /// and diverge, then cannot read it and refuses to start (or to take
    /// the snapshot) instead. Below that, old builds read it as before.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = if self.version_level() >= version::ASSIGNED_OFFSETS {
            serde_json::to_vec(&Versioned {
                chronik_version: self.version_level(),
                state: Cow::Borrowed(self),
            })
        } else {
            serde_json::to_vec(self)
        };
        encoded.expect("metadata serializes")
    }

    /// Reads what [`MetadataState::encode`] wrote, in either form.
    pub fn decode(bytes: &[u8]) -> serde_json::Result<Self> {
        match serde_json::from_slice::<Versioned<'_>>(bytes) {
            Ok(versioned) => Ok(versioned.state.into_owned()),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// Saves atomically: a crash leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&self.encode())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The metadata of a cluster at `chronik.version` 2 or above, in a form a
/// build from before the version cannot read.
#[derive(Serialize, Deserialize)]
struct Versioned<'a> {
    chronik_version: i16,
    state: Cow<'a, MetadataState>,
}

/// The group changes on nodes that start or stop hosting `group`.
fn push_host_changes(group: GroupId, before: &[NodeId], after: &[NodeId], effects: &mut Vec<Effect>) {
    let joined: Vec<NodeId> = after.iter().copied().filter(|n| !before.contains(n)).collect();
    let left: Vec<NodeId> = before.iter().copied().filter(|n| !after.contains(n)).collect();
    if !joined.is_empty() {
        effects.push(Effect::JoinGroup { group, nodes: joined });
    }
    if !left.is_empty() {
        effects.push(Effect::LeaveGroup { group, nodes: left });
    }
}

fn unknown_topic(name: &str) -> MetadataError {
    MetadataError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

fn check_partition_count(partitions: i32) -> Result<(), MetadataError> {
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(MetadataError::new(
            ResponseError::InvalidPartitions,
            format!("partition count must be between 1 and {MAX_PARTITIONS}, got {partitions}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
            assignment: None,
        }
    }

    #[test]
    fn manual_assignments_are_checked_and_kept() {
        let mut state = cluster_of(3);
        let mut effects = Vec::new();
        let assigned = |assignment: Vec<Vec<NodeId>>| MetadataCommand::CreateTopic {
            name: "m".into(),
            id: uuid::Uuid::new_v4(),
            partitions: assignment.len() as i32,
            replication_factor: -1,
            configs: BTreeMap::new(),
            assignment: Some(assignment),
        };
        for (bad, why) in [
            (vec![vec![1, 1]], "duplicate"),
            (vec![vec![1, 4]], "unknown"),
            (vec![vec![1, 2], vec![3]], "inconsistent"),
            (vec![vec![]], "no replicas"),
        ] {
            let error = state.apply(2, assigned(bad), &mut effects).unwrap_err();
            assert_eq!(error.error, ResponseError::InvalidReplicaAssignment);
            assert!(error.message.contains(why), "{}", error.message);
        }
        assert!(effects.is_empty());
        state
            .apply(2, assigned(vec![vec![3, 1], vec![2, 3]]), &mut effects)
            .unwrap();
        let replicas: Vec<_> = state
            .topic("m")
            .unwrap()
            .partitions
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        assert_eq!(replicas, [vec![3, 1], vec![2, 3]]);
        let grow = |assignment: Vec<Vec<NodeId>>| MetadataCommand::CreatePartitions {
            name: "m".into(),
            total: 2 + assignment.len() as i32,
            request: Some(uuid::Uuid::new_v4()),
            assignment: Some(assignment),
        };
        let error = state.apply(3, grow(vec![vec![1]]), &mut effects).unwrap_err();
        assert_eq!(
            error.error,
            ResponseError::InvalidReplicaAssignment,
            "{}",
            error.message
        );
        state.apply(3, grow(vec![vec![1, 2]]), &mut effects).unwrap();
        assert_eq!(state.topic("m").unwrap().partitions[2].replicas, [1, 2]);
    }

    /// A cluster of nodes `1..=count`, initialised at index 1.
    fn cluster_of(count: NodeId) -> MetadataState {
        let mut state = MetadataState::default();
        let nodes = (1..=count)
            .map(|id| {
                (
                    id,
                    NodeInfo {
                        raft_addr: format!("n{id}"),
                        pending: false,
                    },
                )
            })
            .collect();
        let init = MetadataCommand::InitCluster {
            cluster_id: "c".into(),
            nodes,
            version: version::NEWEST,
        };
        state.apply(1, init, &mut Vec::new()).unwrap();
        state
    }

    #[test]
    fn replicas_spread_over_the_nodes() {
        let mut state = cluster_of(3);
        state.apply(2, create("t", 6), &mut Vec::new()).unwrap();
        let topic = state.topic("t").unwrap();
        let mut first_voters = [0; 4];
        for p in &topic.partitions {
            let mut replicas = p.replicas.clone();
            replicas.sort_unstable();
            assert_eq!(replicas, vec![1, 2, 3]);
            first_voters[p.replicas[0] as usize] += 1;
        }
        assert_eq!(first_voters[1..], [2, 2, 2], "preferred leaders are balanced");
        let too_many = MetadataCommand::CreateTopic {
            name: "u".into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: 4,
            configs: BTreeMap::new(),
            assignment: None,
        };
        let err = state.apply(3, too_many, &mut Vec::new()).unwrap_err();
        assert_eq!(err.error, ResponseError::InvalidReplicationFactor);
    }

    #[test]
    fn a_create_topic_proposed_again_after_a_lost_reply_succeeds() {
        let mut state = MetadataState::default();
        let mut effects = Vec::new();
        let command = create("t", 2);
        state.apply(1, command.clone(), &mut effects).unwrap();
        assert_eq!(state.apply(2, command, &mut effects), Ok(MetadataReply::Done));
        assert_eq!(effects.len(), 2, "the retry creates no groups");
        assert_eq!(state.topic("t").unwrap().partitions.len(), 2);
    }

    fn reassign(topic: &str, replicas: Option<Vec<NodeId>>) -> MetadataCommand {
        MetadataCommand::ReassignPartitions {
            moves: vec![Reassignment {
                topic: topic.into(),
                partition: 0,
                replicas,
            }],
        }
    }

    /// Found by the simulator: a move replaced by another (or cancelled)
    /// must not take the replica off a node of the first move's target, which
    /// may be a member of the Raft group already; only completion does.
    #[test]
    fn a_replaced_move_keeps_its_new_replicas_until_completion() {
        let mut state = cluster_of(5);
        state.apply(2, create("t", 1), &mut Vec::new()).unwrap();
        let original = state.topic("t").unwrap().partitions[0].replicas.clone();
        let spare: Vec<NodeId> = (1..=5).filter(|n| !original.contains(n)).collect();
        let first = vec![spare[0], original[1], original[2]];
        let mut effects = Vec::new();
        state
            .apply(3, reassign("t", Some(first.clone())), &mut effects)
            .unwrap();
        assert!(matches!(&effects[..], [Effect::JoinGroup { nodes, .. }] if *nodes == vec![spare[0]]));
        effects.clear();
        state.apply(4, reassign("t", None), &mut effects).unwrap();
        assert!(effects.is_empty(), "cancelling drops no replica: {effects:?}");
        let partition = &state.topic("t").unwrap().partitions[0];
        assert!(partition.hosts().contains(&spare[0]));
        let group = partition.group;
        let refused = state.apply(
            5,
            MetadataCommand::CompleteReassignment { group, replicas: first },
            &mut effects,
        );
        assert!(refused.is_err(), "the target is no longer the first move's");
        let done = MetadataCommand::CompleteReassignment {
            group,
            replicas: original.clone(),
        };
        state.apply(6, done, &mut effects).unwrap();
        assert!(matches!(&effects[..], [Effect::LeaveGroup { nodes, .. }] if *nodes == vec![spare[0]]));
        let partition = &state.topic("t").unwrap().partitions[0];
        assert_eq!(
            (partition.replicas.clone(), partition.target.clone()),
            (original.clone(), None)
        );
        assert!(partition.staging.is_empty());
        assert_eq!(partition.leaving, vec![spare[0]]);
    }

    /// Found by the simulator (seed 707): a node that left a group and lags
    /// on the metadata may still run its old replica, answer the leader
    /// with it, and delete it afterwards. It is not added back before it
    /// confirms that the replica is gone.
    #[test]
    fn a_node_is_added_back_only_once_its_old_replica_is_gone() {
        let mut state = cluster_of(4);
        state.apply(2, create("t", 1), &mut Vec::new()).unwrap();
        let partition = state.topic("t").unwrap().partitions[0].clone();
        let out = partition.replicas[0];
        let spare = (1..=4).find(|n| !partition.replicas.contains(n)).unwrap();
        let moved: Vec<NodeId> = partition
            .replicas
            .iter()
            .map(|n| if *n == out { spare } else { *n })
            .collect();
        state
            .apply(3, reassign("t", Some(moved.clone())), &mut Vec::new())
            .unwrap();
        let done = MetadataCommand::CompleteReassignment {
            group: partition.group,
            replicas: moved,
        };
        state.apply(4, done, &mut Vec::new()).unwrap();
        let back = reassign("t", Some(partition.replicas.clone()));
        let refused = state.apply(5, back.clone(), &mut Vec::new()).unwrap_err();
        assert_eq!(refused.error, ResponseError::ReassignmentInProgress);
        let deleted = MetadataCommand::ReplicaDeleted {
            group: partition.group,
            node: out,
        };
        state.apply(6, deleted, &mut Vec::new()).unwrap();
        state.apply(7, back, &mut Vec::new()).unwrap();
    }

    #[test]
    fn nodes_join_and_leave_only_without_replicas() {
        let mut state = cluster_of(5);
        state.apply(2, create("t", 5), &mut Vec::new()).unwrap();
        let add = |node| MetadataCommand::AddNode {
            node,
            raft_addr: format!("n{node}"),
        };
        assert!(state.apply(3, add(6), &mut Vec::new()).is_ok());
        assert!(
            !state.members().contains(&6),
            "no replicas on a node that has not started"
        );
        let info = BrokerInfo {
            host: "h".into(),
            port: 1,
            listeners: BTreeMap::new(),
        };
        state
            .apply(
                4,
                MetadataCommand::RegisterBroker {
                    node: 6,
                    info,
                    reads: version::NEWEST,
                },
                &mut Vec::new(),
            )
            .unwrap();
        assert!(state.members().contains(&6), "placed on once it runs");
        assert!(
            state.apply(4, add(6), &mut Vec::new()).is_ok(),
            "adding again is no error"
        );
        let taken = MetadataCommand::AddNode {
            node: 7,
            raft_addr: "n6".into(),
        };
        assert!(
            state.apply(5, taken, &mut Vec::new()).is_err(),
            "an address belongs to one node"
        );
        let held = state.apply(6, MetadataCommand::RemoveNode { node: 1 }, &mut Vec::new());
        assert!(held.unwrap_err().message.contains("still holds replicas"));
        state
            .apply(7, MetadataCommand::RemoveNode { node: 6 }, &mut Vec::new())
            .unwrap();
        assert!(!state.nodes.contains_key(&6));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn create_delete_and_grow_topics_allocate_groups() {
        let mut state = MetadataState::default();
        let mut effects = Vec::new();
        state.apply(1, create("a", 2), &mut effects).unwrap();
        assert_eq!(state.group_of("a", 0), Some(1));
        assert_eq!(state.group_of("a", 1), Some(2));
        assert_eq!(effects.len(), 2);
        let again = state.apply(2, create("a", 1), &mut effects).unwrap_err();
        assert_eq!(again.error, ResponseError::TopicAlreadyExists);
        let grow = MetadataCommand::CreatePartitions {
            name: "a".into(),
            total: 3,
            request: Some(uuid::Uuid::new_v4()),
            assignment: None,
        };
        state.apply(3, grow.clone(), &mut effects).unwrap();
        assert_eq!(state.group_of("a", 2), Some(3));
        // The same request again (its reply was lost) changes nothing and succeeds.
        state.apply(3, grow, &mut effects).unwrap();
        assert_eq!(state.topic("a").unwrap().partitions.len(), 3);
        let shrink = state
            .apply(
                4,
                MetadataCommand::CreatePartitions {
                    name: "a".into(),
                    total: 2,
                    request: Some(uuid::Uuid::new_v4()),
                    assignment: None,
                },
                &mut effects,
            )
            .unwrap_err();
        assert_eq!(shrink.error, ResponseError::InvalidPartitions);
        effects.clear();
        state
            .apply(5, MetadataCommand::DeleteTopic { name: "a".into() }, &mut effects)
            .unwrap();
        assert_eq!(effects.len(), 3);
        assert!(state.topic("a").is_none());
        assert_eq!(state.applied_index, 5);
    }

    #[test]
    fn configs_are_validated_and_altered() {
        let mut state = MetadataState::default();
        let mut effects = Vec::new();
        state.apply(1, create("t", 1), &mut effects).unwrap();
        let mut changes = BTreeMap::new();
        changes.insert("retention.ms".to_string(), Some("1000".to_string()));
        state
            .apply(
                2,
                MetadataCommand::AlterConfigs {
                    name: "t".into(),
                    changes: changes.clone(),
                },
                &mut effects,
            )
            .unwrap();
        assert_eq!(state.topic("t").unwrap().configs["retention.ms"], "1000");
        changes.insert("retention.ms".to_string(), Some("never".to_string()));
        let err = state
            .apply(
                3,
                MetadataCommand::AlterConfigs {
                    name: "t".into(),
                    changes,
                },
                &mut effects,
            )
            .unwrap_err();
        assert_eq!(err.error, ResponseError::InvalidConfig);
    }

    #[test]
    fn state_survives_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        assert_eq!(MetadataState::load(&path).unwrap(), MetadataState::default());
        let mut state = MetadataState::default();
        state.apply(7, create("t", 3), &mut Vec::new()).unwrap();
        state.save(&path).unwrap();
        assert_eq!(MetadataState::load(&path).unwrap(), state);
    }

    #[test]
    fn from_the_assigned_offsets_level_on_a_build_before_the_version_cannot_read_the_metadata() {
        let mut state = cluster_of(3);
        state.version = None;
        let plain = state.encode();
        assert_eq!(
            serde_json::from_slice::<MetadataState>(&plain).unwrap(),
            state,
            "old builds read it"
        );
        assert_eq!(MetadataState::decode(&plain).unwrap(), state);

        state
            .apply(
                2,
                MetadataCommand::SetVersion {
                    level: version::ASSIGNED_OFFSETS,
                    members: vec![1, 2, 3],
                },
                &mut Vec::new(),
            )
            .unwrap();
        let versioned = state.encode();
        let refused = serde_json::from_slice::<MetadataState>(&versioned).unwrap_err();
        assert!(refused.to_string().contains("missing field `cluster_id`"), "{refused}");
        assert_eq!(MetadataState::decode(&versioned).unwrap(), state);
    }

    #[test]
    fn a_cluster_from_before_the_version_runs_at_the_first_level() {
        let old: MetadataState =
            serde_json::from_str(r#"{"cluster_id":"c","brokers":{},"topics":{},"next_group":1,"applied_index":5}"#)
                .unwrap();
        assert_eq!(old.version_level(), version::FIRST);
        let init: MetadataCommand = serde_json::from_str(r#"{"InitCluster":{"cluster_id":"c","nodes":{}}}"#).unwrap();
        assert!(matches!(init, MetadataCommand::InitCluster { version: 1, .. }));

        let mut state = cluster_of(3);
        assert_eq!(state.version_level(), version::NEWEST);
        let set = |level, members: &[NodeId]| MetadataCommand::SetVersion {
            level,
            members: members.to_vec(),
        };
        let zero = state.apply(2, set(0, &[1, 2, 3]), &mut Vec::new());
        assert_eq!(zero.unwrap_err().error, ResponseError::InvalidUpdateVersion);
        let same = state.apply(3, set(version::NEWEST, &[1, 2, 3]), &mut Vec::new());
        assert_eq!(same, Ok(MetadataReply::Done));
        assert_eq!(
            state.version.map(|v| v.epoch),
            Some(1),
            "setting the same level changes nothing"
        );

        // A cluster at the first level moves up once, at the index that did it.
        let mut old = cluster_of(3);
        old.version = None;
        let unchecked = old.apply(4, set(version::NEWEST, &[1, 2]), &mut Vec::new());
        assert!(unchecked.unwrap_err().message.contains("node 3 became a member"));
        assert_eq!(old.version_level(), version::FIRST);
        assert_eq!(
            old.apply(5, set(version::NEWEST, &[1, 2, 3]), &mut Vec::new()),
            Ok(MetadataReply::Done)
        );
        assert_eq!(
            old.version,
            Some(ClusterVersion {
                level: version::NEWEST,
                epoch: 5
            })
        );

        // A build that reads less than the cluster's level cannot register.
        let info = BrokerInfo {
            host: "h".into(),
            port: 1,
            listeners: BTreeMap::new(),
        };
        let register: MetadataCommand = serde_json::from_value(serde_json::json!({
            "RegisterBroker": {"node": 3, "info": info}
        }))
        .unwrap();
        let refused = old.apply(6, register, &mut Vec::new()).unwrap_err();
        assert_eq!(refused.error, ResponseError::UnsupportedVersion);
        assert!(!old.brokers.contains_key(&3));
    }
}
