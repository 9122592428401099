//! The broker: its replicated state, its Raft loop, and the operations
//! request handlers share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronik_raft::{GroupId, METADATA_GROUP, MultiRaft, MultiRaftConfig, ProposeError};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::metadata::{BrokerInfo, MetadataCommand, MetadataError};
use crate::replicated::{Applied, BrokerStateMachine, SharedState};

/// How long a request waits for a new partition to elect its leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

pub struct Broker {
    pub config: BrokerConfig,
    pub state: Arc<SharedState>,
    raft: MultiRaft<Applied>,
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
        let broker = Arc::new(Broker { config, state, raft });
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
        Ok(broker)
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
