//! A leader whose node refuses connections is replaced once its lease has
//! run out, not after a whole election timeout of silence.
//!
//! Followers normally grant no vote for an election timeout (1 s) after
//! hearing from their leader, and a leader's read lease is half that
//! (`RaftCore::lease_duration`). So once a node's leases are over, its
//! followers could elect another leader safely; they wait the timeout out
//! only because a node that is merely slow (a long fsync, a loaded
//! machine) must not lose its leadership to every stall. A refused
//! connection tells the two apart: the peer's host answered that nothing
//! listens on its Raft port. Usually its process ended; a firewall that
//! rejects does the same to a live node, which is why the refusal alone
//! does not end the wait: the node must also have been silent for a lease
//! and one tick more. A node heard from again is no longer departed.
//!
//! The followers of such a node's groups then count their election
//! timeout as run out: they campaign one to three ticks later and grant
//! each other's votes. A leader killed under load is replaced 0.7-1.0 s
//! after its last message instead of 1.1-1.3 s.

use raft::StateRole;
use raft_engine::env::FileSystem;

use super::RaftCore;
use super::hibernate::WakeCause;
use crate::GroupId;
use crate::config::PlantedBug;
use crate::state_machine::StateMachine;

impl<S: StateMachine, F: FileSystem> RaftCore<S, F> {
    /// Takes the transport's reports of refused connections.
    pub(super) fn note_departed_peers(&mut self) {
        for node in self.transport.take_departed() {
            if self.departed.insert(node) {
                // Debug: behind a one-way firewall this repeats at every
                // reconnection; the transport already warns once.
                tracing::debug!(node, "node {node} refused a connection: down, or cut off by a firewall");
            }
        }
    }

    /// Ends the wait of the followers whose leader departed and has been
    /// silent past any lease it could hold.
    pub(super) fn replace_departed_leaders(&mut self) {
        let silence = if self.config.planted_bug == Some(PlantedBug::DepartedWithoutSilence) {
            std::time::Duration::ZERO
        } else {
            self.lease_duration() + self.config.tick_interval
        };
        let gone: Vec<_> = self
            .departed
            .iter()
            .filter(|node| !self.liveness.heard_within(**node, self.now, silence))
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        // One pass over the groups, whatever the number of departed nodes.
        let orphans: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                let raft = &g.node.raft;
                raft.state == StateRole::Follower
                    && gone.contains(&raft.leader_id)
                    && raft.election_elapsed < self.config.election_ticks
            })
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            if !self.awake.contains(&id) {
                self.wake(id, WakeCause::LeaderSilent);
            } else if let Some(group) = self.groups.get_mut(&id) {
                group.node.raft.election_elapsed = self.config.election_ticks;
            }
        }
    }
}
