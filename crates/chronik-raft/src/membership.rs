//! Changes to the replicas of a group, in the steps raft-rs takes them.

use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};

use crate::NodeId;

/// One step of a membership change, proposed to the group's leader.
///
/// A replica is added as a learner first, so that it catches up without
/// counting in any quorum; then `Replace` promotes it and demotes the voters
/// it takes the place of to learners, in a joint configuration (both the old
/// and the new voters must agree) that `LeaveJoint` ends; then each demoted
/// learner is removed.
///
/// Voters are demoted, never removed outright: a voter that becomes leader
/// while its removal is on the way would apply it as leader, and raft-rs
/// cannot lead without its own progress. A learner keeps its progress (and
/// cannot be elected), so a demoted leader goes on safely until it hands
/// over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearners(Vec<NodeId>),
    Replace { promote: Vec<NodeId>, demote: Vec<NodeId> },
    LeaveJoint,
    RemoveLearner(NodeId),
}

impl MembershipChange {
    pub(crate) fn to_conf_change(&self) -> ConfChangeV2 {
        let single = |change_type, node_id| ConfChangeSingle {
            change_type,
            node_id,
            ..Default::default()
        };
        let mut cc = ConfChangeV2::default();
        match self {
            MembershipChange::AddLearners(nodes) => {
                cc.changes = nodes
                    .iter()
                    .map(|n| single(ConfChangeType::AddLearnerNode, *n))
                    .collect();
            }
            MembershipChange::Replace { promote, demote } => {
                let promoted = promote.iter().map(|n| single(ConfChangeType::AddNode, *n));
                let demoted = demote.iter().map(|n| single(ConfChangeType::AddLearnerNode, *n));
                cc.changes = promoted.chain(demoted).collect();
                // Left explicitly, so the leader that entered it is not the
                // only one that can end it.
                cc.set_transition(ConfChangeTransition::Explicit);
            }
            MembershipChange::LeaveJoint => {}
            MembershipChange::RemoveLearner(node) => {
                cc.changes = vec![single(ConfChangeType::RemoveNode, *node)].into();
            }
        }
        cc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_map_onto_raft_conf_changes() {
        let add = MembershipChange::AddLearners(vec![4]).to_conf_change();
        assert_eq!(add.changes[0].get_change_type(), ConfChangeType::AddLearnerNode);
        let replace = MembershipChange::Replace {
            promote: vec![4],
            demote: vec![2],
        }
        .to_conf_change();
        assert_eq!(
            replace.enter_joint(),
            Some(false),
            "two changes go through a joint configuration"
        );
        assert!(MembershipChange::LeaveJoint.to_conf_change().leave_joint());
    }
}
