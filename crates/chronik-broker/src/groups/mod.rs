//! Consumer groups: membership (the classic rebalance protocol) and the
//! coordinator that keeps groups and their offsets.

pub mod coordinator;
pub mod membership;
pub mod registry;
