//! The internal `__consumer_offsets` topic: the records that keep committed
//! offsets and group metadata, and the view every replica builds from them.
//!
//! Records are ordinary Kafka records in ordinary partitions, replicated by
//! their Raft groups like any other. A key names what a record is about; a
//! null value (a tombstone) deletes it. The view depends only on the latest
//! record of each key, so compacting the topic leaves it as it was. Keys
//! and values are JSON: nothing but Chronik reads them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record, RecordBatchDecoder,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

pub const TOPIC: &str = "__consumer_offsets";

/// Kafka's choice of a group's partition: `Utils.abs(groupId.hashCode) % n`,
/// with Java's `String.hashCode` and `Utils.abs` (which maps MIN_VALUE to 0).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

/// One change to the offsets view, as a record to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    DeleteOffset {
        group: String,
        topic: String,
        partition: i32,
    },
    /// The group's membership as of its last completed rebalance (JSON).
    GroupMetadata {
        group: String,
        snapshot: Vec<u8>,
    },
    DeleteGroup {
        group: String,
    },
}

impl Change {
    /// The record at position `offset_delta` of its batch.
    fn record(&self, offset_delta: i64, timestamp: i64) -> Record {
        let (key, value) = match self {
            Change::Commit {
                group,
                topic,
                partition,
                offset,
            } => (
                Key::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                Some(Bytes::from(serde_json::to_vec(offset).expect("offsets serialize"))),
            ),
            Change::DeleteOffset {
                group,
                topic,
                partition,
            } => (
                Key::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                None,
            ),
            Change::GroupMetadata { group, snapshot } => {
                (Key::Group { group: group.clone() }, Some(Bytes::from(snapshot.clone())))
            }
            Change::DeleteGroup { group } => (Key::Group { group: group.clone() }, None),
        };
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: offset_delta,
            // The encoder keeps records in one batch while offset minus
            // sequence stays the same; the batch's base sequence stays
            // NO_SEQUENCE (-1), as a producer without an id sends it.
            sequence: NO_SEQUENCE + offset_delta as i32,
            timestamp,
            key: Some(Bytes::from(serde_json::to_vec(&key).expect("keys serialize"))),
            value,
            headers: Default::default(),
        }
    }
}

/// Encodes changes as one record batch, ready to propose to the partition.
pub fn encode(changes: &[Change], timestamp: i64) -> Bytes {
    encode_batch(changes, timestamp, None)
}

/// Encodes offsets committed by a transaction (TxnOffsetCommit) as one
/// transactional batch of its producer, without a sequence: they take
/// effect when the producer's commit marker reaches the partition.
pub fn encode_transactional(changes: &[Change], timestamp: i64, producer_id: i64, producer_epoch: i16) -> Bytes {
    encode_batch(changes, timestamp, Some((producer_id, producer_epoch)))
}

fn encode_batch(changes: &[Change], timestamp: i64, producer: Option<(i64, i16)>) -> Bytes {
    let records: Vec<Record> = changes
        .iter()
        .zip(0..)
        .map(|(c, i)| {
            let mut record = c.record(i, timestamp);
            if let Some((id, epoch)) = producer {
                record.transactional = true;
                record.producer_id = id;
                record.producer_epoch = epoch;
            }
            record
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("offset records encode");
    buf.freeze()
}

#[derive(Debug, Default)]
struct GroupRecords {
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    metadata: Option<Vec<u8>>,
}

/// A record of an open transaction, waiting for its marker.
#[derive(Debug)]
struct PendingRecord {
    key: Key,
    value: Option<Bytes>,
}

#[derive(Debug, Default)]
struct Records {
    groups: HashMap<String, GroupRecords>,
    /// Per (offsets partition, producer id): its open transaction's records.
    pending: HashMap<(i32, i64), Vec<PendingRecord>>,
}

/// Committed offsets and group metadata of every group, as the applied
/// records of `__consumer_offsets` say. Updated when records are applied.
#[derive(Debug, Default)]
pub struct OffsetsView {
    records: Mutex<Records>,
}

impl OffsetsView {
    /// Applies the records of stored batches (as appended to `partition` of
    /// the topic). A transaction's records wait for its marker.
    pub fn apply_batches(&self, partition: i32, mut batches: Bytes) {
        let sets = match RecordBatchDecoder::decode_all(&mut batches) {
            Ok(sets) => sets,
            Err(e) => {
                tracing::error!("undecodable {TOPIC} batch: {e}");
                return;
            }
        };
        let mut records = self.lock();
        for record in sets.iter().flat_map(|s| &s.records) {
            if record.control {
                let pending = records.pending.remove(&(partition, record.producer_id));
                let commits = record.key.as_deref() == Some(&[0, 0, 0, 1][..]);
                if let (Some(pending), true) = (pending, commits) {
                    for p in pending {
                        apply_record(&mut records.groups, p.key, &p.value);
                    }
                }
                continue;
            }
            let Some(key) = record.key.as_ref().and_then(|k| serde_json::from_slice::<Key>(k).ok()) else {
                tracing::warn!(offset = record.offset, "skipping an unrecognised {TOPIC} record");
                continue;
            };
            if record.transactional {
                let value = record.value.clone();
                records
                    .pending
                    .entry((partition, record.producer_id))
                    .or_default()
                    .push(PendingRecord { key, value });
            } else {
                apply_record(&mut records.groups, key, &record.value);
            }
        }
        records
            .groups
            .retain(|_, g| g.metadata.is_some() || !g.offsets.is_empty());
    }

    pub fn offset(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.lock()
            .groups
            .get(group)?
            .offsets
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Whether an open transaction has committed an offset of `group` for
    /// `topic`/`partition` (KIP-447: a consumer asking for stable offsets
    /// waits until it ends).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock().pending.values().flatten().any(|p| {
            matches!(&p.key, Key::Offset { group: g, topic: t, partition: n } if g == group && t == topic && *n == partition)
        })
    }

    /// Every committed offset of `group`: ((topic, partition), offset).
    pub fn offsets(&self, group: &str) -> Vec<((String, i32), CommittedOffset)> {
        self.lock()
            .groups
            .get(group)
            .map(|g| g.offsets.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn group_metadata(&self, group: &str) -> Option<Vec<u8>> {
        self.lock().groups.get(group)?.metadata.clone()
    }

    /// Groups that have any record, with their partition index.
    pub fn groups(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn apply_record(groups: &mut HashMap<String, GroupRecords>, key: Key, value: &Option<Bytes>) {
    match (key, value) {
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => {
            if let Ok(offset) = serde_json::from_slice::<CommittedOffset>(value) {
                groups
                    .entry(group)
                    .or_default()
                    .offsets
                    .insert((topic, partition), offset);
            }
        }
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            if let Some(records) = groups.get_mut(&group) {
                records.offsets.remove(&(topic, partition));
            }
        }
        (Key::Group { group }, Some(value)) => groups.entry(group).or_default().metadata = Some(value.to_vec()),
        // Only the group's own record: its offsets have tombstones
        // of their own, so the view is a function of the latest
        // record of each key, which is what compaction keeps.
        (Key::Group { group }, None) => {
            if let Some(records) = groups.get_mut(&group) {
                records.metadata = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_timestamp: 5,
        }
    }

    #[test]
    fn encoded_batches_are_valid_for_the_log() {
        let changes: Vec<Change> = (0..3)
            .map(|p| Change::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: p,
                offset: committed(1),
            })
            .collect();
        let batch = encode(&changes, 1);
        let header = chronik_log::validate_batch(&batch).expect("one valid v2 batch");
        assert_eq!((header.record_count, header.last_offset_delta), (3, 2));
        assert_eq!((header.producer_id, header.base_sequence), (-1, -1));
    }

    #[test]
    fn partition_choice_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762, so Kafka picks 1906497762 % 50.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn commits_tombstones_and_group_metadata_apply() {
        let view = OffsetsView::default();
        let commit = |topic: &str, partition, offset| Change::Commit {
            group: "g".into(),
            topic: topic.into(),
            partition,
            offset: committed(offset),
        };
        view.apply_batches(0, encode(&[commit("t", 0, 10), commit("t", 1, 20)], 1));
        view.apply_batches(0, encode(&[commit("t", 0, 11)], 2));
        assert_eq!(view.offset("g", "t", 0).unwrap().offset, 11);
        assert_eq!(view.offset("g", "t", 1).unwrap().offset, 20);
        view.apply_batches(
            0,
            encode(
                &[Change::DeleteOffset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1,
                }],
                3,
            ),
        );
        assert!(view.offset("g", "t", 1).is_none());
        view.apply_batches(
            0,
            encode(
                &[Change::GroupMetadata {
                    group: "g".into(),
                    snapshot: b"{}".to_vec(),
                }],
                4,
            ),
        );
        assert_eq!(view.group_metadata("g"), Some(b"{}".to_vec()));
        assert_eq!(view.groups(), vec!["g".to_string()]);
        view.apply_batches(
            0,
            encode(
                &[
                    Change::DeleteOffset {
                        group: "g".into(),
                        topic: "t".into(),
                        partition: 0,
                    },
                    Change::DeleteGroup { group: "g".into() },
                ],
                5,
            ),
        );
        assert!(view.offset("g", "t", 0).is_none());
        assert!(view.groups().is_empty());
    }

    #[test]
    fn transactional_commits_wait_for_their_marker() {
        let view = OffsetsView::default();
        let commit = |offset| Change::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: committed(offset),
        };
        view.apply_batches(3, encode(&[commit(5)], 1));
        let marker = |commit| {
            Bytes::from(chronik_log::control::marker_batch(&chronik_log::control::Marker {
                producer_id: 7,
                producer_epoch: 0,
                commit,
                coordinator_epoch: 0,
                timestamp: 1,
            }))
        };
        view.apply_batches(3, encode_transactional(&[commit(9)], 1, 7, 0));
        assert_eq!(view.offset("g", "t", 0).unwrap().offset, 5);
        assert!(view.has_pending("g", "t", 0));
        view.apply_batches(3, marker(false));
        assert_eq!(view.offset("g", "t", 0).unwrap().offset, 5, "aborted");
        assert!(!view.has_pending("g", "t", 0));
        view.apply_batches(3, encode_transactional(&[commit(11)], 1, 7, 0));
        view.apply_batches(4, marker(true));
        assert_eq!(
            view.offset("g", "t", 0).unwrap().offset,
            5,
            "another partition's marker"
        );
        view.apply_batches(3, marker(true));
        assert_eq!(view.offset("g", "t", 0).unwrap().offset, 11, "committed");
    }
}
