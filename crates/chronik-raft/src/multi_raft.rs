//! The handle to the loop that drives every Raft group of a node.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::config::MultiRaftConfig;
use crate::core::RaftCore;
use crate::disk_space::DiskSpace;
use crate::error::{ProposeError, StartError};
use crate::log_files::UncachedLogFiles;
use crate::mailbox::Mailbox;
use crate::membership::MembershipChange;
use crate::shell::{Command, Control, LoopPulse, Shell};
use crate::state_machine::StateMachine;
use crate::status::{GroupReport, StatusBoard};
use crate::transport::SharedTransport;
use crate::{GroupId, NodeId};

/// Messages from peers queued for the loop before new ones are dropped.
const CONTROL_QUEUE_DEPTH: usize = 4096;

/// A handle to the loop: cheap to clone, used by request handlers.
pub struct MultiRaft<O> {
    commands: mpsc::Sender<Command<O>>,
    controls: mpsc::Sender<Control>,
    inbound_bytes: Arc<AtomicUsize>,
    disk: Option<Arc<DiskSpace>>,
    status: StatusBoard,
    pulse: LoopPulse,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl<O> Clone for MultiRaft<O> {
    fn clone(&self) -> Self {
        MultiRaft {
            commands: self.commands.clone(),
            controls: self.controls.clone(),
            inbound_bytes: self.inbound_bytes.clone(),
            disk: self.disk.clone(),
            status: self.status.clone(),
            pulse: self.pulse.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl<O: Send + 'static> MultiRaft<O> {
    /// Opens the node's Raft log store under `dir`, loads every group found
    /// there (creating the metadata group on first start), and starts the loop.
    pub fn start<S>(
        dir: &Path,
        config: MultiRaftConfig,
        state_machine: S,
        transport: SharedTransport,
    ) -> Result<Self, StartError>
    where
        S: StateMachine<Output = O>,
    {
        let (commands, command_rx) = mpsc::channel(config.proposal_queue_depth);
        let (controls, control_rx) = mpsc::channel(CONTROL_QUEUE_DEPTH);
        let inbound_bytes = Arc::new(AtomicUsize::new(0));
        let disk = config.disk.clone();
        let pulse = LoopPulse::new();
        let shell = Shell {
            commands: command_rx,
            controls: control_rx,
            inbound_bytes: inbound_bytes.clone(),
            tick_interval: config.tick_interval,
            batch: config.proposal_queue_depth,
            pulse: pulse.clone(),
        };
        let files = Arc::new(UncachedLogFiles::new());
        let core = RaftCore::open(dir, files, config, state_machine, transport, Instant::now())?;
        let status = core.status().clone();
        let thread = std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || shell.run(core))?;
        Ok(MultiRaft {
            commands,
            controls,
            inbound_bytes,
            disk,
            status,
            pulse,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// Proposes `data` to `group` and waits until it is committed and applied.
    /// Waiting is asynchronous: the caller's task yields, no thread blocks.
    pub async fn propose(&self, group: GroupId, data: Vec<u8>) -> Result<O, ProposeError> {
        self.submit(group, data)
            .await
            .await
            .unwrap_or(Err(ProposeError::Stopped))
    }

    /// Queues a proposal and returns the receiver of its outcome. Proposals
    /// submitted one after another reach the group in that order. Waits only
    /// while the queue is full (backpressure).
    pub async fn submit(&self, group: GroupId, data: Vec<u8>) -> oneshot::Receiver<Result<O, ProposeError>> {
        self.submit_with(group, data, false).await
    }

    /// As [`MultiRaft::submit`], answered as soon as the entry is in this
    /// leader's own log when the state machine predicts its outcome (see
    /// `RaftCore::propose_local`).
    pub async fn submit_local(&self, group: GroupId, data: Vec<u8>) -> oneshot::Receiver<Result<O, ProposeError>> {
        self.submit_with(group, data, true).await
    }

    async fn submit_with(
        &self,
        group: GroupId,
        data: Vec<u8>,
        local: bool,
    ) -> oneshot::Receiver<Result<O, ProposeError>> {
        let (reply, response) = oneshot::channel();
        let command = Command::Propose {
            group,
            data,
            reply,
            local,
        };
        if let Err(mpsc::error::SendError(Command::Propose { reply, .. })) = self.commands.send(command).await {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        response
    }

    /// When the loop last finished an iteration.
    pub fn pulse(&self) -> &LoopPulse {
        &self.pulse
    }

    /// Where the transport's server delivers what peers send.
    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            inbound: self.controls.clone(),
            queued_bytes: self.inbound_bytes.clone(),
            disk: self.disk.clone(),
        }
    }

    /// A commit index that this node, as leader of `group`, has confirmed.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, ProposeError> {
        self.mailbox().read_index(group).await
    }

    /// Wakes `group` if this node leads it and it sleeps idle: its lease
    /// ran out, and it serves again after one quorum round. Returns once
    /// asked; watch [`MultiRaft::status`] for the lease.
    pub async fn wake(&self, group: GroupId) {
        let _ = self.controls.send(Control::Wake { group }).await;
    }

    /// The Raft state of every group on this node, as of now.
    pub async fn describe(&self) -> Vec<GroupReport> {
        let (reply, reports) = oneshot::channel();
        if self.controls.send(Control::Describe { reply }).await.is_err() {
            return Vec::new();
        }
        reports.await.unwrap_or_default()
    }

    /// Proposes one step of a membership change to `group`, which this node
    /// leads, and waits until it is applied.
    pub async fn change_membership(&self, group: GroupId, change: MembershipChange) -> Result<(), ProposeError> {
        self.ask(|reply| Control::ChangeMembership { group, change, reply })
            .await
    }

    /// Asks this node, leader of `group`, to hand the leadership to `to`.
    /// Returns once asked; the transfer itself takes an election.
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), ProposeError> {
        self.ask(|reply| Control::TransferLeader { group, to, reply }).await
    }

    /// Sends the loop a control that answers through `reply`, and waits.
    async fn ask(
        &self,
        control: impl FnOnce(oneshot::Sender<Result<(), ProposeError>>) -> Control,
    ) -> Result<(), ProposeError> {
        let (reply, outcome) = oneshot::channel();
        self.controls
            .send(control(reply))
            .await
            .map_err(|_| ProposeError::Stopped)?;
        outcome.await.unwrap_or(Err(ProposeError::Stopped))
    }

    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    /// Stops the loop after a final checkpoint and waits for it to finish.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
