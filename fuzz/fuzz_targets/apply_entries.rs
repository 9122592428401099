//! Feeds arbitrary committed entries to the broker's state machine, the way
//! the Raft loop applies them: produce entries holding valid, corrupted or
//! garbage batches from idempotent, transactional and plain producers,
//! transaction markers, DeleteRecords,
//! metadata commands, undecodable bytes, checkpoints, snapshots and
//! restarts. Apply must never panic, what it reports must match the log, a
//! leader's acks=1 prediction of a produce entry must match apply, and an
//! entry the leader would refuse before proposing it must be refused by
//! apply with the same error and change nothing. Bursts of batches and
//! markers are judged by the leader's forecast while the ones before them
//! are still in flight, and apply must do what it foresaw.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use chronik_log::control::Marker;
use chronik_log::testing::{build_batch, set_producer, set_transactional};
use chronik_raft::{METADATA_GROUP, Prediction, Proposed, StateMachine};
use chronik_state::command::PartitionCommand;
use chronik_state::metadata::{MetadataCommand, NodeInfo};
use chronik_state::replicated::{Applied, BrokerStateMachine, SharedState};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Batch {
    records: u8,
    payload: u8,
    /// Producer id, epoch and base sequence of an idempotent producer.
    producer: Option<(u8, i16, i32)>,
    /// With a producer: part of its transaction.
    transactional: bool,
    /// A byte to overwrite: (position, value).
    corrupt: Option<(u16, u8)>,
}

/// One proposal of a burst.
#[derive(Debug, Arbitrary)]
enum Proposal {
    Produce(Vec<Batch>),
    Marker { producer: u8, epoch: i16, commit: bool },
}

#[derive(Debug, Arbitrary)]
enum Step {
    Produce { group: u8, batches: Vec<Batch> },
    /// Proposals to one group, each judged before any is applied.
    Burst { group: u8, proposals: Vec<Proposal> },
    DeleteRecords { group: u8, offset: i64 },
    TxnMarker { group: u8, producer: u8, epoch: i16, commit: bool },
    PartitionBytes { group: u8, bytes: Vec<u8> },
    MetadataBytes(Vec<u8>),
    CreateTopic { name: u8, partitions: i8 },
    DeleteTopic { name: u8 },
    Checkpoint,
    Snapshot { group: u8 },
    Restart,
}

fn batch(spec: &Batch) -> Vec<u8> {
    let mut batch = build_batch(
        u32::from(spec.records % 8),
        1_700_000_000_000,
        usize::from(spec.payload % 64),
    );
    match spec.producer {
        Some((id, epoch, sequence)) if spec.transactional => {
            set_transactional(&mut batch, i64::from(id % 4), epoch, sequence)
        }
        Some((id, epoch, sequence)) => set_producer(&mut batch, i64::from(id % 4), epoch, sequence),
        None => {}
    }
    if let Some((position, value)) = spec.corrupt {
        let len = batch.len();
        batch[usize::from(position) % len] = value;
    }
    batch
}

fn produce_entry(batches: &[Batch]) -> Vec<u8> {
    let data: Vec<u8> = batches.iter().take(4).flat_map(batch).collect();
    PartitionCommand::Produce { batches: &data }.encode()
}

fn marker_entry(producer: u8, epoch: i16, commit: bool) -> Vec<u8> {
    let marker = Marker {
        producer_id: i64::from(producer % 4),
        producer_epoch: epoch,
        commit,
        coordinator_epoch: 0,
        timestamp: 1_700_000_000_000,
    };
    PartitionCommand::TxnMarker(marker).encode()
}

/// Fields drop in order: the state machine (which finishes its checkpoints)
/// before the directory.
struct Node {
    machine: BrokerStateMachine,
    shared: Arc<SharedState>,
    dir: tempfile::TempDir,
}

impl Node {
    fn open(dir: tempfile::TempDir) -> Node {
        let shared = Arc::new(SharedState::default());
        let mut machine = BrokerStateMachine::open(dir.path(), 1, shared.clone()).expect("open");
        let groups: Vec<u64> = shared.metadata().groups_of_node(1);
        for group in groups {
            machine.open_group(group);
        }
        Node { machine, shared, dir }
    }
}

fn metadata(node: &mut Node, index: u64, command: &MetadataCommand) {
    let mut effects = Vec::new();
    node.machine.apply(
        METADATA_GROUP,
        index,
        1,
        &serde_json::to_vec(command).unwrap(),
        &mut effects,
    );
    for effect in effects {
        if let chronik_raft::Effect::CreateGroup { group, .. } = effect {
            node.machine.open_group(group);
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut node = Node::open(tempfile::tempdir().unwrap());
    let mut index = 0u64;
    let mut next = || {
        index += 1;
        index
    };
    let init = MetadataCommand::InitCluster {
        cluster_id: "fuzz".into(),
        nodes: [(
            1,
            NodeInfo {
                raft_addr: String::new(),
                pending: false,
            },
        )]
        .into(),
        version: chronik_state::version::NEWEST,
    };
    metadata(&mut node, next(), &init);
    let mut partition_index = 0u64;
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{steps:#?}");
    }
    for step in steps.iter().take(64) {
        match step {
            Step::Produce { group, batches } => {
                let group = u64::from(group % 4);
                let mut entry = produce_entry(batches);
                partition_index += 1;
                // What a leader would answer an acks=1 producer must be what
                // apply does (apply checks it too, and panics if not).
                let proposed = Proposed {
                    index: partition_index,
                    term: 1,
                    applied: partition_index - 1,
                    leader_ready: true,
                };
                let predicted = node.machine.predict(group.max(1), proposed, &mut entry);
                let end_before = node.shared.partition(group.max(1)).map(|p| p.log().next_offset());
                let outcome = node
                    .machine
                    .apply(group.max(1), partition_index, 1, &entry, &mut Vec::new());
                match (&predicted, &outcome) {
                    (Prediction::Outcome(Applied::Produce(predicted)), Applied::Produce(applied)) => assert_eq!(
                        predicted.map(|ack| ack.base_offset),
                        applied.map(|ack| ack.base_offset),
                        "the acks=1 prediction differs from apply"
                    ),
                    (Prediction::Refusal(refused), _) => {
                        assert_eq!(refused, &outcome, "apply differs from the leader's refusal");
                        let end_after = node.shared.partition(group.max(1)).map(|p| p.log().next_offset());
                        assert_eq!(end_before, end_after, "an entry the leader refuses changed the log");
                    }
                    _ => {}
                }
                if let (Applied::Produce(Ok(ack)), Some(partition)) = (&outcome, node.shared.partition(group.max(1))) {
                    let log = partition.log();
                    assert!(ack.base_offset < log.next_offset(), "acknowledged past the log end");
                    assert_eq!(partition.high_watermark(), log.next_offset());
                }
            }
            Step::Burst { group, proposals } => {
                let group = u64::from(group % 4).max(1);
                let applied = partition_index;
                let mut in_flight = Vec::new();
                for proposal in proposals.iter().take(8) {
                    let mut entry = match proposal {
                        Proposal::Produce(batches) => produce_entry(batches),
                        Proposal::Marker {
                            producer,
                            epoch,
                            commit,
                        } => marker_entry(*producer, *epoch, *commit),
                    };
                    let proposed = Proposed {
                        index: partition_index + 1,
                        term: 1,
                        applied,
                        leader_ready: true,
                    };
                    match node.machine.predict(group, proposed, &mut entry) {
                        // Never proposed: it takes no index.
                        Prediction::Refusal(_) => {}
                        prediction => {
                            partition_index += 1;
                            in_flight.push((partition_index, entry, prediction));
                        }
                    }
                }
                for (index, entry, prediction) in in_flight {
                    let outcome = node.machine.apply(group, index, 1, &entry, &mut Vec::new());
                    if let Prediction::Outcome(predicted) = prediction {
                        assert_eq!(predicted, outcome, "apply differs from the forecast of entry {index}");
                    }
                }
            }
            Step::DeleteRecords { group, offset } => {
                partition_index += 1;
                let entry = PartitionCommand::DeleteRecords { offset: *offset }.encode();
                node.machine
                    .apply(u64::from(group % 4).max(1), partition_index, 1, &entry, &mut Vec::new());
            }
            Step::TxnMarker {
                group,
                producer,
                epoch,
                commit,
            } => {
                partition_index += 1;
                let entry = marker_entry(*producer, *epoch, *commit);
                let group = u64::from(group % 4).max(1);
                let outcome = node.machine.apply(group, partition_index, 1, &entry, &mut Vec::new());
                if let (Applied::TxnMarker(Ok(())), Some(partition)) = (&outcome, node.shared.partition(group)) {
                    assert_eq!(partition.high_watermark(), partition.log().next_offset());
                }
            }
            Step::PartitionBytes { group, bytes } => {
                partition_index += 1;
                node.machine
                    .apply(u64::from(group % 4).max(1), partition_index, 1, bytes, &mut Vec::new());
            }
            Step::MetadataBytes(bytes) => {
                let index = next();
                node.machine.apply(METADATA_GROUP, index, 1, bytes, &mut Vec::new());
            }
            Step::CreateTopic { name, partitions } => {
                let command = MetadataCommand::CreateTopic {
                    name: format!("t{}", name % 3),
                    id: uuid::Uuid::from_u128(u128::from(*name)),
                    partitions: i32::from(*partitions % 4),
                    replication_factor: -1,
                    configs: Default::default(),
                    assignment: None,
                };
                metadata(&mut node, next(), &command);
            }
            Step::DeleteTopic { name } => {
                let command = MetadataCommand::DeleteTopic {
                    name: format!("t{}", name % 3),
                };
                metadata(&mut node, next(), &command);
            }
            Step::Checkpoint => {
                node.machine.checkpoint();
            }
            Step::Snapshot { group } => {
                node.machine.snapshot(u64::from(group % 4));
            }
            Step::Restart => {
                let Node { dir, machine, .. } = node;
                drop(machine);
                node = Node::open(dir);
            }
        }
        for partition in node.shared.all_partitions() {
            let (stable, high) = (partition.last_stable_offset(), partition.high_watermark());
            assert!(stable <= high, "last stable offset {stable} past the high watermark {high}");
            for aborted in partition.producers().aborted() {
                assert!(aborted.first_offset <= aborted.last_offset && aborted.last_offset < high);
            }
        }
    }
});
