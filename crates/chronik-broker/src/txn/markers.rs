//! Transaction markers: the coordinator has each partition a transaction
//! wrote to end it with a control batch, written by that partition's leader
//! through its Raft group (`PartitionCommand::TxnMarker`). The leader may
//! be this node, or another reached over the admin service.

use std::collections::BTreeSet;
use std::time::Duration;

use chronik_log::control::Marker;
use chronik_state::command::PartitionCommand;
use chronik_state::replicated::Applied;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::Broker;
use crate::broker::propose_error_code;
use crate::cluster::admin_client;
use crate::cluster::proto::WriteTxnMarkerRequest;

/// How long one marker write may wait for its entry to apply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `marker` into `topic`/`partition`, which this node must lead;
/// `None` once written.
pub async fn write_here(broker: &Broker, topic: &str, partition: i32, marker: Marker) -> Option<ResponseError> {
    let Some(group) = broker.state.metadata().group_of(topic, partition) else {
        return Some(ResponseError::UnknownTopicOrPartition);
    };
    broker.awaken([group]).await;
    if !broker.is_leader(group) {
        return Some(ResponseError::NotLeaderOrFollower);
    }
    // Markers may use the room kept free: they end transactions, which
    // frees the records held back from consumers.
    broker.disk.check();
    if !broker.disk.has_reserved_room() {
        return Some(ResponseError::KafkaStorageError);
    }
    let queued = broker.submit(group, PartitionCommand::TxnMarker(marker).encode()).await;
    match tokio::time::timeout(WRITE_TIMEOUT, queued).await {
        Err(_) => Some(ResponseError::RequestTimedOut),
        Ok(Err(_)) => Some(ResponseError::NotLeaderOrFollower),
        Ok(Ok(Err(e))) => Some(propose_error_code(&e)),
        Ok(Ok(Ok(Applied::TxnMarker(result)))) => result.err(),
        Ok(Ok(Ok(other))) => {
            tracing::error!("a transaction marker applied as {other:?}");
            Some(ResponseError::UnknownServerError)
        }
    }
}

/// Writes `marker` into the partition through its current leader.
async fn write_one(broker: &Broker, topic: &str, partition: i32, marker: Marker) -> Option<ResponseError> {
    let Some(group) = broker.state.metadata().group_of(topic, partition) else {
        return Some(ResponseError::UnknownTopicOrPartition);
    };
    let leader = match broker.leader_of(group) {
        Some(leader) => leader,
        None => return Some(ResponseError::LeaderNotAvailable),
    };
    if leader == broker.config.node_id {
        return write_here(broker, topic, partition, marker).await;
    }
    let Some(addr) = broker.peers.get(leader) else {
        return Some(ResponseError::LeaderNotAvailable);
    };
    let mut client = match admin_client(&addr, WRITE_TIMEOUT, &broker.peer_security).await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!(topic, partition, leader, "cannot reach the leader for a marker: {e}");
            return Some(ResponseError::NotLeaderOrFollower);
        }
    };
    let request = WriteTxnMarkerRequest {
        cluster_id: broker.cluster_id.get(),
        topic: topic.to_string(),
        partition,
        producer_id: marker.producer_id,
        producer_epoch: i32::from(marker.producer_epoch),
        commit: marker.commit,
        coordinator_epoch: marker.coordinator_epoch,
        timestamp: marker.timestamp,
    };
    match client.write_txn_marker(request).await {
        Ok(response) => match response.into_inner().error_code {
            0 => None,
            code => Some(
                i16::try_from(code)
                    .ok()
                    .and_then(ResponseError::try_from_code)
                    .unwrap_or(ResponseError::UnknownServerError),
            ),
        },
        Err(status) => {
            tracing::debug!(topic, partition, leader, "a marker write failed: {}", status.message());
            Some(ResponseError::NotLeaderOrFollower)
        }
    }
}

/// Writes `marker` into every partition, retrying each (its leader moving,
/// or restarting) until written or `deadline`. A deleted topic needs no
/// marker; a partition that knows a newer epoch of the producer has seen
/// the transaction ended already (Kafka's coordinator treats both alike).
pub async fn write_all(
    broker: &Broker,
    marker: Marker,
    partitions: &BTreeSet<(String, i32)>,
    deadline: Instant,
) -> Result<(), String> {
    let writes = partitions.iter().map(|(topic, partition)| async move {
        let mut backoff = Duration::from_millis(20);
        loop {
            match write_one(broker, topic, *partition, marker).await {
                None => return Ok(()),
                Some(ResponseError::InvalidProducerEpoch) => return Ok(()),
                Some(ResponseError::UnknownTopicOrPartition)
                    if broker.state.metadata().group_of(topic, *partition).is_none() =>
                {
                    return Ok(());
                }
                Some(error) if Instant::now() + backoff >= deadline => {
                    return Err(format!("{topic}-{partition}: {error:?}"));
                }
                Some(error) => {
                    tracing::debug!(topic, partition, "marker write retried: {error:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    });
    let failed: Vec<String> = futures::future::join_all(writes)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("markers not written yet: {}", failed.join(", ")))
    }
}
