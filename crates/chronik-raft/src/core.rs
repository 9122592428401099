//! The sans-IO core of a node's Multi-Raft: every Raft group of the node,
//! the Ready discipline over all of them, and the state machine they apply.
//!
//! The core owns no thread, channel or timer. Its caller hands it the time
//! (`now`), the messages peers sent and the proposals of clients; it writes
//! the Raft log through raft-engine on the file system it was given, hands
//! outgoing messages to a [`Transport`](crate::Transport), and answers
//! proposals through oneshot channels. The shell (`shell.rs`) calls it from
//! the loop thread with the wall clock; a simulation calls it with its own
//! clock, network and disk, and replays a run exactly.
//!
//! Everything that reaches the output is iterated in a fixed order (BTreeMap,
//! never HashMap), and raft-rs's election timeouts can be seeded, so the same
//! inputs give the same outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use raft_engine::env::FileSystem;
use raft_engine::{Engine, LogBatch};
use tokio::sync::oneshot;

use crate::config::{MultiRaftConfig, PlantedBug};
use crate::error::{ProposeError, StartError};
use crate::fail_stop::fail_stop;
use crate::liveness::Liveness;
use crate::logger::raft_logger;
use crate::membership::MembershipChange;
use crate::signals;
use crate::snapshot::{SnapshotManifest, discard_staged, staging_dir};
use crate::state_machine::{Appending, Effect, StateMachine};
use crate::status::{GroupReport, GroupStatus, StatusBoard};
use crate::storage::{CacheBudget, EntryExt, GroupStorage, INIT_INDEX, SnapshotRequests, as_reference, put_hard_state};
use crate::telemetry::{self, LoopMeters};
use crate::transport::{SharedTransport, SnapshotDone, SnapshotReports};
use crate::{GroupId, METADATA_GROUP, NodeId};
use held::{HeldProposal, HeldQueue};

mod departed;
mod held;
mod hibernate;

use hibernate::WakeCause;

/// Where a proposal's outcome goes.
pub type Reply<O> = oneshot::Sender<Result<O, ProposeError>>;

/// Messages for a group this node has not created yet (its metadata entry is
/// still on the way) are held this long, so a new group elects at once.
const EARLY_MESSAGE_TTL: Duration = Duration::from_secs(3);
const MAX_EARLY_GROUPS: usize = 1024;
const MAX_EARLY_MESSAGES: usize = 32;
/// A leader recomputes its in-sync replicas every this many ticks.
const ISR_TICKS: u64 = 5;
/// Appends in flight to one follower (each up to `max_append_bytes`). This
/// also bounds what a follower writes and fsyncs in one iteration, and so how
/// long its heartbeats can wait.
const MAX_INFLIGHT_APPENDS: usize = 48;
/// A lease that does not end (about a century; `Instant` has no maximum).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Read-index requests a leader never confirmed are failed after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

struct PendingProposal<O> {
    index: u64,
    term: u64,
    reply: Reply<O>,
    /// Answer as soon as the entry is in this leader's own log, with this
    /// outcome the state machine predicted (Kafka's acks=1); else once it
    /// is applied.
    local: Option<O>,
}

/// A membership change this node proposed, answered once it is applied.
struct PendingConfChange {
    index: u64,
    term: u64,
    reply: oneshot::Sender<Result<(), ProposeError>>,
}

struct PendingRead {
    reply: oneshot::Sender<Result<u64, ProposeError>>,
    since: Instant,
}

struct Group<O, F: FileSystem> {
    node: RawNode<GroupStorage<F>>,
    pending: VecDeque<PendingProposal<O>>,
    /// Proposals the state machine cannot judge yet (see `core/held.rs`).
    held: HeldQueue<O>,
    status: GroupStatus,
    /// The commit index of the last hard state written to the log store.
    /// Compaction must not pass it: raft-rs refuses to start from a hard
    /// state that commits less than the log has dropped.
    persisted_commit: u64,
    /// raft-rs reports commit advances after a persist without putting them
    /// in a later `Ready`; they are written at the next checkpoint.
    commit_unsaved: bool,
    /// The read-index request renewing this leader's lease, and when it was
    /// issued.
    lease_request: Option<(u64, Instant)>,
    /// The index whose configuration is stored: configuration entries up to
    /// it are replayed after a restart without being applied again.
    conf_index: u64,
    conf_pending: Option<PendingConfChange>,
    /// The last index seen at a tick, and for how many ticks it stayed:
    /// a leader's group sleeps once this reaches `hibernate_ticks`.
    quiet_index: u64,
    quiet_ticks: u32,
    /// The last index applied here, no-ops and configuration changes
    /// included (or restored by a snapshot).
    applied: u64,
}

pub struct RaftCore<S: StateMachine, F: FileSystem> {
    config: MultiRaftConfig,
    meters: LoopMeters,
    engine: Arc<Engine<F>>,
    groups: BTreeMap<GroupId, Group<S::Output, F>>,
    /// The groups that tick; the others sleep (see `core/hibernate.rs`).
    awake: BTreeSet<GroupId>,
    /// The groups holding proposals back (see `core/held.rs`).
    holding: BTreeSet<GroupId>,
    state_machine: S,
    status: StatusBoard,
    logger: slog::Logger,
    transport: SharedTransport,
    /// The time of the latest call: the core never reads a clock itself.
    now: Instant,
    /// Messages of this iteration, per destination node.
    outbox: BTreeMap<NodeId, Vec<(GroupId, Message)>>,
    /// Which peers this node hears from.
    liveness: Liveness,
    /// Peers whose Raft port refused a connection, not heard from since
    /// (see `core/departed.rs`).
    departed: BTreeSet<NodeId>,
    /// A peer fell silent or was heard again: sleeping groups' in-sync
    /// replicas change too.
    isr_stale: bool,
    /// Every node this node shares a group with; `None` once groups or
    /// their members changed, until the next beat recounts them.
    peers: Option<BTreeSet<NodeId>>,
    early: BTreeMap<GroupId, (Instant, Vec<Message>)>,
    reads: BTreeMap<u64, PendingRead>,
    next_read: u64,
    /// Until then this node grants no votes (see `step`).
    votes_held_until: Instant,
    snapshot_requests: SnapshotRequests,
    snapshot_reports: SnapshotReports,
    /// What the groups' entry caches hold together, within its limit.
    cache_budget: Arc<CacheBudget>,
    ticks: u64,
    /// When the last tick was due: ticks follow elapsed time, not the
    /// ticker, which a busy loop would rarely get to.
    last_tick: Instant,
    last_checkpoint: Instant,
    /// The write batch, kept between iterations: raft-engine empties it
    /// after each write but keeps up to 8 MiB of its buffer, so iterations
    /// do not fault in a fresh buffer every time.
    log_batch: LogBatch,
}

impl<S: StateMachine, F: FileSystem> RaftCore<S, F> {
    /// Opens the node's Raft log store under `dir` on `files`, loads every
    /// group found there (creating the metadata group on first start), and
    /// returns the core, ready to be driven.
    pub fn open(
        dir: &Path,
        files: Arc<F>,
        config: MultiRaftConfig,
        state_machine: S,
        transport: SharedTransport,
        now: Instant,
    ) -> Result<Self, StartError> {
        let engine_config = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            purge_threshold: raft_engine::ReadableSize::mb(512),
            // Record batches are often compressed by clients already, and
            // compressing the rest costs more CPU than the disk time it saves.
            batch_compression_threshold: raft_engine::ReadableSize(0),
            target_file_size: raft_engine::ReadableSize::mb(64),
            ..Default::default()
        };
        let engine = Arc::new(Engine::open_with_file_system(engine_config, files)?);
        // Half-received snapshots from before a restart are of no use.
        let _ = std::fs::remove_dir_all(&config.snapshot_dir);
        std::fs::create_dir_all(&config.snapshot_dir)?;
        let cache_budget = CacheBudget::new(config.entry_cache_bytes);
        let mut core = RaftCore {
            config,
            engine,
            groups: BTreeMap::new(),
            state_machine,
            status: StatusBoard::default(),
            logger: raft_logger(),
            transport,
            now,
            outbox: BTreeMap::new(),
            liveness: Liveness::default(),
            departed: BTreeSet::new(),
            isr_stale: false,
            peers: None,
            awake: BTreeSet::new(),
            holding: BTreeSet::new(),
            early: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 0,
            votes_held_until: now,
            snapshot_requests: SnapshotRequests::default(),
            snapshot_reports: SnapshotReports::default(),
            cache_budget,
            ticks: 0,
            last_tick: now,
            last_checkpoint: now,
            log_batch: LogBatch::default(),
            meters: LoopMeters::new(),
        };
        core.load_groups()?;
        Ok(core)
    }

    /// What the groups publish for request handlers: leaders, readiness, ISR.
    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// One iteration's worth of work after the inputs were handed in: the
    /// ticks due by `now`, then the Ready round over all groups (one write,
    /// one fsync), the snapshots raft-rs asked for, and a checkpoint when
    /// one is due.
    pub fn advance(&mut self, now: Instant) {
        self.now = now;
        self.note_departed_peers();
        self.tick_due(now);
        self.take_snapshot_reports();
        let requested = self.next_read;
        self.process_ready();
        let released = self.release_held();
        if self.next_read != requested || released {
            // Leases were asked for, or held proposals reached the log:
            // send their messages and write them now rather than at the next
            // wake-up, so a new leader serves without delay.
            self.process_ready();
        }
        self.prepare_requested_snapshots();
        if now.duration_since(self.last_checkpoint) >= self.config.checkpoint_interval {
            self.checkpoint();
            self.last_checkpoint = now;
        }
    }

    /// Ends the core: a last Ready round and checkpoint; proposals still
    /// waiting are answered with `Stopped`.
    pub fn stop(mut self) {
        self.process_ready();
        self.checkpoint();
        for group in self.groups.values_mut() {
            group.held.fail(ProposeError::Stopped);
            fail_pending(&mut group.pending, ProposeError::Stopped);
            if let Some(pending) = group.conf_pending.take() {
                let _ = pending.reply.send(Err(ProposeError::Stopped));
            }
        }
    }

    fn load_groups(&mut self) -> Result<(), StartError> {
        let mut fresh_metadata = false;
        if !GroupStorage::exists(&self.engine, METADATA_GROUP) {
            if self.config.join {
                // A member adds it; its leader's snapshot brings the metadata.
                GroupStorage::initialise_empty(&self.engine, METADATA_GROUP)?;
            } else if self.config.initial_voters.is_empty() {
                return Err(StartError::NotBootstrapped);
            } else {
                GroupStorage::initialise(&self.engine, METADATA_GROUP, &self.config.initial_voters)?;
                fresh_metadata = true;
            }
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
        if !fresh_metadata {
            // It may have acknowledged a leader just before it stopped, and
            // that leader may be serving reads on a lease counting on it.
            self.votes_held_until = self.now + self.election_timeout();
        }
        self.create_missing_groups();
        Ok(())
    }

    /// Creates the groups the replicated state gives this node but that have
    /// no Raft log: a crash came between applying the entry that assigned
    /// them and creating them. (Groups it no longer gives this node were
    /// deleted as they were opened.)
    fn create_missing_groups(&mut self) {
        for effect in self.state_machine.assigned_groups() {
            let group = match &effect {
                Effect::CreateGroup { group, .. } | Effect::JoinGroup { group, .. } => *group,
                Effect::LeaveGroup { .. } | Effect::RemoveGroup { .. } => continue,
            };
            if !self.groups.contains_key(&group) {
                tracing::info!(group, "creating a group assigned to this node before a restart");
                self.carry_out(effect);
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
        let storage = GroupStorage::new(
            self.engine.clone(),
            id,
            self.snapshot_requests.clone(),
            self.cache_budget.clone(),
            self.state_machine.bodies(id),
        );
        // The hard state that records a commit index is written one iteration
        // after the entries are applied, so state can be durable beyond the
        // persisted commit index. raft-rs replays from the lower of the two;
        // the state machine skips what it already holds.
        let initial = raft::Storage::initial_state(&storage)?;
        let committed = initial.hard_state.commit;
        let first_voter = initial.conf_state.voters.first().copied();
        let compacted = raft::Storage::first_index(&storage)? - 1;
        let conf_index = storage.conf_index();
        // A group's initial entries hold nothing to apply.
        if durable.max(INIT_INDEX) < compacted {
            return Err(StartError::StateBehindLog {
                group: id,
                durable,
                compacted,
            });
        }
        let applied = durable.min(committed);
        let jitter = self.config.election_jitter_ticks.max(1);
        // One tick past the election timeout at least: a peer that heard
        // from the leader within `election_ticks` ignores a vote request,
        // and the nodes' tickers run out of phase by up to a tick, so a
        // follower campaigning right at the timeout was often ignored and
        // waited a whole timeout more.
        let shortest = self.config.election_ticks + 1;
        let (min_election_tick, max_election_tick) = match self.config.election_seed {
            // raft-rs draws from [min, max); a range of one makes it a constant.
            Some(seed) => {
                let drawn = split_mix(seed ^ self.config.node_id.rotate_left(32) ^ id) % jitter as u64;
                let fixed = shortest + drawn as usize;
                (fixed, fixed + 1)
            }
            None => (shortest, shortest + jitter),
        };
        let raft_config = raft::Config {
            id: self.config.node_id,
            election_tick: self.config.election_ticks,
            min_election_tick,
            max_election_tick,
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
                held: HeldQueue::new(),
                status: GroupStatus::default(),
                persisted_commit: committed,
                commit_unsaved: false,
                lease_request: None,
                conf_index,
                conf_pending: None,
                quiet_index: 0,
                quiet_ticks: 0,
                // What raft-rs counts as applied: also what was compacted.
                applied: applied.max(compacted),
            },
        );
        self.awake.insert(id);
        self.peers = None;
        if let Some((_, early)) = self.early.remove(&id) {
            for message in early {
                self.step(id, message);
            }
        }
        Ok(())
    }

    /// Messages from peer `from`, received by `now`.
    pub fn receive(&mut self, now: Instant, from: NodeId, messages: Vec<(GroupId, Message)>) {
        self.now = now;
        self.departed.remove(&from);
        if self.liveness.heard(from, now) {
            self.isr_stale = true;
            self.wake_groups_behind_on(from);
        }
        for (group, message) in messages {
            self.step(group, message);
        }
    }

    fn step(&mut self, id: GroupId, message: Message) {
        if let Some(signal) = signals::read(&message) {
            self.on_signal(id, message.from, message.term, signal);
            return;
        }
        if self.now < self.votes_held_until && is_vote_request(&message) {
            // A follower with a leader grants no vote within an election
            // timeout of hearing from it (raft-rs's check-quorum lease), which
            // leaders' read leases count on. A restarted node has forgotten
            // its leader: it keeps that promise by granting none for as long.
            return;
        }
        if let Some(group) = self.groups.get_mut(&id) {
            if from_another_incarnation(&group.node, &message)
                && self.config.planted_bug != Some(PlantedBug::StaleIncarnation)
            {
                return;
            }
            self.step_awake(id, message);
            return;
        }
        if self.early.len() >= MAX_EARLY_GROUPS && !self.early.contains_key(&id) {
            return;
        }
        let now = self.now;
        let (since, held) = self.early.entry(id).or_insert_with(|| (now, Vec::new()));
        if held.len() < MAX_EARLY_MESSAGES && now.duration_since(*since) < EARLY_MESSAGE_TTL {
            held.push(message);
        }
    }

    /// `id`, if it runs here and this node leads it, woken if it slept:
    /// a request is about to use it.
    fn led_group(&mut self, id: GroupId) -> Result<&mut Group<S::Output, F>, ProposeError> {
        let group = self.groups.get(&id).ok_or(ProposeError::UnknownGroup(id))?;
        if group.node.raft.state != StateRole::Leader {
            let leader = known_leader(group.node.raft.leader_id);
            return Err(ProposeError::NotLeader { group: id, leader });
        }
        self.wake(id, WakeCause::Request);
        self.groups.get_mut(&id).ok_or(ProposeError::UnknownGroup(id))
    }

    /// Wakes `id` if this node leads it and it sleeps, so that its lease is
    /// renewed and it serves reads again.
    pub fn wake_led(&mut self, id: GroupId) {
        let _ = self.led_group(id);
    }

    /// Asks, as leader of `id`, for a commit index confirmed by a quorum.
    pub fn read_index(&mut self, id: GroupId, reply: oneshot::Sender<Result<u64, ProposeError>>) {
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
        self.reads.insert(ctx, PendingRead { reply, since: self.now });
    }

    /// Proposes `data` to group `id`; `reply` gets the applied outcome.
    pub fn propose(&mut self, id: GroupId, data: Vec<u8>, reply: Reply<S::Output>) {
        self.propose_with(id, data, reply, false);
    }

    /// Proposes `data` to group `id`; `reply` gets the outcome the state
    /// machine predicts as soon as the entry is in this leader's own log and
    /// fsynced, before a quorum has it (Kafka's acks=1: the entry is lost if
    /// this leader fails first). Without a prediction, the applied outcome.
    pub fn propose_local(&mut self, id: GroupId, data: Vec<u8>, reply: Reply<S::Output>) {
        self.propose_with(id, data, reply, true);
    }

    fn propose_with(&mut self, id: GroupId, data: Vec<u8>, reply: Reply<S::Output>, local: bool) {
        if let Err(e) = self.led_group(id) {
            let _ = reply.send(Err(e));
            return;
        }
        self.propose_in_order(id, HeldProposal { data, reply, local });
    }

    /// Proposes one step of a membership change of group `id`, which this
    /// node leads; `reply` learns when it is applied. One change at a time:
    /// while another is under way the proposal is refused (`Dropped`).
    pub fn change_membership(
        &mut self,
        id: GroupId,
        change: MembershipChange,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    ) {
        let group = match self.led_group(id) {
            Ok(group) => group,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if group.conf_pending.is_some() || group.node.raft.has_pending_conf() {
            let _ = reply.send(Err(ProposeError::Dropped));
            return;
        }
        if group
            .node
            .propose_conf_change(Vec::new(), change.to_conf_change())
            .is_err()
        {
            let _ = reply.send(Err(ProposeError::Dropped));
            return;
        }
        tracing::info!(group = id, ?change, "proposed a membership change");
        group.conf_pending = Some(PendingConfChange {
            index: group.node.raft.raft_log.last_index(),
            term: group.node.raft.term,
            reply,
        });
    }

    /// Asks the leader of `id` (this node) to hand its leadership to `to`.
    pub fn transfer_leader(&mut self, id: GroupId, to: NodeId) -> Result<(), ProposeError> {
        if to == self.config.node_id {
            return self.led_group(id).map(|_| ());
        }
        let group = self.led_group(id)?;
        group.node.transfer_leader(to);
        end_lease(group);
        let status = group.status.clone();
        self.status.set(id, status);
        Ok(())
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
        debug_assert!(
            self.awake.iter().all(|id| self.groups.contains_key(id)),
            "only running groups are awake"
        );
        // Before the groups tick: a tick that sends heartbeats leaves a
        // Ready behind, and a group with a Ready does not sleep.
        self.hibernate_quiet_groups();
        for id in &self.awake {
            if let Some(group) = self.groups.get_mut(id) {
                group.node.tick();
            }
        }
        self.renew_leases();
        self.send_beats();
        self.wake_groups_of_silent_leaders();
        self.replace_departed_leaders();
        self.meters.awake.set(self.awake.len() as f64);
        if self.ticks.is_multiple_of(ISR_TICKS) {
            if self.config.disk.as_ref().is_some_and(|disk| disk.check()) {
                self.hand_off_leadership();
            }
            self.publish_in_sync_replicas();
            let now = self.now;
            self.reads
                .retain(|_, read| now.duration_since(read.since) < READ_TIMEOUT);
            self.early
                .retain(|_, (since, _)| now.duration_since(*since) < EARLY_MESSAGE_TTL);
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
            // A sleeping leader takes no writes; one that wakes for a write
            // hands off at the next pass.
            let asleep = !self.awake.contains(id);
            if *id == METADATA_GROUP || raft.state != StateRole::Leader || raft.lead_transferee.is_some() || asleep {
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
                end_lease(group);
                self.status.set(*id, group.status.clone());
            }
        }
    }

    /// The replicas of a group this node leads that are caught up: within
    /// `in_sync_max_lag` entries and heard from within an election timeout.
    fn in_sync(&self, group: &Group<S::Output, F>) -> Vec<NodeId> {
        let raft = &group.node.raft;
        let last = raft.raft_log.last_index();
        let alive_within = self.config.tick_interval * self.config.election_ticks as u32;
        let voters = raft.prs().conf().voters().ids();
        let mut isr: Vec<NodeId> = raft
            .prs()
            .iter()
            // Learners are catching up to become replicas; they are not in sync yet.
            .filter(|(id, _)| voters.contains(**id))
            .filter(|(id, progress)| {
                **id == self.config.node_id
                    || (progress.matched + self.config.in_sync_max_lag >= last
                        && self.liveness.heard_within(**id, self.now, alive_within))
            })
            .map(|(id, _)| *id)
            .collect();
        isr.sort_unstable();
        isr
    }

    /// Recomputes the in-sync replicas of the groups led here that tick, and
    /// of the sleeping ones too when a peer fell silent or came back.
    fn publish_in_sync_replicas(&mut self) {
        let all = std::mem::take(&mut self.isr_stale);
        let mut changed = Vec::new();
        for (id, group) in &self.groups {
            if group.node.raft.state == StateRole::Leader && (all || self.awake.contains(id)) {
                let isr = self.in_sync(group);
                if isr != group.status.isr {
                    changed.push((*id, isr));
                }
            }
        }
        for (id, isr) in changed {
            let group = self.groups.get_mut(&id).expect("listed above");
            let before = group.status.isr.len();
            if isr.len() < before {
                metrics::counter!(telemetry::ISR_SHRINKS).increment(1);
            } else if isr.len() > before && before > 0 {
                metrics::counter!(telemetry::ISR_EXPANDS).increment(1);
            }
            group.status.isr = isr;
            self.status.set(id, group.status.clone());
        }
    }

    /// The Raft state of every group, for operators.
    pub fn describe(&self) -> Vec<GroupReport> {
        let mut reports: Vec<GroupReport> = self
            .groups
            .iter()
            .map(|(id, group)| {
                let raft = &group.node.raft;
                let leading = raft.state == StateRole::Leader;
                let conf = raft.prs().conf().to_conf_state();
                let mut voters: Vec<NodeId> = raft.prs().conf().voters().ids().iter().collect();
                voters.sort_unstable();
                let mut learners: Vec<NodeId> = conf.learners.iter().chain(&conf.learners_next).copied().collect();
                learners.sort_unstable();
                learners.dedup();
                let joint = !conf.voters_outgoing.is_empty();
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
                    learners,
                    joint,
                    changing: group.conf_pending.is_some() || raft.has_pending_conf(),
                    isr: if leading { self.in_sync(group) } else { Vec::new() },
                    asleep: !self.awake.contains(id),
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
        for (to, messages) in std::mem::take(&mut self.outbox) {
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
        let mut bodies_kept = false;
        // Sleeping groups have nothing to do: whatever gives them work wakes them.
        let ids: Vec<GroupId> = self
            .awake
            .iter()
            .filter(|id| self.groups.get(*id).is_some_and(|g| g.node.has_ready()))
            .copied()
            .collect();
        for id in ids {
            let group = self.groups.get_mut(&id).expect("listed above");
            let mut ready = group.node.ready();
            let mut stepped_down = false;
            if let Some(soft) = ready.ss() {
                if soft.raft_state == StateRole::Candidate {
                    metrics::counter!(telemetry::ELECTIONS).increment(1);
                }
                group.status.leader = known_leader(soft.leader_id);
                if group.status.term != group.node.raft.term {
                    metrics::counter!(telemetry::TERM_CHANGES).increment(1);
                }
                group.status.term = group.node.raft.term;
                // A new leader, or none: readiness and the lease are earned again.
                group.status.leader_ready = false;
                group.status.lease_until = None;
                group.lease_request = None;
                if soft.raft_state != StateRole::Leader {
                    group.status.isr.clear();
                    stepped_down = true;
                }
                self.status.set(id, group.status.clone());
            }
            for read in ready.take_read_states() {
                let Ok(ctx) = <[u8; 8]>::try_from(read.request_ctx.as_slice()).map(u64::from_be_bytes) else {
                    continue;
                };
                if let Some(pending) = self.reads.remove(&ctx) {
                    let _ = pending.reply.send(Ok(read.index));
                } else {
                    // The group's own lease request, if it is still the one under way.
                    let lease = self.lease_duration();
                    let group = self.groups.get_mut(&id).expect("listed above");
                    if let Some((_, issued)) = group.lease_request.filter(|(c, _)| *c == ctx) {
                        group.lease_request = None;
                        group.status.lease_until = Some(issued + lease);
                        self.status.set(id, group.status.clone());
                    }
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
            let stored = references(&mut self.state_machine, &self.meters, id, group, ready.entries());
            bodies_kept |= stored.is_some();
            if let Err(e) = batch.add_entries::<EntryExt>(id, stored.as_deref().unwrap_or(ready.entries())) {
                panic!("cannot encode Raft entries of group {id}: {e}");
            }
            group.node.store().cache_entries(ready.entries());
            if let Some(hs) = ready.hs() {
                if let Err(e) = put_hard_state(&mut batch, id, hs) {
                    panic!("cannot encode the hard state of group {id}: {e}");
                }
                group.persisted_commit = hs.commit;
            }
            if group.status.term != group.node.raft.term {
                // A new term under the same leader changes no soft state;
                // the term is the leader epoch clients see, so publish it.
                metrics::counter!(telemetry::TERM_CHANGES).increment(1);
                group.status.term = group.node.raft.term;
                self.status.set(id, group.status.clone());
            }
            readies.push((id, ready, stepped_down));
        }
        self.flush_outbox();
        if bodies_kept && self.config.planted_bug != Some(PlantedBug::ReferenceBeforeSync) {
            // The references written next must never name a body a crash can lose.
            let started = Instant::now();
            self.state_machine.sync_bodies();
            self.meters.bodies_sync_seconds.record(started.elapsed());
        }
        if !batch.is_empty() {
            // Losing the Raft log is losing acknowledged data: stop rather than go on.
            let sync = self.config.planted_bug != Some(PlantedBug::AckBeforeFsync);
            let bytes = batch.approximate_size();
            // Timed for metrics only: the reading reaches no state.
            let started = Instant::now();
            if let Err(e) = self.engine.write(&mut batch, sync) {
                fail_stop("cannot write the Raft log", &e);
            }
            self.meters.fsync_seconds.record(started.elapsed());
            self.meters.fsync_bytes.record(bytes as f64);
        }
        self.log_batch = batch;
        for (id, ready, _) in &readies {
            if let Some(last) = ready.entries().last() {
                self.answer_local(*id, last.index);
            }
        }
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
                    group.held.fail(ProposeError::NotLeader { group: id, leader });
                    fail_pending(&mut group.pending, ProposeError::NotLeader { group: id, leader });
                    if let Some(pending) = group.conf_pending.take() {
                        let _ = pending.reply.send(Err(ProposeError::NotLeader { group: id, leader }));
                    }
                }
                self.publish_readiness(id);
            }
        }
        self.flush_outbox();
        for effect in effects {
            self.carry_out(effect);
        }
    }

    /// Answers the proposals that asked to be answered once in this node's
    /// own log, up to `persisted`, with their predicted outcomes. Only while
    /// it still leads in their term: a successor may have replaced an entry
    /// before it was written here, and the loser's proposals then wait to
    /// be failed.
    fn answer_local(&mut self, id: GroupId, persisted: u64) {
        let Some(group) = self.groups.get_mut(&id) else { return };
        let raft = &group.node.raft;
        let (leading, term) = (raft.state == StateRole::Leader, raft.term);
        if !leading || !group.pending.iter().any(|p| p.local.is_some()) {
            return;
        }
        let mut waiting = VecDeque::with_capacity(group.pending.len());
        let mut answered = 0;
        for proposal in group.pending.drain(..) {
            match proposal.local {
                Some(outcome) if proposal.index <= persisted && proposal.term == term => {
                    let _ = proposal.reply.send(Ok(outcome));
                    answered += 1;
                }
                _ => waiting.push_back(proposal),
            }
        }
        group.pending = waiting;
        self.meters.local_answers.increment(answered);
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
        let caught_up = raft.commit_to_current_term() && raft.raft_log.applied >= raft.raft_log.committed;
        if caught_up || self.config.planted_bug == Some(PlantedBug::ReadWithoutGate) {
            group.status.leader_ready = true;
            self.status.set(id, group.status.clone());
            // The first lease at once, not at the next tick.
            self.renew_lease(id);
        }
    }

    fn election_timeout(&self) -> Duration {
        self.config.tick_interval * self.config.election_ticks as u32
    }

    /// How long a quorum's confirmation of this node's leadership keeps it
    /// safe to serve reads: half an election timeout. Followers that
    /// confirmed it grant no vote for an election timeout after (raft-rs's
    /// check-quorum lease), or, once this node refused their connection,
    /// for this lease and one tick more (`core/departed.rs`); the tick is
    /// for clocks that run at slightly different rates.
    fn lease_duration(&self) -> Duration {
        self.election_timeout() / 2
    }

    /// Keeps the leases of the groups this node leads: when less than half
    /// is left, a read-index round (a heartbeat a quorum must answer)
    /// confirms the leadership, and the lease runs from when it was asked.
    /// A leader cut off from its quorum, or paused, lets its lease run out,
    /// and stops serving reads before another node can be elected.
    fn renew_leases(&mut self) {
        // A sleeping leader lets its lease run out; a request wakes it.
        let ids: Vec<GroupId> = self
            .awake
            .iter()
            .filter(|id| {
                self.groups
                    .get(*id)
                    .is_some_and(|g| g.node.raft.state == StateRole::Leader)
            })
            .copied()
            .collect();
        for id in ids {
            self.renew_lease(id);
        }
    }

    /// Asks a quorum to confirm this node's leadership of `id` when its
    /// lease is missing or half spent and no confirmation is under way.
    /// raft-rs answers read-index requests only once the leader has
    /// committed in its term; until then there is nothing to serve anyway.
    fn renew_lease(&mut self, id: GroupId) {
        let (now, lease) = (self.now, self.lease_duration());
        let Some(group) = self.groups.get_mut(&id) else { return };
        let raft = &group.node.raft;
        if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
            return;
        }
        if matches!(
            self.config.planted_bug,
            Some(PlantedBug::ReadWithoutLease | PlantedBug::ReadWithoutGate)
        ) {
            if group.status.lease_until.is_none() {
                group.status.lease_until = Some(now + FOREVER);
                self.status.set(id, group.status.clone());
            }
            return;
        }
        if !raft.commit_to_current_term() {
            return;
        }
        if raft.prs().conf().voters().ids().len() == 1 {
            // No other node can be elected: the lease never ends.
            if group.status.lease_until.is_none() {
                group.status.lease_until = Some(now + FOREVER);
                self.status.set(id, group.status.clone());
            }
            return;
        }
        if group
            .lease_request
            .is_some_and(|(_, issued)| now.duration_since(issued) < lease)
        {
            return;
        }
        let left = group
            .status
            .lease_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        if left > lease / 2 {
            return;
        }
        self.next_read += 1;
        let ctx = self.next_read;
        group.node.read_index(ctx.to_be_bytes().to_vec());
        group.lease_request = Some((ctx, now));
    }

    /// Tells raft-rs how the snapshots it sent went, so replication to
    /// those followers resumes or the snapshot is sent again.
    fn take_snapshot_reports(&mut self) {
        for (group, to, ok) in self.snapshot_reports.take() {
            self.wake(group, WakeCause::Request);
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
        self.peers = None;
        let group = self.groups.get_mut(&id).expect("installing into a running group");
        let hard_state = group.node.raft.hard_state();
        if let Err(e) = group.node.store().apply_snapshot(batch, snapshot, &hard_state) {
            fail_stop(&format!("cannot record the snapshot of group {id}"), &e);
        }
        group.persisted_commit = hard_state.commit;
        group.applied = meta.index;
        tracing::info!(group = id, index = meta.index, "installed a snapshot from the leader");
    }

    /// Takes the snapshots raft-rs asked for since the last iteration.
    fn prepare_requested_snapshots(&mut self) {
        let requested: Vec<GroupId> =
            std::mem::take(&mut *self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner()));
        for id in requested {
            let Some((state_index, manifest)) = self.state_machine.snapshot(id) else {
                continue;
            };
            let Some(group) = self.groups.get(&id) else { continue };
            // The state machine counts the entries it applied; the no-ops and
            // configuration changes after the last of them change nothing it
            // holds, so its state is also that of Raft's applied index, where
            // the configuration is the current one.
            let index = group.node.raft.raft_log.applied;
            assert!(
                state_index <= index,
                "group {id}: the state machine is at {state_index}, beyond Raft's applied index {index}"
            );
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
        self.meters.entries_applied.increment(entries.len() as u64);
        group.applied = entries.last().map_or(group.applied, |e| e.index);
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal {
                apply_conf_change(id, group, &self.status, &entry);
                self.peers = None;
                complete(&mut group.pending, &entry, None);
                continue;
            }
            // Leader no-ops carry nothing to apply.
            let output = (!entry.data.is_empty()).then(|| {
                self.state_machine
                    .apply(id, entry.index, entry.term, &entry.data, effects)
            });
            complete(&mut group.pending, &entry, output);
        }
        let applied = group.node.raft.raft_log.applied;
        if let Some(pending) = group.conf_pending.take_if(|p| p.index <= applied) {
            // Its entry was overwritten by another leader's, or refused by
            // raft-rs (which turns a conf change it refuses into a no-op).
            let _ = pending.reply.send(Err(ProposeError::Dropped));
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
            Effect::JoinGroup { group, nodes } => {
                if self.groups.contains_key(&group) || !nodes.contains(&self.config.node_id) {
                    return;
                }
                let created = (|| {
                    if !GroupStorage::exists(&self.engine, group) {
                        GroupStorage::initialise_empty(&self.engine, group)?;
                    }
                    self.open_group(group, false)
                })();
                if let Err(e) = created {
                    tracing::error!(group, "cannot create the Raft group of a new replica: {e}");
                }
            }
            Effect::LeaveGroup { group, nodes } => {
                if nodes.contains(&self.config.node_id) {
                    self.carry_out(Effect::RemoveGroup { group });
                }
            }
            Effect::RemoveGroup { group } => {
                self.awake.remove(&group);
                self.peers = None;
                if let Some(mut removed) = self.groups.remove(&group) {
                    removed.held.fail(ProposeError::UnknownGroup(group));
                    fail_pending(&mut removed.pending, ProposeError::UnknownGroup(group));
                    if let Some(pending) = removed.conf_pending {
                        let _ = pending.reply.send(Err(ProposeError::UnknownGroup(group)));
                    }
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

/// Applies a committed configuration entry to group `id` and makes the
/// result durable before anything acts on it. A change raft-rs refuses (it
/// would leave no voters, say) is refused the same way on every replica.
fn apply_conf_change<O, F: FileSystem>(id: GroupId, group: &mut Group<O, F>, status: &StatusBoard, entry: &Entry) {
    let change = match entry.get_entry_type() {
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data).ok(),
        _ => ConfChange::parse_from_bytes(&entry.data)
            .ok()
            .map(raft_proto::ConfChangeI::into_v2),
    };
    let outcome = match change {
        _ if entry.index <= group.conf_index => Ok(()),
        None => Err("undecodable configuration entry".to_string()),
        Some(cc) => match group.node.apply_conf_change(&cc) {
            Ok(conf) => {
                if let Err(e) = group.node.store().save_conf_state(&conf, entry.index) {
                    fail_stop(&format!("cannot record the configuration of group {id}"), &e);
                }
                group.conf_index = entry.index;
                tracing::info!(group = id, index = entry.index, voters = ?conf.voters, learners = ?conf.learners,
                    outgoing = ?conf.voters_outgoing, "applied a membership change");
                // A lease was confirmed by the old voters; earn it anew.
                group.status.lease_until = None;
                group.lease_request = None;
                status.set(id, group.status.clone());
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    if let Err(e) = &outcome {
        tracing::warn!(group = id, index = entry.index, "membership change refused: {e}");
    }
    if let Some(pending) = group
        .conf_pending
        .take_if(|p| p.index == entry.index && p.term == entry.term)
    {
        let _ = pending.reply.send(outcome.map_err(|_| ProposeError::Dropped));
    }
}

/// `entries` as the Raft log stores them, where the state machine keeps
/// some of their bodies itself (see `StateMachine::keep_bodies`).
fn references<S: StateMachine, F: FileSystem>(
    state_machine: &mut S,
    meters: &LoopMeters,
    id: GroupId,
    group: &Group<S::Output, F>,
    entries: &[Entry],
) -> Option<Vec<Entry>> {
    if entries.is_empty() {
        return None;
    }
    let appending: Vec<Appending<'_>> = entries
        .iter()
        .map(|e| Appending {
            index: e.index,
            term: e.term,
            normal: e.get_entry_type() == EntryType::EntryNormal,
            data: &e.data,
        })
        .collect();
    let last_index = raft::Storage::last_index(group.node.store()).unwrap_or(0);
    let references = state_machine.keep_bodies(id, group.applied, last_index, &appending);
    let kept = references.iter().flatten().count();
    if kept == 0 {
        return None;
    }
    meters.by_reference.increment(kept as u64);
    let mut references = references.into_iter();
    Some(
        entries
            .iter()
            .map(|entry| match references.next().flatten() {
                Some(reference) => as_reference(entry, reference),
                None => entry.clone(),
            })
            .collect(),
    )
}

/// The last entry a group needs no more in memory: applied, and on a leader
/// also held by every follower, since appends to a follower read from there.
fn released_through<F: FileSystem>(node: &RawNode<GroupStorage<F>>) -> u64 {
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

/// Whether `message` may come from the group as it was before this replica
/// was created: the node was a member once, was removed (its log deleted),
/// and is being added again, under the same Raft id. Messages still in
/// flight from then must not reach the new, empty replica:
/// - a heartbeat committing beyond its log, which raft-rs panics on (a
///   leader never sends one to the replica it tracks);
/// - a vote request while it has no configuration yet: it would grant a vote
///   its earlier self may have given to another candidate in that term. Once
///   the leader's snapshot has given it a configuration, its log holds every
///   entry up to its addition, and it judges candidates by it.
fn from_another_incarnation<F: FileSystem>(node: &RawNode<GroupStorage<F>>, message: &Message) -> bool {
    let raft = &node.raft;
    match message.get_msg_type() {
        MessageType::MsgHeartbeat => message.commit > raft.raft_log.last_index(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => {
            let conf = raft.prs().conf();
            conf.voters().ids().is_empty() && conf.learners().is_empty()
        }
        _ => false,
    }
}

/// Ends the lease of a leader handing its leadership over: the successor
/// takes over without waiting a lease out, since raft-rs grants a
/// transfer's votes regardless of leases. A renewal under way is dropped
/// too, or its confirmation would start a new lease.
fn end_lease<O, F: FileSystem>(group: &mut Group<O, F>) {
    group.status.lease_until = None;
    group.lease_request = None;
}

/// A (pre-)vote request other than a leadership transfer's, which raft-rs
/// grants regardless of leases.
fn is_vote_request(message: &Message) -> bool {
    matches!(
        message.get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    ) && message.context.as_ref() != raft::CAMPAIGN_TRANSFER
}

/// A well-mixed 64-bit value from `x` (SplitMix64's finaliser), so that
/// nearby seeds, nodes and groups get unrelated election timeouts.
fn split_mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn known_leader(id: u64) -> Option<NodeId> {
    (id != raft::INVALID_ID).then_some(id)
}

/// Whether raft-rs would drop a proposal of `bytes` now (see its
/// `step_leader`): the leader left the configuration, hands over its
/// leadership, or holds the most uncommitted bytes it may.
fn drops_proposal<T: raft::Storage>(raft: &raft::Raft<T>, bytes: usize, max_uncommitted: u64) -> bool {
    let uncommitted = raft.uncommitted_size();
    raft.prs().get(raft.id).is_none()
        || raft.lead_transferee.is_some()
        || (bytes > 0 && uncommitted > 0 && (bytes + uncommitted) as u64 > max_uncommitted)
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
