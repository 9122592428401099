//! The handle to the loop that drives every Raft group of a node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use std::time::Duration;

use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot};

use crate::disk_space::DiskSpace;
use crate::driver::Driver;
use crate::log_files::{LogEngine, UncachedLogFiles};
use crate::state_machine::StateMachine;
use crate::status::{GroupReport, StatusBoard};
use crate::transport::{Mailbox, SharedTransport, SnapshotReports};
use crate::{GroupId, NodeId};

/// Limits and timings of the loop.
#[derive(Debug, Clone)]
pub struct MultiRaftConfig {
    pub node_id: NodeId,
    /// One Raft tick; elections take `election_ticks` of them.
    pub tick_interval: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Proposals queued for the loop before callers wait (backpressure).
    pub proposal_queue_depth: usize,
    /// Upper bound on the bytes of one append message to a follower.
    pub max_append_bytes: u64,
    /// Uncommitted bytes a leader accepts before it rejects proposals.
    pub max_uncommitted_bytes: u64,
    /// How often applied state is made durable and the Raft log compacted.
    pub checkpoint_interval: Duration,
    /// Voters of the metadata group if this node has to create it (the first
    /// start of a cluster's nodes). Empty: the node must already hold it.
    pub initial_voters: Vec<NodeId>,
    /// Where snapshots received from leaders are staged.
    pub snapshot_dir: PathBuf,
    /// A follower is in sync while at most this many entries behind the leader
    /// and heard from within an election timeout.
    pub in_sync_max_lag: u64,
    /// A leader keeps up to this many applied entries a follower still lacks,
    /// so a short absence is caught up from the log, not a snapshot.
    pub log_retain_entries: u64,
    /// While it reports low space, replicated entries are refused.
    pub disk: Option<Arc<DiskSpace>>,
}

impl MultiRaftConfig {
    pub fn new(node_id: NodeId, snapshot_dir: PathBuf) -> Self {
        MultiRaftConfig {
            node_id,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            proposal_queue_depth: 8192,
            max_append_bytes: 1 << 20,
            max_uncommitted_bytes: 256 << 20,
            checkpoint_interval: Duration::from_secs(1),
            initial_voters: vec![node_id],
            snapshot_dir,
            in_sync_max_lag: 1000,
            log_retain_entries: 10_000,
            disk: None,
        }
    }
}

/// Why a proposal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader of group {group} (leader: {leader:?})")]
    NotLeader { group: GroupId, leader: Option<NodeId> },
    #[error("group {0} does not run on this node")]
    UnknownGroup(GroupId),
    #[error("the proposal was dropped before it committed (leadership changed or too much in flight)")]
    Dropped,
    #[error("the Raft loop has stopped")]
    Stopped,
}

pub(crate) type Reply<O> = oneshot::Sender<Result<O, ProposeError>>;

/// Work from request handlers, queued with backpressure.
pub(crate) enum Command<O> {
    Propose {
        group: GroupId,
        data: Vec<u8>,
        reply: Reply<O>,
    },
    Shutdown,
}

/// Work from the network and from operators; served before proposals.
pub(crate) enum Control {
    /// Messages from a peer, of `bytes` (see `transport::message_bytes`).
    Messages {
        from: NodeId,
        messages: Vec<(GroupId, Message)>,
        bytes: usize,
    },
    ReadIndex {
        group: GroupId,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    Describe {
        reply: oneshot::Sender<Vec<GroupReport>>,
    },
}

/// Messages from peers queued for the loop before new ones are dropped.
const CONTROL_QUEUE_DEPTH: usize = 4096;

/// A handle to the loop: cheap to clone, used by request handlers.
pub struct MultiRaft<O> {
    commands: mpsc::Sender<Command<O>>,
    controls: mpsc::Sender<Control>,
    inbound_bytes: Arc<AtomicUsize>,
    disk: Option<Arc<DiskSpace>>,
    status: StatusBoard,
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
        let engine_config = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            purge_threshold: raft_engine::ReadableSize::mb(512),
            // Record batches are often compressed by clients already, and
            // compressing the rest costs more CPU than the disk time it saves.
            batch_compression_threshold: raft_engine::ReadableSize(0),
            target_file_size: raft_engine::ReadableSize::mb(64),
            ..Default::default()
        };
        let engine = Arc::new(LogEngine::open_with_file_system(
            engine_config,
            Arc::new(UncachedLogFiles::new()),
        )?);
        // Half-received snapshots from before a restart are of no use.
        let _ = std::fs::remove_dir_all(&config.snapshot_dir);
        std::fs::create_dir_all(&config.snapshot_dir)?;
        let (commands, command_rx) = mpsc::channel(config.proposal_queue_depth);
        let (controls, control_rx) = mpsc::channel(CONTROL_QUEUE_DEPTH);
        let status = StatusBoard::default();
        let inbound_bytes = Arc::new(AtomicUsize::new(0));
        let disk = config.disk.clone();
        let mut driver = Driver::new(
            config,
            engine,
            state_machine,
            status.clone(),
            transport,
            SnapshotReports::default(),
            inbound_bytes.clone(),
        );
        driver.load_groups()?;
        let thread = std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || driver.run(command_rx, control_rx))?;
        Ok(MultiRaft {
            commands,
            controls,
            inbound_bytes,
            disk,
            status,
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
        let (reply, response) = oneshot::channel();
        if let Err(mpsc::error::SendError(Command::Propose { reply, .. })) =
            self.commands.send(Command::Propose { group, data, reply }).await
        {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        response
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

    /// The Raft state of every group on this node, as of now.
    pub async fn describe(&self) -> Vec<GroupReport> {
        let (reply, reports) = oneshot::channel();
        if self.controls.send(Control::Describe { reply }).await.is_err() {
            return Vec::new();
        }
        reports.await.unwrap_or_default()
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

/// Why the loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft log store: {0}")]
    Engine(#[from] raft_engine::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "group {group}: applied state reaches index {durable} but the Raft log was compacted to {compacted}; \
         the data directory is damaged"
    )]
    StateBehindLog {
        group: GroupId,
        durable: u64,
        compacted: u64,
    },
    #[error(
        "this data directory holds no cluster state; start every node of a new cluster with --bootstrap \
         and the same peer list"
    )]
    NotBootstrapped,
}
