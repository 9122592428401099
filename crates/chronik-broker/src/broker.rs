//! The broker: its replicated state, its Raft loop, and the operations
//! request handlers share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronik_raft::{GroupId, METADATA_GROUP, MultiRaft, MultiRaftConfig, ProposeError};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::groups::coordinator::GroupCoordinator;
use crate::metadata::{BrokerInfo, MetadataCommand, MetadataError, MetadataReply};
use crate::replicated::{Applied, BrokerStateMachine, SharedState};
use crate::{consumer_offsets, topic_config};

/// How long a request waits for a new partition to elect its leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Producer ids a broker reserves at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Broker {
    pub config: BrokerConfig,
    pub state: Arc<SharedState>,
    raft: MultiRaft<Applied>,
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    pub groups: GroupCoordinator,
}

impl Broker {
    /// Opens the data directory, starts the Raft loop and registers this node
    /// in the metadata. Returns once the node can serve requests.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
        let state = Arc::new(SharedState::default());
        let state_machine = BrokerStateMachine::open(&config.data_dir, state.clone())?;
        let raft = MultiRaft::start(
            &config.data_dir.join("raft"),
            MultiRaftConfig::new(config.node_id),
            state_machine,
        )?;
        let broker = Arc::new(Broker {
            config,
            state,
            raft,
            producer_ids: tokio::sync::Mutex::new(0..0),
            groups: GroupCoordinator::default(),
        });
        broker.wait_for_leader(METADATA_GROUP).await?;
        if broker.state.metadata().cluster_id.is_empty() {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            broker
                .propose_metadata(MetadataCommand::InitCluster { cluster_id })
                .await?;
        }
        let info = BrokerInfo {
            host: broker.config.advertised_host.clone(),
            port: broker.config.advertised_port,
        };
        if broker.state.metadata().brokers.get(&broker.config.node_id) != Some(&info) {
            let node = broker.config.node_id;
            broker
                .propose_metadata(MetadataCommand::RegisterBroker { node, info })
                .await?;
        }
        broker.ensure_offsets_topic().await?;
        Ok(broker)
    }

    /// Creates `__consumer_offsets` on first start. Its records are kept
    /// until their groups delete or expire them, so time retention is off.
    async fn ensure_offsets_topic(&self) -> Result<(), MetadataError> {
        if self.state.metadata().topic(consumer_offsets::TOPIC).is_none() {
            let command = MetadataCommand::CreateTopic {
                name: consumer_offsets::TOPIC.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: self.config.offsets_topic_partitions,
                replicas: vec![self.config.node_id],
                configs: [
                    (topic_config::RETENTION_MS.to_string(), "-1".to_string()),
                    (topic_config::SEGMENT_BYTES.to_string(), (100 << 20).to_string()),
                ]
                .into(),
            };
            match self.propose_metadata(command).await {
                Ok(()) => {}
                Err(e) if e.error == ResponseError::TopicAlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        self.wait_for_topic_leaders(consumer_offsets::TOPIC).await;
        Ok(())
    }

    /// Stops the Raft loop after making applied state durable.
    pub async fn shutdown(&self) {
        self.raft.shutdown().await;
    }

    pub fn leader_of(&self, group: GroupId) -> Option<u64> {
        self.raft.status().get(group).and_then(|s| s.leader)
    }

    pub fn is_leader(&self, group: GroupId) -> bool {
        self.leader_of(group) == Some(self.config.node_id)
    }

    /// Waits, bounded, until `group` has a leader.
    pub async fn wait_for_leader(&self, group: GroupId) -> anyhow::Result<u64> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = self.leader_of(group) {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("group {group} elected no leader within {LEADER_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn propose_metadata(&self, command: MetadataCommand) -> Result<(), MetadataError> {
        self.apply_metadata(command).await.map(|_| ())
    }

    /// A producer id no other producer of the cluster has had, taken from a
    /// block this broker reserved through the metadata group.
    pub async fn new_producer_id(&self) -> Result<i64, MetadataError> {
        let mut block = self.producer_ids.lock().await;
        if block.start >= block.end {
            let command = MetadataCommand::AllocateProducerIds {
                count: PRODUCER_ID_BLOCK,
            };
            match self.apply_metadata(command).await? {
                MetadataReply::ProducerIds { first } => *block = first..first + PRODUCER_ID_BLOCK,
                MetadataReply::Done => unreachable!("allocation answers with ids"),
            }
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }

    async fn apply_metadata(&self, command: MetadataCommand) -> Result<MetadataReply, MetadataError> {
        let data = serde_json::to_vec(&command).expect("metadata commands serialize");
        match self.raft.propose(METADATA_GROUP, data).await {
            Ok(Applied::Metadata(result)) => result,
            Ok(other) => unreachable!("metadata group answered {other:?}"),
            Err(e) => Err(MetadataError {
                error: propose_error_code(&e),
                message: e.to_string(),
            }),
        }
    }

    /// Queues a proposal in order and returns the wait for its outcome, so a
    /// connection can pipeline requests without reordering them.
    pub async fn submit(&self, group: GroupId, data: Vec<u8>) -> oneshot::Receiver<Result<Applied, ProposeError>> {
        self.raft.submit(group, data).await
    }

    /// Creates `topic` with the default partition count, waiting for its
    /// partitions' leaders. Another request creating it first is no error.
    pub async fn auto_create_topic(&self, topic: &str) -> Result<(), MetadataError> {
        crate::metadata::validate_topic_name(topic)?;
        let command = MetadataCommand::CreateTopic {
            name: topic.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: self.config.default_partitions,
            replicas: vec![self.config.node_id],
            configs: Default::default(),
        };
        match self.propose_metadata(command).await {
            Ok(()) => {}
            Err(e) if e.error == ResponseError::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.wait_for_topic_leaders(topic).await;
        Ok(())
    }

    /// Waits, bounded, until every partition of `topic` has a leader.
    pub async fn wait_for_topic_leaders(&self, topic: &str) {
        let groups: Vec<GroupId> = match self.state.metadata().topic(topic) {
            Some(t) => t.partitions.iter().map(|p| p.group).collect(),
            None => return,
        };
        for group in groups {
            if let Err(e) = self.wait_for_leader(group).await {
                tracing::warn!("{e}");
            }
        }
    }
}

/// The Kafka error a client gets when its proposal did not apply. All are
/// retriable: the client refreshes metadata and tries again.
pub fn propose_error_code(error: &ProposeError) -> ResponseError {
    match error {
        ProposeError::NotLeader { .. } | ProposeError::UnknownGroup(_) | ProposeError::Stopped => {
            ResponseError::NotLeaderOrFollower
        }
        ProposeError::Dropped => ResponseError::RequestTimedOut,
    }
}
