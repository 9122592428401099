//! How the loop hands Raft messages to the network, and how the network
//! hands them back.

use std::sync::Arc;

use raft::eraftpb::Message;
use tokio::sync::mpsc;

use crate::{GroupId, NodeId};

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

/// What the network delivers to the loop.
pub(crate) enum Inbound {
    Messages {
        from: NodeId,
        messages: Vec<(GroupId, Message)>,
    },
    SnapshotSent {
        group: GroupId,
        to: NodeId,
        ok: bool,
    },
}

/// Reports to the loop whether a snapshot reached its follower, so the
/// leader resumes replication or retries.
pub struct SnapshotDone {
    pub(crate) inbound: mpsc::Sender<crate::multi_raft::Control>,
    pub(crate) group: GroupId,
    pub(crate) to: NodeId,
}

impl SnapshotDone {
    pub fn finish(self, ok: bool) {
        let report = Inbound::SnapshotSent {
            group: self.group,
            to: self.to,
            ok,
        };
        if self
            .inbound
            .try_send(crate::multi_raft::Control::Inbound(report))
            .is_err()
        {
            tracing::warn!(
                group = self.group,
                to = self.to,
                "cannot report a snapshot's outcome: loop busy or stopped"
            );
        }
    }
}

/// The way into a running loop for the network: incoming messages and reads.
#[derive(Clone)]
pub struct Mailbox {
    pub(crate) inbound: mpsc::Sender<crate::multi_raft::Control>,
}

impl Mailbox {
    /// Delivers messages to the loop. Raft retransmits what is lost, so when
    /// the loop is saturated the batch is dropped rather than waited on.
    pub fn deliver(&self, from: NodeId, messages: Vec<(GroupId, Message)>) -> bool {
        self.inbound
            .try_send(crate::multi_raft::Control::Inbound(Inbound::Messages {
                from,
                messages,
            }))
            .is_ok()
    }

    /// A commit index this node, as leader of `group`, has confirmed with a
    /// quorum that it still leads at.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, crate::ProposeError> {
        let (reply, index) = tokio::sync::oneshot::channel();
        self.inbound
            .send(crate::multi_raft::Control::ReadIndex { group, reply })
            .await
            .map_err(|_| crate::ProposeError::Stopped)?;
        index.await.unwrap_or(Err(crate::ProposeError::Stopped))
    }
}

pub type SharedTransport = Arc<dyn Transport>;
