//! The transaction coordinator: the state machine of each transactional id
//! this node coordinates (the leader of its `__transaction_state`
//! partition). Every state change is written to that partition and applied
//! before it is acted on, so a new coordinator (after a crash, or a leader
//! change) resumes each transaction where it stood: a decided outcome has
//! its markers written again, an open transaction times out.
//!
//! Ending a transaction: `PrepareCommit` (or `PrepareAbort`) is written,
//! which decides it; the markers are written into every partition it
//! touched; `CompleteCommit` (or `CompleteAbort`) is written.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_log::control::Marker;
use chronik_state::partition::Partition;
use chronik_state::transaction_state::{self, TxnMetadata, TxnStatus};
use kafka_protocol::ResponseError;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::markers;
use crate::Broker;
use crate::coordination;
use crate::groups::registry::now_ms;

/// How long ending a transaction waits for its markers before answering;
/// the coordinator's timer keeps trying after that.
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// Locks held per transactional id while its state changes, so that the
/// requests of one producer (and the timer) take turns.
#[derive(Default)]
pub struct TxnLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl TxnLocks {
    async fn lock(&self, transactional_id: &str) -> OwnedMutexGuard<()> {
        self.handle(transactional_id).lock_owned().await
    }

    fn try_lock(&self, transactional_id: &str) -> Option<OwnedMutexGuard<()>> {
        self.handle(transactional_id).try_lock_owned().ok()
    }

    fn handle(&self, transactional_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.len() > 10_000 {
            // Forget the locks nobody holds or waits for.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(transactional_id.to_string()).or_default().clone()
    }
}

/// The `__transaction_state` partition of `transactional_id`, if this node
/// coordinates it.
fn state_partition(broker: &Broker, transactional_id: &str) -> Result<Arc<Partition>, ResponseError> {
    coordination::led_partition(broker, transaction_state::TOPIC, transactional_id)
}

/// Writes the new state of `transactional_id` and waits until it applied.
async fn persist(
    broker: &Broker,
    partition: &Partition,
    transactional_id: &str,
    state: &TxnMetadata,
) -> Result<(), ResponseError> {
    let batch = transaction_state::encode(transactional_id, Some(state), now_ms());
    coordination::persist_batch(broker, partition, &batch).await
}

/// The producer id and epoch a request names must be the current ones.
fn check_producer(state: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), ResponseError> {
    if producer_id != state.producer_id {
        Err(ResponseError::InvalidProducerIdMapping)
    } else if producer_epoch != state.producer_epoch {
        Err(ResponseError::ProducerFenced)
    } else {
        Ok(())
    }
}

/// The state of `transactional_id`, which this node coordinates, for a
/// request of the producer it names; with the id's turn held.
async fn current(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(Arc<Partition>, OwnedMutexGuard<()>, TxnMetadata), ResponseError> {
    let partition = state_partition(broker, transactional_id)?;
    let turn = broker.transactions.lock(transactional_id).await;
    let state = broker
        .state
        .transactions
        .get(transactional_id)
        .ok_or(ResponseError::InvalidProducerIdMapping)?;
    check_producer(&state, producer_id, producer_epoch)?;
    Ok((partition, turn, state))
}

/// The next epoch of the producer, or a new producer id once the epoch is
/// exhausted.
async fn bumped(broker: &Broker, state: &TxnMetadata) -> Result<(i64, i16), ResponseError> {
    if state.producer_epoch < i16::MAX - 1 {
        return Ok((state.producer_id, state.producer_epoch + 1));
    }
    let id = broker.new_producer_id().await.map_err(|e| e.error)?;
    Ok((id, 0))
}

fn fresh(producer_id: i64, producer_epoch: i16, timeout_ms: i32, now: i64) -> TxnMetadata {
    TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        status: TxnStatus::Empty,
        partitions: BTreeSet::new(),
        started_ms: -1,
        updated_ms: now,
    }
}

/// InitProducerId with a transactional id: a new producer id, or the next
/// epoch of the current one, which fences every older instance. An open
/// transaction is aborted first, under the new epoch.
pub async fn init_producer_id(
    broker: &Broker,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    if timeout_ms <= 0 || timeout_ms > broker.config.transaction_max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let partition = state_partition(broker, transactional_id)?;
    let _turn = broker.transactions.lock(transactional_id).await;
    let now = now_ms();
    let Some(state) = broker.state.transactions.get(transactional_id) else {
        let id = broker.new_producer_id().await.map_err(|e| e.error)?;
        persist(broker, &partition, transactional_id, &fresh(id, 0, timeout_ms, now)).await?;
        return Ok((id, 0));
    };
    // KIP-360: a producer that names its id and epoch must hold the current
    // ones (or be retrying the bump that made them current).
    if let Some((id, epoch)) = expected
        && id >= 0
        && !(id == state.producer_id
            && (epoch == state.producer_epoch || i32::from(epoch) + 1 == i32::from(state.producer_epoch)))
    {
        return Err(ResponseError::ProducerFenced);
    }
    match state.status {
        status if status.is_preparing() => Err(ResponseError::ConcurrentTransactions),
        TxnStatus::Ongoing => {
            let (id, epoch) = bumped(broker, &state).await?;
            let mut aborting = state.clone();
            aborting.timeout_ms = timeout_ms;
            if id == state.producer_id {
                aborting.producer_epoch = epoch;
            }
            tracing::info!(transactional_id, "aborting the open transaction of a fenced producer");
            end(broker, &partition, transactional_id, aborting, false).await?;
            if id != state.producer_id {
                persist(broker, &partition, transactional_id, &fresh(id, epoch, timeout_ms, now)).await?;
            }
            Ok((id, epoch))
        }
        _ => {
            let (id, epoch) = bumped(broker, &state).await?;
            persist(broker, &partition, transactional_id, &fresh(id, epoch, timeout_ms, now)).await?;
            Ok((id, epoch))
        }
    }
}

/// AddPartitionsToTxn and AddOffsetsToTxn: the transaction (opened by its
/// first partition) now includes `added`.
pub async fn add_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    added: &[(String, i32)],
) -> Result<(), ResponseError> {
    let (partition, _turn, state) = current(broker, transactional_id, producer_id, producer_epoch).await?;
    if state.status.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    let ongoing = state.status == TxnStatus::Ongoing;
    if ongoing && added.iter().all(|p| state.partitions.contains(p)) {
        return Ok(());
    }
    let now = now_ms();
    let mut next = state;
    if !ongoing {
        next.partitions.clear();
        next.started_ms = now;
    }
    next.status = TxnStatus::Ongoing;
    next.partitions.extend(added.iter().cloned());
    next.updated_ms = now;
    persist(broker, &partition, transactional_id, &next).await
}

/// EndTxn: commits or aborts the open transaction. A retry of an end that
/// completed succeeds again.
pub async fn end_txn(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), ResponseError> {
    let (partition, _turn, state) = current(broker, transactional_id, producer_id, producer_epoch).await?;
    match (state.status, commit) {
        (TxnStatus::Ongoing, _) => end(broker, &partition, transactional_id, state, commit).await,
        (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => Ok(()),
        (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// Decides the transaction `state` describes (writing PrepareCommit or
/// PrepareAbort), then completes it. Once the decision is written the end
/// succeeds: markers that cannot be written yet are left to the timer.
async fn end(
    broker: &Broker,
    partition: &Partition,
    transactional_id: &str,
    mut state: TxnMetadata,
    commit: bool,
) -> Result<(), ResponseError> {
    state.status = if commit {
        TxnStatus::PrepareCommit
    } else {
        TxnStatus::PrepareAbort
    };
    state.updated_ms = now_ms();
    persist(broker, partition, transactional_id, &state).await?;
    if let Err(e) = complete(broker, partition, transactional_id, state).await {
        tracing::warn!(transactional_id, "the transaction ends later: {e}");
    }
    Ok(())
}

/// Writes the markers of a decided transaction, then its completion.
async fn complete(
    broker: &Broker,
    partition: &Partition,
    transactional_id: &str,
    mut state: TxnMetadata,
) -> Result<(), String> {
    debug_assert!(state.status.is_preparing(), "only a decided transaction completes");
    let commit = state.status == TxnStatus::PrepareCommit;
    let marker = Marker {
        producer_id: state.producer_id,
        producer_epoch: state.producer_epoch,
        commit,
        coordinator_epoch: broker.serving_epoch(partition.group).unwrap_or(-1),
        timestamp: now_ms(),
    };
    markers::write_all(broker, marker, &state.partitions, Instant::now() + MARKER_WAIT).await?;
    state.status = if commit {
        TxnStatus::CompleteCommit
    } else {
        TxnStatus::CompleteAbort
    };
    state.partitions.clear();
    state.started_ms = -1;
    state.updated_ms = now_ms();
    persist(broker, partition, transactional_id, &state)
        .await
        .map_err(|e| format!("cannot record the completion: {e:?}"))
}

/// Drives the transactions this node coordinates: an open one past its
/// timeout is aborted under a bumped epoch (fencing its producer), and a
/// decided one whose markers are not all written (its coordinator failed,
/// or a partition was unavailable) is completed.
pub async fn run_transaction_timers(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for (transactional_id, state) in broker.state.transactions.all() {
            let expired = state.status == TxnStatus::Ongoing
                && now_ms().saturating_sub(state.started_ms) > i64::from(state.timeout_ms);
            if !expired && !state.status.is_preparing() {
                continue;
            }
            let Ok(partition) = state_partition(&broker, &transactional_id) else {
                continue;
            };
            // A request of the producer holds the id: look again next tick.
            let Some(_turn) = broker.transactions.try_lock(&transactional_id) else {
                continue;
            };
            let Some(state) = broker.state.transactions.get(&transactional_id) else {
                continue;
            };
            if state.status.is_preparing() {
                if let Err(e) = complete(&broker, &partition, &transactional_id, state).await {
                    tracing::warn!(transactional_id, "cannot complete a decided transaction yet: {e}");
                }
            } else if state.status == TxnStatus::Ongoing
                && now_ms().saturating_sub(state.started_ms) > i64::from(state.timeout_ms)
            {
                tracing::info!(
                    transactional_id,
                    timeout_ms = state.timeout_ms,
                    "aborting a transaction that timed out"
                );
                let mut aborting = state;
                // The bump fences the producer; at the last epoch it cannot
                // be bumped, and the producer learns of the abort at EndTxn.
                if aborting.producer_epoch < i16::MAX - 1 {
                    aborting.producer_epoch += 1;
                }
                if let Err(e) = end(&broker, &partition, &transactional_id, aborting, false).await {
                    tracing::warn!(transactional_id, "cannot abort a timed-out transaction yet: {e:?}");
                }
            }
        }
    }
}
