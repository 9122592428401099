//! The files raft-engine keeps the Raft log in: raft-engine's own file
//! system, except that a file's pages leave the page cache once fsynced.
//!
//! The Raft log is written once and read back only when a follower is far
//! behind or at recovery; applied entries are served from memory. Keeping
//! its pages cached gains nothing and makes every write land in memory the
//! kernel has not used recently. On virtual machines that hand free memory
//! back to the host, writing such memory costs about ten times writing pages
//! freed a moment ago (measured with dd on the benchmark machine: 0.4 GB/s
//! against 4 GB/s), and the Raft log write was a quarter of a busy broker's
//! CPU. Dropped pages are reused by the next writes instead.

use std::fs::File;
use std::io::Result;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raft_engine::env::{DefaultFileSystem, FileSystem, Handle, Permission};
use rustix::fs::{Advice, fadvise};

type Inner = DefaultFileSystem;

/// The smallest page size of the platforms we build for. Were pages larger,
/// the kernel would keep the partial page at the end of a range, as wanted.
const PAGE_BYTES: u64 = 4096;

pub(crate) struct UncachedLogFiles(Inner);

impl UncachedLogFiles {
    pub(crate) fn new() -> Self {
        UncachedLogFiles(DefaultFileSystem)
    }
}

pub(crate) struct LogFileHandle {
    inner: Arc<<Inner as FileSystem>::Handle>,
    /// A second descriptor of the same file, to advise the kernel on:
    /// raft-engine's own is private to it.
    advise: File,
    /// Pages before this offset have been dropped already.
    dropped_to: AtomicU64,
}

impl LogFileHandle {
    fn new(inner: <Inner as FileSystem>::Handle, path: &Path) -> Result<Self> {
        Ok(LogFileHandle {
            inner: Arc::new(inner),
            advise: File::open(path)?,
            dropped_to: AtomicU64::new(0),
        })
    }
}

impl Handle for LogFileHandle {
    fn truncate(&self, offset: usize) -> Result<()> {
        self.inner.truncate(offset)
    }

    fn file_size(&self) -> Result<usize> {
        self.inner.file_size()
    }

    fn sync(&self) -> Result<()> {
        injected_fsync_failure()?;
        self.inner.sync()?;
        // Whole pages only: dropping the partly written last page would make
        // the next append read it back from disk first.
        let end = self.inner.file_size()? as u64 / PAGE_BYTES * PAGE_BYTES;
        let start = self.dropped_to.swap(end, Ordering::Relaxed).min(end);
        if let Some(len) = NonZeroU64::new(end - start) {
            // Synced pages are clean, so this only frees them; it is advice,
            // and a refusal changes nothing but speed.
            let _ = fadvise(&self.advise, start, Some(len), Advice::DontNeed);
        }
        Ok(())
    }
}

/// A test hook, in debug builds only: while the file named by
/// `CHRONIK_FAIL_FSYNC_IF_EXISTS` exists, every fsync of the Raft log fails,
/// as a failing disk's would.
#[cfg(debug_assertions)]
fn injected_fsync_failure() -> Result<()> {
    match std::env::var_os("CHRONIK_FAIL_FSYNC_IF_EXISTS") {
        Some(trigger) if Path::new(&trigger).exists() => Err(std::io::Error::other(
            "fsync failed (injected by CHRONIK_FAIL_FSYNC_IF_EXISTS)",
        )),
        _ => Ok(()),
    }
}

#[cfg(not(debug_assertions))]
fn injected_fsync_failure() -> Result<()> {
    Ok(())
}

impl FileSystem for UncachedLogFiles {
    type Handle = LogFileHandle;
    type Reader = <Inner as FileSystem>::Reader;
    type Writer = <Inner as FileSystem>::Writer;

    fn create<P: AsRef<Path>>(&self, path: P) -> Result<Self::Handle> {
        LogFileHandle::new(self.0.create(path.as_ref())?, path.as_ref())
    }

    fn open<P: AsRef<Path>>(&self, path: P, perm: Permission) -> Result<Self::Handle> {
        LogFileHandle::new(self.0.open(path.as_ref(), perm)?, path.as_ref())
    }

    fn delete<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        self.0.delete(path)
    }

    fn rename<P: AsRef<Path>>(&self, src_path: P, dst_path: P) -> Result<()> {
        self.0.rename(src_path, dst_path)
    }

    fn new_reader(&self, handle: Arc<Self::Handle>) -> Result<Self::Reader> {
        self.0.new_reader(handle.inner.clone())
    }

    fn new_writer(&self, handle: Arc<Self::Handle>) -> Result<Self::Writer> {
        self.0.new_writer(handle.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::Entry;
    use raft_engine::LogBatch;

    use super::UncachedLogFiles;

    type LogEngine = raft_engine::Engine<UncachedLogFiles>;
    use crate::storage::EntryExt;

    fn open(dir: &std::path::Path) -> LogEngine {
        let config = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        LogEngine::open_with_file_system(config, std::sync::Arc::new(UncachedLogFiles::new())).unwrap()
    }

    #[test]
    fn entries_written_and_synced_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (1..=100)
            .map(|index| Entry {
                index,
                term: 1,
                data: vec![index as u8; 4096].into(),
                ..Default::default()
            })
            .collect();
        {
            let engine = open(dir.path());
            let mut batch = LogBatch::default();
            batch.add_entries::<EntryExt>(7, &entries).unwrap();
            engine.write(&mut batch, true).unwrap();
            let mut read = Vec::new();
            engine.fetch_entries_to::<EntryExt>(7, 1, 101, None, &mut read).unwrap();
            assert_eq!(read, entries, "read back after the pages were dropped");
        }
        let engine = open(dir.path());
        let mut read = Vec::new();
        engine.fetch_entries_to::<EntryExt>(7, 1, 101, None, &mut read).unwrap();
        assert_eq!(read, entries);
    }
}
