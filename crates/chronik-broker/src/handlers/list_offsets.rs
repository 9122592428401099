//! ListOffsets: earliest, latest, max-timestamp, and first offset at or after
//! a timestamp. For read_committed consumers (isolation level 1) the latest
//! offset is the last stable offset, and nothing at or past it is found.

use chronik_log::PartitionLog;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::leader_epochs::serving_partition;
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// The first version whose answer carries a leader epoch.
const EPOCH_VERSION: i16 = 4;

const READ_COMMITTED: i8 = 1;

pub fn handle(broker: &Broker, session: &Session, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let committed_only = request.isolation_level == READ_COMMITTED;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let allowed = broker.allows_topic(session, Operation::Describe, name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if !allowed {
                        return response.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let wanted = (p.partition_index, p.current_leader_epoch, p.timestamp);
                    match lookup(broker, name, wanted, committed_only) {
                        Ok((timestamp, offset, epoch)) => response
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(if version >= EPOCH_VERSION { epoch } else { -1 }),
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

/// (timestamp, offset, leader epoch) for one partition; (-1, -1) when no
/// record qualifies. The epoch is the leader's for the log end, else unknown.
fn lookup(
    broker: &Broker,
    topic: &str,
    (index, current_leader_epoch, timestamp): (i32, i32, i64),
    committed_only: bool,
) -> Result<(i64, i64, i32), ResponseError> {
    let (partition, epoch) = serving_partition(broker, topic, index, current_leader_epoch)?;
    let log = partition.log();
    // The log may hold entries not yet committed past the high watermark.
    let end = if committed_only {
        partition.last_stable_offset()
    } else {
        partition.high_watermark()
    };
    if timestamp == LATEST {
        return Ok((-1, end, epoch));
    }
    match find(&log, timestamp)? {
        // A record found at or past the end a read_committed consumer may
        // read is not there for it. The earliest offset is the log start
        // even where the log is empty.
        (_, offset) if timestamp != EARLIEST && offset >= end => Ok((-1, -1, -1)),
        (timestamp, offset) => Ok((timestamp, offset, -1)),
    }
}

fn find(log: &PartitionLog, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    match timestamp {
        EARLIEST => Ok((-1, log.log_start_offset())),
        MAX_TIMESTAMP => match log.max_timestamp() {
            // The log knows the batch; the record is found inside it.
            Some((max, batch_offset)) => {
                let from = batch_offset.max(log.log_start_offset());
                first_record(log, from, |r| r.timestamp == max)
            }
            None => Ok((-1, -1)),
        },
        target if target >= 0 => {
            let found = log
                .batch_at_timestamp(target)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            match found {
                Some((batch_offset, _)) => {
                    let from = batch_offset.max(log.log_start_offset());
                    first_record(log, from, |r| r.timestamp >= target)
                }
                None => Ok((-1, -1)),
            }
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// (timestamp, offset) of the first record at or after offset `from` that
/// matches, decoding (and decompressing) batches only for this lookup.
fn first_record(log: &PartitionLog, from: i64, matches: impl Fn(&Record) -> bool) -> Result<(i64, i64), ResponseError> {
    let mut offset = from;
    while offset < log.next_offset() {
        let mut batches = log.read(offset, 1).map_err(|_| ResponseError::KafkaStorageError)?;
        let sets = RecordBatchDecoder::decode_all(&mut batches).map_err(|_| ResponseError::CorruptMessage)?;
        let records = sets.iter().flat_map(|set| &set.records);
        let mut last = None;
        for record in records {
            if record.offset >= from && matches(record) {
                return Ok((record.timestamp, record.offset));
            }
            last = Some(record.offset);
        }
        match last {
            Some(last) if last >= offset => offset = last + 1,
            _ => break,
        }
    }
    Ok((-1, -1))
}
