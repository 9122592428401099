//! What can go wrong for a proposal, and at start.

use crate::{GroupId, NodeId};

/// Why a proposal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader of group {group} (leader: {leader:?})")]
    NotLeader { group: GroupId, leader: Option<NodeId> },
    #[error("group {0} does not run on this node")]
    UnknownGroup(GroupId),
    #[error("the proposal was dropped before it committed (leadership changed or too much in flight)")]
    Dropped,
    #[error("the Raft loop has stopped")]
    Stopped,
}

/// Why the loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft log store: {0}")]
    Engine(#[from] raft_engine::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "group {group}: applied state reaches index {durable} but the Raft log was compacted to {compacted}; \
         the data directory is damaged"
    )]
    StateBehindLog {
        group: GroupId,
        durable: u64,
        compacted: u64,
    },
    #[error(
        "this data directory holds no cluster state; start every node of a new cluster with --bootstrap \
         and the same peer list, or join a running cluster with --join MEMBER_RAFT_ADDR"
    )]
    NotBootstrapped,
}
