//! Snapshots: how a follower behind the leader's compacted Raft log gets the
//! group's state instead of the entries.
//!
//! The Raft snapshot message carries only a [`SnapshotManifest`]: the state
//! machine's small state plus the list of files that hold the rest (for a
//! partition, its segments). The transport streams those files in chunks
//! next to the message, into a staging directory on the follower, and hands
//! the message to the follower's loop once every file has arrived.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::GroupId;

/// Bytes of file data per `InstallSnapshot` chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Name inside the staging directory; a plain file name.
    pub name: String,
    /// Where the leader reads it from.
    pub path: PathBuf,
    /// Bytes to send: files may grow after the snapshot is taken.
    pub len: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub files: Vec<SnapshotFile>,
    /// The state machine's own description of the state, opaque here.
    pub state: Vec<u8>,
}

impl SnapshotManifest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifests serialize")
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let manifest: SnapshotManifest = serde_json::from_slice(bytes).ok()?;
        manifest
            .files
            .iter()
            .all(|f| is_plain_file_name(&f.name))
            .then_some(manifest)
    }
}

/// A file name that cannot escape the staging directory.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Where the files of the snapshot of `group` at `index` are staged.
pub fn staging_dir(root: &Path, group: GroupId, index: u64) -> PathBuf {
    root.join(format!("g{group}-i{index}"))
}

/// Deletes the staged snapshots of `group` at indexes up to `installed`: a
/// newer one may still be arriving, and is the one the leader will send.
pub(crate) fn discard_staged(root: &Path, group: GroupId, installed: u64) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((staged_group, index)) = parse_staged_name(&name.to_string_lossy()) else {
            continue;
        };
        if staged_group == group && index <= installed {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The group and index of a staging directory (`g<group>-i<index>`, with
/// an optional extension while it is being received).
fn parse_staged_name(name: &str) -> Option<(GroupId, u64)> {
    let rest = name.strip_prefix('g')?;
    let (group, rest) = rest.split_once("-i")?;
    let index = rest.split('.').next()?;
    Some((group.parse().ok()?, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discards_only_snapshots_up_to_the_installed_index() {
        let root = tempfile::tempdir().unwrap();
        for name in ["g3-i10", "g3-i20.partial", "g3-i30", "g4-i10", "g31-i5"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
        }
        discard_staged(root.path(), 3, 20);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["g3-i30", "g31-i5", "g4-i10"]);
    }
}
