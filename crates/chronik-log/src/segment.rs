//! One segment: a `.log` file of contiguous batches plus its two indexes.
//!
//! Files are named by the segment's base offset, zero padded to 20 digits
//! like Kafka, so they sort by offset. Batches are written with positioned
//! writes and read with positioned reads, so readers need only `&self`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, parse_header};
use crate::error::LogError;
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::scan::ScanReader;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Index positions are u32, so no batch may start beyond this.
pub(crate) const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Read-ahead when scanning headers on the read path: a few index intervals.
const LOOKUP_CHUNK: usize = 16 * 1024;

/// Read-ahead when listing the headers of batches to serve after a large
/// batch: its header, without much of the next batch's records, which go
/// out by `sendfile`. After a small batch the read-ahead is `LOOKUP_CHUNK`,
/// so that small batches' headers come many to a read.
const HEADER_READ_AHEAD: usize = 512;

/// Batches below this size count as small for the read-ahead.
const SMALL_BATCH: usize = LOOKUP_CHUNK / 4;

pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    debug_assert!(base_offset >= 0);
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// The base offset encoded in a segment `.log` file name, if it is one.
pub(crate) fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Removes a segment's files; indexes first, so a crash part way leaves a
/// `.log` whose indexes get rebuilt rather than orphaned index files.
pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [TIME_INDEX_SUFFIX, OFFSET_INDEX_SUFFIX, LOG_SUFFIX] {
        match fs::remove_file(segment_path(dir, base_offset, suffix)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Makes file creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appended bytes after which the kernel is asked to start writing them
/// back (see `Segment::append`).
const WRITEBACK_STEP: u64 = 1 << 20;

pub(crate) struct Segment {
    /// Bytes below this offset were handed to the kernel's writeback.
    written_back: u64,
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with the byte ranges reads hand out (`StoredBatches`).
    file: Arc<File>,
    /// Bytes of valid batches; the file is never longer once opened.
    size: u64,
    offset_index: Index<OffsetEntry>,
    time_index: Index<TimeEntry>,
    /// Largest batch max timestamp, with the base offset of the first batch holding it.
    max_timestamp: Option<(i64, i64)>,
    bytes_since_index: u64,
}

impl Segment {
    /// Creates a new empty segment, truncating any stale files of the same name.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> io::Result<Self> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        Ok(Self {
            written_back: 0,
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            offset_index: Index::create(segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX))?,
            time_index: Index::create(segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?,
            max_timestamp: None,
            bytes_since_index: 0,
        })
    }

    /// Opens an existing segment. Returns whether both index files loaded;
    /// if not, they are empty and the caller must rebuild them. The loaded
    /// entries are not yet checked against the data (see recovery).
    pub(crate) fn open(dir: &Path, base_offset: i64) -> io::Result<(Self, bool)> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let size = file.metadata()?.len();
        // At most one entry per batch, so this bounds what a sane index holds.
        let max_entries = size / BATCH_HEADER_LEN as u64 + 1;
        let (offset_index, offsets_ok) = Index::open(segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX), max_entries)?;
        let (time_index, times_ok) = Index::open(segment_path(dir, base_offset, TIME_INDEX_SUFFIX), max_entries)?;
        let mut segment = Self {
            written_back: size,
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            offset_index,
            time_index,
            max_timestamp: None,
            bytes_since_index: 0,
        };
        // A sealed segment's last time entry is its max timestamp.
        segment.max_timestamp = segment
            .time_index
            .last()
            .map(|e| (e.timestamp, segment.absolute(e.relative_offset)));
        Ok((segment, offsets_ok && times_ok))
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn shared_file(&self) -> &Arc<File> {
        &self.file
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.max_timestamp
    }

    pub(crate) fn offset_index(&self) -> &Index<OffsetEntry> {
        &self.offset_index
    }

    pub(crate) fn time_index(&self) -> &Index<TimeEntry> {
        &self.time_index
    }

    fn absolute(&self, relative_offset: u32) -> i64 {
        self.base_offset.saturating_add(i64::from(relative_offset))
    }

    /// `offset` relative to the base, clamped into u32 for index lookups.
    fn relative(&self, offset: i64) -> u32 {
        let delta = offset.saturating_sub(self.base_offset);
        u32::try_from(delta.max(0)).unwrap_or(u32::MAX)
    }

    /// Whether `last_offset` can be stored relative to this segment's base.
    pub(crate) fn fits_offset(&self, last_offset: i64) -> bool {
        last_offset
            .checked_sub(self.base_offset)
            .is_some_and(|d| u32::try_from(d).is_ok())
    }

    /// Writes a batch (already validated and given its offsets) at the end.
    pub(crate) fn append(&mut self, batch: &[u8], header: &BatchHeader, index_interval_bytes: u64) -> io::Result<u64> {
        debug_assert_eq!(batch.len(), header.total_len());
        let position = self.size;
        if let Err(e) = self.file.write_all_at(batch, position) {
            // Drop any partial write so the file never holds a torn batch we
            // would later append after. Best effort: the write error wins.
            let _ = self.file.set_len(position);
            return Err(e);
        }
        self.size += batch.len() as u64;
        self.track_batch(header, position, index_interval_bytes);
        if self.size - self.written_back >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(position)
    }

    /// Asks the kernel to start writing back what was appended since the last
    /// call, without waiting. The partition's checkpoint fsyncs once a second;
    /// left alone, a second's worth of dirty pages reached the disk in one
    /// burst then, and the Raft log's fsyncs queued behind it: a stall of
    /// several milliseconds every second. Linux starts writeback of dirty
    /// pages for DONTNEED and drops only pages that are clean, which fresh
    /// appends are not, so readers still find them in the page cache. Best
    /// effort: durability still comes from the fsyncs.
    fn start_writeback(&mut self) {
        debug_assert!(self.written_back <= self.size, "writeback starts within the file");
        let (from, len) = (self.written_back, self.size - self.written_back);
        let _ = rustix::fs::fadvise(
            &self.file,
            from,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        );
        self.written_back = self.size;
    }

    /// Updates max timestamp and indexes for a batch stored at `position`.
    /// Shared by append and recovery so rebuilt indexes match written ones.
    pub(crate) fn track_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u64) {
        debug_assert!(self.fits_offset(header.last_offset()));
        debug_assert!(position <= MAX_SEGMENT_BYTES);
        debug_assert!(header.base_offset >= self.base_offset);
        let relative_offset = self.relative(header.base_offset);

        raise_max_timestamp(&mut self.max_timestamp, header);
        if self.bytes_since_index >= index_interval_bytes {
            debug_assert!(
                self.offset_index
                    .last()
                    .is_none_or(|e| e.relative_offset < relative_offset)
            );
            self.offset_index.push(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            self.push_time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len() as u64;
    }

    /// Records the current max timestamp in the time index if it grew.
    fn push_time_entry(&mut self) {
        let Some((timestamp, offset)) = self.max_timestamp else {
            return;
        };
        if self.time_index.last().is_none_or(|e| e.timestamp < timestamp) {
            let relative_offset = self.relative(offset);
            self.time_index.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// Forgets all indexes and timestamps, on disk too, before a rebuild.
    pub(crate) fn reset_indexes(&mut self) -> io::Result<()> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.max_timestamp = None;
        self.bytes_since_index = 0;
        Ok(())
    }

    /// Cuts the file after the last valid batch.
    pub(crate) fn truncate(&mut self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.file.sync_all()?;
        self.size = size;
        self.written_back = self.written_back.min(size);
        Ok(())
    }

    /// Drops the batches from `position` on, the first of which starts at
    /// `offset` (or `position` is the end and `offset` the next offset),
    /// with the index entries pointing at them. The segment then continues
    /// as if they had never been written: data fsynced, tracking restored.
    pub(crate) fn truncate_batches(&mut self, position: u64, offset: i64) -> Result<(), LogError> {
        debug_assert!(position <= self.size && offset >= self.base_offset);
        // An offset past the u32 range lies beyond every entry.
        if let Ok(relative_offset) = u32::try_from(offset - self.base_offset) {
            self.offset_index.truncate_from(relative_offset)?;
            self.time_index.truncate_from(relative_offset)?;
        }
        self.truncate(position)?;
        self.resume_tracking()
    }

    /// Recomputes the max timestamp and the bytes since the last offset
    /// index entry from what is stored. The time entries cover every batch
    /// up to the last offset entry, so only the batches after it are read.
    fn resume_tracking(&mut self) -> Result<(), LogError> {
        let from = self.offset_index.last().map_or(0, |e| u64::from(e.position));
        let mut max_timestamp = self
            .time_index
            .last()
            .map(|e| (e.timestamp, self.absolute(e.relative_offset)));
        // Never matches, so it visits every batch from `from` to the end.
        self.find_batch(from, |header| {
            raise_max_timestamp(&mut max_timestamp, header);
            false
        })?;
        self.max_timestamp = max_timestamp;
        self.bytes_since_index = self.size - from;
        Ok(())
    }

    /// Whether the last batch ends just before `offset`.
    pub(crate) fn ends_at(&self, offset: i64) -> Result<bool, LogError> {
        let last = offset - 1;
        let found = self.locate_offset(last)?;
        Ok(found.is_some_and(|(position, header)| {
            header.last_offset() == last && position + header.total_len() as u64 == self.size
        }))
    }

    /// Makes the data durable and writes out pending index entries.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.persist_indexes()
    }

    /// Writes new index entries, without fsync: recovery rebuilds the active
    /// segment's indexes anyway.
    pub(crate) fn persist_indexes(&mut self) -> io::Result<()> {
        self.offset_index.persist(false)?;
        self.time_index.persist(false)
    }

    /// Finishes a segment that will never be appended to again: durable data
    /// and indexes, with the time index ending in the max timestamp so that
    /// reopening learns it without scanning.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.push_time_entry();
        self.offset_index.persist(true)?;
        self.time_index.persist(true)
    }

    pub(crate) fn delete(self, dir: &Path) -> io::Result<()> {
        let base_offset = self.base_offset;
        drop(self);
        delete_segment_files(dir, base_offset)
    }

    fn corrupt(&self, position: u64, source: BatchError) -> LogError {
        LogError::Corrupt {
            path: self.log_path.clone(),
            position,
            source,
        }
    }

    /// First batch at or after `from` (a batch start) whose header matches.
    fn find_batch(
        &self,
        from: u64,
        mut matches: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut reader = ScanReader::new(&self.file, self.size, LOOKUP_CHUNK);
        let mut position = from;
        while position < self.size {
            let header = self.header_at(&mut reader, position)?;
            if matches(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    /// The first batch whose last offset is at or after `offset`.
    pub(crate) fn locate_offset(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let from = self.offset_index.floor_position(self.relative(offset));
        self.find_batch(from, |h| h.last_offset() >= offset)
    }

    /// The first batch with a last offset at or after `min_offset` and a max
    /// timestamp at or after `timestamp`.
    pub(crate) fn locate_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        // Both are batch starts no later than the answer, so the later one is
        // the better place to start scanning.
        let from_time = self
            .time_index
            .last_below(timestamp)
            .map_or(0, |rel| self.offset_index.floor_position(rel));
        let from_offset = self.offset_index.floor_position(self.relative(min_offset));
        self.find_batch(from_time.max(from_offset), |h| {
            h.last_offset() >= min_offset && h.max_timestamp >= timestamp
        })
    }

    /// Reads `len` bytes at `position`, which must lie within the segment.
    pub(crate) fn read_exact(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        if position.saturating_add(len as u64) > self.size {
            return Err(self.corrupt(position, BatchError::Truncated));
        }
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// The headers of whole batches from `from` (a batch start) totalling
    /// at most `budget` bytes, or of exactly one batch if `at_least_one` and
    /// it alone is larger. Also returns whether they reach the segment's end.
    /// A damaged batch after some good ones ends the list there: the good
    /// ones are served, and the next read from the damaged one reports it.
    pub(crate) fn batch_headers(
        &self,
        from: u64,
        budget: u64,
        at_least_one: bool,
    ) -> Result<(Vec<BatchHeader>, bool), LogError> {
        debug_assert!(from <= self.size);
        let mut reader = ScanReader::new(&self.file, self.size, LOOKUP_CHUNK);
        let mut headers = Vec::new();
        let (mut position, mut taken) = (from, 0u64);
        while position < self.size {
            let header = match self.header_at(&mut reader, position) {
                Ok(header) => header,
                Err(_) if !headers.is_empty() => return Ok((headers, false)),
                Err(e) => return Err(e),
            };
            let len = header.total_len() as u64;
            if taken + len > budget && !(at_least_one && headers.is_empty()) {
                break;
            }
            reader.set_chunk(if (len as usize) < SMALL_BATCH {
                LOOKUP_CHUNK
            } else {
                HEADER_READ_AHEAD
            });
            headers.push(header);
            taken += len;
            position += len;
        }
        Ok((headers, position == self.size))
    }

    /// The header of the batch at `position`, which must lie whole within
    /// the segment.
    fn header_at(&self, reader: &mut ScanReader<'_>, position: u64) -> Result<BatchHeader, LogError> {
        let bytes = reader
            .get(position, BATCH_HEADER_LEN)?
            .ok_or_else(|| self.corrupt(position, BatchError::Truncated))?;
        let header = parse_header(bytes).map_err(|e| self.corrupt(position, e))?;
        if position + header.total_len() as u64 > self.size {
            return Err(self.corrupt(position, BatchError::Truncated));
        }
        Ok(header)
    }
}

/// Keeps the first batch holding the largest max timestamp.
fn raise_max_timestamp(max_timestamp: &mut Option<(i64, i64)>, header: &BatchHeader) {
    if max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
        *max_timestamp = Some((header.max_timestamp, header.base_offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let dir = Path::new("/d");
        let path = segment_path(dir, 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_log_file_name(name), Some(42));
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
        assert_eq!(parse_log_file_name("42.log"), None);
        assert_eq!(parse_log_file_name("9999999999999999999a.log"), None);
        // 20 digits but beyond i64::MAX.
        assert_eq!(parse_log_file_name("99999999999999999999.log"), None);
    }
}
