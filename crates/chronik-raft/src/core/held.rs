//! Proposals a leader holds back. The state machine judges each proposal
//! before it is appended (`StateMachine::predict`); when it cannot judge one
//! yet (`Prediction::Wait`: entries it did not see are still in flight), the
//! proposal waits here, and so does every later proposal of the group, so
//! that the log keeps the order the proposals came in. After each Ready
//! round the queue is offered again from its front.
//!
//! What is held has a byte budget of its own, as large as raft-rs's limit
//! for uncommitted entries; past it a proposal is dropped, as raft-rs would
//! drop it. A leader that steps down, a stopping loop and a removed group
//! fail what is held: none of it reached the log, so a retry duplicates
//! nothing.

use std::collections::VecDeque;

use raft_engine::env::FileSystem;

use super::{PendingProposal, RaftCore, Reply, drops_proposal};
use crate::GroupId;
use crate::error::ProposeError;
use crate::state_machine::{Prediction, Proposed, StateMachine};

/// A proposal not yet shown to raft-rs.
pub(super) struct HeldProposal<O> {
    pub(super) data: Vec<u8>,
    pub(super) reply: Reply<O>,
    /// Answer once the entry is in this leader's own log (acks=1).
    pub(super) local: bool,
}

pub(super) struct HeldQueue<O> {
    queue: VecDeque<HeldProposal<O>>,
    bytes: u64,
}

impl<O> HeldQueue<O> {
    pub(super) fn new() -> Self {
        HeldQueue {
            queue: VecDeque::new(),
            bytes: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push_back(&mut self, proposal: HeldProposal<O>) {
        self.bytes += proposal.data.len() as u64;
        self.queue.push_back(proposal);
    }

    /// Puts a proposal that must still wait at the front.
    fn push_front(&mut self, proposal: HeldProposal<O>) {
        self.bytes += proposal.data.len() as u64;
        self.queue.push_front(proposal);
    }

    fn pop_front(&mut self) -> Option<HeldProposal<O>> {
        let proposal = self.queue.pop_front()?;
        self.bytes -= proposal.data.len() as u64;
        Some(proposal)
    }

    /// Answers every held proposal with `error`.
    pub(super) fn fail(&mut self, error: ProposeError) {
        for proposal in self.queue.drain(..) {
            let _ = proposal.reply.send(Err(error.clone()));
        }
        self.bytes = 0;
    }
}

/// What became of a proposal offered to the state machine and raft-rs.
enum Offer<O> {
    /// Appended, refused, or dropped: it has its answer or awaits it.
    Settled,
    /// The state machine cannot judge it yet.
    Wait(HeldProposal<O>),
}

impl<S: StateMachine, F: FileSystem> RaftCore<S, F> {
    /// Proposes to `id`, which this node leads, behind any proposal it
    /// holds, so that the log keeps the order proposals came in.
    pub(super) fn propose_in_order(&mut self, id: GroupId, proposal: HeldProposal<S::Output>) {
        let limit = self.config.max_uncommitted_bytes;
        let Some(group) = self.groups.get_mut(&id) else {
            let _ = proposal.reply.send(Err(ProposeError::UnknownGroup(id)));
            return;
        };
        if !group.held.is_empty() {
            if group.held.bytes + proposal.data.len() as u64 > limit {
                let _ = proposal.reply.send(Err(ProposeError::Dropped));
            } else {
                group.held.push_back(proposal);
            }
            return;
        }
        if let Offer::Wait(proposal) = self.offer(id, proposal) {
            self.meters.held_proposals.increment(1);
            self.keep_waiting(id, proposal);
        }
    }

    /// Offers the held proposals of every holding group again, in order, up
    /// to the first that must still wait. Whether any reached the log.
    pub(super) fn release_held(&mut self) -> bool {
        let mut released = false;
        let holding: Vec<GroupId> = self.holding.iter().copied().collect();
        for id in holding {
            loop {
                let Some(proposal) = self.groups.get_mut(&id).and_then(|g| g.held.pop_front()) else {
                    self.holding.remove(&id);
                    break;
                };
                match self.offer(id, proposal) {
                    Offer::Settled => released = true,
                    Offer::Wait(proposal) => {
                        self.keep_waiting(id, proposal);
                        break;
                    }
                }
            }
        }
        released
    }

    /// Puts `proposal`, which the state machine cannot judge yet, back at
    /// the front of `id`'s queue.
    fn keep_waiting(&mut self, id: GroupId, proposal: HeldProposal<S::Output>) {
        match self.groups.get_mut(&id) {
            Some(group) => {
                group.held.push_front(proposal);
                self.holding.insert(id);
            }
            None => {
                let _ = proposal.reply.send(Err(ProposeError::UnknownGroup(id)));
            }
        }
    }

    /// Shows `proposal` to the state machine, in log order, and appends it
    /// unless the state machine refuses it or cannot judge it yet.
    fn offer(&mut self, id: GroupId, proposal: HeldProposal<S::Output>) -> Offer<S::Output> {
        let HeldProposal { mut data, reply, local } = proposal;
        // Borrowed apart from the state machine, which sees the proposal below.
        let Some(group) = self.groups.get_mut(&id) else {
            let _ = reply.send(Err(ProposeError::UnknownGroup(id)));
            return Offer::Settled;
        };
        let raft = &group.node.raft;
        if raft.state != raft::StateRole::Leader {
            let leader = super::known_leader(raft.leader_id);
            let _ = reply.send(Err(ProposeError::NotLeader { group: id, leader }));
            return Offer::Settled;
        }
        if drops_proposal(raft, data.len(), self.config.max_uncommitted_bytes) {
            // Refused before the state machine sees it, so that a proposal
            // refused under backpressure does not end its forecast.
            let _ = reply.send(Err(ProposeError::Dropped));
            return Offer::Settled;
        }
        let proposed = Proposed {
            index: raft.raft_log.last_index() + 1,
            term: raft.term,
            applied: raft.raft_log.applied,
            leader_ready: group.status.leader_ready,
        };
        // A leader deposed without knowing it yet would refuse against a
        // state its successor may not share: it refuses only under its
        // lease, and otherwise proposes the entry unseen (which ends the
        // forecast) and learns from the log.
        let leased = group.status.serves(self.config.node_id, self.now);
        let local = match self.state_machine.predict(id, proposed, &mut data) {
            Prediction::Wait => return Offer::Wait(HeldProposal { data, reply, local }),
            Prediction::Refusal(outcome) if leased => {
                self.meters.refused_proposals.increment(1);
                let _ = reply.send(Ok(outcome));
                return Offer::Settled;
            }
            Prediction::Outcome(outcome) => Some(outcome).filter(|_| local),
            Prediction::Refusal(_) | Prediction::Unknown => None,
        };
        if group.node.propose(Vec::new(), data).is_err() {
            self.state_machine.withdraw(id);
            let _ = reply.send(Err(ProposeError::Dropped));
            return Offer::Settled;
        }
        debug_assert_eq!(
            group.node.raft.raft_log.last_index(),
            proposed.index,
            "one proposal appends one entry, at the index predicted"
        );
        group.pending.push_back(PendingProposal {
            index: proposed.index,
            term: proposed.term,
            reply,
            local,
        });
        Offer::Settled
    }
}
