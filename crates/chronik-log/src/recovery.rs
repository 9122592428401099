//! Opening a log directory, after a clean shutdown or a crash.
//!
//! Only the last (active) segment can hold a torn write: older segments
//! were fsynced when they were sealed. So the active segment is always
//! scanned batch by batch and cut at the first batch that is short, fails
//! validation or breaks the offset sequence; its indexes are rebuilt from
//! the scan. Older segments' indexes are trusted if they load and look
//! consistent, otherwise they are rebuilt the same way (a compacted segment
//! may skip offsets, but never goes back). A cleaner pass interrupted by
//! the crash is finished or discarded first (see `compaction`).

use std::fmt;
use std::fs;
use std::path::Path;

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, parse_header, validate_batch};
use crate::checkpoint;
use crate::compaction;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::scan::ScanReader;
use crate::segment::{MAX_SEGMENT_BYTES, Segment, delete_segment_files, parse_log_file_name, sync_dir};

/// Read-ahead while scanning a whole segment.
const RECOVERY_CHUNK: usize = 1024 * 1024;

pub(crate) struct Recovered {
    /// Sorted by base offset and never empty; the last one is active.
    pub segments: Vec<Segment>,
    pub log_start_offset: i64,
    pub next_offset: i64,
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, LogError> {
    fs::create_dir_all(dir)?;
    compaction::finish_interrupted(dir)?;
    let mut bases = list_segments(dir)?;
    let checkpoint = checkpoint::read(dir, checkpoint::LOG_START)?;

    // A segment whose successor starts at or below the log start holds only
    // deleted records; a crash may have left it behind.
    if let Some(start) = checkpoint {
        let obsolete = bases.windows(2).take_while(|w| w[1] <= start).count();
        for &base in &bases[..obsolete] {
            delete_segment_files(dir, base)?;
        }
        bases.drain(..obsolete);
    }

    let Some((&last, closed)) = bases.split_last() else {
        return empty_log(dir, Vec::new(), checkpoint.unwrap_or(0));
    };
    let mut segments = Vec::with_capacity(bases.len());
    for (i, &base) in closed.iter().enumerate() {
        segments.push(load_closed(dir, base, bases[i + 1], config)?);
    }
    let (mut active, _) = Segment::open(dir, last)?;
    let next_offset = recover_segment(&mut active, config.index_interval_bytes, Offsets::Contiguous)?;
    segments.push(active);

    let first_base = segments[0].base_offset();
    let log_start_offset = checkpoint.map_or(first_base, |c| c.max(first_base));
    if log_start_offset > next_offset {
        // The start moved past data that was then lost (an unflushed tail),
        // so nothing on disk is visible: start over empty at the start.
        tracing::warn!(
            dir = %dir.display(),
            log_start_offset,
            next_offset,
            "log start offset is beyond the recovered log end; resetting to an empty log"
        );
        return empty_log(dir, segments, log_start_offset);
    }
    debug_assert!(log_start_offset >= first_base);
    Ok(Recovered {
        segments,
        log_start_offset,
        next_offset,
    })
}

/// Replaces `segments` with one empty segment at `start`.
pub(crate) fn empty_log(dir: &Path, segments: Vec<Segment>, start: i64) -> Result<Recovered, LogError> {
    for segment in segments {
        segment.delete(dir)?;
    }
    let segment = Segment::create(dir, start)?;
    sync_dir(dir)?;
    Ok(Recovered {
        segments: vec![segment],
        log_start_offset: start,
        next_offset: start,
    })
}

/// Base offsets of the segment files in `dir`, ascending. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(base) = entry.file_name().to_str().and_then(parse_log_file_name) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens a sealed segment that ends where `next_base` begins.
pub(crate) fn load_closed(dir: &Path, base: i64, next_base: i64, config: &LogConfig) -> Result<Segment, LogError> {
    let (mut segment, loaded) = Segment::open(dir, base)?;
    if loaded && indexes_consistent(&segment, next_base) {
        return Ok(segment);
    }
    tracing::warn!(segment = %segment.log_path().display(), "rebuilding segment indexes");
    let end = recover_segment(&mut segment, config.index_interval_bytes, Offsets::MaySkip)?;
    // A compacted segment may end below the next base; one that reaches
    // past it overlaps its successor.
    if end > next_base {
        tracing::warn!(
            segment = %segment.log_path().display(),
            end,
            next_base,
            "sealed segment reaches past the next segment's base"
        );
    }
    segment.seal()?;
    Ok(segment)
}

/// Cheap plausibility checks of loaded index entries against the segment.
fn indexes_consistent(segment: &Segment, next_base: i64) -> bool {
    let base = segment.base_offset();
    let in_range = |relative_offset: u32| base.saturating_add(i64::from(relative_offset)) < next_base;

    let offsets = segment.offset_index().entries();
    let offsets_ok = offsets
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
        && offsets
            .iter()
            .all(|e| u64::from(e.position) < segment.size() && in_range(e.relative_offset));

    // A non-empty sealed segment always ends its time index with its max
    // timestamp, so an empty time index means the index was lost.
    let times = segment.time_index().entries();
    let times_ok = times
        .windows(2)
        .all(|w| w[0].timestamp < w[1].timestamp && w[0].relative_offset < w[1].relative_offset)
        && times.iter().all(|e| in_range(e.relative_offset))
        && times.is_empty() == (segment.size() == 0);

    offsets_ok && times_ok
}

/// Why recovery stopped before the end of a segment file.
enum Invalid {
    Torn,
    Batch(BatchError),
    OutOfSequence { expected: i64, found: i64 },
    BeyondIndexRange,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Torn => write!(f, "torn batch at end of file"),
            Invalid::Batch(e) => write!(f, "{e}"),
            Invalid::OutOfSequence { expected, found } => {
                write!(f, "batch base offset {found}, expected {expected}")
            }
            Invalid::BeyondIndexRange => write!(f, "batch beyond the segment's index range"),
        }
    }
}

/// Whether a segment's batches must follow each other without a gap, as
/// appends write them, or may skip offsets, as the cleaner leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offsets {
    Contiguous,
    MaySkip,
}

/// Scans the whole segment, rebuilding its indexes and cutting the file at
/// the first invalid batch. Returns the offset after the last valid batch.
pub(crate) fn recover_segment(
    segment: &mut Segment,
    index_interval_bytes: u64,
    offsets: Offsets,
) -> Result<i64, LogError> {
    segment.reset_indexes()?;
    // A second handle so the reader can borrow it while the segment is updated.
    let file = segment.file().try_clone()?;
    let file_len = file.metadata()?.len();
    let mut reader = ScanReader::new(&file, file_len, RECOVERY_CHUNK);
    let mut position = 0;
    let mut next_offset = segment.base_offset();
    while position < file_len {
        match check_batch(&mut reader, position, next_offset, offsets, segment)? {
            Ok(header) => {
                segment.track_batch(&header, position, index_interval_bytes);
                position += header.total_len() as u64;
                next_offset = header.last_offset().saturating_add(1);
            }
            Err(invalid) => {
                tracing::warn!(
                    segment = %segment.log_path().display(),
                    position,
                    file_len,
                    reason = %invalid,
                    "truncating segment at first invalid batch"
                );
                segment.truncate(position)?;
                break;
            }
        }
    }
    debug_assert_eq!(segment.size(), position);
    Ok(next_offset)
}

/// Validates the batch at `position`, which must carry `expected` as its
/// base offset because the log assigns offsets contiguously (or, where
/// `offsets` allows gaps, at least `expected`).
fn check_batch(
    reader: &mut ScanReader<'_>,
    position: u64,
    expected: i64,
    offsets: Offsets,
    segment: &Segment,
) -> Result<Result<BatchHeader, Invalid>, LogError> {
    let Some(bytes) = reader.get(position, BATCH_HEADER_LEN)? else {
        return Ok(Err(Invalid::Torn));
    };
    let header = match parse_header(bytes) {
        Ok(header) => header,
        Err(e) => return Ok(Err(Invalid::Batch(e))),
    };
    let Some(bytes) = reader.get(position, header.total_len())? else {
        return Ok(Err(Invalid::Torn));
    };
    if let Err(e) = validate_batch(bytes) {
        return Ok(Err(Invalid::Batch(e)));
    }
    let in_sequence = match offsets {
        Offsets::Contiguous => header.base_offset == expected,
        Offsets::MaySkip => header.base_offset >= expected,
    };
    if !in_sequence {
        return Ok(Err(Invalid::OutOfSequence {
            expected,
            found: header.base_offset,
        }));
    }
    if position > MAX_SEGMENT_BYTES || !segment.fits_offset(header.last_offset()) {
        return Ok(Err(Invalid::BeyondIndexRange));
    }
    Ok(Ok(header))
}
