//! The limits and timings of a node's Raft groups.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::NodeId;
use crate::disk_space::DiskSpace;

/// Limits and timings of the loop.
#[derive(Debug, Clone)]
pub struct MultiRaftConfig {
    pub node_id: NodeId,
    /// One Raft tick; elections take `election_ticks` of them.
    pub tick_interval: Duration,
    pub election_ticks: usize,
    /// Each election timeout is drawn from one tick past `election_ticks`
    /// up to this many ticks more. raft-rs's default spread, a whole
    /// election timeout, made the produce pause after a leader died
    /// 1.8-2.1 s; a few ticks still keep two followers from campaigning at
    /// once (a vote round takes milliseconds), and the vote refusal that
    /// leases rest on lasts `election_ticks` whatever the spread.
    pub election_jitter_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A group led here that has taken no new entry for this many ticks,
    /// with every live replica caught up, stops ticking until something
    /// wakes it. `None`: groups never sleep.
    pub hibernate_ticks: Option<u32>,
    /// Proposals queued for the loop before callers wait (backpressure).
    pub proposal_queue_depth: usize,
    /// Upper bound on the bytes of one append message to a follower.
    pub max_append_bytes: u64,
    /// Bytes of Raft entries all groups keep in memory together, so that
    /// applying and sending them to followers does not read them back from
    /// the log store. It should hold what one loop iteration writes (up to
    /// 16 MiB of proposals) and what a leader has in flight to a follower
    /// (48 appends of up to 1 MiB) for the groups busy at once: with 8 MiB
    /// per group, reading back took a fifth of a single node's CPU.
    pub entry_cache_bytes: usize,
    /// Uncommitted bytes a leader accepts before it rejects proposals.
    pub max_uncommitted_bytes: u64,
    /// How often applied state is made durable and the Raft log compacted.
    pub checkpoint_interval: Duration,
    /// Voters of the metadata group if this node has to create it (the first
    /// start of a cluster's nodes). Empty: the node must already hold it.
    pub initial_voters: Vec<NodeId>,
    /// This node joins a running cluster: it starts with an empty metadata
    /// group, which a member adds it to (as a learner first).
    pub join: bool,
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
    /// `None`: raft-rs draws every election timeout at random, as it should
    /// in production. `Some(seed)`: each group's timeout is fixed, drawn
    /// from the seed and the group id, so that a simulation replays exactly.
    pub election_seed: Option<u64>,
    /// A defect planted on purpose, to prove that the simulator finds it.
    /// Always `None` outside the simulator's own tests.
    pub planted_bug: Option<PlantedBug>,
}

/// Defects the simulator must catch (its mutation check). Each undoes one
/// safety rule of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// A leader serves reads as soon as it is elected, with neither the read
    /// gate nor a lease: the code before the safety round's fix.
    ReadWithoutGate,
    /// Raft log writes are not fsynced, so a crash loses entries that were
    /// acknowledged.
    AckBeforeFsync,
    /// A leader serves reads without a lease, as before leases existed: one
    /// cut off or paused keeps serving after its successor took over.
    ReadWithoutLease,
    /// A replica added back to a group it was removed from takes the
    /// messages still in flight for its earlier self: it grants votes before
    /// it has a configuration (forgetting the votes its earlier self gave),
    /// and commits beyond its log.
    StaleIncarnation,
    /// A follower whose leader's node refused a connection grants votes at
    /// once, as if a refusal proved the node dead: a leader behind a
    /// rejecting firewall keeps serving reads under its lease after its
    /// successor took over. (The simulator did not catch it in 697 runs;
    /// `tests/departed_leader.rs` does.)
    DepartedWithoutSilence,
    /// The segments written when entries are appended (one write per
    /// record) are not fsynced before the Raft log stores references to
    /// them, so a power loss leaves references to bytes that are gone.
    ReferenceBeforeSync,
}

impl MultiRaftConfig {
    pub fn new(node_id: NodeId, snapshot_dir: PathBuf) -> Self {
        MultiRaftConfig {
            node_id,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            election_jitter_ticks: 3,
            heartbeat_ticks: 2,
            hibernate_ticks: Some(20),
            proposal_queue_depth: 8192,
            max_append_bytes: 1 << 20,
            max_uncommitted_bytes: 256 << 20,
            entry_cache_bytes: 256 << 20,
            checkpoint_interval: Duration::from_secs(1),
            initial_voters: vec![node_id],
            join: false,
            snapshot_dir,
            in_sync_max_lag: 1000,
            log_retain_entries: 10_000,
            disk: None,
            election_seed: None,
            planted_bug: None,
        }
    }
}
