//! The group coordinator of this broker: the consumer groups whose
//! `__consumer_offsets` partition this node leads. Membership lives in memory
//! (the registry); committed offsets and the membership of the last
//! completed rebalance are records in that partition, so a new coordinator
//! (after a restart, or a leader change) rebuilds the same view.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use super::consumer_group::{self, ConsumerGroup};
use super::membership::GroupSnapshot;
use super::registry::Unsaved;
use super::registry::now_ms;
use crate::Broker;
use crate::coordination::{self, QueuedWrite, applied};
use chronik_state::consumer_offsets::{self, Change};
use chronik_state::partition::Partition;

/// The `__consumer_offsets` partition that holds `group`, if this node leads it.
pub fn offsets_partition(broker: &Broker, group: &str) -> Result<Arc<Partition>, ResponseError> {
    coordination::led_partition(broker, consumer_offsets::TOPIC, group)
}

/// The node coordinating `group`: the leader of its offsets partition.
pub fn coordinator_of(broker: &Broker, group: &str) -> Result<u64, ResponseError> {
    coordination::coordinator_node(broker, consumer_offsets::TOPIC, group)
}

/// Writes records to `group`'s offsets partition and waits until they apply.
pub async fn persist(broker: &Broker, partition: &Partition, changes: &[Change]) -> Result<(), ResponseError> {
    let queued = queue(broker, partition, changes).await?;
    applied(partition, queued).await
}

/// Queues records for `group`'s offsets partition; writes queued one after
/// another take effect in that order.
pub async fn queue(broker: &Broker, partition: &Partition, changes: &[Change]) -> Result<QueuedWrite, ResponseError> {
    coordination::queue_batch(broker, partition, &consumer_offsets::encode(changes, now_ms())).await
}

/// Records `group`'s membership in its offsets partition, so that a new
/// coordinator carries on from it.
pub async fn save_membership(broker: &Broker, group: &str, snapshot: GroupSnapshot) {
    let Ok(partition) = offsets_partition(broker, group) else {
        return;
    };
    let change = membership_record(group, serde_json::to_vec(&snapshot).expect("snapshots serialize"));
    if let Err(e) = persist(broker, &partition, &[change]).await {
        tracing::warn!(group, "cannot save group membership: {e:?}");
    }
}

fn membership_record(group: &str, snapshot: Vec<u8>) -> Change {
    Change::GroupMetadata {
        group: group.to_string(),
        snapshot,
    }
}

/// Runs `f` on consumer-protocol group `group` (KIP-848) and records what
/// it changed in the group's offsets partition, returning once the record
/// has applied: a member acts on what it is told, so that is saved first.
/// A failed write leaves the group marked unsaved, and is reported as
/// Kafka's coordinator does, with an error a member retries.
pub async fn update_consumer_group<R>(
    broker: &Broker,
    group: &str,
    f: impl FnOnce(&mut ConsumerGroup) -> R,
) -> Result<R, ResponseError> {
    let ordered = broker.groups.consumer_save_order.lock().await;
    let (result, unsaved) = broker.with_consumer_group(group, |g| {
        let result = f(g);
        (result, g.take_unsaved())
    });
    let Some(snapshot) = unsaved else {
        return Ok(result);
    };
    let change = membership_record(group, consumer_group::encode(&snapshot));
    let queued = match offsets_partition(broker, group) {
        Ok(partition) => queue(broker, &partition, &[change]).await.map(|q| (partition, q)),
        Err(e) => Err(e),
    };
    drop(ordered);
    let written = match queued {
        Ok((partition, queued)) => applied(&partition, queued).await,
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => Ok(result),
        Err(error) => {
            broker.with_consumer_group(group, |g| g.mark_unsaved());
            Err(match error {
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress => error,
                _ => ResponseError::CoordinatorNotAvailable,
            })
        }
    }
}

/// Saves what a join or leave changed without completing a rebalance.
pub async fn save_unsaved_membership(broker: &Broker, group: &str) {
    if let Some(snapshot) = broker.with_group(group, |g| g.take_unsaved_snapshot()) {
        save_membership(broker, group, snapshot).await;
    }
}

/// Drives group timers (sessions, rebalance deadlines) and offset expiry.
pub async fn run_group_timers(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        interval.tick().await;
        for (group, unsaved) in broker.groups.tick(|id| offsets_partition(&broker, id).is_ok()) {
            match unsaved {
                Unsaved::Classic(snapshot) => save_membership(&broker, &group, snapshot).await,
                Unsaved::Consumer => {
                    if let Err(e) = update_consumer_group(&broker, &group, |_| ()).await {
                        tracing::warn!(group, "cannot save consumer group: {e:?}");
                    }
                }
            }
        }
        if last_expiry.elapsed() >= Duration::from_secs(60) {
            last_expiry = tokio::time::Instant::now();
            expire_offsets(&broker).await;
        }
    }
}

/// Kafka's offsets.retention.minutes: the offsets of a group that has had no
/// members for that long, and has not committed since, are deleted.
async fn expire_offsets(broker: &Broker) {
    let retention_ms = broker.config.offsets_retention_minutes.saturating_mul(60_000);
    let cutoff = now_ms() - retention_ms;
    for group in broker.state.offsets.groups() {
        let Ok(partition) = offsets_partition(broker, &group) else {
            continue;
        };
        let active =
            broker.groups.existing(&group, |g| !g.is_empty()).unwrap_or(false) || broker.consumer_group_in_use(&group);
        let offsets = broker.state.offsets.offsets(&group);
        if active || offsets.is_empty() || offsets.iter().any(|(_, o)| o.commit_timestamp > cutoff) {
            continue;
        }
        let changes: Vec<Change> = offsets
            .into_iter()
            .map(|((topic, partition), _)| Change::DeleteOffset {
                group: group.clone(),
                topic,
                partition,
            })
            .collect();
        match persist(broker, &partition, &changes).await {
            Ok(()) => tracing::info!(group, "expired the committed offsets of an empty group"),
            Err(e) => tracing::warn!(group, "cannot expire offsets: {e:?}"),
        }
    }
}
