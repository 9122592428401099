//! Sparse per-segment indexes, kept in memory and appended to small files.
//!
//! * offset index (`.index`): (relative offset u32, position u32) pairs; each
//!   maps the base offset of a batch to where that batch starts in the segment.
//! * time index (`.timeindex`): (timestamp i64, relative offset u32) pairs;
//!   each says "no batch before this point has a larger max timestamp", and
//!   the offset is the first batch holding that timestamp.
//!
//! Entries are strictly increasing. Files are written lazily (on flush and
//! when a segment is sealed): the active segment's indexes are rebuilt by
//! recovery anyway, and a sealed segment's are fsynced when sealed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A fixed-size big-endian index record.
pub(crate) trait IndexEntry: Copy {
    const LEN: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Self;
    /// The offset the entry points at, relative to the segment base.
    fn relative_offset(&self) -> u32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const LEN: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes")),
        }
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const LEN: usize = 12;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        Self {
            timestamp: i64::from_be_bytes(buf[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes")),
        }
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

pub(crate) struct Index<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many leading entries are already in the file.
    persisted: usize,
}

impl<E: IndexEntry> Index<E> {
    /// Creates an empty index, truncating any existing file.
    pub(crate) fn create(path: PathBuf) -> io::Result<Self> {
        let mut index = Self {
            path,
            entries: Vec::new(),
            persisted: 0,
        };
        index.reset()?;
        Ok(index)
    }

    /// Loads the index file. Returns an empty, truncated index and `false`
    /// if the file is missing, has a partial entry, or holds more than
    /// `max_entries` entries (so garbage can never make us allocate much).
    pub(crate) fn open(path: PathBuf, max_entries: u64) -> io::Result<(Self, bool)> {
        match read_entries(&path, max_entries)? {
            Some(entries) => {
                let persisted = entries.len();
                let index = Self {
                    path,
                    entries,
                    persisted,
                };
                Ok((index, true))
            }
            None => Ok((Self::create(path)?, false)),
        }
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub(crate) fn push(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// Drops all entries, in memory and on disk.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.entries.clear();
        self.persisted = 0;
        open_for_write(&self.path)?.set_len(0)
    }

    /// Drops the entries pointing at `relative_offset` or beyond, in memory
    /// and on disk (not fsynced: only an active segment is ever cut, and
    /// recovery rebuilds its indexes).
    pub(crate) fn truncate_from(&mut self, relative_offset: u32) -> io::Result<()> {
        let len = self.entries.partition_point(|e| e.relative_offset() < relative_offset);
        if self.persisted > len {
            open_for_write(&self.path)?.set_len((len * E::LEN) as u64)?;
            self.persisted = len;
        }
        self.entries.truncate(len);
        Ok(())
    }

    /// Appends entries not yet in the file; fsyncs them if `sync`.
    pub(crate) fn persist(&mut self, sync: bool) -> io::Result<()> {
        if self.persisted == self.entries.len() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * E::LEN);
        for entry in &self.entries[self.persisted..] {
            entry.encode(&mut buf);
        }
        let file = open_for_write(&self.path)?;
        file.write_all_at(&buf, (self.persisted * E::LEN) as u64)?;
        if sync {
            file.sync_data()?;
        }
        self.persisted = self.entries.len();
        Ok(())
    }
}

impl Index<OffsetEntry> {
    /// Position of the last indexed batch whose base offset is at or below
    /// `relative_offset`; 0 (the segment start) if there is none.
    pub(crate) fn floor_position(&self, relative_offset: u32) -> u64 {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map_or(0, |i| u64::from(self.entries[i].position))
    }
}

impl Index<TimeEntry> {
    /// Relative offset of the last entry with a timestamp below `timestamp`:
    /// every batch before that offset has a smaller max timestamp.
    pub(crate) fn last_below(&self, timestamp: i64) -> Option<u32> {
        let after = self.entries.partition_point(|e| e.timestamp < timestamp);
        after.checked_sub(1).map(|i| self.entries[i].relative_offset)
    }
}

fn open_for_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(false).open(path)
}

fn read_entries<E: IndexEntry>(path: &Path, max_entries: u64) -> io::Result<Option<Vec<E>>> {
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.len() % E::LEN as u64 == 0 && meta.len() / E::LEN as u64 <= max_entries => {
            std::fs::read(path)?
        }
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The file may have changed between metadata and read; re-check.
    if bytes.len() % E::LEN != 0 {
        return Ok(None);
    }
    Ok(Some(bytes.chunks_exact(E::LEN).map(E::decode).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut index = Index::<OffsetEntry>::create(path.clone()).unwrap();
        for i in 1..=3 {
            index.push(OffsetEntry {
                relative_offset: i * 10,
                position: i * 100,
            });
            index.persist(false).unwrap();
        }
        let (loaded, ok) = Index::<OffsetEntry>::open(path.clone(), 3).unwrap();
        assert!(ok);
        assert_eq!(loaded.entries(), index.entries());
        assert_eq!(loaded.floor_position(0), 0);
        assert_eq!(loaded.floor_position(9), 0);
        assert_eq!(loaded.floor_position(10), 100);
        assert_eq!(loaded.floor_position(25), 200);
        assert_eq!(loaded.floor_position(u32::MAX), 300);

        // Too many entries for the bound: treated as garbage and truncated.
        let (loaded, ok) = Index::<OffsetEntry>::open(path.clone(), 2).unwrap();
        assert!(!ok);
        assert!(loaded.entries().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn truncate_from_cuts_memory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut index = Index::<OffsetEntry>::create(path.clone()).unwrap();
        let entry = |i: u32| OffsetEntry {
            relative_offset: i * 10,
            position: i * 100,
        };
        (1..=3).for_each(|i| index.push(entry(i)));
        index.persist(false).unwrap();
        // Unpersisted entries are cut in memory only.
        (4..=5).for_each(|i| index.push(entry(i)));
        index.truncate_from(41).unwrap();
        assert_eq!(index.entries(), [1, 2, 3, 4].map(entry));
        // Persisted ones in the file too, so later entries follow directly.
        index.truncate_from(20).unwrap();
        assert_eq!(index.entries(), [entry(1)]);
        index.push(entry(6));
        index.persist(false).unwrap();
        let (loaded, ok) = Index::<OffsetEntry>::open(path, 10).unwrap();
        assert!(ok);
        assert_eq!(loaded.entries(), [entry(1), entry(6)]);
    }

    #[test]
    fn rejects_partial_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        std::fs::write(&path, [0u8; 13]).unwrap();
        let (index, ok) = Index::<TimeEntry>::open(path, 100).unwrap();
        assert!(!ok);
        assert!(index.entries().is_empty());
    }

    #[test]
    fn time_lookup_finds_last_smaller_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::<TimeEntry>::create(dir.path().join("t")).unwrap();
        for (timestamp, relative_offset) in [(100, 0), (200, 5), (300, 9)] {
            index.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
        assert_eq!(index.last_below(100), None);
        assert_eq!(index.last_below(101), Some(0));
        assert_eq!(index.last_below(300), Some(5));
        assert_eq!(index.last_below(i64::MAX), Some(9));
    }
}
