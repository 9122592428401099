//! Metadata: brokers, topics and partition leaders from the applied metadata
//! view, auto-creating requested topics when allowed.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::security::session::Session;
use chronik_raft::{GroupId, NodeId};
use chronik_state::acl::{Operation, ResourceType};
use chronik_state::metadata::TopicInfo;

pub async fn handle(broker: &Broker, session: &Session, request: MetadataRequest, version: i16) -> MetadataResponse {
    let wanted: Option<Vec<String>> = match &request.topics {
        // v0 asks for every topic with an empty list; later versions with null.
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(
            topics
                .iter()
                .filter_map(|t| match &t.name {
                    Some(name) => Some(name.0.to_string()),
                    None => broker
                        .state
                        .metadata()
                        .topic_by_id(t.topic_id)
                        .map(|(name, _)| name.clone()),
                })
                .collect(),
        ),
        _ => None,
    };
    let auto_create = broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut errors = Vec::new();
    if let Some(names) = &wanted {
        for name in names {
            if !broker.allows_topic(session, Operation::Describe, name) {
                errors.push((name.clone(), ResponseError::TopicAuthorizationFailed));
                continue;
            }
            let missing = broker.state.metadata().topic(name).is_none();
            if !(auto_create && missing) {
                continue;
            }
            if !broker.may_create_topic(session, name) {
                errors.push((name.clone(), ResponseError::TopicAuthorizationFailed));
            } else if let Err(e) = broker.auto_create_topic(name).await {
                errors.push((name.clone(), e.error));
            }
        }
    }

    let metadata = broker.state.metadata();
    let authorizer = &broker.config.security.authorizer;
    let brokers = metadata
        .brokers
        .iter()
        // Members only: clients would keep trying to connect to a removed
        // node. A member that is down stays listed, as Kafka lists a broker
        // until its session expires: librdkafka, seeing a broker vanish in
        // the same answer that names a partition's new leader, drops the
        // new leader too and learns it again only a second later.
        .filter(|(id, _)| metadata.nodes.is_empty() || metadata.nodes.contains_key(id))
        .filter_map(|(id, info)| {
            let (host, port) = info.address_on(&session.listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(*id as i32))
                    .with_host(str_bytes(host))
                    .with_port(i32::from(port)),
            )
        })
        .collect();
    let topics = match wanted {
        // Every topic: those the principal may not describe are left out.
        None => metadata
            .topics
            .iter()
            .filter(|(name, _)| {
                authorizer.allows(&metadata.acls, session, Operation::Describe, ResourceType::Topic, name)
            })
            .map(|(name, info)| describe_topic(broker, name, info))
            .collect(),
        Some(names) => names
            .iter()
            .map(
                |name| match (errors.iter().find(|(n, _)| n == name), metadata.topic(name)) {
                    (None, Some(info)) => describe_topic(broker, name, info),
                    (error, _) => {
                        let error = error.map_or(ResponseError::UnknownTopicOrPartition, |(_, e)| *e);
                        MetadataResponseTopic::default()
                            .with_name(Some(topic_name(name)))
                            .with_error_code(error.code())
                    }
                },
            )
            .collect(),
    };
    let controller = broker
        .leader_of(chronik_raft::METADATA_GROUP)
        .map_or(-1, |id| id as i32);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&metadata.cluster_id)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

/// The leader of a partition's group with its epoch, and its in-sync
/// replicas. Only the leader knows those; without word from it, the leader
/// itself is the one replica known to be in sync.
pub(crate) fn leadership(broker: &Broker, group: GroupId) -> (Option<(NodeId, i32)>, Vec<NodeId>) {
    let leader = broker.leader_and_epoch(group);
    let isr = broker
        .in_sync_replicas(group)
        .filter(|isr| !isr.is_empty())
        .unwrap_or_else(|| leader.map(|(id, _)| id).into_iter().collect());
    (leader, isr)
}

fn describe_topic(broker: &Broker, name: &str, info: &TopicInfo) -> MetadataResponseTopic {
    let partitions = info
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let replicas: Vec<BrokerId> = p.replicas.iter().map(|id| BrokerId(*id as i32)).collect();
            let (leader, isr) = leadership(broker, p.group);
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr.iter().map(|id| BrokerId(*id as i32)).collect())
                .with_leader_epoch(-1);
            match leader {
                Some((leader, epoch)) => partition
                    .with_leader_id(BrokerId(leader as i32))
                    .with_leader_epoch(epoch),
                None => partition
                    .with_leader_id(BrokerId(-1))
                    .with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(info.id)
        .with_is_internal(chronik_state::is_internal_topic(name))
        .with_partitions(partitions)
}
