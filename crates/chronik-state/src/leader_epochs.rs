//! A partition's leader epochs: the offset at which each epoch's first
//! batch was written (Kafka's leader-epoch cache). The epoch of a batch is
//! the Raft term of the entry that carried it, so every replica stamps the
//! same epoch on the same batch and keeps the same cache. Consumers ask for
//! an epoch's end offset (OffsetForLeaderEpoch) to tell whether the log they
//! read was truncated under them.

use serde::{Deserialize, Serialize};

/// Epochs kept at most; older ones are forgotten first. A partition gets a
/// new epoch only when its leadership moves and it is written to.
const MAX_EPOCHS: usize = 4096;

/// The epoch Kafka reports when none applies.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEpochs {
    /// `(epoch, first offset written in it)`, both strictly increasing.
    starts: Vec<(i32, i64)>,
}

/// The leader epoch of a Raft term.
pub fn epoch_of_term(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

impl LeaderEpochs {
    /// Notes a batch of `epoch` written at `offset`.
    pub fn record(&mut self, epoch: i32, offset: i64) {
        match self.starts.last() {
            Some(&(last, start)) if epoch <= last => {
                debug_assert!(epoch == last && offset >= start, "epochs and offsets only grow");
            }
            _ => {
                self.starts.push((epoch, offset));
                if self.starts.len() > MAX_EPOCHS {
                    self.starts.remove(0);
                }
            }
        }
    }

    /// Forgets the epochs that started at or after `offset`: the log was cut
    /// back there and the entries that follow are applied again.
    pub fn truncate_to(&mut self, offset: i64) {
        self.starts.retain(|&(_, start)| start < offset);
    }

    /// The largest epoch up to `requested` and the offset where the epoch
    /// after it starts, as Kafka's `LeaderEpochFileCache.endOffsetFor`.
    /// `current` is the leader's epoch now; `log_end` its log end offset.
    pub fn end_offset_for(&self, requested: i32, current: i32, log_end: i64) -> (i32, i64) {
        if requested < 0 || requested > current {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if requested == current {
            return (current, log_end);
        }
        let higher = self.starts.iter().find(|&&(epoch, _)| epoch > requested);
        let floor = self.starts.iter().rev().find(|&&(epoch, _)| epoch <= requested);
        match (floor, higher) {
            // The next epoch began at the log end (the current leader's,
            // which has written nothing yet).
            (Some(&(epoch, _)), None) => (epoch, log_end),
            (None, None) => (requested, log_end),
            (Some(&(epoch, _)), Some(&(_, start))) => (epoch, start),
            (None, Some(&(_, start))) => (requested, start),
        }
    }

    pub fn latest(&self) -> Option<i32> {
        self.starts.last().map(|&(epoch, _)| epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LeaderEpochs {
        let mut epochs = LeaderEpochs::default();
        epochs.record(2, 0);
        epochs.record(2, 10);
        epochs.record(5, 20);
        epochs.record(7, 35);
        epochs
    }

    #[test]
    fn an_epoch_ends_where_the_next_one_starts() {
        let epochs = cache();
        assert_eq!(epochs.end_offset_for(2, 9, 50), (2, 20));
        assert_eq!(epochs.end_offset_for(3, 9, 50), (2, 20));
        assert_eq!(epochs.end_offset_for(5, 9, 50), (5, 35));
        assert_eq!(epochs.end_offset_for(7, 9, 50), (7, 50));
        assert_eq!(epochs.end_offset_for(8, 9, 50), (7, 50));
        assert_eq!(epochs.end_offset_for(9, 9, 50), (9, 50));
        assert_eq!(epochs.end_offset_for(1, 9, 50), (1, 0));
    }

    #[test]
    fn unknown_epochs_are_undefined() {
        let epochs = cache();
        assert_eq!(epochs.end_offset_for(10, 9, 50), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert_eq!(epochs.end_offset_for(-1, 9, 50), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert_eq!(LeaderEpochs::default().end_offset_for(3, 4, 0), (3, 0));
    }

    #[test]
    fn truncation_forgets_later_epochs() {
        let mut epochs = cache();
        epochs.truncate_to(20);
        assert_eq!(epochs.latest(), Some(2));
        epochs.record(6, 20);
        assert_eq!(epochs.end_offset_for(2, 9, 30), (2, 20));
    }
}
