//! One partition as the request handlers see it: its log, and a signal that
//! fires when its high watermark moves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use chronik_log::compaction::CleanStats;
use chronik_log::{LogConfig, PartitionLog};
use chronik_raft::{GroupId, fail_stop};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::leader_epochs::LeaderEpochs;
use crate::producer_state::ProducerStates;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub group: GroupId,
    dir: PathBuf,
    log: RwLock<PartitionLog>,
    /// The high watermark: every record below it is committed and applied.
    high_watermark: watch::Sender<i64>,
    /// Where each leader epoch's batches start; changed by apply only.
    leader_epochs: RwLock<LeaderEpochs>,
    /// The idempotent producers' state; changed by apply only.
    producers: RwLock<ProducerStates>,
    /// Set once another `Partition` (a restored snapshot) or nothing (a
    /// deleted topic) owns the directory; checkpoints of this one must not
    /// be written there any more. Held while a checkpoint is written, and
    /// while the cleaner installs a pass.
    retired: std::sync::Mutex<bool>,
    /// Held while closed segment files are replaced or deleted (the
    /// cleaner's swap, retention, record deletion) or linked for a
    /// snapshot, so that each sees the files the log in memory names.
    /// Taken before the log's lock; apply only ever tries it.
    layout: std::sync::Mutex<()>,
    /// The high watermark of the last saved apply checkpoint: a restart
    /// replays the Raft log from there, reading records after it, so the
    /// cleaner, retention and record deletion stay below it.
    durable_end: AtomicI64,
    /// The log end up to which the segments are known durable, set where
    /// the Raft loop fsyncs them (at open and for one write per record).
    synced_end: AtomicI64,
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
            leader_epochs: RwLock::default(),
            producers: RwLock::default(),
            retired: std::sync::Mutex::new(false),
            layout: std::sync::Mutex::new(()),
            durable_end: AtomicI64::new(0),
            synced_end: AtomicI64::new(0),
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

    pub fn leader_epochs(&self) -> RwLockReadGuard<'_, LeaderEpochs> {
        self.leader_epochs.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the epochs of a checkpoint, less those past the high
    /// watermark (applied again from the Raft log).
    pub(crate) fn restore_leader_epochs(&self, mut epochs: LeaderEpochs) {
        epochs.truncate_to(self.high_watermark());
        *self.leader_epochs_mut() = epochs;
    }

    pub fn producers(&self) -> RwLockReadGuard<'_, ProducerStates> {
        self.producers.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn producers_mut(&self) -> RwLockWriteGuard<'_, ProducerStates> {
        self.producers.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn leader_epochs_mut(&self) -> RwLockWriteGuard<'_, LeaderEpochs> {
        self.leader_epochs.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// The last stable offset: the first offset of the earliest open
    /// transaction, or the high watermark. read_committed consumers read
    /// below it.
    pub fn last_stable_offset(&self) -> i64 {
        // The high watermark first: apply moves it after the producer state.
        let high_watermark = self.high_watermark();
        self.producers()
            .first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// A receiver that wakes when the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Saves `checkpoint` in the partition's directory unless the partition
    /// was retired; returns whether it did.
    pub fn save_checkpoint(&self, checkpoint: &ApplyCheckpoint) -> std::io::Result<bool> {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if *retired {
            return Ok(false);
        }
        checkpoint.save(&self.dir)?;
        self.set_durable_end(checkpoint.next_offset);
        Ok(true)
    }

    /// The high watermark of the last saved apply checkpoint.
    pub(crate) fn durable_end(&self) -> i64 {
        self.durable_end.load(Ordering::Acquire)
    }

    /// Records that the log is durable up to `offset` (its checkpoint's end).
    pub(crate) fn set_durable_end(&self, offset: i64) {
        self.durable_end.store(offset, Ordering::Release);
    }

    /// The log end up to which the segments are known durable.
    pub fn synced_end(&self) -> i64 {
        self.synced_end.load(Ordering::Acquire)
    }

    /// Records that the segments were fsynced with the log ending at `end`.
    pub(crate) fn note_synced(&self, end: i64) {
        self.synced_end.fetch_max(end, Ordering::AcqRel);
    }

    /// Cuts the log back to `offset`, above the high watermark only: the
    /// records past it are no committed entry's. An error stops the process,
    /// since the cut may be half done.
    pub(crate) fn cut_tail(&self, log: &mut PartitionLog, offset: i64) {
        assert!(
            offset >= self.high_watermark(),
            "{}-{}: committed records are never cut",
            self.topic,
            self.index
        );
        if log.next_offset() == offset {
            return;
        }
        if let Err(e) = log.truncate_to(offset) {
            fail_stop(&format!("cannot cut the log of {}-{}", self.topic, self.index), &e);
        }
        self.synced_end.fetch_min(offset, Ordering::AcqRel);
    }

    /// One cleaner pass (see `chronik_log::compaction`), below the data
    /// that is durable and outside open transactions, dropping aborted
    /// transactions' records. The log's lock is taken only without I/O:
    /// shared to plan and to check the swap, exclusive to put the new
    /// segments in place in memory; from the check to the end the layout
    /// lock keeps retention, record deletion and snapshots off the segment
    /// files.
    /// `None` if there was nothing to do or the segments changed
    /// meanwhile. An error while staging drops the pass; one while
    /// swapping stops the process, since the swap may be half done on
    /// disk (the next start finishes it).
    pub fn clean(&self, now_ms: i64) -> Result<Option<CleanStats>, chronik_log::LogError> {
        // Strictly below: a cut past the high watermark at a segment's
        // base makes the sealed segment before it active again, and the
        // cleaner must never be replacing that one.
        let stable_end = (self.durable_end().min(self.last_stable_offset()) - 1).max(0);
        let Some(plan) = self.log().plan_cleaning(now_ms, stable_end)? else {
            return Ok(None);
        };
        let plan = plan.dropping_aborted(self.producers().aborted());
        tracing::info!(topic = %self.topic, partition = self.index, segments = plan.segments(), "compacting");
        let cleaned = plan.clean(now_ms)?;
        let mut stats = cleaned.stats;
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if *retired {
            return Ok(None);
        }
        let layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let checked = self.log().check_swap(cleaned);
        let swap = match checked {
            Ok(swap) => swap,
            Err(cleaned) => {
                cleaned.discard()?;
                return Ok(None);
            }
        };
        tracing::info!(topic = %self.topic, partition = self.index, "installing compacted segments");
        let fail = |e: chronik_log::LogError| -> ! {
            fail_stop(
                &format!("cannot install the compacted segments of {}", self.dir.display()),
                &e,
            )
        };
        let swapped = swap.swap_on_disk().unwrap_or_else(|e| fail(e));
        let mut log = self.log_mut();
        let locked = std::time::Instant::now();
        let installed = log.install_swapped(swapped);
        stats.locked = locked.elapsed();
        drop(log);
        installed.finish().unwrap_or_else(|e| fail(e));
        drop(layout);
        drop(retired);
        Ok(Some(stats))
    }

    /// Retention (see `PartitionLog::enforce_retention`), then the segments
    /// record deletion left below the log start; returns how many segments
    /// went.
    /// Both stay below the last checkpoint, whose replay reads what follows.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, chronik_log::LogError> {
        let _layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let durable_end = self.durable_end();
        let mut log = self.log_mut();
        let expired = log.enforce_retention(now_ms, durable_end)?;
        Ok(expired + log.delete_segments_below(durable_end)?)
    }

    /// Moves the log start for DeleteRecords, at apply, with the log held.
    /// The segments below it and the last checkpoint are deleted now unless
    /// the cleaner is swapping segments; retention deletes the rest later.
    pub(crate) fn delete_records_before(
        &self,
        log: &mut PartitionLog,
        offset: i64,
    ) -> Result<i64, chronik_log::LogError> {
        let start = log.advance_log_start(offset)?;
        if let Ok(_layout) = self.layout.try_lock() {
            log.delete_segments_below(self.durable_end())?;
        }
        Ok(start)
    }

    /// The layout lock, if free: a snapshot links the segment files only
    /// while nothing replaces or deletes them.
    pub(crate) fn try_layout(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.layout.try_lock().ok()
    }

    /// Stops checkpoints of this partition object; waits for one being written.
    pub fn retire(&self) {
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// CRC32C over every batch up to the high watermark: its base offset,
    /// then its bytes as stored. Replicas holding the same records at the
    /// same offsets give the same value.
    pub fn checksum(&self) -> Result<u32, chronik_log::LogError> {
        let end = self.high_watermark();
        let mut offset = self.log().log_start_offset();
        let mut crc = 0u32;
        while offset < end {
            let batches = self.log().read(offset, 1 << 20)?;
            let ranges = chronik_log::split_batches(&batches)?;
            let mut advanced = false;
            for range in ranges {
                let batch = &batches[range];
                let header = chronik_log::parse_header(batch)?;
                if header.base_offset >= end {
                    return Ok(crc);
                }
                crc = crc32c::crc32c_append(crc, &header.base_offset.to_be_bytes());
                crc = crc32c::crc32c_append(crc, batch);
                offset = header.last_offset() + 1;
                advanced = true;
            }
            if !advanced {
                break;
            }
        }
        Ok(crc)
    }

    pub(crate) fn publish_high_watermark(&self, offset: i64) {
        self.high_watermark.send_replace(offset);
    }
}

/// The partition's applied state as of a Raft index: the high watermark
/// and the producer state. Written after the log is flushed; at startup the
/// Raft log replays what followed, finding in the log what is already there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCheckpoint {
    pub index: u64,
    pub next_offset: i64,
    pub producers: ProducerStates,
    /// Absent in checkpoints written before epochs were kept.
    #[serde(default)]
    pub leader_epochs: LeaderEpochs,
}

const CHECKPOINT_FILE: &str = "apply-checkpoint.json";

impl ApplyCheckpoint {
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        match std::fs::read(dir.join(CHECKPOINT_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::other(format!("apply checkpoint in {} is corrupt: {e}", dir.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ApplyCheckpoint::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves atomically: a crash leaves the old or the new checkpoint.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(tmp, dir.join(CHECKPOINT_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}
