//! Whether a response carries an error code, for the per-API error count.
//! Covers the APIs clients call in their steady state; the others, admin
//! calls, are counted as requests only.

use kafka_protocol::messages::{FetchResponse, ProduceResponse, ResponseKind};

pub fn produce_failed(response: &ProduceResponse) -> bool {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .any(|p| p.error_code != 0)
}

pub fn fetch_failed(r: &FetchResponse) -> bool {
    r.error_code != 0
        || r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0)
}

pub fn failed(response: &ResponseKind) -> bool {
    match response {
        ResponseKind::Produce(r) => produce_failed(r),
        ResponseKind::Fetch(r) => fetch_failed(r),
        ResponseKind::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::Metadata(r) => r
            .topics
            .iter()
            .any(|t| t.error_code != 0 || t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::OffsetFetch(r) => {
            r.error_code != 0
                || r.groups.iter().any(|g| g.error_code != 0)
                || r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
        }
        ResponseKind::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::FindCoordinator(r) => r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0),
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0 || r.members.iter().any(|m| m.error_code != 0),
        ResponseKind::ConsumerGroupHeartbeat(r) => r.error_code != 0,
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::SaslAuthenticate(r) => r.error_code != 0,
        ResponseKind::SaslHandshake(r) => r.error_code != 0,
        _ => false,
    }
}
