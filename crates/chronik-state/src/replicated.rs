//! The broker's replicated state: how committed Raft entries change the
//! metadata and the partition logs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use chronik_log::LogError;
use chronik_raft::{
    Appending, Bodies, Effect, GroupId, METADATA_GROUP, NodeId, Prediction, Proposed, SnapshotFile, SnapshotManifest,
    StateMachine, fail_stop,
};
use kafka_protocol::ResponseError;

use crate::checkpointer::{Checkpointer, Job};
use crate::command::{self, PartitionCommand};
use crate::consumer_offsets::{self, OffsetsView};
use crate::leader_epochs::epoch_of_term;
use crate::metadata::{MetadataCommand, MetadataError, MetadataReply, MetadataState};
use crate::partition::{ApplyCheckpoint, Partition};
use crate::test_hooks::crash_point;
use crate::topic_config;
use crate::transaction_state::{self, TransactionsView};
use crate::version;
use append::{LogSink, append_batches, append_marker, check_assigned};
use bodies::{BodyWriter, SegmentBodies};
use forecast::{Ended, Forecast};
use serde::{Deserialize, Serialize};

/// State shared between the Raft loop (which writes it) and request handlers.
#[derive(Default)]
pub struct SharedState {
    metadata: RwLock<MetadataState>,
    partitions: RwLock<HashMap<GroupId, Arc<Partition>>>,
    /// Committed offsets and group metadata, from `__consumer_offsets`.
    pub offsets: OffsetsView,
    /// Transactions' states, from `__transaction_state`.
    pub transactions: TransactionsView,
}

impl SharedState {
    /// The view an internal topic's records build, if `topic` is one.
    fn internal_view(&self, topic: &str) -> Option<InternalView<'_>> {
        match topic {
            consumer_offsets::TOPIC => Some(InternalView::Offsets(&self.offsets)),
            transaction_state::TOPIC => Some(InternalView::Transactions(&self.transactions)),
            _ => None,
        }
    }
}

/// What every replica builds from an internal topic as its records apply.
#[derive(Clone, Copy)]
enum InternalView<'a> {
    Offsets(&'a OffsetsView),
    Transactions(&'a TransactionsView),
}

impl InternalView<'_> {
    fn apply(self, partition: i32, batches: Bytes) {
        match self {
            InternalView::Offsets(view) => view.apply_batches(partition, batches),
            InternalView::Transactions(view) => view.apply_batches(batches),
        }
    }
}

impl SharedState {
    pub fn metadata(&self) -> RwLockReadGuard<'_, MetadataState> {
        self.metadata.read().unwrap_or_else(|e| e.into_inner())
    }

    fn metadata_mut(&self) -> RwLockWriteGuard<'_, MetadataState> {
        self.metadata.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn partition(&self, group: GroupId) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    /// The partition of `topic`/`index` on this node, or the error a Kafka
    /// broker gives: unknown, or held by other nodes only.
    pub fn local_partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>, ResponseError> {
        let group = self
            .metadata()
            .group_of(topic, index)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        self.partition(group).ok_or(ResponseError::NotLeaderOrFollower)
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn partitions_mut(&self) -> RwLockWriteGuard<'_, HashMap<GroupId, Arc<Partition>>> {
        self.partitions.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a proposer learns once its entry is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Metadata(Result<MetadataReply, MetadataError>),
    Produce(Result<ProduceAck, ResponseError>),
    DeleteRecords(Result<i64, ResponseError>),
    /// A transaction marker was written, or refused (a fenced coordinator).
    TxnMarker(Result<(), ResponseError>),
    /// An entry applied before a restart and skipped now. Nobody waits for it:
    /// proposals do not outlive the process.
    Replayed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAck {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// Where applying a partition group stands.
struct ApplyCursor {
    applied: u64,
    durable: u64,
    /// A checkpoint of this partition is being made durable.
    saving: bool,
}

pub struct BrokerStateMachine {
    node_id: NodeId,
    checkpointer: Checkpointer,
    shared: Arc<SharedState>,
    metadata_path: PathBuf,
    partitions_dir: PathBuf,
    /// Hard links to the files of snapshots being sent to followers.
    snapshot_links_dir: PathBuf,
    cursors: BTreeMap<GroupId, ApplyCursor>,
    /// The outcomes of proposals this node leads and has not applied yet.
    forecasts: BTreeMap<GroupId, Forecast>,
    /// Writes data partitions' batches when their entries are appended.
    bodies: BodyWriter,
}

impl BrokerStateMachine {
    /// Opens the state in `data_dir`; checkpoints are made durable on a
    /// thread of their own.
    pub fn open(data_dir: &std::path::Path, node_id: NodeId, shared: Arc<SharedState>) -> std::io::Result<Self> {
        Self::open_with(data_dir, node_id, shared, Checkpointer::start()?)
    }

    /// Opens the state with checkpoints made durable inline, as they are
    /// taken: slower, but independent of thread scheduling, as a
    /// deterministic simulation needs.
    pub fn open_inline(data_dir: &std::path::Path, node_id: NodeId, shared: Arc<SharedState>) -> std::io::Result<Self> {
        Self::open_with(data_dir, node_id, shared, Checkpointer::inline())
    }

    fn open_with(
        data_dir: &std::path::Path,
        node_id: NodeId,
        shared: Arc<SharedState>,
        checkpointer: Checkpointer,
    ) -> std::io::Result<Self> {
        let metadata_path = data_dir.join("metadata.json");
        let partitions_dir = data_dir.join("partitions");
        std::fs::create_dir_all(&partitions_dir)?;
        // Snapshots being sent when the node stopped are of no use now.
        let snapshot_links_dir = data_dir.join("snapshot-links");
        if snapshot_links_dir.exists() {
            std::fs::remove_dir_all(&snapshot_links_dir)?;
        }
        let metadata = MetadataState::load(&metadata_path)?;
        version::check_readable(metadata.version_level()).map_err(std::io::Error::other)?;
        *shared.metadata_mut() = metadata;
        remove_unassigned_partitions(&partitions_dir, &shared.metadata(), node_id)?;
        Ok(BrokerStateMachine {
            node_id,
            checkpointer,
            shared,
            metadata_path,
            partitions_dir,
            snapshot_links_dir,
            cursors: BTreeMap::new(),
            forecasts: BTreeMap::new(),
            bodies: BodyWriter::default(),
        })
    }

    fn partition_dir(&self, topic: &str, index: i32, group: GroupId) -> PathBuf {
        self.partitions_dir.join(format!("{topic}-{index}.g{group}"))
    }

    fn open_partition(&mut self, group: GroupId) -> Result<Option<u64>, String> {
        let located = {
            let metadata = self.shared.metadata();
            metadata.topics.iter().find_map(|(name, topic)| {
                topic
                    .partitions
                    .iter()
                    .position(|p| p.group == group && p.hosts().contains(&self.node_id))
                    .map(|i| (name.clone(), i as i32, topic_config::log_config(&topic.configs)))
            })
        };
        let Some((topic, index, config)) = located else {
            return Ok(None);
        };
        let dir = self.partition_dir(&topic, index, group);
        recover_interrupted_restore(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let partition = Partition::open(&topic, index, group, dir.clone(), config).map_err(|e| e.to_string())?;
        let checkpoint = ApplyCheckpoint::load(&dir).map_err(|e| e.to_string())?;
        {
            // What was applied after the checkpoint is replayed from the Raft
            // log, which finds the records already stored (and, at one write
            // per record, reads some of its entries from them): they stay,
            // made durable now if a crash of the process left them unsynced.
            let mut log = partition.log_mut();
            let end = log.next_offset();
            if end < checkpoint.next_offset {
                let shorter = LogError::ShorterThanCheckpoint {
                    offset: checkpoint.next_offset,
                    end,
                };
                return Err(format!("{}: {shorter}", dir.display()));
            }
            if end > checkpoint.next_offset {
                log.flush().map_err(|e| e.to_string())?;
            }
            partition.note_synced(end);
        }
        partition.set_durable_end(checkpoint.next_offset);
        partition.publish_high_watermark(checkpoint.next_offset);
        partition.restore_leader_epochs(checkpoint.leader_epochs);
        *partition.producers_mut() = checkpoint.producers;
        if let Some(view) = self.shared.internal_view(&topic) {
            load_view(view, &partition)?;
        }
        self.cursors.insert(
            group,
            ApplyCursor {
                applied: checkpoint.index,
                durable: checkpoint.index,
                saving: false,
            },
        );
        self.shared.partitions_mut().insert(group, Arc::new(partition));
        Ok(Some(checkpoint.index))
    }

    fn apply_metadata(&mut self, index: u64, data: &[u8], effects: &mut Vec<Effect>) -> Applied {
        if index <= self.shared.metadata().applied_index {
            // Already reflected in the saved metadata; replayed after a restart.
            return Applied::Replayed;
        }
        let command: MetadataCommand = match serde_json::from_slice(data) {
            Ok(command) => command,
            Err(e) => {
                tracing::error!(index, "undecodable metadata entry: {e}");
                return Applied::Metadata(Err(MetadataError {
                    error: ResponseError::CorruptMessage,
                    message: format!("undecodable metadata command: {e}"),
                }));
            }
        };
        let created_topic = match &command {
            MetadataCommand::CreateTopic { name, .. } => Some(name.clone()),
            _ => None,
        };
        let altered_topic = match &command {
            MetadataCommand::AlterConfigs { name, .. } | MetadataCommand::ReplaceConfigs { name, .. } => {
                Some(name.clone())
            }
            _ => None,
        };
        let first_effect = effects.len();
        let result = {
            let mut metadata = self.shared.metadata_mut();
            let result = metadata.apply(index, command, effects);
            stop_if_unreadable(&metadata);
            // The metadata is small and changes rarely: persist every change, so
            // its file is always as new as its applied index.
            if let Err(e) = metadata.save(&self.metadata_path) {
                fail_stop(
                    &format!("cannot persist metadata to {}", self.metadata_path.display()),
                    &e,
                );
            }
            result
        };
        if let Some(name) = created_topic {
            crash_point(|| format!("metadata-saved:create-topic:{name}"));
        }
        for effect in &effects[first_effect..] {
            match effect {
                Effect::RemoveGroup { group } => self.remove_partition(*group),
                Effect::LeaveGroup { group, nodes } if nodes.contains(&self.node_id) => self.remove_partition(*group),
                _ => {}
            }
        }
        if let Some(topic) = altered_topic {
            self.reconfigure(&topic);
        }
        Applied::Metadata(result)
    }

    /// Hard-links the files of a snapshot about to be sent, so that
    /// retention or DeleteRecords removing a segment meanwhile cannot break
    /// the manifest; the active segment keeps growing, but only the listed
    /// length is sent. Links of the group's earlier snapshots are dropped.
    fn link_snapshot_files(
        &self,
        group: GroupId,
        index: u64,
        files: Vec<(PathBuf, u64)>,
    ) -> std::io::Result<Vec<SnapshotFile>> {
        self.drop_snapshot_links(group);
        let dir = self.snapshot_links_dir.join(format!("g{group}-i{index}"));
        std::fs::create_dir_all(&dir)?;
        let mut linked = Vec::with_capacity(files.len());
        for (path, len) in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            let link = dir.join(&name);
            std::fs::hard_link(&path, &link)?;
            linked.push(SnapshotFile { name, path: link, len });
        }
        Ok(linked)
    }

    fn drop_snapshot_links(&self, group: GroupId) {
        let prefix = format!("g{group}-i");
        let Ok(entries) = std::fs::read_dir(&self.snapshot_links_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn remove_partition(&mut self, group: GroupId) {
        self.drop_snapshot_links(group);
        self.cursors.remove(&group);
        self.forecasts.remove(&group);
        self.bodies.forget(group);
        let Some(partition) = self.shared.partitions_mut().remove(&group) else {
            return;
        };
        partition.retire();
        if let Err(e) = std::fs::remove_dir_all(partition.dir()) {
            tracing::warn!(dir = %partition.dir().display(), "cannot delete partition directory: {e}");
        }
    }

    fn reconfigure(&self, topic: &str) {
        let Some(info) = self.shared.metadata().topic(topic).cloned() else {
            return;
        };
        let config = topic_config::log_config(&info.configs);
        for p in &info.partitions {
            if let Some(partition) = self.shared.partition(p.group) {
                partition.log_mut().set_config(config.clone());
            }
        }
    }

    fn apply_partition(&mut self, group: GroupId, index: u64, term: u64, data: &[u8]) -> Applied {
        let Some(partition) = self.shared.partition(group) else {
            return Applied::Produce(Err(ResponseError::UnknownTopicOrPartition));
        };
        let cursor = self.cursors.get_mut(&group).expect("every open partition has a cursor");
        if index <= cursor.applied {
            // Covered by the last checkpoint; replayed after a restart.
            return Applied::Replayed;
        }
        cursor.applied = index;
        let view = self.shared.internal_view(&partition.topic);
        let index_in_topic = partition.index;
        let command = PartitionCommand::decode(data);
        if let Some(PartitionCommand::AssignedProduce { batches }) = &command {
            // In the Raft log, durable and committed, not applied yet.
            crash_point(|| {
                let offset = chronik_log::parse_header(batches).map_or(-1, |h| h.base_offset);
                format!("apply-assigned:{}:{offset}", partition.topic)
            });
        }
        let mut sink = LogSink {
            partition: &partition,
            log: partition.log_mut(),
            next: partition.high_watermark(),
            epoch: epoch_of_term(term),
            assigned: matches!(command, Some(PartitionCommand::AssignedProduce { .. })),
            buffer: Vec::new(),
            written: &mut self.bodies,
            on_stored: |stored: &[u8]| {
                // Every replica keeps the views of internal topics.
                if let Some(view) = view {
                    view.apply(index_in_topic, Bytes::copy_from_slice(stored));
                }
            },
        };
        // What the forecast predicted: a produce's base offset, a marker's offset.
        let (applied, offset) = match command {
            Some(PartitionCommand::Produce { batches } | PartitionCommand::AssignedProduce { batches }) => {
                let result = append_batches(&mut sink, &mut partition.producers_mut(), batches);
                // Whatever was appended before a refusal is committed and readable.
                partition.publish_high_watermark(sink.next);
                let log_start_offset = sink.log.log_start_offset();
                let ack = result.map(|base_offset| ProduceAck {
                    base_offset,
                    log_start_offset,
                });
                (Applied::Produce(ack), Some(result))
            }
            Some(PartitionCommand::TxnMarker(marker)) => {
                let result = apply_marker(&mut sink, &partition, &marker, None);
                (Applied::TxnMarker(result.map(|_| ())), Some(result))
            }
            Some(PartitionCommand::AssignedTxnMarker { marker, offset }) => {
                let result = apply_marker(&mut sink, &partition, &marker, Some(offset));
                (Applied::TxnMarker(result.map(|_| ())), Some(result))
            }
            Some(PartitionCommand::DeleteRecords { offset }) => {
                let result = partition.delete_records_before(&mut sink.log, offset);
                (
                    Applied::DeleteRecords(result.map_err(|e| log_error(&partition, e))),
                    None,
                )
            }
            None => {
                tracing::error!(group, index, "undecodable partition entry");
                (Applied::Produce(Err(ResponseError::CorruptMessage)), None)
            }
        };
        drop(sink);
        if let Some(Err(_)) = offset {
            // A batch or marker refused at apply may have been written at
            // append, past what apply placed.
            self.bodies.forget(group);
        }
        if let Some(forecast) = self.forecasts.get_mut(&group)
            && let Err(ended) = forecast.applied(index, term, offset)
        {
            // Proposals are answered once applied until a new forecast starts.
            self.forecasts.remove(&group);
            if let Ended::Mispredicted(what) = ended {
                tracing::error!(group, "an acks=1 forecast was wrong: {what}");
                // Tests and the simulator stop at it; production goes on.
                if cfg!(debug_assertions) {
                    panic!("an acks=1 forecast was wrong: {what}");
                }
            }
        }
        applied
    }

    /// Sees a proposal of this node as leader of `group`, before it is
    /// appended: refuses what apply would refuse without a change, and
    /// otherwise predicts the outcome of a produce entry or a marker and
    /// writes the offsets it assigns into the entry.
    fn forecast(&mut self, group: GroupId, proposed: Proposed, data: &mut Vec<u8>) -> Prediction<Applied> {
        let Some(partition) = self.shared.partition(group) else {
            return Prediction::Unknown;
        };
        let command = PartitionCommand::decode(data);
        if !self.forecasts.get(&group).is_some_and(|f| f.continues(proposed)) {
            self.forecasts.remove(&group);
            let Some(forecast) = Forecast::start(&partition, proposed) else {
                // Batches and markers are judged before they enter the log,
                // so they wait for a forecast; the other commands need none.
                return match command {
                    Some(PartitionCommand::Produce { .. } | PartitionCommand::TxnMarker(_)) => Prediction::Wait,
                    _ => Prediction::Unknown,
                };
            };
            self.forecasts.insert(group, forecast);
        }
        let forecast = self.forecasts.get_mut(&group).expect("inserted above");
        let log_start_offset = partition.log().log_start_offset();
        // Below this level some member may run a build that cannot read
        // assigned entries; apply then assigns the same offsets itself.
        let assign = self.shared.metadata().version_level() >= version::ASSIGNED_OFFSETS;
        match command {
            Some(PartitionCommand::TxnMarker(marker)) => {
                let prediction = forecast.marker(proposed, &marker, log_start_offset);
                if let Prediction::Outcome(Ok(offset)) = prediction
                    && assign
                {
                    command::assign_marker(data, offset);
                }
                prediction.map(|result| Applied::TxnMarker(result.map(|_| ())))
            }
            Some(PartitionCommand::Produce { batches }) => {
                let (prediction, base_offsets) = forecast.produce(proposed, batches);
                if let Prediction::Outcome(_) = prediction
                    && assign
                {
                    command::assign_produce(data, &base_offsets, epoch_of_term(proposed.term));
                }
                prediction.map(|result| {
                    Applied::Produce(result.map(|base_offset| ProduceAck {
                        base_offset,
                        log_start_offset,
                    }))
                })
            }
            Some(PartitionCommand::AssignedProduce { .. } | PartitionCommand::AssignedTxnMarker { .. }) => {
                // Assigned by some other forecast: this one cannot account
                // for it.
                self.forecasts.remove(&group);
                Prediction::Unknown
            }
            Some(PartitionCommand::DeleteRecords { .. }) | None => {
                forecast.skip(proposed);
                Prediction::Unknown
            }
        }
    }
}

/// Stops the node when the cluster moved to a version this build cannot
/// read: applying the entries to come could give its replicas other offsets
/// than its peers'. Every member said it reads the level before it was set,
/// so only a node started with an older build since then gets here.
fn stop_if_unreadable(metadata: &MetadataState) {
    if let Err(why) = version::check_readable(metadata.version_level()) {
        tracing::error!("{why}; stopping the node");
        eprintln!("fatal: {why}");
        std::process::exit(VERSION_EXIT_CODE);
    }
}

/// The exit status of a node too old for its cluster (sysexits' EX_CONFIG).
pub const VERSION_EXIT_CODE: i32 = 78;

/// Writes a transaction marker; one its leader assigned must land at `assigned`.
/// Returns the marker's offset.
fn apply_marker<F: FnMut(&[u8])>(
    sink: &mut LogSink<'_, F>,
    partition: &Partition,
    marker: &chronik_log::control::Marker,
    assigned: Option<i64>,
) -> Result<i64, ResponseError> {
    let marker_offset = sink.next;
    if assigned.is_some() {
        check_assigned(partition, assigned, marker_offset)?;
    }
    let log_start_offset = sink.log.log_start_offset();
    let result = append_marker(sink, &mut partition.producers_mut(), marker, log_start_offset);
    partition.publish_high_watermark(sink.next);
    result.map(|()| marker_offset)
}

/// The Kafka error for a batch the log refuses: a damaged one is corrupt,
/// a well-formed one that claims no offsets is an invalid record.
pub fn batch_error(error: &chronik_log::BatchError) -> ResponseError {
    use chronik_log::BatchError;
    match error {
        BatchError::NoRecords
        | BatchError::BadRecordCount(_)
        | BatchError::BadOffsetDelta { .. }
        | BatchError::Records(_) => ResponseError::InvalidRecord,
        _ => ResponseError::CorruptMessage,
    }
}

/// Rebuilds an internal topic's view from one of its partition logs, up
/// to the high watermark (replay applies what follows).
fn load_view(view: InternalView<'_>, partition: &Partition) -> Result<(), String> {
    let log = partition.log();
    let end = partition.high_watermark();
    let mut offset = log.log_start_offset();
    while offset < end {
        let batches = log.read(offset, 1 << 20).map_err(|e| e.to_string())?;
        let last = chronik_log::split_batches(&batches)
            .map_err(|e| e.to_string())?
            .last()
            .and_then(|r| chronik_log::parse_header(&batches[r.clone()]).ok())
            .map(|h| h.last_offset())
            .ok_or("empty read from the offsets log")?;
        view.apply(partition.index, batches);
        offset = last + 1;
    }
    Ok(())
}

fn log_error(partition: &Partition, error: LogError) -> ResponseError {
    match error {
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        e => {
            tracing::error!(topic = %partition.topic, partition = partition.index, "log error: {e}");
            ResponseError::KafkaStorageError
        }
    }
}

impl StateMachine for BrokerStateMachine {
    type Output = Applied;

    fn open_group(&mut self, group: GroupId) -> Option<u64> {
        if group == METADATA_GROUP {
            return Some(self.shared.metadata().applied_index);
        }
        match self.open_partition(group) {
            Ok(applied) => applied,
            Err(e) => fail_stop(&format!("cannot open the partition of group {group}"), &e),
        }
    }

    fn assigned_groups(&self) -> Vec<Effect> {
        self.shared.metadata().creation_effects(self.node_id)
    }

    fn apply(&mut self, group: GroupId, index: u64, term: u64, data: &[u8], effects: &mut Vec<Effect>) -> Applied {
        if group == METADATA_GROUP {
            self.apply_metadata(index, data, effects)
        } else {
            self.apply_partition(group, index, term, data)
        }
    }

    fn predict(&mut self, group: GroupId, proposed: Proposed, data: &mut Vec<u8>) -> Prediction<Applied> {
        if group == METADATA_GROUP {
            return Prediction::Unknown;
        }
        self.forecast(group, proposed, data)
    }

    fn withdraw(&mut self, group: GroupId) {
        self.forecasts.remove(&group);
    }

    /// Data partitions' batches, at one write per record. The internal
    /// topics keep writing at apply: their views are built from what apply
    /// stores, and they are small.
    fn keep_bodies(
        &mut self,
        group: GroupId,
        applied: u64,
        last_index: u64,
        entries: &[Appending<'_>],
    ) -> Vec<Option<Vec<u8>>> {
        if group == METADATA_GROUP || self.shared.metadata().version_level() < version::ONE_WRITE {
            return Vec::new();
        }
        let Some(partition) = self.shared.partition(group) else {
            return Vec::new();
        };
        if crate::is_internal_topic(&partition.topic) {
            return Vec::new();
        }
        self.bodies.keep(&partition, applied, last_index, entries)
    }

    fn sync_bodies(&mut self) {
        self.bodies.sync();
    }

    fn bodies(&self, group: GroupId) -> Option<Arc<dyn Bodies>> {
        (group != METADATA_GROUP).then(|| {
            Arc::new(SegmentBodies {
                shared: self.shared.clone(),
                group,
            }) as Arc<dyn Bodies>
        })
    }

    /// Data partitions sleep when idle. The metadata group and the internal
    /// topics' partitions stay awake: their leaders answer coordinators'
    /// requests (group heartbeats, transaction state) from memory, without
    /// a write that would wake them, and they are few.
    fn may_sleep(&self, group: GroupId) -> bool {
        group != METADATA_GROUP
            && self
                .shared
                .partition(group)
                .is_some_and(|p| !crate::is_internal_topic(&p.topic))
    }

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        for (group, durable) in self.checkpointer.finished() {
            if let Some(cursor) = self.cursors.get_mut(&group) {
                cursor.saving = false;
                if let Some(index) = durable {
                    cursor.durable = cursor.durable.max(index);
                }
            }
        }
        let mut durable = vec![(METADATA_GROUP, self.shared.metadata().applied_index)];
        for (&group, cursor) in self.cursors.iter_mut() {
            if cursor.applied > cursor.durable
                && !cursor.saving
                && let Some(partition) = self.shared.partition(group)
            {
                let handle = {
                    let mut log = partition.log_mut();
                    let next_offset = partition.high_watermark();
                    let synced = partition.synced_end() >= next_offset;
                    log.sync_handle().map(|file| ((!synced).then_some(file), next_offset))
                };
                match handle {
                    Ok((file, next_offset)) => {
                        cursor.saving = true;
                        self.checkpointer.submit(Job {
                            group,
                            partition: partition.clone(),
                            file,
                            checkpoint: ApplyCheckpoint {
                                index: cursor.applied,
                                next_offset,
                                producers: partition.producers().clone(),
                                leader_epochs: partition.leader_epochs().clone(),
                            },
                        });
                    }
                    Err(e) => fail_stop(
                        &format!("cannot checkpoint {}-{}", partition.topic, partition.index),
                        &e,
                    ),
                }
            }
            durable.push((group, cursor.durable));
        }
        durable
    }

    fn snapshot(&mut self, group: GroupId) -> Option<(u64, SnapshotManifest)> {
        if group == METADATA_GROUP {
            let metadata = self.shared.metadata();
            let manifest = SnapshotManifest {
                files: Vec::new(),
                state: metadata.encode(),
            };
            return Some((metadata.applied_index, manifest));
        }
        let partition = self.shared.partition(group)?;
        let cursor = self.cursors.get(&group)?;
        // While the cleaner swaps segment files, the Raft loop asks again later.
        let _layout = partition.try_layout()?;
        let mut log = partition.log_mut();
        if let Err(e) = log.flush() {
            tracing::error!(topic = %partition.topic, partition = partition.index, "cannot flush for a snapshot: {e}");
            return None;
        }
        let state = PartitionSnapshot {
            checkpoint: ApplyCheckpoint {
                index: cursor.applied,
                next_offset: partition.high_watermark(),
                producers: partition.producers().clone(),
                leader_epochs: partition.leader_epochs().clone(),
            },
            log_start_offset: log.log_start_offset(),
        };
        let listed = log.segment_files_below(partition.high_watermark());
        let files = match listed.and_then(|files| Ok(self.link_snapshot_files(group, cursor.applied, files)?)) {
            Ok(files) => files,
            Err(e) => fail_stop(&format!("cannot link the snapshot files of group {group}"), &e),
        };
        let manifest = SnapshotManifest {
            files,
            state: serde_json::to_vec(&state).expect("snapshots serialize"),
        };
        Some((cursor.applied, manifest))
    }

    fn restore(
        &mut self,
        group: GroupId,
        index: u64,
        manifest: &SnapshotManifest,
        dir: &std::path::Path,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        self.forecasts.remove(&group);
        self.bodies.forget(group);
        if group == METADATA_GROUP {
            return self.restore_metadata(index, manifest, effects);
        }
        let state: PartitionSnapshot =
            serde_json::from_slice(&manifest.state).map_err(|e| format!("undecodable partition snapshot: {e}"))?;
        let Some(old) = self.shared.partitions_mut().remove(&group) else {
            // Its topic was deleted earlier in this iteration; the group is
            // removed once the iteration's entries are applied.
            tracing::info!(group, "snapshot for a partition deleted meanwhile; ignored");
            return Ok(());
        };
        old.retire();
        let target = old.dir().to_path_buf();
        let (topic, index_in_topic) = (old.topic.clone(), old.index);
        let config = old.log().config().clone();
        drop(old);
        let mut checkpoint = state.checkpoint;
        checkpoint.index = index;
        // The staged directory is made complete and durable before it takes
        // the live one's place, so a crash at any point leaves one whole
        // partition directory (see `recover_interrupted_restore`).
        checkpoint.save(dir).map_err(|e| e.to_string())?;
        let replaced = target.with_extension("replaced");
        let swap = || -> std::io::Result<()> {
            if replaced.exists() {
                std::fs::remove_dir_all(&replaced)?;
            }
            std::fs::rename(&target, &replaced)?;
            std::fs::rename(dir, &target)?;
            sync_parent(&target)?;
            std::fs::remove_dir_all(&replaced)
        };
        swap().map_err(|e| format!("cannot move the snapshot into {}: {e}", target.display()))?;
        let partition = Partition::open(&topic, index_in_topic, group, target, config).map_err(|e| e.to_string())?;
        {
            let mut log = partition.log_mut();
            log.truncate_to(checkpoint.next_offset).map_err(|e| e.to_string())?;
            if log.log_start_offset() < state.log_start_offset {
                log.delete_records_before(state.log_start_offset)
                    .map_err(|e| e.to_string())?;
            }
            partition.publish_high_watermark(checkpoint.next_offset);
        }
        partition.set_durable_end(checkpoint.next_offset);
        partition.restore_leader_epochs(checkpoint.leader_epochs);
        *partition.producers_mut() = checkpoint.producers;
        if let Some(view) = self.shared.internal_view(&topic) {
            load_view(view, &partition)?;
        }
        self.cursors.insert(
            group,
            ApplyCursor {
                applied: index,
                durable: index,
                saving: false,
            },
        );
        self.shared.partitions_mut().insert(group, Arc::new(partition));
        Ok(())
    }
}

/// Deletes the directories of partitions the metadata no longer gives this
/// node: a crash can come between applying a topic's deletion (or a move of
/// its replicas) and deleting them.
fn remove_unassigned_partitions(dir: &std::path::Path, metadata: &MetadataState, node: NodeId) -> std::io::Result<()> {
    let assigned: std::collections::HashSet<GroupId> = metadata.groups_of_node(node).into_iter().collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let group = name
            .rsplit_once(".g")
            .and_then(|(_, group)| group.parse::<GroupId>().ok());
        if let Some(group) = group
            && !assigned.contains(&group)
        {
            tracing::info!(dir = %entry.path().display(), "deleting a partition this node no longer holds");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Finishes or undoes a snapshot restore that a crash interrupted. The
/// restore moves the live directory to `<dir>.replaced`, the complete staged
/// one to `<dir>`, then deletes `<dir>.replaced`. With `<dir>` missing the
/// crash came between the moves: the old directory still matches the Raft
/// log, so it goes back. With both present only the deletion was left.
fn recover_interrupted_restore(dir: &std::path::Path) -> std::io::Result<()> {
    let replaced = dir.with_extension("replaced");
    if !replaced.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&replaced)
    } else {
        tracing::warn!(dir = %dir.display(), "undoing a snapshot restore a crash interrupted");
        std::fs::rename(&replaced, dir)?;
        sync_parent(dir)
    }
}

/// Makes a rename or creation of `path` durable.
fn sync_parent(path: &std::path::Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// What a partition snapshot carries besides its segment files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionSnapshot {
    checkpoint: ApplyCheckpoint,
    log_start_offset: i64,
}

impl BrokerStateMachine {
    /// Takes the metadata of a snapshot, then starts the groups it gives this
    /// node and stops those it no longer does.
    fn restore_metadata(
        &mut self,
        index: u64,
        manifest: &SnapshotManifest,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let mut restored =
            MetadataState::decode(&manifest.state).map_err(|e| format!("undecodable metadata snapshot: {e}"))?;
        restored.applied_index = restored.applied_index.max(index);
        stop_if_unreadable(&restored);
        restored.save(&self.metadata_path).map_err(|e| e.to_string())?;
        let wanted = restored.creation_effects(self.node_id);
        let hosted = restored.groups_of_node(self.node_id);
        *self.shared.metadata_mut() = restored;
        let running: Vec<GroupId> = self.cursors.keys().copied().collect();
        for group in running {
            if !hosted.contains(&group) {
                self.remove_partition(group);
                effects.push(Effect::RemoveGroup { group });
            }
        }
        effects.extend(wanted);
        Ok(())
    }
}

mod append;
mod bodies;
mod forecast;
#[cfg(test)]
mod tests;
