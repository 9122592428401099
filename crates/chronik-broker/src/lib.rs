//! Kafka request handling for Chronik.
//!
//! A [`Broker`] owns the node's replicated state and its Raft loop. The
//! [`server`] accepts Kafka connections; [`dispatch`] decodes each request and
//! hands it to the module in [`handlers`] for its API. Every write (produce,
//! topic and config changes, record deletion) is a proposal to a Raft group;
//! reads come from the applied state.

mod broker;
mod checkpointer;
pub mod cluster;
pub mod command;
pub mod config;
pub mod consumer_offsets;
pub mod dispatch;
pub mod groups;
pub mod handlers;
pub mod metadata;
pub mod partition;
pub mod producer_state;
pub mod replicated;
mod retention;
pub mod server;
mod test_hooks;
pub mod topic_config;

pub use broker::{Broker, MetadataOutcome};
pub use config::BrokerConfig;
pub use retention::run_retention;
