//! DescribeTopicPartitions (KIP-966, Kafka 3.7+ admin clients): topics and
//! their partitions' leaders, epochs, replicas and ISR, paged with a cursor
//! so that a topic with many partitions needs no single huge response.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};

use super::metadata::leadership;
use super::topic_name;
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;

/// Partitions one response carries at most, whatever the client asks for
/// (Kafka's max.request.partition.size.limit).
const MAX_PARTITIONS: usize = 2000;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut names: Vec<String> = if request.topics.is_empty() {
        // Every topic: those the principal may not describe are left out.
        let all: Vec<String> = broker.state.metadata().topics.keys().cloned().collect();
        all.into_iter()
            .filter(|name| broker.allows_topic(session, Operation::Describe, name))
            .collect()
    } else {
        request.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort_unstable();
    names.dedup();
    let (start_topic, mut start_partition) = match &request.cursor {
        Some(cursor) => (cursor.topic_name.0.to_string(), cursor.partition_index.max(0)),
        None => (String::new(), 0),
    };
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(MAX_PARTITIONS)
        .clamp(1, MAX_PARTITIONS);
    let mut room = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|name| *name >= start_topic) {
        let from = if name == start_topic {
            std::mem::take(&mut start_partition)
        } else {
            0
        };
        let topic = DescribeTopicPartitionsResponseTopic::default()
            .with_name(Some(topic_name(&name)))
            .with_topic_authorized_operations(i32::MIN);
        if !broker.allows_topic(session, Operation::Describe, &name) {
            topics.push(topic.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(info) = broker.state.metadata().topic(&name).cloned() else {
            topics.push(topic.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
            continue;
        };
        if room == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(0),
            );
            break;
        }
        let mut partitions = Vec::new();
        for (index, p) in info.partitions.iter().enumerate().skip(from as usize) {
            if room == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(index as i32),
                );
                break;
            }
            room -= 1;
            let (leader, isr) = leadership(broker, p.group);
            let ids = |nodes: &[u64]| nodes.iter().map(|id| BrokerId(*id as i32)).collect::<Vec<_>>();
            let offline: Vec<u64> = p.replicas.iter().copied().filter(|id| !broker.is_live(*id)).collect();
            let mut partition = DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader.map_or(-1, |(id, _)| id as i32)))
                .with_leader_epoch(leader.map_or(-1, |(_, epoch)| epoch))
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&isr))
                .with_offline_replicas(ids(&offline));
            if leader.is_none() {
                partition = partition.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            partitions.push(partition);
        }
        topics.push(
            topic
                .with_topic_id(info.id)
                .with_is_internal(chronik_state::is_internal_topic(&name))
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
