//! InitProducerId: ids for idempotent producers. Transactions are not
//! implemented, so a transactional id is refused.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::{Operation, ResourceType};

pub async fn handle(broker: &Broker, session: &Session, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
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
