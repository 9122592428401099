//! The loop that drives every Raft group of a node, and its handle.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use raft_engine::{Engine, LogBatch};
use tokio::sync::{mpsc, oneshot};

use crate::logger::raft_logger;
use crate::state_machine::{Effect, StateMachine};
use crate::status::{GroupStatus, StatusBoard};
use crate::storage::{EntryExt, GroupStorage, put_hard_state};
use crate::{GroupId, METADATA_GROUP, NodeId};

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
}

impl MultiRaftConfig {
    pub fn new(node_id: NodeId) -> Self {
        MultiRaftConfig {
            node_id,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            proposal_queue_depth: 8192,
            max_append_bytes: 1 << 20,
            max_uncommitted_bytes: 256 << 20,
            checkpoint_interval: Duration::from_secs(1),
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

type Reply<O> = oneshot::Sender<Result<O, ProposeError>>;

enum Command<O> {
    Propose {
        group: GroupId,
        data: Vec<u8>,
        reply: Reply<O>,
    },
    Shutdown,
}

/// A handle to the loop: cheap to clone, used by request handlers.
pub struct MultiRaft<O> {
    commands: mpsc::Sender<Command<O>>,
    status: StatusBoard,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl<O> Clone for MultiRaft<O> {
    fn clone(&self) -> Self {
        MultiRaft {
            commands: self.commands.clone(),
            status: self.status.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl<O: Send + 'static> MultiRaft<O> {
    /// Opens the node's Raft log store under `dir`, loads every group found
    /// there (creating the metadata group on first start), and starts the loop.
    pub fn start<S>(dir: &Path, config: MultiRaftConfig, state_machine: S) -> Result<Self, StartError>
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
        let engine = Arc::new(Engine::open(engine_config)?);
        let (tx, rx) = mpsc::channel(config.proposal_queue_depth);
        let status = StatusBoard::default();
        let mut driver = Driver {
            config,
            engine,
            groups: HashMap::new(),
            state_machine,
            status: status.clone(),
            logger: raft_logger(),
        };
        driver.load_groups()?;
        let thread = std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || driver.run(rx))?;
        Ok(MultiRaft {
            commands: tx,
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
}

struct PendingProposal<O> {
    index: u64,
    term: u64,
    reply: Reply<O>,
}

struct Group<O> {
    node: RawNode<GroupStorage>,
    pending: VecDeque<PendingProposal<O>>,
    status: GroupStatus,
    /// The commit index of the last hard state written to the log store.
    /// Compaction must not pass it: raft-rs refuses to start from a hard
    /// state that commits less than the log has dropped.
    persisted_commit: u64,
    /// raft-rs reports commit advances after a persist without putting them
    /// in a later `Ready`; they are written at the next checkpoint.
    commit_unsaved: bool,
}

struct Driver<S: StateMachine> {
    config: MultiRaftConfig,
    engine: Arc<Engine>,
    groups: HashMap<GroupId, Group<S::Output>>,
    state_machine: S,
    status: StatusBoard,
    logger: slog::Logger,
}

impl<S: StateMachine> Driver<S> {
    fn load_groups(&mut self) -> Result<(), StartError> {
        if !GroupStorage::exists(&self.engine, METADATA_GROUP) {
            GroupStorage::initialise(&self.engine, METADATA_GROUP, &[self.config.node_id])?;
        }
        let mut ids = self.engine.raft_groups();
        if !ids.contains(&METADATA_GROUP) {
            ids.push(METADATA_GROUP);
        }
        ids.sort_unstable();
        for id in ids {
            if GroupStorage::exists(&self.engine, id) {
                self.open_group(id)?;
            } else {
                GroupStorage::destroy(&self.engine, id)?;
            }
        }
        Ok(())
    }

    fn open_group(&mut self, id: GroupId) -> Result<(), StartError> {
        let Some(durable) = self.state_machine.open_group(id) else {
            tracing::info!(group = id, "deleting the Raft log of a group no topic owns");
            GroupStorage::destroy(&self.engine, id)?;
            return Ok(());
        };
        let storage = GroupStorage::new(self.engine.clone(), id);
        // The hard state that records a commit index is written one iteration
        // after the entries are applied, so state can be durable beyond the
        // persisted commit index. raft-rs replays from the lower of the two;
        // the state machine skips what it already holds.
        let committed = raft::Storage::initial_state(&storage)?.hard_state.commit;
        let compacted = raft::Storage::first_index(&storage)? - 1;
        if durable < compacted {
            return Err(StartError::StateBehindLog {
                group: id,
                durable,
                compacted,
            });
        }
        let applied = durable.min(committed);
        let raft_config = raft::Config {
            id: self.config.node_id,
            election_tick: self.config.election_ticks,
            heartbeat_tick: self.config.heartbeat_ticks,
            applied,
            max_size_per_msg: self.config.max_append_bytes,
            max_inflight_msgs: 256,
            max_uncommitted_size: self.config.max_uncommitted_bytes,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        let mut node = RawNode::new(&raft_config, storage, &self.logger)?;
        let voters = node.raft.prs().conf().voters().ids().iter().collect::<Vec<_>>();
        if voters == [self.config.node_id] {
            // A lone voter need not wait out an election timeout.
            node.campaign()?;
        }
        self.groups.insert(
            id,
            Group {
                node,
                pending: VecDeque::new(),
                status: GroupStatus::default(),
                persisted_commit: committed,
                commit_unsaved: false,
            },
        );
        Ok(())
    }

    fn run(mut self, mut commands: mpsc::Receiver<Command<S::Output>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start the Raft loop's runtime: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let mut ticker = tokio::time::interval(self.config.tick_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_checkpoint = Instant::now();
            loop {
                tokio::select! {
                    biased;
                    command = commands.recv() => match command {
                        Some(command) => if !self.handle(command) { break },
                        None => break,
                    },
                    _ = ticker.tick() => self.tick(),
                }
                // Take whatever else is queued so it shares this iteration's fsync.
                let mut stop = false;
                for _ in 0..self.config.proposal_queue_depth {
                    match commands.try_recv() {
                        Ok(command) => {
                            if !self.handle(command) {
                                stop = true;
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                self.process_ready();
                if stop {
                    break;
                }
                if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                    self.checkpoint();
                    last_checkpoint = Instant::now();
                }
            }
            self.process_ready();
            self.checkpoint();
            for group in self.groups.values_mut() {
                fail_pending(&mut group.pending, ProposeError::Stopped);
            }
        });
    }

    /// Returns false when the loop should stop.
    fn handle(&mut self, command: Command<S::Output>) -> bool {
        match command {
            Command::Propose { group, data, reply } => self.propose(group, data, reply),
            Command::Shutdown => return false,
        }
        true
    }

    fn propose(&mut self, id: GroupId, data: Vec<u8>, reply: Reply<S::Output>) {
        let Some(group) = self.groups.get_mut(&id) else {
            let _ = reply.send(Err(ProposeError::UnknownGroup(id)));
            return;
        };
        if group.node.raft.state != StateRole::Leader {
            let leader = known_leader(group.node.raft.leader_id);
            let _ = reply.send(Err(ProposeError::NotLeader { group: id, leader }));
            return;
        }
        let before = group.node.raft.raft_log.last_index();
        if group.node.propose(Vec::new(), data).is_err() {
            let _ = reply.send(Err(ProposeError::Dropped));
            return;
        }
        let index = group.node.raft.raft_log.last_index();
        debug_assert_eq!(index, before + 1, "one proposal appends one entry");
        group.pending.push_back(PendingProposal {
            index,
            term: group.node.raft.term,
            reply,
        });
    }

    fn tick(&mut self) {
        for group in self.groups.values_mut() {
            group.node.tick();
        }
    }

    /// One round of the Ready discipline over all groups: persist everything
    /// with one write and one fsync, then send, apply and advance.
    fn process_ready(&mut self) {
        let mut batch = LogBatch::default();
        let mut readies = Vec::new();
        let mut effects = Vec::new();
        let ids: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.node.has_ready())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let group = self.groups.get_mut(&id).expect("listed above");
            let mut ready = group.node.ready();
            if let Some(soft) = ready.ss() {
                group.status = GroupStatus {
                    leader: known_leader(soft.leader_id),
                    term: group.node.raft.term,
                };
                self.status.set(id, group.status);
                if soft.raft_state != StateRole::Leader {
                    let leader = group.status.leader;
                    fail_pending(&mut group.pending, ProposeError::NotLeader { group: id, leader });
                }
            }
            send_messages(ready.take_messages());
            let committed = ready.take_committed_entries();
            self.apply(id, committed, &mut effects);
            let group = self.groups.get_mut(&id).expect("listed above");
            if let Err(e) = batch.add_entries::<EntryExt>(id, ready.entries()) {
                panic!("cannot encode Raft entries of group {id}: {e}");
            }
            group.node.store().cache_entries(ready.entries());
            if let Some(hs) = ready.hs() {
                if let Err(e) = put_hard_state(&mut batch, id, hs) {
                    panic!("cannot encode the hard state of group {id}: {e}");
                }
                group.persisted_commit = hs.commit;
            }
            group.status.term = group.node.raft.term;
            readies.push((id, ready));
        }
        if !batch.is_empty() {
            // Losing the Raft log is losing acknowledged data: stop rather than go on.
            if let Err(e) = self.engine.write(&mut batch, true) {
                panic!("cannot write the Raft log: {e}");
            }
        }
        for (id, mut ready) in readies {
            let group = self.groups.get_mut(&id).expect("still present");
            send_messages(ready.take_persisted_messages());
            let mut light = group.node.advance(ready);
            group.commit_unsaved |= light.commit_index().is_some();
            send_messages(light.take_messages());
            let committed = light.take_committed_entries();
            self.apply(id, committed, &mut effects);
            if let Some(group) = self.groups.get_mut(&id) {
                group.node.advance_apply();
                let applied = group.node.raft.raft_log.applied;
                group.node.store().release_applied(applied);
            }
        }
        for effect in effects {
            self.carry_out(effect);
        }
    }

    fn apply(&mut self, id: GroupId, entries: Vec<Entry>, effects: &mut Vec<Effect>) {
        if entries.is_empty() {
            return;
        }
        let group = self.groups.get_mut(&id).expect("applying a running group");
        for entry in entries {
            // Leader no-ops and configuration changes carry nothing to apply here.
            let output = (entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty())
                .then(|| self.state_machine.apply(id, entry.index, &entry.data, effects));
            complete(&mut group.pending, &entry, output);
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::CreateGroup { group, voters } => {
                if self.groups.contains_key(&group) {
                    return;
                }
                let created = (|| {
                    if !GroupStorage::exists(&self.engine, group) {
                        GroupStorage::initialise(&self.engine, group, &voters)?;
                    }
                    self.open_group(group)
                })();
                if let Err(e) = created {
                    tracing::error!(group, "cannot create Raft group: {e}");
                }
            }
            Effect::RemoveGroup { group } => {
                if let Some(mut removed) = self.groups.remove(&group) {
                    fail_pending(&mut removed.pending, ProposeError::UnknownGroup(group));
                }
                self.status.remove(group);
                if let Err(e) = GroupStorage::destroy(&self.engine, group) {
                    tracing::error!(group, "cannot delete Raft log: {e}");
                }
            }
        }
    }

    /// Lets the state machine make applied state durable, then drops the Raft
    /// log entries it no longer needs.
    fn checkpoint(&mut self) {
        self.save_commit_indexes();
        for (id, durable) in self.state_machine.checkpoint() {
            if let Some(group) = self.groups.get(&id)
                && let Err(e) = group.node.store().compact_to(durable.min(group.persisted_commit))
            {
                tracing::warn!(group = id, "cannot compact Raft log: {e}");
            }
        }
        if let Err(e) = self.engine.purge_expired_files() {
            tracing::warn!("cannot purge Raft log files: {e}");
        }
    }
}

impl<S: StateMachine> Driver<S> {
    /// Writes the hard states whose commit index moved since they were last
    /// written. No fsync: a lost write only means a longer replay, and the
    /// log store keeps writes in order, so compaction written later cannot
    /// survive without it.
    fn save_commit_indexes(&mut self) {
        let mut batch = LogBatch::default();
        let mut saved = Vec::new();
        for (id, group) in self.groups.iter_mut().filter(|(_, g)| g.commit_unsaved) {
            let hs = group.node.raft.hard_state();
            if let Err(e) = put_hard_state(&mut batch, *id, &hs) {
                panic!("cannot encode the hard state of group {id}: {e}");
            }
            saved.push((*id, hs.commit));
        }
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.engine.write(&mut batch, false) {
            tracing::warn!("cannot save commit indexes: {e}");
            return;
        }
        for (id, commit) in saved {
            let group = self.groups.get_mut(&id).expect("listed above");
            group.persisted_commit = commit;
            group.commit_unsaved = false;
        }
    }
}

fn known_leader(id: u64) -> Option<NodeId> {
    (id != raft::INVALID_ID).then_some(id)
}

fn send_messages(messages: Vec<Message>) {
    // A single-voter group has no peers; anything here is a bug upstream.
    for message in messages {
        tracing::warn!(to = message.to, group_msg = ?message.get_msg_type(), "no transport to a peer; message dropped");
    }
}

/// Answers the proposal of `entry`, if this node made it. Proposals older than
/// the entry were overwritten by another leader's log and will never apply.
fn complete<O>(pending: &mut VecDeque<PendingProposal<O>>, entry: &Entry, output: Option<O>) {
    while let Some(front) = pending.front() {
        if front.index > entry.index {
            return;
        }
        let proposal = pending.pop_front().expect("front exists");
        if proposal.index < entry.index || proposal.term != entry.term {
            let _ = proposal.reply.send(Err(ProposeError::Dropped));
            continue;
        }
        match output {
            Some(output) => {
                let _ = proposal.reply.send(Ok(output));
            }
            None => {
                let _ = proposal.reply.send(Err(ProposeError::Dropped));
            }
        }
        return;
    }
}

fn fail_pending<O>(pending: &mut VecDeque<PendingProposal<O>>, error: ProposeError) {
    for proposal in pending.drain(..) {
        let _ = proposal.reply.send(Err(error.clone()));
    }
}
