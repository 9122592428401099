//! Kafka request handling for Chronik.
//!
//! A [`Broker`] owns the node's replicated state and its Raft loop. The
//! [`server`] accepts Kafka connections; [`dispatch`] decodes each request and
//! hands it to the module in [`handlers`] for its API. Every write (produce,
//! topic and config changes, record deletion) is a proposal to a Raft group;
//! reads come from the applied state.

pub mod apis;
mod authenticate;
mod broker;
mod cleaner;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod conform;
pub mod coordination;
pub mod dispatch;
pub mod frame;
pub mod groups;
pub mod handlers;
pub mod ops;
mod retention;
pub mod security;
pub mod server;
mod splice;
pub mod txn;

pub use broker::{Broker, MetadataOutcome};
pub use cleaner::run_cleaner;
pub use config::BrokerConfig;
pub use retention::run_retention;
