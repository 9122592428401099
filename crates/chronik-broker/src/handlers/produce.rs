//! Produce: validate the record batches, propose them to each partition's
//! Raft group, and answer once they are committed and applied (acks=all),
//! or once they are in the leader's own log (acks=1, with the offset the
//! leader's forecast predicts; see `chronik_state::replicated`).
//!
//! Proposals are queued before `submit` returns, so requests pipelined on one
//! connection reach each partition in the order they were sent. Waiting for
//! commit happens in the returned future, off the connection's read path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronik_raft::ProposeError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseKind};
use tokio::sync::oneshot;

use super::topic_name;
use crate::Broker;
use crate::broker::propose_error_code;
use crate::codec::{Deferred, encode};
use chronik_log::BatchHeader;
use chronik_state::command::PartitionCommand;
use chronik_state::replicated::{Applied, batch_error};
use chronik_state::topic_config::{self, ProducePolicy};

use crate::conform::conform;
use crate::groups::registry::now_ms;
use crate::ops::errors;
use crate::security::session::Session;
use chronik_state::acl::Operation;

type Outcome = oneshot::Receiver<Result<Applied, ProposeError>>;

/// A partition's answer: known at once (an error), or awaited from Raft.
enum Pending {
    Failed(ResponseError),
    Proposed(Proposal),
}

struct Proposal {
    outcome: Outcome,
    /// The append time the batch was stamped with, under LogAppendTime.
    append_time: Option<i64>,
    proposed_at: Instant,
    /// Answered from the leader's own log (acks=1), not after commit.
    local: bool,
    bytes: u64,
    records: u64,
}

pub async fn submit(
    broker: Arc<Broker>,
    session: &Session,
    header: RequestHeader,
    request: ProduceRequest,
) -> Deferred {
    let acks = request.acks;
    // One measurement per request: cheap (a statvfs), and current.
    let disk_full = broker.disk.check();
    // What the request's batches may expand to, all together, where the
    // topic has the broker recompress them.
    let mut decompression_budget = broker.config.max_request_bytes;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let topic_error = if broker.allows_topic(session, Operation::Write, &name) {
            ensure_topic(&broker, session, &name).await.err()
        } else {
            Some(ResponseError::TopicAuthorizationFailed)
        };
        let policy = broker
            .state
            .metadata()
            .topic(&name)
            .map(|t| topic_config::produce_policy(&t.configs));
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in topic.partition_data {
            let pending = if !matches!(acks, -1..=1) {
                Pending::Failed(ResponseError::InvalidRequiredAcks)
            } else if disk_full {
                Pending::Failed(ResponseError::KafkaStorageError)
            } else if let Some(error) = topic_error {
                Pending::Failed(error)
            } else if let Some(policy) = &policy {
                propose(
                    &broker,
                    &name,
                    partition.index,
                    partition.records,
                    acks,
                    policy,
                    &mut decompression_budget,
                )
                .await
            } else {
                Pending::Failed(ResponseError::UnknownTopicOrPartition)
            };
            partitions.push((partition.index, pending));
        }
        topics.push((name, partitions));
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    Box::pin(async move {
        if acks == 0 {
            return None;
        }
        let response = collect(&broker, topics, timeout).await;
        if errors::produce_failed(&response) {
            broker.telemetry.requests.failed(ApiKey::Produce);
        }
        encode(
            header.correlation_id,
            ApiKey::Produce,
            header.request_api_version,
            ResponseKind::Produce(response),
        )
    })
}

async fn ensure_topic(broker: &Broker, session: &Session, name: &str) -> Result<(), ResponseError> {
    if chronik_state::is_internal_topic(name) {
        // Only the coordinators write there.
        return Err(ResponseError::InvalidTopicException);
    }
    if broker.state.metadata().topic(name).is_some() {
        return Ok(());
    }
    if !broker.config.auto_create_topics || !broker.may_create_topic(session, name) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    broker.auto_create_topic(name).await.map_err(|e| e.error)
}

async fn propose(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
    policy: &ProducePolicy,
    decompression_budget: &mut usize,
) -> Pending {
    let Some(group) = broker.state.metadata().group_of(topic, index) else {
        return Pending::Failed(ResponseError::UnknownTopicOrPartition);
    };
    broker.awaken([group]).await;
    if !broker.is_leader(group) {
        return Pending::Failed(ResponseError::NotLeaderOrFollower);
    }
    // Kafka's min.insync.replicas; the default of 1 always holds.
    if acks == -1
        && policy.min_insync_replicas > 1
        && broker
            .in_sync_replicas(group)
            .is_some_and(|isr| !isr.is_empty() && isr.len() < policy.min_insync_replicas)
    {
        return Pending::Failed(ResponseError::NotEnoughReplicas);
    }
    let records = records.unwrap_or_default();
    let header = match validate(&records, policy.max_message_bytes) {
        Ok(header) => header,
        Err(error) => return Pending::Failed(error),
    };
    let conformed = match conform(records, &header, policy, now_ms(), decompression_budget) {
        Ok(conformed) => conformed,
        Err(error) => return Pending::Failed(error),
    };
    let data = PartitionCommand::Produce {
        batches: &conformed.batch,
    }
    .encode();
    let proposed_at = Instant::now();
    let outcome = if acks == 1 {
        broker.submit_local(group, data).await
    } else {
        broker.submit(group, data).await
    };
    Pending::Proposed(Proposal {
        outcome,
        local: acks == 1,
        append_time: conformed.log_append_time,
        proposed_at,
        bytes: conformed.batch.len() as u64,
        records: u64::try_from(header.record_count).unwrap_or(0),
    })
}

/// Checks what the partition log will store, before it is proposed: nothing
/// reaches apply that the log would refuse. Like Kafka (Produce v3 and
/// later), a partition's data is exactly one v2 batch; its CRC must be
/// intact, it must hold records, and it must fit the topic's
/// max.message.bytes.
pub fn validate(records: &[u8], max_message_bytes: usize) -> Result<BatchHeader, ResponseError> {
    // Framing first, from the length fields alone; then one CRC pass.
    let ranges = chronik_log::frame_batches(records).map_err(|_| ResponseError::CorruptMessage)?;
    if ranges.len() != 1 {
        return Err(ResponseError::InvalidRecord);
    }
    if records.len() > max_message_bytes {
        return Err(ResponseError::MessageTooLarge);
    }
    let header = chronik_log::check_appendable(records).map_err(|e| batch_error(&e))?;
    // Only coordinators write control batches; a transactional batch comes
    // from an idempotent producer, with a sequence.
    if header.is_control() || (header.is_transactional() && (header.producer_id < 0 || header.base_sequence < 0)) {
        return Err(ResponseError::InvalidRecord);
    }
    Ok(header)
}

async fn collect(broker: &Broker, topics: Vec<(String, Vec<(i32, Pending)>)>, timeout: Duration) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut responses = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let mut partition_responses = Vec::with_capacity(partitions.len());
        for (index, pending) in partitions {
            let mut response = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let mut append_time = None;
            let outcome = match pending {
                Pending::Failed(error) => Err(error),
                Pending::Proposed(proposal) => match tokio::time::timeout_at(deadline, proposal.outcome).await {
                    Err(_) => Err(ResponseError::RequestTimedOut),
                    Ok(Err(_)) => Err(ResponseError::NotLeaderOrFollower),
                    Ok(Ok(Err(e))) => Err(propose_error_code(&e)),
                    Ok(Ok(Ok(Applied::Produce(result)))) => {
                        // A refusal may come before any commit (the leader's forecast).
                        if result.is_ok() {
                            if !proposal.local {
                                broker.telemetry.produce_commit.record(proposal.proposed_at.elapsed());
                            }
                            broker.telemetry.produced(&name, proposal.bytes, proposal.records);
                        }
                        append_time = proposal.append_time;
                        result
                    }
                    Ok(Ok(Ok(other))) => unreachable!("a produce entry applied as {other:?}"),
                },
            };
            match outcome {
                Ok(ack) => {
                    response = response
                        .with_base_offset(ack.base_offset)
                        .with_log_append_time_ms(append_time.unwrap_or(-1))
                        .with_log_start_offset(ack.log_start_offset);
                }
                Err(error) => response = response.with_error_code(error.code()),
            }
            partition_responses.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_name(&name))
                .with_partition_responses(partition_responses),
        );
    }
    ProduceResponse::default().with_responses(responses)
}
