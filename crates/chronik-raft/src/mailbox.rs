//! The way into a running loop for the network: messages from peers and
//! read-index requests, queued for the loop within a byte budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::disk_space::DiskSpace;
use crate::shell::Control;
use crate::transport::message_bytes;
use crate::{GroupId, METADATA_GROUP, NodeId};

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
