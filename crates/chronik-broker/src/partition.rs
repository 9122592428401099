//! One partition as the request handlers see it: its log, and a signal that
//! fires when its high watermark moves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use chronik_log::{LogConfig, PartitionLog};
use chronik_raft::GroupId;
use tokio::sync::watch;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub group: GroupId,
    dir: PathBuf,
    log: RwLock<PartitionLog>,
    /// The high watermark: every record below it is committed and applied.
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    pub fn open(
        topic: &str,
        index: i32,
        group: GroupId,
        dir: PathBuf,
        config: LogConfig,
    ) -> Result<Self, chronik_log::LogError> {
        let log = PartitionLog::open(&dir, config)?;
        let (high_watermark, _) = watch::channel(log.next_offset());
        Ok(Partition {
            topic: topic.to_string(),
            index,
            group,
            dir,
            log: RwLock::new(log),
            high_watermark,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> RwLockReadGuard<'_, PartitionLog> {
        self.log.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log_mut(&self) -> RwLockWriteGuard<'_, PartitionLog> {
        self.log.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that wakes when the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub(crate) fn publish_high_watermark(&self, offset: i64) {
        self.high_watermark.send_replace(offset);
    }
}

/// The Raft index up to which a partition log holds applied entries, and the
/// log end offset at that index. Written after the log is flushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyCheckpoint {
    pub index: u64,
    pub next_offset: i64,
}

const CHECKPOINT_FILE: &str = "raft-applied";

impl ApplyCheckpoint {
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        match std::fs::read(dir.join(CHECKPOINT_FILE)) {
            Ok(bytes) if bytes.len() == 20 => {
                let crc = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
                if crc32c::crc32c(&bytes[..16]) != crc {
                    return Err(std::io::Error::other("apply checkpoint is corrupt"));
                }
                Ok(ApplyCheckpoint {
                    index: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
                    next_offset: i64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
                })
            }
            Ok(_) => Err(std::io::Error::other("apply checkpoint has the wrong size")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ApplyCheckpoint::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(20);
        bytes.extend_from_slice(&self.index.to_be_bytes());
        bytes.extend_from_slice(&self.next_offset.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(tmp, dir.join(CHECKPOINT_FILE))
    }
}
