//! Turns one request frame into one response: decodes it (`codec`), routes
//! it to the handler of its API, and encodes the answer.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::Broker;
use crate::codec::{Decoded, Deferred, Response, decode, encode};
use crate::handlers;

fn done(response: Response) -> Deferred {
    Box::pin(std::future::ready(response))
}

/// Decodes and routes one frame. Work that must happen in request order (a
/// produce or offset commit queueing its proposals) is done before this
/// returns; the rest is in the returned future.
pub async fn dispatch(broker: &Arc<Broker>, frame: Bytes) -> Deferred {
    let (header, request) = match decode(frame) {
        Decoded::Request(header, request) => (header, request),
        Decoded::Rejected(response) => return done(response),
    };
    match request {
        RequestKind::Produce(request) => return handlers::produce::submit(broker.clone(), header, request).await,
        RequestKind::OffsetCommit(request) => {
            return handlers::offsets::submit_commit(broker.clone(), header, request).await;
        }
        _ => {}
    }
    let broker = broker.clone();
    Box::pin(async move {
        let response = handle(&broker, &header, request).await;
        let key = ApiKey::try_from(header.request_api_key).expect("decode admitted only known APIs");
        encode(header.correlation_id, key, header.request_api_version, response)
    })
}

async fn handle(broker: &Broker, header: &RequestHeader, request: RequestKind) -> ResponseKind {
    let version = header.request_api_version;
    match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(handlers::metadata::handle(broker, r, version).await),
        RequestKind::Fetch(r) => ResponseKind::Fetch(handlers::fetch::handle(broker, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(handlers::list_offsets::handle(broker, r)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(handlers::topics::create(broker, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(handlers::topics::delete(broker, r, version).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::topics::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::describe(broker, r, version))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(handlers::configs::alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(handlers::configs::incremental_alter(broker, r).await)
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(handlers::delete_records::handle(broker, r).await),
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(handlers::describe_cluster::handle(broker)),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(broker, r, version))
        }
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            ResponseKind::JoinGroup(handlers::groups::join(broker, r, client_id, version).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            ResponseKind::ConsumerGroupHeartbeat(handlers::consumer_groups::heartbeat(broker, r, client_id).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(handlers::consumer_groups::describe(broker, r))
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(handlers::groups::sync(broker, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(handlers::groups::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(handlers::groups::leave(broker, r, version).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(handlers::groups::list(broker, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(handlers::groups::describe(broker, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(handlers::groups::delete(broker, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(handlers::offsets::fetch(broker, r, version)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(handlers::offsets::delete(broker, r).await),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(broker, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(handlers::reassignments::alter(broker, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(handlers::reassignments::list(broker, r))
        }
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(handlers::reassignments::elect(broker, r).await),
        other => unreachable!("dispatch admitted an unsupported request: {other:?}"),
    }
}
