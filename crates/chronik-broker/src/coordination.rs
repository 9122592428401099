//! What the group and transaction coordinators share: a key (a group, a
//! transactional id) belongs to one partition of an internal topic, and the
//! leader of that partition coordinates it, writing its state there through
//! Raft before acting on it.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::Broker;
use crate::broker::propose_error_code;
use chronik_raft::ProposeError;
use chronik_state::command::PartitionCommand;
use chronik_state::consumer_offsets::partition_for;
use chronik_state::partition::Partition;
use chronik_state::replicated::Applied;

/// How long a coordinator's write may take before the request fails.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(10);

/// The partition of internal `topic` that holds `key`, if this node leads
/// it and may serve it.
pub fn led_partition(broker: &Broker, topic: &str, key: &str) -> Result<Arc<Partition>, ResponseError> {
    let partitions = broker
        .state
        .metadata()
        .topic(topic)
        .map(|t| t.partitions.len() as i32)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = broker
        .state
        .local_partition(topic, partition_for(key, partitions))
        .map_err(|_| ResponseError::NotCoordinator)?;
    match broker.leader_of(partition.group) {
        Some(_) if broker.is_leader(partition.group) => Ok(partition),
        // Elected, but its view may still lag what the previous coordinator
        // showed: Kafka's answer while it loads the partition.
        Some(leader) if leader == broker.config.node_id => Err(ResponseError::CoordinatorLoadInProgress),
        Some(_) => Err(ResponseError::NotCoordinator),
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// The node coordinating `key`: the leader of its partition of `topic`.
pub fn coordinator_node(broker: &Broker, topic: &str, key: &str) -> Result<u64, ResponseError> {
    let metadata = broker.state.metadata();
    let info = metadata.topic(topic).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let index = partition_for(key, info.partitions.len() as i32);
    let raft_group = info
        .partitions
        .get(index as usize)
        .ok_or(ResponseError::CoordinatorNotAvailable)?
        .group;
    broker
        .leader_of(raft_group)
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// The wait for a queued coordinator write.
pub type QueuedWrite = oneshot::Receiver<Result<Applied, ProposeError>>;

/// Queues `batch` for `partition`; writes queued one after another take
/// effect in that order.
pub async fn queue_batch(broker: &Broker, partition: &Partition, batch: &[u8]) -> Result<QueuedWrite, ResponseError> {
    // Coordinators may use half of the space kept free; below that they
    // fail as Kafka fails them on a storage error, and the client retries.
    broker.disk.check();
    if !broker.disk.has_reserved_room() {
        return Err(ResponseError::NotCoordinator);
    }
    Ok(broker
        .submit(partition.group, PartitionCommand::Produce { batches: batch }.encode())
        .await)
}

/// Writes `batch` to `partition` and waits until it has applied here.
pub async fn persist_batch(broker: &Broker, partition: &Partition, batch: &[u8]) -> Result<(), ResponseError> {
    let queued = queue_batch(broker, partition, batch).await?;
    applied(partition, queued).await
}

/// Waits until a queued write has applied on this node.
pub async fn applied(partition: &Partition, queued: QueuedWrite) -> Result<(), ResponseError> {
    match tokio::time::timeout(PERSIST_TIMEOUT, queued).await {
        Err(_) => Err(ResponseError::RequestTimedOut),
        Ok(Err(_)) => Err(ResponseError::NotCoordinator),
        Ok(Ok(Err(e))) => Err(match propose_error_code(&e) {
            ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
            other => other,
        }),
        Ok(Ok(Ok(Applied::Produce(result)))) => result.map(|_| ()).inspect_err(|e| {
            tracing::warn!(
                topic = %partition.topic,
                partition = partition.index,
                "a coordinator write was refused: {e:?}"
            )
        }),
        Ok(Ok(Ok(other))) => {
            tracing::error!("a coordinator write applied as {other:?}");
            Err(ResponseError::UnknownServerError)
        }
    }
}
