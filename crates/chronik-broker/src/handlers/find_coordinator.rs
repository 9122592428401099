//! FindCoordinator: the broker leading a group's `__consumer_offsets`
//! partition. Answers the single-key form (v0-v3) and the batched one (v4+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::Broker;
use crate::groups::coordinator::coordinator_of;
use crate::security::session::Session;
use chronik_state::acl::Operation;

const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = locate(broker, session, request.key_type, key.as_str());
                let coordinator = Coordinator::default().with_key(key.clone());
                match found {
                    Ok((node, host, port)) => coordinator.with_node_id(node).with_host(host).with_port(port),
                    Err(error) => coordinator
                        .with_node_id(BrokerId(-1))
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(&message(error)))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match locate(broker, session, request.key_type, request.key.as_str()) {
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
        ResponseError::CoordinatorNotAvailable => "the group's offsets partition has no leader yet".into(),
        ResponseError::InvalidRequest => {
            "only consumer-group coordinators exist; transactions are not supported".into()
        }
        other => format!("{other:?}"),
    }
}

fn locate(
    broker: &Broker,
    session: &Session,
    key_type: i8,
    key: &str,
) -> Result<(BrokerId, StrBytes, i32), ResponseError> {
    if key_type != KEY_TYPE_GROUP {
        return Err(ResponseError::InvalidRequest);
    }
    if !broker.allows_group(session, Operation::Describe, key) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let node = coordinator_of(broker, key)?;
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
