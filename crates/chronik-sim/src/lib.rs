//! Deterministic simulation of a Chronik cluster.
//!
//! A whole cluster runs in one process, on one thread: each node is the
//! product's own sans-IO Raft core ([`chronik_raft::RaftCore`]) with the
//! product's replicated broker state, and the simulation owns what lies
//! around them: a clock only it advances, a network that delays, drops,
//! duplicates and cuts ([`network`]), and a disk whose unsynced writes a
//! power loss takes back ([`disk`]). Every choice comes from one seed, so a
//! run replays exactly; clients ([`workload`]) produce, read and commit
//! offsets, and write and read transactions ([`transactions`]), while a nemesis ([`nemesis`]) injects faults and an admin moves
//! partitions between nodes ([`admin`], carried out by [`reconciler`]), and
//! [`checker`] holds the invariants the product promises.

pub mod admin;
pub mod checker;
pub mod disk;
pub mod history;
pub mod nemesis;
pub mod network;
pub mod node;
pub mod reconciler;
pub mod records;
pub mod simulation;
pub mod transactions;
pub mod unjudged;
pub mod workload;

pub use simulation::{Config, Report, run};
