//! Fetch: find committed batches in the partition logs, long-polling until
//! `min_bytes` are available or `max_wait_ms` has passed. The records are
//! not read here: the response names where they are stored, and the
//! connection sends them from there (see `frame` and `splice`). A
//! read_committed consumer reads below the last stable offset and is told
//! which transactions in that range were aborted, so it can skip them.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::leader_epochs::serving_partition;
use crate::Broker;
use crate::security::session::Session;
use crate::splice::PartitionRecords;
use chronik_state::acl::Operation;

/// Longest a fetch waits, whatever the client asks for.
const MAX_WAIT: Duration = Duration::from_secs(30);

const READ_COMMITTED: i8 = 1;

/// The response, and the records of its partitions, which stay in their
/// files until the connection sends them.
pub type Fetched = (FetchResponse, Vec<PartitionRecords>);

pub async fn handle(broker: &Broker, session: &Session, request: FetchRequest) -> Fetched {
    // Only refused topics are copied: an allowed fetch allocates nothing here.
    let denied: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !broker.allows_topic(session, Operation::Read, &t.topic.0))
        .map(|t| t.topic.0.to_string())
        .collect();
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let wanted: Vec<(&str, i32)> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.as_str(), p.partition)))
        .collect();
    loop {
        // A partition may have fallen asleep while the fetch waited.
        broker.awaken_partitions(&wanted).await;
        let (fetched, bytes, mut watches) = read(broker, &request, &denied);
        let has_error = fetched
            .0
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0);
        if bytes >= request.min_bytes.max(0) as usize
            || has_error
            || watches.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            return counted(broker, fetched);
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            broker.awaken_partitions(&wanted).await;
            return counted(broker, read(broker, &request, &denied).0);
        }
    }
}

/// One pass over the requested partitions. Returns the response, the bytes it
/// carries, and watches on the partitions' high watermarks.
fn read(
    broker: &Broker,
    request: &FetchRequest,
    denied: &HashSet<String>,
) -> (Fetched, usize, Vec<watch::Receiver<i64>>) {
    let mut remaining = (request.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let mut total = 0;
    let mut watches = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut records = Vec::new();
    let committed_only = request.isolation_level == READ_COMMITTED;
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(wanted.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            if denied.contains(name) {
                partitions.push(data.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let partition = match serving_partition(broker, name, wanted.partition, wanted.current_leader_epoch) {
                Ok((partition, _)) => partition,
                Err(error) => {
                    partitions.push(data.with_error_code(error.code()));
                    continue;
                }
            };
            watches.push(partition.watch_high_watermark());
            let log = partition.log();
            // The log may hold entries not yet committed past it.
            let high_watermark = partition.high_watermark();
            // Under the log's lock the producer state matches the log.
            let last_stable = partition
                .producers()
                .first_unstable_offset()
                .map_or(high_watermark, |first| first.min(high_watermark));
            data = data
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(last_stable)
                .with_log_start_offset(log.log_start_offset());
            // Kafka's rule: the response keeps within both limits, except that
            // the first batch it carries may be larger, so that a consumer
            // always progresses.
            let limit = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            // read_committed consumers read below the last stable offset.
            let end = if committed_only { last_stable } else { high_watermark };
            if wanted.fetch_offset > high_watermark {
                // Stored maybe, but not committed: as far as clients know, not there.
                partitions.push(data.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            match log
                .stored_within(wanted.fetch_offset, limit, total == 0)
                .map(|batches| batches.below(end))
            {
                Ok(batches) => {
                    total += batches.len();
                    remaining = remaining.saturating_sub(batches.len());
                    if !batches.is_empty() {
                        records.push(PartitionRecords {
                            topic: topics.len(),
                            partition: partitions.len(),
                            batches,
                        });
                    }
                    if !committed_only {
                        partitions.push(data);
                        continue;
                    }
                    let aborted = partition
                        .producers()
                        .aborted_between(wanted.fetch_offset, last_stable)
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect();
                    partitions.push(data.with_aborted_transactions(Some(aborted)));
                }
                Err(chronik_log::LogError::OffsetOutOfRange { .. }) => {
                    partitions.push(data.with_error_code(ResponseError::OffsetOutOfRange.code()));
                }
                Err(e) => {
                    tracing::error!(topic = name, partition = wanted.partition, "read failed: {e}");
                    partitions.push(data.with_error_code(ResponseError::KafkaStorageError.code()));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    let response = FetchResponse::default().with_responses(topics);
    ((response, records), total, watches)
}

/// Counts the records a response carries, per topic, in the node's traffic.
fn counted(broker: &Broker, fetched: Fetched) -> Fetched {
    let (response, records) = &fetched;
    // (bytes, records) per topic of the response.
    let mut per_topic = vec![(0u64, 0u64); response.responses.len()];
    for partition in records {
        let (bytes, count) = &mut per_topic[partition.topic];
        *bytes += partition.batches.len() as u64;
        *count += partition
            .batches
            .headers()
            .iter()
            .map(|h| u64::try_from(h.record_count).unwrap_or(0))
            .sum::<u64>();
    }
    for (topic, (bytes, count)) in response.responses.iter().zip(per_topic) {
        if bytes > 0 {
            broker.telemetry.fetched(&topic.topic.0, bytes, count);
        }
    }
    fetched
}
