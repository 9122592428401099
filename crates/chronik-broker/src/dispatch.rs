//! Turns one request frame into one response: checks the API and version,
//! decodes with `kafka-protocol`, routes to a handler, and encodes the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::Broker;
use crate::handlers;

/// The encoded response, or `None` when the request expects none (acks=0).
pub type Response = Option<Bytes>;

/// The part of handling a request that may wait (for Raft, for a long poll).
pub type Deferred = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Every API Chronik implements, with the versions it implements.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

fn done(response: Response) -> Deferred {
    Box::pin(std::future::ready(response))
}

/// What a frame turned out to be.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built and taken apart once per request, never stored
pub enum Decoded {
    /// A request Chronik implements, ready to handle.
    Request(RequestHeader, RequestKind),
    /// A frame answered without a handler: an unsupported API or version,
    /// or a malformed request. `None` when there is no one to answer.
    Rejected(Response),
}

/// Checks the API and version of a frame and decodes it. Never panics,
/// whatever the bytes: this is the boundary the fuzz target exercises.
pub fn decode(mut frame: Bytes) -> Decoded {
    if frame.len() < 8 {
        tracing::debug!(len = frame.len(), "request frame shorter than a request header");
        return Decoded::Rejected(None);
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key).ok();
    let key = match (key, key.and_then(supported_versions)) {
        (Some(key), Some((min, max))) if (min..=max).contains(&version) => key,
        (Some(ApiKey::ApiVersions), _) => {
            // Kafka's rule: answer an unknown ApiVersions version in v0 form so
            // the client learns which versions to use.
            let body = ResponseKind::ApiVersions(handlers::api_versions::unsupported());
            return Decoded::Rejected(encode(correlation_id, ApiKey::ApiVersions, 0, body));
        }
        _ => {
            tracing::debug!(api_key, version, "unsupported API or version");
            return Decoded::Rejected(error_only(correlation_id, ResponseError::UnsupportedVersion));
        }
    };
    let header = match RequestHeader::decode(&mut frame, key.request_header_version(version)) {
        Ok(header) => header,
        Err(e) => return Decoded::Rejected(malformed(correlation_id, key, version, e)),
    };
    let request = match RequestKind::decode(key, &mut frame, version) {
        Ok(request) => request,
        Err(e) => return Decoded::Rejected(malformed(correlation_id, key, version, e)),
    };
    if frame.has_remaining() {
        tracing::debug!(
            ?key,
            version,
            trailing = frame.remaining(),
            "request has trailing bytes"
        );
    }
    Decoded::Request(header, request)
}

/// Decodes and routes one frame. Work that must happen in request order (a
/// produce request queueing its proposals) is done before this returns; the
/// rest is in the returned future.
pub async fn dispatch(broker: &Arc<Broker>, frame: Bytes) -> Deferred {
    let (header, request) = match decode(frame) {
        Decoded::Request(header, request) => (header, request),
        Decoded::Rejected(response) => return done(response),
    };
    if let RequestKind::Produce(request) = request {
        return handlers::produce::submit(broker.clone(), header, request).await;
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
            ResponseKind::DescribeConfigs(handlers::configs::describe(broker, r, version))
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
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(handlers::groups::sync(broker, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(handlers::groups::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(handlers::groups::leave(broker, r, version).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(handlers::groups::list(broker, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(handlers::groups::describe(broker, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(handlers::groups::delete(broker, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(handlers::offsets::commit(broker, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(handlers::offsets::fetch(broker, r, version)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(handlers::offsets::delete(broker, r).await),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(broker, r).await)
        }
        other => unreachable!("dispatch admitted an unsupported request: {other:?}"),
    }
}

/// Encodes a response with the header version its API and version call for.
pub fn encode(correlation_id: i32, key: ApiKey, version: i16, body: ResponseKind) -> Response {
    let mut buf = BytesMut::with_capacity(64);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // ApiVersions answers with header v0 whatever the version, so that a client
    // can parse it before it knows which versions the broker speaks.
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let encoded = header
        .encode(&mut buf, header_version)
        .and_then(|_| body.encode(&mut buf, version));
    match encoded {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::error!(?key, version, "cannot encode response: {e}");
            error_only(correlation_id, ResponseError::UnknownServerError)
        }
    }
}

/// A response holding only a correlation id and an error code: what a broker
/// can say when it cannot build the API's own response shape.
pub fn error_only(correlation_id: i32, error: ResponseError) -> Response {
    let mut buf = BytesMut::with_capacity(6);
    buf.put_i32(correlation_id);
    buf.put_i16(error.code());
    Some(buf.freeze())
}

fn malformed(correlation_id: i32, key: ApiKey, version: i16, error: anyhow::Error) -> Response {
    tracing::debug!(?key, version, "malformed request: {error}");
    error_only(correlation_id, ResponseError::InvalidRequest)
}

/// The answer to a frame larger than the configured maximum. `head` holds
/// what could be read of its header.
pub fn oversized(head: &[u8], size: i32, limit: usize) -> Response {
    tracing::warn!(size, limit, "refusing an oversized request");
    let correlation_id = (head.len() >= 8).then(|| i32::from_be_bytes([head[4], head[5], head[6], head[7]]))?;
    error_only(correlation_id, ResponseError::MessageTooLarge)
}
