//! A leader's forecast of its partitions: what the produce entries it has
//! proposed and not yet applied will do, so that an acks=1 producer can be
//! answered with its offset once the entry is in the leader's own log.
//!
//! A forecast starts only when nothing is in flight (everything proposed is
//! applied), from the partition's applied state, and then sees every
//! proposal of the term in log order, deciding each with the same code as
//! apply (`append::append_batches`). Apply checks each prediction against
//! what it did. Any gap in the sequence (another term, an entry proposed
//! outside it) ends the forecast; those proposals are answered once applied.

use std::collections::VecDeque;

use chronik_raft::Proposed;
use kafka_protocol::ResponseError;

use super::append::{OffsetSink, append_batches};
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
    /// Base offset (or refusal) predicted per index, until applied.
    predicted: VecDeque<(u64, Result<i64, ResponseError>)>,
}

impl Forecast {
    /// A forecast from `partition`'s applied state, if nothing is in flight.
    pub(crate) fn start(partition: &Partition, proposed: Proposed) -> Option<Forecast> {
        (proposed.leader_ready && proposed.applied + 1 == proposed.index).then(|| Forecast {
            term: proposed.term,
            through: proposed.applied,
            next_offset: partition.log().next_offset(),
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

    /// Predicts the outcome of a produce entry of `batches` at `proposed.index`.
    pub(crate) fn produce(&mut self, proposed: Proposed, batches: &[u8]) -> Result<i64, ResponseError> {
        let mut sink = OffsetSink {
            next_offset: self.next_offset,
        };
        let outcome = append_batches(&mut sink, &mut self.producers, batches);
        self.next_offset = sink.next_offset;
        self.through = proposed.index;
        self.predicted.push_back((proposed.index, outcome));
        outcome
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
