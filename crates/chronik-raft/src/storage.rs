//! raft-rs `Storage` for one group, backed by the raft-engine shared by all
//! groups of the node.
//!
//! Per group, raft-engine holds the entries plus three keys: the hard state,
//! the conf state, and the index and term of the last compacted entry.
//!
//! Entries written but not yet applied are also kept in memory, so that
//! applying them (and sending them to followers) does not read them back from
//! the log files.
//!
//! An entry whose body the state machine keeps itself (see
//! `StateMachine::keep_bodies`) is stored as a reference: a normal entry
//! with no data and the reference as its context (entries proposed here
//! never carry a context). Reading it back asks the state machine's
//! [`Bodies`] for the body.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::env::FileSystem;
use raft_engine::{Engine, LogBatch, MessageExt};

use crate::term_runs::TermRuns;
use crate::{Bodies, Body, GroupId};

pub(crate) const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
/// The index of the entry (or snapshot) the stored conf state reflects.
const CONF_INDEX_KEY: &[u8] = b"conf_index";
const COMPACTED_KEY: &[u8] = b"compacted";

/// A group created with its voters starts as if entries up to this index
/// (all of term `INIT_TERM`) were applied and compacted. A replica added
/// later starts empty, at index 0, so the leader cannot send it entries and
/// sends a snapshot: that is how it learns the group's configuration (the
/// scheme TiKV uses).
pub(crate) const INIT_INDEX: u64 = 5;
const INIT_TERM: u64 = 5;

/// Teaches raft-engine where the index of a raft-rs entry is.
#[derive(Clone, Copy)]
pub(crate) struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// The bytes of entries all groups of a node keep in memory together (see
/// `MultiRaftConfig::entry_cache_bytes`), shared by their caches.
#[derive(Debug)]
pub(crate) struct CacheBudget {
    limit: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(CacheBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }
}

/// The newest entries of a group, contiguous by index, counted against the
/// node's budget.
struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget: Arc<CacheBudget>,
}

impl Drop for EntryCache {
    fn drop(&mut self) {
        self.clear();
    }
}

impl EntryCache {
    fn new(budget: Arc<CacheBudget>) -> Self {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn append(&mut self, new: &[Entry]) {
        let Some(first) = new.first() else { return };
        // A new leader's entries replace ours from their first index on.
        while self.entries.back().is_some_and(|e| e.index >= first.index) {
            self.pop_back();
        }
        if self.entries.back().is_some_and(|e| e.index + 1 != first.index) {
            self.clear();
        }
        for entry in new {
            self.bytes += entry.data.len();
            self.budget.used.fetch_add(entry.data.len(), Ordering::Relaxed);
            self.entries.push_back(entry.clone());
        }
        // The group that adds pays: it forgets its oldest entries, which are
        // read back from the log store if still needed. Groups hold entries
        // only until applied and replicated, so idle ones hold none.
        while self.budget.over() && !self.entries.is_empty() {
            self.pop_front();
        }
    }

    fn drop_through(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.forget(e.data.len());
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.forget(e.data.len());
        }
    }

    fn forget(&mut self, bytes: usize) {
        self.bytes -= bytes;
        let before = self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "the budget counts every cached byte");
    }

    /// Entries `[low, high)`, if all of them are here.
    fn range(&self, low: u64, high: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.index;
        let last = self.entries.back()?.index;
        if low < first || high > last + 1 {
            return None;
        }
        let start = (low - first) as usize;
        Some(
            self.entries
                .range(start..start + (high - low) as usize)
                .cloned()
                .collect(),
        )
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.forget(self.bytes);
    }
}

/// Groups whose leader needs a snapshot that is not prepared yet; the loop
/// asks the state machine for one.
pub(crate) type SnapshotRequests = Arc<Mutex<Vec<GroupId>>>;

pub(crate) struct GroupStorage<F: FileSystem> {
    engine: Arc<Engine<F>>,
    group: GroupId,
    /// (index, term) of the last compacted entry, and (in `terms`) the last
    /// index in the log store: raft-rs asks for them constantly (every
    /// heartbeat), so they are kept here rather than looked up in
    /// raft-engine each time.
    compacted: Cell<(u64, u64)>,
    terms: RefCell<TermRuns>,
    cache: RefCell<EntryCache>,
    prepared: RefCell<Option<Snapshot>>,
    snapshot_requests: SnapshotRequests,
    bodies: Option<Arc<dyn Bodies>>,
}

fn store_error(e: impl std::error::Error + Send + Sync + 'static) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl<F: FileSystem> GroupStorage<F> {
    pub(crate) fn new(
        engine: Arc<Engine<F>>,
        group: GroupId,
        snapshot_requests: SnapshotRequests,
        cache_budget: Arc<CacheBudget>,
        bodies: Option<Arc<dyn Bodies>>,
    ) -> Self {
        let compacted = stored_compacted(&engine, group);
        let last_index = engine.last_index(group).unwrap_or(compacted.0);
        GroupStorage {
            engine,
            group,
            compacted: Cell::new(compacted),
            terms: RefCell::new(TermRuns::after(last_index)),
            cache: RefCell::new(EntryCache::new(cache_budget)),
            prepared: RefCell::default(),
            snapshot_requests,
            bodies,
        }
    }

    /// Keeps a snapshot the state machine took, for raft-rs to send.
    pub(crate) fn set_prepared(&self, snapshot: Snapshot) {
        *self.prepared.borrow_mut() = Some(snapshot);
    }

    /// Replaces the group's log with `snapshot`: every entry goes, and the
    /// snapshot's index and term become the compaction point.
    pub(crate) fn apply_snapshot(
        &self,
        batch: &mut LogBatch,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) -> raft_engine::Result<()> {
        let meta = snapshot.get_metadata();
        batch.add_command(self.group, raft_engine::Command::Clean);
        batch.put_message(self.group, CONF_STATE_KEY.to_vec(), meta.get_conf_state())?;
        batch.put(self.group, CONF_INDEX_KEY.to_vec(), meta.index.to_be_bytes().to_vec())?;
        batch.put(
            self.group,
            COMPACTED_KEY.to_vec(),
            compacted_value(meta.index, meta.term),
        )?;
        batch.put_message(self.group, HARD_STATE_KEY.to_vec(), hard_state)?;
        self.compacted.set((meta.index, meta.term));
        self.terms.borrow_mut().reset_after(meta.index);
        self.cache.borrow_mut().clear();
        *self.prepared.borrow_mut() = None;
        Ok(())
    }

    /// Keeps entries just handed to the log store (written before raft-rs
    /// looks at the store again), until they are applied.
    pub(crate) fn cache_entries(&self, entries: &[Entry]) {
        self.terms.borrow_mut().append(entries);
        self.cache.borrow_mut().append(entries);
    }

    /// Forgets cached entries up to and including `index`: ones that are
    /// applied and, on a leader, replicated to every follower.
    pub(crate) fn release_through(&self, index: u64) {
        self.cache.borrow_mut().drop_through(index);
    }

    /// Whether the group has ever been initialised on this node.
    pub(crate) fn exists(engine: &Engine<F>, group: GroupId) -> bool {
        engine.get(group, CONF_STATE_KEY).is_some()
    }

    /// Records the initial membership of a brand-new group, as of `INIT_INDEX`.
    pub(crate) fn initialise(engine: &Engine<F>, group: GroupId, voters: &[u64]) -> raft_engine::Result<()> {
        let conf = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let hard_state = HardState {
            term: INIT_TERM,
            commit: INIT_INDEX,
            ..Default::default()
        };
        let mut batch = LogBatch::default();
        batch.put_message(group, CONF_STATE_KEY.to_vec(), &conf)?;
        batch.put(group, CONF_INDEX_KEY.to_vec(), INIT_INDEX.to_be_bytes().to_vec())?;
        batch.put(group, COMPACTED_KEY.to_vec(), compacted_value(INIT_INDEX, INIT_TERM))?;
        batch.put_message(group, HARD_STATE_KEY.to_vec(), &hard_state)?;
        engine.write(&mut batch, true)?;
        Ok(())
    }

    /// Records a replica added to a running group: no configuration, no
    /// entries. Its leader sends it a snapshot, which carries both.
    pub(crate) fn initialise_empty(engine: &Engine<F>, group: GroupId) -> raft_engine::Result<()> {
        let mut batch = LogBatch::default();
        batch.add_command(group, raft_engine::Command::Clean);
        batch.put_message(group, CONF_STATE_KEY.to_vec(), &ConfState::default())?;
        engine.write(&mut batch, true)?;
        Ok(())
    }

    /// Makes the configuration that applying the entry at `index` produced
    /// durable before anything acts on it.
    pub(crate) fn save_conf_state(&self, conf: &ConfState, index: u64) -> raft_engine::Result<()> {
        let mut batch = LogBatch::default();
        batch.put_message(self.group, CONF_STATE_KEY.to_vec(), conf)?;
        batch.put(self.group, CONF_INDEX_KEY.to_vec(), index.to_be_bytes().to_vec())?;
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    /// The index whose configuration the stored conf state is; entries up to
    /// it must not be applied to the configuration again.
    pub(crate) fn conf_index(&self) -> u64 {
        match self.engine.get(self.group, CONF_INDEX_KEY) {
            Some(v) => <[u8; 8]>::try_from(&v[..]).map_or(0, u64::from_be_bytes),
            None => 0,
        }
    }

    /// Deletes every trace of the group.
    pub(crate) fn destroy(engine: &Engine<F>, group: GroupId) -> raft_engine::Result<()> {
        let mut batch = LogBatch::default();
        batch.add_command(group, raft_engine::Command::Clean);
        engine.write(&mut batch, true)?;
        Ok(())
    }

    /// (index, term) of the last entry dropped by compaction; (0, 0) if none.
    fn compacted(&self) -> (u64, u64) {
        self.compacted.get()
    }

    /// Drops entries up to and including `index`, keeping its term so that
    /// raft-rs can still match the entry after it.
    pub(crate) fn compact_to(&self, index: u64) -> raft::Result<()> {
        let (compacted, _) = self.compacted();
        if index <= compacted || index > self.last_index_inner() {
            return Ok(());
        }
        let term = raft::Storage::term(self, index)?;
        let mut batch = LogBatch::default();
        batch
            .put(self.group, COMPACTED_KEY.to_vec(), compacted_value(index, term))
            .map_err(store_error)?;
        batch.add_command(self.group, raft_engine::Command::Compact { index: index + 1 });
        self.engine.write(&mut batch, false).map_err(store_error)?;
        self.compacted.set((index, term));
        self.terms.borrow_mut().compact_to(index);
        Ok(())
    }

    fn last_index_inner(&self) -> u64 {
        self.terms.borrow().last()
    }

    /// Replaces a stored reference with the body it stands for. A body that
    /// is gone (records deleted or compacted since) reads as compacted when
    /// raft-rs would send it (`sending`): it then sends that follower a
    /// snapshot. For raft-rs's own reads (the entries to apply, a scan for
    /// configuration changes), which fail fatally, one the state machine
    /// applied and made durable stands empty, as apply skips it: a replay
    /// after a power loss can start below the last checkpoint, since
    /// commit indexes are written without an fsync.
    fn fill_body(&self, entry: &mut Entry, sending: bool) -> raft::Result<()> {
        let Some(bodies) = &self.bodies else {
            tracing::error!(
                group = self.group,
                index = entry.index,
                "a stored reference, and no bodies to read it"
            );
            return Err(raft::Error::Store(StorageError::Unavailable));
        };
        match bodies.read(&entry.context) {
            Ok(Body::Whole(body)) => entry.data = body.into(),
            Ok(Body::Applied) if !sending => entry.data = Default::default(),
            Ok(Body::Applied) => return Err(raft::Error::Store(StorageError::Compacted)),
            Err(why) => {
                tracing::warn!(
                    group = self.group,
                    index = entry.index,
                    "the body of a Raft entry is gone: {why}"
                );
                return Err(raft::Error::Store(StorageError::Compacted));
            }
        }
        entry.context = Default::default();
        Ok(())
    }
}

/// Whether `entry` was stored as a reference to a body kept elsewhere.
pub(crate) fn is_reference(entry: &Entry) -> bool {
    entry.get_entry_type() == raft::eraftpb::EntryType::EntryNormal
        && entry.data.is_empty()
        && !entry.context.is_empty()
}

/// `entry` as stored when its body is kept elsewhere, under `reference`.
pub(crate) fn as_reference(entry: &Entry, reference: Vec<u8>) -> Entry {
    debug_assert!(entry.context.is_empty(), "entries proposed here carry no context");
    Entry {
        data: Default::default(),
        context: reference.into(),
        ..entry.clone()
    }
}

impl<F: FileSystem> raft::Storage for GroupStorage<F> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hard_state: HardState = self
            .engine
            .get_message(self.group, HARD_STATE_KEY)
            .map_err(store_error)?
            .unwrap_or_default();
        let conf_state: ConfState = self
            .engine
            .get_message(self.group, CONF_STATE_KEY)
            .map_err(store_error)?
            .unwrap_or_default();
        Ok(RaftState::new(hard_state, conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted().0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_inner() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        if let Some(mut entries) = self.cache.borrow().range(low, high) {
            raft::util::limit_size(&mut entries, max_size);
            return Ok(entries);
        }
        let mut entries = Vec::with_capacity((high - low) as usize);
        let max_size = max_size.map(|s| s as usize);
        self.engine
            .fetch_entries_to::<EntryExt>(self.group, low, high, max_size, &mut entries)
            .map_err(store_error)?;
        if entries.iter().any(is_reference) {
            // The store measured references; the bodies are larger, so
            // they are read only as far as the size limit reaches (at
            // least one entry, as `raft::util::limit_size` keeps).
            let mut size = 0;
            let mut keep = entries.len();
            for (i, entry) in entries.iter_mut().enumerate() {
                if is_reference(entry) {
                    // raft-rs reads entries to send asynchronously-capable.
                    self.fill_body(entry, context.can_async())?;
                }
                size += u64::from(entry.compute_size());
                if i > 0 && max_size.is_some_and(|max| size > max as u64) {
                    keep = i;
                    break;
                }
            }
            entries.truncate(keep);
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (compacted, compacted_term) = self.compacted();
        if idx == compacted {
            return Ok(compacted_term);
        }
        if idx < compacted {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if let Some(term) = self.terms.borrow().term(idx) {
            return Ok(term);
        }
        match self
            .engine
            .get_entry::<EntryExt>(self.group, idx)
            .map_err(store_error)?
        {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compacted().0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_inner())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let wanted = request_index.max(self.compacted().0);
        // A snapshot prepared before `to` became a member does not name it,
        // and `to` would refuse it, again and again.
        if let Some(prepared) = self.prepared.borrow().as_ref()
            && prepared.get_metadata().index >= wanted
            && names(prepared.get_metadata().get_conf_state(), to)
        {
            return Ok(prepared.clone());
        }
        // Taking a snapshot needs the state machine, which only the loop
        // holds: ask for one, and raft-rs asks again later.
        let mut requests = self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner());
        if !requests.contains(&self.group) {
            requests.push(self.group);
        }
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

/// Whether `node` is a member (voter or learner, incoming or outgoing) of `conf`.
fn names(conf: &ConfState, node: u64) -> bool {
    conf.voters
        .iter()
        .chain(&conf.learners)
        .chain(&conf.voters_outgoing)
        .chain(&conf.learners_next)
        .any(|n| *n == node)
}

fn compacted_value(index: u64, term: u64) -> Vec<u8> {
    let mut value = index.to_be_bytes().to_vec();
    value.extend_from_slice(&term.to_be_bytes());
    value
}

fn stored_compacted<F: FileSystem>(engine: &Engine<F>, group: GroupId) -> (u64, u64) {
    match engine.get(group, COMPACTED_KEY) {
        Some(v) if v.len() == 16 => (
            u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
        ),
        _ => (0, 0),
    }
}

/// Encodes a hard state for the shared `LogBatch`.
pub(crate) fn put_hard_state(batch: &mut LogBatch, group: GroupId, hs: &HardState) -> raft_engine::Result<()> {
    debug_assert!(hs.is_initialized());
    batch.put_message(group, HARD_STATE_KEY.to_vec(), hs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_engine(dir: &std::path::Path) -> Arc<Engine<raft_engine::env::DefaultFileSystem>> {
        let config = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        Arc::new(Engine::open(config).unwrap())
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![0; 10].into(),
            ..Default::default()
        }
    }

    /// Found by the simulator: a snapshot prepared for one follower, before
    /// another joined as a learner, was sent to the newcomer, which refused
    /// it (it is not in its configuration), and so on forever: the move
    /// never finished.
    #[test]
    fn a_prepared_snapshot_goes_only_to_members_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        GroupStorage::initialise(&engine, 7, &[1, 2, 3]).unwrap();
        let requests = SnapshotRequests::default();
        let storage = GroupStorage::new(engine, 7, requests.clone(), CacheBudget::new(1 << 20), None);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = INIT_INDEX;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        storage.set_prepared(snapshot);
        assert!(raft::Storage::snapshot(&storage, 0, 2).is_ok(), "a member gets it");
        assert!(
            raft::Storage::snapshot(&storage, 0, 4).is_err(),
            "a newcomer gets a new one"
        );
        assert_eq!(*requests.lock().unwrap(), vec![7], "the state machine is asked for one");
    }

    /// Found by profiling 12 busy partitions: every lease renewal asked for
    /// the committed entry's term, the cache had released that entry once
    /// applied, and raft-engine read the whole entry back (a MiB, ten times
    /// a second per group): a third of the loop thread's time. The entries
    /// here never reach raft-engine, so any lookup there would fail.
    #[test]
    fn terms_of_released_entries_are_answered_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        GroupStorage::initialise(&engine, 7, &[1]).unwrap();
        let storage = GroupStorage::new(engine, 7, SnapshotRequests::default(), CacheBudget::new(1 << 20), None);
        let first = INIT_INDEX + 1;
        storage.cache_entries(&[entry(first, 2), entry(first + 1, 3)]);
        storage.release_through(first + 1);
        assert_eq!(raft::Storage::term(&storage, first), Ok(2));
        assert_eq!(raft::Storage::term(&storage, first + 1), Ok(3));
    }

    /// Bodies kept by the test: a reference is the body's first byte; 0
    /// names one that is gone, 1 one gone but applied.
    struct FirstByte;

    impl Bodies for FirstByte {
        fn read(&self, reference: &[u8]) -> Result<Body, String> {
            match reference {
                [0] => Err("gone".into()),
                [1] => Ok(Body::Applied),
                [b] => Ok(Body::Whole(vec![*b; 10])),
                _ => Err("not a reference".into()),
            }
        }
    }

    #[test]
    fn entries_stored_as_references_are_read_back_whole_as_far_as_the_size_limit_reaches() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        GroupStorage::initialise(&engine, 7, &[1]).unwrap();
        let storage = GroupStorage::new(
            engine.clone(),
            7,
            SnapshotRequests::default(),
            CacheBudget::new(1 << 20),
            Some(Arc::new(FirstByte)),
        );
        let first = INIT_INDEX + 1;
        let whole: Vec<Entry> = (0..4)
            .map(|i| Entry {
                data: vec![b'a' + i as u8; 10].into(),
                ..entry(first + i, 2)
            })
            .collect();
        let mut stored: Vec<Entry> = whole.iter().map(|e| as_reference(e, vec![e.data[0]])).collect();
        stored[1] = whole[1].clone();
        assert!(is_reference(&stored[0]) && !is_reference(&stored[1]));
        let mut batch = LogBatch::default();
        batch.add_entries::<EntryExt>(7, &stored).unwrap();
        engine.write(&mut batch, true).unwrap();
        // Not cached: the entries come from raft-engine.
        storage.terms.borrow_mut().append(&stored);
        let read = raft::Storage::entries(&storage, first, first + 4, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(read, whole);
        let one = u64::from(whole[0].compute_size());
        let limited =
            raft::Storage::entries(&storage, first, first + 4, one + 1, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(limited, whole[..1]);

        // A body that is gone reads as compacted: raft-rs sends a snapshot.
        // One gone but applied here stands empty for raft-rs's own reads.
        let mut batch = LogBatch::default();
        let gone = [
            as_reference(&entry(first + 4, 2), vec![0]),
            as_reference(&entry(first + 5, 2), vec![1]),
        ];
        batch.add_entries::<EntryExt>(7, &gone).unwrap();
        engine.write(&mut batch, true).unwrap();
        storage.terms.borrow_mut().append(&gone);
        let (to_apply, to_send) = (|| GetEntriesContext::empty(false), || GetEntriesContext::empty(true));
        let compacted = Err(raft::Error::Store(StorageError::Compacted));
        assert_eq!(
            raft::Storage::entries(&storage, first + 4, first + 5, None, to_apply()),
            compacted
        );
        let applied = raft::Storage::entries(&storage, first + 5, first + 6, None, to_apply()).unwrap();
        assert!(applied[0].data.is_empty() && applied[0].context.is_empty());
        assert_eq!(
            raft::Storage::entries(&storage, first + 5, first + 6, None, to_send()),
            compacted
        );
    }

    #[test]
    fn cache_keeps_a_contiguous_suffix() {
        let mut cache = EntryCache::new(CacheBudget::new(1 << 20));
        cache.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(cache.range(2, 4).map(|v| v.len()), Some(2));
        // A new leader overwrites from index 2.
        cache.append(&[entry(2, 2)]);
        assert_eq!(
            cache.range(1, 3).map(|v| v.iter().map(|e| e.term).collect::<Vec<_>>()),
            Some(vec![1, 2])
        );
        assert_eq!(cache.range(1, 4), None, "index 3 was replaced");
        // A gap empties the cache rather than holding a hole.
        cache.append(&[entry(9, 2)]);
        assert_eq!(cache.range(1, 2), None);
        assert_eq!(cache.range(9, 10).map(|v| v.len()), Some(1));
        cache.drop_through(9);
        assert_eq!((cache.entries.len(), cache.bytes), (0, 0));
    }

    #[test]
    fn caches_share_one_budget_and_the_adding_group_pays() {
        let budget = CacheBudget::new(100);
        let sized = |index: u64, len: usize| Entry {
            index,
            term: 1,
            data: vec![0; len].into(),
            ..Default::default()
        };
        let mut idle = EntryCache::new(budget.clone());
        idle.append(&[sized(1, 60)]);
        let mut busy = EntryCache::new(budget.clone());
        busy.append(&[sized(1, 30), sized(2, 30)]);
        assert_eq!(idle.bytes, 60, "the group that added keeps what it holds");
        assert_eq!(busy.bytes, 30, "the adding group forgot its oldest entry");
        assert_eq!(busy.range(2, 3).map(|v| v.len()), Some(1));
        assert_eq!(budget.used.load(Ordering::Relaxed), 90);
        drop(idle);
        assert_eq!(
            budget.used.load(Ordering::Relaxed),
            30,
            "a dropped cache returns its bytes"
        );
    }
}
