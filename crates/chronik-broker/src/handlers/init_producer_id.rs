//! InitProducerId: ids for idempotent producers, and for transactional ones
//! through their transaction coordinator (`txn::coordinator`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::Broker;
use crate::security::session::Session;
use crate::txn::coordinator;
use chronik_state::acl::{Operation, ResourceType};

pub async fn handle(broker: &Broker, session: &Session, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = &request.transactional_id {
        let transactional_id = transactional_id.0.as_str();
        if !broker.allows(
            session,
            Operation::Write,
            ResourceType::TransactionalId,
            transactional_id,
        ) {
            return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        if transactional_id.is_empty() {
            return response.with_error_code(ResponseError::InvalidRequest.code());
        }
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let started =
            coordinator::init_producer_id(broker, transactional_id, request.transaction_timeout_ms, expected).await;
        return match started {
            Ok((id, epoch)) => response.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
            Err(error) => response.with_error_code(error.code()),
        };
    }
    // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    if !broker.allows_cluster(session, Operation::IdempotentWrite)
        && !broker.allows_some(session, Operation::Write, ResourceType::Topic)
    {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // KIP-360: a producer that knows its id asks for the next epoch, which
    // fences its earlier incarnation. An exhausted epoch takes a new id.
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return response.with_producer_id(ProducerId(id)).with_producer_epoch(epoch + 1);
    }
    match broker.new_producer_id().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => response.with_error_code(e.error.code()),
    }
}
