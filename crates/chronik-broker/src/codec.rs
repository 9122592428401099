//! Request frames in, response frames out: checks a frame's API and
//! version, decodes it with `kafka-protocol`, and encodes answers with the
//! header version their API and version call for.

use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::apis::supported_versions;
use crate::frame::Frame;
use crate::handlers::api_versions;
use crate::splice::{self, PartitionRecords};

/// The encoded response, or `None` when the request expects none (acks=0).
pub type Response = Option<Frame>;

/// The part of handling a request that may wait (for Raft, for a long poll).
pub type Deferred = Pin<Box<dyn Future<Output = Response> + Send>>;

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
            let body = ResponseKind::ApiVersions(api_versions::unsupported());
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

/// Encodes a response with the header version its API and version call for.
pub fn encode(correlation_id: i32, key: ApiKey, version: i16, body: ResponseKind) -> Response {
    let mut buf = BytesMut::with_capacity(64);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, header_version(key, version))
        .and_then(|_| body.encode(&mut buf, version));
    match encoded {
        Ok(()) => Some(buf.freeze().into()),
        Err(e) => {
            tracing::error!(?key, version, "cannot encode response: {e}");
            error_only(correlation_id, ResponseError::UnknownServerError)
        }
    }
}

/// Encodes a Fetch response, with `records` left in their segment files
/// for the connection to send from there (see `splice`).
pub fn encode_fetch(
    correlation_id: i32,
    version: i16,
    response: FetchResponse,
    records: Vec<PartitionRecords>,
) -> Response {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = header_version(ApiKey::Fetch, version);
    match splice::encode_fetch(&header, header_version, response, version, records) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::error!(version, "cannot encode a fetch response: {e}");
            error_only(correlation_id, ResponseError::UnknownServerError)
        }
    }
}

fn header_version(key: ApiKey, version: i16) -> i16 {
    // ApiVersions answers with header v0 whatever the version, so that a client
    // can parse it before it knows which versions the broker speaks.
    if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    }
}

/// A response holding only a correlation id and an error code: what a broker
/// can say when it cannot build the API's own response shape.
pub fn error_only(correlation_id: i32, error: ResponseError) -> Response {
    let mut buf = BytesMut::with_capacity(6);
    buf.put_i32(correlation_id);
    buf.put_i16(error.code());
    Some(buf.freeze().into())
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
