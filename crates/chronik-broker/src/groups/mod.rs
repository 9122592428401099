//! Consumer groups: membership under the classic rebalance protocol and
//! under the consumer group protocol (KIP-848, with its server-side
//! assignors), and the coordinator that keeps groups and their offsets.

pub mod assignor;
pub mod consumer_group;
pub mod coordinator;
pub mod membership;
pub mod registry;
