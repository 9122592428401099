//! The node id a data directory belongs to. Raft state is only valid for the
//! node that wrote it, so a restart with another id is refused.

use std::path::Path;

use anyhow::{Context, bail};
use chronik_raft::NodeId;

const FILE_NAME: &str = "node-id";

pub fn check_node_id(data_dir: &Path, node_id: NodeId) -> anyhow::Result<()> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: NodeId = text
                .trim()
                .parse()
                .with_context(|| format!("{} is corrupt: '{}'", path.display(), text.trim()))?;
            if stored != node_id {
                bail!(
                    "the data directory {} belongs to node {stored}, not node {node_id}; \
                     start with --node-id {stored} or use another --data-dir",
                    data_dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{node_id}\n")).with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

const REMOVED_FILE_NAME: &str = "removed";

/// Marks the data directory as that of a node removed from its cluster, so
/// that starting it again is refused instead of rejoining with stale state.
pub fn mark_removed(data_dir: &Path, cluster_id: &str) -> std::io::Result<()> {
    let path = data_dir.join(REMOVED_FILE_NAME);
    std::fs::write(&path, format!("{cluster_id}\n"))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Refuses to start a node that was removed from its cluster.
pub fn check_not_removed(data_dir: &Path, node_id: NodeId) -> anyhow::Result<()> {
    match std::fs::read_to_string(data_dir.join(REMOVED_FILE_NAME)) {
        Ok(cluster) => bail!(
            "node {node_id} was removed from cluster '{}'; its data directory {} is of no use now. \
             To add it again, start it with an empty --data-dir and --join, then run `cluster add-node`",
            cluster.trim(),
            data_dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", data_dir.join(REMOVED_FILE_NAME).display())),
    }
}
