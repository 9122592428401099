//! A peer whose Raft port refuses connections runs no process: its host
//! answered that nothing listens there. The groups it led elect a successor
//! at once instead of waiting out an election timeout of silence, which
//! shortens a crashed leader's failover from 1.1-1.3 s to a few ticks.
//!
//! Leases stay sound. A leader serves reads only while followers that
//! heard from it grant no vote for an election timeout; here a follower
//! starts granting votes early, but only once the leader's process has
//! ended, and a process that ended serves nothing. A node closes its Raft
//! port only by exiting, and a restarted node has forgotten its leadership.
//! A peer that is paused or cut off does not refuse: its connection hangs
//! or times out, and the groups wait the timeout out as before.

use raft::StateRole;
use raft_engine::env::FileSystem;

use super::RaftCore;
use super::hibernate::WakeCause;
use crate::GroupId;
use crate::state_machine::StateMachine;

impl<S: StateMachine, F: FileSystem> RaftCore<S, F> {
    /// Lets the followers of departed leaders campaign within their
    /// randomized timeout's spread (one to three ticks), so that the
    /// followers, all learning of the departure at about the same time,
    /// do not ignore each other's vote requests.
    pub(super) fn replace_departed_leaders(&mut self) {
        for node in self.transport.take_departed() {
            if self.liveness.departed(node, self.now, self.election_timeout()) {
                tracing::info!(node, "node {node} refused a connection: it is down");
                self.isr_stale = true;
            }
            let orphans: Vec<GroupId> = self
                .groups
                .iter()
                .filter(|(_, g)| g.node.raft.state == StateRole::Follower && g.node.raft.leader_id == node)
                .map(|(id, _)| *id)
                .collect();
            for id in orphans {
                if !self.awake.contains(&id) {
                    self.wake(id, WakeCause::LeaderSilent);
                } else if let Some(group) = self.groups.get_mut(&id) {
                    let raft = &mut group.node.raft;
                    raft.election_elapsed = raft.election_elapsed.max(self.config.election_ticks);
                }
            }
        }
    }
}
