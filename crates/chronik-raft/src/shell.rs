//! The shell around the sans-IO core: the loop thread, the channels that
//! feed it, and the wall clock.
//!
//! Each iteration waits for work (a peer's messages, a proposal) or the
//! ticker, takes whatever else is queued so that it shares the iteration's
//! fsync, and hands it all to the core with the time of day.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raft::eraftpb::Message;
use raft_engine::env::FileSystem;
use tokio::sync::{mpsc, oneshot};

use crate::core::{RaftCore, Reply};
use crate::error::ProposeError;
use crate::membership::MembershipChange;
use crate::state_machine::StateMachine;
use crate::status::GroupReport;
use crate::telemetry::ShellMeters;
use crate::{GroupId, NodeId};

/// Proposal bytes one iteration takes in: the rest waits for the next, so
/// one iteration's write and fsync stay short.
pub(crate) const MAX_PROPOSED_BYTES: usize = 16 << 20;
/// A loop iteration taking this long is logged.
const SLOW_ITERATION: Duration = Duration::from_millis(300);

/// Work from request handlers, queued with backpressure.
pub(crate) enum Command<O> {
    Propose {
        group: GroupId,
        data: Vec<u8>,
        reply: Reply<O>,
        /// Answer once in the leader's own log (see `RaftCore::propose_local`).
        local: bool,
    },
    Shutdown,
}

/// Work from the network and from operators; served before proposals.
pub(crate) enum Control {
    /// Messages from a peer, of `bytes` (see `mailbox::message_bytes`).
    Messages {
        from: NodeId,
        messages: Vec<(GroupId, Message)>,
        bytes: usize,
    },
    ReadIndex {
        group: GroupId,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    /// Wake a group led here that sleeps, for a request about to read it.
    Wake {
        group: GroupId,
    },
    Describe {
        reply: oneshot::Sender<Vec<GroupReport>>,
    },
    ChangeMembership {
        group: GroupId,
        change: MembershipChange,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    TransferLeader {
        group: GroupId,
        to: NodeId,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
}

/// When the loop last finished an iteration, for health checks: a loop that
/// stops finishing them is hung (an fsync that never returns, a deadlock).
#[derive(Debug, Clone)]
pub struct LoopPulse {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl LoopPulse {
    pub(crate) fn new() -> Self {
        LoopPulse {
            origin: Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn beat(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.origin).as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long ago the loop last finished an iteration (or started).
    pub fn since_last(&self) -> Duration {
        let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }
}

/// The loop's inputs and limits.
pub(crate) struct Shell<O> {
    pub(crate) commands: mpsc::Receiver<Command<O>>,
    pub(crate) controls: mpsc::Receiver<Control>,
    /// Bytes of received messages queued for the loop (the mailbox's budget).
    pub(crate) inbound_bytes: Arc<AtomicUsize>,
    pub(crate) tick_interval: Duration,
    /// Queued items one iteration takes at most, per kind.
    pub(crate) batch: usize,
    pub(crate) pulse: LoopPulse,
}

impl<O: Send + 'static> Shell<O> {
    /// Drives `core` until a shutdown command, or until every handle is gone.
    pub(crate) fn run<S, F>(mut self, mut core: RaftCore<S, F>)
    where
        S: StateMachine<Output = O>,
        F: FileSystem,
    {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start the Raft loop's runtime: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let meters = ShellMeters::new();
            let mut ticker = tokio::time::interval(self.tick_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let mut stop = false;
                tokio::select! {
                    biased;
                    Some(control) = self.controls.recv() => self.handle_control(&mut core, control),
                    command = self.commands.recv() => match command {
                        Some(command) => stop = !handle(&mut core, command),
                        None => stop = true,
                    },
                    _ = ticker.tick() => {}
                }
                // Take whatever else is queued so it shares this iteration's fsync.
                for _ in 0..self.batch {
                    match self.controls.try_recv() {
                        Ok(control) => self.handle_control(&mut core, control),
                        Err(_) => break,
                    }
                }
                let mut proposed = 0;
                for _ in 0..self.batch {
                    if stop || proposed >= MAX_PROPOSED_BYTES {
                        break;
                    }
                    match self.commands.try_recv() {
                        Ok(command) => {
                            if let Command::Propose { data, .. } = &command {
                                proposed += data.len();
                            }
                            stop = !handle(&mut core, command)
                        }
                        Err(_) => break,
                    }
                }
                // Read after the messages that queued meanwhile, so a stall
                // does not look like silence from the peers.
                let started = Instant::now();
                meters.proposals_queued.set(self.commands.len() as f64);
                core.advance(started);
                if stop {
                    break;
                }
                let finished = Instant::now();
                self.pulse.beat(finished);
                let took = finished.duration_since(started);
                meters.iteration_seconds.record(took);
                if took >= SLOW_ITERATION {
                    // Heartbeats wait as long: near an election timeout, followers campaign.
                    tracing::warn!(?took, "a Raft loop iteration was slow");
                }
            }
            core.stop();
        });
    }

    fn handle_control<S: StateMachine<Output = O>, F: FileSystem>(&self, core: &mut RaftCore<S, F>, control: Control) {
        match control {
            Control::Messages { from, messages, bytes } => {
                self.inbound_bytes.fetch_sub(bytes, Ordering::Relaxed);
                core.receive(Instant::now(), from, messages);
            }
            Control::ReadIndex { group, reply } => core.read_index(group, reply),
            Control::Wake { group } => core.wake_led(group),
            Control::Describe { reply } => {
                let _ = reply.send(core.describe());
            }
            Control::ChangeMembership { group, change, reply } => core.change_membership(group, change, reply),
            Control::TransferLeader { group, to, reply } => {
                let _ = reply.send(core.transfer_leader(group, to));
            }
        }
    }
}

/// Returns false when the loop should stop.
fn handle<S: StateMachine, F: FileSystem>(core: &mut RaftCore<S, F>, command: Command<S::Output>) -> bool {
    match command {
        Command::Propose {
            group,
            data,
            reply,
            local: false,
        } => core.propose(group, data, reply),
        Command::Propose {
            group,
            data,
            reply,
            local: true,
        } => core.propose_local(group, data, reply),
        Command::Shutdown => return false,
    }
    true
}
