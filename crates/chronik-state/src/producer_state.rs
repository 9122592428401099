//! Idempotent and transactional producer state of one partition: per
//! producer id, its epoch, the last batches it wrote and where its open
//! transaction began; and the transactions aborted here. Part of the
//! partition's replicated state: every replica reaches the same decisions
//! because they are made at apply time.

use std::collections::{BTreeMap, VecDeque};

use chronik_log::BatchHeader;
use chronik_log::control::{AbortedTxn, Marker};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Batches remembered per producer for duplicate detection, as in Kafka
/// (max.in.flight.requests.per.connection may be at most 5 with idempotence).
pub const REMEMBERED_BATCHES: usize = 5;

/// Bound on producers tracked per partition; the least recently written is
/// forgotten beyond it (its next write then needs a fresh epoch or sequence 0).
pub const MAX_PRODUCERS: usize = 10_000;

/// Bound on the aborted transactions remembered; the oldest go first. Their
/// data is then served to read_committed consumers as if committed, so the
/// bound is far above what retention leaves in a partition in practice.
pub const MAX_ABORTED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct WrittenBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Producer {
    epoch: i16,
    batches: VecDeque<WrittenBatch>,
    /// Apply order of its last write, to forget the stalest producer first.
    last_write: u64,
    /// The max timestamp of its last batch (absent in older checkpoints).
    #[serde(default)]
    last_timestamp: i64,
}

/// What DescribeProducers reports of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// Where its open transaction began, if one is open.
    pub current_txn_start_offset: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    producers: BTreeMap<i64, Producer>,
    writes: u64,
    /// Per producer with a transaction open here, its first offset: kept
    /// apart from `producers` so the last stable offset, read by every
    /// fetch, costs the open transactions only.
    #[serde(default)]
    open: BTreeMap<i64, i64>,
    /// In the order their markers were written (absent in older checkpoints).
    #[serde(default)]
    aborted: VecDeque<AbortedTxn>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already written: answer with its original base offset, write nothing.
    Duplicate {
        base_offset: i64,
    },
    Reject(ResponseError),
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

/// A transaction's offsets, written by a group coordinator for its
/// producer (TxnOffsetCommit): no sequence, only the epoch is checked. The
/// Produce path refuses such batches from clients.
fn written_by_coordinator(header: &BatchHeader) -> bool {
    header.is_transactional() && header.base_sequence == NO_SEQUENCE
}

/// The base sequence of a batch without one.
pub const NO_SEQUENCE: i32 = -1;

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as Kafka's do.
    ((header.base_sequence as i64 + header.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

impl ProducerStates {
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id < 0 {
            return SequenceCheck::Append;
        }
        if written_by_coordinator(header) {
            return match self.producers.get(&header.producer_id) {
                Some(producer) if header.producer_epoch < producer.epoch => {
                    SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
                }
                _ => SequenceCheck::Append,
            };
        }
        let Some(producer) = self.producers.get(&header.producer_id) else {
            // A new producer (or a forgotten one) must start its sequence at 0.
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        };
        if header.producer_epoch < producer.epoch {
            return SequenceCheck::Reject(ResponseError::InvalidProducerEpoch);
        }
        if header.producer_epoch > producer.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        let last = last_sequence(header);
        if let Some(written) = producer
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return SequenceCheck::Duplicate {
                base_offset: written.base_offset,
            };
        }
        match producer.batches.back() {
            Some(previous) if header.base_sequence != next_sequence(previous.last_sequence) => {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            // Known only from a marker: its sequence starts afresh.
            None if header.base_sequence != 0 => SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber),
            _ => SequenceCheck::Append,
        }
    }

    /// Whether a transaction marker may be written: the coordinator of an
    /// older epoch of the producer is a zombie.
    pub fn check_marker(&self, marker: &Marker) -> Result<(), ResponseError> {
        match self.producers.get(&marker.producer_id) {
            Some(producer) if marker.producer_epoch < producer.epoch => Err(ResponseError::InvalidProducerEpoch),
            _ => Ok(()),
        }
    }

    /// Records a marker written at `offset`: the producer's open
    /// transaction here (if any) ends, and is remembered if it aborted.
    /// `log_start` lets aborted transactions below it be forgotten.
    pub fn end_transaction(&mut self, marker: &Marker, offset: i64, log_start: i64) {
        debug_assert!(
            self.check_marker(marker).is_ok(),
            "markers are checked before they are written"
        );
        self.writes += 1;
        let producer = self.producers.entry(marker.producer_id).or_insert_with(|| Producer {
            epoch: marker.producer_epoch,
            batches: VecDeque::new(),
            last_write: 0,
            last_timestamp: -1,
        });
        if marker.producer_epoch > producer.epoch {
            // A coordinator's abort on timeout bumps the epoch: the old one is fenced.
            producer.epoch = marker.producer_epoch;
            producer.batches.clear();
        }
        producer.last_write = self.writes;
        if let (Some(first_offset), false) = (self.open.remove(&marker.producer_id), marker.commit) {
            self.aborted.push_back(AbortedTxn {
                producer_id: marker.producer_id,
                first_offset,
                last_offset: offset,
            });
        }
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start || self.aborted.len() > MAX_ABORTED)
        {
            self.aborted.pop_front();
        }
        self.forget_stalest();
    }

    /// The first offset of the earliest open transaction: the last stable
    /// offset, if any transaction is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.values().min().copied()
    }

    /// The aborted transactions with data in `from..to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> impl Iterator<Item = &AbortedTxn> {
        self.aborted
            .iter()
            .filter(move |a| a.last_offset >= from && a.first_offset < to)
    }

    /// Every aborted transaction remembered, oldest first.
    pub fn aborted(&self) -> Vec<AbortedTxn> {
        self.aborted.iter().copied().collect()
    }

    /// The producers this partition remembers, by id.
    pub fn summaries(&self) -> impl Iterator<Item = ProducerSummary> + '_ {
        self.producers.iter().map(|(id, p)| ProducerSummary {
            producer_id: *id,
            epoch: p.epoch,
            last_sequence: p.batches.back().map_or(-1, |b| b.last_sequence),
            last_timestamp: p.last_timestamp,
            current_txn_start_offset: self.open.get(id).copied(),
        })
    }

    /// Records a batch that was appended at `base_offset`.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        if header.producer_id < 0 {
            return;
        }
        self.writes += 1;
        let producer = self.producers.entry(header.producer_id).or_insert_with(|| Producer {
            epoch: header.producer_epoch,
            batches: VecDeque::new(),
            last_write: 0,
            last_timestamp: -1,
        });
        if header.producer_epoch != producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        producer.last_write = self.writes;
        producer.last_timestamp = header.max_timestamp;
        if !written_by_coordinator(header) {
            producer.batches.push_back(WrittenBatch {
                first_sequence: header.base_sequence,
                last_sequence: last_sequence(header),
                base_offset,
            });
        }
        if producer.batches.len() > REMEMBERED_BATCHES {
            producer.batches.pop_front();
        }
        if header.is_transactional() {
            self.open.entry(header.producer_id).or_insert(base_offset);
        }
        self.forget_stalest();
    }

    /// Keeps at most MAX_PRODUCERS; one with an open transaction is kept,
    /// since it holds the last stable offset back.
    fn forget_stalest(&mut self) {
        if self.producers.len() > MAX_PRODUCERS {
            let stalest = self
                .producers
                .iter()
                .filter(|(id, _)| !self.open.contains_key(id))
                .min_by_key(|(_, p)| p.last_write)
                .map(|(id, _)| *id);
            if let Some(id) = stalest {
                self.producers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        let batch = chronik_log::testing::build_batch(records as u32, 0, 1);
        let mut header = chronik_log::parse_header(&batch).unwrap();
        header.producer_id = producer_id;
        header.producer_epoch = epoch;
        header.base_sequence = base_sequence;
        header
    }

    fn write(states: &mut ProducerStates, h: &BatchHeader, offset: i64) -> SequenceCheck {
        let check = states.check(h);
        if check == SequenceCheck::Append {
            states.record(h, offset);
        }
        check
    }

    #[test]
    fn in_order_batches_append_and_duplicates_return_original_offsets() {
        let mut states = ProducerStates::default();
        assert_eq!(write(&mut states, &header(7, 0, 0, 3), 0), SequenceCheck::Append);
        assert_eq!(write(&mut states, &header(7, 0, 3, 2), 3), SequenceCheck::Append);
        assert_eq!(
            write(&mut states, &header(7, 0, 0, 3), 9),
            SequenceCheck::Duplicate { base_offset: 0 }
        );
        assert_eq!(
            write(&mut states, &header(7, 0, 3, 2), 9),
            SequenceCheck::Duplicate { base_offset: 3 }
        );
        assert_eq!(write(&mut states, &header(7, 0, 5, 1), 5), SequenceCheck::Append);
    }

    #[test]
    fn gaps_old_epochs_and_unknown_producers_are_refused() {
        let mut states = ProducerStates::default();
        let out_of_order = SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber);
        assert_eq!(write(&mut states, &header(1, 0, 4, 1), 0), out_of_order);
        assert_eq!(write(&mut states, &header(1, 2, 0, 1), 0), SequenceCheck::Append);
        assert_eq!(write(&mut states, &header(1, 2, 5, 1), 1), out_of_order);
        assert_eq!(
            write(&mut states, &header(1, 1, 1, 1), 1),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
        // A bumped epoch restarts at sequence 0.
        assert_eq!(write(&mut states, &header(1, 3, 1, 1), 1), out_of_order);
        assert_eq!(write(&mut states, &header(1, 3, 0, 1), 1), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            assert_eq!(write(&mut states, &header(1, 0, i, 1), i as i64), SequenceCheck::Append);
        }
        assert_eq!(
            states.check(&header(1, 0, 6, 1)),
            SequenceCheck::Duplicate { base_offset: 6 }
        );
        assert_eq!(
            states.check(&header(1, 0, 2, 1)),
            SequenceCheck::Duplicate { base_offset: 2 }
        );
        assert_eq!(
            states.check(&header(1, 0, 1, 1)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let wrapping = header(1, 0, 0, 1);
        states.record(&wrapping, 0);
        let near_end = header(1, 0, i32::MAX - 1, 3);
        assert_eq!(last_sequence(&near_end), 0, "MAX-1, MAX, then 0");
        // Pretend the producer reached MAX-2, then the wrapping batch follows it.
        let mut before = header(1, 0, 1, 1);
        before.base_sequence = i32::MAX - 2;
        states.record(&before, 1);
        assert_eq!(states.check(&near_end), SequenceCheck::Append);
        states.record(&near_end, 2);
        assert_eq!(states.check(&header(1, 0, 1, 1)), SequenceCheck::Append);
    }

    fn marker(producer_id: i64, producer_epoch: i16, commit: bool) -> Marker {
        Marker {
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch: 0,
            timestamp: 0,
        }
    }

    fn transactional(producer_id: i64, epoch: i16, base_sequence: i32) -> BatchHeader {
        let mut h = header(producer_id, epoch, base_sequence, 2);
        h.attributes |= 1 << 4;
        h
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_remembered() {
        let mut states = ProducerStates::default();
        assert_eq!(write(&mut states, &transactional(1, 0, 0), 10), SequenceCheck::Append);
        assert_eq!(write(&mut states, &transactional(2, 0, 0), 12), SequenceCheck::Append);
        assert_eq!(write(&mut states, &transactional(1, 0, 2), 14), SequenceCheck::Append);
        assert_eq!(states.first_unstable_offset(), Some(10));
        states.end_transaction(&marker(1, 0, true), 16, 0);
        assert_eq!(states.first_unstable_offset(), Some(12));
        states.end_transaction(&marker(2, 0, false), 17, 0);
        assert_eq!(states.first_unstable_offset(), None);
        let aborted: Vec<_> = states.aborted_between(0, 100).copied().collect();
        assert_eq!(
            aborted,
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 12,
                last_offset: 17
            }]
        );
        assert_eq!(states.aborted_between(18, 100).count(), 0);
        assert_eq!(states.aborted_between(0, 12).count(), 0);
        // A committed producer continues its sequence in the next transaction.
        assert_eq!(write(&mut states, &transactional(1, 0, 4), 18), SequenceCheck::Append);
        assert_eq!(states.first_unstable_offset(), Some(18));
        // Moving the log start past an abort forgets it at the next marker.
        states.end_transaction(&marker(1, 0, true), 20, 18);
        assert_eq!(states.aborted().len(), 0);
    }

    #[test]
    fn a_marker_of_a_newer_epoch_fences_the_producer_and_an_older_one_is_refused() {
        let mut states = ProducerStates::default();
        write(&mut states, &transactional(1, 3, 0), 0);
        states.end_transaction(&marker(1, 4, false), 2, 0);
        assert_eq!(
            states.check(&transactional(1, 3, 2)),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch),
            "the zombie of epoch 3 is fenced"
        );
        assert_eq!(
            states.check_marker(&marker(1, 3, true)),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(&transactional(1, 4, 5)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(states.check(&transactional(1, 4, 0)), SequenceCheck::Append);
        // A marker for a producer this partition never saw is recorded too.
        states.end_transaction(&marker(8, 2, true), 3, 0);
        assert_eq!(
            states.check(&transactional(8, 1, 0)),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
    }

    #[test]
    fn state_survives_serialization() {
        let mut states = ProducerStates::default();
        write(&mut states, &header(9, 1, 0, 4), 10);
        write(&mut states, &transactional(3, 0, 0), 14);
        write(&mut states, &transactional(4, 0, 0), 16);
        states.end_transaction(&marker(4, 0, false), 18, 0);
        let restored: ProducerStates = serde_json::from_slice(&serde_json::to_vec(&states).unwrap()).unwrap();
        assert_eq!(restored, states);
        assert_eq!(
            restored.check(&header(9, 1, 0, 4)),
            SequenceCheck::Duplicate { base_offset: 10 }
        );
    }
}
