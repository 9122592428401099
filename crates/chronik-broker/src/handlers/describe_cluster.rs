//! DescribeCluster: the cluster id and the live member brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterResponse};

use super::str_bytes;
use crate::Broker;

pub fn handle(broker: &Broker) -> DescribeClusterResponse {
    let metadata = broker.state.metadata();
    let brokers = metadata
        .brokers
        .iter()
        // Members only, and only those that answer: clients would keep
        // trying to connect to a removed or dead node.
        .filter(|(id, _)| (metadata.nodes.is_empty() || metadata.nodes.contains_key(id)) && broker.is_live(**id))
        .map(|(id, info)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(*id as i32))
                .with_host(str_bytes(&info.host))
                .with_port(info.port as i32)
        })
        .collect();
    let controller = broker
        .leader_of(chronik_raft::METADATA_GROUP)
        .map_or(-1, |id| id as i32);
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&metadata.cluster_id))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
}
