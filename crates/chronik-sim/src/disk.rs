//! The simulated disk under a node's Raft log: raft-engine's own files,
//! with what was fsynced tracked, so that a power loss can take back the
//! rest; and what a power loss does to the partition logs.
//!
//! A write lands in the file at once (as in the page cache); `sync` records
//! how far the file's writes are durable. (The extent written is tracked,
//! not the file's size: raft-engine preallocates.) A power loss cuts every
//! file back to its durable extent, or tears it: part of the unsynced tail
//! survives, and its last byte may be garbage. Files never synced vanish. A
//! process crash (kill -9) loses nothing that was written, as on a real
//! machine.

use std::collections::{BTreeMap, HashMap};
use std::io::{Result, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use raft_engine::env::{DefaultFileSystem, FileSystem, Handle, Permission, WriteExt};
use rand::Rng;

type Inner = DefaultFileSystem;

/// Per file: how far it was written, and how far durably (`None`: never
/// synced).
#[derive(Debug, Clone, Copy)]
struct Extent {
    written: u64,
    synced: Option<u64>,
}

#[derive(Default)]
struct Tracking {
    extents: BTreeMap<PathBuf, Extent>,
    /// Set while a killed node's engine is dropped: its closing syncs must
    /// not count, since a killed process syncs nothing.
    frozen: bool,
}

type Durable = Arc<Mutex<Tracking>>;

#[derive(Default)]
pub struct SimFiles {
    durable: Durable,
}

pub struct SimHandle {
    inner: Arc<<Inner as FileSystem>::Handle>,
    path: PathBuf,
    durable: Durable,
}

impl Handle for SimHandle {
    fn truncate(&self, offset: usize) -> Result<()> {
        self.inner.truncate(offset)
    }

    fn file_size(&self) -> Result<usize> {
        self.inner.file_size()
    }

    /// Makes the file durable up to its current length. The real fsync is
    /// skipped: durability is what this model says it is.
    fn sync(&self) -> Result<()> {
        let mut tracking = lock(&self.durable);
        if tracking.frozen {
            return Ok(());
        }
        if let Some(extent) = tracking.extents.get_mut(&self.path) {
            extent.synced = Some(extent.written);
        }
        Ok(())
    }
}

fn lock(durable: &Durable) -> std::sync::MutexGuard<'_, Tracking> {
    durable.lock().unwrap_or_else(|e| e.into_inner())
}

/// raft-engine's writer, noting how far each write reaches.
pub struct SimWriter {
    inner: <Inner as FileSystem>::Writer,
    position: u64,
    path: PathBuf,
    durable: Durable,
}

impl Write for SimWriter {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let written = self.inner.write(buf)?;
        self.position += written as u64;
        if let Some(extent) = lock(&self.durable).extents.get_mut(&self.path) {
            extent.written = extent.written.max(self.position);
        }
        Ok(written)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

impl Seek for SimWriter {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        self.position = self.inner.seek(pos)?;
        Ok(self.position)
    }
}

impl WriteExt for SimWriter {
    fn truncate(&mut self, offset: usize) -> Result<()> {
        self.inner.truncate(offset)?;
        if let Some(extent) = lock(&self.durable).extents.get_mut(&self.path) {
            extent.written = extent.written.min(offset as u64);
            extent.synced = extent.synced.map(|s| s.min(offset as u64));
        }
        Ok(())
    }

    fn allocate(&mut self, offset: usize, size: usize) -> Result<()> {
        self.inner.allocate(offset, size)
    }
}

/// What a power loss did to the files, for the run's history.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub bytes_lost: u64,
    pub files_torn: usize,
    pub files_vanished: usize,
}

impl SimFiles {
    /// Stops counting syncs: the process is being killed, and what its
    /// engine does as it is dropped never reaches the disk's durable part.
    pub fn freeze(&self) {
        lock(&self.durable).frozen = true;
    }

    /// Counts syncs again, for the next process on these files.
    pub fn thaw(&self) {
        lock(&self.durable).frozen = false;
    }

    /// Takes back what was never fsynced. The engine using these files must
    /// be dropped first.
    pub fn power_loss(&self, rng: &mut impl Rng, tear: bool) -> Result<Loss> {
        let mut tracking = lock(&self.durable);
        let mut loss = Loss::default();
        for (path, extent) in tracking.extents.iter_mut() {
            let Some(synced) = extent.synced else {
                if std::fs::remove_file(path).is_ok() {
                    loss.bytes_lost += extent.written;
                    loss.files_vanished += 1;
                }
                continue;
            };
            if extent.written <= synced {
                continue;
            }
            let unsynced = extent.written - synced;
            let kept = if tear { rng.gen_range(0..=unsynced) } else { 0 };
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(synced + kept)?;
            if kept > 0 && rng.gen_bool(0.5) {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&[rng.r#gen::<u8>()], synced + kept - 1)?;
                loss.files_torn += 1;
            }
            loss.bytes_lost += unsynced - kept;
            *extent = Extent {
                written: synced + kept,
                synced: Some(synced + kept),
            };
        }
        tracking.extents.retain(|_, extent| extent.synced.is_some());
        Ok(loss)
    }

    fn track(&self, path: &Path, extent: Extent) {
        lock(&self.durable).extents.insert(path.to_path_buf(), extent);
    }

    fn handle(&self, inner: <Inner as FileSystem>::Handle, path: &Path) -> SimHandle {
        SimHandle {
            inner: Arc::new(inner),
            path: path.to_path_buf(),
            durable: self.durable.clone(),
        }
    }
}

impl FileSystem for SimFiles {
    type Handle = SimHandle;
    type Reader = <Inner as FileSystem>::Reader;
    type Writer = SimWriter;

    fn create<P: AsRef<Path>>(&self, path: P) -> Result<Self::Handle> {
        let path = path.as_ref();
        let inner = DefaultFileSystem.create(path)?;
        self.track(
            path,
            Extent {
                written: 0,
                synced: None,
            },
        );
        Ok(self.handle(inner, path))
    }

    fn open<P: AsRef<Path>>(&self, path: P, perm: Permission) -> Result<Self::Handle> {
        let path = path.as_ref();
        let inner = DefaultFileSystem.open(path, perm)?;
        // A file found at start survived the last power loss whole.
        let len = inner.file_size()? as u64;
        lock(&self.durable).extents.entry(path.to_path_buf()).or_insert(Extent {
            written: len,
            synced: Some(len),
        });
        Ok(self.handle(inner, path))
    }

    fn delete<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        DefaultFileSystem.delete(path.as_ref())?;
        lock(&self.durable).extents.remove(path.as_ref());
        Ok(())
    }

    fn rename<P: AsRef<Path>>(&self, src_path: P, dst_path: P) -> Result<()> {
        DefaultFileSystem.rename(src_path.as_ref(), dst_path.as_ref())?;
        let mut tracking = lock(&self.durable);
        if let Some(extent) = tracking.extents.remove(src_path.as_ref()) {
            tracking.extents.insert(dst_path.as_ref().to_path_buf(), extent);
        }
        Ok(())
    }

    fn new_reader(&self, handle: Arc<Self::Handle>) -> Result<Self::Reader> {
        DefaultFileSystem.new_reader(handle.inner.clone())
    }

    fn new_writer(&self, handle: Arc<Self::Handle>) -> Result<Self::Writer> {
        Ok(SimWriter {
            inner: DefaultFileSystem.new_writer(handle.inner.clone())?,
            position: 0,
            path: handle.path.clone(),
            durable: self.durable.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn a_power_loss_takes_back_only_what_was_not_synced() {
        let dir = tempfile::tempdir().unwrap();
        let files = SimFiles::default();
        let path = dir.path().join("a");
        let handle = Arc::new(files.create(&path).unwrap());
        let mut writer = files.new_writer(handle.clone()).unwrap();
        writer.write_all(b"durable").unwrap();
        handle.sync().unwrap();
        writer.write_all(b" lost").unwrap();
        let fresh = dir.path().join("b");
        files.create(&fresh).unwrap();
        files.freeze();
        drop((writer, handle));

        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let loss = files.power_loss(&mut rng, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"durable");
        assert!(!fresh.exists(), "a file never synced vanishes");
        assert_eq!((loss.bytes_lost, loss.files_vanished), (5, 1));
    }
}

#[cfg(test)]
mod engine_tests {
    use raft_engine::{Engine, LogBatch};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn raft_engine_recovers_from_a_power_loss_without_its_unsynced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(SimFiles::default());
        let config = raft_engine::Config {
            dir: dir.path().to_string_lossy().into_owned(),
            ..Default::default()
        };
        let engine = Engine::open_with_file_system(config.clone(), files.clone()).unwrap();
        let mut batch = LogBatch::default();
        batch.put(1, b"k".to_vec(), b"v".to_vec()).unwrap();
        engine.write(&mut batch, true).unwrap();
        let mut batch = LogBatch::default();
        batch.put(1, b"k2".to_vec(), vec![7; 1000]).unwrap();
        engine.write(&mut batch, false).unwrap();
        files.freeze();
        drop(engine);
        let loss = files.power_loss(&mut ChaCha8Rng::seed_from_u64(1), false).unwrap();
        files.thaw();
        assert!(loss.bytes_lost > 1000, "{loss:?}");
        let engine = Engine::open_with_file_system(config, files.clone()).unwrap();
        assert!(engine.get(1, b"k").is_some());
        assert!(engine.get(1, b"k2").is_none());
    }
}

/// What a power loss does to a node's partition logs. Each partition's
/// data up to its last checkpoint was fsynced before the checkpoint was
/// written, and up to `synced` (per partition directory) where the node
/// fsynced its segments itself; what its active segment holds beyond that
/// may be lost, or torn at any byte. (Closed segments were fsynced when
/// they rolled.) Returns the bytes lost.
pub fn partition_power_loss(
    partitions: &Path,
    synced: &HashMap<PathBuf, i64>,
    rng: &mut impl Rng,
    tear: bool,
) -> Result<u64> {
    let Ok(entries) = std::fs::read_dir(partitions) else {
        return Ok(0);
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    let mut lost = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let checkpointed = chronik_state::partition::ApplyCheckpoint::load(dir)?.next_offset;
        let durable_offset = checkpointed.max(synced.get(dir).copied().unwrap_or(0));
        let Some((base, segment)) = active_segment(dir)? else {
            continue;
        };
        let data = std::fs::read(&segment)?;
        let durable = if base >= durable_offset {
            0
        } else {
            position_of(&data, durable_offset)
        };
        let unsynced = (data.len() - durable) as u64;
        if unsynced == 0 {
            continue;
        }
        let kept = if tear { rng.gen_range(0..=unsynced) } else { 0 };
        let file = std::fs::OpenOptions::new().write(true).open(&segment)?;
        file.set_len(durable as u64 + kept)?;
        if kept > 0 && rng.gen_bool(0.5) {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&[rng.r#gen::<u8>()], durable as u64 + kept - 1)?;
        }
        lost += unsynced - kept;
    }
    Ok(lost)
}

/// The segment with the highest base offset, and that offset.
fn active_segment(dir: &Path) -> Result<Option<(i64, PathBuf)>> {
    let mut newest: Option<(i64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let base = path
            .extension()
            .filter(|e| *e == "log")
            .and_then(|_| path.file_stem()?.to_str()?.parse::<i64>().ok());
        if let Some(base) = base
            && newest.as_ref().is_none_or(|(b, _)| base > *b)
        {
            newest = Some((base, path));
        }
    }
    Ok(newest)
}

/// Where the first batch at or past `offset` starts in a segment's bytes
/// (their end when none does), read from the batches' length fields.
fn position_of(data: &[u8], offset: i64) -> usize {
    let mut position = 0;
    while let Some(header) = data.get(position..position + 12) {
        let base = i64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(header[8..].try_into().expect("4 bytes"));
        if base >= offset || length < 0 {
            return position;
        }
        position += 12 + length as usize;
    }
    position.min(data.len())
}
