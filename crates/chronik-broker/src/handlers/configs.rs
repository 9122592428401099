//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics;
//! broker settings are static and only described.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::Broker;
use chronik_state::metadata::{MetadataCommand, MetadataError, validate_configs};
use chronik_state::topic_config::{self, DEFAULTS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

// Config types, as Kafka numbers them (DescribeConfigs v3+).
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_BOOLEAN: i8 = 1;

// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn config_type(key: &str) -> i8 {
    match key {
        topic_config::RETENTION_MS | topic_config::RETENTION_BYTES => TYPE_LONG,
        topic_config::CLEANUP_POLICY => TYPE_LIST,
        _ => TYPE_INT,
    }
}

fn entry(
    name: &str,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= 3 {
        result.with_config_type(config_type)
    } else {
        result
    }
}

pub fn describe(broker: &Broker, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let metadata = broker.state.metadata();
                    let Some(topic) = metadata.topic(resource.resource_name.as_str()) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes("topic does not exist")));
                    };
                    let configs = DEFAULTS
                        .iter()
                        .filter(|(key, _)| wanted(key))
                        .map(|(key, _)| {
                            let source = if topic.configs.contains_key(*key) {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            let value = topic_config::effective(&topic.configs, key).to_string();
                            entry(key, value, source, config_type(key), false, version)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let config = &broker.config;
                    let settings = [
                        (
                            "auto.create.topics.enable",
                            config.auto_create_topics.to_string(),
                            TYPE_BOOLEAN,
                        ),
                        ("num.partitions", config.default_partitions.to_string(), TYPE_INT),
                        (
                            "socket.request.max.bytes",
                            config.max_request_bytes.to_string(),
                            TYPE_INT,
                        ),
                    ];
                    let configs = settings
                        .into_iter()
                        .filter(|(key, _, _)| wanted(key))
                        .map(|(key, value, kind)| entry(key, value, SOURCE_STATIC_BROKER, kind, true, version))
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "config resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies (or, with `validate_only`, checks) a change to one resource.
async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    command: Result<MetadataCommand, MetadataError>,
) -> Result<(), MetadataError> {
    if resource_type != RESOURCE_TOPIC {
        return Err(MetadataError {
            error: ResponseError::InvalidRequest,
            message: "only topic configs can be altered; broker settings are chronik-server flags".into(),
        });
    }
    if broker.state.metadata().topic(name).is_none() {
        return Err(MetadataError {
            error: ResponseError::UnknownTopicOrPartition,
            message: format!("topic '{name}' does not exist"),
        });
    }
    let command = command?;
    if validate_only {
        return Ok(());
    }
    broker.propose_metadata(command).await
}

fn error_parts(outcome: &Result<(), MetadataError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.error.code(), Some(StrBytes::from_string(e.message.clone()))),
    }
}

pub async fn alter(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let command = validate_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map(|_| {
            MetadataCommand::ReplaceConfigs {
                name: name.clone(),
                configs,
            }
        });
        let outcome = alter_resource(broker, resource.resource_type, &name, request.validate_only, command).await;
        let (code, message) = error_parts(&outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let command = incremental_changes(&resource.configs).and_then(|changes| {
            validate_configs(
                changes
                    .iter()
                    .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v))),
            )?;
            Ok(MetadataCommand::AlterConfigs {
                name: name.clone(),
                changes,
            })
        });
        let outcome = alter_resource(broker, resource.resource_type, &name, request.validate_only, command).await;
        let (code, message) = error_parts(&outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn incremental_changes(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, Option<String>>, MetadataError> {
    configs
        .iter()
        .map(|c| match c.config_operation {
            OP_SET => Ok((
                c.name.to_string(),
                Some(c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()),
            )),
            OP_DELETE => Ok((c.name.to_string(), None)),
            op => Err(MetadataError {
                error: ResponseError::InvalidConfig,
                message: format!(
                    "operation {op} on '{}' is not supported; only SET and DELETE are",
                    c.name.as_str()
                ),
            }),
        })
        .collect()
}
