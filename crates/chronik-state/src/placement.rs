//! Where replicas should live: plans that even out replicas and preferred
//! leaders over the nodes, or move every replica off a node. Pure functions
//! of the current assignment, so a plan can be shown before it is run.

use std::collections::BTreeMap;

use chronik_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};

use crate::metadata::MetadataState;

/// A partition's replicas, first the preferred leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub topic: String,
    pub partition: i32,
    pub group: GroupId,
    pub replicas: Vec<NodeId>,
}

/// One partition whose replicas (or their order) change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub group: GroupId,
    pub from: Vec<NodeId>,
    pub to: Vec<NodeId>,
}

impl Move {
    /// Only the order changes: no data moves, only the preferred leader.
    pub fn reorders_only(&self) -> bool {
        let (mut from, mut to) = (self.from.clone(), self.to.clone());
        from.sort_unstable();
        to.sort_unstable();
        from == to
    }
}

/// A plan, with the replicas and preferred leaders per node before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub replicas_before: BTreeMap<NodeId, usize>,
    pub replicas_after: BTreeMap<NodeId, usize>,
    pub leaders_before: BTreeMap<NodeId, usize>,
    pub leaders_after: BTreeMap<NodeId, usize>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// The partitions of `metadata` as they are to be once running moves end.
pub fn assignments(metadata: &MetadataState) -> Vec<Assignment> {
    metadata
        .partitions()
        .map(|(topic, partition, p)| Assignment {
            topic: topic.clone(),
            partition,
            group: p.group,
            replicas: p.desired().to_vec(),
        })
        .collect()
}

/// Evens out replicas over `nodes` (each ends within one of the others),
/// then preferred leaders, moving as few replicas as it can.
pub fn rebalance(current: &[Assignment], nodes: &[NodeId]) -> Plan {
    let mut next = current.to_vec();
    let mut replicas = replica_counts(&next, nodes);
    // Each pass moves one replica from the fullest node to the emptiest that
    // can take it; the spread shrinks, so the passes are bounded.
    for _ in 0..next.iter().map(|a| a.replicas.len()).sum::<usize>() {
        let Some((from, to, index)) = best_replica_move(&next, &replicas) else {
            break;
        };
        let assignment = &mut next[index];
        let slot = assignment
            .replicas
            .iter()
            .position(|n| *n == from)
            .expect("chosen from it");
        assignment.replicas[slot] = to;
        *replicas.get_mut(&from).expect("a node") -= 1;
        *replicas.get_mut(&to).expect("a node") += 1;
    }
    balance_leaders(&mut next, nodes);
    plan(current, next, nodes)
}

/// Moves every replica off `leaving` onto the other `nodes`, each to the
/// node with the fewest replicas that does not hold the partition yet, then
/// evens out the preferred leaders.
pub fn drain(current: &[Assignment], nodes: &[NodeId], leaving: NodeId) -> Result<Plan, PlanError> {
    let staying: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != leaving).collect();
    let mut next = current.to_vec();
    let mut replicas = replica_counts(&next, &staying);
    for assignment in next.iter_mut() {
        let Some(slot) = assignment.replicas.iter().position(|n| *n == leaving) else {
            continue;
        };
        let to = staying
            .iter()
            .copied()
            .filter(|n| !assignment.replicas.contains(n))
            .min_by_key(|n| (replicas[n], *n))
            .ok_or_else(|| {
                PlanError(format!(
                    "{}-{} has {} replicas and only {} node(s) would remain: the replication factor cannot be kept",
                    assignment.topic,
                    assignment.partition,
                    assignment.replicas.len(),
                    staying.len()
                ))
            })?;
        assignment.replicas[slot] = to;
        *replicas.get_mut(&to).expect("a staying node") += 1;
    }
    balance_leaders(&mut next, &staying);
    Ok(plan(current, next, nodes))
}

/// The fullest node that can give a replica to the emptiest node that can
/// take it (it holds none of that partition), if that narrows the spread.
fn best_replica_move(next: &[Assignment], replicas: &BTreeMap<NodeId, usize>) -> Option<(NodeId, NodeId, usize)> {
    let mut by_load: Vec<(NodeId, usize)> = replicas.iter().map(|(n, c)| (*n, *c)).collect();
    by_load.sort_by_key(|(n, c)| (*c, *n));
    for &(from, most) in by_load.iter().rev() {
        for &(to, least) in &by_load {
            if most <= least + 1 {
                break;
            }
            if let Some(index) = next
                .iter()
                .position(|a| a.replicas.contains(&from) && !a.replicas.contains(&to))
            {
                return Some((from, to, index));
            }
        }
    }
    None
}

/// Reorders replicas so each node is the preferred leader (the first
/// replica) of about as many partitions as any other.
fn balance_leaders(next: &mut [Assignment], nodes: &[NodeId]) {
    for _ in 0..next.len() {
        let leaders = leader_counts(next, nodes);
        let mut by_load: Vec<(NodeId, usize)> = leaders.into_iter().collect();
        by_load.sort_by_key(|(n, c)| (*c, *n));
        let swap = by_load.iter().rev().find_map(|&(from, most)| {
            by_load.iter().find_map(|&(to, least)| {
                if most <= least + 1 {
                    return None;
                }
                next.iter()
                    .position(|a| a.replicas.first() == Some(&from) && a.replicas.contains(&to))
                    .map(|index| (to, index))
            })
        });
        let Some((to, index)) = swap else { break };
        let replicas = &mut next[index].replicas;
        let slot = replicas.iter().position(|n| *n == to).expect("chosen for it");
        replicas.swap(0, slot);
    }
}

/// Replicas per node of `nodes`; replicas on other nodes (ones that do
/// not answer) are not counted, so nothing is planned onto them.
fn replica_counts(assignments: &[Assignment], nodes: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for node in assignments.iter().flat_map(|a| &a.replicas) {
        if let Some(count) = counts.get_mut(node) {
            *count += 1;
        }
    }
    counts
}

fn leader_counts(assignments: &[Assignment], nodes: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for node in assignments.iter().filter_map(|a| a.replicas.first()) {
        if let Some(count) = counts.get_mut(node) {
            *count += 1;
        }
    }
    counts
}

fn plan(current: &[Assignment], next: Vec<Assignment>, nodes: &[NodeId]) -> Plan {
    let moves = current
        .iter()
        .zip(&next)
        .filter(|(before, after)| before.replicas != after.replicas)
        .map(|(before, after)| Move {
            topic: before.topic.clone(),
            partition: before.partition,
            group: before.group,
            from: before.replicas.clone(),
            to: after.replicas.clone(),
        })
        .collect();
    Plan {
        moves,
        replicas_before: replica_counts(current, nodes),
        replicas_after: replica_counts(&next, nodes),
        leaders_before: leader_counts(current, nodes),
        leaders_after: leader_counts(&next, nodes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignments(replicas: &[&[NodeId]]) -> Vec<Assignment> {
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| Assignment {
                topic: "t".into(),
                partition: i as i32,
                group: i as u64 + 1,
                replicas: r.to_vec(),
            })
            .collect()
    }

    fn spread(counts: &BTreeMap<NodeId, usize>) -> usize {
        counts.values().max().unwrap() - counts.values().min().unwrap()
    }

    #[test]
    fn a_new_node_gets_its_share_of_replicas_and_leaders() {
        let current = assignments(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        let plan = rebalance(&current, &[1, 2, 3, 4]);
        assert_eq!(plan.replicas_before[&4], 0);
        assert!(spread(&plan.replicas_after) <= 1, "{plan:?}");
        assert!(spread(&plan.leaders_after) <= 1, "{plan:?}");
        assert_eq!(
            plan.replicas_after.values().sum::<usize>(),
            18,
            "the replication factor is kept"
        );
        for m in &plan.moves {
            let mut to = m.to.clone();
            to.sort_unstable();
            to.dedup();
            assert_eq!(to.len(), 3, "{m:?}");
        }
    }

    #[test]
    fn nothing_is_planned_onto_a_node_left_out() {
        let current = assignments(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[1, 2, 3]]);
        // Node 4 is a member that does not answer: the plan is for 1-3 only.
        let plan = rebalance(&current, &[1, 2, 3]);
        assert!(plan.moves.iter().all(|m| !m.to.contains(&4)));
        assert!(!plan.replicas_after.contains_key(&4));
    }

    #[test]
    fn a_balanced_cluster_needs_no_moves() {
        let current = assignments(&[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        assert!(rebalance(&current, &[1, 2, 3]).moves.is_empty());
    }

    #[test]
    fn draining_a_node_keeps_the_replication_factor_or_refuses() {
        let current = assignments(&[&[1, 2, 3], &[2, 3, 4], &[3, 4, 1], &[4, 1, 2]]);
        let plan = drain(&current, &[1, 2, 3, 4], 2).unwrap();
        assert_eq!(plan.replicas_after[&2], 0);
        assert_eq!(plan.replicas_after.values().sum::<usize>(), 12);
        assert!(drain(&assignments(&[&[1, 2, 3]]), &[1, 2, 3], 2).is_err());
    }
}
