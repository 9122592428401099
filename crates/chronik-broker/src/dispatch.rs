//! Turns one request frame into one response: decodes it (`codec`), routes
//! it to the handler of its API, and encodes the answer.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};

use crate::Broker;
use crate::codec::{Decoded, Deferred, Response, decode, encode, encode_fetch};
use crate::handlers;
use crate::ops::errors;
use crate::security::session::Session;

fn done(response: Response) -> Deferred {
    Box::pin(std::future::ready(response))
}

/// Decodes and routes one frame. Work that must happen in request order (a
/// produce or offset commit queueing its proposals) is done before this
/// returns; the rest is in the returned future.
pub async fn dispatch(broker: &Arc<Broker>, session: &Arc<Session>, frame: Bytes) -> Deferred {
    let (header, request) = match decode(frame) {
        Decoded::Request(header, request) => (header, request),
        Decoded::Rejected(response) => return done(response),
    };
    match request {
        RequestKind::Produce(request) => {
            return handlers::produce::submit(broker.clone(), session, header, request).await;
        }
        RequestKind::OffsetCommit(request) => {
            return handlers::offsets::submit_commit(broker.clone(), session, header, request).await;
        }
        _ => {}
    }
    let broker = broker.clone();
    let session = session.clone();
    Box::pin(async move {
        let key = ApiKey::try_from(header.request_api_key).expect("decode admitted only known APIs");
        let version = header.request_api_version;
        if let RequestKind::Fetch(request) = request {
            let (response, records) = handlers::fetch::handle(&broker, &session, request).await;
            if errors::fetch_failed(&response) {
                broker.telemetry.requests.failed(key);
            }
            return encode_fetch(header.correlation_id, version, response, records);
        }
        let response = handle(&broker, &session, &header, request).await;
        if errors::failed(&response) {
            broker.telemetry.requests.failed(key);
        }
        encode(header.correlation_id, key, version, response)
    })
}

async fn handle(broker: &Broker, session: &Session, header: &RequestHeader, request: RequestKind) -> ResponseKind {
    let version = header.request_api_version;
    match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle(broker)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(handlers::metadata::handle(broker, session, r, version).await)
        }
        RequestKind::ListOffsets(r) => {
            let wanted: Vec<(&str, i32)> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.as_str(), p.partition_index)))
                .collect();
            broker.awaken_partitions(&wanted).await;
            ResponseKind::ListOffsets(handlers::list_offsets::handle(broker, session, r, version))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            let wanted: Vec<(&str, i32)> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.as_str(), p.partition)))
                .collect();
            broker.awaken_partitions(&wanted).await;
            ResponseKind::OffsetForLeaderEpoch(handlers::leader_epochs::offset_for_leader_epoch(broker, session, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(handlers::log_dirs::handle(broker, session, r))
        }
        RequestKind::DescribeProducers(r) => {
            let wanted: Vec<(&str, i32)> = r
                .topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.0.as_str(), *p)))
                .collect();
            broker.awaken_partitions(&wanted).await;
            ResponseKind::DescribeProducers(handlers::producers::handle(broker, session, r))
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(handlers::topic_partitions::handle(broker, session, r))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(handlers::topics::create(broker, session, r).await),
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(handlers::topics::delete(broker, session, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::topics::create_partitions(broker, session, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::describe(broker, session, r, version))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(handlers::configs::alter(broker, session, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(handlers::configs::incremental_alter(broker, session, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(handlers::delete_records::handle(broker, session, r).await)
        }
        RequestKind::DescribeCluster(_) => {
            ResponseKind::DescribeCluster(handlers::describe_cluster::handle(broker, session))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(broker, session, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            ResponseKind::JoinGroup(handlers::groups::join(broker, session, r, client_id, version).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            ResponseKind::ConsumerGroupHeartbeat(
                handlers::consumer_groups::heartbeat(broker, session, r, client_id).await,
            )
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(handlers::consumer_groups::describe(broker, session, r))
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(handlers::groups::sync(broker, session, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(handlers::groups::heartbeat(broker, session, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(handlers::groups::leave(broker, session, r, version).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(handlers::groups::list(broker, session, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(handlers::groups::describe(broker, session, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(handlers::groups::delete(broker, session, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(handlers::offsets::fetch(broker, session, r, version)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(handlers::offsets::delete(broker, session, r).await),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(handlers::transactions::add_partitions(broker, session, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(handlers::transactions::add_offsets(broker, session, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(handlers::transactions::end(broker, session, r).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(handlers::transactions::commit_offsets(broker, session, r).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(handlers::transactions::write_markers(broker, session, r).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(handlers::transactions::describe(broker, session, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(handlers::transactions::list(broker, session, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(broker, session, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(handlers::reassignments::alter(broker, session, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(handlers::reassignments::list(broker, session, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(handlers::reassignments::elect(broker, session, r).await)
        }
        RequestKind::UpdateFeatures(r) => {
            ResponseKind::UpdateFeatures(handlers::features::update(broker, session, r, version).await)
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(handlers::acls::create(broker, session, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(handlers::acls::describe(broker, session, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(handlers::acls::delete(broker, session, r).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(handlers::scram_users::describe(broker, session, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(handlers::scram_users::alter(broker, session, r).await)
        }
        // On a listener without SASL; SASL listeners answer these before dispatch.
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default().with_error_code(ResponseError::IllegalSaslState.code()),
        ),
        other => unreachable!("dispatch admitted an unsupported request: {other:?}"),
    }
}
