//! Chronik's replicated state: what every replica builds, the same on all,
//! from the committed entries of its Raft groups.
//!
//! - [`metadata`]: the cluster's nodes, topics, partitions and configs (the
//!   metadata group), with its [`acl`]s and SASL [`users`];
//! - [`partition`]: a partition's log with its high watermark and apply
//!   checkpoint; [`producer_state`]: idempotent and transactional producers;
//! - [`consumer_offsets`]: committed offsets and group membership, kept as
//!   records of the internal `__consumer_offsets` topic;
//!   [`transaction_state`]: transactions' states, in `__transaction_state`;
//! - [`command`]: how partition entries are encoded;
//! - [`replicated`]: the state machine that applies entries to all of it,
//!   makes it durable and snapshots it;
//! - [`reconfigure`]: the next step that brings a group's Raft members to
//!   the replicas the metadata wants; [`placement`]: plans that even out
//!   replicas and leaders, or drain a node;
//! - [`version`]: the cluster's version, which kinds of entries its leaders
//!   may write.
//!
//! Nothing here speaks the Kafka protocol or the network: the front end
//! (chronik-broker) validates requests and proposes entries; a simulation
//! (chronik-sim) drives this state directly.

pub mod acl;
mod checkpointer;
pub mod command;
pub mod consumer_offsets;
pub mod leader_epochs;
pub mod metadata;
pub mod partition;
pub mod placement;
pub mod producer_state;
pub mod reconfigure;
pub mod replicated;
mod test_hooks;
pub mod topic_config;
pub mod transaction_state;
pub mod users;
pub mod version;

pub use checkpointer::CHECKPOINT_SECONDS;

/// Whether `topic` is one of the internal topics Chronik manages itself.
pub fn is_internal_topic(topic: &str) -> bool {
    topic == consumer_offsets::TOPIC || topic == transaction_state::TOPIC
}
