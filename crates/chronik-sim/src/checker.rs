//! The invariants: what clients were told and saw, checked as it happens
//! and against the replicas at the end.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A topic and partition.
pub type TopicPartition = (String, i32);

#[derive(Default)]
pub struct Checker {
    /// Acknowledged records: offset → value, per partition.
    acked: BTreeMap<TopicPartition, BTreeMap<i64, Bytes>>,
    /// Records acknowledged from a leader's own log (acks=1) and proposed
    /// once: value → the offset it was given. They may be lost, but never
    /// stored elsewhere.
    acked_locally: BTreeMap<TopicPartition, BTreeMap<Bytes, i64>>,
    /// Every record a reader was given: offset → value, per partition.
    observed: BTreeMap<TopicPartition, BTreeMap<i64, Bytes>>,
    /// Values idempotent producers wrote; none may be stored twice.
    idempotent_values: BTreeSet<Bytes>,
    /// The highest offset commit acknowledged, per consumer group.
    committed: BTreeMap<String, i64>,
    /// Values written in transactions: undecided (`None`), committed or aborted.
    transactional: BTreeMap<Bytes, Option<bool>>,
    violations: Vec<String>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub acked_records: u64,
    /// Records acknowledged with acks=1.
    pub acked_locally: u64,
    pub read_records: u64,
    pub commits_acked: u64,
    pub offset_checks: u64,
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Records read by read_committed readers.
    pub read_committed: u64,
    /// Milliseconds groups slept, summed over the replicas.
    pub asleep_ms: u64,
}

impl Checker {
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn violate(&mut self, violation: String) {
        self.violations.push(violation);
    }

    /// A produce was answered with a refusal. Apply refuses a batch with
    /// KAFKA_STORAGE_ERROR only when the offset its leader assigned is not
    /// the log's next one: a defect in the forecast, which no fault makes.
    pub fn refused(&mut self, tp: &TopicPartition, error: ResponseError) {
        if error == ResponseError::KafkaStorageError {
            self.violate(format!(
                "{}-{}: a batch was refused for the offset its leader assigned",
                tp.0, tp.1
            ));
        }
    }

    /// A produce was acknowledged: `values` sit from `base_offset` on.
    pub fn acked(&mut self, tp: &TopicPartition, base_offset: i64, values: &[Bytes], idempotent: bool) {
        let acked = self.acked.entry(tp.clone()).or_default();
        for (offset, value) in (base_offset..).zip(values) {
            if let Some(earlier) = acked.insert(offset, value.clone())
                && earlier != *value
            {
                self.violations.push(format!(
                    "{}-{} offset {offset} acknowledged twice, for {:?} and for {:?}",
                    tp.0, tp.1, earlier, value
                ));
            }
            if idempotent {
                self.idempotent_values.insert(value.clone());
            }
            self.stats.acked_records += 1;
        }
    }

    /// An acks=1 produce was acknowledged: `values` were given offsets from
    /// `base_offset` on.
    pub fn acked_locally(&mut self, tp: &TopicPartition, base_offset: i64, values: &[Bytes]) {
        let acked = self.acked_locally.entry(tp.clone()).or_default();
        for (offset, value) in (base_offset..).zip(values) {
            acked.insert(value.clone(), offset);
            self.stats.acked_locally += 1;
        }
    }

    /// A reader was given `records` (offset, value) of `tp`.
    pub fn observed(&mut self, tp: &TopicPartition, records: &[(i64, Bytes)]) {
        let observed = self.observed.entry(tp.clone()).or_default();
        for (offset, value) in records {
            self.stats.read_records += 1;
            if let Some(earlier) = observed.insert(*offset, value.clone())
                && earlier != *value
            {
                self.violations.push(format!(
                    "{}-{} offset {offset} was read as {:?} and later as {:?}",
                    tp.0, tp.1, earlier, value
                ));
            }
        }
    }

    /// A transaction is about to write `values`.
    pub fn transaction_writes(&mut self, values: &[Bytes]) {
        for value in values {
            self.transactional.insert(value.clone(), None);
        }
    }

    /// A transaction was decided (before any of its markers is written).
    pub fn transaction_decided(&mut self, values: &[Bytes], commit: bool) {
        for value in values {
            self.transactional.insert(value.clone(), Some(commit));
        }
        if commit {
            self.stats.transactions_committed += 1;
        } else {
            self.stats.transactions_aborted += 1;
        }
    }

    /// A read_committed reader was given `records` of `tp`: none may come
    /// from a transaction that aborted or has not ended.
    pub fn read_committed(&mut self, tp: &TopicPartition, records: &[(i64, Bytes)]) {
        for (offset, value) in records {
            self.stats.read_committed += 1;
            match self.transactional.get(value) {
                Some(None) => self.violations.push(format!(
                    "{}-{} offset {offset}: read_committed was given {value:?} of a transaction still open",
                    tp.0, tp.1
                )),
                Some(Some(false)) => self.violations.push(format!(
                    "{}-{} offset {offset}: read_committed was given {value:?} of an aborted transaction",
                    tp.0, tp.1
                )),
                _ => {}
            }
        }
        self.observed(tp, records);
    }

    pub fn commit_acked(&mut self, group: &str, offset: i64) {
        self.stats.commits_acked += 1;
        let max = self.committed.entry(group.to_string()).or_insert(offset);
        *max = (*max).max(offset);
    }

    /// The coordinator answered a committed-offset query with `offset`.
    pub fn commit_read(&mut self, group: &str, offset: Option<i64>) {
        self.stats.offset_checks += 1;
        let Some(&acked) = self.committed.get(group) else {
            return;
        };
        if offset.is_none_or(|o| o < acked) {
            self.violations.push(format!(
                "group {group}: committed offset {acked} was acknowledged, but the coordinator reports {offset:?}"
            ));
        }
    }

    /// Checks a partition's final log (offset → value, from every replica
    /// once they agree) against everything acknowledged and read.
    pub fn check_final(&mut self, tp: &TopicPartition, log: &BTreeMap<i64, Bytes>) {
        for (offset, value) in self.acked.get(tp).into_iter().flatten() {
            match log.get(offset) {
                Some(stored) if stored == value => {}
                stored => self.violations.push(format!(
                    "{}-{} offset {offset}: acknowledged {:?}, the log holds {:?}",
                    tp.0, tp.1, value, stored
                )),
            }
        }
        for (offset, value) in self.observed.get(tp).into_iter().flatten() {
            if log.get(offset) != Some(value) {
                self.violations.push(format!(
                    "{}-{} offset {offset}: a reader saw {:?}, the log now holds {:?}",
                    tp.0,
                    tp.1,
                    value,
                    log.get(offset)
                ));
            }
        }
        let locally = self.acked_locally.get(tp);
        let mut seen = BTreeSet::new();
        for (offset, value) in log {
            if let Some(&given) = locally.and_then(|acked| acked.get(value))
                && given != *offset
            {
                self.violations.push(format!(
                    "{}-{} offset {offset}: {:?} was acknowledged (acks=1) at offset {given}",
                    tp.0, tp.1, value
                ));
            }
            if self.idempotent_values.contains(value) && !seen.insert(value.clone()) {
                self.violations.push(format!(
                    "{}-{} offset {offset}: idempotent value {:?} stored twice",
                    tp.0, tp.1, value
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        ("t".into(), 0)
    }

    #[test]
    fn every_kind_of_violation_is_reported() {
        let mut checker = Checker::default();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        checker.acked(&tp(), 0, &[a.clone(), b.clone()], true);
        checker.observed(&tp(), &[(0, a.clone())]);
        checker.observed(&tp(), &[(0, b.clone())]);
        assert_eq!(checker.violations().len(), 1, "an offset read with two values");
        checker.commit_acked("g", 5);
        checker.commit_read("g", Some(4));
        assert_eq!(checker.violations().len(), 2, "a commit went back");
        // Offset 1 lost, `a` stored twice, and the reader's `b` at 0 changed.
        let log = BTreeMap::from([(0, a.clone()), (2, a.clone())]);
        checker.check_final(&tp(), &log);
        assert_eq!(checker.violations().len(), 5, "{:#?}", checker.violations());
    }

    #[test]
    fn read_committed_must_not_see_open_or_aborted_transactions() {
        let mut checker = Checker::default();
        let (open, aborted, committed) = (
            Bytes::from_static(b"open"),
            Bytes::from_static(b"aborted"),
            Bytes::from_static(b"committed"),
        );
        checker.transaction_writes(&[open.clone(), aborted.clone(), committed.clone()]);
        checker.transaction_decided(std::slice::from_ref(&aborted), false);
        checker.transaction_decided(std::slice::from_ref(&committed), true);
        checker.read_committed(&tp(), &[(0, committed)]);
        assert!(checker.violations().is_empty());
        checker.read_committed(&tp(), &[(1, open), (2, aborted)]);
        assert_eq!(checker.violations().len(), 2, "{:#?}", checker.violations());
    }

    #[test]
    fn an_acks_1_record_may_be_lost_but_not_moved() {
        let mut checker = Checker::default();
        let (c, d, e) = (
            Bytes::from_static(b"c"),
            Bytes::from_static(b"d"),
            Bytes::from_static(b"e"),
        );
        checker.acked_locally(&tp(), 3, &[c.clone(), d.clone()]);
        checker.acked_locally(&tp(), 7, std::slice::from_ref(&e));
        // `c` where it was acknowledged, `d` lost (its offset reused), `e` moved.
        let log = BTreeMap::from([(3, c), (4, Bytes::from_static(b"other")), (5, e)]);
        checker.check_final(&tp(), &log);
        assert_eq!(checker.violations().len(), 1, "{:#?}", checker.violations());
        assert!(checker.violations()[0].contains("acknowledged (acks=1) at offset 7"));
    }
}
