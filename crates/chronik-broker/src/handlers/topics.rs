//! CreateTopics, DeleteTopics and CreatePartitions: validated here, applied
//! through the metadata group.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse,
};

use super::{str_bytes, topic_name};
use crate::Broker;
use chronik_state::metadata::{self, MetadataCommand, MetadataError};

fn refuse(error: ResponseError, message: impl Into<String>) -> MetadataError {
    MetadataError {
        error,
        message: message.into(),
    }
}

pub async fn create(broker: &Broker, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = match creation(broker, &topic) {
            Ok(command) if request.validate_only => Ok(command),
            Ok(command) => broker.propose_metadata(command.clone()).await.map(|_| command),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(MetadataCommand::CreateTopic { id, partitions, .. }) => {
                if !request.validate_only {
                    broker.wait_for_topic_leaders(&name).await;
                }
                let replicas = broker
                    .state
                    .metadata()
                    .topic(&name)
                    .map_or(topic.replication_factor, |t| t.partitions[0].replicas.len() as i16);
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
    if !topic.assignments.is_empty() {
        return Err(refuse(
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignment is not supported; give num_partitions and replication_factor",
        ));
    }
    let partitions = if topic.num_partitions == -1 {
        broker.config.default_partitions
    } else {
        topic.num_partitions
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
    })
}

pub async fn delete(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in request.topic_names {
        let outcome = broker
            .propose_metadata(MetadataCommand::DeleteTopic {
                name: name.0.to_string(),
            })
            .await;
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

pub async fn create_partitions(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let outcome = if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err(refuse(
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported",
            ))
        } else if request.validate_only {
            validate_growth(broker, &name, topic.count)
        } else {
            let command = MetadataCommand::CreatePartitions {
                name: name.clone(),
                total: topic.count,
                request: Some(uuid::Uuid::new_v4()),
            };
            let outcome = broker.propose_metadata(command).await;
            if outcome.is_ok() {
                broker.wait_for_topic_leaders(&name).await;
            }
            outcome
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

fn validate_growth(broker: &Broker, name: &str, total: i32) -> Result<(), MetadataError> {
    let metadata = broker.state.metadata();
    let topic = metadata.topic(name).ok_or_else(|| {
        refuse(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    if total <= topic.partitions.len() as i32 || total > metadata::MAX_PARTITIONS {
        return Err(refuse(
            ResponseError::InvalidPartitions,
            format!(
                "topic '{name}' has {} partitions; cannot change to {total}",
                topic.partitions.len()
            ),
        ));
    }
    Ok(())
}
