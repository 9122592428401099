//! How the core hands Raft messages to the network.

use std::sync::{Arc, Mutex};

use raft::eraftpb::Message;

use crate::{GroupId, NodeId};

/// Carries Raft messages to other nodes. Both calls are made from the loop
/// thread and must not block: queue the work and return.
pub trait Transport: Send + Sync + 'static {
    /// The messages of one loop iteration for node `to`, for any number of groups.
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>);

    /// A snapshot for node `to`. `done` must be told the outcome.
    fn send_snapshot(&self, to: NodeId, group: GroupId, message: Message, done: SnapshotDone);

    /// The peers that refused a connection to their Raft port since the
    /// last call: down, or behind a rejecting firewall (see `core/departed.rs`).
    fn take_departed(&self) -> Vec<NodeId>;
}

/// The transport of a node without peers: a single voter sends nothing.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        tracing::warn!(
            to,
            count = messages.len(),
            "no transport to peers; Raft messages dropped"
        );
    }

    fn send_snapshot(&self, to: NodeId, group: GroupId, _message: Message, done: SnapshotDone) {
        tracing::warn!(to, group, "no transport to peers; snapshot dropped");
        done.finish(false);
    }

    fn take_departed(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

/// Snapshot outcomes waiting for the loop. They are few (one per snapshot
/// in flight) and must not be lost: a lost report stalls replication to that
/// follower until the leadership changes. So they are kept here, never in a
/// bounded channel, and the loop takes them every iteration.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotReports {
    inner: Arc<Mutex<Vec<(GroupId, NodeId, bool)>>>,
}

impl SnapshotReports {
    fn push(&self, report: (GroupId, NodeId, bool)) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).push(report);
    }

    pub(crate) fn take(&self) -> Vec<(GroupId, NodeId, bool)> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Reports to the loop whether a snapshot reached its follower, so the
/// leader resumes replication or retries.
pub struct SnapshotDone {
    pub(crate) reports: SnapshotReports,
    pub(crate) group: GroupId,
    pub(crate) to: NodeId,
}

impl SnapshotDone {
    pub fn finish(self, ok: bool) {
        self.reports.push((self.group, self.to, ok));
    }
}

/// What a message costs in memory, near enough for byte budgets: its
/// entries' payloads plus a fixed overhead.
pub(crate) fn message_bytes(message: &Message) -> usize {
    64 + message.get_entries().iter().map(|e| e.data.len() + 32).sum::<usize>()
}

pub type SharedTransport = Arc<dyn Transport>;
