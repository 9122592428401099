//! The broker's replicated state with one switch for the vandal
//! (`workload::Vandal`): a proposal made while it is on is not shown to the
//! leader's forecast, as an older or buggy leader would have proposed it,
//! so that apply meets entries the forecast would have refused. To the
//! forecast it is an entry appended unseen: a gap, which ends it.
//!
//! It can also plant a defect in the forecast (`Config::misassign_offsets`):
//! every 50th batch it accepts enters the log one offset past where it
//! belongs, which apply must refuse and the workload must report.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chronik_raft::{Appending, Bodies, Effect, GroupId, Prediction, Proposed, SnapshotManifest, StateMachine};
use chronik_state::command::PartitionCommand;
use chronik_state::replicated::{Applied, BrokerStateMachine};

/// Every how many accepted batches the planted defect misassigns one.
const MISASSIGN_EVERY: u64 = 50;

pub struct Unjudged {
    inner: BrokerStateMachine,
    /// Set for one proposal by the node, which clears it after the call.
    skip: Arc<AtomicBool>,
    /// With the planted defect: the batches accepted so far.
    accepted: Option<u64>,
}

impl Unjudged {
    pub fn new(inner: BrokerStateMachine, skip: Arc<AtomicBool>, misassign_offsets: bool) -> Self {
        Unjudged {
            inner,
            skip,
            accepted: misassign_offsets.then_some(0),
        }
    }
}

/// Moves the first batch of an assigned produce entry one offset on.
fn misassign(entry: &mut [u8]) {
    if let Some(PartitionCommand::AssignedProduce { batches }) = PartitionCommand::decode(entry)
        && let Ok(header) = chronik_log::parse_header(batches)
    {
        chronik_log::set_base_offset(&mut entry[1..], header.base_offset + 1);
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
        let prediction = self.inner.predict(group, proposed, data);
        if let (Some(accepted), Prediction::Outcome(Applied::Produce(Ok(_)))) = (self.accepted.as_mut(), &prediction) {
            *accepted += 1;
            if *accepted % MISASSIGN_EVERY == 0 {
                misassign(data);
            }
        }
        prediction
    }

    fn withdraw(&mut self, group: GroupId) {
        self.inner.withdraw(group);
    }

    fn keep_bodies(
        &mut self,
        group: GroupId,
        applied: u64,
        last_index: u64,
        entries: &[Appending<'_>],
    ) -> Vec<Option<Vec<u8>>> {
        self.inner.keep_bodies(group, applied, last_index, entries)
    }

    fn sync_bodies(&mut self) {
        self.inner.sync_bodies();
    }

    fn bodies(&self, group: GroupId) -> Option<Arc<dyn Bodies>> {
        self.inner.bodies(group)
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
