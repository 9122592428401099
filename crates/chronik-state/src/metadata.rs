//! The cluster metadata: the state the metadata Raft group replicates, the
//! commands that change it, and their deterministic application.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chronik_raft::{Effect, GroupId, NodeId};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::{consumer_offsets, topic_config};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Upper bound on partitions per topic, so one request cannot exhaust the node.
pub const MAX_PARTITIONS: i32 = 10_000;
/// Replicas of a topic created without an explicit replication factor,
/// capped by the number of nodes.
pub const DEFAULT_REPLICATION_FACTOR: i16 = 3;

/// A member of the cluster: a voter of the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where its Raft and admin gRPC services listen; empty for a single node.
    pub raft_addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub group: GroupId,
    pub replicas: Vec<NodeId>,
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
}

/// A change to the metadata, proposed to the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    InitCluster {
        cluster_id: String,
        nodes: BTreeMap<NodeId, NodeInfo>,
    },
    RegisterBroker {
        node: NodeId,
        info: BrokerInfo,
    },
    CreateTopic {
        name: String,
        id: uuid::Uuid,
        partitions: i32,
        /// -1 for the default.
        replication_factor: i16,
        configs: BTreeMap<String, String>,
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
            MetadataCommand::InitCluster { cluster_id, nodes } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                    self.nodes = nodes;
                }
                Ok(())
            }
            MetadataCommand::RegisterBroker { node, info } => {
                self.brokers.insert(node, info);
                Ok(())
            }
            MetadataCommand::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
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
                let replicas = self.replica_count(replication_factor)?;
                let partitions = (0..partitions).map(|_| self.new_partition(replicas, effects)).collect();
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
                if name == consumer_offsets::TOPIC =>
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
            MetadataCommand::CreatePartitions { name, total, request } => {
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
                let added: Vec<_> = (existing..total)
                    .map(|_| self.new_partition(replicas, effects))
                    .collect();
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
        }
        .map(|()| MetadataReply::Done)
    }

    /// The partition groups with a replica on `node`, with their replicas.
    pub fn groups_of_node(&self, node: NodeId) -> Vec<(GroupId, Vec<NodeId>)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replicas.contains(&node))
            .map(|p| (p.group, p.replicas.clone()))
            .collect()
    }

    /// The nodes replicas are placed on, in id order.
    pub fn members(&self) -> Vec<NodeId> {
        if self.nodes.is_empty() {
            self.brokers.keys().copied().collect()
        } else {
            self.nodes.keys().copied().collect()
        }
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
        self.next_group += 1;
        let members = self.members();
        let replicas: Vec<NodeId> = if members.is_empty() {
            Vec::new()
        } else {
            (0..replicas.min(members.len()))
                .map(|i| members[(group as usize + i) % members.len()])
                .collect()
        };
        effects.push(Effect::CreateGroup {
            group,
            voters: replicas.clone(),
        });
        PartitionInfo { group, replicas }
    }

    /// Loads the state saved by [`MetadataState::save`]; a missing file is an empty state.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataState::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves atomically: a crash leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
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
        }
    }

    #[test]
    fn replicas_spread_over_the_nodes() {
        let mut state = MetadataState::default();
        let nodes = (1..=3)
            .map(|id| {
                (
                    id,
                    NodeInfo {
                        raft_addr: format!("n{id}"),
                    },
                )
            })
            .collect();
        let init = MetadataCommand::InitCluster {
            cluster_id: "c".into(),
            nodes,
        };
        state.apply(1, init, &mut Vec::new()).unwrap();
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
}
