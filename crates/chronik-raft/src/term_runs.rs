//! The terms of a group's stored entries, kept in memory as runs.
//!
//! raft-rs asks for the term of an applied entry on every lease renewal (the
//! committed entry, through `commit_to_current_term`), and a follower for the
//! term of its last entry on every append. Once the entry cache has released
//! such an entry, the only other answer was raft-engine's `get_entry`, which
//! reads the whole entry (up to a MiB of records) back to learn eight bytes.
//! Terms change rarely, so one `(first index, term)` pair per change covers
//! every entry.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

pub(crate) struct TermRuns {
    /// Entries below `from` were stored before this node started; their
    /// terms are not known here.
    from: u64,
    /// The last index stored; covered unless `last < from`.
    last: u64,
    /// `(first index, term)`, ascending by index, each term differing from
    /// the one before.
    runs: VecDeque<(u64, u64)>,
}

impl TermRuns {
    /// Covers nothing yet; the next entry appended is `last_index + 1`.
    pub(crate) fn after(last_index: u64) -> Self {
        TermRuns {
            from: last_index + 1,
            last: last_index,
            runs: VecDeque::new(),
        }
    }

    /// Records entries just written to the log store. Like the store, they
    /// replace every entry from their first index on.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        if first.index < self.from || first.index > self.last + 1 {
            // Earlier than anything known, or after a gap (a snapshot):
            // coverage restarts here.
            self.from = first.index;
            self.runs.clear();
        } else {
            while self.runs.back().is_some_and(|&(start, _)| start >= first.index) {
                self.runs.pop_back();
            }
        }
        for entry in entries {
            if self.runs.back().map(|&(_, term)| term) != Some(entry.term) {
                self.runs.push_back((entry.index, entry.term));
            }
        }
        self.last = last.index;
        debug_assert!(
            self.runs.front().is_some_and(|&(start, _)| start <= self.from),
            "the first run covers the first known index"
        );
    }

    /// Forgets entries up to and including `index`, as compaction does.
    pub(crate) fn compact_to(&mut self, index: u64) {
        let next = index + 1;
        while self.runs.get(1).is_some_and(|&(start, _)| start <= next) {
            self.runs.pop_front();
        }
        self.from = self.from.max(next);
    }

    /// Covers nothing again, as after a snapshot replaced the log.
    pub(crate) fn reset_after(&mut self, last_index: u64) {
        *self = TermRuns::after(last_index);
    }

    /// The last index stored, whether or not its term is known here.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index < self.from || index > self.last {
            return None;
        }
        let after = self.runs.partition_point(|&(start, _)| start <= index);
        self.runs.get(after.checked_sub(1)?).map(|&(_, term)| term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: first + i as u64,
                term,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn knows_only_what_was_appended_since_start() {
        let mut runs = TermRuns::after(10);
        assert_eq!(runs.term(10), None, "stored before the start");
        runs.append(&entries(11, &[2, 2, 3]));
        assert_eq!(
            (runs.term(10), runs.term(11), runs.term(12), runs.term(13)),
            (None, Some(2), Some(2), Some(3))
        );
        assert_eq!(runs.term(14), None, "not stored yet");
        assert_eq!(runs.runs.len(), 2, "one run per term");
    }

    #[test]
    fn a_new_leader_replaces_the_tail() {
        let mut runs = TermRuns::after(0);
        runs.append(&entries(1, &[1, 1, 2, 2]));
        runs.append(&entries(3, &[3]));
        assert_eq!((runs.term(2), runs.term(3), runs.term(4)), (Some(1), Some(3), None));
        // Replacing entries from before the start restarts coverage there.
        let mut late = TermRuns::after(10);
        late.append(&entries(11, &[4]));
        late.append(&entries(8, &[5, 5]));
        assert_eq!(
            (late.term(7), late.term(8), late.term(9), late.term(11)),
            (None, Some(5), Some(5), None)
        );
    }

    #[test]
    fn compaction_and_snapshots_forget() {
        let mut runs = TermRuns::after(0);
        runs.append(&entries(1, &[1, 1, 2, 3, 3]));
        runs.compact_to(3);
        assert_eq!((runs.term(3), runs.term(4), runs.term(5)), (None, Some(3), Some(3)));
        assert_eq!(runs.runs.len(), 1);
        runs.reset_after(20);
        assert_eq!(runs.term(5), None);
        runs.append(&entries(30, &[4]));
        assert_eq!(
            (runs.term(21), runs.term(30)),
            (None, Some(4)),
            "a gap restarts coverage"
        );
    }
}
