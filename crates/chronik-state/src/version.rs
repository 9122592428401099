//! The cluster's version, Kafka's feature level `chronik.version` (KIP-584):
//! which kinds of Raft entries its leaders may write.
//!
//! A build reads every level up to its own newest. The cluster moves up only
//! when an operator asks and every member answers that it reads the new
//! level, so during a rolling upgrade no replica meets an entry it cannot
//! apply: a replica that refused one its peers applied would give the same
//! records other offsets. Levels never go down, since entries of the higher
//! level may already be in the logs.

use serde::{Deserialize, Serialize};

/// The feature's name in ApiVersions and UpdateFeatures.
pub const FEATURE: &str = "chronik.version";
/// Entries as first built: the offsets of a batch are assigned at apply.
/// A cluster formed before the version existed is at this level.
pub const FIRST: i16 = 1;
/// Leaders write the offsets they assign into produce entries and
/// transaction markers (`AssignedProduce`, `AssignedTxnMarker`).
pub const ASSIGNED_OFFSETS: i16 = 2;
/// Data partitions write each batch once: into their segments when its
/// entry is appended, with the Raft log keeping a reference to it
/// (`replicated::bodies`). Raft logs then hold entries an older build reads
/// as empty.
pub const ONE_WRITE: i16 = 3;
/// The newest level this build reads and writes; new clusters start at it.
pub const NEWEST: i16 = ONE_WRITE;

/// The level a cluster runs at, and the metadata index that set it (Kafka's
/// finalized-features epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterVersion {
    pub level: i16,
    pub epoch: u64,
}

/// For metadata commands written before the version existed.
pub fn first() -> i16 {
    FIRST
}

/// Why a level is not one a cluster can run at, if it is not.
pub fn check_level(level: i16) -> Result<(), String> {
    if level < FIRST {
        return Err(format!("{FEATURE} levels start at {FIRST}, not {level}"));
    }
    Ok(())
}

/// Why this build cannot take part in a cluster at `level`, if it cannot.
pub fn check_readable(level: i16) -> Result<(), String> {
    if level > NEWEST {
        return Err(format!(
            "the cluster runs at {FEATURE} {level}, and this build reads up to {NEWEST}: run a newer build on this node"
        ));
    }
    Ok(())
}
