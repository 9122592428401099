//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders:
//! Kafka's admin APIs for moving replicas and leaders. A reassignment is
//! recorded in the metadata; the partition's leader carries it out.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::metadata::{MetadataCommand, MetadataError, Reassignment};

/// Kafka's election types: 0 preferred, 1 unclean.
const PREFERRED_ELECTION: i8 = 0;

pub async fn alter(
    broker: &Broker,
    session: &Session,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !broker.allows_cluster(session, Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to ALTER the cluster")));
    }
    // Each partition is checked against this node's view first, so one bad
    // partition does not refuse the others.
    let mut results: Vec<(String, i32, Result<(), MetadataError>)> = Vec::new();
    let mut moves = Vec::new();
    {
        let metadata = broker.state.metadata();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            for partition in &topic.partitions {
                let index = partition.partition_index;
                let replicas: Option<Vec<u64>> = partition
                    .replicas
                    .as_ref()
                    .map(|r| r.iter().map(|id| id.0.max(0) as u64).collect());
                let found = metadata
                    .topic(&name)
                    .and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i)));
                let checked = match (found, &replicas) {
                    (None, _) => Err(MetadataError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' has no partition {index}"),
                    )),
                    (Some(p), None) if p.target.is_none() => Err(MetadataError::new(
                        ResponseError::NoReassignmentInProgress,
                        format!("{name}-{index} is not being reassigned"),
                    )),
                    (Some(_), None) => Ok(()),
                    (Some(_), Some(replicas)) => metadata.check_replicas(replicas),
                };
                if checked.is_ok() {
                    moves.push(Reassignment {
                        topic: name.clone(),
                        partition: index,
                        replicas,
                    });
                }
                results.push((name.clone(), index, checked));
            }
        }
    }
    if !moves.is_empty()
        && let Err(e) = broker
            .propose_metadata(MetadataCommand::ReassignPartitions { moves })
            .await
    {
        for (_, _, result) in results.iter_mut().filter(|(_, _, r)| r.is_ok()) {
            *result = Err(e.clone());
        }
    }
    let partitions = results.into_iter().map(|(name, index, result)| {
        let (code, message) = match result {
            Ok(()) => (0, None),
            Err(e) => (e.error.code(), Some(str_bytes(&e.message))),
        };
        let partition = ReassignablePartitionResponse::default()
            .with_partition_index(index)
            .with_error_code(code)
            .with_error_message(message);
        (name, partition)
    });
    let responses = by_topic(partitions)
        .into_iter()
        .map(|(name, partitions)| {
            ReassignableTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

pub fn list(
    broker: &Broker,
    session: &Session,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !broker.allows_cluster(session, Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to DESCRIBE the cluster")));
    }
    let metadata = broker.state.metadata();
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |nodes: Vec<u64>| nodes.into_iter().map(|n| BrokerId(n as i32)).collect::<Vec<_>>();
    let ongoing = metadata
        .partitions()
        .filter(|(name, index, _)| wanted(name, *index))
        .filter_map(|(name, index, p)| {
            let target = p.target.as_ref()?;
            let adding = target.iter().copied().filter(|n| !p.replicas.contains(n)).collect();
            let removing = p.replicas.iter().copied().filter(|n| !target.contains(n)).collect();
            let ongoing = OngoingPartitionReassignment::default()
                .with_partition_index(index)
                .with_replicas(ids(p.hosts()))
                .with_adding_replicas(ids(adding))
                .with_removing_replicas(ids(removing));
            Some((name.clone(), ongoing))
        });
    let topics = by_topic(ongoing)
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// Preferred-leader election: each partition's leadership goes to its first
/// replica when that replica is in sync. Unclean elections do not exist
/// under Raft.
pub async fn elect(broker: &Broker, session: &Session, request: ElectLeadersRequest) -> ElectLeadersResponse {
    if !broker.allows_cluster(session, Operation::Alter) {
        return ElectLeadersResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let targets: Vec<(String, i32)> = match &request.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
            .collect(),
        None => broker
            .state
            .metadata()
            .partitions()
            .map(|(name, index, _)| (name.clone(), index))
            .collect(),
    };
    let mut partitions = Vec::with_capacity(targets.len());
    for (name, index) in targets {
        let outcome = if request.election_type != PREFERRED_ELECTION {
            Err((
                ResponseError::InvalidRequest,
                "only preferred-leader elections exist: Raft never elects a replica that lacks committed data"
                    .to_string(),
            ))
        } else {
            elect_preferred(broker, &name, index).await
        };
        let (code, message) = match outcome {
            Ok(()) => (0, None),
            Err((error, message)) => (error.code(), Some(str_bytes(&message))),
        };
        let partition = PartitionResult::default()
            .with_partition_id(index)
            .with_error_code(code)
            .with_error_message(message);
        partitions.push((name, partition));
    }
    let results = by_topic(partitions)
        .into_iter()
        .map(|(name, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(topic_name(&name))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

async fn elect_preferred(broker: &Broker, topic: &str, index: i32) -> Result<(), (ResponseError, String)> {
    let (group, preferred) = {
        let metadata = broker.state.metadata();
        let partition = metadata
            .topic(topic)
            .and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i)))
            .ok_or((
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{topic}' has no partition {index}"),
            ))?;
        let preferred = partition.replicas.first().copied().ok_or((
            ResponseError::PreferredLeaderNotAvailable,
            format!("{topic}-{index} has no replicas"),
        ))?;
        (partition.group, preferred)
    };
    match broker.leader_of(group) {
        Some(leader) if leader == preferred => Err((
            ResponseError::ElectionNotNeeded,
            format!("node {preferred} leads {topic}-{index} already"),
        )),
        None => Err((
            ResponseError::PreferredLeaderNotAvailable,
            format!("{topic}-{index} has no leader to hand over from"),
        )),
        Some(_) => {
            let in_sync = broker
                .in_sync_replicas(group)
                .is_some_and(|isr| isr.contains(&preferred));
            if !in_sync {
                return Err((
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("node {preferred} is not in sync for {topic}-{index}"),
                ));
            }
            crate::cluster::transfer_leadership(broker, group, preferred)
                .await
                .map_err(|e| (ResponseError::PreferredLeaderNotAvailable, e))
        }
    }
}

/// Per-partition results grouped by topic, topics in the order first seen:
/// the shape of these responses.
fn by_topic<P>(items: impl IntoIterator<Item = (String, P)>) -> Vec<(String, Vec<P>)> {
    let mut topics: Vec<(String, Vec<P>)> = Vec::new();
    for (topic, item) in items {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, items)) => items.push(item),
            None => topics.push((topic, vec![item])),
        }
    }
    topics
}
