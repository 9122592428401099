//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets are records
//! in the group's `__consumer_offsets` partition, read back from the applied
//! view every replica keeps.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::codec::{Deferred, encode};
use crate::coordination::applied;
use crate::groups::coordinator::{offsets_partition, persist, queue};
use crate::groups::membership::GroupState;
use crate::groups::registry::now_ms;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::consumer_offsets::{Change, CommittedOffset};

/// Kafka's offset.metadata.max.bytes.
const MAX_METADATA_BYTES: usize = 4096;

/// A partition of a commit, and why it was refused, if it was.
pub(crate) type PartitionOutcome = (i32, Option<ResponseError>);

/// One partition's offset in a commit request.
pub(crate) struct OffsetToCommit {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// The offsets of an OffsetCommit or TxnOffsetCommit request's topics,
/// whose partitions have the same fields in different types.
macro_rules! offsets_to_commit {
    ($topics:expr) => {
        $topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| $crate::handlers::offsets::OffsetToCommit {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    })
                    .collect();
                (t.name.0.to_string(), partitions)
            })
            .collect::<Vec<_>>()
    };
}
pub(crate) use offsets_to_commit;

/// The records a commit of `group` writes, and each partition's outcome:
/// all refused with `refused`, else each checked on its own.
pub(crate) fn plan_commit(
    broker: &Broker,
    session: &Session,
    group: &str,
    refused: Option<ResponseError>,
    wanted: Vec<(String, Vec<OffsetToCommit>)>,
) -> (Vec<Change>, Vec<(String, Vec<PartitionOutcome>)>) {
    let now = now_ms();
    let mut changes = Vec::new();
    let mut results = Vec::with_capacity(wanted.len());
    for (name, offsets) in wanted {
        let readable = broker.allows_topic(session, Operation::Read, &name);
        let mut partitions = Vec::with_capacity(offsets.len());
        for p in offsets {
            let error = if refused.is_some() {
                refused
            } else if !readable {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if broker.state.metadata().group_of(&name, p.partition).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p.metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                changes.push(Change::Commit {
                    group: group.to_string(),
                    topic: name.clone(),
                    partition: p.partition,
                    offset: CommittedOffset {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata: p.metadata,
                        commit_timestamp: now,
                    },
                });
                None
            };
            partitions.push((p.partition, error));
        }
        results.push((name, partitions));
    }
    (changes, results)
}

/// Validates a commit and queues its write before the connection's next
/// request is read, so that commits sent in order on one connection take
/// effect in that order; the returned future waits for the write.
pub async fn submit_commit(
    broker: Arc<Broker>,
    session: &Session,
    header: RequestHeader,
    request: OffsetCommitRequest,
) -> Deferred {
    let broker = &*broker;
    let group = request.group_id.0.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let checked = if !broker.allows_group(session, Operation::Read, &group) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        offsets_partition(broker, &group).and_then(|partition| {
            // A consumer-protocol group with members checks the member and
            // its epoch; its members commit with OffsetCommit v9 or later.
            let consumer = broker
                .consumer_group(&group, |g| {
                    (!g.is_empty()).then(|| {
                        if header.request_api_version < 9 && request.generation_id_or_member_epoch >= 0 {
                            return Err(ResponseError::UnsupportedVersion);
                        }
                        g.validate_commit(request.member_id.as_str(), request.generation_id_or_member_epoch)
                    })
                })
                .flatten();
            if let Some(allowed) = consumer {
                return allowed.map(|_| partition);
            }
            let known = broker.groups.existing(&group, |_| ()).is_some()
                || broker.state.offsets.group_metadata(&group).is_some()
                || !broker.state.offsets.offsets(&group).is_empty();
            if !known && request.generation_id_or_member_epoch >= 0 {
                // Kafka: a generation for a group that does not exist is stale.
                return Err(ResponseError::IllegalGeneration);
            }
            let allowed = broker.with_group(&group, |g| {
                g.validate_commit(
                    request.member_id.as_str(),
                    instance.as_deref(),
                    request.generation_id_or_member_epoch,
                )
            });
            allowed
                .map(|_| partition)
                .map_err(|code| ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
        })
    };
    let wanted = offsets_to_commit!(request.topics);
    let (changes, results) = plan_commit(broker, session, &group, checked.as_ref().err().copied(), wanted);
    let queued = match (checked, changes.is_empty()) {
        (Ok(partition), false) => Some(queue(broker, &partition, &changes).await.map(|q| (partition, q))),
        _ => None,
    };
    Box::pin(async move {
        let written = match queued {
            Some(Ok((partition, queued))) => applied(&partition, queued).await.err(),
            Some(Err(e)) => Some(e),
            None => None,
        };
        let response = commit_response(results, written);
        encode(
            header.correlation_id,
            ApiKey::OffsetCommit,
            header.request_api_version,
            ResponseKind::OffsetCommit(response),
        )
    })
}

fn commit_response(
    results: Vec<(String, Vec<PartitionOutcome>)>,
    written: Option<ResponseError>,
) -> OffsetCommitResponse {
    let topics = results
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, error)| {
                    let code = error.or(written).map_or(0, |e| e.code());
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One partition's committed offset (-1 without one), as OffsetFetch reports it.
struct FetchedOffset {
    topic: String,
    partition: i32,
    offset: i64,
    metadata: Option<String>,
    leader_epoch: i32,
    error: i16,
}

impl FetchedOffset {
    fn new(topic: String, partition: i32, committed: Option<CommittedOffset>) -> FetchedOffset {
        let (offset, metadata, leader_epoch) =
            committed.map_or((-1, None, -1), |o| (o.offset, o.metadata, o.leader_epoch));
        FetchedOffset {
            topic,
            partition,
            offset,
            metadata,
            leader_epoch,
            error: 0,
        }
    }

    fn missing(topic: String, partition: i32, error: ResponseError) -> FetchedOffset {
        FetchedOffset {
            error: error.code(),
            ..FetchedOffset::new(topic, partition, None)
        }
    }
}

/// The offsets of the requested partitions, or of every committed one the
/// principal may describe when `wanted` is None. With `require_stable`
/// (KIP-447) an offset an open transaction has committed is answered with
/// UNSTABLE_OFFSET_COMMIT, which the consumer retries.
fn fetch_group(
    broker: &Broker,
    session: &Session,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<FetchedOffset>, ResponseError> {
    if !broker.allows_group(session, Operation::Describe, group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    offsets_partition(broker, group)?;
    let view = &broker.state.offsets;
    Ok(match wanted {
        Some(topics) => topics
            .into_iter()
            .flat_map(|(topic, partitions)| {
                let allowed = broker.allows_topic(session, Operation::Describe, &topic);
                partitions.into_iter().map(move |p| {
                    if require_stable && view.has_pending(group, &topic, p) {
                        FetchedOffset::missing(topic.clone(), p, ResponseError::UnstableOffsetCommit)
                    } else if allowed {
                        FetchedOffset::new(topic.clone(), p, view.offset(group, &topic, p))
                    } else {
                        FetchedOffset::missing(topic.clone(), p, ResponseError::TopicAuthorizationFailed)
                    }
                })
            })
            .collect(),
        None => view
            .offsets(group)
            .into_iter()
            .filter(|((topic, _), _)| broker.allows_topic(session, Operation::Describe, topic))
            .map(|((topic, p), o)| FetchedOffset::new(topic, p, Some(o)))
            .collect(),
    })
}

pub fn fetch(broker: &Broker, session: &Session, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let response = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(broker, session, g.group_id.0.as_str(), wanted, request.require_stable) {
                    Ok(offsets) => response.with_topics(group_topics(offsets)),
                    Err(error) => response.with_error_code(error.code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let require_stable = request.require_stable;
    match fetch_group(
        broker,
        session,
        request.group_id.0.as_str(),
        wanted.clone(),
        require_stable,
    ) {
        Ok(offsets) => OffsetFetchResponse::default().with_topics(legacy_topics(offsets, version)),
        Err(error) if version >= 2 => OffsetFetchResponse::default().with_error_code(error.code()),
        // v0-v1 have no top-level error: every partition carries it.
        Err(error) => {
            let offsets = wanted
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| FetchedOffset::missing(t.clone(), p, error)))
                .collect();
            let mut topics = legacy_topics(offsets, version);
            topics
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
                .for_each(|p| p.error_code = error.code());
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

fn grouped<T>(offsets: Vec<FetchedOffset>, make: impl Fn(FetchedOffset) -> T) -> Vec<(String, Vec<T>)> {
    let mut topics: Vec<(String, Vec<T>)> = Vec::new();
    for entry in offsets {
        let topic = entry.topic.clone();
        let item = make(entry);
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, items)) => items.push(item),
            None => topics.push((topic, vec![item])),
        }
    }
    topics
}

fn legacy_topics(offsets: Vec<FetchedOffset>, version: i16) -> Vec<OffsetFetchResponseTopic> {
    grouped(offsets, |o| {
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(o.partition)
            .with_committed_offset(o.offset)
            .with_error_code(o.error)
            .with_metadata(Some(o.metadata.map_or_else(|| str_bytes(""), StrBytes::from_string)));
        if version >= 5 {
            partition.with_committed_leader_epoch(o.leader_epoch)
        } else {
            partition
        }
    })
    .into_iter()
    .map(|(t, ps)| {
        OffsetFetchResponseTopic::default()
            .with_name(topic_name(&t))
            .with_partitions(ps)
    })
    .collect()
}

fn group_topics(offsets: Vec<FetchedOffset>) -> Vec<OffsetFetchResponseTopics> {
    grouped(offsets, |o| {
        OffsetFetchResponsePartitions::default()
            .with_partition_index(o.partition)
            .with_committed_offset(o.offset)
            .with_committed_leader_epoch(o.leader_epoch)
            .with_error_code(o.error)
            .with_metadata(Some(o.metadata.map_or_else(|| str_bytes(""), StrBytes::from_string)))
    })
    .into_iter()
    .map(|(t, ps)| {
        OffsetFetchResponseTopics::default()
            .with_name(topic_name(&t))
            .with_partitions(ps)
    })
    .collect()
}

/// The topics the members of an active consumer group subscribe to.
fn subscribed_topics(broker: &Broker, group: &str) -> Vec<String> {
    broker
        .groups
        .existing(group, |g| {
            if g.state() == GroupState::Empty || g.protocol_type() != Some("consumer") {
                return Vec::new();
            }
            g.members()
                .iter()
                .filter_map(|m| {
                    let mut metadata = m.metadata.clone();
                    let version = i16::from_be_bytes([*metadata.first()?, *metadata.get(1)?]);
                    bytes::Buf::advance(&mut metadata, 2);
                    ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3)).ok()
                })
                .flat_map(|s| s.topics.into_iter().map(|t| t.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn delete(broker: &Broker, session: &Session, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    if !broker.allows_group(session, Operation::Delete, &group) {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let partition = match offsets_partition(broker, &group) {
        Ok(partition) => partition,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let known = broker.groups.existing(&group, |g| !g.is_empty()).unwrap_or(false)
        || !broker.state.offsets.offsets(&group).is_empty();
    if !known {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = subscribed_topics(broker, &group);
    let mut changes = Vec::new();
    let mut topics = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let readable = broker.allows_topic(session, Operation::Read, &name);
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let response = OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index);
                if !readable {
                    return response.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                if subscribed.contains(&name) {
                    return response.with_error_code(ResponseError::GroupSubscribedToTopic.code());
                }
                changes.push(Change::DeleteOffset {
                    group: group.clone(),
                    topic: name.clone(),
                    partition: p.partition_index,
                });
                response
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    if !changes.is_empty()
        && let Err(error) = persist(broker, &partition, &changes).await
    {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
