//! The clients of a run: producers (idempotent and plain), readers that
//! tail each partition from its leader, and consumer groups committing
//! offsets. Each behaves as a Kafka client does: it finds the leader, sends,
//! and on an error or a timeout retries the same request.

use std::time::Duration;

use bytes::Bytes;
use chronik_raft::{GroupId, NodeId};
use chronik_state::command::PartitionCommand;
use chronik_state::consumer_offsets::{self, Change, CommittedOffset};
use chronik_state::replicated::Applied;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::checker::{Checker, TopicPartition};
use crate::history::History;
use crate::node::{Outcome, SimNode};
use crate::records;

/// An answer not received by then is given up on, and the request retried.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// Everything a client acts on in one step.
pub struct World<'a, R: Rng> {
    pub nodes: &'a mut [SimNode],
    pub now: Duration,
    /// `now` on the nodes' clock.
    pub at: std::time::Instant,
    pub rng: &'a mut R,
    pub checker: &'a mut Checker,
    pub history: &'a mut History,
}

impl<R: Rng> World<'_, R> {
    /// The node serving `group`, found the way a client does: the leader it
    /// knew, else the leader a random reachable node names. Now and then it
    /// asks a random node even while the leader it knows answers, as clients
    /// refresh their metadata on a timer.
    pub fn server(&mut self, group: GroupId, guess: &mut Option<NodeId>) -> Option<usize> {
        let refresh = self.rng.gen_bool(0.05);
        if !refresh && let Some(index) = guess.and_then(|id| self.serving(id, group)) {
            return Some(index);
        }
        let reachable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_reachable(self.now))
            .collect();
        let &asked = reachable.choose(self.rng)?;
        *guess = self.nodes[asked].leader_hint(group);
        guess.and_then(|id| self.serving(id, group))
    }

    /// The node `id` if it serves `group`. One whose group sleeps is woken,
    /// and serves at a later try.
    fn serving(&mut self, id: NodeId, group: GroupId) -> Option<usize> {
        let index = self.nodes.iter().position(|n| n.id == id)?;
        let node = &mut self.nodes[index];
        if !node.is_reachable(self.now) {
            return None;
        }
        node.awaken(group);
        node.serves(group, self.at).then_some(index)
    }
}

/// A request sent and not answered yet.
pub(crate) struct Attempt {
    pub outcome: Outcome,
    pub deadline: Duration,
}

/// What a poll of an attempt found.
pub(crate) enum Poll {
    Waiting,
    Answered(Applied),
    /// No answer will come (the node stopped, the leadership moved, or the
    /// wait timed out): send again.
    Retry,
}

pub(crate) fn poll(attempt: &mut Attempt, now: Duration) -> Poll {
    match attempt.outcome.try_recv() {
        Ok(Ok(applied)) => Poll::Answered(applied),
        Ok(Err(_)) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Poll::Retry,
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) if now >= attempt.deadline => Poll::Retry,
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => Poll::Waiting,
    }
}

/// A batch being produced until it is acknowledged.
struct InFlight {
    values: Vec<Bytes>,
    batch: Vec<u8>,
    /// Answered once in the leader's own log (acks=1), not once committed.
    local: bool,
    /// Times it was proposed: a plain producer's retry may store it twice.
    proposals: u32,
    attempt: Option<Attempt>,
    retry_at: Duration,
}

struct Lane {
    tp: TopicPartition,
    group: GroupId,
    leader: Option<NodeId>,
    next_sequence: i32,
    produced: u64,
    last_acked: Option<i64>,
    in_flight: Option<InFlight>,
}

pub struct Producer {
    name: String,
    /// The producer id when idempotent.
    producer_id: Option<i64>,
    lanes: Vec<Lane>,
}

impl Producer {
    pub fn new(name: String, producer_id: Option<i64>, partitions: &[(TopicPartition, GroupId)]) -> Self {
        let lanes = partitions
            .iter()
            .map(|(tp, group)| Lane {
                tp: tp.clone(),
                group: *group,
                leader: None,
                next_sequence: 0,
                produced: 0,
                last_acked: None,
                in_flight: None,
            })
            .collect();
        Producer {
            name,
            producer_id,
            lanes,
        }
    }

    pub fn idle(&self) -> bool {
        self.lanes.iter().all(|l| l.in_flight.is_none())
    }

    /// One step: collects answers, retries, and (when `produce`) starts new
    /// batches at random.
    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>, produce: bool) {
        for lane in &mut self.lanes {
            if lane.in_flight.is_none() && produce && world.rng.gen_bool(0.05) {
                let count = world.rng.gen_range(1..=3);
                let values: Vec<Bytes> = (0..count)
                    .map(|i| Bytes::from(format!("{}:{}:{}", self.name, lane.tp.1, lane.produced + i)))
                    .collect();
                lane.produced += count;
                let producer = self.producer_id.map(|id| (id, lane.next_sequence));
                lane.next_sequence += count as i32;
                lane.in_flight = Some(InFlight {
                    batch: records::encode(&values, producer),
                    // Every other batch of a plain producer is acks=1 (Kafka
                    // requires acks=all of an idempotent one). Not drawn
                    // from the seed, so seeds keep their schedules.
                    local: producer.is_none() && lane.produced % 2 == 1,
                    proposals: 0,
                    values,
                    attempt: None,
                    retry_at: world.now,
                });
            }
            step_lane(lane, world, &self.name, self.producer_id.is_some());
        }
    }
}

fn step_lane<R: Rng>(lane: &mut Lane, world: &mut World<'_, R>, producer: &str, idempotent: bool) {
    let Some(in_flight) = lane.in_flight.as_mut() else {
        return;
    };
    if let Some(attempt) = in_flight.attempt.as_mut() {
        match poll(attempt, world.now) {
            Poll::Waiting => return,
            Poll::Answered(Applied::Produce(Ok(ack))) => {
                if idempotent && lane.last_acked.is_some_and(|last| ack.base_offset <= last) {
                    world.checker.violate(format!(
                        "{producer}: {}-{} acknowledged at {} after an earlier batch at {:?} (reordered)",
                        lane.tp.0, lane.tp.1, ack.base_offset, lane.last_acked
                    ));
                }
                lane.last_acked = Some(ack.base_offset);
                world.history.record(
                    world.now,
                    format!(
                        "ack{} {producer} {}-{}@{} x{}",
                        if in_flight.local { "(local)" } else { "" },
                        lane.tp.0,
                        lane.tp.1,
                        ack.base_offset,
                        in_flight.values.len()
                    ),
                );
                if in_flight.local {
                    // Only a batch proposed once can be nowhere else.
                    if in_flight.proposals == 1 {
                        world
                            .checker
                            .acked_locally(&lane.tp, ack.base_offset, &in_flight.values);
                    }
                } else {
                    world
                        .checker
                        .acked(&lane.tp, ack.base_offset, &in_flight.values, idempotent);
                }
                lane.in_flight = None;
                return;
            }
            Poll::Answered(other) => {
                if let Applied::Produce(Err(error)) = other {
                    world.checker.refused(&lane.tp, error);
                }
                world.history.record(
                    world.now,
                    format!("refused {producer} {}-{}: {other:?}", lane.tp.0, lane.tp.1),
                );
                in_flight.attempt = None;
                in_flight.retry_at = world.now + RETRY_BACKOFF;
            }
            Poll::Retry => {
                in_flight.attempt = None;
                in_flight.retry_at = world.now + RETRY_BACKOFF;
            }
        }
    }
    if world.now < in_flight.retry_at {
        return;
    }
    let Some(index) = world.server(lane.group, &mut lane.leader) else {
        in_flight.retry_at = world.now + RETRY_BACKOFF;
        return;
    };
    let data = PartitionCommand::Produce {
        batches: &in_flight.batch,
    }
    .encode();
    let proposed = if in_flight.local {
        world.nodes[index].propose_local(lane.group, data)
    } else {
        world.nodes[index].propose(lane.group, data)
    };
    if let Some(outcome) = proposed {
        in_flight.proposals += 1;
        in_flight.attempt = Some(Attempt {
            outcome,
            deadline: world.now + REQUEST_TIMEOUT,
        });
    }
}

/// Tails one partition from its leader, as a consumer does, checking that
/// the high watermark never goes back and offsets come dense and in order.
pub struct Reader {
    tp: TopicPartition,
    group: GroupId,
    leader: Option<NodeId>,
    position: i64,
    high_watermark: i64,
}

impl Reader {
    pub fn new(tp: TopicPartition, group: GroupId) -> Self {
        Reader {
            tp,
            group,
            leader: None,
            position: 0,
            high_watermark: 0,
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
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
        let high_watermark = partition.high_watermark();
        if high_watermark < self.high_watermark {
            world.checker.violate(format!(
                "{}-{}: node {node} served high watermark {high_watermark} after {} was seen (it went back)",
                self.tp.0, self.tp.1, self.high_watermark
            ));
            return;
        }
        self.high_watermark = high_watermark;
        if self.position >= high_watermark {
            return;
        }
        let read = partition.log().read(self.position, 64 << 10);
        let batches = match read {
            Ok(batches) => batches,
            Err(e) => {
                world.checker.violate(format!(
                    "{}-{}: node {node} cannot read offset {}: {e}",
                    self.tp.0, self.tp.1, self.position
                ));
                return;
            }
        };
        let records: Vec<(i64, Bytes)> = match records::decode(batches) {
            Ok(records) => records
                .into_iter()
                .filter(|(offset, _)| (self.position..high_watermark).contains(offset))
                .collect(),
            Err(e) => {
                world
                    .checker
                    .violate(format!("{}-{}: node {node}: {e}", self.tp.0, self.tp.1));
                return;
            }
        };
        for (offset, _) in &records {
            if *offset != self.position {
                world.checker.violate(format!(
                    "{}-{}: node {node} returned offset {offset} where {} was next (skipped or reordered)",
                    self.tp.0, self.tp.1, self.position
                ));
                return;
            }
            self.position += 1;
        }
        world.checker.observed(&self.tp, &records);
    }
}

/// A consumer group committing ever larger offsets through the group
/// coordinator (the leader of its `__consumer_offsets` partition), and
/// checking that what the coordinator reports never goes back.
pub struct Committer {
    group: String,
    offsets_group: GroupId,
    leader: Option<NodeId>,
    next: i64,
    in_flight: Option<(i64, Option<Attempt>, Duration)>,
}

impl Committer {
    pub fn new(group: String, offsets_group: GroupId) -> Self {
        Committer {
            group,
            offsets_group,
            leader: None,
            next: 1,
            in_flight: None,
        }
    }

    /// The `__consumer_offsets` partition a group's commits go to.
    pub fn partition_of(group: &str, partitions: i32) -> i32 {
        consumer_offsets::partition_for(group, partitions)
    }

    pub fn idle(&self) -> bool {
        self.in_flight.is_none()
    }

    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>, commit: bool) {
        if world.rng.gen_bool(0.02)
            && let Some(index) = world.server(self.offsets_group, &mut self.leader)
            && let Some(shared) = world.nodes[index].shared()
        {
            let offset = shared.offsets.offset(&self.group, "t0", 0).map(|c| c.offset);
            world.checker.commit_read(&self.group, offset);
        }
        if self.in_flight.is_none() && commit && world.rng.gen_bool(0.02) {
            self.in_flight = Some((self.next, None, world.now));
            self.next += 1;
        }
        let Some((offset, attempt, retry_at)) = self.in_flight.as_mut() else {
            return;
        };
        if let Some(pending) = attempt.as_mut() {
            match poll(pending, world.now) {
                Poll::Waiting => return,
                Poll::Answered(Applied::Produce(Ok(_))) => {
                    world.checker.commit_acked(&self.group, *offset);
                    world
                        .history
                        .record(world.now, format!("commit {} {offset}", self.group));
                    self.in_flight = None;
                    return;
                }
                Poll::Answered(_) | Poll::Retry => {
                    *attempt = None;
                    *retry_at = world.now + RETRY_BACKOFF;
                }
            }
        }
        if world.now < *retry_at {
            return;
        }
        let Some(index) = world.server(self.offsets_group, &mut self.leader) else {
            *retry_at = world.now + RETRY_BACKOFF;
            return;
        };
        let change = Change::Commit {
            group: self.group.clone(),
            topic: "t0".into(),
            partition: 0,
            offset: CommittedOffset {
                offset: *offset,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp: 0,
            },
        };
        let batch = consumer_offsets::encode(&[change], 0);
        let data = PartitionCommand::Produce { batches: &batch }.encode();
        if let Some(outcome) = world.nodes[index].propose(self.offsets_group, data) {
            *attempt = Some(Attempt {
                outcome,
                deadline: world.now + REQUEST_TIMEOUT,
            });
        }
    }
}

/// Proposes entries the edge refuses, straight to a leader: each must be
/// refused with an error and the partition must go on (the safety round's
/// poison batch, among others). Every other one is hidden from the
/// leader's forecast, as a buggy or older leader could have proposed it,
/// so that apply refuses it, the same on every replica; the rest the
/// leader refuses before proposing.
pub struct Vandal {
    lanes: Vec<(TopicPartition, GroupId)>,
    leader: Option<NodeId>,
    attempt: Option<(TopicPartition, &'static str, Attempt)>,
    /// Whether the next entry is hidden from the leader's forecast.
    hide_next: bool,
    pub refused: u64,
}

impl Vandal {
    pub fn new(lanes: Vec<(TopicPartition, GroupId)>) -> Self {
        Vandal {
            lanes,
            leader: None,
            attempt: None,
            hide_next: true,
            refused: 0,
        }
    }

    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>, working: bool) {
        if let Some((tp, kind, attempt)) = self.attempt.as_mut() {
            match poll(attempt, world.now) {
                Poll::Waiting => return,
                Poll::Answered(Applied::Produce(Err(error))) => {
                    self.refused += 1;
                    world
                        .history
                        .record(world.now, format!("refused {kind} on {}-{}: {error:?}", tp.0, tp.1));
                }
                Poll::Answered(other) => world.checker.violate(format!(
                    "{}-{}: apply took a {kind} entry the edge refuses: {other:?}",
                    tp.0, tp.1
                )),
                Poll::Retry => {}
            }
            self.attempt = None;
        }
        if !working || self.lanes.is_empty() || !world.rng.gen_bool(0.002) {
            return;
        }
        let (tp, group) = self.lanes[world.rng.gen_range(0..self.lanes.len())].clone();
        let Some(index) = world.server(group, &mut self.leader) else {
            return;
        };
        let (kind, data) = poison(world.rng);
        let node = &mut world.nodes[index];
        let proposed = if self.hide_next {
            node.propose_unjudged(group, data)
        } else {
            node.propose(group, data)
        };
        self.hide_next = !self.hide_next;
        if let Some(outcome) = proposed {
            let attempt = Attempt {
                outcome,
                deadline: world.now + REQUEST_TIMEOUT,
            };
            self.attempt = Some((tp, kind, attempt));
        }
    }
}

/// One partition entry that must not change the log.
fn poison(rng: &mut impl Rng) -> (&'static str, Vec<u8>) {
    let good = records::encode(&[Bytes::from_static(b"poison")], None);
    let (kind, batches) = match rng.gen_range(0..5) {
        0 => ("batch without records", chronik_log::testing::build_batch(0, 0, 0)),
        1 => {
            let mut broken = good.clone();
            let last = broken.len() - 1;
            broken[last] ^= 0x55;
            ("batch with a broken CRC", broken)
        }
        2 => ("truncated batch", good[..good.len() / 2].to_vec()),
        3 => {
            let len = rng.gen_range(1..100);
            ("garbage", (0..len).map(|_| rng.r#gen::<u8>()).collect())
        }
        _ => return ("entry of an unknown kind", vec![9, 9, 9]),
    };
    (kind, PartitionCommand::Produce { batches: &batches }.encode())
}
