//! The metrics the Raft layer records, through the `metrics` facade. The
//! binary installs a Prometheus recorder; without one (unit tests, the
//! simulator) recording costs next to nothing and changes nothing.

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

pub const FSYNC_SECONDS: &str = "chronik_raft_fsync_seconds";
pub const FSYNC_BYTES: &str = "chronik_raft_fsync_bytes";
pub const LOOP_ITERATION_SECONDS: &str = "chronik_raft_loop_iteration_seconds";
pub const PROPOSALS_QUEUED: &str = "chronik_raft_proposals_queued";
pub const ENTRIES_APPLIED: &str = "chronik_raft_entries_applied_total";
pub const ELECTIONS: &str = "chronik_raft_elections_total";
pub const TERM_CHANGES: &str = "chronik_raft_term_changes_total";
pub const ISR_SHRINKS: &str = "chronik_raft_isr_shrinks_total";
pub const ISR_EXPANDS: &str = "chronik_raft_isr_expands_total";
pub const SNAPSHOTS_SENT: &str = "chronik_raft_snapshots_sent_total";
pub const SNAPSHOT_BYTES_SENT: &str = "chronik_raft_snapshot_sent_bytes_total";
pub const SNAPSHOTS_RECEIVED: &str = "chronik_raft_snapshots_received_total";
pub const SNAPSHOT_BYTES_RECEIVED: &str = "chronik_raft_snapshot_received_bytes_total";
pub const LOCAL_ANSWERS: &str = "chronik_raft_local_answers_total";
pub const REFUSED_PROPOSALS: &str = "chronik_raft_proposals_refused_total";
pub const HELD_PROPOSALS: &str = "chronik_raft_proposals_held_total";
pub const PEER_QUEUE_BYTES: &str = "chronik_raft_peer_queue_bytes";
pub const PEER_MESSAGES_DROPPED: &str = "chronik_raft_peer_dropped_batches_total";
pub const GROUP_SLEEPS: &str = "chronik_raft_group_sleeps_total";
pub const GROUP_WAKES: &str = "chronik_raft_group_wakes_total";
pub const GROUPS_AWAKE: &str = "chronik_raft_groups_awake";
pub const ENTRIES_BY_REFERENCE: &str = "chronik_raft_entries_by_reference_total";
pub const BODIES_SYNC_SECONDS: &str = "chronik_raft_bodies_sync_seconds";

/// Gives each metric its help text and unit, once, before the first scrape.
pub fn describe() {
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Time of one Raft log write with its fsync"
    );
    describe_histogram!(
        FSYNC_BYTES,
        Unit::Bytes,
        "Bytes of Raft entries and state written per fsync"
    );
    describe_histogram!(
        LOOP_ITERATION_SECONDS,
        Unit::Seconds,
        "Time of one Raft loop iteration (ticks, the Ready round, apply)"
    );
    describe_gauge!(PROPOSALS_QUEUED, "Proposals waiting for the Raft loop");
    describe_counter!(ENTRIES_APPLIED, "Committed Raft entries applied, over all groups");
    describe_counter!(
        ELECTIONS,
        "Elections this node started (as a candidate), over all groups"
    );
    describe_counter!(
        TERM_CHANGES,
        "Term changes seen by this node's replicas, over all groups"
    );
    describe_counter!(ISR_SHRINKS, "Times a group led here lost an in-sync replica");
    describe_counter!(ISR_EXPANDS, "Times a group led here gained an in-sync replica");
    describe_counter!(SNAPSHOTS_SENT, "Snapshots sent to lagging followers");
    describe_counter!(SNAPSHOT_BYTES_SENT, Unit::Bytes, "Snapshot bytes sent");
    describe_counter!(SNAPSHOTS_RECEIVED, "Snapshots received from leaders");
    describe_counter!(SNAPSHOT_BYTES_RECEIVED, Unit::Bytes, "Snapshot bytes received");
    describe_counter!(
        LOCAL_ANSWERS,
        "Proposals answered once in the leader's own log, with a predicted outcome (acks=1)"
    );
    describe_counter!(
        REFUSED_PROPOSALS,
        "Proposals the leader refused before appending them (answered at once, never replicated)"
    );
    describe_counter!(
        HELD_PROPOSALS,
        "Times a leader held proposals back until the entries in flight were applied"
    );
    describe_gauge!(
        PEER_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes of Raft messages queued for a peer"
    );
    describe_counter!(
        PEER_MESSAGES_DROPPED,
        "Batches of Raft messages dropped because a peer's queue was full (Raft retransmits)"
    );
    describe_counter!(GROUP_SLEEPS, "Times a group on this node stopped ticking, idle");
    describe_counter!(GROUP_WAKES, "Times a sleeping group on this node woke");
    describe_gauge!(GROUPS_AWAKE, "Groups on this node that tick (the rest sleep)");
    describe_counter!(
        ENTRIES_BY_REFERENCE,
        "Raft entries stored as a reference to their batches, written once into the partition segments"
    );
    describe_histogram!(
        BODIES_SYNC_SECONDS,
        Unit::Seconds,
        "Time to make the segments written at append durable, once per loop iteration that wrote any"
    );
}

/// Handles of what the loop records every iteration, made once: a handle
/// records with an atomic add, where the macros look the metric up.
pub(crate) struct LoopMeters {
    pub fsync_seconds: Histogram,
    pub fsync_bytes: Histogram,
    pub entries_applied: Counter,
    pub local_answers: Counter,
    pub refused_proposals: Counter,
    pub held_proposals: Counter,
    pub sleeps: Counter,
    pub wakes: Counter,
    pub awake: Gauge,
    pub by_reference: Counter,
    pub bodies_sync_seconds: Histogram,
}

/// What the shell records every iteration.
pub(crate) struct ShellMeters {
    pub iteration_seconds: Histogram,
    pub proposals_queued: Gauge,
}

impl ShellMeters {
    pub(crate) fn new() -> Self {
        ShellMeters {
            iteration_seconds: histogram!(LOOP_ITERATION_SECONDS),
            proposals_queued: gauge!(PROPOSALS_QUEUED),
        }
    }
}

impl LoopMeters {
    pub(crate) fn new() -> Self {
        LoopMeters {
            fsync_seconds: histogram!(FSYNC_SECONDS),
            fsync_bytes: histogram!(FSYNC_BYTES),
            entries_applied: counter!(ENTRIES_APPLIED),
            local_answers: counter!(LOCAL_ANSWERS),
            refused_proposals: counter!(REFUSED_PROPOSALS),
            held_proposals: counter!(HELD_PROPOSALS),
            sleeps: counter!(GROUP_SLEEPS),
            wakes: counter!(GROUP_WAKES),
            awake: gauge!(GROUPS_AWAKE),
            by_reference: counter!(ENTRIES_BY_REFERENCE),
            bodies_sync_seconds: histogram!(BODIES_SYNC_SECONDS),
        }
    }
}
