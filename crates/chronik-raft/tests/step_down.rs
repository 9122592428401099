//! One real loop whose two peers are played by the test, message by
//! message: an entry committed in the same Ready that ends the leadership is
//! applied and answered as written, not failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_raft::{
    Effect, GroupId, METADATA_GROUP, MultiRaft, MultiRaftConfig, NodeId, SnapshotDone, StateMachine, Transport,
};
use raft::eraftpb::{Message, MessageType};

#[path = "support/follower.rs"]
mod follower;
use follower::answer;

/// Answers each proposal with its index.
struct Indexes;

impl StateMachine for Indexes {
    type Output = u64;

    fn open_group(&mut self, _group: GroupId) -> Option<u64> {
        Some(0)
    }

    fn assigned_groups(&self) -> Vec<Effect> {
        Vec::new()
    }

    fn apply(&mut self, _group: GroupId, index: u64, _term: u64, _data: &[u8], _effects: &mut Vec<Effect>) -> u64 {
        index
    }

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        Vec::new()
    }
}

/// Keeps what node 1 sends, for the test to answer.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<Message>>>);

impl Transport for Outbox {
    fn send(&self, _to: NodeId, messages: Vec<(GroupId, Message)>) {
        self.0.lock().unwrap().extend(messages.into_iter().map(|(_, m)| m));
    }

    fn send_snapshot(&self, _to: NodeId, _group: GroupId, _message: Message, done: SnapshotDone) {
        done.finish(false);
    }

    fn take_departed(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

fn message(kind: MessageType, from: NodeId, term: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(kind);
    message.from = from;
    message.to = 1;
    message.term = term;
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_committed_as_the_leader_steps_down_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::default();
    let mut config = MultiRaftConfig::new(1, dir.path().join("snapshots"));
    config.initial_voters = vec![1, 2, 3];
    let raft = MultiRaft::start(&dir.path().join("raft"), config, Indexes, Arc::new(outbox.clone())).unwrap();
    let mailbox = raft.mailbox();

    // Nodes 2 and 3 vote for node 1 and follow it until it serves.
    for _ in 0..2000 {
        if raft.status().get(METADATA_GROUP).is_some_and(|s| s.leader_ready) {
            break;
        }
        let sent = std::mem::take(&mut *outbox.0.lock().unwrap());
        for reply in sent.iter().filter_map(answer) {
            mailbox.deliver(reply.from, vec![(METADATA_GROUP, reply)]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = raft.status().get(METADATA_GROUP).unwrap();
    assert!(status.leader_ready, "node 1 leads: {status:?}");
    let term = status.term;

    // An entry goes out to the followers; nobody answers yet.
    outbox.0.lock().unwrap().clear();
    let outcome = raft.submit(METADATA_GROUP, b"entry".to_vec()).await;
    let mut append = None;
    for _ in 0..2000 {
        append = outbox
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.get_msg_type() == MessageType::MsgAppend && !m.entries.is_empty())
            .cloned();
        if append.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let append = append.expect("the entry was sent to a follower");
    let index = append.index + append.entries.len() as u64;

    // In one delivery: node 2's acknowledgement commits the entry, and a
    // heartbeat from node 3 as leader of a later term ends node 1's
    // leadership. Both land in the same Ready.
    let mut acknowledged = answer(&append).unwrap();
    acknowledged.from = 2;
    let mut heartbeat = message(MessageType::MsgHeartbeat, 3, term + 1);
    heartbeat.commit = 0;
    mailbox.deliver(2, vec![(METADATA_GROUP, acknowledged), (METADATA_GROUP, heartbeat)]);

    let answered = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .expect("answered")
        .expect("the loop runs");
    assert_eq!(answered, Ok(index), "the committed entry was applied and answered");
    let status = raft.status().get(METADATA_GROUP).unwrap();
    assert_eq!(status.leader, Some(3));
    assert!(!status.leader_ready);
    raft.shutdown().await;
}
