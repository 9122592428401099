//! The transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn and EndTxn go
//! to the transaction coordinator (`txn::coordinator`); TxnOffsetCommit to
//! the group coordinator, which writes the offsets as the transaction's
//! records; WriteTxnMarkers to partition leaders; DescribeTransactions and
//! ListTransactions read the coordinator's state.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use super::offsets::{offsets_to_commit, plan_commit};
use super::{str_bytes, topic_name};
use crate::Broker;
use crate::coordination::{self, led_partition};
use crate::groups::coordinator::offsets_partition;
use crate::groups::registry::now_ms;
use crate::security::session::Session;
use crate::txn::{coordinator, markers};
use chronik_log::control::Marker;
use chronik_state::acl::{Operation, ResourceType};
use chronik_state::consumer_offsets::{self, partition_for};
use chronik_state::transaction_state::{self, TxnStatus};

fn allows_transaction(broker: &Broker, session: &Session, operation: Operation, id: &str) -> bool {
    broker.allows(session, operation, ResourceType::TransactionalId, id)
}

/// Why a partition may not join a transaction, if it may not.
fn refuse_partition(broker: &Broker, session: &Session, topic: &str, partition: i32) -> Option<ResponseError> {
    if !broker.allows_topic(session, Operation::Write, topic) {
        Some(ResponseError::TopicAuthorizationFailed)
    } else if chronik_state::is_internal_topic(topic) {
        // Only AddOffsetsToTxn adds an offsets partition.
        Some(ResponseError::InvalidTopicException)
    } else if broker.state.metadata().group_of(topic, partition).is_none() {
        Some(ResponseError::UnknownTopicOrPartition)
    } else {
        None
    }
}

pub async fn add_partitions(
    broker: &Broker,
    session: &Session,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.0.to_string();
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect();
    let refusals: Vec<Option<ResponseError>> = wanted
        .iter()
        .map(|(topic, partition)| refuse_partition(broker, session, topic, *partition))
        .collect();
    let outcome = if !allows_transaction(broker, session, Operation::Write, &id) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if refusals.iter().any(Option::is_some) {
        // Kafka adds none when one is refused; the others are reported
        // as not attempted.
        Err(ResponseError::OperationNotAttempted)
    } else {
        coordinator::add_partitions(
            broker,
            &id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &wanted,
        )
        .await
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), refusal) in wanted.into_iter().zip(refusals) {
        let error = match (&outcome, refusal) {
            (_, Some(refusal)) => refusal.code(),
            (Err(error), None) => error.code(),
            (Ok(()), None) => 0,
        };
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(error);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(entry) => entry.results_by_partition.push(result),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic_name(&topic))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub async fn add_offsets(
    broker: &Broker,
    session: &Session,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    let outcome = if !allows_transaction(broker, session, Operation::Write, id) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !broker.allows_group(session, Operation::Read, group) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        let partitions = broker
            .state
            .metadata()
            .topic(consumer_offsets::TOPIC)
            .map(|t| t.partitions.len() as i32);
        match partitions {
            // The group's offsets partition joins the transaction: its
            // offsets take effect with the transaction's marker there.
            Some(n) => {
                let offsets = (consumer_offsets::TOPIC.to_string(), partition_for(group, n));
                coordinator::add_partitions(broker, id, request.producer_id.0, request.producer_epoch, &[offsets]).await
            }
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(outcome.err().map_or(0, |e| e.code()))
}

pub async fn end(broker: &Broker, session: &Session, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.0.as_str();
    let outcome = if allows_transaction(broker, session, Operation::Write, id) {
        coordinator::end_txn(
            broker,
            id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await
    } else {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    };
    EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_error_code(outcome.err().map_or(0, |e| e.code()))
}

/// TxnOffsetCommit: the group coordinator writes the offsets as records of
/// the producer's transaction; they take effect with its commit marker.
pub async fn commit_offsets(
    broker: &Broker,
    session: &Session,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.as_str();
    let checked = if !allows_transaction(broker, session, Operation::Write, request.transactional_id.0.as_str()) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !broker.allows_group(session, Operation::Read, group) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else {
        offsets_partition(broker, group)
    };
    let wanted = offsets_to_commit!(request.topics);
    let (changes, results) = plan_commit(broker, session, group, checked.as_ref().err().copied(), wanted);
    let written = match (checked, changes.is_empty()) {
        (Ok(partition), false) => {
            let (id, epoch) = (request.producer_id.0, request.producer_epoch);
            let batch = consumer_offsets::encode_transactional(&changes, now_ms(), id, epoch);
            coordination::persist_batch(broker, &partition, &batch)
                .await
                .err()
                .map(|e| match e {
                    // The partition knows a newer epoch of the producer.
                    ResponseError::InvalidProducerEpoch => ResponseError::ProducerFenced,
                    other => other,
                })
        }
        _ => None,
    };
    let topics = results
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, error)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error.or(written).map_or(0, |e| e.code()))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// WriteTxnMarkers, as Kafka's coordinators send it to partition leaders:
/// each marker is written into each of its partitions that this node leads.
pub async fn write_markers(
    broker: &Broker,
    session: &Session,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = broker.allows_cluster(session, Operation::ClusterAction);
    let mut results = Vec::with_capacity(request.markers.len());
    for wanted in request.markers {
        let marker = Marker {
            producer_id: wanted.producer_id.0,
            producer_epoch: wanted.producer_epoch,
            commit: wanted.transaction_result,
            coordinator_epoch: wanted.coordinator_epoch,
            timestamp: now_ms(),
        };
        let mut topics = Vec::with_capacity(wanted.topics.len());
        for topic in wanted.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for index in topic.partition_indexes {
                let error = if allowed {
                    markers::write_here(broker, topic.name.0.as_str(), index, marker).await
                } else {
                    Some(ResponseError::ClusterAuthorizationFailed)
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(error.map_or(0, |e| e.code())),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(wanted.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

pub fn describe(
    broker: &Broker,
    session: &Session,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let answer = describe_transactions_response::TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            let name = id.0.as_str();
            if !allows_transaction(broker, session, Operation::Describe, name) {
                return answer.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            if let Err(error) = led_partition(broker, transaction_state::TOPIC, name) {
                return answer.with_error_code(error.code());
            }
            let Some(state) = broker.state.transactions.get(name) else {
                return answer.with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in &state.partitions {
                match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(entry) => entry.partitions.push(*partition),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(vec![*partition]),
                    ),
                }
            }
            answer
                .with_transaction_state(str_bytes(state.status.kafka_name()))
                .with_transaction_timeout_ms(state.timeout_ms)
                .with_transaction_start_time_ms(state.started_ms)
                .with_producer_id(ProducerId(state.producer_id))
                .with_producer_epoch(state.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

const STATES: [TxnStatus; 6] = [
    TxnStatus::Empty,
    TxnStatus::Ongoing,
    TxnStatus::PrepareCommit,
    TxnStatus::PrepareAbort,
    TxnStatus::CompleteCommit,
    TxnStatus::CompleteAbort,
];

/// ListTransactions: the transactions this node coordinates, filtered by
/// state, producer id and (v1) how long they have been open.
pub fn list(broker: &Broker, session: &Session, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.kafka_name() == f.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    let states = broker
        .state
        .transactions
        .all()
        .into_iter()
        .filter(|(id, state)| {
            let wanted_state = request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == state.status.kafka_name());
            let wanted_producer = request.producer_id_filters.is_empty()
                || request.producer_id_filters.iter().any(|p| p.0 == state.producer_id);
            let old_enough = request.duration_filter < 0
                || (state.started_ms >= 0 && now - state.started_ms >= request.duration_filter);
            wanted_state
                && wanted_producer
                && old_enough
                && led_partition(broker, transaction_state::TOPIC, id).is_ok()
                && allows_transaction(broker, session, Operation::Describe, id)
        })
        .map(|(id, state)| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&id)))
                .with_producer_id(ProducerId(state.producer_id))
                .with_transaction_state(str_bytes(state.status.kafka_name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
