//! The broker: its replicated state, its Raft loop, and the operations
//! request handlers share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chronik_raft::grpc::{ClusterId, GrpcTransport, PeerAddresses, PeerSecurity, REQUEST_TIMEOUT};
use chronik_raft::{
    DiskSpace, GroupId, GroupReport, METADATA_GROUP, Mailbox, MembershipChange, MultiRaft, MultiRaftConfig, NoPeers,
    NodeId, ProposeError, SharedTransport,
};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::cluster::peer_view::PeerView;
use crate::cluster::proto::ProposeMetadataRequest;
use crate::cluster::{admin_client, identity};
use crate::config::BrokerConfig;
use crate::groups::consumer_group::ConsumerGroup;
use crate::groups::membership::Group;
use crate::groups::registry::{GroupCoordinator, GroupLoader};
use crate::ops::telemetry::Telemetry;
use crate::security::scram;
use crate::security::session::Session;
use crate::txn::TxnLocks;
use chronik_state::acl::{self, Operation, ResourceType};
use chronik_state::leader_epochs::epoch_of_term;
use chronik_state::metadata::{BrokerInfo, MetadataCommand, MetadataError, MetadataReply, NodeInfo};
use chronik_state::replicated::{Applied, BrokerStateMachine, SharedState};
use chronik_state::users::{CredentialChange, ScramMechanism};
use chronik_state::{consumer_offsets, topic_config, transaction_state};

/// How long a request waits for a new partition to elect its leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a request waits for a sleeping leader to wake and renew its
/// lease: one quorum round when a quorum is reachable.
const WAKE_WAIT: Duration = Duration::from_millis(500);
/// How long a starting node waits for the metadata group to elect a leader:
/// the other nodes of a new cluster may still be starting.
const STARTUP_WAIT: Duration = Duration::from_secs(120);
/// How long a metadata write may take, retries while leadership moves included.
const METADATA_WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// SCRAM iterations of the users created at startup (Kafka's minimum).
const BOOTSTRAP_ITERATIONS: i32 = 4096;

/// Producer ids a broker reserves at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The outcome of a metadata command proposed on the metadata leader, and the
/// metadata index that reflects it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataOutcome {
    pub result: Result<MetadataReply, (i16, String)>,
    pub index: u64,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub state: Arc<SharedState>,
    raft: MultiRaft<Applied>,
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    pub groups: GroupCoordinator,
    /// Turns of the transactional ids this node coordinates.
    pub transactions: TxnLocks,
    pub cluster_id: ClusterId,
    /// Raft addresses of the other nodes.
    pub peers: PeerAddresses,
    pub peer_view: PeerView,
    /// Bytes of requests read and not yet answered, over all connections.
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Free space on the data directory's volume.
    pub disk: Arc<DiskSpace>,
    /// How this node authenticates to its peers' gRPC ports, and they to it.
    pub peer_security: PeerSecurity,
    /// What the Kafka front end records for metrics and the console.
    pub telemetry: Telemetry,
    /// `join` has finished: the node is a registered member.
    joined: AtomicBool,
    /// Differs from one start of the process to the next, so that a peer
    /// never takes this start's leadership versions for the last one's.
    boot: u64,
}

impl Broker {
    /// Opens the data directory and starts the Raft loop. The node then
    /// needs its Raft service running (for a cluster) and [`Broker::join`].
    pub fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
        identity::check_node_id(&config.data_dir, config.node_id)?;
        identity::check_not_removed(&config.data_dir, config.node_id)?;
        let state = Arc::new(SharedState::default());
        let state_machine = BrokerStateMachine::open(&config.data_dir, config.node_id, state.clone())?;
        let cluster_id = ClusterId::default();
        cluster_id.set(&state.metadata().cluster_id);
        let peers = PeerAddresses::default();
        for (id, node) in &state.metadata().nodes {
            if *id != config.node_id && !node.raft_addr.is_empty() {
                peers.set(*id, node.raft_addr.clone());
            }
        }
        let disk = Arc::new(
            DiskSpace::new(&config.data_dir, config.min_free_bytes)
                .map_err(|e| anyhow::anyhow!("cannot measure the free space of {}: {e}", config.data_dir.display()))?,
        );
        let mut raft_config = MultiRaftConfig::new(config.node_id, config.data_dir.join("raft-snapshots"));
        raft_config.disk = Some(disk.clone());
        raft_config.in_sync_max_lag = config.isr_max_lag_entries;
        raft_config.log_retain_entries = config.raft_log_retain_entries;
        let transport: SharedTransport = match &config.cluster {
            None => Arc::new(NoPeers),
            Some(cluster) => {
                for (id, addr) in &cluster.peers {
                    peers.set(*id, addr.clone());
                }
                raft_config.join = cluster.join.is_some();
                raft_config.initial_voters = if cluster.bootstrap {
                    let mut voters: Vec<NodeId> = cluster.peers.iter().map(|(id, _)| *id).collect();
                    voters.push(config.node_id);
                    voters.sort_unstable();
                    voters
                } else {
                    Vec::new()
                };
                Arc::new(GrpcTransport::new(
                    config.node_id,
                    cluster_id.clone(),
                    peers.clone(),
                    cluster.peer_security.clone(),
                ))
            }
        };
        let raft = MultiRaft::start(&config.data_dir.join("raft"), raft_config, state_machine, transport)?;
        let config_budget = config.queued_max_request_bytes;
        let peer_security = config
            .cluster
            .as_ref()
            .map(|c| c.peer_security.clone())
            .unwrap_or_default();
        Ok(Arc::new(Broker {
            config,
            state,
            raft,
            producer_ids: tokio::sync::Mutex::new(0..0),
            groups: GroupCoordinator::default(),
            transactions: TxnLocks::default(),
            cluster_id,
            peers,
            peer_view: PeerView::default(),
            request_budget: Arc::new(tokio::sync::Semaphore::new(
                config_budget.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            disk,
            peer_security,
            telemetry: Telemetry::default(),
            joined: AtomicBool::new(false),
            boot: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        }))
    }

    /// Waits for the metadata group, forms the cluster if it is new, and
    /// registers this node. Returns once the node can serve requests.
    pub async fn join(&self) -> anyhow::Result<()> {
        let joining = self.config.cluster.as_ref().and_then(|c| c.join.clone());
        match joining {
            Some(member) if self.state.metadata().cluster_id.is_empty() => self.await_membership(&member).await?,
            _ => self.wait_for_leader_within(METADATA_GROUP, STARTUP_WAIT).await?,
        };
        self.init_cluster().await?;
        let cluster_id = self.state.metadata().cluster_id.clone();
        self.cluster_id.set(&cluster_id);
        for (id, node) in &self.state.metadata().nodes {
            if *id != self.config.node_id && !node.raft_addr.is_empty() && self.peers.get(*id).is_none() {
                self.peers.set(*id, node.raft_addr.clone());
            }
        }
        let main = self.config.main_listener();
        let info = BrokerInfo {
            host: main.advertised_host.clone(),
            port: main.advertised_port,
            listeners: self
                .config
                .listeners
                .iter()
                .map(|l| (l.name.clone(), (l.advertised_host.clone(), l.advertised_port)))
                .collect(),
        };
        if self.state.metadata().brokers.get(&self.config.node_id) != Some(&info) {
            let node = self.config.node_id;
            let reads = chronik_state::version::NEWEST;
            self.propose_metadata(MetadataCommand::RegisterBroker { node, info, reads })
                .await?;
        }
        self.ensure_offsets_topic().await?;
        self.create_bootstrap_users().await?;
        self.joined.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Broker::join`] has finished.
    pub fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// A new cluster gets its id from its first metadata leader. The other
    /// nodes wait to learn it through Raft: until they know it, their
    /// requests to members that do would be refused.
    async fn init_cluster(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_WAIT;
        while self.state.metadata().cluster_id.is_empty() {
            if self.leader_of(METADATA_GROUP) == Some(self.config.node_id) {
                let command = MetadataCommand::InitCluster {
                    cluster_id: uuid::Uuid::new_v4().simple().to_string(),
                    nodes: self.initial_nodes(),
                    version: self.config.initial_version,
                };
                // Leadership may move while it is proposed; the loop retries.
                if let Err(e) = self.propose_metadata(command).await {
                    tracing::debug!("cannot give the cluster its id yet: {e}");
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!("the metadata leader did not give the new cluster an id within {STARTUP_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Creates the users given at startup (`--bootstrap-user`) that do not
    /// exist yet, with both SCRAM mechanisms. An existing user keeps its
    /// password: it may have been changed since.
    async fn create_bootstrap_users(&self) -> anyhow::Result<()> {
        let changes: Vec<CredentialChange> = self
            .config
            .security
            .bootstrap_users
            .iter()
            .filter(|(user, _)| self.state.metadata().users.mechanisms_of(user).is_none())
            .flat_map(|(user, password)| {
                ScramMechanism::ALL
                    .into_iter()
                    .map(|mechanism| CredentialChange::Upsert {
                        user: user.clone(),
                        mechanism,
                        credential: scram::new_credential(mechanism, password, BOOTSTRAP_ITERATIONS),
                    })
            })
            .collect();
        if !changes.is_empty() {
            self.propose_metadata(MetadataCommand::AlterUsers { changes }).await?;
            tracing::info!("created the bootstrap users");
        }
        Ok(())
    }

    /// For a node started with `--join`: learns the cluster's id and members
    /// from `member`, then waits (without bound: an operator adds it when
    /// ready) until the metadata it received makes it a member.
    async fn await_membership(&self, member: &str) -> anyhow::Result<u64> {
        let node = self.config.node_id;
        let mut told = Instant::now() - Duration::from_secs(3600);
        loop {
            if self.cluster_id.get().is_empty() {
                match crate::cluster::describe_node(member, REQUEST_TIMEOUT, &self.peer_security).await {
                    Ok(report) if !report.cluster_id.is_empty() => {
                        self.cluster_id.set(&report.cluster_id);
                        for entry in &report.nodes {
                            if entry.id != node && !entry.raft_addr.is_empty() {
                                self.peers.set(entry.id, entry.raft_addr.clone());
                            }
                        }
                        tracing::info!(cluster = %report.cluster_id, member, "found the cluster to join");
                    }
                    Ok(_) => tracing::warn!(member, "the member to join through has no cluster yet"),
                    Err(e) => tracing::warn!(member, "cannot reach the member to join through: {e}"),
                }
            }
            let metadata = self.state.metadata().clone();
            if !metadata.cluster_id.is_empty() && metadata.nodes.contains_key(&node) {
                tracing::info!("this node is a member of cluster {}", metadata.cluster_id);
                return self.wait_for_leader_within(METADATA_GROUP, STARTUP_WAIT).await;
            }
            if told.elapsed() >= Duration::from_secs(10) {
                let raft = self.config.cluster.as_ref().map_or("", |c| c.raft_advertised.as_str());
                tracing::info!(
                    "waiting to be added to the cluster; run `chronik-server cluster add-node --id {node} \
                     --addr {}:{} --raft-port {}` against a member",
                    self.config.main_listener().advertised_host,
                    self.config.main_listener().advertised_port,
                    raft.rsplit(':').next().unwrap_or("PORT"),
                );
                told = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The members of a cluster being formed: this node and its peers.
    fn initial_nodes(&self) -> std::collections::BTreeMap<NodeId, NodeInfo> {
        let own = self
            .config
            .cluster
            .as_ref()
            .map_or_else(String::new, |c| c.raft_advertised.clone());
        let mut nodes: std::collections::BTreeMap<NodeId, NodeInfo> = self
            .peers
            .all()
            .into_iter()
            .map(|(id, raft_addr)| {
                let info = NodeInfo {
                    raft_addr,
                    pending: false,
                };
                (id, info)
            })
            .collect();
        let info = NodeInfo {
            raft_addr: own,
            pending: false,
        };
        nodes.insert(self.config.node_id, info);
        nodes
    }

    /// Creates `__consumer_offsets` on first start.
    async fn ensure_offsets_topic(&self) -> Result<(), MetadataError> {
        self.ensure_internal_topic(consumer_offsets::TOPIC, self.config.offsets_topic_partitions)
            .await
    }

    /// Creates `__transaction_state` when the first transactional producer
    /// looks for its coordinator, as Kafka does.
    pub async fn ensure_transaction_topic(&self) -> Result<(), MetadataError> {
        self.ensure_internal_topic(transaction_state::TOPIC, self.config.transaction_state_partitions)
            .await
    }

    /// Creates an internal topic if it is missing: compacted, so each key
    /// keeps its latest record, with the 100 MiB segments Kafka gives these
    /// topics. Waits for its partitions' leaders.
    async fn ensure_internal_topic(&self, name: &str, partitions: i32) -> Result<(), MetadataError> {
        if self.state.metadata().topic(name).is_none() {
            let command = MetadataCommand::CreateTopic {
                name: name.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions,
                replication_factor: -1,
                configs: [
                    (topic_config::CLEANUP_POLICY.to_string(), "compact".to_string()),
                    (topic_config::SEGMENT_BYTES.to_string(), (100 << 20).to_string()),
                ]
                .into(),
                assignment: None,
            };
            match self.propose_metadata(command).await {
                Ok(()) => {}
                Err(e) if e.error == ResponseError::TopicAlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        self.wait_for_topic_leaders(name).await;
        Ok(())
    }

    /// Stops the Raft loop after making applied state durable.
    pub async fn shutdown(&self) {
        self.raft.shutdown().await;
    }

    /// Where the Raft transport's server delivers what peers send.
    pub fn mailbox(&self) -> Mailbox {
        self.raft.mailbox()
    }

    /// Moves whenever a group on this node changes leader, term, in-sync
    /// replicas or sleep (not on lease renewals); see `StatusBoard::version`.
    pub fn leadership_version(&self) -> u64 {
        self.boot.wrapping_add(self.raft.status().version())
    }

    /// The Raft state of every group with a replica on this node.
    pub async fn describe_groups(&self) -> Vec<GroupReport> {
        self.raft.describe().await
    }

    /// Runs `f` on classic consumer group `group`, loading it on first use.
    pub fn with_group<R>(&self, group: &str, f: impl FnOnce(&mut Group) -> R) -> R {
        self.groups.with_group(&self.group_loader(), group, f)
    }

    /// Runs `f` on consumer-protocol group `group` (KIP-848), loading or
    /// starting it.
    pub fn with_consumer_group<R>(&self, group: &str, f: impl FnOnce(&mut ConsumerGroup) -> R) -> R {
        self.groups.with_consumer_group(&self.group_loader(), group, f)
    }

    /// Runs `f` on `group` if it is a consumer-protocol group.
    pub fn consumer_group<R>(&self, group: &str, f: impl FnOnce(&ConsumerGroup) -> R) -> Option<R> {
        self.groups.consumer_group(&self.group_loader(), group, f)
    }

    /// Whether `group` is a consumer-protocol group with members, which
    /// keeps the id from classic use.
    pub fn consumer_group_in_use(&self, group: &str) -> bool {
        self.consumer_group(group, |g| !g.is_empty()).unwrap_or(false)
    }

    fn group_loader(&self) -> GroupLoader<'_> {
        GroupLoader {
            offsets: &self.state.offsets,
            initial_rebalance_delay_ms: self.config.group_initial_rebalance_delay_ms,
            consumer_session_timeout_ms: self.config.group_consumer_session_timeout_ms,
        }
    }

    /// Proposes a step of a membership change of `group`, which this node
    /// leads, and waits until it is applied.
    pub async fn change_membership(&self, group: GroupId, change: MembershipChange) -> Result<(), ProposeError> {
        self.raft.change_membership(group, change).await
    }

    /// Asks this node, leader of `group`, to hand the leadership to `to`.
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), ProposeError> {
        self.raft.transfer_leader(group, to).await
    }

    /// Whether `session` may do `operation` on the resource `name` (Kafka's
    /// authorizer: super-users, then the cluster's ACLs, then the default).
    pub fn allows(&self, session: &Session, operation: Operation, resource: ResourceType, name: &str) -> bool {
        self.config
            .security
            .authorizer
            .allows(&self.state.metadata().acls, session, operation, resource, name)
    }

    pub fn allows_topic(&self, session: &Session, operation: Operation, topic: &str) -> bool {
        self.allows(session, operation, ResourceType::Topic, topic)
    }

    pub fn allows_group(&self, session: &Session, operation: Operation, group: &str) -> bool {
        self.allows(session, operation, ResourceType::Group, group)
    }

    pub fn allows_cluster(&self, session: &Session, operation: Operation) -> bool {
        self.allows(session, operation, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// Whether `session` may do `operation` on at least one resource of the type.
    pub fn allows_some(&self, session: &Session, operation: Operation, resource: ResourceType) -> bool {
        self.config
            .security
            .authorizer
            .allows_some(&self.state.metadata().acls, session, operation, resource)
    }

    /// Kafka's rule for creating a topic: CREATE on the cluster, or on the topic.
    pub fn may_create_topic(&self, session: &Session, topic: &str) -> bool {
        self.allows_cluster(session, Operation::Create) || self.allows_topic(session, Operation::Create, topic)
    }

    /// Whether `node` should be offered to clients: a member that is this
    /// node or answered its last probe.
    pub fn is_live(&self, node: NodeId) -> bool {
        node == self.config.node_id || !self.peer_view.unreachable(node)
    }

    /// The leader of `group` as this node knows it: from the group itself if
    /// it has a replica here, else from what its peers report.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.leader_and_epoch(group).map(|(leader, _)| leader)
    }

    /// The leader of `group` with its leader epoch (the Raft term it was
    /// elected in), as [`Broker::leader_of`] knows it.
    pub fn leader_and_epoch(&self, group: GroupId) -> Option<(NodeId, i32)> {
        match self.raft.status().get(group) {
            Some(status) => status.leader.map(|leader| (leader, epoch_of_term(status.term))),
            None => self
                .peer_view
                .get(group)
                .map(|remote| (remote.leader, epoch_of_term(remote.term))),
        }
    }

    /// This node's leader epoch of `group` if it leads the group and may
    /// serve it (see [`Broker::is_leader`]).
    pub fn serving_epoch(&self, group: GroupId) -> Option<i32> {
        self.raft
            .status()
            .get(group)
            .filter(|s| s.serves(self.config.node_id, Instant::now()))
            .map(|s| epoch_of_term(s.term))
    }

    /// When the loop last finished an iteration.
    pub fn raft_pulse(&self) -> &chronik_raft::LoopPulse {
        self.raft.pulse()
    }

    /// The in-sync replicas of `group`, if its leader has reported them.
    pub fn in_sync_replicas(&self, group: GroupId) -> Option<Vec<NodeId>> {
        match self.raft.status().get(group) {
            Some(status) if status.leader == Some(self.config.node_id) => Some(status.isr),
            local => self
                .peer_view
                .get(group)
                .filter(|remote| local.is_none_or(|s| s.leader == Some(remote.leader)))
                .map(|remote| remote.isr),
        }
    }

    /// Whether this node leads `group` and may serve it: it has committed an
    /// entry of its own term and applied up to its commit, so what it shows
    /// is at least what any earlier leader showed, and its lease holds, so
    /// no later leader can exist yet. A new leader is not ready for a moment
    /// after its election; clients get a retriable error.
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.raft
            .status()
            .get(group)
            .is_some_and(|s| s.serves(self.config.node_id, Instant::now()))
    }

    /// Wakes those of `groups` that this node leads and that sleep idle (see
    /// `MultiRaft::wake`), and waits, bounded, until each group it leads
    /// serves or has lost its leader here. Not only the groups this request
    /// woke: one that another request woke a moment ago is awake but has no
    /// lease yet. Call before [`Broker::is_leader`] on partitions a request
    /// reads or writes; costs one status lookup when all of them serve.
    pub async fn awaken(&self, groups: impl IntoIterator<Item = GroupId>) {
        let own = self.config.node_id;
        let unready = self.raft.status().unready_led(own, groups, Instant::now());
        if unready.is_empty() {
            return;
        }
        for (group, _) in unready.iter().filter(|(_, asleep)| *asleep) {
            self.raft.wake(*group).await;
        }
        let groups: Vec<GroupId> = unready.into_iter().map(|(group, _)| group).collect();
        let deadline = Instant::now() + WAKE_WAIT;
        while Instant::now() < deadline {
            let status = self.raft.status();
            if status
                .unready_led(own, groups.iter().copied(), Instant::now())
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// [`Broker::awaken`] for the partitions named by topic and index.
    pub async fn awaken_partitions(&self, partitions: &[(&str, i32)]) {
        let groups: Vec<GroupId> = {
            let metadata = self.state.metadata();
            partitions
                .iter()
                .filter_map(|(topic, index)| metadata.group_of(topic, *index))
                .collect()
        };
        self.awaken(groups).await;
    }

    /// Waits, bounded, until `group` has a leader.
    pub async fn wait_for_leader(&self, group: GroupId) -> anyhow::Result<u64> {
        self.wait_for_leader_within(group, LEADER_WAIT).await
    }

    async fn wait_for_leader_within(&self, group: GroupId, wait: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(leader) = self.leader_of(group) {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "group {group} elected no leader within {wait:?}; are a majority of the nodes running and reachable?"
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Applies a metadata command to a copy of this node's metadata: the
    /// checks of `validate_only` requests, which change nothing.
    pub fn validate_metadata(&self, command: MetadataCommand) -> Result<(), MetadataError> {
        let mut copy = self.state.metadata().clone();
        let index = copy.applied_index + 1;
        copy.apply(index, command, &mut Vec::new()).map(|_| ())
    }

    /// Applies a metadata command through the metadata leader, and waits
    /// until this node's view reflects it.
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

    /// Proposes a metadata command on the metadata leader (this node, or
    /// another through its admin service) and waits until this node's view
    /// reflects it. Retries while the leadership moves.
    async fn apply_metadata(&self, command: MetadataCommand) -> Result<MetadataReply, MetadataError> {
        let deadline = Instant::now() + METADATA_WRITE_TIMEOUT;
        let outcome = loop {
            let attempt = match self.leader_of(METADATA_GROUP) {
                Some(leader) if leader == self.config.node_id => self.propose_metadata_here(command.clone()).await,
                Some(leader) => self.forward_metadata(leader, &command).await,
                None => Err("the metadata group has no leader".to_string()),
            };
            match attempt {
                Ok(outcome) => break outcome,
                Err(e) if Instant::now() >= deadline => {
                    return Err(MetadataError::new(
                        ResponseError::RequestTimedOut,
                        format!("the metadata write did not complete: {e}"),
                    ));
                }
                Err(e) => {
                    tracing::debug!("metadata write retried: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.wait_for_metadata(outcome.index).await;
        outcome.result.map_err(|(code, message)| MetadataError {
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
            message,
        })
    }

    /// Proposes a metadata command to the metadata group on this node. An
    /// error means it did not apply here, and may be retried.
    pub async fn propose_metadata_here(&self, command: MetadataCommand) -> Result<MetadataOutcome, String> {
        let data = serde_json::to_vec(&command).expect("metadata commands serialize");
        match self.raft.propose(METADATA_GROUP, data).await {
            Ok(Applied::Metadata(result)) => Ok(MetadataOutcome {
                result: result.map_err(|e| (e.error.code(), e.message)),
                index: self.state.metadata().applied_index,
            }),
            Ok(other) => unreachable!("metadata group answered {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    fn leader_addr(&self, leader: NodeId) -> Result<String, String> {
        self.peers
            .get(leader)
            .ok_or_else(|| format!("no address known for metadata leader {leader}"))
    }

    async fn forward_metadata(&self, leader: NodeId, command: &MetadataCommand) -> Result<MetadataOutcome, String> {
        let addr = self.leader_addr(leader)?;
        let mut client = admin_client(&addr, REQUEST_TIMEOUT, &self.peer_security).await?;
        let request = ProposeMetadataRequest {
            cluster_id: self.cluster_id.get(),
            command: serde_json::to_vec(command).expect("metadata commands serialize"),
        };
        let response = client
            .propose_metadata(request)
            .await
            .map_err(|s| format!("metadata leader {leader} at {addr}: {}", s.message()))?;
        serde_json::from_slice(&response.into_inner().outcome).map_err(|e| format!("undecodable answer: {e}"))
    }

    /// Waits, bounded, until this node has applied metadata up to `index`.
    async fn wait_for_metadata(&self, index: u64) {
        let deadline = Instant::now() + LEADER_WAIT;
        while self.state.metadata().applied_index < index && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Brings this node's metadata view up to the metadata leader's commit
    /// index (a linearizable read), asking the leader over the network.
    pub async fn sync_metadata(&self) -> Result<(), String> {
        let index = match self.leader_of(METADATA_GROUP) {
            Some(leader) if leader == self.config.node_id => {
                self.raft.read_index(METADATA_GROUP).await.map_err(|e| e.to_string())?
            }
            Some(leader) => {
                let addr = self.leader_addr(leader)?;
                let channel = chronik_raft::grpc::connect_channel(&addr, REQUEST_TIMEOUT, &self.peer_security)
                    .await
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                let request = chronik_raft::grpc::proto::ReadIndexRequest {
                    cluster_id: self.cluster_id.get(),
                    group: METADATA_GROUP,
                };
                chronik_raft::grpc::proto::raft_transport_client::RaftTransportClient::new(channel)
                    .read_index(request)
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner()
                    .index
            }
            None => return Err("the metadata group has no leader".into()),
        };
        // The leader's commit index counts entries with nothing to apply too
        // (elections' no-ops); wait for the Raft group, not the state.
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let applied = self
                .raft
                .describe()
                .await
                .into_iter()
                .find(|g| g.group == METADATA_GROUP)
                .map_or(0, |g| g.applied);
            if applied >= index {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("this node did not catch up with metadata index {index}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Queues a proposal in order and returns the wait for its outcome, so a
    /// connection can pipeline requests without reordering them.
    pub async fn submit(&self, group: GroupId, data: Vec<u8>) -> oneshot::Receiver<Result<Applied, ProposeError>> {
        self.raft.submit(group, data).await
    }

    /// As [`Broker::submit`], answered once the entry is in this leader's
    /// own log (Kafka's acks=1): it is lost if this node fails before a
    /// quorum has it, as with Kafka.
    pub async fn submit_local(
        &self,
        group: GroupId,
        data: Vec<u8>,
    ) -> oneshot::Receiver<Result<Applied, ProposeError>> {
        self.raft.submit_local(group, data).await
    }

    /// Creates `topic` with the default partition count, waiting for its
    /// partitions' leaders. Another request creating it first is no error.
    pub async fn auto_create_topic(&self, topic: &str) -> Result<(), MetadataError> {
        chronik_state::metadata::validate_topic_name(topic)?;
        let command = MetadataCommand::CreateTopic {
            name: topic.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: self.config.default_partitions,
            replication_factor: -1,
            configs: Default::default(),
            assignment: None,
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
