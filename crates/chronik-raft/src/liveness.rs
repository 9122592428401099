//! Which peers this node hears from: every message from a node, of any group
//! or a beat (see `signals.rs`), shows that it is alive. Replica sets are
//! judged by it, and sleeping groups learn from it that their leader's node
//! went silent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::NodeId;

#[derive(Debug, Default)]
pub(crate) struct Liveness {
    last_heard: BTreeMap<NodeId, Instant>,
    /// Peers silent for a timeout, reported once until heard again.
    silent: BTreeSet<NodeId>,
}

impl Liveness {
    /// Records a message from `node`; true if it had been reported silent
    /// or is heard for the first time: it is back, or new.
    pub(crate) fn heard(&mut self, node: NodeId, now: Instant) -> bool {
        let new = self.last_heard.insert(node, now).is_none();
        self.silent.remove(&node) || new
    }

    /// Whether `node` was heard from within `window` before `now`.
    pub(crate) fn heard_within(&self, node: NodeId, now: Instant, window: Duration) -> bool {
        self.last_heard
            .get(&node)
            .is_some_and(|at| now.duration_since(*at) < window)
    }

    /// The peers that have now been silent for `timeout`, each reported once
    /// per silence. Peers never heard from are not reported: nothing here
    /// counts on them yet.
    pub(crate) fn newly_silent(&mut self, now: Instant, timeout: Duration) -> Vec<NodeId> {
        let fallen: Vec<NodeId> = self
            .last_heard
            .iter()
            .filter(|(node, at)| now.duration_since(**at) >= timeout && !self.silent.contains(node))
            .map(|(node, _)| *node)
            .collect();
        self.silent.extend(&fallen);
        fallen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_reported_silent_once_per_silence() {
        let start = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut liveness = Liveness::default();
        assert!(liveness.heard(2, start), "new");
        assert!(liveness.heard(3, start), "new");
        assert!(!liveness.heard(3, start), "heard before");
        assert!(
            liveness
                .newly_silent(start + Duration::from_millis(500), timeout)
                .is_empty()
        );
        liveness.heard(3, start + Duration::from_millis(900));
        assert_eq!(liveness.newly_silent(start + timeout, timeout), vec![2]);
        assert!(
            liveness.newly_silent(start + timeout, timeout).is_empty(),
            "reported once"
        );
        assert!(liveness.heard_within(3, start + timeout, timeout));
        assert!(!liveness.heard_within(2, start + timeout, timeout));
        assert!(liveness.heard(2, start + timeout * 2), "back from a silence");
        assert_eq!(liveness.newly_silent(start + timeout * 3, timeout), vec![2, 3]);
    }
}
