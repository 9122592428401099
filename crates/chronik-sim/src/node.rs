//! One simulated node: the real Raft core and the real replicated broker
//! state, on the simulated disk, sending through the simulated network.
//!
//! Each node's core lives on a thread of its own, and the simulation hands
//! it one call at a time and waits for it: only one thread ever runs, so a
//! run stays deterministic. (The thread is needed because raft-engine keeps
//! a per-thread block cache keyed by file number and offset, which several
//! engines on one thread would share and confuse.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chronik_raft::{
    GroupId, GroupReport, MembershipChange, MultiRaftConfig, NodeId, PlantedBug, ProposeError, RaftCore, SnapshotDone,
    SnapshotManifest, StatusBoard, Transport,
};
use chronik_state::replicated::{Applied, BrokerStateMachine, SharedState};
use raft::eraftpb::Message;
use tokio::sync::oneshot;

use crate::disk::{SimFiles, partition_power_loss};
use crate::network::{Packet, Payload};
use crate::unjudged::Unjudged;

pub type Outcome = oneshot::Receiver<Result<Applied, ProposeError>>;

/// Messages a node receives in one step: per sender, as sent.
pub type Inbound = Vec<(NodeId, Vec<(GroupId, Message)>)>;

/// Collects what the core sends in an iteration, for the network to carry.
#[derive(Clone, Default)]
struct Outbox {
    from: NodeId,
    packets: Arc<Mutex<Vec<Packet>>>,
    /// Peers that were down when a packet of this node's reached them, as
    /// a refused connection tells the real transport.
    departed: Arc<Mutex<Vec<NodeId>>>,
}

impl Transport for Outbox {
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        self.push(to, Payload::Messages(messages));
    }

    fn send_snapshot(&self, to: NodeId, group: GroupId, message: Message, done: SnapshotDone) {
        self.push(to, Payload::Snapshot { group, message, done });
    }

    fn take_departed(&self) -> Vec<NodeId> {
        std::mem::take(&mut *self.departed.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Outbox {
    fn push(&self, to: NodeId, payload: Payload) {
        let packet = Packet {
            from: self.from,
            to,
            payload,
        };
        self.packets.lock().unwrap_or_else(|e| e.into_inner()).push(packet);
    }

    fn take(&self) -> Vec<Packet> {
        std::mem::take(&mut *self.packets.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

type Core = RaftCore<Unjudged, SimFiles>;
type Job = Box<dyn FnOnce(&mut Option<Core>) + Send>;

/// The thread a node's core lives on.
struct Worker {
    jobs: mpsc::Sender<Job>,
    /// The message of a panic on the thread, for the simulation to report.
    panicked: Arc<Mutex<Option<String>>>,
}

impl Worker {
    fn spawn(id: NodeId) -> Worker {
        let (jobs, queue) = mpsc::channel::<Job>();
        let panicked = Arc::new(Mutex::new(None));
        let report = panicked.clone();
        std::thread::Builder::new()
            .name(format!("sim-node-{id}"))
            .spawn(move || {
                let mut core: Option<Core> = None;
                for job in queue {
                    let run = std::panic::AssertUnwindSafe(|| job(&mut core));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        *report.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic_message(panic));
                        return;
                    }
                }
            })
            .expect("a thread for a simulated node");
        Worker { jobs, panicked }
    }

    /// Runs `f` on the node's thread and waits for it. A panic there is
    /// raised here, where the simulation reports it.
    fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Option<Core>) -> R + Send + 'static) -> R {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |core| {
            let _ = reply.send(f(core));
        });
        if self.jobs.send(job).is_ok()
            && let Ok(result) = answer.recv()
        {
            return result;
        }
        let message = self.panicked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        panic!(
            "{}",
            message.unwrap_or_else(|| "a simulated node's thread ended".into())
        );
    }
}

pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What the simulation reads of a running node without a call.
struct Running {
    status: StatusBoard,
    shared: Arc<SharedState>,
}

/// How every node of a run is configured.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub voters: Vec<NodeId>,
    pub seed: u64,
    pub planted_bug: Option<PlantedBug>,
    /// Plant a defect in the leaders' forecasts (see `Unjudged`).
    pub misassign_offsets: bool,
}

pub struct SimNode {
    pub id: NodeId,
    dir: PathBuf,
    files: Arc<SimFiles>,
    outbox: Outbox,
    /// Shows the next proposal to apply only (see `Unjudged`).
    unjudged: Arc<AtomicBool>,
    worker: Worker,
    running: Option<Running>,
    /// Paused (SIGSTOP) until then: no iterations, nothing received.
    pub paused_until: Option<Duration>,
    /// When the loop runs its next iteration.
    pub next_iteration: Duration,
    starts: u64,
    /// Its disk was wiped: it starts with an empty metadata group, as a node
    /// started with `--join`, until a member adds it.
    joining: bool,
}

impl SimNode {
    pub fn new(id: NodeId, root: &Path) -> Self {
        SimNode {
            id,
            dir: root.join(format!("node-{id}")),
            files: Arc::new(SimFiles::default()),
            outbox: Outbox {
                from: id,
                ..Outbox::default()
            },
            unjudged: Arc::default(),
            worker: Worker::spawn(id),
            running: None,
            paused_until: None,
            next_iteration: Duration::ZERO,
            starts: 0,
            joining: false,
        }
    }

    /// Opens the node from what its disk holds, as a process start does.
    pub fn start(&mut self, at: Instant, settings: &NodeSettings) -> Result<(), String> {
        assert!(self.running.is_none(), "node {} started twice", self.id);
        self.starts += 1;
        let mut config = MultiRaftConfig::new(self.id, self.dir.join("raft-snapshots"));
        config.tick_interval = Duration::from_millis(10);
        config.checkpoint_interval = Duration::from_millis(200);
        config.initial_voters = if self.joining {
            Vec::new()
        } else {
            settings.voters.clone()
        };
        config.join = self.joining;
        // Small, so that a node down for a while is caught up by snapshot.
        config.log_retain_entries = 40;
        config.election_seed = Some(settings.seed.wrapping_mul(31).wrapping_add(self.starts));
        config.planted_bug = settings.planted_bug;
        let shared = Arc::new(SharedState::default());
        let (id, dir, files) = (self.id, self.dir.clone(), self.files.clone());
        let transport = Arc::new(self.outbox.clone());
        let state_shared = shared.clone();
        let unjudged = self.unjudged.clone();
        let misassign_offsets = settings.misassign_offsets;
        let status = self.worker.call(move |core| {
            let state = BrokerStateMachine::open_inline(&dir, id, state_shared)
                .map(|state| Unjudged::new(state, unjudged, misassign_offsets))
                .map_err(|e| format!("node {id}: cannot open the state: {e}"))?;
            let opened = RaftCore::open(&dir.join("raft"), files, config, state, transport, at)
                .map_err(|e| format!("node {id}: cannot start: {e}"))?;
            let status = opened.status().clone();
            *core = Some(opened);
            Ok::<_, String>(status)
        })?;
        self.running = Some(Running { status, shared });
        Ok(())
    }

    /// kill -9: the process ends where it stands. With `power_loss`, what
    /// the Raft log and the partition logs never fsynced is gone too (torn,
    /// with `tear`).
    pub fn crash(&mut self, rng: &mut impl rand::Rng, power_loss: bool, tear: bool) -> String {
        self.files.freeze();
        self.worker.call(|core| drop(core.take()));
        // Where each partition's segments were last fsynced, besides its
        // checkpoint. A node already down wrote nothing since its last
        // crash, and holds only what survived it.
        let running = self.running.take();
        let synced: Option<HashMap<PathBuf, i64>> = running.map(|running| {
            running
                .shared
                .all_partitions()
                .iter()
                .map(|p| (p.dir().to_path_buf(), p.synced_end()))
                .collect()
        });
        self.outbox.take();
        self.outbox.take_departed();
        self.paused_until = None;
        let what = if power_loss {
            let partitions = match &synced {
                Some(synced) => partition_power_loss(&self.dir.join("partitions"), synced, rng, tear),
                None => Ok(0),
            };
            match (self.files.power_loss(rng, tear), partitions) {
                (Ok(loss), Ok(partition_bytes)) => format!(
                    "power loss: Raft log {} bytes lost, {} files torn, {} vanished; partition logs {} bytes lost",
                    loss.bytes_lost, loss.files_torn, loss.files_vanished, partition_bytes
                ),
                (Err(e), _) | (_, Err(e)) => panic!("the simulated disk of node {} failed: {e}", self.id),
            }
        } else {
            "process crash".into()
        };
        self.files.thaw();
        what
    }

    /// A new, empty disk for a stopped node, which then starts as a
    /// joining node. Its core moves to a new thread: raft-engine caches
    /// blocks per thread by file number, and the new files reuse numbers.
    pub fn wipe(&mut self) {
        assert!(self.running.is_none(), "node {} wiped while running", self.id);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            panic!("cannot wipe the directory of node {}: {e}", self.id);
        }
        self.files = Arc::new(SimFiles::default());
        self.worker = Worker::spawn(self.id);
        self.joining = true;
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Tells this node's transport that a packet to `peer` was refused: the
    /// peer was down, or its link refuses. A real connection would have
    /// been refused.
    pub fn refused_by(&self, peer: NodeId) {
        if self.running.is_some() {
            self.outbox
                .departed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(peer);
        }
    }

    /// Up and not paused: able to answer.
    pub fn is_reachable(&self, now: Duration) -> bool {
        self.running.is_some() && self.paused_until.is_none_or(|until| until <= now)
    }

    /// One loop iteration at `now`; returns what it sent.
    pub fn iterate(&mut self, at: Instant) -> Vec<Packet> {
        if self.running.is_some() {
            self.worker.call(move |core| core.as_mut().map(|c| c.advance(at)));
        }
        self.outbox.take()
    }

    /// Messages from peers, in the order they arrived.
    pub fn receive(&mut self, at: Instant, batches: Inbound) {
        if self.running.is_some() {
            self.worker.call(move |core| {
                if let Some(core) = core.as_mut() {
                    for (from, messages) in batches {
                        core.receive(at, from, messages);
                    }
                }
            });
        }
    }

    /// Stages a snapshot's files as the gRPC server would, then steps its
    /// message. False when the files could not be copied.
    pub fn receive_snapshot(&mut self, at: Instant, from: NodeId, group: GroupId, message: Message) -> bool {
        if self.running.is_none() {
            return false;
        }
        let snapshot = message.get_snapshot();
        let Some(manifest) = SnapshotManifest::decode(&snapshot.data) else {
            return false;
        };
        let dir =
            chronik_raft::snapshot::staging_dir(&self.dir.join("raft-snapshots"), group, snapshot.get_metadata().index);
        if stage(&manifest, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            return false;
        }
        self.worker
            .call(move |core| core.as_mut().map(|c| c.receive(at, from, vec![(group, message)])));
        true
    }

    /// Proposes `data` to `group` here; `None` when the node is down.
    pub fn propose(&mut self, group: GroupId, data: Vec<u8>) -> Option<Outcome> {
        self.running.as_ref()?;
        let (reply, outcome) = oneshot::channel();
        self.worker
            .call(move |core| core.as_mut().map(|c| c.propose(group, data, reply)));
        Some(outcome)
    }

    /// As `propose`, unseen by the leader's forecast, so that apply
    /// decides it even where the leader would have refused it.
    pub fn propose_unjudged(&mut self, group: GroupId, data: Vec<u8>) -> Option<Outcome> {
        self.unjudged.store(true, Ordering::Relaxed);
        let outcome = self.propose(group, data);
        // Cleared by the proposal, unless it never reached the forecast.
        self.unjudged.store(false, Ordering::Relaxed);
        outcome
    }

    /// As `propose`, answered once the entry is in this node's own log
    /// (acks=1), with the outcome its state machine predicts.
    pub fn propose_local(&mut self, group: GroupId, data: Vec<u8>) -> Option<Outcome> {
        self.running.as_ref()?;
        let (reply, outcome) = oneshot::channel();
        self.worker
            .call(move |core| core.as_mut().map(|c| c.propose_local(group, data, reply)));
        Some(outcome)
    }

    /// The Raft state of every group here; empty when the node is down.
    pub fn describe(&mut self) -> Vec<GroupReport> {
        if self.running.is_none() {
            return Vec::new();
        }
        self.worker
            .call(|core| core.as_ref().map(|c| c.describe()).unwrap_or_default())
    }

    /// Proposes a membership change of `group` here, as the broker's
    /// reconciler does; its outcome shows in later descriptions.
    pub fn change_membership(&mut self, group: GroupId, change: MembershipChange) {
        if self.running.is_some() {
            let (reply, _outcome) = oneshot::channel();
            self.worker
                .call(move |core| core.as_mut().map(|c| c.change_membership(group, change, reply)));
        }
    }

    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) {
        if self.running.is_some() {
            self.worker
                .call(move |core| core.as_mut().map(|c| c.transfer_leader(group, to)));
        }
    }

    /// Whether this node may serve `group`: it leads it and is caught up
    /// (what `Broker::is_leader` asks before every read and write).
    pub fn serves(&self, group: GroupId, at: Instant) -> bool {
        let Some(running) = &self.running else { return false };
        running.status.get(group).is_some_and(|s| s.serves(self.id, at))
    }

    /// Whether this node leads `group` and the group sleeps idle: the next
    /// request wakes it (see [`SimNode::awaken`]).
    pub fn leads_asleep(&self, group: GroupId) -> bool {
        let Some(running) = &self.running else { return false };
        running
            .status
            .get(group)
            .is_some_and(|s| s.asleep && s.leader == Some(self.id))
    }

    /// Wakes `group` if this node leads it and it sleeps, as the broker does
    /// before a request (`Broker::awaken`); it serves after a quorum round.
    pub fn awaken(&mut self, group: GroupId) {
        if self.leads_asleep(group) {
            self.worker.call(move |core| core.as_mut().map(|c| c.wake_led(group)));
        }
    }

    /// How many groups sleep on this node.
    pub fn groups_asleep(&self) -> usize {
        self.running.as_ref().map_or(0, |r| r.status.asleep())
    }

    /// The leader this node knows of for `group`.
    pub fn leader_hint(&self, group: GroupId) -> Option<NodeId> {
        self.running.as_ref()?.status.get(group)?.leader
    }

    pub fn shared(&self) -> Option<&Arc<SharedState>> {
        self.running.as_ref().map(|r| &r.shared)
    }
}

/// Copies the files a snapshot names into `dir`, up to their listed lengths.
fn stage(manifest: &SnapshotManifest, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in &manifest.files {
        let mut data = std::fs::read(&file.path)?;
        if (data.len() as u64) < file.len {
            return Err(std::io::Error::other("snapshot file shorter than listed"));
        }
        data.truncate(file.len as usize);
        std::fs::write(dir.join(&file.name), data)?;
    }
    Ok(())
}
