//! The partition log: an ordered run of segments, the last one active.
//!
//! Offsets are assigned here, contiguously: each appended batch gets
//! `next_offset()` as its base offset. Reads take `&self` and use positioned
//! reads, so they can run concurrently under a shared lock while appends,
//! deletions and retention take `&mut self`.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{BatchHeader, check_appendable, set_base_offset};
use crate::checkpoint;
use crate::error::LogError;
use crate::recovery;
use crate::segment::{MAX_SEGMENT_BYTES, Segment, sync_dir};
use crate::stored::StoredBatches;

use crate::config::LogConfig;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Byte position of the batch within its segment file.
    pub position: u64,
    /// The batch's header as stored, checked (CRC included).
    pub header: BatchHeader,
}

pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is active.
    segments: Vec<Segment>,
    log_start_offset: i64,
    next_offset: i64,
    /// Where the cleaner's last pass ended (see `compaction`).
    cleaner_offset: i64,
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir`, recovering from a crash
    /// if needed: see the `recovery` module.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        let recovered = recovery::recover(dir, &config)?;
        let log = Self {
            dir: dir.to_path_buf(),
            config,
            segments: recovered.segments,
            log_start_offset: recovered.log_start_offset,
            next_offset: recovered.next_offset,
            cleaner_offset: checkpoint::read(dir, checkpoint::CLEANER)?.unwrap_or(0),
        };
        log.check_invariants();
        Ok(log)
    }

    /// Appends one v2 batch, rewriting its base offset to `next_offset()`.
    /// The data is written straight to the file (readable at once) but is
    /// only durable after [`flush`](Self::flush).
    pub fn append(&mut self, batch: &mut [u8]) -> Result<AppendInfo, LogError> {
        let header = check_appendable(batch)?;
        set_base_offset(batch, self.next_offset);
        self.write_batch(batch, header)
    }

    /// Appends one v2 batch whose base offset is already `next_offset()`
    /// (its leader assigned it), as it is, without a copy to rewrite it.
    pub fn append_assigned(&mut self, batch: &[u8]) -> Result<AppendInfo, LogError> {
        let header = check_appendable(batch)?;
        if header.base_offset != self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: header.base_offset,
                start: self.log_start_offset,
                end: self.next_offset,
            });
        }
        self.write_batch(batch, header)
    }

    /// Writes `batch`, whose base offset is `next_offset()`, checked as `header`.
    fn write_batch(&mut self, batch: &[u8], header: BatchHeader) -> Result<AppendInfo, LogError> {
        let base_offset = self.next_offset;
        // The last offset must leave room for next_offset = last + 1.
        let last_offset = base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .filter(|&last| last < i64::MAX)
            .ok_or(LogError::OffsetOverflow {
                next_offset: base_offset,
            })?;
        if self.should_roll(batch.len(), last_offset) {
            self.roll()?;
        }
        let header = BatchHeader { base_offset, ..header };
        let interval = self.config.index_interval_bytes;
        let position = self.active_mut().append(batch, &header, interval)?;
        self.next_offset = last_offset + 1;
        self.check_invariants();
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            position,
            header,
        })
    }

    /// Fsyncs the active segment's data and writes out its pending index
    /// entries (not fsynced: recovery rebuilds the active segment's indexes).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active_mut().flush()?;
        Ok(())
    }

    /// Writes the active segment's new index entries (without fsync) and
    /// returns a handle to its file, so the caller can fsync the data
    /// appended so far without holding the log. Sealed segments were
    /// fsynced when they rolled.
    pub fn sync_handle(&mut self) -> Result<std::fs::File, LogError> {
        let active = self.active_mut();
        active.persist_indexes()?;
        Ok(active.file().try_clone()?)
    }

    /// Whole batches starting with the one containing `offset`, up to
    /// `max_bytes` in total but always at least one batch if
    /// `offset < next_offset()`. Empty at `next_offset()`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        self.read_within(offset, max_bytes, true)
    }

    /// Like `read`, but with `first_may_exceed` false it returns only whole
    /// batches that fit in `max_bytes`, possibly none: a Fetch response may
    /// overrun its limit only with the first batch it carries.
    pub fn read_within(&self, offset: i64, max_bytes: usize, first_may_exceed: bool) -> Result<Bytes, LogError> {
        Ok(self.stored_within(offset, max_bytes, first_may_exceed)?.read()?)
    }

    /// Where the batches `read_within` would return are stored, with their
    /// headers, without reading their records.
    pub fn stored_within(
        &self,
        offset: i64,
        max_bytes: usize,
        first_may_exceed: bool,
    ) -> Result<StoredBatches, LogError> {
        self.check_range(offset)?;
        self.stored_from(offset, max_bytes, first_may_exceed)
    }

    /// Like `stored_within` with the first batch always included, also
    /// below the log start, as far as the segments still hold records
    /// deleted there: a replay reads what it applied before.
    pub fn stored_regardless_of_start(&self, offset: i64, max_bytes: usize) -> Result<StoredBatches, LogError> {
        if offset < self.segments[0].base_offset() || offset > self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.segments[0].base_offset(),
                end: self.next_offset,
            });
        }
        self.stored_from(offset, max_bytes, true)
    }

    fn stored_from(&self, offset: i64, max_bytes: usize, first_may_exceed: bool) -> Result<StoredBatches, LogError> {
        let mut stored = StoredBatches::default();
        if offset == self.next_offset {
            return Ok(stored);
        }
        let Some((mut index, mut position, _)) = self.locate(offset)? else {
            return Ok(stored);
        };
        loop {
            let segment = &self.segments[index];
            let budget = max_bytes.saturating_sub(stored.len()) as u64;
            let (headers, segment_done) =
                segment.batch_headers(position, budget, first_may_exceed && stored.is_empty())?;
            stored.push(segment.shared_file(), position, headers);
            index += 1;
            if !segment_done || index == self.segments.len() {
                break;
            }
            position = 0;
        }
        Ok(stored)
    }

    /// The segment files that reproduce this log as it is now, each with the
    /// bytes to copy (the active one keeps growing). Indexes are left out:
    /// opening the copy rebuilds them. Call after `flush`.
    pub fn segment_files(&self) -> Vec<(PathBuf, u64)> {
        self.segments
            .iter()
            .map(|s| (s.log_path().to_path_buf(), s.size()))
            .collect()
    }

    /// `segment_files` up to `end`, a batch boundary (the high watermark):
    /// the bytes after it may still be cut.
    pub fn segment_files_below(&self, end: i64) -> Result<Vec<(PathBuf, u64)>, LogError> {
        if end >= self.next_offset {
            return Ok(self.segment_files());
        }
        let (keep, position) = self.cut_point(end)?;
        let mut files = self.segment_files();
        files.truncate(keep + 1);
        files[keep].1 = position;
        Ok(files)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The log end offset: the offset the next appended record will get.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of batch data in all segments (indexes not counted).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// The first batch at or after the log start whose max timestamp is at
    /// least `timestamp`, with its base offset.
    pub fn batch_at_timestamp(&self, timestamp: i64) -> Result<Option<(i64, Bytes)>, LogError> {
        for segment in &self.segments {
            if segment.max_timestamp().is_none_or(|(max, _)| max < timestamp) {
                continue;
            }
            if let Some((position, header)) = segment.locate_timestamp(timestamp, self.log_start_offset)? {
                let batch = segment.read_exact(position, header.total_len())?;
                return Ok(Some((header.base_offset, Bytes::from(batch))));
            }
        }
        Ok(None)
    }

    /// The largest batch max timestamp and the base offset of the first
    /// batch holding it. Like Kafka it works per segment, so it may name a
    /// batch below the log start if that batch's segment is still kept.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .filter_map(Segment::max_timestamp)
            .fold(None, |best, candidate| match best {
                Some(best) if best.0 >= candidate.0 => Some(best),
                _ => Some(candidate),
            })
    }

    /// Moves the log start forward to `min(offset, next_offset())` (never
    /// backwards), persists it and deletes segments wholly below it.
    /// Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let start = self.advance_log_start(offset)?;
        self.delete_segments_below(i64::MAX)?;
        Ok(start)
    }

    /// Moves the log start forward to `min(offset, next_offset())` (never
    /// backwards) and persists it; the segments below it stay until
    /// [`PartitionLog::delete_segments_below`]. Returns the new log
    /// start offset.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<i64, LogError> {
        let target = offset.min(self.next_offset);
        if target <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.set_log_start_offset(target)?;
        if self.active().size() > 0 && self.next_offset <= self.log_start_offset {
            // Everything is deleted: roll so the old active segment can go too.
            self.roll()?;
        }
        Ok(self.log_start_offset)
    }

    /// Deletes the segments wholly below both the log start offset and
    /// `end`; returns how many.
    pub fn delete_segments_below(&mut self, end: i64) -> Result<usize, LogError> {
        let below = self.segments_below(self.log_start_offset.min(end));
        self.delete_oldest(below)?;
        self.check_invariants();
        Ok(below)
    }

    /// Drops every batch at or after `offset`, so that `next_offset() == offset`
    /// afterwards. Used to cut batches past the high watermark that no
    /// committed entry holds, and to cut a restored snapshot back to its
    /// checkpoint.
    ///
    /// Within the log `offset` must be where a stored batch starts. Below
    /// the log start everything goes and the log restarts empty at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset > self.next_offset {
            return Err(LogError::ShorterThanCheckpoint {
                offset,
                end: self.next_offset,
            });
        }
        if offset == self.next_offset {
            return Ok(());
        }
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.next_offset,
            });
        }
        if offset < self.log_start_offset {
            return self.reset_to(offset);
        }
        let (keep, position) = self.cut_point(offset)?;
        if keep + 1 < self.segments.len() {
            // Newest first: a crash part way leaves a longer log, not a gap.
            for segment in self.segments.drain(keep + 1..).rev() {
                segment.delete(&self.dir)?;
            }
            sync_dir(&self.dir)?;
        }
        self.active_mut().truncate_batches(position, offset)?;
        tracing::info!(dir = %self.dir.display(), from = self.next_offset, to = offset, "truncated log");
        self.next_offset = offset;
        self.check_invariants();
        Ok(())
    }

    /// Applies time and size retention to closed segments, oldest first
    /// (Kafka semantics), and returns how many segments were deleted. Only
    /// segments wholly below `end` go: the caller may still need the
    /// records after it (see `chronik_state::Partition::enforce_retention`).
    pub fn enforce_retention(&mut self, now_ms: i64, end: i64) -> Result<usize, LogError> {
        let mut count = 0;
        if let Some(retention_ms) = self.config.retention_ms.filter(|&ms| ms >= 0) {
            let cutoff = now_ms.saturating_sub(retention_ms);
            let expired = |s: &Segment| s.max_timestamp().is_none_or(|(max, _)| max < cutoff);
            let closed = &self.segments[..self.segments.len() - 1];
            count = closed.iter().take_while(|s| expired(s)).count();
            if count == closed.len() && self.active().size() > 0 && self.next_offset <= end && expired(self.active()) {
                // Like Kafka: roll so an expired active segment can be deleted.
                self.roll()?;
                count += 1;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let closed = self.segments.len() - 1;
            let deleted: u64 = self.segments[..count].iter().map(Segment::size).sum();
            let mut size = self.size_bytes() - deleted;
            while count < closed && size - self.segments[count].size() >= retention_bytes {
                size -= self.segments[count].size();
                count += 1;
            }
        }
        count = count.min(self.segments_below(end));
        if count == 0 {
            return Ok(0);
        }
        let start = self.segments[count].base_offset().max(self.log_start_offset);
        if start != self.log_start_offset {
            self.set_log_start_offset(start)?;
        }
        self.delete_oldest(count)?;
        self.check_invariants();
        Ok(count)
    }

    /// Takes effect from the next append or retention run.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Closes the log and deletes its directory.
    pub fn remove(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(dir)?;
        Ok(())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub(crate) fn cleaner_offset(&self) -> i64 {
        self.cleaner_offset
    }

    pub(crate) fn set_cleaner_offset(&mut self, offset: i64) {
        self.cleaner_offset = offset;
    }

    /// The base offset of the segment after the one based at `base`.
    pub(crate) fn next_base_after(&self, base: i64) -> i64 {
        let index = self.segments.partition_point(|s| s.base_offset() <= base);
        self.segments.get(index).map_or(self.next_offset, Segment::base_offset)
    }

    /// Puts `segment` in place of the `count` closed segments starting at
    /// the one based at `base` (it holds what is left of their records),
    /// and returns those.
    pub(crate) fn replace_segments(&mut self, base: i64, count: usize, segment: Segment) -> Vec<Segment> {
        let first = self.segments.partition_point(|s| s.base_offset() < base);
        assert!(
            first + count < self.segments.len() && self.segments[first].base_offset() == base,
            "a cleaned segment replaces closed segments the log holds"
        );
        debug_assert_eq!(segment.base_offset(), base);
        let replaced = self.segments.splice(first..first + count, [segment]).collect();
        self.check_invariants();
        replaced
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    fn should_roll(&self, batch_len: usize, last_offset: i64) -> bool {
        let active = self.active();
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        // An empty active segment starts at next_offset, so any batch fits it.
        debug_assert!(active.size() > 0 || active.fits_offset(last_offset));
        active.size() > 0 && (active.size() + batch_len as u64 > limit || !active.fits_offset(last_offset))
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self) -> Result<(), LogError> {
        debug_assert!(self.active().size() > 0);
        self.active_mut().seal()?;
        let segment = Segment::create(&self.dir, self.next_offset)?;
        sync_dir(&self.dir)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = self.next_offset, "rolled segment");
        self.segments.push(segment);
        Ok(())
    }

    /// Persists before updating memory, so a failure changes nothing.
    fn set_log_start_offset(&mut self, start: i64) -> Result<(), LogError> {
        debug_assert!(start >= self.log_start_offset && start <= self.next_offset);
        checkpoint::write(&self.dir, checkpoint::LOG_START, start)?;
        self.log_start_offset = start;
        Ok(())
    }

    /// The segment that ends the log after cutting at `offset`, and where
    /// to cut it. Like a log that never received the dropped batches, the
    /// segment `offset` would start is not kept empty if its predecessor
    /// ends at `offset` (which a segment damaged at its end may not).
    fn cut_point(&self, offset: i64) -> Result<(usize, u64), LogError> {
        let index = self.segments.partition_point(|s| s.base_offset() <= offset) - 1;
        let position = match self.segments[index].locate_offset(offset)? {
            Some((position, header)) if header.base_offset == offset => position,
            _ => return Err(LogError::NotBatchBoundary { offset }),
        };
        if position == 0 && index > 0 && self.segments[index - 1].ends_at(offset)? {
            return Ok((index - 1, self.segments[index - 1].size()));
        }
        Ok((index, position))
    }

    /// Replaces all segments with an empty one at `offset`, below the log
    /// start. The checkpoint moves back only after the segments are gone,
    /// so a crash never exposes records deleted before the old start.
    fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        debug_assert!(offset < self.log_start_offset);
        let segments = std::mem::take(&mut self.segments);
        let recovered = recovery::empty_log(&self.dir, segments, offset)?;
        self.segments = recovered.segments;
        self.log_start_offset = recovered.log_start_offset;
        self.next_offset = recovered.next_offset;
        checkpoint::write(&self.dir, checkpoint::LOG_START, offset)?;
        if self.cleaner_offset > offset {
            checkpoint::write(&self.dir, checkpoint::CLEANER, offset)?;
            self.cleaner_offset = offset;
        }
        tracing::info!(dir = %self.dir.display(), offset, "truncated log below its start; now empty");
        self.check_invariants();
        Ok(())
    }

    /// Deletes the `count` oldest segments, which must all be closed.
    fn delete_oldest(&mut self, count: usize) -> Result<(), LogError> {
        debug_assert!(count < self.segments.len());
        for segment in self.segments.drain(..count) {
            debug_assert!(segment.base_offset() < self.log_start_offset);
            segment.delete(&self.dir)?;
        }
        Ok(())
    }

    fn check_range(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.next_offset,
            });
        }
        Ok(())
    }

    /// How many of the oldest segments lie wholly below `end`.
    fn segments_below(&self, end: i64) -> usize {
        self.segments
            .windows(2)
            .take_while(|w| w[1].base_offset() <= end)
            .count()
    }

    /// The header of the batch stored at exactly `offset`, if one starts
    /// there, whether or not `offset` is below the log start (records
    /// deleted but not yet removed are still stored).
    pub fn stored_header(&self, offset: i64) -> Result<Option<BatchHeader>, LogError> {
        if offset >= self.next_offset || offset < self.segments[0].base_offset() {
            return Ok(None);
        }
        let located = self.locate(offset)?;
        Ok(located.map(|(_, _, header)| header).filter(|h| h.base_offset == offset))
    }

    /// Segment index, position and header of the first batch whose last
    /// offset is at or after `offset`, skipping any gap left by a damaged
    /// segment.
    fn locate(&self, offset: i64) -> Result<Option<(usize, u64, BatchHeader)>, LogError> {
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for (index, segment) in self.segments.iter().enumerate().skip(first) {
            if let Some((position, header)) = segment.locate_offset(offset)? {
                return Ok(Some((index, position, header)));
            }
        }
        Ok(None)
    }

    fn check_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        debug_assert!(
            self.segments
                .windows(2)
                .all(|w| w[0].base_offset() < w[1].base_offset())
        );
        debug_assert!(self.segments[0].base_offset() <= self.log_start_offset);
        debug_assert!(self.log_start_offset <= self.next_offset);
        debug_assert!(self.active().base_offset() <= self.next_offset);
        debug_assert!(self.active().size() > 0 || self.active().base_offset() == self.next_offset);
    }
}

#[cfg(test)]
mod tests;
