//! CreateTopics, DeleteTopics and CreatePartitions: validated here, applied
//! through the metadata group.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::security::session::Session;
use chronik_raft::NodeId;
use chronik_state::acl::Operation;
use chronik_state::metadata::{self, MetadataCommand, MetadataError};

fn refuse(error: ResponseError, message: impl Into<String>) -> MetadataError {
    MetadataError {
        error,
        message: message.into(),
    }
}

fn denied(topic: &str, operation: &str) -> MetadataError {
    refuse(
        ResponseError::TopicAuthorizationFailed,
        format!("not authorized to {operation} topic '{topic}'"),
    )
}

pub async fn create(broker: &Broker, session: &Session, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        // Kafka checks the permission first: a refusal tells nothing about the topic.
        let outcome = match creation(broker, &topic) {
            _ if !broker.may_create_topic(session, &name) => Err(denied(&name, "CREATE")),
            Ok(command) if request.validate_only => broker.validate_metadata(command.clone()).map(|_| command),
            Ok(command) => broker.propose_metadata(command.clone()).await.map(|_| command),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(MetadataCommand::CreateTopic {
                id,
                partitions,
                replication_factor,
                assignment,
                ..
            }) => {
                if !request.validate_only {
                    broker.wait_for_topic_leaders(&name).await;
                }
                let planned = assignment
                    .as_ref()
                    .and_then(|a| a.first())
                    .map_or(replication_factor, |replicas| replicas.len() as i16);
                let replicas = broker
                    .state
                    .metadata()
                    .topic(&name)
                    .map_or(planned, |t| t.partitions[0].replicas.len() as i16);
                result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replicas)
            }
            Ok(other) => unreachable!("creation built {other:?}"),
            Err(e) => result
                .with_error_code(e.error.code())
                .with_error_message(Some(str_bytes(&e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Checks a topic to create and builds the command that creates it.
fn creation(broker: &Broker, topic: &CreatableTopic) -> Result<MetadataCommand, MetadataError> {
    let name = topic.name.0.to_string();
    metadata::validate_topic_name(&name)?;
    if broker.state.metadata().topic(&name).is_some() {
        return Err(refuse(
            ResponseError::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ));
    }
    let assignment = manual_assignment(broker, topic)?;
    let partitions = match &assignment {
        Some(assignment) => assignment.len() as i32,
        None if topic.num_partitions == -1 => broker.config.default_partitions,
        None => topic.num_partitions,
    };
    let nodes = broker.state.metadata().members().len().max(1) as i16;
    let replication = topic.replication_factor;
    if replication != -1 && (replication < 1 || replication > nodes) {
        return Err(refuse(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {replication} is not possible with {nodes} node(s)"),
        ));
    }
    let configs: BTreeMap<String, String> = topic
        .configs
        .iter()
        .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
        .collect();
    metadata::validate_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    Ok(MetadataCommand::CreateTopic {
        name,
        id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor: replication,
        configs,
        assignment,
    })
}

/// The replicas a CreateTopics request chose for each partition, in
/// partition order, checked as Kafka checks them.
fn manual_assignment(broker: &Broker, topic: &CreatableTopic) -> Result<Option<Vec<Vec<NodeId>>>, MetadataError> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(refuse(
            ResponseError::InvalidRequest,
            "both num_partitions or replication_factor and a replica assignment were given; give one or the other",
        ));
    }
    let mut assignments: Vec<_> = topic.assignments.iter().collect();
    assignments.sort_by_key(|a| a.partition_index);
    if assignments
        .iter()
        .enumerate()
        .any(|(i, a)| a.partition_index != i as i32)
    {
        return Err(refuse(
            ResponseError::InvalidReplicaAssignment,
            "the assigned partitions must be numbered 0, 1, 2, … without gaps",
        ));
    }
    let lists = assignments
        .iter()
        .map(|a| node_ids(&a.broker_ids))
        .collect::<Result<Vec<_>, _>>()?;
    broker.state.metadata().check_assignment(&lists, None)?;
    Ok(Some(lists))
}

fn node_ids(brokers: &[BrokerId]) -> Result<Vec<NodeId>, MetadataError> {
    brokers
        .iter()
        .map(|b| {
            NodeId::try_from(b.0).map_err(|_| {
                refuse(
                    ResponseError::InvalidReplicaAssignment,
                    format!("unknown broker {} in the replica assignment", b.0),
                )
            })
        })
        .collect()
}

pub async fn delete(
    broker: &Broker,
    session: &Session,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in request.topic_names {
        let outcome = if broker.allows_topic(session, Operation::Delete, &name.0) {
            broker
                .propose_metadata(MetadataCommand::DeleteTopic {
                    name: name.0.to_string(),
                })
                .await
        } else {
            Err(denied(&name.0, "DELETE"))
        };
        let mut result = DeletableTopicResult::default().with_name(Some(name));
        if let Err(e) = outcome {
            result = result.with_error_code(e.error.code());
            if version >= 5 {
                result = result.with_error_message(Some(str_bytes(&e.message)));
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Broker,
    session: &Session,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let assignment = topic
            .assignments
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(|a| node_ids(&a.broker_ids)).collect::<Result<Vec<_>, _>>())
            .transpose();
        let outcome = match assignment {
            _ if !broker.allows_topic(session, Operation::Alter, &name) => Err(denied(&name, "ALTER")),
            Err(e) => Err(e),
            Ok(assignment) => {
                let command = MetadataCommand::CreatePartitions {
                    name: name.clone(),
                    total: topic.count,
                    request: Some(uuid::Uuid::new_v4()),
                    assignment,
                };
                if request.validate_only {
                    broker.validate_metadata(command)
                } else {
                    let outcome = broker.propose_metadata(command).await;
                    if outcome.is_ok() {
                        broker.wait_for_topic_leaders(&name).await;
                    }
                    outcome
                }
            }
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(topic_name(&name));
        if let Err(e) = outcome {
            result = result
                .with_error_code(e.error.code())
                .with_error_message(Some(str_bytes(&e.message)));
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}
