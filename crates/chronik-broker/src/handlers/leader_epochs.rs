//! Leader epochs (KIP-320): the check of a client's current leader epoch
//! that Fetch, ListOffsets and OffsetForLeaderEpoch make, and
//! OffsetForLeaderEpoch, with which a consumer learns where an epoch ended
//! and so whether the log it read was truncated.
//!
//! A partition's leader epoch is the Raft term of its leader, and each batch
//! carries the term of the entry that wrote it.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::leader_epochs::{UNDEFINED_EPOCH, UNDEFINED_OFFSET};
use chronik_state::partition::Partition;

/// What a client sends when it does not know the epoch.
const NO_EPOCH: i32 = -1;

/// The partition and this node's epoch of it, if this node leads it and may
/// serve it, and the client's `current_leader_epoch` is that epoch (or
/// unknown to it). An older epoch is fenced: the client missed a change of
/// leader. A newer one is unknown here: this node has yet to learn of it.
pub fn serving_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
) -> Result<(Arc<Partition>, i32), ResponseError> {
    let partition = broker.state.local_partition(topic, index)?;
    let epoch = broker
        .serving_epoch(partition.group)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    match current_leader_epoch {
        NO_EPOCH => Ok((partition, epoch)),
        claimed if claimed < epoch => Err(ResponseError::FencedLeaderEpoch),
        claimed if claimed > epoch => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok((partition, epoch)),
    }
}

pub fn offset_for_leader_epoch(
    broker: &Broker,
    session: &Session,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let allowed = broker.allows_topic(session, Operation::Describe, name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED_EPOCH)
                        .with_end_offset(UNDEFINED_OFFSET);
                    if !allowed {
                        return answer.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match serving_partition(broker, name, p.partition, p.current_leader_epoch) {
                        Ok((partition, current)) => {
                            let log_end = partition.high_watermark();
                            let (epoch, end) =
                                partition
                                    .leader_epochs()
                                    .end_offset_for(p.leader_epoch, current, log_end);
                            answer.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        Err(error) => answer.with_error_code(error.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
