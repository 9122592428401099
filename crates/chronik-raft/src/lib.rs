//! Multi-Raft for Chronik.
//!
//! Every partition of every topic, and the cluster metadata, is its own
//! raft-rs group. A sans-IO [`RaftCore`] holds all groups of a node and is
//! driven with the time and its inputs; [`MultiRaft`] runs it on a loop
//! thread with the wall clock (the shell), and a simulation can drive it
//! with its own clock, network and disk. Together:
//!
//! - proposals arrive on a bounded channel and are answered through a oneshot
//!   once the entry is committed and applied, so no caller blocks on consensus
//!   and many proposals are in flight per group;
//! - every iteration collects each group's `Ready`, writes all new entries and
//!   hard states of all groups to one raft-engine instance in one `LogBatch`
//!   with one fsync (group commit), then applies committed entries;
//! - messages to peers are collected per destination node and handed to a
//!   [`Transport`] once per iteration ([`grpc`] carries them over tonic);
//! - a follower behind the leader's compacted log gets a snapshot: the files
//!   the state machine names, streamed in chunks ([`snapshot`]);
//! - what "apply" means is the caller's business: it implements
//!   [`StateMachine`].

mod config;
mod core;
mod disk_space;
mod error;
mod fail_stop;
pub mod grpc;
mod liveness;
mod log_files;
mod logger;
mod mailbox;
mod membership;
mod multi_raft;
mod shell;
mod signals;
pub mod snapshot;
mod state_machine;
mod status;
mod storage;
pub mod telemetry;
mod term_runs;
mod transport;

pub use config::{MultiRaftConfig, PlantedBug};
pub use core::{RaftCore, Reply};
pub use disk_space::{DiskSpace, default_min_free_bytes};
pub use error::{ProposeError, StartError};
pub use fail_stop::{IO_ERROR_EXIT_CODE, fail_stop};
pub use mailbox::Mailbox;
pub use membership::MembershipChange;
pub use multi_raft::MultiRaft;
pub use shell::LoopPulse;
pub use snapshot::{SnapshotFile, SnapshotManifest};
pub use state_machine::{Appending, Bodies, Body, Effect, Prediction, Proposed, StateMachine};
pub use status::{GroupReport, GroupStatus, StatusBoard};
pub use transport::{NoPeers, SharedTransport, SnapshotDone, Transport};

/// Identifies one Raft group on a node. Group 0 is the metadata group.
pub type GroupId = u64;

/// Identifies a node; the same number is its Raft peer id and Kafka broker id.
pub type NodeId = u64;

/// The group that replicates cluster metadata.
pub const METADATA_GROUP: GroupId = 0;
