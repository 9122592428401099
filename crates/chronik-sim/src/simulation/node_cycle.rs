//! A node retired and brought back, as an operator would: in 5-node runs,
//! now and then the admin drains a node (moving each of its replicas to
//! another node), removes it from the cluster, wipes its disk, starts it
//! empty as a joining node and adds it again. Faults go on meanwhile.

use std::time::Duration;

use chronik_raft::{METADATA_GROUP, NodeId};
use chronik_state::metadata::{MetadataCommand, MetadataState, Reassignment};
use rand::Rng;

use super::Simulation;

/// How often the cycle looks at the cluster.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Idle,
    /// Its replicas are being moved away.
    Draining(NodeId),
    /// `RemoveNode` is on its way; then the metadata group drops it.
    Removing(NodeId),
    /// Wiped and started empty; `AddNode` makes it a member again.
    Joining(NodeId),
}

#[derive(Default)]
pub struct NodeCycle {
    pub phase: Phase,
    next_at: Duration,
}

impl NodeCycle {
    /// The node replicas must not be moved to.
    pub fn leaving(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Draining(node) | Phase::Removing(node) => Some(node),
            Phase::Idle | Phase::Joining(_) => None,
        }
    }
}

impl Simulation {
    /// The most recent metadata a running node holds.
    pub(super) fn newest_metadata(&self) -> Option<MetadataState> {
        self.nodes
            .iter()
            .filter_map(|n| n.shared().map(|s| s.metadata().clone()))
            .max_by_key(|m| m.applied_index)
    }

    /// The metadata group's voters and learners as its leader sees them (the
    /// node leading it in the highest term: a removed node's hint goes
    /// stale), and whether it is in a joint configuration.
    fn metadata_members(&mut self) -> Option<(Vec<NodeId>, Vec<NodeId>, bool)> {
        let now = self.now;
        self.nodes
            .iter_mut()
            .filter(|n| n.is_reachable(now))
            .filter_map(|n| {
                let id = n.id;
                n.describe()
                    .into_iter()
                    .find(|r| r.group == METADATA_GROUP && r.leader == Some(id))
            })
            .max_by_key(|r| r.term)
            .map(|r| (r.voters, r.learners, r.joint))
    }

    pub(super) fn step_node_cycle(&mut self, working: bool) {
        if self.config.nodes <= 3 || self.now < self.cycle.next_at {
            return;
        }
        self.cycle.next_at = self.now + INTERVAL;
        if !self.admin.idle() {
            return;
        }
        let Some(metadata) = self.newest_metadata() else { return };
        match self.cycle.phase {
            Phase::Idle => {
                if working && metadata.nodes.len() == self.config.nodes && self.rng.gen_bool(0.02) {
                    let node = self.rng.gen_range(1..=self.config.nodes as NodeId);
                    self.cycle.phase = Phase::Draining(node);
                    self.note(format!("retire node {node}: drain it"));
                }
            }
            Phase::Draining(node) => self.drain(node, &metadata),
            Phase::Removing(node) => {
                if metadata.nodes.contains_key(&node) {
                    // Refused (a move put a replica back) or not applied yet.
                    self.cycle.phase = Phase::Draining(node);
                    return;
                }
                let Some((voters, learners, _)) = self.metadata_members() else {
                    return;
                };
                if voters.contains(&node) || learners.contains(&node) {
                    return;
                }
                self.wipe_and_rejoin(node);
            }
            Phase::Joining(node) => {
                if !metadata.nodes.contains_key(&node) {
                    self.admin.push(add_node(node));
                    return;
                }
                if let Some((voters, _, false)) = self.metadata_members()
                    && voters.contains(&node)
                {
                    self.note(format!("node {node} is a voter again"));
                    self.cycle.phase = Phase::Idle;
                }
            }
        }
    }

    /// Moves every partition that is to keep a replica on `node` elsewhere;
    /// once it holds none, removes it.
    fn drain(&mut self, node: NodeId, metadata: &MetadataState) {
        let members: Vec<NodeId> = metadata.nodes.keys().copied().filter(|n| *n != node).collect();
        let mut moves = Vec::new();
        for (topic, index, partition) in metadata.partitions() {
            let desired = partition.desired();
            if !desired.contains(&node) {
                continue;
            }
            let free: Vec<NodeId> = members.iter().copied().filter(|n| !desired.contains(n)).collect();
            let to = free[self.rng.gen_range(0..free.len())];
            let replicas = desired.iter().map(|n| if *n == node { to } else { *n }).collect();
            moves.push(Reassignment {
                topic: topic.clone(),
                partition: index,
                replicas: Some(replicas),
            });
        }
        if !moves.is_empty() {
            self.admin.push(MetadataCommand::ReassignPartitions { moves });
        } else if metadata.groups_of_node(node).is_empty() {
            self.admin.push(MetadataCommand::RemoveNode { node });
            self.cycle.phase = Phase::Removing(node);
        }
    }

    /// `node` is out of every group: its disk goes, and it starts empty. (A
    /// fault's pending restart of it then finds it running.)
    fn wipe_and_rejoin(&mut self, node: NodeId) {
        let index = (node - 1) as usize;
        if self.nodes[index].is_running() {
            self.nodes[index].crash(&mut self.rng, false, false);
        }
        self.nodes[index].wipe();
        self.start(index);
        self.note(format!("node {node} removed: wiped, started empty to join again"));
        self.admin.push(add_node(node));
        self.cycle.phase = Phase::Joining(node);
    }
}

fn add_node(node: NodeId) -> MetadataCommand {
    MetadataCommand::AddNode {
        node,
        raft_addr: format!("sim-{node}"),
    }
}
