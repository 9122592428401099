//! Transactions (KIP-98): the coordinator of transactional ids
//! ([`coordinator`]) and the markers it has written into the partitions a
//! transaction touched ([`markers`]). What a partition keeps of them (open
//! transactions, the last stable offset, aborted transactions) is part of
//! its replicated producer state (`chronik_state::producer_state`).

pub mod coordinator;
pub mod markers;

pub use coordinator::TxnLocks;
