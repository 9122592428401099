//! The free-space guard of a node's data directory.
//!
//! A disk that fills up mid-write leaves no good choice: the write fails and
//! the node must stop. So the node stops taking new data while it still has
//! room: below `min_free_bytes` it refuses produce requests (the broker asks
//! `check` on each) and, as a follower, appends carrying entries (the loop
//! asks once per batch of received messages), which leaves the partition's
//! other replicas to commit. Reads, heartbeats and small internal writes go
//! on. Space comes back through retention or deleted topics, and writes
//! resume as soon as it is above the threshold again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The default threshold: 5% of the volume, at most 256 MiB.
pub fn default_min_free_bytes(volume_bytes: u64) -> u64 {
    (volume_bytes / 20).min(256 << 20)
}

#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
    /// The volume's size, as of the start.
    total: u64,
}

impl DiskSpace {
    /// Watches the volume holding `dir`; `min_free` defaults from its size.
    pub fn new(dir: &Path, min_free: Option<u64>) -> std::io::Result<DiskSpace> {
        let (free, total) = measure(dir)?;
        let space = DiskSpace {
            dir: dir.to_path_buf(),
            min_free: min_free.unwrap_or_else(|| default_min_free_bytes(total)),
            free: AtomicU64::new(free),
            low: AtomicBool::new(false),
            total,
        };
        space.check();
        Ok(space)
    }

    /// Measures the free space now (one statvfs) and returns whether it is
    /// below the threshold. Logs when it crosses it, either way.
    pub fn check(&self) -> bool {
        let free = match measure(&self.dir) {
            Ok((free, _)) => free,
            // Not knowing is no reason to refuse writes; the write itself
            // will fail, and stop the node, if the disk is gone.
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot measure free space: {e}");
                return self.is_low();
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.min_free;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    dir = %self.dir.display(),
                    free,
                    min_free = self.min_free,
                    "free space is below --min-free-bytes: refusing produce requests and replicated appends \
                     until space is freed (delete topics or records, or lower retention); reads go on"
                );
            } else {
                tracing::info!(dir = %self.dir.display(), free, "free space is back above --min-free-bytes: taking writes again");
            }
        }
        low
    }

    /// Whether the last check found the free space below the threshold.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Room for small internal writes (consumer-group commits): half the
    /// threshold is kept for them.
    pub fn has_reserved_room(&self) -> bool {
        self.free.load(Ordering::Relaxed) >= self.min_free / 2
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free
    }
}

/// (free bytes for unprivileged writers, total bytes) of the volume of `dir`.
fn measure(dir: &Path) -> std::io::Result<(u64, u64)> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok((stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_five_percent_of_the_volume_at_most_256_mib() {
        assert_eq!(default_min_free_bytes(64 << 20), (64 << 20) / 20);
        assert_eq!(default_min_free_bytes(1 << 40), 256 << 20);
    }

    #[test]
    fn a_threshold_above_the_free_space_is_low() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = DiskSpace::new(dir.path(), Some(0)).unwrap();
        assert!(!roomy.check());
        let tight = DiskSpace::new(dir.path(), Some(u64::MAX)).unwrap();
        assert!(tight.check() && tight.is_low());
        assert!(tight.free_bytes() > 0 && !tight.has_reserved_room());
    }
}
