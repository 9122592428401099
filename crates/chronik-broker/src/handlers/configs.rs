//! AlterConfigs and IncrementalAlterConfigs for topics; broker settings are
//! static (chronik-server flags) and only described.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::RESOURCE_TOPIC;
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::metadata::{MetadataCommand, MetadataError, validate_configs};
use chronik_state::topic_config::{self, Kind};

// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies (or, with `validate_only`, checks) a change to one resource.
async fn alter_resource(
    broker: &Broker,
    session: &Session,
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
    if !broker.allows_topic(session, Operation::AlterConfigs, name) {
        return Err(MetadataError {
            error: ResponseError::TopicAuthorizationFailed,
            message: format!("not authorized to ALTER_CONFIGS topic '{name}'"),
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
        return broker.validate_metadata(command);
    }
    broker.propose_metadata(command).await
}

fn error_parts(outcome: &Result<(), MetadataError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.error.code(), Some(StrBytes::from_string(e.message.clone()))),
    }
}

pub async fn alter(broker: &Broker, session: &Session, request: AlterConfigsRequest) -> AlterConfigsResponse {
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
        let outcome = alter_resource(
            broker,
            session,
            resource.resource_type,
            &name,
            request.validate_only,
            command,
        )
        .await;
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
    session: &Session,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let current = broker
            .state
            .metadata()
            .topic(&name)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let command = incremental_changes(&resource.configs, &current).and_then(|changes| {
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
        let outcome = alter_resource(
            broker,
            session,
            resource.resource_type,
            &name,
            request.validate_only,
            command,
        )
        .await;
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

/// The requested operations as new values (`None` deletes the key). APPEND
/// and SUBTRACT, which only list-valued configs take, apply to the value in
/// force now.
fn incremental_changes(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    current: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Option<String>>, MetadataError> {
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for c in configs {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let refused = |message: String| MetadataError {
            error: ResponseError::InvalidConfig,
            message,
        };
        let change = match c.config_operation {
            OP_SET => Some(value),
            OP_DELETE => None,
            op @ (OP_APPEND | OP_SUBTRACT) => {
                if topic_config::definition(&key).is_none_or(|d| d.kind != Kind::List) {
                    return Err(refused(format!(
                        "APPEND and SUBTRACT apply to list-valued configs only, not to '{key}'"
                    )));
                }
                let before = match changes.get(&key) {
                    Some(pending) => pending.clone().unwrap_or_default(),
                    None => topic_config::effective(current, &key).to_string(),
                };
                let mut items: Vec<String> = topic_config::list(&before).into_iter().map(String::from).collect();
                for item in topic_config::list(&value) {
                    let present = items.iter().any(|i| i == item);
                    if op == OP_APPEND && !present {
                        items.push(item.to_string());
                    } else if op == OP_SUBTRACT {
                        items.retain(|i| i != item);
                    }
                }
                Some(items.join(","))
            }
            op => return Err(refused(format!("unknown operation {op} on '{key}'"))),
        };
        changes.insert(key, change);
    }
    Ok(changes)
}
