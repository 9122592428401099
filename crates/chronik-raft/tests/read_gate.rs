//! A new leader serves reads only once it has caught up: three loops in one
//! process, joined by an in-memory transport that can drop one kind of
//! message on one link. A node that wins an election but cannot commit an
//! entry of its term is leader, and not ready to serve.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_raft::{GroupId, METADATA_GROUP, Mailbox, MultiRaft, MultiRaftConfig, NodeId, SnapshotDone, Transport};
use raft::eraftpb::{Message, MessageType};

#[path = "support/nothing.rs"]
mod nothing;
use nothing::Nothing;

/// Delivers every message straight to its node's mailbox, except those on
/// a blocked (from, to) link, or of a blocked type on a link.
#[derive(Clone, Default)]
struct Wires {
    mailboxes: Arc<Mutex<BTreeMap<NodeId, Mailbox>>>,
    cut: Arc<Mutex<HashSet<(NodeId, NodeId)>>>,
    dropped: Arc<Mutex<HashSet<(NodeId, NodeId, MessageType)>>>,
}

struct Sender {
    from: NodeId,
    wires: Wires,
}

impl Transport for Sender {
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        if self.wires.cut.lock().unwrap().contains(&(self.from, to)) {
            return;
        }
        let dropped = self.wires.dropped.lock().unwrap().clone();
        let kept: Vec<_> = messages
            .into_iter()
            .filter(|(_, m)| !dropped.contains(&(self.from, to, m.get_msg_type())))
            .collect();
        if let Some(mailbox) = self.wires.mailboxes.lock().unwrap().get(&to) {
            mailbox.deliver(self.from, kept);
        }
    }

    fn send_snapshot(&self, _to: NodeId, _group: GroupId, _message: Message, done: SnapshotDone) {
        done.finish(false);
    }

    fn take_departed(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_has_not_committed_in_its_term_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let wires = Wires::default();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let mut config = MultiRaftConfig::new(id, dir.path().join(format!("snapshots{id}")));
        config.initial_voters = vec![1, 2, 3];
        let transport = Arc::new(Sender {
            from: id,
            wires: wires.clone(),
        });
        let raft = MultiRaft::start(&dir.path().join(format!("raft{id}")), config, Nothing, transport).unwrap();
        wires.mailboxes.lock().unwrap().insert(id, raft.mailbox());
        nodes.insert(id, raft);
    }
    let status = |id: NodeId| nodes[&id].status().get(METADATA_GROUP).unwrap_or_default();
    let mut old = 0;
    wait_until("a leader serves", || {
        old = (1..=3).find(|id| status(*id).leader_ready).unwrap_or(0);
        old != 0
    })
    .await;
    nodes[&old].propose(METADATA_GROUP, b"x".to_vec()).await.unwrap();
    let (new, other) = match old {
        1 => (2, 3),
        2 => (3, 1),
        _ => (1, 2),
    };

    // The old leader is cut off. `other` cannot campaign (its vote requests
    // are lost), so `new` wins; but the answers of `other` to the appends of
    // `new` are lost too, so `new` cannot commit an entry of its term.
    for id in [new, other] {
        wires.cut.lock().unwrap().extend([(old, id), (id, old)]);
    }
    wires.dropped.lock().unwrap().extend([
        (other, new, MessageType::MsgRequestPreVote),
        (other, new, MessageType::MsgRequestVote),
        (other, new, MessageType::MsgAppendResponse),
        (other, new, MessageType::MsgHeartbeatResponse),
    ]);
    wait_until("the new leader is elected", || status(new).leader == Some(new)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = status(new);
    assert_eq!(seen.leader, Some(new), "the new leader still leads");
    assert!(!seen.leader_ready, "a leader without a commit in its term serves reads");

    // Once its appends are answered it commits, applies, and serves.
    wires.dropped.lock().unwrap().clear();
    wait_until("the new leader serves", || status(new).leader_ready).await;
    for raft in nodes.values() {
        raft.shutdown().await;
    }
}
