//! Idle groups that cost nothing. A group whose leader has seen no new entry
//! for `hibernate_ticks`, with every live replica holding its whole log,
//! stops ticking: its leader sends no heartbeats and renews no lease, its
//! followers count no election timeout. Liveness is carried per node pair
//! instead, by one beat each heartbeat interval (`signals::Signal::Beat`).
//!
//! A sleeping group wakes:
//! - on its leader, for a proposal, a read, an operator's request, or a
//!   peer's vote request (a replica that missed the sleep or came back);
//! - on a replica, for any message that makes raft-rs act (a heartbeat, an
//!   append), or a vote request; one that wakes for a reason other than its
//!   leader asks the leader to wake too;
//! - on a replica, when the leader's node has been silent for an election
//!   timeout: it then campaigns within one more randomized timeout.
//!
//! Safety is untouched: Raft needs no ticks for it, and a sleeping leader's
//! lease runs out like any other, so reads wait for a woken leader's first
//! quorum round. Followers that do not tick grant no vote, which only
//! lengthens the promise leases count on. The shortcuts, a replica that
//! campaigns at once when the leader's node went silent (here) or refused
//! a connection (`core/departed.rs`), are taken an election timeout, or a
//! lease and a tick, after the last message from that node, past any lease
//! that message could have confirmed.

use raft::StateRole;
use raft::eraftpb::Message;
use raft_engine::env::FileSystem;

use super::{RaftCore, is_vote_request, known_leader};
use crate::signals::{self, Signal};
use crate::state_machine::StateMachine;
use crate::{GroupId, NodeId};

/// Why a sleeping group wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WakeCause {
    /// A proposal, read or operator's request on this node.
    Request,
    /// A message that raft-rs acts on, from this node.
    Message(NodeId),
    /// The leader's node has been silent for an election timeout.
    LeaderSilent,
}

impl<S: StateMachine, F: FileSystem> RaftCore<S, F> {
    /// Starts `id` ticking again, if it sleeps.
    pub(super) fn wake(&mut self, id: GroupId, cause: WakeCause) {
        let own = self.config.node_id;
        let Some(group) = self.groups.get_mut(&id) else { return };
        if !self.awake.insert(id) {
            return;
        }
        group.quiet_ticks = 0;
        let raft = &mut group.node.raft;
        // A replica that slept heard from its leader just before: it grants
        // no vote for a full election timeout from now, as if it just had.
        // One whose leader fell silent has waited that timeout already.
        raft.election_elapsed = match cause {
            WakeCause::LeaderSilent => self.config.election_ticks,
            _ => 0,
        };
        let leader = known_leader(raft.leader_id);
        let term = raft.term;
        if raft.state == StateRole::Leader {
            // Heartbeats now, which wake the replicas.
            group.node.ping();
        } else if let Some(leader) = leader.filter(|l| *l != own && cause != WakeCause::Message(*l)) {
            let wake = signals::message(Signal::Wake, own, leader, term);
            self.outbox.entry(leader).or_default().push((id, wake));
        }
        group.status.asleep = false;
        self.status.set(id, group.status.clone());
        self.meters.wakes.increment(1);
        self.renew_lease(id);
    }

    /// A message for a group that may sleep: vote requests wake it (someone
    /// campaigns: heartbeats, or a vote, are due), others wake it when
    /// raft-rs acts on them. Replies to heartbeats sent before the group
    /// slept change nothing and leave it asleep.
    pub(super) fn step_awake(&mut self, id: GroupId, message: Message) {
        let from = message.from;
        if !self.awake.contains(&id) && is_vote_request(&message) {
            self.wake(id, WakeCause::Message(from));
        }
        let Some(group) = self.groups.get_mut(&id) else { return };
        if let Err(e) = group.node.step(message) {
            tracing::debug!(group = id, "Raft message refused: {e}");
        }
        if !self.awake.contains(&id) && group.node.has_ready() {
            self.wake(id, WakeCause::Message(from));
        }
    }

    /// A signal from peer `from` about group `id`.
    pub(super) fn on_signal(&mut self, id: GroupId, from: NodeId, term: u64, signal: Signal) {
        match signal {
            Signal::Beat | Signal::Stray => {}
            Signal::Wake => {
                let leads = self
                    .groups
                    .get(&id)
                    .is_some_and(|g| g.node.raft.state == StateRole::Leader && g.node.raft.term == term);
                if leads {
                    self.wake(id, WakeCause::Message(from));
                }
            }
            Signal::Sleep { commit } => self.obey_sleep(id, from, term, commit),
        }
    }

    /// Sleeps as the leader asks, if this replica holds what the leader
    /// holds; otherwise asks the leader to stay awake with it.
    fn obey_sleep(&mut self, id: GroupId, from: NodeId, term: u64, commit: u64) {
        let own = self.config.node_id;
        let Some(group) = self.groups.get_mut(&id) else { return };
        let raft = &group.node.raft;
        if raft.term != term || raft.leader_id != from || raft.state != StateRole::Follower {
            return; // from another term or leader: stale
        }
        let log = &raft.raft_log;
        let caught_up = log.committed == commit && log.last_index() == commit && log.applied == commit;
        if !caught_up || group.node.has_ready() || !self.awake.contains(&id) {
            if self.awake.contains(&id) {
                let wake = signals::message(Signal::Wake, own, from, term);
                self.outbox.entry(from).or_default().push((id, wake));
            }
            return;
        }
        self.fall_asleep(id);
    }

    fn fall_asleep(&mut self, id: GroupId) {
        let Some(group) = self.groups.get_mut(&id) else { return };
        debug_assert!(!group.node.has_ready(), "group {id} would sleep with work to do");
        self.awake.remove(&id);
        group.node.raft.election_elapsed = 0;
        group.status.asleep = true;
        self.status.set(id, group.status.clone());
        self.meters.sleeps.increment(1);
    }

    /// Puts to sleep the groups this node leads that have been quiet for
    /// `hibernate_ticks`, telling their replicas to sleep too.
    pub(super) fn hibernate_quiet_groups(&mut self) {
        let Some(after) = self.config.hibernate_ticks else {
            return;
        };
        let mut sleepy = Vec::new();
        for id in &self.awake {
            let Some(group) = self.groups.get_mut(id) else { continue };
            let last = group.node.raft.raft_log.last_index();
            if group.quiet_index != last {
                group.quiet_index = last;
                group.quiet_ticks = 0;
                continue;
            }
            group.quiet_ticks = group.quiet_ticks.saturating_add(1);
            if group.quiet_ticks >= after && self.may_sleep(*id) {
                sleepy.push(*id);
            }
        }
        let own = self.config.node_id;
        for id in sleepy {
            let Some(group) = self.groups.get(&id) else { continue };
            let (term, commit) = (group.node.raft.term, group.node.raft.raft_log.committed);
            let replicas: Vec<NodeId> = group
                .node
                .raft
                .prs()
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| *n != own)
                .collect();
            for replica in replicas {
                let sleep = signals::message(Signal::Sleep { commit }, own, replica, term);
                self.outbox.entry(replica).or_default().push((id, sleep));
            }
            self.fall_asleep(id);
        }
    }

    /// Whether group `id`, which this node leads, has nothing under way:
    /// every entry committed and applied, every live replica holding all of
    /// them, no learner or joint configuration (a move), and no proposal,
    /// read, lease renewal or change waiting. A replica that is down does
    /// not keep the group awake: when its node is heard again the leader
    /// wakes the group (and it campaigns, which would wake it too).
    fn may_sleep(&self, id: GroupId) -> bool {
        let Some(group) = self.groups.get(&id) else {
            return false;
        };
        let raft = &group.node.raft;
        let log = &raft.raft_log;
        let last = log.last_index();
        let window = self.election_timeout();
        let conf = raft.prs().conf();
        raft.state == StateRole::Leader
            && self.state_machine.may_sleep(id)
            // A move under way: learners catching up, or a joint configuration.
            && conf.learners().is_empty()
            && conf.to_conf_state().voters_outgoing.is_empty()
            && log.committed == last
            && log.applied == last
            && group.pending.is_empty()
            && group.held.is_empty()
            && group.conf_pending.is_none()
            && group.lease_request.is_none()
            && raft.lead_transferee.is_none()
            && !raft.has_pending_conf()
            && raft.pending_read_count() == 0
            && !group.node.has_ready()
            && raft.prs().iter().all(|(node, progress)| {
                *node == self.config.node_id
                    || progress.matched == last
                    || !self.liveness.heard_within(*node, self.now, window)
            })
    }

    /// Sends each peer this node shares a group with one beat per heartbeat
    /// interval, whatever the number of groups.
    pub(super) fn send_beats(&mut self) {
        if !self.ticks.is_multiple_of(self.config.heartbeat_ticks.max(1) as u64) {
            return;
        }
        let own = self.config.node_id;
        if self.peers.is_none() {
            let peers = self
                .groups
                .values()
                .flat_map(|g| g.node.raft.prs().iter().map(|(n, _)| *n).collect::<Vec<_>>())
                .filter(|n| *n != own)
                .collect();
            self.peers = Some(peers);
        }
        for peer in self.peers.iter().flatten() {
            let beat = signals::message(Signal::Beat, own, *peer, 0);
            self.outbox
                .entry(*peer)
                .or_default()
                .push((crate::METADATA_GROUP, beat));
        }
    }

    /// Wakes the sleeping groups this node leads in which `node`, just back
    /// from a silence (or heard for the first time), lacks entries: they
    /// slept without it, and it may have no way to ask (a replica created
    /// empty for a move waits for its leader).
    pub(super) fn wake_groups_behind_on(&mut self, node: NodeId) {
        let behind: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(id, g)| {
                let raft = &g.node.raft;
                !self.awake.contains(id)
                    && raft.state == StateRole::Leader
                    && raft
                        .prs()
                        .get(node)
                        .is_some_and(|p| p.matched < raft.raft_log.last_index())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in behind {
            self.wake(id, WakeCause::Message(node));
        }
    }

    /// Wakes the sleeping groups whose leader's node has just been silent
    /// for an election timeout, so that they elect another.
    pub(super) fn wake_groups_of_silent_leaders(&mut self) {
        let silent = self.liveness.newly_silent(self.now, self.election_timeout());
        if silent.is_empty() {
            return;
        }
        self.isr_stale = true;
        let orphans: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(id, g)| !self.awake.contains(id) && silent.contains(&g.node.raft.leader_id))
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            tracing::info!(group = id, "the leader's node is silent: waking to elect another");
            self.wake(id, WakeCause::LeaderSilent);
        }
    }
}
