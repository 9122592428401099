//! DeleteRecords: moves a partition's log start offset, through its Raft group
//! so that every replica moves it at the same point of its log.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::Broker;
use crate::broker::propose_error_code;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::command::PartitionCommand;
use chronik_state::replicated::Applied;

/// Offset -1 in a request means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(broker: &Broker, session: &Session, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let allowed = broker.allows_topic(session, Operation::Delete, &topic.name.0);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let outcome = if allowed {
                delete_before(broker, topic.name.0.as_str(), p.partition_index, p.offset, timeout).await
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            };
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(error) => result.with_error_code(error.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete_before(
    broker: &Broker,
    topic: &str,
    index: i32,
    offset: i64,
    timeout: Duration,
) -> Result<i64, ResponseError> {
    let partition = broker.state.local_partition(topic, index)?;
    broker.awaken([partition.group]).await;
    if !broker.is_leader(partition.group) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let high_watermark = partition.high_watermark();
    let offset = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if offset < 0 || offset > high_watermark {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let data = PartitionCommand::DeleteRecords { offset }.encode();
    let outcome = broker.submit(partition.group, data).await;
    match tokio::time::timeout(timeout, outcome).await {
        Err(_) => Err(ResponseError::RequestTimedOut),
        Ok(Err(_)) => Err(ResponseError::NotLeaderOrFollower),
        Ok(Ok(Err(e))) => Err(propose_error_code(&e)),
        Ok(Ok(Ok(Applied::DeleteRecords(result)))) => result,
        Ok(Ok(Ok(other))) => unreachable!("a delete-records entry applied as {other:?}"),
    }
}
