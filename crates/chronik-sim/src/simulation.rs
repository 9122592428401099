//! One run: a cluster in one process, driven a millisecond at a time by a
//! clock only the simulation advances, with every choice drawn from one
//! seed.
//!
//! A run has four phases: the cluster forms and creates its topics; clients
//! work while the nemesis injects faults; everything heals and every group
//! must find a leader in bounded time; the replicas must then agree, and
//! hold every acknowledged record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronik_raft::{GroupId, METADATA_GROUP, NodeId, PlantedBug};
use chronik_state::consumer_offsets;
use chronik_state::metadata::{MetadataCommand, NodeInfo};
use chronik_state::version;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::admin::{Admin, create_topic};
use crate::checker::{Checker, Stats, TopicPartition};
use crate::history::History;
use crate::nemesis::{Fault, Recovery, next_fault};
use crate::network::{Conditions, Network, Payload, lose};
use crate::node::{Inbound, NodeSettings, SimNode, panic_message};
use crate::reconciler::Reconciler;

mod node_cycle;
use crate::records;
use crate::transactions::{CommittedReader, TxnProducer};
use crate::workload::{Committer, Producer, Reader, Vandal, World};
use node_cycle::NodeCycle;

/// A partition's records, offset → value.
type Records = BTreeMap<i64, Bytes>;

const STEP: Duration = Duration::from_millis(1);
/// The data topic the workload writes and checks.
const TOPIC: &str = "t0";
const TOPIC_PARTITIONS: i32 = 3;
const OFFSETS_PARTITIONS: i32 = 2;
/// Bounds of the phases after the faults, in simulated time.
const SETUP_LIMIT: Duration = Duration::from_secs(30);
const LEADER_LIMIT: Duration = Duration::from_secs(10);
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
const CONVERGE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub nodes: usize,
    /// How long clients work under faults, in simulated time.
    pub duration: Duration,
    pub planted_bug: Option<PlantedBug>,
    /// Plant a defect in the leaders' forecasts: every 50th batch one
    /// accepts enters the log at the wrong offset.
    pub misassign_offsets: bool,
    /// Start the cluster at the first `chronik.version` and move it to the
    /// newest halfway through the work, under load and faults.
    pub upgrade: bool,
    /// Keep every event of the history in the report.
    pub keep_history: bool,
}

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub violations: Vec<String>,
    /// Every fault and recovery, with its simulated time.
    pub schedule: Vec<String>,
    /// Equal for two runs of one seed: the replay check.
    pub digest: u64,
    pub events: usize,
    pub stats: Stats,
    pub faults: usize,
    /// Entries the edge refuses, proposed anyway and refused by apply.
    pub poison_refused: u64,
    pub simulated: Duration,
    /// The whole history, kept when the run was asked to keep it.
    pub history: Vec<String>,
}

pub fn run(config: &Config) -> Report {
    let mut simulation = Simulation::new(config);
    simulation.run();
    simulation.report()
}

struct Simulation {
    config: Config,
    rng: ChaCha8Rng,
    now: Duration,
    base: Instant,
    nodes: Vec<SimNode>,
    settings: NodeSettings,
    network: Network,
    checker: Checker,
    history: History,
    schedule: Vec<String>,
    /// Recoveries due, with the node each fault held.
    recoveries: BTreeMap<(Duration, u64), (Option<NodeId>, Recovery)>,
    faults: usize,
    next_fault_at: Duration,
    admin: Admin,
    reconciler: Reconciler,
    cycle: NodeCycle,
    producers: Vec<Producer>,
    readers: Vec<Reader>,
    committers: Vec<Committer>,
    vandal: Vandal,
    transactional: Option<TxnProducer>,
    committed_readers: Vec<CommittedReader>,
    /// Keeps the nodes' directories for the run.
    _dir: tempfile::TempDir,
}

impl Simulation {
    fn new(config: &Config) -> Self {
        // tmpfs where there is one: the disk model is the simulation's.
        let dir = tempfile::Builder::new()
            .prefix("chronik-sim-")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .expect("a temporary directory");
        let ids: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let nodes = ids.iter().map(|&id| SimNode::new(id, dir.path())).collect();
        Simulation {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            now: Duration::ZERO,
            base: Instant::now(),
            nodes,
            settings: NodeSettings {
                voters: ids,
                seed: config.seed,
                planted_bug: config.planted_bug,
                misassign_offsets: config.misassign_offsets,
            },
            network: Network::default(),
            checker: Checker::default(),
            history: History::default(),
            schedule: Vec::new(),
            recoveries: BTreeMap::new(),
            faults: 0,
            next_fault_at: Duration::ZERO,
            admin: Admin::default(),
            reconciler: Reconciler::default(),
            cycle: NodeCycle::default(),
            producers: Vec::new(),
            readers: Vec::new(),
            committers: Vec::new(),
            vandal: Vandal::new(Vec::new()),
            transactional: None,
            committed_readers: Vec::new(),
            _dir: dir,
        }
    }

    /// Runs the phases. A panic in a node (raft-rs's own assertions, or
    /// ours) ends the run as a violation: in the product it ends the process.
    fn run(&mut self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_phases()));
        if let Err(panic) = outcome {
            self.checker
                .violate(format!("a node panicked: {}", panic_message(panic)));
        }
    }

    fn run_phases(&mut self) {
        for index in 0..self.nodes.len() {
            self.start(index);
        }
        if !self.set_up() {
            return;
        }
        let start = self.now;
        let end = self.now + self.config.duration;
        self.next_fault_at = self.now + Duration::from_millis(self.rng.gen_range(200..1500));
        let mut upgrade_at = self.config.upgrade.then(|| start + self.config.duration / 2);
        while self.now < end && self.checker.violations().is_empty() {
            if upgrade_at.is_some_and(|at| self.now >= at) {
                upgrade_at = None;
                // Every node the run may ever make a member: a superset
                // of the members is what the check at apply wants.
                let members = (1..=self.nodes.len() as u64).collect();
                self.admin.push(MetadataCommand::SetVersion {
                    level: version::NEWEST,
                    members,
                });
            }
            self.inject_faults();
            let working = !quiet_spell(self.config.seed, self.now - start);
            self.step(working);
        }
        self.heal();
        if self.checker.violations().is_empty() {
            self.finish();
        }
        if self.config.upgrade && self.checker.violations().is_empty() {
            self.check_upgraded();
        }
    }

    /// Every node ends at the level the run moved the cluster to.
    fn check_upgraded(&mut self) {
        for (index, node) in self.nodes.iter().enumerate() {
            let level = node.shared().map(|s| s.metadata().version_level());
            if level.is_some_and(|level| level != version::NEWEST) {
                self.checker.violate(format!(
                    "node {} runs at {} {level:?} after the upgrade to {}",
                    index + 1,
                    version::FEATURE,
                    version::NEWEST
                ));
            }
        }
    }

    fn report(&self) -> Report {
        Report {
            seed: self.config.seed,
            nodes: self.config.nodes,
            violations: self.checker.violations().to_vec(),
            schedule: self.schedule.clone(),
            digest: self.history.digest(),
            events: self.history.events().len(),
            stats: self.checker.stats.clone(),
            faults: self.faults,
            poison_refused: self.vandal.refused,
            simulated: self.now,
            history: if self.config.keep_history {
                self.history.events().to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// Forms the cluster and creates the topics; then starts the clients.
    fn set_up(&mut self) -> bool {
        let nodes = self
            .settings
            .voters
            .iter()
            .map(|&id| {
                (
                    id,
                    NodeInfo {
                        raft_addr: format!("sim-{id}"),
                        pending: false,
                    },
                )
            })
            .collect();
        let version = if self.config.upgrade {
            version::FIRST
        } else {
            version::NEWEST
        };
        self.admin.push(MetadataCommand::InitCluster {
            cluster_id: "sim".into(),
            nodes,
            version,
        });
        let offsets = create_topic(&mut self.rng, consumer_offsets::TOPIC, OFFSETS_PARTITIONS);
        self.admin.push(offsets);
        let topic = create_topic(&mut self.rng, TOPIC, TOPIC_PARTITIONS);
        self.admin.push(topic);
        while !self.admin.idle() {
            if self.now >= SETUP_LIMIT {
                self.checker
                    .violate(format!("the cluster did not form within {SETUP_LIMIT:?}"));
                return false;
            }
            self.step(false);
        }
        let Some(groups) = self.groups_of(TOPIC) else {
            self.checker
                .violate("the data topic has no groups after its creation".into());
            return false;
        };
        for (tp, group) in &groups {
            self.readers.push(Reader::new(tp.clone(), *group));
            self.committed_readers.push(CommittedReader::new(tp.clone(), *group));
        }
        self.transactional = Some(TxnProducer::new(2001, &groups));
        self.vandal = Vandal::new(groups.clone());
        self.producers = vec![
            Producer::new("idem1".into(), Some(1001), &groups),
            Producer::new("idem2".into(), Some(1002), &groups),
            Producer::new("plain".into(), None, &groups),
        ];
        let offsets_groups = self.groups_of(consumer_offsets::TOPIC).unwrap_or_default();
        for name in ["g1", "g2"] {
            let partition = Committer::partition_of(name, OFFSETS_PARTITIONS);
            if let Some((_, group)) = offsets_groups.iter().find(|(tp, _)| tp.1 == partition) {
                self.committers.push(Committer::new(name.into(), *group));
            }
        }
        true
    }

    /// The partitions of `topic` and their groups, as a running node knows them.
    fn groups_of(&self, topic: &str) -> Option<Vec<(TopicPartition, GroupId)>> {
        let node = self.nodes.iter().find(|n| n.is_running())?;
        let metadata = node.shared()?.metadata();
        let info = metadata.topic(topic)?;
        Some(
            info.partitions
                .iter()
                .enumerate()
                .map(|(index, p)| ((topic.to_string(), index as i32), p.group))
                .collect(),
        )
    }

    /// One millisecond: deliveries, due loop iterations, client work. The
    /// clients go first or last at random, so that requests race the loops
    /// both ways (a node just resumed may answer before its loop has run).
    fn step(&mut self, working: bool) {
        self.now += STEP;
        let clients_first = self.rng.gen_bool(0.5);
        if clients_first {
            self.step_clients(working);
        }
        self.deliver();
        self.iterate();
        if !clients_first {
            self.step_clients(working);
        }
    }

    /// Hands each node the packets due for it, in order, in one call: a
    /// call to a node's thread is the simulation's main cost.
    fn deliver(&mut self) {
        let at = self.base + self.now;
        let mut batches: BTreeMap<usize, Inbound> = BTreeMap::new();
        for packet in self.network.due(self.now) {
            let index = (packet.to - 1) as usize;
            if !self.nodes[index].is_running() {
                self.nodes[(packet.from - 1) as usize].refused_by(packet.to);
                lose(packet);
                continue;
            }
            let node = &mut self.nodes[index];
            if let Some(until) = node.paused_until.filter(|until| *until > self.now) {
                self.network.hold(until, packet);
            } else {
                match packet.payload {
                    Payload::Messages(messages) => batches.entry(index).or_default().push((packet.from, messages)),
                    Payload::Snapshot { group, message, done } => {
                        if let Some(batch) = batches.remove(&index) {
                            node.receive(at, batch);
                        }
                        done.finish(node.receive_snapshot(at, packet.from, group, message));
                    }
                }
            }
        }
        for (index, batch) in batches {
            self.nodes[index].receive(at, batch);
        }
    }

    fn iterate(&mut self) {
        let at = self.base + self.now;
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if !node.is_reachable(self.now) || node.next_iteration > self.now {
                continue;
            }
            if node.paused_until.take().is_some() {
                // Just resumed: its loop gets to run a moment later.
                node.next_iteration = self.now + Duration::from_millis(self.rng.gen_range(1..=5));
                continue;
            }
            node.next_iteration = self.now + Duration::from_millis(self.rng.gen_range(1..=4));
            for packet in node.iterate(at) {
                let to = packet.to;
                if !self.network.send(self.now, &mut self.rng, packet) {
                    self.nodes[index].refused_by(to);
                }
            }
        }
        let asleep: usize = self.nodes.iter().map(SimNode::groups_asleep).sum();
        self.checker.stats.asleep_ms += asleep as u64;
    }

    fn step_clients(&mut self, working: bool) {
        if working && self.rng.gen_bool(0.0005) {
            self.admin.churn(&mut self.rng);
        }
        // Moves need a node outside a partition's three replicas.
        if working && self.config.nodes > 3 && self.rng.gen_bool(0.001) {
            let metadata = self.nodes.iter().find_map(|n| n.shared().map(|s| s.metadata().clone()));
            if let Some(metadata) = metadata {
                let topics = [TOPIC, consumer_offsets::TOPIC];
                let leaving = self.cycle.leaving();
                self.admin.reassign(&mut self.rng, &metadata, &topics, leaving);
            }
        }
        self.step_node_cycle(working);
        self.reconciler
            .step(self.now, &mut self.nodes, &mut self.admin, &mut self.history);
        let mut world = World {
            nodes: &mut self.nodes,
            now: self.now,
            at: self.base + self.now,
            rng: &mut self.rng,
            checker: &mut self.checker,
            history: &mut self.history,
        };
        self.admin.step(&mut world);
        for producer in &mut self.producers {
            producer.step(&mut world, working);
        }
        for reader in &mut self.readers {
            reader.step(&mut world);
        }
        for committer in &mut self.committers {
            committer.step(&mut world, working);
        }
        self.vandal.step(&mut world, working);
        if let Some(producer) = self.transactional.as_mut() {
            producer.step(&mut world, working);
        }
        for reader in &mut self.committed_readers {
            reader.step(&mut world);
        }
    }

    fn start(&mut self, index: usize) {
        let at = self.base + self.now;
        if let Err(e) = self.nodes[index].start(at, &self.settings) {
            self.checker.violate(e);
        }
        self.nodes[index].next_iteration = self.now;
    }

    fn note(&mut self, event: String) {
        let line = format!("{:>8.3}s {event}", self.now.as_secs_f64());
        self.schedule.push(line);
        self.history.record(self.now, event);
    }

    fn inject_faults(&mut self) {
        while let Some(entry) = self.recoveries.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (_, recovery) = entry.remove();
            self.recover(recovery);
        }
        if self.now < self.next_fault_at {
            return;
        }
        self.next_fault_at = self.now + Duration::from_millis(self.rng.gen_range(200..1500));
        let ids = self.settings.voters.clone();
        let faulty: Vec<NodeId> = self.recoveries.values().filter_map(|(node, _)| *node).collect();
        let leaders: Vec<NodeId> = self
            .readers
            .iter()
            .filter_map(|r| self.nodes.iter().find(|n| n.serves(r.group(), self.base + self.now)))
            .map(|n| n.id)
            .collect();
        let Some((fault, recovery, lasting)) = next_fault(&mut self.rng, &ids, &faulty, &leaders) else {
            return;
        };
        self.faults += 1;
        let held = self.apply(&fault, lasting);
        let key = (self.now + lasting, self.faults as u64);
        self.recoveries.insert(key, (held, recovery));
    }

    /// Injects `fault`; returns the node it holds, if one.
    fn apply(&mut self, fault: &Fault, lasting: Duration) -> Option<NodeId> {
        match *fault {
            Fault::Crash { node, power_loss, tear } => {
                let what = self.nodes[(node - 1) as usize].crash(&mut self.rng, power_loss, tear);
                self.note(format!("crash node {node} ({what}) for {lasting:?}"));
                Some(node)
            }
            Fault::Pause { node } => {
                self.nodes[(node - 1) as usize].paused_until = Some(self.now + lasting);
                self.note(format!("pause node {node} for {lasting:?}"));
                Some(node)
            }
            Fault::Isolate { node, refuses } => {
                for other in self.settings.voters.clone() {
                    if other != node {
                        self.network.cut(node, other, refuses);
                        self.network.cut(other, node, refuses);
                    }
                }
                let how = if refuses { "refusing" } else { "dropping" };
                self.note(format!("isolate node {node} ({how}) for {lasting:?}"));
                Some(node)
            }
            Fault::CutLink { from, to, refuses } => {
                self.network.cut(from, to, refuses);
                let how = if refuses { "refusing" } else { "dropping" };
                self.note(format!("cut link {from}→{to} ({how}) for {lasting:?}"));
                Some(from)
            }
            Fault::Weather(conditions) => {
                self.network.conditions = conditions;
                self.note(format!(
                    "weather: drop {:.2}, duplicate {:.2}, delay ≤ {:?}, for {lasting:?}",
                    conditions.drop, conditions.duplicate, conditions.max_delay
                ));
                None
            }
            Fault::PowerLossAll => {
                let mut losses = Vec::new();
                for index in 0..self.nodes.len() {
                    let tear = self.rng.gen_bool(0.5);
                    losses.push(self.nodes[index].crash(&mut self.rng, true, tear));
                }
                self.note(format!("power loss of every node: {}", losses.join("; ")));
                None
            }
        }
    }

    fn recover(&mut self, recovery: Recovery) {
        match recovery {
            Recovery::Restart(node) => {
                let index = (node - 1) as usize;
                if !self.nodes[index].is_running() {
                    self.start(index);
                    self.note(format!("restart node {node}"));
                }
            }
            Recovery::Resume(node) => {
                // The pause ends now; `iterate` lets its loop run a moment later.
                if let Some(until) = self.nodes[(node - 1) as usize].paused_until.as_mut() {
                    *until = (*until).min(self.now);
                }
                self.note(format!("resume node {node}"));
            }
            Recovery::Reconnect(node) => {
                for other in self.settings.voters.clone() {
                    self.network.heal_link(node, other);
                    self.network.heal_link(other, node);
                }
                self.note(format!("reconnect node {node}"));
            }
            Recovery::HealLink { from, to } => {
                self.network.heal_link(from, to);
                self.note(format!("heal link {from}→{to}"));
            }
            Recovery::CalmWeather => {
                self.network.conditions = Conditions::CALM;
                self.note("calm weather".into());
            }
            Recovery::RestartAll => {
                for index in 0..self.nodes.len() {
                    if !self.nodes[index].is_running() {
                        self.start(index);
                    }
                }
                self.note("restart every node".into());
            }
        }
    }

    fn heal(&mut self) {
        let pending = std::mem::take(&mut self.recoveries);
        for (_, (_, recovery)) in pending {
            self.recover(recovery);
        }
        self.network.heal();
        self.note("heal everything".into());
    }

    /// After healing: leaders, answers, agreement, and the final checks.
    fn finish(&mut self) {
        let healed = self.now;
        loop {
            let leaderless = self.leaderless_groups();
            if leaderless.is_empty() {
                break;
            }
            if self.now - healed > LEADER_LIMIT {
                self.checker.violate(format!(
                    "groups {leaderless:?} have no serving leader {LEADER_LIMIT:?} after healing"
                ));
                return;
            }
            self.step(false);
        }
        self.history.record(
            self.now,
            format!("every group has a leader after {:?}", self.now - healed),
        );
        let drained = self.now;
        while !(self.producers.iter().all(Producer::idle)
            && self.transactional.as_ref().is_none_or(TxnProducer::idle)
            && self.committers.iter().all(Committer::idle)
            && self.admin.idle()
            && self.moves_done()
            && self.cycle.phase == node_cycle::Phase::Idle)
        {
            if self.now - drained > DRAIN_LIMIT {
                let waiting = self.still_waiting();
                self.checker
                    .violate(format!("{DRAIN_LIMIT:?} after healing, still waiting for: {waiting}"));
                return;
            }
            self.step(false);
        }
        let Some(groups) = self.groups_of(TOPIC) else {
            self.checker.violate("the data topic vanished".into());
            return;
        };
        let converging = self.now;
        loop {
            match self.final_logs(&groups) {
                Ok(logs) => {
                    for (tp, log) in logs {
                        self.checker.check_final(&tp, &log);
                    }
                    return;
                }
                Err(e) if self.now - converging > CONVERGE_LIMIT => {
                    self.checker.violate(e);
                    return;
                }
                Err(_) => {
                    for _ in 0..100 {
                        self.step(false);
                    }
                }
            }
        }
    }

    /// What the end of a run still waits for, for a violation's message.
    fn still_waiting(&mut self) -> String {
        let mut waiting = Vec::new();
        if !self.producers.iter().all(Producer::idle) {
            waiting.push("a producer's request".to_string());
        }
        if !self.committers.iter().all(Committer::idle) {
            waiting.push("an offset commit".to_string());
        }
        if !self.transactional.as_ref().is_none_or(TxnProducer::idle) {
            waiting.push("a transaction".to_string());
        }
        if let Some(command) = self.admin.pending() {
            waiting.push(format!("the admin's {command:?}"));
        }
        let moving: Vec<(String, u64)> = self
            .newest_metadata()
            .map(|m| {
                m.partitions()
                    .filter_map(|(topic, index, p)| {
                        p.target
                            .as_ref()
                            .map(|t| (format!("{topic}-{index} moving {:?} -> {t:?}", p.replicas), p.group))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (what, group) in moving {
            // Each replica's view of the group, to see where the move stands.
            let views: Vec<String> = self
                .nodes
                .iter_mut()
                .filter_map(|n| {
                    let id = n.id;
                    n.describe().into_iter().find(|r| r.group == group).map(|r| {
                        format!(
                            "node {id}: {} leader {:?} voters {:?} learners {:?} matched {:?} last {} commit {}",
                            r.role, r.leader, r.voters, r.learners, r.matched, r.last_index, r.commit
                        )
                    })
                })
                .collect();
            waiting.push(format!("{what} (group {group}: {})", views.join(" | ")));
        }
        if self.cycle.phase != node_cycle::Phase::Idle {
            waiting.push(format!("the node cycle in {:?}", self.cycle.phase));
        }
        waiting.join("; ")
    }

    /// No partition is being moved, as every running node's metadata says.
    fn moves_done(&self) -> bool {
        self.nodes
            .iter()
            .filter_map(|n| n.shared())
            .all(|s| s.metadata().partitions().all(|(_, _, p)| p.target.is_none()))
    }

    /// Groups of the newest metadata that no node serves, or leads asleep
    /// (its next request wakes it). (A node removed from the cluster keeps
    /// running on stale metadata until it is wiped.)
    fn leaderless_groups(&self) -> Vec<GroupId> {
        let Some(metadata) = self.newest_metadata() else {
            return vec![METADATA_GROUP];
        };
        let mut groups: Vec<GroupId> = metadata
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| p.group))
            .collect();
        groups.push(METADATA_GROUP);
        let at = self.base + self.now;
        groups.retain(|&g| !self.nodes.iter().any(|n| n.serves(g, at) || n.leads_asleep(g)));
        groups
    }

    /// Every partition's records, once all its replicas hold the same ones
    /// (compared by checksum, then record by record).
    fn final_logs(&self, groups: &[(TopicPartition, GroupId)]) -> Result<Vec<(TopicPartition, Records)>, String> {
        let mut logs = Vec::new();
        for (tp, group) in groups {
            let mut replicas: Vec<(NodeId, i64, u32, Records)> = Vec::new();
            for node in &self.nodes {
                let Some(partition) = node.shared().and_then(|s| s.partition(*group)) else {
                    continue;
                };
                let checksum = partition
                    .checksum()
                    .map_err(|e| format!("{}-{} on node {}: no checksum: {e}", tp.0, tp.1, node.id))?;
                let log = read_all(&partition)?;
                replicas.push((node.id, partition.high_watermark(), checksum, log));
            }
            let Some((first_node, hw, checksum, log)) = replicas.first() else {
                return Err(format!("{}-{} has no replica", tp.0, tp.1));
            };
            if replicas.len() != 3 {
                return Err(format!("{}-{} has {} replicas, not 3", tp.0, tp.1, replicas.len()));
            }
            for (node, other_hw, other_checksum, other_log) in &replicas[1..] {
                if (other_hw, other_checksum) != (hw, checksum) || other_log != log {
                    return Err(format!(
                        "{}-{}: replicas disagree: node {first_node} has {hw} records (checksum {checksum:08x}), \
                         node {node} has {other_hw} (checksum {other_checksum:08x})",
                        tp.0, tp.1
                    ));
                }
            }
            logs.push((tp.clone(), log.clone()));
        }
        Ok(logs)
    }
}

fn read_all(partition: &chronik_state::partition::Partition) -> Result<Records, String> {
    let log = partition.log();
    // Past it the log may hold entries not yet committed.
    let end = partition.high_watermark();
    let mut offset = log.log_start_offset();
    let mut records = BTreeMap::new();
    while offset < end {
        let batches = log.read(offset, 1 << 20).map_err(|e| e.to_string())?;
        let read = records::decode(batches)?;
        let Some(last) = read.last().map(|(o, _)| *o) else {
            return Err(format!("no records at offset {offset} of {end}"));
        };
        records.extend(read.into_iter().filter(|(o, _)| (offset..end).contains(o)));
        offset = last + 1;
    }
    Ok(records)
}

/// Whether clients start no new writes at `elapsed` into the working phase:
/// one second in every five, from an offset the seed picks, long enough
/// for the groups to fall asleep (after 20 quiet ticks of 10 ms) while the
/// faults go on and the readers keep waking their leaders.
fn quiet_spell(seed: u64, elapsed: Duration) -> bool {
    const PERIOD: u64 = 5_000;
    let offset = seed.wrapping_mul(2_654_435_761) % PERIOD;
    (elapsed.as_millis() as u64 + offset) % PERIOD >= PERIOD - 1_000
}
