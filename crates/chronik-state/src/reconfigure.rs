//! The next step that brings a group's Raft members to the replicas the
//! metadata wants: a pure function of the leader's view, so the broker and
//! the simulator take the very same steps.
//!
//! A new replica joins as a learner and catches up (from a snapshot, as it
//! starts empty); once every new replica is close to the leader's log they
//! are promoted and the replicas they replace demoted to learners, in one
//! joint configuration that is then left; then the demoted learners are
//! removed one by one. A leader that is to go hands its leadership to a
//! replica that stays first.

use chronik_raft::{GroupReport, METADATA_GROUP, MembershipChange, NodeId};

use crate::metadata::{MetadataCommand, MetadataState};

/// What the leader of a group should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Change(MembershipChange),
    TransferLeader(NodeId),
    /// The members are the target, these replicas: record the reassignment
    /// as done.
    Complete(Vec<NodeId>),
    /// Learners are catching up, or a change is being applied.
    Wait,
    /// Nothing to do.
    Idle,
}

/// A learner is promoted once its log is within this many entries of the
/// leader's, so promotion does not stall commits while it catches up.
pub const PROMOTION_LAG: u64 = 100;

/// The next step for the group of `report`, which `me` leads, towards the
/// members `metadata` wants: for the metadata group the cluster's nodes, for
/// a partition its replicas or the target of its reassignment. A group the
/// metadata does not place (a single node's metadata group, a partition
/// deleted meanwhile) is left alone.
pub fn plan(me: NodeId, metadata: &MetadataState, report: &GroupReport) -> Step {
    let (desired, moving): (Vec<NodeId>, bool) = if report.group == METADATA_GROUP {
        (metadata.nodes.keys().copied().collect(), false)
    } else {
        match metadata.partition_of_group(report.group) {
            Some((_, _, partition)) => (partition.desired().to_vec(), partition.target.is_some()),
            None => return Step::Idle,
        }
    };
    if desired.is_empty() || settled(report, &desired, moving) {
        return Step::Idle;
    }
    next_step(me, &desired, moving, report)
}

/// The confirmations `me` owes the metadata: groups it left whose replica it
/// no longer holds (`holds` says whether it still runs a group).
pub fn deleted_replicas(me: NodeId, metadata: &MetadataState, holds: impl Fn(u64) -> bool) -> Vec<MetadataCommand> {
    metadata
        .partitions()
        .filter(|(_, _, p)| p.leaving.contains(&me) && !holds(p.group))
        .map(|(_, _, p)| MetadataCommand::ReplicaDeleted {
            group: p.group,
            node: me,
        })
        .collect()
}

/// Nothing to do: the members are what is wanted and no move is recorded.
fn settled(report: &GroupReport, desired: &[NodeId], moving: bool) -> bool {
    let mut wanted = desired.to_vec();
    wanted.sort_unstable();
    !moving && !report.joint && report.learners.is_empty() && report.voters == wanted
}

/// The next step for `report`, this node's (the leader's) view of its group,
/// towards the members `desired`. `moving` says the metadata records a
/// reassignment that is to be completed once the members match.
pub fn next_step(me: NodeId, desired: &[NodeId], moving: bool, report: &GroupReport) -> Step {
    debug_assert_eq!(report.leader, Some(me), "only the leader plans its group's changes");
    if desired.is_empty() || report.changing {
        return Step::Wait;
    }
    if report.joint {
        return Step::Change(MembershipChange::LeaveJoint);
    }
    let is_member = |n: &NodeId| report.voters.contains(n) || report.learners.contains(n);
    let missing: Vec<NodeId> = desired.iter().copied().filter(|n| !is_member(n)).collect();
    if !missing.is_empty() {
        return Step::Change(MembershipChange::AddLearners(missing));
    }
    let promote: Vec<NodeId> = report
        .learners
        .iter()
        .copied()
        .filter(|n| desired.contains(n))
        .collect();
    if promote.iter().any(|n| !caught_up(report, *n)) {
        return Step::Wait;
    }
    // The leader never demotes itself; it hands over first (below).
    let demote: Vec<NodeId> = report
        .voters
        .iter()
        .copied()
        .filter(|n| !desired.contains(n) && *n != me)
        .collect();
    if !promote.is_empty() || !demote.is_empty() {
        return Step::Change(MembershipChange::Replace { promote, demote });
    }
    if let Some(gone) = report
        .learners
        .iter()
        .copied()
        .find(|n| !desired.contains(n) && *n != me)
    {
        return Step::Change(MembershipChange::RemoveLearner(gone));
    }
    if !desired.contains(&me) {
        // Every desired replica is a voter now; the most caught-up takes over.
        return match desired
            .iter()
            .copied()
            .filter(|n| caught_up(report, *n))
            .max_by_key(|n| (matched(report, *n), std::cmp::Reverse(*n)))
        {
            Some(successor) => Step::TransferLeader(successor),
            None => Step::Wait,
        };
    }
    if moving {
        Step::Complete(desired.to_vec())
    } else {
        Step::Idle
    }
}

fn matched(report: &GroupReport, node: NodeId) -> u64 {
    report.matched.iter().find(|(n, _)| *n == node).map_or(0, |(_, m)| *m)
}

/// Has acknowledged entries (a new replica's first is its snapshot) and is
/// close to the end of the leader's log.
fn caught_up(report: &GroupReport, node: NodeId) -> bool {
    let matched = matched(report, node);
    matched > 0 && matched + PROMOTION_LAG >= report.last_index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(voters: &[NodeId], learners: &[NodeId], matched: &[(NodeId, u64)]) -> GroupReport {
        GroupReport {
            group: 1,
            role: "Leader".into(),
            leader: Some(1),
            last_index: 1000,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            matched: matched.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_move_adds_a_learner_waits_promotes_in_joint_then_completes() {
        let desired = [1, 2, 4];
        let start = report(&[1, 2, 3], &[], &[(1, 1000), (2, 1000), (3, 1000)]);
        assert_eq!(
            next_step(1, &desired, true, &start),
            Step::Change(MembershipChange::AddLearners(vec![4]))
        );
        let behind = report(&[1, 2, 3], &[4], &[(1, 1000), (2, 1000), (3, 1000), (4, 10)]);
        assert_eq!(next_step(1, &desired, true, &behind), Step::Wait);
        let short_log = GroupReport {
            last_index: 18,
            ..report(&[1, 2, 3], &[4], &[(1, 18), (2, 18), (3, 18), (4, 0)])
        };
        assert_eq!(
            next_step(1, &desired, true, &short_log),
            Step::Wait,
            "a learner that acknowledged nothing has no snapshot yet"
        );
        let close = report(&[1, 2, 3], &[4], &[(1, 1000), (2, 1000), (3, 1000), (4, 950)]);
        assert_eq!(
            next_step(1, &desired, true, &close),
            Step::Change(MembershipChange::Replace {
                promote: vec![4],
                demote: vec![3]
            })
        );
        let joint = GroupReport {
            joint: true,
            ..report(&[1, 2, 3, 4], &[], &[])
        };
        assert_eq!(
            next_step(1, &desired, true, &joint),
            Step::Change(MembershipChange::LeaveJoint)
        );
        let demoted = report(&[1, 2, 4], &[3], &[]);
        assert_eq!(
            next_step(1, &desired, true, &demoted),
            Step::Change(MembershipChange::RemoveLearner(3))
        );
        let done = report(&[1, 2, 4], &[], &[]);
        assert_eq!(next_step(1, &desired, true, &done), Step::Complete(vec![1, 2, 4]));
        assert_eq!(next_step(1, &desired, false, &done), Step::Idle);
    }

    #[test]
    fn a_leader_that_is_moved_away_hands_over_before_it_is_removed() {
        let desired = [2, 3, 4];
        let close = report(&[1, 2, 3], &[4], &[(1, 1000), (2, 990), (3, 1000), (4, 999)]);
        assert_eq!(
            next_step(1, &desired, true, &close),
            Step::Change(MembershipChange::Replace {
                promote: vec![4],
                demote: vec![]
            })
        );
        let promoted = report(&[1, 2, 3, 4], &[], &[(1, 1000), (2, 990), (3, 1000), (4, 999)]);
        assert_eq!(next_step(1, &desired, true, &promoted), Step::TransferLeader(3));
    }

    #[test]
    fn nothing_is_proposed_while_a_change_is_applied() {
        let busy = GroupReport {
            changing: true,
            ..report(&[1, 2, 3], &[], &[])
        };
        assert_eq!(next_step(1, &[1, 2, 4], true, &busy), Step::Wait);
    }
}
