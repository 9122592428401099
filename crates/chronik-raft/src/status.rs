//! What the loop publishes about each group, for request handlers to read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{GroupId, NodeId};

/// A group's view of its own leadership, as of the last loop iteration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader this node knows of; `None` during an election.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The in-sync replicas, known while this node leads; empty otherwise.
    pub isr: Vec<NodeId>,
    /// This node leads, and since it became leader it has committed an entry
    /// of its own term and applied up to that commit: its state is at least
    /// as new as anything an earlier leader showed.
    pub leader_ready: bool,
    /// Until then no other node can have been elected: a quorum confirmed
    /// this node's leadership half an election timeout before.
    /// Renewed while it leads; `None` before the first confirmation.
    pub lease_until: Option<Instant>,
    /// The group sleeps here, idle (see `core/hibernate.rs`). A sleeping
    /// leader's lease runs out: a request wakes it first
    /// ([`crate::MultiRaft::wake`]).
    pub asleep: bool,
}

impl GroupStatus {
    /// Whether `node`, whose status this is, may serve reads of the group at
    /// `now`: it leads, it is caught up in its term, and its lease holds. A
    /// leader that was cut off or paused stops before its successor starts.
    pub fn serves(&self, node: NodeId, now: Instant) -> bool {
        self.leader == Some(node) && self.leader_ready && self.lease_until.is_some_and(|until| now < until)
    }
}

/// The full Raft state of one group on one node, for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: GroupId,
    /// Leader, Follower, Candidate or PreCandidate.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    /// In a joint configuration, the incoming and outgoing voters both.
    pub voters: Vec<NodeId>,
    /// Replicas catching up before they become voters.
    #[serde(default)]
    pub learners: Vec<NodeId>,
    /// The group is between two configurations (joint consensus).
    #[serde(default)]
    pub joint: bool,
    /// A membership change is proposed and not yet applied.
    #[serde(default)]
    pub changing: bool,
    /// Known only on the leader.
    pub isr: Vec<NodeId>,
    /// The group sleeps here, idle.
    #[serde(default)]
    pub asleep: bool,
    /// Each voter's and learner's match index; known only on the leader.
    pub matched: Vec<(NodeId, u64)>,
}

/// Shared, cheaply readable map of group statuses.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<HashMap<GroupId, GroupStatus>>>,
    /// Counts the changes other than lease renewals: leaders, terms,
    /// in-sync replicas, sleep. Whoever derives something from the board
    /// (a peer's view of the leaders) redoes it only when this moved.
    version: Arc<AtomicU64>,
}

impl StatusBoard {
    pub fn get(&self, group: GroupId) -> Option<GroupStatus> {
        self.read().get(&group).cloned()
    }

    /// Those of `groups` that `node` leads and that sleep idle or cannot
    /// serve at `now` (waking, just elected, or without a lease), each with
    /// whether it sleeps.
    pub fn unready_led(
        &self,
        node: NodeId,
        groups: impl IntoIterator<Item = GroupId>,
        now: Instant,
    ) -> Vec<(GroupId, bool)> {
        let statuses = self.read();
        groups
            .into_iter()
            .filter_map(|g| {
                let s = statuses.get(&g)?;
                (s.leader == Some(node) && (s.asleep || !s.serves(node, now))).then_some((g, s.asleep))
            })
            .collect()
    }

    /// How many groups sleep on this node.
    pub fn asleep(&self) -> usize {
        self.read().values().filter(|s| s.asleep).count()
    }

    /// See the field: moves on every change but a lease renewal.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, group: GroupId, status: GroupStatus) {
        let mut statuses = self.write();
        let renewal = statuses.get(&group).is_some_and(|old| {
            GroupStatus {
                lease_until: status.lease_until,
                ..old.clone()
            } == status
        });
        statuses.insert(group, status);
        if !renewal {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn remove(&self, group: GroupId) {
        self.write().remove(&group);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, GroupStatus>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, GroupStatus>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
