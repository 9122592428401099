//! Apply takes whatever a committed entry holds: every refusal is a result,
//! the same on every replica, and the partition keeps working after it.

use chronik_log::testing::{build_batch, set_producer};
use chronik_raft::Body;

use super::*;

/// A state machine in a fresh directory with one topic "t" of one partition
/// (group 1) on this node.
fn with_topic() -> (tempfile::TempDir, BrokerStateMachine, Arc<SharedState>) {
    with_topic_at(crate::version::NEWEST)
}

/// The same, in a cluster formed at `chronik.version` `level`.
fn with_topic_at(level: i16) -> (tempfile::TempDir, BrokerStateMachine, Arc<SharedState>) {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(SharedState::default());
    let mut machine = BrokerStateMachine::open(dir.path(), 1, shared.clone()).unwrap();
    let init = MetadataCommand::InitCluster {
        cluster_id: "c".into(),
        nodes: [(
            1,
            crate::metadata::NodeInfo {
                raft_addr: String::new(),
                pending: false,
            },
        )]
        .into(),
        version: level,
    };
    machine.apply(
        METADATA_GROUP,
        1,
        1,
        &serde_json::to_vec(&init).unwrap(),
        &mut Vec::new(),
    );
    let create = MetadataCommand::CreateTopic {
        name: "t".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        replication_factor: -1,
        configs: [("retention.ms".to_string(), "-1".to_string())].into(),
        assignment: None,
    };
    let mut effects = Vec::new();
    let applied = machine.apply(
        METADATA_GROUP,
        2,
        1,
        &serde_json::to_vec(&create).unwrap(),
        &mut effects,
    );
    assert_eq!(applied, Applied::Metadata(Ok(MetadataReply::Done)));
    assert_eq!(
        effects,
        [Effect::CreateGroup {
            group: 1,
            voters: vec![1]
        }]
    );
    assert_eq!(machine.open_group(1), Some(0));
    (dir, machine, shared)
}

fn produce(machine: &mut BrokerStateMachine, index: u64, batches: &[u8]) -> Applied {
    let entry = PartitionCommand::Produce { batches }.encode();
    machine.apply(1, index, 1, &entry, &mut Vec::new())
}

#[test]
fn entries_the_edge_refuses_are_refused_again_at_apply_and_change_nothing() {
    let (_dir, mut machine, shared) = with_topic();
    let mut crc_broken = build_batch(2, 0, 10);
    let last = crc_broken.len() - 1;
    crc_broken[last] ^= 1;
    let refused: [(&[u8], ResponseError); 4] = [
        (&build_batch(0, 0, 0), ResponseError::InvalidRecord),
        (&crc_broken, ResponseError::CorruptMessage),
        (&[], ResponseError::CorruptMessage),
        (&build_batch(1, 0, 10)[..30], ResponseError::CorruptMessage),
    ];
    for (index, (batches, error)) in (1..).zip(refused) {
        assert_eq!(produce(&mut machine, index, batches), Applied::Produce(Err(error)));
    }
    assert_eq!(
        machine.apply(1, 5, 1, &[9, 9], &mut Vec::new()),
        Applied::Produce(Err(ResponseError::CorruptMessage))
    );
    let partition = shared.partition(1).unwrap();
    assert_eq!(partition.log().next_offset(), 0);

    let ok = produce(&mut machine, 6, &build_batch(3, 0, 10));
    assert_eq!(
        ok,
        Applied::Produce(Ok(ProduceAck {
            base_offset: 0,
            log_start_offset: 0
        }))
    );
    assert_eq!(partition.high_watermark(), 3);
}

#[test]
fn a_batch_refused_after_another_was_appended_still_publishes_the_first() {
    let (_dir, mut machine, shared) = with_topic();
    let mut first = build_batch(2, 0, 10);
    set_producer(&mut first, 7, 0, 0);
    // Sequence 5 after 0..=1: a gap, refused.
    let mut gap = build_batch(1, 0, 10);
    set_producer(&mut gap, 7, 0, 5);
    let outcome = produce(&mut machine, 1, &[first, gap].concat());
    assert_eq!(outcome, Applied::Produce(Err(ResponseError::OutOfOrderSequenceNumber)));
    let partition = shared.partition(1).unwrap();
    assert_eq!(partition.log().next_offset(), 2);
    assert_eq!(partition.high_watermark(), 2, "what was appended is readable");
}

#[test]
fn replayed_entries_are_recognised_by_index() {
    let (_dir, mut machine, _shared) = with_topic();
    assert!(matches!(
        produce(&mut machine, 4, &build_batch(1, 0, 1)),
        Applied::Produce(Ok(_))
    ));
    assert_eq!(produce(&mut machine, 4, &build_batch(1, 0, 1)), Applied::Replayed);
    assert_eq!(produce(&mut machine, 2, &build_batch(1, 0, 1)), Applied::Replayed);
}

#[test]
fn a_snapshot_manifest_survives_the_deletion_of_its_segments() {
    let (_dir, mut machine, shared) = with_topic();
    let partition = shared.partition(1).unwrap();
    let small_segments = chronik_log::LogConfig {
        segment_bytes: 200,
        ..partition.log().config().clone()
    };
    partition.log_mut().set_config(small_segments);
    for index in 1..=10 {
        assert!(matches!(
            produce(&mut machine, index, &build_batch(1, 0, 100)),
            Applied::Produce(Ok(_))
        ));
    }
    let (applied, manifest) = machine.snapshot(1).expect("a snapshot");
    assert_eq!(applied, 10);
    assert!(manifest.files.len() > 2, "several segments: {:?}", manifest.files);
    let entry = PartitionCommand::DeleteRecords { offset: 9 }.encode();
    assert_eq!(
        machine.apply(1, 11, 1, &entry, &mut Vec::new()),
        Applied::DeleteRecords(Ok(9))
    );
    for file in &manifest.files {
        let len = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
        assert!(
            len >= file.len,
            "{} is still readable to its length",
            file.path.display()
        );
    }
}

#[test]
fn an_interrupted_restore_leaves_one_whole_partition_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0.g1");
    let replaced = dir.with_extension("replaced");

    // Crash between the two moves: the old directory goes back.
    std::fs::create_dir(&replaced).unwrap();
    std::fs::write(replaced.join("old"), b"old").unwrap();
    recover_interrupted_restore(&dir).unwrap();
    assert!(dir.join("old").exists() && !replaced.exists());

    // Crash before the old directory was deleted: the new one stays.
    std::fs::rename(&dir, &replaced).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("new"), b"new").unwrap();
    recover_interrupted_restore(&dir).unwrap();
    assert!(dir.join("new").exists() && !replaced.exists());
}

#[test]
fn partitions_no_longer_assigned_are_deleted_at_open() {
    let (dir, mut machine, _shared) = with_topic();
    let kept = std::fs::read_dir(dir.path().join("partitions")).unwrap().count();
    assert_eq!(kept, 1);
    let orphan = dir.path().join("partitions/gone-0.g42");
    std::fs::create_dir(&orphan).unwrap();
    let delete = MetadataCommand::DeleteTopic { name: "t".into() };
    // Applied and saved, but the process dies before the directory goes.
    let shared = Arc::new(SharedState::default());
    let mut saved = machine.shared.metadata().clone();
    saved.apply(3, delete, &mut Vec::new()).unwrap();
    saved.save(&dir.path().join("metadata.json")).unwrap();
    drop(machine);
    machine = BrokerStateMachine::open(dir.path(), 1, shared).unwrap();
    assert_eq!(machine.open_group(1), None, "the deleted topic's group is not opened");
    assert_eq!(std::fs::read_dir(dir.path().join("partitions")).unwrap().count(), 0);
}

#[test]
fn a_snapshot_for_a_partition_deleted_in_the_same_iteration_is_ignored() {
    let (dir, mut machine, shared) = with_topic();
    let (_, manifest) = machine.snapshot(1).expect("a snapshot");
    let delete = MetadataCommand::DeleteTopic { name: "t".into() };
    let mut effects = Vec::new();
    machine.apply(
        METADATA_GROUP,
        3,
        1,
        &serde_json::to_vec(&delete).unwrap(),
        &mut effects,
    );
    assert_eq!(effects, [Effect::RemoveGroup { group: 1 }]);
    let staged = dir.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    assert_eq!(machine.restore(1, 5, &manifest, &staged, &mut effects), Ok(()));
    assert!(shared.partition(1).is_none());
}

fn marker(producer_id: i64, producer_epoch: i16, commit: bool) -> Vec<u8> {
    PartitionCommand::TxnMarker(chronik_log::control::Marker {
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch: 0,
        timestamp: 1_700_000_000_000,
    })
    .encode()
}

fn transactional(producer_id: i64, epoch: i16, sequence: i32, records: u32) -> Vec<u8> {
    let mut batch = build_batch(records, 0, 10);
    chronik_log::testing::set_transactional(&mut batch, producer_id, epoch, sequence);
    batch
}

#[test]
fn markers_end_transactions_move_the_stable_offset_and_survive_a_restart() {
    let (dir, mut machine, shared) = with_topic();
    let partition = shared.partition(1).unwrap();
    assert!(matches!(
        produce(&mut machine, 1, &build_batch(2, 0, 10)),
        Applied::Produce(Ok(_))
    ));
    assert!(matches!(
        produce(&mut machine, 2, &transactional(7, 0, 0, 3)),
        Applied::Produce(Ok(_))
    ));
    assert!(matches!(
        produce(&mut machine, 3, &transactional(8, 0, 0, 1)),
        Applied::Produce(Ok(_))
    ));
    assert_eq!((partition.last_stable_offset(), partition.high_watermark()), (2, 6));
    // Producer 7 aborts: its data stays below the stable offset, and is remembered.
    assert_eq!(
        machine.apply(1, 4, 1, &marker(7, 0, false), &mut Vec::new()),
        Applied::TxnMarker(Ok(()))
    );
    assert_eq!((partition.last_stable_offset(), partition.high_watermark()), (5, 7));
    let marker_batch = partition.log().read(6, 1 << 10).unwrap();
    let header = chronik_log::parse_header(&marker_batch).unwrap();
    assert_eq!(
        (header.base_offset, header.is_control(), header.producer_id),
        (6, true, 7)
    );
    // A marker of an older epoch than the partition knows is a zombie coordinator's.
    assert_eq!(
        machine.apply(1, 5, 1, &marker(7, -1, true), &mut Vec::new()),
        Applied::TxnMarker(Err(ResponseError::InvalidProducerEpoch))
    );
    assert_eq!(partition.high_watermark(), 7, "a refused marker writes nothing");
    machine.checkpoint();
    drop(machine);
    drop(partition);
    drop(shared);

    let shared = Arc::new(SharedState::default());
    let mut machine = BrokerStateMachine::open(dir.path(), 1, shared.clone()).unwrap();
    assert_eq!(machine.open_group(1), Some(5));
    let partition = shared.partition(1).unwrap();
    assert_eq!((partition.last_stable_offset(), partition.high_watermark()), (5, 7));
    let aborted: Vec<_> = partition.producers().aborted_between(0, 7).copied().collect();
    assert_eq!(
        aborted,
        [chronik_log::control::AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 6
        }]
    );
    assert_eq!(
        machine.apply(1, 6, 1, &marker(8, 0, true), &mut Vec::new()),
        Applied::TxnMarker(Ok(()))
    );
    assert_eq!((partition.last_stable_offset(), partition.high_watermark()), (8, 8));
}

fn proposed(index: u64, applied: u64) -> Proposed {
    Proposed {
        index,
        term: 1,
        applied,
        leader_ready: true,
    }
}

fn idempotent(producer_id: i64, sequence: i32, records: u32) -> Vec<u8> {
    let mut batch = build_batch(records, 0, 10);
    set_producer(&mut batch, producer_id, 0, sequence);
    batch
}

fn acked(base_offset: i64) -> Applied {
    Applied::Produce(Ok(ProduceAck {
        base_offset,
        log_start_offset: 0,
    }))
}

fn produce_entry(batches: &[u8]) -> Vec<u8> {
    PartitionCommand::Produce { batches }.encode()
}

/// Shows `entry` to the leader's forecast as the next proposal, with
/// nothing applied yet, and appends it to `log` unless refused.
fn foresee(machine: &mut BrokerStateMachine, log: &mut Vec<Vec<u8>>, mut entry: Vec<u8>) -> Prediction<Applied> {
    let prediction = machine.predict(1, proposed(log.len() as u64 + 1, 0), &mut entry);
    if !matches!(prediction, Prediction::Refusal(_)) {
        log.push(entry);
    }
    prediction
}

#[test]
fn a_leader_refuses_before_proposing_what_apply_would_refuse_unchanged() {
    let (_dir, mut machine, shared) = with_topic();
    let mut log: Vec<Vec<u8>> = Vec::new();
    assert_eq!(
        foresee(&mut machine, &mut log, produce_entry(&idempotent(7, 0, 2))),
        Prediction::Outcome(acked(0))
    );
    // Judged against the entry in flight: sequence 5 after 0..=1 is a gap.
    assert_eq!(
        foresee(&mut machine, &mut log, produce_entry(&idempotent(7, 5, 1))),
        Prediction::Refusal(Applied::Produce(Err(ResponseError::OutOfOrderSequenceNumber)))
    );
    assert_eq!(
        foresee(&mut machine, &mut log, produce_entry(&idempotent(7, 2, 1))),
        Prediction::Outcome(acked(2))
    );
    // A transaction and its marker: the forecast goes on past the marker.
    assert_eq!(
        foresee(&mut machine, &mut log, produce_entry(&transactional(8, 1, 0, 1))),
        Prediction::Outcome(acked(3))
    );
    assert_eq!(
        foresee(&mut machine, &mut log, marker(8, 1, true)),
        Prediction::Outcome(Applied::TxnMarker(Ok(())))
    );
    assert_eq!(
        foresee(&mut machine, &mut log, marker(8, 0, true)),
        Prediction::Refusal(Applied::TxnMarker(Err(ResponseError::InvalidProducerEpoch)))
    );
    assert_eq!(
        foresee(&mut machine, &mut log, produce_entry(&idempotent(7, 3, 1))),
        Prediction::Outcome(acked(5))
    );
    assert_eq!(log.len(), 5, "the two refusals were never proposed");

    // Apply agrees with every prediction (a wrong one panics in tests).
    let outcomes: Vec<Applied> = (1..)
        .zip(&log)
        .map(|(index, entry)| machine.apply(1, index, 1, entry, &mut Vec::new()))
        .collect();
    assert_eq!(
        outcomes,
        [acked(0), acked(2), acked(3), Applied::TxnMarker(Ok(())), acked(5)]
    );
    assert_eq!(shared.partition(1).unwrap().high_watermark(), 6);

    // A proposal raft-rs drops is withdrawn: were it still counted, the
    // next proposal would be foreseen at offset 7, behind an entry the
    // forecast never saw (a configuration change at index 6, say).
    let dropped = machine.predict(1, proposed(6, 5), &mut produce_entry(&idempotent(7, 4, 1)));
    assert_eq!(dropped, Prediction::Outcome(acked(6)));
    machine.withdraw(1);
    assert_eq!(
        machine.predict(1, proposed(7, 5), &mut produce_entry(&idempotent(7, 4, 1))),
        Prediction::Wait,
        "with entry 6 in flight and unseen, a batch waits for it to be applied"
    );
    assert_eq!(
        machine.predict(
            1,
            proposed(7, 5),
            &mut PartitionCommand::DeleteRecords { offset: 1 }.encode()
        ),
        Prediction::Unknown,
        "commands other than batches and markers need no forecast"
    );
    // Once everything is applied, a new forecast starts from the log.
    assert_eq!(
        machine.predict(1, proposed(6, 5), &mut produce_entry(&idempotent(7, 4, 1))),
        Prediction::Outcome(acked(6))
    );
}

/// Apply checks a marker's prediction as it does a batch's: an entry that
/// does otherwise than foreseen is a defect (a panic in tests).
#[test]
#[should_panic(expected = "forecast was wrong")]
fn apply_checks_a_marker_against_its_prediction() {
    let (_dir, mut machine, _shared) = with_topic();
    let mut log: Vec<Vec<u8>> = Vec::new();
    foresee(&mut machine, &mut log, produce_entry(&transactional(8, 1, 0, 1)));
    assert_eq!(
        foresee(&mut machine, &mut log, marker(8, 1, true)),
        Prediction::Outcome(Applied::TxnMarker(Ok(())))
    );
    machine.apply(1, 1, 1, &log[0], &mut Vec::new());
    // Not the entry foreseen at index 2: a fenced coordinator's marker.
    machine.apply(1, 2, 1, &marker(8, 0, true), &mut Vec::new());
}

/// The offsets a leader's forecast assigns travel in the entries, and every
/// replica checks them at apply: a follower that never forecast anything
/// appends each batch at the offset in its header, and an entry whose
/// offset is not the log's next one is refused and changes nothing.
#[test]
fn every_replica_checks_the_offsets_its_leader_assigned() {
    let (_leader_dir, mut leader, _) = with_topic();
    let mut log: Vec<Vec<u8>> = Vec::new();
    foresee(&mut leader, &mut log, produce_entry(&idempotent(7, 0, 2)));
    foresee(&mut leader, &mut log, produce_entry(&transactional(8, 1, 0, 3)));
    foresee(&mut leader, &mut log, marker(8, 1, true));
    let Some(PartitionCommand::AssignedProduce { batches }) = PartitionCommand::decode(&log[1]) else {
        panic!("a judged batch enters the log assigned");
    };
    let header = chronik_log::parse_header(batches).unwrap();
    assert_eq!(
        (header.base_offset, header.partition_leader_epoch),
        (2, epoch_of_term(1))
    );
    assert!(matches!(
        PartitionCommand::decode(&log[2]),
        Some(PartitionCommand::AssignedTxnMarker { offset: 5, .. })
    ));

    let (_follower_dir, mut follower, shared) = with_topic();
    let outcomes: Vec<Applied> = (1..)
        .zip(&log)
        .map(|(index, entry)| follower.apply(1, index, 1, entry, &mut Vec::new()))
        .collect();
    assert_eq!(outcomes, [acked(0), acked(2), Applied::TxnMarker(Ok(()))]);
    let partition = shared.partition(1).unwrap();
    let stored = partition.log().read(2, 1 << 20).unwrap();
    let stored_batch = &stored[chronik_log::frame_batches(&stored).unwrap()[0].clone()];
    assert_eq!(stored_batch, batches, "the log stores the entry's batch byte for byte");

    // Out of place, the same entries are refused on every replica.
    let (_dir, mut misplaced, shared) = with_topic();
    assert_eq!(
        misplaced.apply(1, 1, 1, &log[1], &mut Vec::new()),
        Applied::Produce(Err(ResponseError::KafkaStorageError))
    );
    assert_eq!(
        misplaced.apply(1, 2, 1, &log[2], &mut Vec::new()),
        Applied::TxnMarker(Err(ResponseError::KafkaStorageError))
    );
    let partition = shared.partition(1).unwrap();
    assert_eq!((partition.log().next_offset(), partition.high_watermark()), (0, 0));
    // The partition goes on: the leader's first entry fits here.
    assert_eq!(misplaced.apply(1, 3, 1, &log[0], &mut Vec::new()), acked(0));
}

#[test]
fn below_the_assigned_offsets_level_entries_enter_the_log_as_proposed() {
    use crate::version::{ASSIGNED_OFFSETS, FIRST};
    let (_leader_dir, mut leader, shared) = with_topic_at(FIRST);
    let mut log: Vec<Vec<u8>> = Vec::new();
    let first = produce_entry(&idempotent(7, 0, 2));
    assert_eq!(
        foresee(&mut leader, &mut log, first.clone()),
        Prediction::Outcome(acked(0))
    );
    foresee(&mut leader, &mut log, produce_entry(&transactional(8, 1, 0, 3)));
    let unassigned_marker = marker(8, 1, true);
    foresee(&mut leader, &mut log, unassigned_marker.clone());
    assert_eq!(log[0], first, "a replica of an older build reads the entry");
    assert_eq!(log[2], unassigned_marker);

    // A replica at the same level applies them at the offsets predicted.
    let (_follower_dir, mut follower, _) = with_topic_at(FIRST);
    let outcomes: Vec<Applied> = (1..)
        .zip(&log)
        .map(|(index, entry)| follower.apply(1, index, 1, entry, &mut Vec::new()))
        .collect();
    assert_eq!(outcomes, [acked(0), acked(2), Applied::TxnMarker(Ok(()))]);

    // Once the cluster moves up, the next entry carries its offsets.
    let set = |level: i16| {
        serde_json::to_vec(&MetadataCommand::SetVersion {
            level,
            members: vec![1],
        })
        .unwrap()
    };
    let applied = leader.apply(METADATA_GROUP, 3, 1, &set(ASSIGNED_OFFSETS), &mut Vec::new());
    assert_eq!(applied, Applied::Metadata(Ok(MetadataReply::Done)));
    for (index, entry) in (1..).zip(&log) {
        leader.apply(1, index, 1, entry, &mut Vec::new());
    }
    let mut entry = produce_entry(&idempotent(7, 2, 1));
    let prediction = leader.predict(1, proposed(4, 3), &mut entry);
    assert_eq!(prediction, Prediction::Outcome(acked(6)));
    assert!(matches!(
        PartitionCommand::decode(&entry),
        Some(PartitionCommand::AssignedProduce { .. })
    ));

    // It never moves back down.
    let Applied::Metadata(Err(refused)) = leader.apply(METADATA_GROUP, 4, 1, &set(FIRST), &mut Vec::new()) else {
        panic!("a lower level is refused");
    };
    assert_eq!(refused.error, ResponseError::InvalidUpdateVersion);
    assert_eq!(shared.metadata().version_level(), ASSIGNED_OFFSETS);
}

/// An `AssignedProduce` entry of `batch` at `offset`, as a leader of `term`
/// proposes it.
fn assigned_entry(batch: &[u8], offset: i64, term: u64) -> Vec<u8> {
    let mut entry = produce_entry(batch);
    command::assign_produce(&mut entry, &[Some(offset)], epoch_of_term(term));
    entry
}

fn appending(index: u64, term: u64, data: &[u8]) -> Appending<'_> {
    Appending {
        index,
        term,
        normal: true,
        data,
    }
}

#[test]
fn batches_written_at_append_are_found_in_place_at_apply_and_read_back_by_reference() {
    let (_dir, mut machine, shared) = with_topic();
    let partition = shared.partition(1).unwrap();
    let first = assigned_entry(&build_batch(2, 0, 10), 0, 1);
    let second = assigned_entry(&build_batch(3, 0, 10), 2, 1);
    let references = machine.keep_bodies(1, 0, 0, &[appending(1, 1, &first), appending(2, 1, &second)]);
    machine.sync_bodies();
    assert!(references.iter().all(Option::is_some), "{references:?}");
    assert_eq!((partition.log().next_offset(), partition.high_watermark()), (5, 0));
    assert_eq!(partition.synced_end(), 5, "synced before the references are written");
    let bodies = machine.bodies(1).unwrap();
    assert_eq!(
        bodies.read(references[0].as_ref().unwrap()),
        Ok(Body::Whole(first.clone()))
    );
    assert_eq!(
        bodies.read(references[1].as_ref().unwrap()),
        Ok(Body::Whole(second.clone()))
    );

    assert_eq!(machine.apply(1, 1, 1, &first, &mut Vec::new()), acked(0));
    assert_eq!(machine.apply(1, 2, 1, &second, &mut Vec::new()), acked(2));
    assert_eq!(
        (partition.log().next_offset(), partition.high_watermark()),
        (5, 5),
        "apply wrote nothing again"
    );
    // DeleteRecords moves the log start past them: a replay still reads them.
    let delete = PartitionCommand::DeleteRecords { offset: 5 }.encode();
    assert!(matches!(
        machine.apply(1, 3, 1, &delete, &mut Vec::new()),
        Applied::DeleteRecords(Ok(5))
    ));
    assert_eq!(bodies.read(references[0].as_ref().unwrap()), Ok(Body::Whole(first)));
    // A reference whose bytes changed since reads as gone, or, below the
    // last checkpoint (which a restart does not apply again), as applied.
    let mut stale = references[0].clone().unwrap();
    let last = stale.len() - 1;
    stale[last] ^= 1;
    assert!(bodies.read(&stale).is_err());
    partition.set_durable_end(5);
    assert_eq!(bodies.read(&stale), Ok(Body::Applied));
}

#[test]
fn entries_that_replace_unapplied_ones_are_written_at_apply_over_what_those_left() {
    let (_dir, mut machine, shared) = with_topic();
    let partition = shared.partition(1).unwrap();
    let old = assigned_entry(&build_batch(4, 0, 10), 0, 1);
    assert!(machine.keep_bodies(1, 0, 0, &[appending(1, 1, &old)])[0].is_some());
    // A new leader of term 2 replaces entry 1: nothing is written at append
    // (references to the old entry are still durable until this write).
    let new = assigned_entry(&build_batch(1, 0, 10), 0, 2);
    assert!(machine.keep_bodies(1, 0, 1, &[appending(1, 2, &new)]).is_empty());
    assert_eq!(partition.log().next_offset(), 4, "the old batch stays until apply");
    assert_eq!(machine.apply(1, 1, 2, &new, &mut Vec::new()), acked(0));
    assert_eq!((partition.log().next_offset(), partition.high_watermark()), (1, 1));
    let stored = partition.log().read(0, 1 << 10).unwrap();
    assert_eq!(
        &stored[..],
        &new[1..],
        "the new entry's batch, as its leader stamped it"
    );
    // Everything is applied: the next entries are written at append again.
    let next = assigned_entry(&build_batch(1, 0, 10), 1, 2);
    assert!(machine.keep_bodies(1, 1, 1, &[appending(2, 2, &next)])[0].is_some());
}

/// A crash after the segments were synced and before the Raft log stored
/// the references leaves batches no entry names; one torn by a power loss
/// leaves a damaged tail. A restart keeps what replay reads, and the
/// writer cuts the rest once everything in the Raft log is applied.
#[test]
fn after_a_crash_batches_past_the_raft_log_are_cut_and_referenced_ones_replay() {
    let (dir, mut machine, shared) = with_topic();
    let referenced = assigned_entry(&build_batch(2, 0, 10), 0, 1);
    let unlogged = assigned_entry(&build_batch(3, 0, 10), 2, 1);
    let reference = machine.keep_bodies(1, 0, 0, &[appending(1, 1, &referenced)])[0]
        .clone()
        .unwrap();
    machine.sync_bodies();
    machine.keep_bodies(1, 0, 1, &[appending(2, 1, &unlogged)]);
    machine.sync_bodies();
    let segment = shared.partition(1).unwrap().log().segment_files()[0].clone();
    drop(machine);
    drop(shared);
    // The power loss tears the unlogged batch.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment.0)
        .unwrap()
        .set_len(segment.1 - 7)
        .unwrap();

    let shared = Arc::new(SharedState::default());
    let mut machine = BrokerStateMachine::open(dir.path(), 1, shared.clone()).unwrap();
    assert_eq!(machine.open_group(1), Some(0));
    let partition = shared.partition(1).unwrap();
    assert_eq!(
        (partition.log().next_offset(), partition.high_watermark()),
        (2, 0),
        "the torn batch is cut at open, the referenced one kept"
    );
    let Ok(Body::Whole(replayed)) = machine.bodies(1).unwrap().read(&reference) else {
        panic!("the referenced entry reads back");
    };
    assert_eq!(replayed, referenced);
    assert_eq!(machine.apply(1, 1, 1, &replayed, &mut Vec::new()), acked(0));
    // The leader sends entry 2 again, another batch at offset 2.
    let resent = assigned_entry(&build_batch(1, 0, 10), 2, 1);
    assert!(machine.keep_bodies(1, 1, 1, &[appending(2, 1, &resent)])[0].is_some());
    assert_eq!(machine.apply(1, 2, 1, &resent, &mut Vec::new()), acked(2));
    assert_eq!((partition.log().next_offset(), partition.high_watermark()), (3, 3));
}

#[test]
fn below_the_one_write_level_batches_are_written_at_apply_only() {
    let (_dir, mut machine, shared) = with_topic_at(crate::version::ASSIGNED_OFFSETS);
    let entry = assigned_entry(&build_batch(2, 0, 10), 0, 1);
    assert!(machine.keep_bodies(1, 0, 0, &[appending(1, 1, &entry)]).is_empty());
    let partition = shared.partition(1).unwrap();
    assert_eq!(partition.log().next_offset(), 0);
    assert_eq!(machine.apply(1, 1, 1, &entry, &mut Vec::new()), acked(0));
    assert_eq!(partition.log().next_offset(), 2);
}
