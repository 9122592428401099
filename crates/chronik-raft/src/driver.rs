//! The loop that drives every Raft group of a node: ticks, messages from
//! peers, proposals, and the Ready discipline over all groups at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use raft_engine::LogBatch;
use tokio::sync::{mpsc, oneshot};

use crate::fail_stop::fail_stop;
use crate::log_files::LogEngine;
use crate::logger::raft_logger;
use crate::multi_raft::{Command, Control, MultiRaftConfig, ProposeError, Reply, StartError};
use crate::snapshot::{SnapshotManifest, discard_staged, staging_dir};
use crate::state_machine::{Effect, StateMachine};
use crate::status::{GroupReport, GroupStatus, StatusBoard};
use crate::storage::{EntryExt, GroupStorage, SnapshotRequests, put_hard_state};
use crate::transport::{SharedTransport, SnapshotDone, SnapshotReports};
use crate::{GroupId, METADATA_GROUP, NodeId};

/// Messages for a group this node has not created yet (its metadata entry is
/// still on the way) are held this long, so a new group elects at once.
const EARLY_MESSAGE_TTL: Duration = Duration::from_secs(3);
const MAX_EARLY_GROUPS: usize = 1024;
const MAX_EARLY_MESSAGES: usize = 32;
/// A leader recomputes its in-sync replicas every this many ticks.
const ISR_TICKS: u64 = 5;
/// Proposal bytes one iteration takes in: the rest waits for the next, so
/// one iteration's write and fsync stay short.
pub(crate) const MAX_PROPOSED_BYTES: usize = 16 << 20;
/// A loop iteration taking this long is logged.
const SLOW_ITERATION: Duration = Duration::from_millis(300);
/// Appends in flight to one follower (each up to `max_append_bytes`). This
/// also bounds what a follower writes and fsyncs in one iteration, and so how
/// long its heartbeats can wait.
const MAX_INFLIGHT_APPENDS: usize = 48;
/// Read-index requests a leader never confirmed are failed after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

struct PendingProposal<O> {
    index: u64,
    term: u64,
    reply: Reply<O>,
}

struct PendingRead {
    reply: oneshot::Sender<Result<u64, ProposeError>>,
    since: Instant,
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

pub(crate) struct Driver<S: StateMachine> {
    config: MultiRaftConfig,
    engine: Arc<LogEngine>,
    groups: HashMap<GroupId, Group<S::Output>>,
    state_machine: S,
    status: StatusBoard,
    logger: slog::Logger,
    transport: SharedTransport,
    /// Bytes of received messages queued for the loop (the mailbox's budget).
    inbound_bytes: Arc<AtomicUsize>,
    /// Messages of this iteration, per destination node.
    outbox: HashMap<NodeId, Vec<(GroupId, Message)>>,
    /// When each peer was last heard from, for the in-sync replica sets.
    last_heard: HashMap<NodeId, Instant>,
    early: HashMap<GroupId, (Instant, Vec<Message>)>,
    reads: HashMap<u64, PendingRead>,
    next_read: u64,
    snapshot_requests: SnapshotRequests,
    snapshot_reports: SnapshotReports,
    ticks: u64,
    /// When the last tick was due: ticks follow elapsed time, not the
    /// ticker, which a busy loop would rarely get to.
    last_tick: Instant,
    /// The write batch, kept between iterations: raft-engine empties it
    /// after each write but keeps up to 8 MiB of its buffer, so iterations
    /// do not fault in a fresh buffer every time.
    log_batch: LogBatch,
}

impl<S: StateMachine> Driver<S> {
    pub(crate) fn new(
        config: MultiRaftConfig,
        engine: Arc<LogEngine>,
        state_machine: S,
        status: StatusBoard,
        transport: SharedTransport,
        snapshot_reports: SnapshotReports,
        inbound_bytes: Arc<AtomicUsize>,
    ) -> Self {
        Driver {
            config,
            engine,
            groups: HashMap::new(),
            state_machine,
            status,
            logger: raft_logger(),
            transport,
            inbound_bytes,
            outbox: HashMap::new(),
            last_heard: HashMap::new(),
            early: HashMap::new(),
            reads: HashMap::new(),
            next_read: 0,
            snapshot_requests: SnapshotRequests::default(),
            snapshot_reports,
            ticks: 0,
            last_tick: Instant::now(),
            log_batch: LogBatch::default(),
        }
    }

    pub(crate) fn load_groups(&mut self) -> Result<(), StartError> {
        let mut fresh_metadata = false;
        if !GroupStorage::exists(&self.engine, METADATA_GROUP) {
            if self.config.initial_voters.is_empty() {
                return Err(StartError::NotBootstrapped);
            }
            GroupStorage::initialise(&self.engine, METADATA_GROUP, &self.config.initial_voters)?;
            fresh_metadata = true;
        }
        let mut ids = self.engine.raft_groups();
        if !ids.contains(&METADATA_GROUP) {
            ids.push(METADATA_GROUP);
        }
        ids.sort_unstable();
        for id in ids {
            if GroupStorage::exists(&self.engine, id) {
                self.open_group(id, id == METADATA_GROUP && fresh_metadata)?;
            } else {
                GroupStorage::destroy(&self.engine, id)?;
            }
        }
        self.create_missing_groups();
        Ok(())
    }

    /// Creates the groups the replicated state gives this node but that have
    /// no Raft log: a crash came between applying the entry that assigned
    /// them and creating them. (Groups it no longer gives this node were
    /// deleted as they were opened.)
    fn create_missing_groups(&mut self) {
        for (group, voters) in self.state_machine.assigned_groups() {
            if !self.groups.contains_key(&group) {
                tracing::info!(group, "creating a group assigned to this node before a restart");
                self.carry_out(Effect::CreateGroup { group, voters });
            }
        }
    }

    /// Opens a group held in the log store. A brand-new group's first voter
    /// campaigns at once, which spreads leadership as the voter order does.
    fn open_group(&mut self, id: GroupId, fresh: bool) -> Result<(), StartError> {
        let Some(durable) = self.state_machine.open_group(id) else {
            tracing::info!(group = id, "deleting the Raft log of a group no topic owns");
            GroupStorage::destroy(&self.engine, id)?;
            return Ok(());
        };
        let storage = GroupStorage::new(self.engine.clone(), id, self.snapshot_requests.clone());
        // The hard state that records a commit index is written one iteration
        // after the entries are applied, so state can be durable beyond the
        // persisted commit index. raft-rs replays from the lower of the two;
        // the state machine skips what it already holds.
        let initial = raft::Storage::initial_state(&storage)?;
        let committed = initial.hard_state.commit;
        let first_voter = initial.conf_state.voters.first().copied();
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
            max_inflight_msgs: MAX_INFLIGHT_APPENDS,
            max_uncommitted_size: self.config.max_uncommitted_bytes,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        let mut node = RawNode::new(&raft_config, storage, &self.logger)?;
        let mut voters: Vec<NodeId> = node.raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        if voters == [self.config.node_id] || (fresh && first_voter == Some(self.config.node_id)) {
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
        if let Some((_, early)) = self.early.remove(&id) {
            let group = self.groups.get_mut(&id).expect("inserted above");
            for message in early {
                let _ = group.node.step(message);
            }
        }
        Ok(())
    }

    pub(crate) fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<S::Output>>,
        mut controls: mpsc::Receiver<Control>,
    ) {
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
                let mut stop = false;
                tokio::select! {
                    biased;
                    Some(control) = controls.recv() => self.handle_control(control),
                    command = commands.recv() => match command {
                        Some(command) => stop = !self.handle(command),
                        None => stop = true,
                    },
                    _ = ticker.tick() => {}
                }
                // Take whatever else is queued so it shares this iteration's fsync.
                for _ in 0..self.config.proposal_queue_depth {
                    match controls.try_recv() {
                        Ok(control) => self.handle_control(control),
                        Err(_) => break,
                    }
                }
                // After the messages that queued meanwhile, so a stall does not
                // look like silence from the peers.
                self.tick_due(Instant::now());
                let mut proposed = 0;
                for _ in 0..self.config.proposal_queue_depth {
                    if stop || proposed >= MAX_PROPOSED_BYTES {
                        break;
                    }
                    match commands.try_recv() {
                        Ok(command) => {
                            if let Command::Propose { data, .. } = &command {
                                proposed += data.len();
                            }
                            stop = !self.handle(command)
                        }
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                self.take_snapshot_reports();
                self.process_ready();
                self.prepare_requested_snapshots();
                if stop {
                    break;
                }
                if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                    self.checkpoint();
                    last_checkpoint = Instant::now();
                }
                let took = started.elapsed();
                if took >= SLOW_ITERATION {
                    // Heartbeats wait as long: near an election timeout, followers campaign.
                    tracing::warn!(?took, "a Raft loop iteration was slow");
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

    fn handle_control(&mut self, control: Control) {
        match control {
            Control::Messages { from, messages, bytes } => {
                self.inbound_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.last_heard.insert(from, Instant::now());
                for (group, message) in messages {
                    self.step(group, message);
                }
            }
            Control::ReadIndex { group, reply } => self.read_index(group, reply),
            Control::Describe { reply } => {
                let _ = reply.send(self.describe());
            }
        }
    }

    fn step(&mut self, id: GroupId, message: Message) {
        if let Some(group) = self.groups.get_mut(&id) {
            if let Err(e) = group.node.step(message) {
                tracing::debug!(group = id, "Raft message refused: {e}");
            }
            return;
        }
        if self.early.len() >= MAX_EARLY_GROUPS && !self.early.contains_key(&id) {
            return;
        }
        let (since, held) = self.early.entry(id).or_insert_with(|| (Instant::now(), Vec::new()));
        if held.len() < MAX_EARLY_MESSAGES && since.elapsed() < EARLY_MESSAGE_TTL {
            held.push(message);
        }
    }

    /// `id`, if it runs here and this node leads it.
    fn led_group(&mut self, id: GroupId) -> Result<&mut Group<S::Output>, ProposeError> {
        let group = self.groups.get_mut(&id).ok_or(ProposeError::UnknownGroup(id))?;
        if group.node.raft.state != StateRole::Leader {
            let leader = known_leader(group.node.raft.leader_id);
            return Err(ProposeError::NotLeader { group: id, leader });
        }
        Ok(group)
    }

    fn read_index(&mut self, id: GroupId, reply: oneshot::Sender<Result<u64, ProposeError>>) {
        self.next_read += 1;
        let ctx = self.next_read;
        let group = match self.led_group(id) {
            Ok(group) => group,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        group.node.read_index(ctx.to_be_bytes().to_vec());
        self.reads.insert(
            ctx,
            PendingRead {
                reply,
                since: Instant::now(),
            },
        );
    }

    fn propose(&mut self, id: GroupId, data: Vec<u8>, reply: Reply<S::Output>) {
        let group = match self.led_group(id) {
            Ok(group) => group,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
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

    /// Ticks once for every tick interval elapsed since the last tick, up to
    /// half an election timeout at once: after a stall (a long fsync) the
    /// node has not been silent, only slow, and a burst of ticks would start
    /// an election that nothing else called for.
    fn tick_due(&mut self, now: Instant) {
        let interval = self.config.tick_interval;
        let most = (self.config.election_ticks / 2).max(1);
        let mut ticked = 0;
        while now.duration_since(self.last_tick) >= interval {
            if ticked == most {
                self.last_tick = now;
                break;
            }
            self.last_tick += interval;
            ticked += 1;
            self.tick();
        }
    }

    fn tick(&mut self) {
        self.ticks += 1;
        for group in self.groups.values_mut() {
            group.node.tick();
        }
        if self.ticks.is_multiple_of(ISR_TICKS) {
            if self.config.disk.as_ref().is_some_and(|disk| disk.check()) {
                self.hand_off_leadership();
            }
            self.publish_in_sync_replicas();
            self.reads.retain(|_, read| read.since.elapsed() < READ_TIMEOUT);
            self.early.retain(|_, (since, _)| since.elapsed() < EARLY_MESSAGE_TTL);
        }
    }

    /// Out of disk space, this node can take no writes: it asks the most
    /// caught-up follower of each partition group it leads to take over, so
    /// the partition keeps taking writes on the replicas that have room.
    /// (The metadata group's writes are small; it keeps its leader.)
    fn hand_off_leadership(&mut self) {
        let own = self.config.node_id;
        for (id, group) in self.groups.iter_mut() {
            let raft = &group.node.raft;
            if *id == METADATA_GROUP || raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
                continue;
            }
            let successor = raft
                .prs()
                .iter()
                .filter(|(node, _)| **node != own)
                .max_by_key(|(node, progress)| (progress.matched, std::cmp::Reverse(**node)))
                .map(|(node, _)| *node);
            if let Some(successor) = successor {
                tracing::warn!(
                    group = id,
                    to = successor,
                    "low on disk space: handing the leadership over"
                );
                group.node.transfer_leader(successor);
            }
        }
    }

    /// The replicas of a group this node leads that are caught up: within
    /// `in_sync_max_lag` entries and heard from within an election timeout.
    fn in_sync(&self, group: &Group<S::Output>) -> Vec<NodeId> {
        let raft = &group.node.raft;
        let last = raft.raft_log.last_index();
        let alive_within = self.config.tick_interval * self.config.election_ticks as u32;
        let mut isr: Vec<NodeId> = raft
            .prs()
            .iter()
            .filter(|(id, progress)| {
                **id == self.config.node_id
                    || (progress.matched + self.config.in_sync_max_lag >= last
                        && self.last_heard.get(id).is_some_and(|t| t.elapsed() < alive_within))
            })
            .map(|(id, _)| *id)
            .collect();
        isr.sort_unstable();
        isr
    }

    fn publish_in_sync_replicas(&mut self) {
        let mut changed = Vec::new();
        for (id, group) in &self.groups {
            if group.node.raft.state == StateRole::Leader {
                let isr = self.in_sync(group);
                if isr != group.status.isr {
                    changed.push((*id, isr));
                }
            }
        }
        for (id, isr) in changed {
            let group = self.groups.get_mut(&id).expect("listed above");
            group.status.isr = isr;
            self.status.set(id, group.status.clone());
        }
    }

    fn describe(&self) -> Vec<GroupReport> {
        let mut reports: Vec<GroupReport> = self
            .groups
            .iter()
            .map(|(id, group)| {
                let raft = &group.node.raft;
                let leading = raft.state == StateRole::Leader;
                let mut voters: Vec<NodeId> = raft.prs().conf().voters().ids().iter().collect();
                voters.sort_unstable();
                let mut matched: Vec<(NodeId, u64)> = if leading {
                    raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect()
                } else {
                    Vec::new()
                };
                matched.sort_unstable();
                GroupReport {
                    group: *id,
                    role: format!("{:?}", raft.state),
                    leader: known_leader(raft.leader_id),
                    term: raft.term,
                    commit: raft.raft_log.committed,
                    applied: raft.raft_log.applied,
                    first_index: raft.raft_log.first_index(),
                    last_index: raft.raft_log.last_index(),
                    voters,
                    isr: if leading { self.in_sync(group) } else { Vec::new() },
                    matched,
                }
            })
            .collect();
        reports.sort_by_key(|r| r.group);
        reports
    }

    fn route(&mut self, group: GroupId, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                let done = SnapshotDone {
                    reports: self.snapshot_reports.clone(),
                    group,
                    to: message.to,
                };
                self.transport.send_snapshot(message.to, group, message, done);
            } else {
                self.outbox.entry(message.to).or_default().push((group, message));
            }
        }
    }

    fn flush_outbox(&mut self) {
        for (to, messages) in self.outbox.drain() {
            if !messages.is_empty() {
                self.transport.send(to, messages);
            }
        }
    }

    /// One round of the Ready discipline over all groups: persist everything
    /// with one write and one fsync, then send, apply and advance. A leader's
    /// appends go out before its own fsync; a follower answers after it.
    fn process_ready(&mut self) {
        let mut batch = std::mem::take(&mut self.log_batch);
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
            let mut stepped_down = false;
            if let Some(soft) = ready.ss() {
                group.status.leader = known_leader(soft.leader_id);
                group.status.term = group.node.raft.term;
                // A new leader, or none: readiness is earned again.
                group.status.leader_ready = false;
                if soft.raft_state != StateRole::Leader {
                    group.status.isr.clear();
                    stepped_down = true;
                }
                self.status.set(id, group.status.clone());
            }
            for read in ready.take_read_states() {
                let ctx: Option<[u8; 8]> = read.request_ctx.as_slice().try_into().ok();
                if let Some(pending) = ctx.and_then(|c| self.reads.remove(&u64::from_be_bytes(c))) {
                    let _ = pending.reply.send(Ok(read.index));
                }
            }
            let messages = ready.take_messages();
            self.route(id, messages);
            if !ready.snapshot().is_empty() {
                let snapshot = ready.snapshot().clone();
                self.install_snapshot(id, &snapshot, &mut batch, &mut effects);
            }
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
            readies.push((id, ready, stepped_down));
        }
        self.flush_outbox();
        if !batch.is_empty() {
            // Losing the Raft log is losing acknowledged data: stop rather than go on.
            if let Err(e) = self.engine.write(&mut batch, true) {
                fail_stop("cannot write the Raft log", &e);
            }
        }
        self.log_batch = batch;
        for (id, mut ready, stepped_down) in readies {
            let persisted = ready.take_persisted_messages();
            self.route(id, persisted);
            let group = self.groups.get_mut(&id).expect("still present");
            let mut light = group.node.advance(ready);
            group.commit_unsaved |= light.commit_index().is_some();
            let messages = light.take_messages();
            self.route(id, messages);
            let committed = light.take_committed_entries();
            self.apply(id, committed, &mut effects);
            if let Some(group) = self.groups.get_mut(&id) {
                group.node.advance_apply();
                let done = released_through(&group.node);
                group.node.store().release_through(done);
                if stepped_down {
                    // Only now: entries committed in the Ready that ended the
                    // leadership were applied above and answered with their
                    // results, which spares retries that would duplicate them.
                    let leader = group.status.leader;
                    fail_pending(&mut group.pending, ProposeError::NotLeader { group: id, leader });
                }
                self.publish_readiness(id);
            }
        }
        self.flush_outbox();
        for effect in effects {
            self.carry_out(effect);
        }
    }

    /// Publishes that this node, newly leader, may serve reads (see
    /// `GroupStatus::leader_ready`): before, its applied state may end below
    /// what its predecessor showed. Once it has applied up to a commit index
    /// of its own term it holds all that, and stays ready for the term, even
    /// while later commits wait to be applied (its reads show applied state
    /// only). Leaving the leadership clears it.
    fn publish_readiness(&mut self, id: GroupId) {
        let Some(group) = self.groups.get_mut(&id) else { return };
        let raft = &group.node.raft;
        if group.status.leader_ready || raft.state != StateRole::Leader {
            return;
        }
        if raft.commit_to_current_term() && raft.raft_log.applied >= raft.raft_log.committed {
            group.status.leader_ready = true;
            self.status.set(id, group.status.clone());
        }
    }

    /// Tells raft-rs how the snapshots it sent went, so replication to
    /// those followers resumes or the snapshot is sent again.
    fn take_snapshot_reports(&mut self) {
        for (group, to, ok) in self.snapshot_reports.take() {
            if let Some(g) = self.groups.get_mut(&group) {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                g.node.report_snapshot(to, status);
            }
        }
    }

    /// Replaces a group's state and log with a snapshot from its leader.
    fn install_snapshot(&mut self, id: GroupId, snapshot: &Snapshot, batch: &mut LogBatch, effects: &mut Vec<Effect>) {
        let meta = snapshot.get_metadata();
        let dir = staging_dir(&self.config.snapshot_dir, id, meta.index);
        let restored = SnapshotManifest::decode(&snapshot.data)
            .ok_or_else(|| "the snapshot carries no valid manifest".to_string())
            .and_then(|manifest| self.state_machine.restore(id, meta.index, &manifest, &dir, effects));
        if let Err(e) = restored {
            // raft-rs already took the snapshot as applied; going on would
            // serve state this node does not hold. A restart discards the
            // staged files and the leader sends the snapshot again.
            fail_stop(
                &format!("cannot install the snapshot of group {id} at index {}", meta.index),
                &e,
            );
        }
        discard_staged(&self.config.snapshot_dir, id, meta.index);
        let group = self.groups.get_mut(&id).expect("installing into a running group");
        let hard_state = group.node.raft.hard_state();
        if let Err(e) = group.node.store().apply_snapshot(batch, snapshot, &hard_state) {
            fail_stop(&format!("cannot record the snapshot of group {id}"), &e);
        }
        group.persisted_commit = hard_state.commit;
        tracing::info!(group = id, index = meta.index, "installed a snapshot from the leader");
    }

    /// Takes the snapshots raft-rs asked for since the last iteration.
    fn prepare_requested_snapshots(&mut self) {
        let requested: Vec<GroupId> =
            std::mem::take(&mut *self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner()));
        for id in requested {
            let Some((index, manifest)) = self.state_machine.snapshot(id) else {
                continue;
            };
            let Some(group) = self.groups.get(&id) else { continue };
            let term = match raft::Storage::term(group.node.store(), index) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(group = id, index, "cannot take a snapshot: {e}");
                    continue;
                }
            };
            let mut snapshot = Snapshot {
                data: manifest.encode().into(),
                ..Default::default()
            };
            let meta = snapshot.mut_metadata();
            meta.index = index;
            meta.term = term;
            meta.set_conf_state(group.node.raft.prs().conf().to_conf_state());
            tracing::info!(
                group = id,
                index,
                files = manifest.files.len(),
                "took a snapshot for a lagging follower"
            );
            group.node.store().set_prepared(snapshot);
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
                if self.groups.contains_key(&group) || !voters.contains(&self.config.node_id) {
                    return;
                }
                let created = (|| {
                    let fresh = !GroupStorage::exists(&self.engine, group);
                    if fresh {
                        GroupStorage::initialise(&self.engine, group, &voters)?;
                    }
                    self.open_group(group, fresh)
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
    /// log entries it no longer needs. A leader keeps, within bounds, what a
    /// follower still lacks.
    fn checkpoint(&mut self) {
        self.save_commit_indexes();
        for (id, durable) in self.state_machine.checkpoint() {
            let Some(group) = self.groups.get(&id) else { continue };
            let mut limit = durable.min(group.persisted_commit);
            if group.node.raft.state == StateRole::Leader {
                let slowest = group
                    .node
                    .raft
                    .prs()
                    .iter()
                    .map(|(_, p)| p.matched)
                    .min()
                    .unwrap_or(limit);
                if slowest < limit && limit - slowest <= self.config.log_retain_entries {
                    limit = slowest;
                }
            }
            if let Err(e) = group.node.store().compact_to(limit) {
                tracing::warn!(group = id, "cannot compact Raft log: {e}");
            }
        }
        if let Err(e) = self.engine.purge_expired_files() {
            tracing::warn!("cannot purge Raft log files: {e}");
        }
    }

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

/// The last entry a group needs no more in memory: applied, and on a leader
/// also held by every follower, since appends to a follower read from there.
fn released_through(node: &RawNode<GroupStorage>) -> u64 {
    let applied = node.raft.raft_log.applied;
    if node.raft.state != StateRole::Leader {
        return applied;
    }
    node.raft
        .prs()
        .iter()
        .filter(|(id, _)| **id != node.raft.id)
        .map(|(_, progress)| progress.matched)
        .fold(applied, u64::min)
}

fn known_leader(id: u64) -> Option<NodeId> {
    (id != raft::INVALID_ID).then_some(id)
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
