//! DescribeProducers: the idempotent producers a partition's leader
//! remembers, with their epochs and last sequence numbers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::leader_epochs::serving_partition;
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;

pub fn handle(broker: &Broker, session: &Session, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let allowed = broker.allows_topic(session, Operation::Read, name);
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return answer.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match serving_partition(broker, name, index, -1) {
                        Ok((partition, _)) => answer.with_active_producers(
                            partition
                                .producers()
                                .summaries()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(p.current_txn_start_offset.unwrap_or(-1))
                                })
                                .collect(),
                        ),
                        Err(error) => answer.with_error_code(error.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
