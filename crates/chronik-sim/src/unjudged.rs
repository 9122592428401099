//! The broker's replicated state with one switch for the vandal
//! (`workload::Vandal`): a proposal made while it is on is not shown to the
//! leader's forecast, as an older or buggy leader would have proposed it,
//! so that apply meets entries the forecast would have refused. To the
//! forecast it is an entry appended unseen: a gap, which ends it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chronik_raft::{Effect, GroupId, Prediction, Proposed, SnapshotManifest, StateMachine};
use chronik_state::replicated::{Applied, BrokerStateMachine};

pub struct Unjudged {
    inner: BrokerStateMachine,
    /// Set for one proposal by the node, which clears it after the call.
    skip: Arc<AtomicBool>,
}

impl Unjudged {
    pub fn new(inner: BrokerStateMachine, skip: Arc<AtomicBool>) -> Self {
        Unjudged { inner, skip }
    }
}

impl StateMachine for Unjudged {
    type Output = Applied;

    fn open_group(&mut self, group: GroupId) -> Option<u64> {
        self.inner.open_group(group)
    }

    fn assigned_groups(&self) -> Vec<Effect> {
        self.inner.assigned_groups()
    }

    fn apply(&mut self, group: GroupId, index: u64, term: u64, data: &[u8], effects: &mut Vec<Effect>) -> Applied {
        self.inner.apply(group, index, term, data, effects)
    }

    fn predict(&mut self, group: GroupId, proposed: Proposed, data: &mut Vec<u8>) -> Prediction<Applied> {
        if self.skip.swap(false, Ordering::Relaxed) {
            return Prediction::Unknown;
        }
        self.inner.predict(group, proposed, data)
    }

    fn withdraw(&mut self, group: GroupId) {
        self.inner.withdraw(group);
    }

    fn may_sleep(&self, group: GroupId) -> bool {
        self.inner.may_sleep(group)
    }

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        self.inner.checkpoint()
    }

    fn snapshot(&mut self, group: GroupId) -> Option<(u64, SnapshotManifest)> {
        self.inner.snapshot(group)
    }

    fn restore(
        &mut self,
        group: GroupId,
        index: u64,
        manifest: &SnapshotManifest,
        dir: &Path,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        self.inner.restore(group, index, manifest, dir, effects)
    }
}
