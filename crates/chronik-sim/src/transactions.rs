//! Transactional clients: a producer that writes transactions across the
//! data partitions and ends each with markers, as its coordinator would
//! (the coordinator itself is the broker's; what the simulation checks is
//! what partitions do with transactional batches and markers), and readers
//! that tail each partition as read_committed consumers do.

use std::collections::BTreeSet;

use bytes::Bytes;
use chronik_log::control::Marker;
use chronik_raft::{GroupId, NodeId};
use chronik_state::command::PartitionCommand;
use chronik_state::replicated::Applied;
use rand::Rng;

use crate::checker::TopicPartition;
use crate::records;
use crate::workload::{Attempt, Poll, REQUEST_TIMEOUT, RETRY_BACKOFF, World, poll};

struct Lane {
    tp: TopicPartition,
    group: GroupId,
    leader: Option<NodeId>,
    next_sequence: i32,
}

/// A request repeated until it is answered.
struct Request {
    lane: usize,
    attempt: Option<Attempt>,
    retry_at: std::time::Duration,
}

struct Batch {
    request: Request,
    values: Vec<Bytes>,
    batch: Vec<u8>,
}

enum Phase {
    Idle,
    Writing {
        batches_left: u32,
        touched: BTreeSet<usize>,
        values: Vec<Bytes>,
        in_flight: Option<Batch>,
    },
    /// Decided; the markers still to be written.
    Ending {
        commit: bool,
        markers: Vec<Request>,
    },
}

/// One transactional producer, whose transactions write one to three
/// batches to random partitions and then commit or abort.
pub struct TxnProducer {
    producer_id: i64,
    lanes: Vec<Lane>,
    transactions: u64,
    written: u64,
    phase: Phase,
}

impl TxnProducer {
    pub fn new(producer_id: i64, partitions: &[(TopicPartition, GroupId)]) -> Self {
        let lanes = partitions
            .iter()
            .map(|(tp, group)| Lane {
                tp: tp.clone(),
                group: *group,
                leader: None,
                next_sequence: 0,
            })
            .collect();
        TxnProducer {
            producer_id,
            lanes,
            transactions: 0,
            written: 0,
            phase: Phase::Idle,
        }
    }

    pub fn idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// One step; a new transaction starts only while `working`, and an
    /// open one is ended soon once it is not.
    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>, working: bool) {
        match &mut self.phase {
            Phase::Idle => {
                if working && !self.lanes.is_empty() && world.rng.gen_bool(0.02) {
                    self.phase = Phase::Writing {
                        batches_left: world.rng.gen_range(1..=3),
                        touched: BTreeSet::new(),
                        values: Vec::new(),
                        in_flight: None,
                    };
                }
            }
            Phase::Writing {
                batches_left,
                touched,
                values,
                in_flight,
            } => {
                if let Some(batch) = in_flight.as_mut() {
                    if let Some(base_offset) = write(&mut self.lanes, world, batch) {
                        let tp = &self.lanes[batch.request.lane].tp;
                        world.checker.acked(tp, base_offset, &batch.values, true);
                        touched.insert(batch.request.lane);
                        values.extend(batch.values.iter().cloned());
                        *batches_left = batches_left.saturating_sub(1);
                        *in_flight = None;
                    }
                    return;
                }
                if *batches_left == 0 || !working {
                    let commit = world.rng.gen_bool(0.6);
                    world.checker.transaction_decided(values, commit);
                    world.history.record(
                        world.now,
                        format!(
                            "txn {} {} over {touched:?}",
                            self.transactions,
                            if commit { "commits" } else { "aborts" }
                        ),
                    );
                    let markers = touched
                        .iter()
                        .map(|&lane| Request {
                            lane,
                            attempt: None,
                            retry_at: world.now,
                        })
                        .collect();
                    self.phase = Phase::Ending { commit, markers };
                    return;
                }
                let lane = world.rng.gen_range(0..self.lanes.len());
                let count = world.rng.gen_range(1..=2u64);
                let batch_values: Vec<Bytes> = (0..count)
                    .map(|i| Bytes::from(format!("txn{}:{}", self.producer_id, self.written + i)))
                    .collect();
                self.written += count;
                world.checker.transaction_writes(&batch_values);
                let sequence = self.lanes[lane].next_sequence;
                self.lanes[lane].next_sequence += count as i32;
                *in_flight = Some(Batch {
                    batch: records::encode_transactional(&batch_values, (self.producer_id, sequence)),
                    values: batch_values,
                    request: Request {
                        lane,
                        attempt: None,
                        retry_at: world.now,
                    },
                });
            }
            Phase::Ending { commit, markers } => {
                let marker = Marker {
                    producer_id: self.producer_id,
                    producer_epoch: 0,
                    commit: *commit,
                    coordinator_epoch: 0,
                    timestamp: 0,
                };
                let mut index = 0;
                while index < markers.len() {
                    if send_marker(&mut self.lanes, world, &mut markers[index], marker) {
                        markers.swap_remove(index);
                    } else {
                        index += 1;
                    }
                }
                if markers.is_empty() {
                    self.transactions += 1;
                    self.phase = Phase::Idle;
                }
            }
        }
    }
}

/// Drives one data batch; its base offset once acknowledged.
fn write<R: Rng>(lanes: &mut [Lane], world: &mut World<'_, R>, batch: &mut Batch) -> Option<i64> {
    let request = &mut batch.request;
    match answer(request, world) {
        Some(Applied::Produce(Ok(ack))) => return Some(ack.base_offset),
        Some(Applied::Produce(Err(error))) => world.checker.refused(&lanes[request.lane].tp, error),
        _ => {}
    }
    let data = PartitionCommand::Produce { batches: &batch.batch }.encode();
    send(&mut lanes[request.lane], world, request, data);
    None
}

/// Drives one marker; whether it is written.
fn send_marker<R: Rng>(lanes: &mut [Lane], world: &mut World<'_, R>, request: &mut Request, marker: Marker) -> bool {
    match answer(request, world) {
        Some(Applied::TxnMarker(Ok(()))) => return true,
        Some(Applied::TxnMarker(Err(error))) => {
            let tp = &lanes[request.lane].tp;
            world.checker.violate(format!(
                "{}-{}: the marker of producer {} was refused: {error:?}",
                tp.0, tp.1, marker.producer_id
            ));
            return true;
        }
        Some(_) | None => {}
    }
    send(
        &mut lanes[request.lane],
        world,
        request,
        PartitionCommand::TxnMarker(marker).encode(),
    );
    false
}

/// The answer to `request`'s attempt, if one came; after anything but an
/// answer the request is sent again once its backoff has passed.
fn answer<R: Rng>(request: &mut Request, world: &mut World<'_, R>) -> Option<Applied> {
    let attempt = request.attempt.as_mut()?;
    match poll(attempt, world.now) {
        Poll::Waiting => None,
        Poll::Answered(applied) => {
            request.attempt = None;
            request.retry_at = world.now + RETRY_BACKOFF;
            Some(applied)
        }
        Poll::Retry => {
            request.attempt = None;
            request.retry_at = world.now + RETRY_BACKOFF;
            None
        }
    }
}

fn send<R: Rng>(lane: &mut Lane, world: &mut World<'_, R>, request: &mut Request, data: Vec<u8>) {
    if request.attempt.is_some() || world.now < request.retry_at {
        return;
    }
    let Some(index) = world.server(lane.group, &mut lane.leader) else {
        request.retry_at = world.now + RETRY_BACKOFF;
        return;
    };
    if let Some(outcome) = world.nodes[index].propose(lane.group, data) {
        request.attempt = Some(Attempt {
            outcome,
            deadline: world.now + REQUEST_TIMEOUT,
        });
    }
}

/// Tails one partition as a read_committed consumer: up to the last stable
/// offset, skipping markers and the batches of aborted transactions. The
/// last stable offset must never pass the high watermark nor go back.
pub struct CommittedReader {
    tp: TopicPartition,
    group: GroupId,
    leader: Option<NodeId>,
    position: i64,
    stable: i64,
}

impl CommittedReader {
    pub fn new(tp: TopicPartition, group: GroupId) -> Self {
        CommittedReader {
            tp,
            group,
            leader: None,
            position: 0,
            stable: 0,
        }
    }

    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>) {
        if !world.rng.gen_bool(0.2) {
            return;
        }
        let Some(index) = world.server(self.group, &mut self.leader) else {
            return;
        };
        let node = world.nodes[index].id;
        let Some(partition) = world.nodes[index].shared().and_then(|s| s.partition(self.group)) else {
            return;
        };
        let (stable, high) = (partition.last_stable_offset(), partition.high_watermark());
        if stable > high || stable < self.stable {
            world.checker.violate(format!(
                "{}-{}: node {node} served last stable offset {stable} (high watermark {high}) after {} was seen",
                self.tp.0, self.tp.1, self.stable
            ));
            return;
        }
        self.stable = stable;
        if self.position >= stable {
            return;
        }
        let read = partition.log().read(self.position, 64 << 10);
        let batches = match read.map_err(|e| e.to_string()).and_then(|b| split(&b).map(|r| (b, r))) {
            Ok(read) => read,
            Err(e) => {
                world.checker.violate(format!(
                    "{}-{}: node {node} cannot read offset {}: {e}",
                    self.tp.0, self.tp.1, self.position
                ));
                return;
            }
        };
        let (bytes, headers) = batches;
        let aborted: Vec<_> = partition
            .producers()
            .aborted_between(self.position, stable)
            .copied()
            .collect();
        let mut given = Vec::new();
        for (range, header) in headers {
            if header.base_offset >= stable {
                break;
            }
            if header.base_offset > self.position {
                world.checker.violate(format!(
                    "{}-{}: node {node} returned a batch at {} where {} was next",
                    self.tp.0, self.tp.1, header.base_offset, self.position
                ));
                return;
            }
            if !header.is_control() && !chronik_log::control::is_aborted(&aborted, &header) {
                match records::decode(bytes.slice(range)) {
                    Ok(records) => given.extend(records.into_iter().filter(|(o, _)| *o >= self.position)),
                    Err(e) => {
                        world
                            .checker
                            .violate(format!("{}-{}: node {node}: {e}", self.tp.0, self.tp.1));
                        return;
                    }
                }
            }
            self.position = header.last_offset() + 1;
        }
        world.checker.read_committed(&self.tp, &given);
    }
}

type Headers = Vec<(std::ops::Range<usize>, chronik_log::BatchHeader)>;

fn split(bytes: &Bytes) -> Result<Headers, String> {
    let ranges = chronik_log::split_batches(bytes).map_err(|e| e.to_string())?;
    ranges
        .into_iter()
        .map(|r| {
            chronik_log::parse_header(&bytes[r.clone()])
                .map(|h| (r, h))
                .map_err(|e| e.to_string())
        })
        .collect()
}
