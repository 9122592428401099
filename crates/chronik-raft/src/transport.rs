//! How the loop hands Raft messages to the network, and how the network
//! hands them back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::disk_space::DiskSpace;

use crate::multi_raft::Control;

use crate::{GroupId, METADATA_GROUP, NodeId};

/// Carries Raft messages to other nodes. Both calls are made from the loop
/// thread and must not block: queue the work and return.
pub trait Transport: Send + Sync + 'static {
    /// The messages of one loop iteration for node `to`, for any number of groups.
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>);

    /// A snapshot for node `to`. `done` must be told the outcome.
    fn send_snapshot(&self, to: NodeId, group: GroupId, message: Message, done: SnapshotDone);
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

/// Bytes of received Raft messages waiting for the loop, across all peers.
/// Beyond it new ones are dropped, and Raft retransmits.
pub const MAX_INBOUND_BYTES: usize = 256 << 20;

/// The way into a running loop for the network: incoming messages and reads.
#[derive(Clone)]
pub struct Mailbox {
    pub(crate) inbound: mpsc::Sender<Control>,
    /// Bytes delivered and not yet taken by the loop.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    /// While it reports low space, messages carrying entries are refused.
    pub(crate) disk: Option<Arc<DiskSpace>>,
}

impl Mailbox {
    /// Delivers messages to the loop. Raft retransmits what is lost, so when
    /// the loop is saturated (by count or by bytes) the batch is dropped
    /// rather than waited on.
    pub fn deliver(&self, from: NodeId, mut messages: Vec<(GroupId, Message)>) -> bool {
        if !self.takes_data() {
            // Out of space: this replica stops acknowledging new entries and
            // the others commit without it. Heartbeats and commit updates
            // still pass, so it keeps its leader and applies what it holds.
            messages.retain(|(group, m)| *group == METADATA_GROUP || !carries_data(m));
        }
        let bytes = messages.iter().map(|(_, m)| message_bytes(m)).sum();
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if queued + bytes > MAX_INBOUND_BYTES && queued > 0 {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        let delivered = self
            .inbound
            .try_send(Control::Messages { from, messages, bytes })
            .is_ok();
        if !delivered {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        delivered
    }

    /// Whether the node has room to take replicated data (appends,
    /// snapshots); measured anew at each call.
    pub fn takes_data(&self) -> bool {
        self.disk.as_ref().is_none_or(|disk| !disk.check())
    }

    /// A commit index this node, as leader of `group`, has confirmed with a
    /// quorum that it still leads at.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, crate::ProposeError> {
        let (reply, index) = tokio::sync::oneshot::channel();
        self.inbound
            .send(Control::ReadIndex { group, reply })
            .await
            .map_err(|_| crate::ProposeError::Stopped)?;
        index.await.unwrap_or(Err(crate::ProposeError::Stopped))
    }
}

/// Whether stepping `message` would write entries or a snapshot.
fn carries_data(message: &Message) -> bool {
    match message.get_msg_type() {
        MessageType::MsgAppend => !message.get_entries().is_empty(),
        MessageType::MsgSnapshot => true,
        _ => false,
    }
}

/// What a message costs in memory, near enough for byte budgets: its
/// entries' payloads plus a fixed overhead.
pub(crate) fn message_bytes(message: &Message) -> usize {
    64 + message.get_entries().iter().map(|e| e.data.len() + 32).sum::<usize>()
}

pub type SharedTransport = Arc<dyn Transport>;

#[cfg(test)]
mod tests {
    use super::*;

    fn append(bytes: usize) -> Vec<(GroupId, Message)> {
        let mut message = Message::default();
        message.mut_entries().push(raft::eraftpb::Entry {
            data: vec![0; bytes].into(),
            ..Default::default()
        });
        vec![(1, message)]
    }

    #[test]
    fn the_mailbox_refuses_messages_beyond_its_byte_budget() {
        let (inbound, mut loop_side) = mpsc::channel(16);
        let mailbox = Mailbox {
            inbound,
            queued_bytes: Arc::default(),
            disk: None,
        };
        // One batch larger than the budget still goes through an empty mailbox.
        assert!(mailbox.deliver(2, append(MAX_INBOUND_BYTES + 1)));
        assert!(!mailbox.deliver(2, append(10)), "over the budget: dropped");
        let Ok(Control::Messages { bytes, .. }) = loop_side.try_recv() else {
            panic!("the first batch is queued");
        };
        // The loop takes it and gives its bytes back.
        mailbox.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        assert!(mailbox.deliver(2, append(10)));
        assert!(loop_side.try_recv().is_ok());
    }
}
