//! A leader's forecast of its partitions: what the entries it has proposed
//! and not yet applied will do. It lets the leader refuse a batch before
//! proposing it, so that a refused batch never enters the Raft log, and
//! answer an acks=1 producer with its offset once the entry is in the
//! leader's own log.
//!
//! A forecast starts only when nothing is in flight (everything proposed is
//! applied), from the partition's applied state, and then sees every
//! proposal of the term in log order, deciding each with the same code as
//! apply (`append::append_batches`, `append::append_marker`). Apply checks
//! each predicted produce and marker against what it did. Any gap in the sequence
//! (another term, an entry appended outside it, a proposal raft-rs dropped)
//! ends the forecast, as do `MAX_PENDING` predictions not yet applied;
//! until the next one starts, entries are proposed unseen and answered once
//! applied.

use std::collections::VecDeque;

use chronik_log::control::Marker;
use chronik_raft::{Prediction, Proposed};
use kafka_protocol::ResponseError;

use super::append::{OffsetSink, append_batches, append_marker};
use crate::partition::Partition;
use crate::producer_state::ProducerStates;

/// Predictions kept per partition at most; past that the forecast ends.
const MAX_PENDING: usize = 100_000;

pub(crate) struct Forecast {
    term: u64,
    /// The index of the last entry it accounts for.
    through: u64,
    next_offset: i64,
    producers: ProducerStates,
    /// The outcome predicted per index, until applied: a produce's base
    /// offset (an error only for an entry partly appended before a later
    /// batch was refused), or a transaction marker's offset.
    predicted: VecDeque<(u64, Result<i64, ResponseError>)>,
}

impl Forecast {
    /// A forecast from `partition`'s applied state, if nothing is in flight.
    pub(crate) fn start(partition: &Partition, proposed: Proposed) -> Option<Forecast> {
        (proposed.leader_ready && proposed.applied + 1 == proposed.index).then(|| Forecast {
            term: proposed.term,
            through: proposed.applied,
            next_offset: partition.high_watermark(),
            producers: partition.producers().clone(),
            predicted: VecDeque::new(),
        })
    }

    /// Whether `proposed` follows what this forecast accounts for.
    pub(crate) fn continues(&self, proposed: Proposed) -> bool {
        proposed.term == self.term && proposed.index == self.through + 1 && self.predicted.len() < MAX_PENDING
    }

    /// Accounts for a proposal that is not a produce (it appends nothing).
    pub(crate) fn skip(&mut self, proposed: Proposed) {
        self.through = proposed.index;
    }

    /// Predicts the outcome of a produce entry of `batches` at
    /// `proposed.index`, with the base offset each of its batches is
    /// appended at (none for a duplicate; the list stops after a refused
    /// batch).
    /// An entry refused before anything in it would be appended changes
    /// nothing: it is a `Refusal`, and is not accounted for.
    pub(crate) fn produce(
        &mut self,
        proposed: Proposed,
        batches: &[u8],
    ) -> (Prediction<Result<i64, ResponseError>>, Vec<Option<i64>>) {
        let mut sink = OffsetSink::at(self.next_offset);
        let outcome = append_batches(&mut sink, &mut self.producers, batches);
        if outcome.is_err() && sink.next_offset == self.next_offset {
            // Producer state changes only with an append, so none changed.
            return (Prediction::Refusal(outcome), Vec::new());
        }
        self.next_offset = sink.next_offset;
        self.through = proposed.index;
        self.predicted.push_back((proposed.index, outcome));
        (Prediction::Outcome(outcome), sink.base_offsets)
    }

    /// Predicts a transaction marker at `proposed.index`: refused (a fenced
    /// coordinator's) without any change, or written at the next offset,
    /// which it returns.
    pub(crate) fn marker(
        &mut self,
        proposed: Proposed,
        marker: &Marker,
        log_start_offset: i64,
    ) -> Prediction<Result<i64, ResponseError>> {
        let mut sink = OffsetSink::at(self.next_offset);
        let marker_offset = self.next_offset;
        if let Err(refused) = append_marker(&mut sink, &mut self.producers, marker, log_start_offset) {
            // Refused by its checks, before the append: nothing changed.
            return Prediction::Refusal(Err(refused));
        }
        self.next_offset = sink.next_offset;
        self.through = proposed.index;
        self.predicted.push_back((proposed.index, Ok(marker_offset)));
        Prediction::Outcome(Ok(marker_offset))
    }

    /// Checks an applied entry of `term` at `index` against its prediction.
    /// An `Err` ends the forecast.
    pub(crate) fn applied(
        &mut self,
        index: u64,
        term: u64,
        outcome: Option<Result<i64, ResponseError>>,
    ) -> Result<(), Ended> {
        if term != self.term {
            return Err(Ended::AnotherTerm);
        }
        while let Some(&(predicted_index, predicted)) = self.predicted.front() {
            if predicted_index > index {
                break;
            }
            self.predicted.pop_front();
            if predicted_index == index && Some(predicted) != outcome {
                return Err(Ended::Mispredicted(format!(
                    "entry {index} applied as {outcome:?}, predicted {predicted:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Why a forecast ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Entries of another leader's term: proposals of this one may be gone.
    AnotherTerm,
    /// A prediction differed from what apply did: a defect.
    Mispredicted(String),
}
