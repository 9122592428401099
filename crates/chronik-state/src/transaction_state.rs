//! The internal `__transaction_state` topic: one record per transactional
//! id, its latest state, and the view every replica builds from them.
//!
//! The coordinator of a transactional id is the leader of its partition
//! (chosen as Kafka chooses, like a group's offsets partition). Every
//! change of a transaction is a record written through that partition's
//! Raft group before the coordinator acts on it, so a new leader resumes
//! each transaction where the last one left it. The topic is compacted:
//! only the latest record of each id matters. Keys and values are JSON.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record, RecordBatchDecoder,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

pub const TOPIC: &str = "__transaction_state";

/// Where a transaction stands (Kafka's TransactionState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStatus {
    /// No transaction open; the producer may start one.
    Empty,
    Ongoing,
    /// The outcome is decided and recorded; markers are being written.
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnStatus {
    /// Kafka's name, as DescribeTransactions and ListTransactions show it.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are being written: the outcome is fixed, not yet everywhere.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

/// The state of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// The partitions the open (or ending) transaction wrote to.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began, in ms since the epoch; -1 if none.
    pub started_ms: i64,
    /// When the state last changed.
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    transactional_id: String,
}

/// The record of `transactional_id`'s state; `None` deletes it.
pub fn encode(transactional_id: &str, state: Option<&TxnMetadata>, timestamp: i64) -> Bytes {
    let key = Key {
        transactional_id: transactional_id.to_string(),
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: NO_SEQUENCE,
        timestamp,
        key: Some(Bytes::from(serde_json::to_vec(&key).expect("keys serialize"))),
        value: state.map(|s| Bytes::from(serde_json::to_vec(s).expect("states serialize"))),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [record].iter(), &options).expect("state records encode");
    buf.freeze()
}

/// Every transactional id's latest state, as the applied records of
/// `__transaction_state` say.
#[derive(Debug, Default)]
pub struct TransactionsView {
    states: Mutex<HashMap<String, TxnMetadata>>,
}

impl TransactionsView {
    /// Applies the records of stored batches (as appended to the log).
    pub fn apply_batches(&self, mut batches: Bytes) {
        let sets = match RecordBatchDecoder::decode_all(&mut batches) {
            Ok(sets) => sets,
            Err(e) => {
                tracing::error!("undecodable {TOPIC} batch: {e}");
                return;
            }
        };
        let mut states = self.lock();
        for record in sets.iter().flat_map(|s| &s.records) {
            let Some(key) = record.key.as_ref().and_then(|k| serde_json::from_slice::<Key>(k).ok()) else {
                tracing::warn!(offset = record.offset, "skipping an unrecognised {TOPIC} record");
                continue;
            };
            match record.value.as_ref().map(|v| serde_json::from_slice::<TxnMetadata>(v)) {
                Some(Ok(state)) => {
                    states.insert(key.transactional_id, state);
                }
                Some(Err(e)) => tracing::warn!(offset = record.offset, "skipping an undecodable {TOPIC} state: {e}"),
                None => {
                    states.remove(&key.transactional_id);
                }
            }
        }
    }

    pub fn get(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.lock().get(transactional_id).cloned()
    }

    /// Every transactional id with its state.
    pub fn all(&self) -> Vec<(String, TxnMetadata)> {
        self.lock().iter().map(|(id, s)| (id.clone(), s.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TxnMetadata>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: TxnStatus) -> TxnMetadata {
        TxnMetadata {
            producer_id: 4,
            producer_epoch: 1,
            timeout_ms: 60_000,
            status,
            partitions: [("t".to_string(), 0)].into(),
            started_ms: 10,
            updated_ms: 11,
        }
    }

    #[test]
    fn the_latest_record_of_an_id_is_its_state() {
        let view = TransactionsView::default();
        let batch = encode("tx", Some(&state(TxnStatus::Ongoing)), 1);
        assert!(chronik_log::validate_batch(&batch).is_ok());
        view.apply_batches(batch);
        view.apply_batches(encode("tx", Some(&state(TxnStatus::PrepareCommit)), 2));
        assert_eq!(view.get("tx").unwrap().status, TxnStatus::PrepareCommit);
        assert_eq!(view.all().len(), 1);
        view.apply_batches(encode("tx", None, 3));
        assert!(view.get("tx").is_none());
    }
}
