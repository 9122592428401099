//! FindCoordinator: the broker leading a group's `__consumer_offsets`
//! partition, or a transactional id's `__transaction_state` partition (which
//! the first such request creates). Answers the single-key form (v0-v3) and
//! the batched one (v4+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::Broker;
use crate::coordination::coordinator_node;
use crate::security::session::Session;
use chronik_state::acl::{Operation, ResourceType};
use chronik_state::{consumer_offsets, transaction_state};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in &request.coordinator_keys {
            let found = locate(broker, session, request.key_type, key.as_str()).await;
            let coordinator = Coordinator::default().with_key(key.clone());
            coordinators.push(match found {
                Ok((node, host, port)) => coordinator.with_node_id(node).with_host(host).with_port(port),
                Err(error) => coordinator
                    .with_node_id(BrokerId(-1))
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message(error)))),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match locate(broker, session, request.key_type, request.key.as_str()).await {
        Ok((node, host, port)) => response.with_node_id(node).with_host(host).with_port(port),
        Err(error) => {
            let response = response.with_node_id(BrokerId(-1)).with_error_code(error.code());
            if version >= 1 {
                response.with_error_message(Some(str_bytes(&message(error))))
            } else {
                response
            }
        }
    }
}

fn message(error: ResponseError) -> String {
    match error {
        ResponseError::CoordinatorNotAvailable => "the coordinator's partition has no leader yet".into(),
        ResponseError::InvalidRequest => "the key type must be 0 (group) or 1 (transaction)".into(),
        other => format!("{other:?}"),
    }
}

async fn locate(
    broker: &Broker,
    session: &Session,
    key_type: i8,
    key: &str,
) -> Result<(BrokerId, StrBytes, i32), ResponseError> {
    let topic = match key_type {
        KEY_TYPE_GROUP => {
            if !broker.allows_group(session, Operation::Describe, key) {
                return Err(ResponseError::GroupAuthorizationFailed);
            }
            consumer_offsets::TOPIC
        }
        KEY_TYPE_TRANSACTION => {
            if !broker.allows(session, Operation::Describe, ResourceType::TransactionalId, key) {
                return Err(ResponseError::TransactionalIdAuthorizationFailed);
            }
            broker.ensure_transaction_topic().await.map_err(|e| {
                tracing::warn!("cannot create {}: {}", transaction_state::TOPIC, e.message);
                ResponseError::CoordinatorNotAvailable
            })?;
            transaction_state::TOPIC
        }
        _ => return Err(ResponseError::InvalidRequest),
    };
    let node = coordinator_node(broker, topic, key)?;
    let metadata = broker.state.metadata();
    let info = metadata
        .brokers
        .get(&node)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let (host, port) = info
        .address_on(&session.listener)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((BrokerId(node as i32), str_bytes(host), i32::from(port)))
}
