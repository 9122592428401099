//! The contract between the Raft loop and whatever the groups replicate.

use std::path::Path;
use std::sync::Arc;

use crate::snapshot::SnapshotManifest;
use crate::{GroupId, NodeId};

/// Changes to the set of groups that applying an entry asks for. The loop
/// carries them out after the current batch of entries is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start a new group with these voters; a no-op if it already runs.
    CreateGroup { group: GroupId, voters: Vec<NodeId> },
    /// Replicas of a running group are being added on `nodes`: each of them
    /// starts the group empty, and its leader sends it a snapshot.
    JoinGroup { group: GroupId, nodes: Vec<NodeId> },
    /// The group's replicas on `nodes` were removed: each stops the group
    /// and deletes its Raft log.
    LeaveGroup { group: GroupId, nodes: Vec<NodeId> },
    /// Stop a group everywhere and delete its Raft log.
    RemoveGroup { group: GroupId },
}

/// A proposal the leader is about to append to its log, at `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposed {
    pub index: u64,
    pub term: u64,
    /// The group's applied index on this node now.
    pub applied: u64,
    /// This leader has committed an entry of its term and applied up to it.
    pub leader_ready: bool,
}

/// What the state machine foresees for a proposal (see
/// [`StateMachine::predict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prediction<O> {
    /// Nothing: the proposer learns the outcome once the entry is applied.
    Unknown,
    /// `apply` will return this if the entry commits at the proposed index.
    Outcome(O),
    /// Applying the entry at the proposed index would change nothing and
    /// return this: the loop does not propose it, and answers at once.
    Refusal(O),
    /// It cannot be judged until the entries in flight are applied: the
    /// loop holds it, and every later proposal of the group, and shows it
    /// again after the next Ready round.
    Wait,
}

impl<O> Prediction<O> {
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> Prediction<P> {
        match self {
            Prediction::Unknown => Prediction::Unknown,
            Prediction::Outcome(outcome) => Prediction::Outcome(f(outcome)),
            Prediction::Refusal(outcome) => Prediction::Refusal(f(outcome)),
            Prediction::Wait => Prediction::Wait,
        }
    }
}

/// An entry about to be written to a group's Raft log.
#[derive(Debug, Clone, Copy)]
pub struct Appending<'a> {
    pub index: u64,
    pub term: u64,
    /// A normal entry; a configuration change carries nothing to keep.
    pub normal: bool,
    pub data: &'a [u8],
}

/// What a reference reads back as (see [`Bodies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The body, exactly as it was appended.
    Whole(Vec<u8>),
    /// Gone (its records were deleted or compacted since), but applied and
    /// made durable on this node before: apply skips the entry, so it may
    /// stand empty where only this node reads it.
    Applied,
}

/// Turns the references a state machine returned from
/// [`StateMachine::keep_bodies`] back into the entries' bodies, for raft-rs
/// to send or apply entries it no longer holds in memory.
pub trait Bodies: Send + Sync {
    /// The body `reference` stands for. An error means it is gone, and this
    /// node may still need it.
    fn read(&self, reference: &[u8]) -> Result<Body, String>;
}

/// The replicated state of all groups of a node.
///
/// Entries are applied in index order, per group. After a crash, entries
/// whose effect is already durable may be applied again (up to the index
/// returned by [`StateMachine::open_group`], and beyond it for state that is
/// made durable lazily), so `apply` must recognise them.
pub trait StateMachine: Send + 'static {
    /// What a proposer receives once its entry is applied.
    type Output: Send + 'static;

    /// Called when the loop loads or creates `group`. Returns the index up to
    /// which the group's applied state is durable, or `None` when the group is
    /// unknown and its Raft log should be deleted.
    fn open_group(&mut self, group: GroupId) -> Option<u64>;

    /// Every group the replicated state gives this node, as the effect that
    /// creates it here (`CreateGroup` or `JoinGroup`). At start the loop
    /// creates those without a Raft log: a crash can come between applying
    /// the entry that assigned a group and creating it.
    fn assigned_groups(&self) -> Vec<Effect>;

    /// Applies one committed entry, of Raft `term`. Must be deterministic:
    /// every replica reaches the same state from the same entries.
    fn apply(&mut self, group: GroupId, index: u64, term: u64, data: &[u8], effects: &mut Vec<Effect>) -> Self::Output;

    /// Sees every proposal of this leader, in log order, before it is
    /// appended, and may foresee its outcome at `proposed.index`. An
    /// `Outcome` must equal what `apply` returns if the entry commits there;
    /// the loop may answer the proposer with it before a quorum has the
    /// entry, and appends `data` as the state machine left it (it may write
    /// what it decided into the entry). A `Refusal` keeps the entry out of
    /// the log; `Wait` holds it back until more is applied, and must leave
    /// `data` unchanged. The default foresees nothing.
    fn predict(&mut self, _group: GroupId, _proposed: Proposed, _data: &mut Vec<u8>) -> Prediction<Self::Output> {
        Prediction::Unknown
    }

    /// The proposal last shown to `predict` for `group` was not appended
    /// after all (raft-rs dropped it): predictions built on it are void.
    fn withdraw(&mut self, _group: GroupId) {}

    /// Sees the entries about to be written to `group`'s Raft log, in log
    /// order, after `last_index` (the log's last entry before them), with
    /// entries up to `applied` applied; they replace any the log holds from
    /// the first one's index on.
    /// The state machine may keep an entry's body itself, durable once
    /// [`sync_bodies`](Self::sync_bodies) returns, and return a reference
    /// for the Raft log to store instead of the body (a shorter list than
    /// `entries` keeps nothing for the rest). [`bodies`](Self::bodies) reads
    /// the references back. The default keeps nothing.
    fn keep_bodies(
        &mut self,
        _group: GroupId,
        _applied: u64,
        _last_index: u64,
        _entries: &[Appending<'_>],
    ) -> Vec<Option<Vec<u8>>> {
        Vec::new()
    }

    /// Makes every body kept since the last call durable. The loop calls it
    /// before the Raft log write that stores their references.
    fn sync_bodies(&mut self) {}

    /// What reads `group`'s references back into bodies, if it keeps any.
    fn bodies(&self, _group: GroupId) -> Option<Arc<dyn Bodies>> {
        None
    }

    /// Whether `group` may stop ticking while idle (see `core/hibernate.rs`).
    /// A group whose leader serves requests from memory without writing
    /// (a coordinator's heartbeats) should say no: its reads would wait for
    /// a wake each time. The default lets every group sleep.
    fn may_sleep(&self, _group: GroupId) -> bool {
        true
    }

    /// Makes applied state durable and reports, per group, the index up to
    /// which it is. The loop may then drop Raft log entries up to that index.
    fn checkpoint(&mut self) -> Vec<(GroupId, u64)>;

    /// Captures `group`'s applied state for a follower behind the compacted
    /// Raft log. Returns the applied index it reflects and the manifest of
    /// what to send; the files listed must stay readable up to their lengths
    /// while the snapshot streams. The default takes none: enough for groups
    /// with a single voter, which never have a follower.
    fn snapshot(&mut self, _group: GroupId) -> Option<(u64, SnapshotManifest)> {
        None
    }

    /// Replaces `group`'s state with a snapshot taken at `index` by its
    /// leader, whose files are staged in `dir` (moved from there or copied).
    /// Group changes the new state implies are pushed to `effects`. The
    /// default refuses, to go with the default `snapshot`.
    fn restore(
        &mut self,
        group: GroupId,
        _index: u64,
        _manifest: &SnapshotManifest,
        _dir: &Path,
        _effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        Err(format!("group {group}: this state machine takes no snapshots"))
    }
}
