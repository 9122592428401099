//! Metadata changes a run makes, as an admin client would: the cluster's
//! initialisation, its topics, topics created and deleted under load, and
//! partitions moved to other nodes (or their moves cancelled). Each command
//! goes to the metadata leader and is retried until applied.

use std::collections::VecDeque;
use std::time::Duration;

use chronik_raft::{METADATA_GROUP, NodeId};
use chronik_state::metadata::{MetadataCommand, MetadataReply, MetadataState, Reassignment};
use chronik_state::replicated::Applied;
use rand::Rng;

use crate::node::Outcome;
use crate::workload::World;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct Admin {
    queue: VecDeque<MetadataCommand>,
    attempt: Option<(Outcome, Duration)>,
    retry_at: Duration,
    leader: Option<NodeId>,
    /// Topics this admin created and has not deleted.
    pub churn_topics: Vec<String>,
    created: u64,
    pub applied: u64,
}

impl Admin {
    pub fn push(&mut self, command: MetadataCommand) {
        self.queue.push_back(command);
    }

    pub fn idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// The command under way, if any.
    pub fn pending(&self) -> Option<&MetadataCommand> {
        self.queue.front()
    }

    pub fn queued(&self, command: &MetadataCommand) -> bool {
        self.queue.contains(command)
    }

    /// Queues a move of one partition of `topics` to as many random members
    /// (never `leaving`) as it has replicas, or now and then the
    /// cancellation of a move.
    pub fn reassign(&mut self, rng: &mut impl Rng, metadata: &MetadataState, topics: &[&str], leaving: Option<NodeId>) {
        if !self.idle() {
            return;
        }
        let partitions: Vec<(String, i32, Option<Vec<NodeId>>, usize)> = metadata
            .partitions()
            .filter(|(topic, _, _)| topics.contains(&topic.as_str()))
            .map(|(topic, index, p)| (topic.clone(), index, p.target.clone(), p.replicas.len()))
            .collect();
        if partitions.is_empty() {
            return;
        }
        let (topic, partition, target, count) = partitions[rng.gen_range(0..partitions.len())].clone();
        let replicas = if target.is_some() && rng.gen_bool(0.3) {
            None
        } else {
            let mut all: Vec<NodeId> = metadata.nodes.keys().copied().filter(|n| Some(*n) != leaving).collect();
            let mut chosen = Vec::with_capacity(count);
            while chosen.len() < count && !all.is_empty() {
                chosen.push(all.remove(rng.gen_range(0..all.len())));
            }
            Some(chosen)
        };
        self.push(MetadataCommand::ReassignPartitions {
            moves: vec![Reassignment {
                topic,
                partition,
                replicas,
            }],
        });
    }

    /// Queues the creation of a new topic or the deletion of an old one.
    pub fn churn(&mut self, rng: &mut impl Rng) {
        if !self.idle() {
            return;
        }
        if self.churn_topics.len() >= 2 || (!self.churn_topics.is_empty() && rng.gen_bool(0.4)) {
            let name = self.churn_topics.remove(rng.gen_range(0..self.churn_topics.len()));
            self.push(MetadataCommand::DeleteTopic { name });
        } else {
            self.created += 1;
            let name = format!("x{}", self.created);
            self.churn_topics.push(name.clone());
            let partitions = rng.gen_range(1..=2);
            self.push(create_topic(rng, &name, partitions));
        }
    }

    pub fn step<R: Rng>(&mut self, world: &mut World<'_, R>) {
        let Some(command) = self.queue.front() else { return };
        if let Some((outcome, deadline)) = self.attempt.as_mut() {
            match outcome.try_recv() {
                Ok(Ok(Applied::Metadata(result))) => {
                    // A retry of an applied command may be refused (the topic
                    // exists, or is gone): it took effect all the same.
                    let reply = match &result {
                        Ok(MetadataReply::Done) => "done".to_string(),
                        other => format!("{other:?}"),
                    };
                    world
                        .history
                        .record(world.now, format!("metadata {} → {reply}", describe(command)));
                    self.queue.pop_front();
                    self.attempt = None;
                    self.applied += 1;
                    return;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) if world.now < *deadline => return,
                _ => {
                    self.attempt = None;
                    self.retry_at = world.now + RETRY_BACKOFF;
                }
            }
        }
        if world.now < self.retry_at {
            return;
        }
        let Some(index) = world.server(METADATA_GROUP, &mut self.leader) else {
            self.retry_at = world.now + RETRY_BACKOFF;
            return;
        };
        let data = serde_json::to_vec(command).expect("metadata commands serialize");
        if let Some(outcome) = world.nodes[index].propose(METADATA_GROUP, data) {
            self.attempt = Some((outcome, world.now + REQUEST_TIMEOUT));
        }
    }
}

/// A topic whose id comes from the run's seed.
pub fn create_topic(rng: &mut impl Rng, name: &str, partitions: i32) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.to_string(),
        id: uuid::Uuid::from_u128(rng.r#gen()),
        partitions,
        replication_factor: 3,
        configs: Default::default(),
        assignment: None,
    }
}

fn describe(command: &MetadataCommand) -> String {
    match command {
        MetadataCommand::InitCluster { .. } => "init-cluster".into(),
        MetadataCommand::CreateTopic { name, partitions, .. } => format!("create {name}/{partitions}"),
        MetadataCommand::DeleteTopic { name } => format!("delete {name}"),
        other => format!("{other:?}"),
    }
}
