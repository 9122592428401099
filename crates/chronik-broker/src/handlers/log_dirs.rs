//! DescribeLogDirs: the one data directory of this node, its volume's size
//! and free space, and the size of each partition replica kept there.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::Operation;

pub fn handle(broker: &Broker, session: &Session, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    if !broker.allows_cluster(session, Operation::Describe) {
        return DescribeLogDirsResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut partitions = broker.state.all_partitions();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    for partition in partitions {
        let listed = match &wanted {
            None => true,
            Some(wanted) => wanted
                .get(&partition.topic)
                .is_some_and(|p| p.contains(&partition.index)),
        };
        if !listed {
            continue;
        }
        let size = partition.log().size_bytes();
        // A follower's lag is known only to the leader, in Raft entries; 0
        // as Kafka reports for replicas in its current directory.
        topics.entry(partition.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                .with_offset_lag(0),
        );
    }
    let disk = &broker.disk;
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&broker.config.data_dir.display().to_string()))
        .with_total_bytes(i64::try_from(disk.total_bytes()).unwrap_or(i64::MAX))
        .with_usable_bytes(i64::try_from(disk.free_bytes()).unwrap_or(i64::MAX))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    DescribeLogDirsResponse::default().with_results(vec![result])
}
