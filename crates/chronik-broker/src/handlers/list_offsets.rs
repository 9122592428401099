//! ListOffsets: earliest, latest, max-timestamp, and first offset at or after
//! a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(broker: &Broker, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    match lookup(broker, name, p.partition_index, p.timestamp) {
                        Ok((timestamp, offset)) => response.with_timestamp(timestamp).with_offset(offset),
                        Err(error) => response.with_error_code(error.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) for one partition; (-1, -1) when no record qualifies.
fn lookup(broker: &Broker, topic: &str, index: i32, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    let partition = broker
        .state
        .find_partition(topic, index)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if !broker.is_leader(partition.group) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let log = partition.log();
    match timestamp {
        LATEST => Ok((-1, log.next_offset())),
        EARLIEST => Ok((-1, log.log_start_offset())),
        MAX_TIMESTAMP => Ok(log.max_timestamp().unwrap_or((-1, -1))),
        target if target >= 0 => {
            let found = log
                .batch_at_timestamp(target)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            let Some((_, batch)) = found else {
                return Ok((-1, -1));
            };
            first_record_at(batch, target)
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// The first record of `batch` stamped at or after `target`. The batch is
/// decoded (and decompressed) only for this lookup.
fn first_record_at(mut batch: bytes::Bytes, target: i64) -> Result<(i64, i64), ResponseError> {
    let records = RecordBatchDecoder::decode(&mut batch).map_err(|_| ResponseError::CorruptMessage)?;
    Ok(records
        .records
        .iter()
        .find(|r| r.timestamp >= target)
        .map_or((-1, -1), |r| (r.timestamp, r.offset)))
}
