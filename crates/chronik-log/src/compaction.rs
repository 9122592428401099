//! Log compaction (`cleanup.policy=compact`): keep the latest record of
//! each key in the closed segments, as Kafka's log cleaner does.
//!
//! A pass has these steps, so that the partition's lock is never held
//! across I/O:
//!
//! 1. [`PartitionLog::plan_cleaning`] (shared lock, no I/O): which closed
//!    segments may be cleaned, with handles to their files. A segment is
//!    cleanable if it lies below the offset the caller has made durable
//!    (a restart cuts the log back to it and replays from there, so a
//!    cleaned segment must never reach above it) and its newest record is
//!    older than `min.compaction.lag.ms`. The pass runs only if the dirty
//!    part (past the previous pass's end, kept in `cleaner-offset`) is at
//!    least `min.cleanable.dirty.ratio` of the cleanable bytes, or a dirty
//!    segment is older than `max.compaction.lag.ms`.
//! 2. [`CleaningPlan::clean`] (no lock): maps each key of the dirty part to
//!    its latest offset, then rewrites the cleanable segments, grouped up
//!    to `segment.bytes`, into a staging directory (`cleaning/`): a record
//!    is kept if it has a key, no later record has that key, and it is not
//!    a tombstone older than `delete.retention.ms` (by its segment's
//!    modification time, which rewrites carry over). Kept records keep
//!    their bytes and offsets, so a batch keeps its base offset and offset
//!    span with fewer records, as Kafka's cleaner leaves it; a batch left
//!    empty is dropped. Control batches are kept as they are. Each staged
//!    segment is fsynced with its indexes.
//! 3. [`PartitionLog::check_swap`] (shared lock, no I/O): the segments a
//!    rewrite replaces must still be there unchanged (retention or a
//!    snapshot may have replaced them meanwhile; then the pass is dropped).
//! 4. [`SwapPlan::swap_on_disk`] (no lock): writes the swap marker
//!    `cleaning/swap`, moves the staged files in, deletes the replaced ones,
//!    and opens the new segments. The log in memory still serves the old
//!    segments through their open files meanwhile (a rename or unlink
//!    leaves an open file readable), so reads and appends go on. The caller
//!    must keep other changes of the segment files (retention, record
//!    deletion, snapshots) out until step 5: the broker's `Partition` holds
//!    its layout lock across steps 3-6.
//! 5. [`PartitionLog::install_swapped`] (exclusive lock, no I/O): the new
//!    segments take the old ones' place in memory.
//! 6. [`Installed::finish`] (no lock): removes the marker and records the
//!    cleaner offset.
//!
//! Crash safety: the marker is the commit point. On open, a marker is
//! carried out again (renames of files still staged, deletes of replaced
//! files still present, both idempotent), and a staging directory without
//! one is deleted. So a crash leaves the old segments or the new ones.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, LOG_APPEND_TIME_FLAG, parse_header, rebuild_batch, validate_batch};
use crate::checkpoint;
use crate::compression::{compress, decompress, default_level};
use crate::config::LogConfig;
use crate::control::{AbortedTxn, is_aborted};
use crate::error::LogError;
use crate::log::PartitionLog;
use crate::records::{RecordView, walk};
use crate::recovery;
use crate::scan::ScanReader;
use crate::segment::{
    LOG_SUFFIX, MAX_SEGMENT_BYTES, OFFSET_INDEX_SUFFIX, Segment, TIME_INDEX_SUFFIX, segment_path, sync_dir,
};

const STAGING_DIR: &str = "cleaning";
const SWAP_MARKER: &str = "swap";
/// Read-ahead while scanning a segment.
const SCAN_CHUNK: usize = 1024 * 1024;
/// A stored batch decompressing to more than this is kept as it is.
const MAX_DECOMPRESSED: usize = 128 * 1024 * 1024;
/// Keys one pass maps (about 50 bytes each); a dirty part with more is
/// cleaned in several passes, as Kafka's bounded dedupe buffer does.
const MAX_KEYS: usize = 2_000_000;

/// The cleanable segments of a log, found under its lock.
pub struct CleaningPlan {
    dir: PathBuf,
    config: LogConfig,
    sources: Vec<Source>,
    /// Records at or after this offset have not been compacted yet.
    first_dirty: i64,
    /// Transactions whose data the pass removes (their markers stay).
    aborted: Vec<AbortedTxn>,
}

struct Source {
    base: i64,
    /// Where the next segment begins: this one holds offsets below it.
    next_base: i64,
    size: u64,
    file: File,
}

/// A rewrite whose replaced segments were still unchanged when checked.
#[derive(Debug)]
pub struct SwapPlan {
    cleaned: Cleaned,
    /// Per swap, where the segment after the last one it replaces begins.
    next_bases: Vec<i64>,
    config: LogConfig,
}

/// New segments, in place on disk, to put in the log in memory.
pub struct Swapped {
    dir: PathBuf,
    segments: Vec<(usize, Segment)>,
    end: i64,
}

/// A swap done on disk and in memory, whose marker is still to go.
#[must_use = "finish removes the swap marker"]
pub struct Installed {
    dir: PathBuf,
    end: i64,
    /// The replaced segments, whose files were deleted: closing them frees
    /// their blocks, which is I/O, so it happens in `finish`.
    replaced: Vec<Segment>,
}

/// A finished rewrite, staged and waiting to be installed.
#[derive(Debug)]
pub struct Cleaned {
    dir: PathBuf,
    swaps: Vec<Swap>,
    /// The pass compacted everything below this offset.
    end: i64,
    pub stats: CleanStats,
}

/// One staged segment and the segments (base offset, size) it replaces;
/// it takes the first one's base offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Swap {
    replaces: Vec<(i64, u64)>,
}

impl Swap {
    fn base(&self) -> i64 {
        self.replaces[0].0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// How long the install held the log's exclusive lock.
    pub locked: Duration,
}

impl PartitionLog {
    /// What a cleaner pass would compact now, if anything: closed segments
    /// wholly below `stable_end`, whose records are older than the lag. The
    /// caller bounds `stable_end` by what is durable and by the first
    /// offset of any open transaction, whose outcome is not known yet.
    pub fn plan_cleaning(&self, now_ms: i64, stable_end: i64) -> Result<Option<CleaningPlan>, LogError> {
        let config = self.config();
        if !config.compact {
            return Ok(None);
        }
        let lag_cutoff = now_ms.saturating_sub(config.min_compaction_lag_ms.max(0));
        let segments = self.segments();
        let mut sources = Vec::new();
        for pair in segments.windows(2) {
            let (segment, next_base) = (&pair[0], pair[1].base_offset());
            let too_recent = segment.max_timestamp().is_some_and(|(max, _)| max > lag_cutoff);
            if next_base > stable_end || too_recent {
                break;
            }
            sources.push(Source {
                base: segment.base_offset(),
                next_base,
                size: segment.size(),
                file: segment.file().try_clone()?,
            });
        }
        let Some(last) = sources.last() else {
            return Ok(None);
        };
        let end = last.next_base;
        let first_dirty = self.cleaner_offset().clamp(sources[0].base, end);
        let total: u64 = sources.iter().map(|s| s.size).sum();
        let dirty: u64 = sources
            .iter()
            .filter(|s| s.next_base > first_dirty)
            .map(|s| s.size)
            .sum();
        // max.compaction.lag.ms: a dirty segment whose newest record is
        // older than this is due whatever the ratio (Kafka goes by the
        // oldest record; the newest is what a segment tracks).
        let overdue_cutoff = now_ms.saturating_sub(config.max_compaction_lag_ms);
        let overdue = segments
            .iter()
            .filter(|s| s.base_offset() < end && s.base_offset() >= first_dirty)
            .any(|s| s.max_timestamp().is_some_and(|(max, _)| max < overdue_cutoff));
        let ratio_met = (dirty as f64) >= config.min_cleanable_dirty_ratio * total as f64;
        if first_dirty >= end || total == 0 || !(ratio_met || overdue) {
            return Ok(None);
        }
        Ok(Some(CleaningPlan {
            dir: self.dir().to_path_buf(),
            config: config.clone(),
            sources,
            first_dirty,
            aborted: Vec::new(),
        }))
    }

    /// Checks that the segments `cleaned` replaces are still the log's,
    /// unchanged, and notes what the swap needs of the log. No I/O: a
    /// rewrite that no longer fits is handed back to be discarded.
    pub fn check_swap(&self, cleaned: Cleaned) -> Result<SwapPlan, Cleaned> {
        let current: Vec<(i64, u64)> = self.segments().iter().map(|s| (s.base_offset(), s.size())).collect();
        let closed = &current[..current.len() - 1];
        let unchanged = cleaned
            .swaps
            .iter()
            .flat_map(|swap| &swap.replaces)
            .all(|source| closed.contains(source));
        if !unchanged {
            return Err(cleaned);
        }
        let next_bases = cleaned
            .swaps
            .iter()
            .map(|swap| self.next_base_after(swap.replaces[swap.replaces.len() - 1].0))
            .collect();
        Ok(SwapPlan {
            cleaned,
            next_bases,
            config: self.config().clone(),
        })
    }

    /// Puts swapped segments in place of those they replace, in memory.
    pub fn install_swapped(&mut self, swapped: Swapped) -> Installed {
        let mut replaced = Vec::new();
        for (count, segment) in swapped.segments {
            replaced.extend(self.replace_segments(segment.base_offset(), count, segment));
        }
        self.set_cleaner_offset(swapped.end);
        Installed {
            dir: swapped.dir,
            end: swapped.end,
            replaced,
        }
    }

    /// All the install steps at once, for tests that hold the log alone.
    #[cfg(test)]
    pub(crate) fn install_cleaned(&mut self, cleaned: Cleaned) -> Result<bool, LogError> {
        match self.check_swap(cleaned) {
            Ok(plan) => {
                let swapped = plan.swap_on_disk()?;
                self.install_swapped(swapped).finish()?;
                Ok(true)
            }
            Err(cleaned) => {
                cleaned.discard()?;
                Ok(false)
            }
        }
    }
}

impl Cleaned {
    /// Drops a rewrite that will not be installed.
    pub fn discard(self) -> Result<(), LogError> {
        discard_staging(&self.dir)
    }
}

impl SwapPlan {
    /// Makes the swap on disk, with the marker as its commit point, and
    /// opens the new segments. An error may leave it half done on disk
    /// while the log in memory still serves the old segments, so the
    /// caller must stop the process; the next open finishes the swap.
    pub fn swap_on_disk(self) -> Result<Swapped, LogError> {
        let SwapPlan {
            cleaned,
            next_bases,
            config,
        } = self;
        let mut segments = Vec::with_capacity(cleaned.swaps.len());
        if !cleaned.swaps.is_empty() {
            test_pause();
            write_marker(&cleaned.dir, &cleaned.swaps)?;
            swap_files(&cleaned.dir, &cleaned.swaps)?;
            for (swap, next_base) in cleaned.swaps.iter().zip(next_bases) {
                let segment = recovery::load_closed(&cleaned.dir, swap.base(), next_base, &config)?;
                segments.push((swap.replaces.len(), segment));
            }
        }
        Ok(Swapped {
            dir: cleaned.dir,
            segments,
            end: cleaned.end,
        })
    }
}

impl Installed {
    /// Removes the swap marker and records where the pass ended. A crash
    /// before it carries the swap out again at the next open (harmless:
    /// every step is done already) and cleans the range again.
    pub fn finish(self) -> Result<(), LogError> {
        drop(self.replaced);
        discard_staging(&self.dir)?;
        sync_dir(&self.dir)?;
        checkpoint::write(&self.dir, checkpoint::CLEANER, self.end)?;
        Ok(())
    }
}

impl CleaningPlan {
    /// How many segments the pass may rewrite.
    pub fn segments(&self) -> usize {
        self.sources.len()
    }

    /// Has the pass remove the data of these aborted transactions, as
    /// Kafka's cleaner does: otherwise an aborted record could outlive the
    /// committed one it was meant to replace.
    pub fn dropping_aborted(mut self, aborted: Vec<AbortedTxn>) -> Self {
        self.aborted = aborted;
        self
    }

    /// Maps the dirty part's keys and stages the rewritten segments.
    pub fn clean(self, now_ms: i64) -> Result<Cleaned, LogError> {
        let staging = self.dir.join(STAGING_DIR);
        discard_staging(&self.dir)?;
        fs::create_dir(&staging)?;
        let (latest, end) = self.map_keys()?;
        let sources: Vec<&Source> = self.sources.iter().take_while(|s| s.base < end).collect();
        let tombstone_cutoff = now_ms.saturating_sub(self.config.delete_retention_ms.max(0));
        let mut stats = CleanStats::default();
        let mut swaps = Vec::new();
        for group in group_by_size(&sources, self.config.segment_bytes.min(MAX_SEGMENT_BYTES)) {
            let modified = group
                .iter()
                .map(|s| s.file.metadata().and_then(|m| m.modified()))
                .collect::<io::Result<Vec<_>>>()?;
            let newest = modified.iter().max().copied().unwrap_or(SystemTime::UNIX_EPOCH);
            let mut staged = Segment::create(&staging, group[0].base)?;
            let mut changed = group.len() > 1;
            for (source, modified) in group.iter().zip(&modified) {
                let keep_tombstones = millis(*modified) >= tombstone_cutoff;
                let filter = Filter {
                    latest: &latest,
                    keep_tombstones,
                    aborted: &self.aborted,
                };
                changed |= copy_retained(source, &filter, &mut staged, &self.config, &mut stats)?;
            }
            if !changed {
                staged.delete(&staging)?;
                continue;
            }
            staged.seal()?;
            staged.file().set_modified(newest)?;
            swaps.push(Swap {
                replaces: group.iter().map(|s| (s.base, s.size)).collect(),
            });
            test_pause();
        }
        sync_dir(&staging)?;
        Ok(Cleaned {
            dir: self.dir,
            swaps,
            end,
            stats,
        })
    }

    /// The latest offset of each key in the dirty part, and where the pass
    /// ends: the whole cleanable range, or less if the keys overflowed.
    fn map_keys(&self) -> Result<(HashMap<u128, i64>, i64), LogError> {
        let mut latest = HashMap::new();
        let mut end = self.sources.last().map_or(self.first_dirty, |s| s.next_base);
        for source in self.sources.iter().filter(|s| s.next_base > self.first_dirty) {
            if latest.len() >= MAX_KEYS {
                end = source.base;
                break;
            }
            for_each_batch(source, |batch, header| {
                if header.is_control() || header.last_offset() < self.first_dirty || is_aborted(&self.aborted, header) {
                    return Ok(());
                }
                if let Some(section) = records_section(batch, header) {
                    for record in walk(&section, header.record_count).unwrap_or_default() {
                        let offset = header.base_offset + i64::from(record.offset_delta);
                        if let (Some(key), true) = (record.key, offset >= self.first_dirty) {
                            latest.insert(key_hash(key), offset);
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok((latest, end))
    }
}

/// Which records a rewrite keeps.
struct Filter<'a> {
    latest: &'a HashMap<u128, i64>,
    keep_tombstones: bool,
    aborted: &'a [AbortedTxn],
}

impl Filter<'_> {
    fn keeps(&self, offset: i64, record: &RecordView<'_>) -> bool {
        // Kafka's cleaner drops keyless records: a compacted topic refuses them.
        let Some(key) = record.key else {
            return false;
        };
        let newest = self.latest.get(&key_hash(key)).is_none_or(|&latest| offset >= latest);
        newest && (record.has_value || self.keep_tombstones)
    }
}

/// Appends what `filter` keeps of `source` to `staged`; returns whether
/// anything was left out.
fn copy_retained(
    source: &Source,
    filter: &Filter<'_>,
    staged: &mut Segment,
    config: &LogConfig,
    stats: &mut CleanStats,
) -> Result<bool, LogError> {
    let mut changed = false;
    stats.bytes_before += source.size;
    for_each_batch(source, |batch, header| {
        let kept = if header.is_control() {
            None
        } else if is_aborted(filter.aborted, header) {
            Some(Retained::Nothing {
                removed: u64::try_from(header.record_count).unwrap_or(0),
            })
        } else {
            retain(batch, header, filter)
        };
        let out = match kept {
            None => batch.to_vec(),
            Some(Retained::Nothing { removed }) => {
                stats.records_removed += removed;
                changed = true;
                return Ok(());
            }
            Some(Retained::Some { batch, removed }) => {
                stats.records_removed += removed;
                changed = true;
                batch
            }
        };
        let out_header = parse_header(&out)?;
        staged.append(&out, &out_header, config.index_interval_bytes)?;
        stats.bytes_after += out.len() as u64;
        Ok(())
    })?;
    Ok(changed)
}

enum Retained {
    Nothing { removed: u64 },
    Some { batch: Vec<u8>, removed: u64 },
}

/// The batch with only the records `filter` keeps, or `None` to keep it
/// whole (all kept, or its records cannot be read).
fn retain(batch: &[u8], header: &BatchHeader, filter: &Filter<'_>) -> Option<Retained> {
    let section = records_section(batch, header)?;
    let records = walk(&section, header.record_count).ok()?;
    let kept: Vec<&RecordView<'_>> = records
        .iter()
        .filter(|r| filter.keeps(header.base_offset + i64::from(r.offset_delta), r))
        .collect();
    let removed = (records.len() - kept.len()) as u64;
    if removed == 0 {
        return None;
    }
    if kept.is_empty() {
        return Some(Retained::Nothing { removed });
    }
    let plain: Vec<u8> = kept.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    let codec = header.compression();
    let section = compress(codec, default_level(codec), &plain).ok()?;
    let max_timestamp = if header.attributes & LOG_APPEND_TIME_FLAG != 0 {
        header.max_timestamp
    } else {
        let newest = kept.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
        header.base_timestamp.saturating_add(newest)
    };
    let header = BatchHeader {
        record_count: kept.len() as i32,
        ..*header
    };
    let rebuilt = rebuild_batch(&header, header.attributes, max_timestamp, &section);
    debug_assert!(validate_batch(&rebuilt).is_ok());
    Some(Retained::Some {
        batch: rebuilt,
        removed,
    })
}

/// The records section of a stored batch, decompressed; `None` if it does
/// not decompress within the bound.
fn records_section(batch: &[u8], header: &BatchHeader) -> Option<Vec<u8>> {
    decompress(header.compression(), &batch[BATCH_HEADER_LEN..], MAX_DECOMPRESSED).ok()
}

/// Calls `visit` with every batch of `source`, in order.
fn for_each_batch(
    source: &Source,
    mut visit: impl FnMut(&[u8], &BatchHeader) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut reader = ScanReader::new(&source.file, source.size, SCAN_CHUNK);
    let mut position = 0;
    while position < source.size {
        let corrupt = |source_error| LogError::Corrupt {
            path: PathBuf::from(format!("segment {}", source.base)),
            position,
            source: source_error,
        };
        let header_bytes = reader
            .get(position, BATCH_HEADER_LEN)?
            .ok_or(corrupt(crate::batch::BatchError::Truncated))?;
        let header = parse_header(header_bytes).map_err(corrupt)?;
        let batch = reader
            .get(position, header.total_len())?
            .ok_or(corrupt(crate::batch::BatchError::Truncated))?;
        visit(batch, &header)?;
        position += header.total_len() as u64;
    }
    Ok(())
}

/// Consecutive sources whose sizes add up to at most `limit` and whose
/// offsets fit one segment's u32 relative offsets; each group becomes one
/// segment.
fn group_by_size<'a>(sources: &[&'a Source], limit: u64) -> Vec<Vec<&'a Source>> {
    let mut groups: Vec<Vec<&Source>> = Vec::new();
    for &source in sources {
        let fits = groups.last().is_some_and(|group| {
            let size: u64 = group.iter().map(|s| s.size).sum();
            let span = source.next_base - 1 - group[0].base;
            size + source.size <= limit && u32::try_from(span).is_ok()
        });
        match groups.last_mut() {
            Some(group) if fits => group.push(source),
            _ => groups.push(vec![source]),
        }
    }
    groups
}

/// 128 bits of two differently keyed SipHashes: a collision would drop a
/// record, so the chance must be negligible (about 2^-88 for 2^20 keys).
fn key_hash(key: &[u8]) -> u128 {
    let mut low = DefaultHasher::new();
    low.write(key);
    let mut high = DefaultHasher::new();
    high.write_u8(0xa5);
    high.write(key);
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// Finishes a pass a crash interrupted: carries out its marker if it got
/// that far, else forgets the staged files. Called when a log opens.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<(), LogError> {
    let staging = dir.join(STAGING_DIR);
    match fs::read_to_string(staging.join(SWAP_MARKER)) {
        Ok(text) => {
            let swaps = parse_marker(&text)
                .ok_or_else(|| io::Error::other(format!("unreadable cleaner swap marker in {}", staging.display())))?;
            tracing::info!(dir = %dir.display(), segments = swaps.len(), "finishing an interrupted compaction");
            carry_out(dir, &swaps)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if staging.exists() {
                tracing::info!(dir = %dir.display(), "discarding the staged segments of an interrupted compaction");
            }
            discard_staging(dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// Debug builds only: with `CHRONIK_CLEANER_STEP_DELAY_MS` set, each step
/// of a pass (a staged segment, the marker, a swapped segment) waits that
/// long, so that a test's kill -9 lands inside a pass.
fn test_pause() {
    #[cfg(debug_assertions)]
    {
        static DELAY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let delay = DELAY.get_or_init(|| std::env::var("CHRONIK_CLEANER_STEP_DELAY_MS").ok()?.parse().ok());
        if let Some(ms) = delay {
            std::thread::sleep(Duration::from_millis(*ms));
        }
    }
}

fn discard_staging(dir: &Path) -> Result<(), LogError> {
    match fs::remove_dir_all(dir.join(STAGING_DIR)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The commit point of a pass: written whole (temp file, fsync, rename,
/// directory fsync) before any live file changes.
fn write_marker(dir: &Path, swaps: &[Swap]) -> io::Result<()> {
    let staging = dir.join(STAGING_DIR);
    let mut text = String::new();
    for swap in swaps {
        let line: Vec<String> = swap
            .replaces
            .iter()
            .map(|(base, size)| format!("{base}:{size}"))
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    let tmp = staging.join(format!("{SWAP_MARKER}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, staging.join(SWAP_MARKER))?;
    sync_dir(&staging)
}

fn parse_marker(text: &str) -> Option<Vec<Swap>> {
    text.lines()
        .map(|line| {
            let replaces = line
                .split_whitespace()
                .map(|item| {
                    let (base, size) = item.split_once(':')?;
                    Some((base.parse().ok()?, size.parse().ok()?))
                })
                .collect::<Option<Vec<(i64, u64)>>>()?;
            (!replaces.is_empty()).then_some(Swap { replaces })
        })
        .collect()
}

/// Moves each staged segment in and deletes the segments it replaces, then
/// the marker. Every step can be repeated after a crash: a file already
/// moved is no longer staged, a file already deleted is not found.
/// Carries out a swap whose marker was found at open.
fn carry_out(dir: &Path, swaps: &[Swap]) -> Result<(), LogError> {
    swap_files(dir, swaps)?;
    discard_staging(dir)?;
    sync_dir(dir)?;
    Ok(())
}

/// Moves the staged files in and deletes the replaced ones; idempotent.
fn swap_files(dir: &Path, swaps: &[Swap]) -> Result<(), LogError> {
    let staging = dir.join(STAGING_DIR);
    for swap in swaps {
        for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            match fs::rename(
                segment_path(&staging, swap.base(), suffix),
                segment_path(dir, swap.base(), suffix),
            ) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        for &(base, _) in &swap.replaces[1..] {
            crate::segment::delete_segment_files(dir, base)?;
        }
        test_pause();
    }
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests;
