//! The admin gRPC service: forwarded metadata writes, and this node's view
//! for the `cluster` CLI.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use super::proto::{
    DescribeRequest, DescribeResponse, ProposeMetadataRequest, ProposeMetadataResponse, RetireRequest, RetireResponse,
    SubmitRequest, SubmitResponse, SupportedVersionsRequest, SupportedVersionsResponse, TransferLeaderRequest,
    TransferLeaderResponse, WriteTxnMarkerRequest, WriteTxnMarkerResponse,
};
use super::report::{DiskReport, NodeEntry, NodeReport, PartitionEntry, ReplicaReport, TopicEntry, UserEntry};
use crate::Broker;
use chronik_log::control::Marker;
use chronik_state::metadata::MetadataCommand;

pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub fn server(broker: Arc<Broker>) -> ClusterAdminServer<Self> {
        ClusterAdminServer::new(AdminService { broker })
            .max_decoding_message_size(chronik_raft::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(chronik_raft::grpc::MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    async fn propose_metadata(
        &self,
        request: Request<ProposeMetadataRequest>,
    ) -> Result<Response<ProposeMetadataResponse>, Status> {
        let request = request.into_inner();
        self.broker.cluster_id.check(&request.cluster_id)?;
        let command: MetadataCommand = serde_json::from_slice(&request.command)
            .map_err(|e| Status::invalid_argument(format!("undecodable metadata command: {e}")))?;
        let outcome = self
            .broker
            .propose_metadata_here(command)
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(ProposeMetadataResponse {
            outcome: serde_json::to_vec(&outcome).expect("outcomes serialize"),
        }))
    }

    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let request = request.into_inner();
        self.broker.cluster_id.check(&request.cluster_id)?;
        let command: MetadataCommand = serde_json::from_slice(&request.command)
            .map_err(|e| Status::invalid_argument(format!("undecodable metadata command: {e}")))?;
        let submitted = match command {
            // Only once every member reads the level; this node lists them.
            MetadataCommand::SetVersion { level, .. } => super::upgrade::set_version(&self.broker, level, false).await,
            command => self.broker.propose_metadata(command).await,
        };
        let (error_code, message) = match submitted {
            Ok(()) => (0, String::new()),
            Err(e) => (i32::from(e.error.code()), e.message),
        };
        Ok(Response::new(SubmitResponse { error_code, message }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let request = request.into_inner();
        self.broker.cluster_id.check(&request.cluster_id)?;
        self.broker
            .transfer_leader(request.group, request.to)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(TransferLeaderResponse {}))
    }

    async fn retire(&self, request: Request<RetireRequest>) -> Result<Response<RetireResponse>, Status> {
        let request = request.into_inner();
        self.broker.cluster_id.check(&request.cluster_id)?;
        let own = self.broker.config.node_id;
        if request.node != own {
            return Err(Status::invalid_argument(format!(
                "this is node {own}, not node {}",
                request.node
            )));
        }
        if self.broker.state.metadata().nodes.contains_key(&own) {
            return Err(Status::failed_precondition(format!(
                "node {own} is still a member of the cluster; remove it first"
            )));
        }
        let cluster_id = self.broker.cluster_id.get();
        super::identity::mark_removed(&self.broker.config.data_dir, &cluster_id)
            .map_err(|e| Status::internal(format!("cannot mark the data directory as removed: {e}")))?;
        tracing::warn!("this node was removed from the cluster; stopping");
        let broker = self.broker.clone();
        tokio::spawn(async move {
            // Answer first, then stop.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            broker.shutdown().await;
            std::process::exit(0);
        });
        Ok(Response::new(RetireResponse {}))
    }

    async fn write_txn_marker(
        &self,
        request: Request<WriteTxnMarkerRequest>,
    ) -> Result<Response<WriteTxnMarkerResponse>, Status> {
        let request = request.into_inner();
        self.broker.cluster_id.check(&request.cluster_id)?;
        let producer_epoch = i16::try_from(request.producer_epoch)
            .map_err(|_| Status::invalid_argument("the producer epoch is out of range"))?;
        let marker = Marker {
            producer_id: request.producer_id,
            producer_epoch,
            commit: request.commit,
            coordinator_epoch: request.coordinator_epoch,
            timestamp: request.timestamp,
        };
        let error = crate::txn::markers::write_here(&self.broker, &request.topic, request.partition, marker).await;
        Ok(Response::new(WriteTxnMarkerResponse {
            error_code: i32::from(error.map_or(0, |e| e.code())),
        }))
    }

    async fn supported_versions(
        &self,
        request: Request<SupportedVersionsRequest>,
    ) -> Result<Response<SupportedVersionsResponse>, Status> {
        self.broker.cluster_id.check(&request.into_inner().cluster_id)?;
        Ok(Response::new(SupportedVersionsResponse {
            min_level: i32::from(chronik_state::version::FIRST),
            max_level: i32::from(chronik_state::version::NEWEST),
        }))
    }

    async fn describe(&self, request: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        let request = request.into_inner();
        if request.linearizable {
            self.broker
                .sync_metadata()
                .await
                .map_err(|e| Status::unavailable(format!("cannot read the metadata linearizably: {e}")))?;
        }
        // Read before the report, so a change made while it is taken shows
        // as a newer version next time.
        let version = self.broker.leadership_version();
        if request.leading_only && request.unless_version != 0 && request.unless_version == version {
            return Ok(Response::new(DescribeResponse {
                version,
                unchanged: true,
                ..Default::default()
            }));
        }
        let report = node_report(&self.broker, &request).await;
        Ok(Response::new(DescribeResponse {
            report: serde_json::to_vec(&report).expect("reports serialize"),
            version,
            unchanged: false,
        }))
    }
}

async fn node_report(broker: &Arc<Broker>, request: &DescribeRequest) -> NodeReport {
    let (groups, checksums) = (&request.groups, request.checksums);
    let node_id = broker.config.node_id;
    if request.leading_only {
        let replicas = broker
            .describe_groups()
            .await
            .into_iter()
            .filter(|raft| raft.leader == Some(node_id))
            .map(|raft| ReplicaReport {
                raft,
                ..Default::default()
            })
            .collect();
        return NodeReport {
            node_id,
            replicas,
            ..Default::default()
        };
    }
    let metadata = broker.state.metadata().clone();
    let nodes = metadata
        .members()
        .into_iter()
        .map(|id| NodeEntry {
            id,
            raft_addr: metadata.nodes.get(&id).map(|n| n.raft_addr.clone()).unwrap_or_default(),
            kafka_addr: metadata.brokers.get(&id).map(|b| format!("{}:{}", b.host, b.port)),
        })
        .collect();
    let topics = metadata
        .topics
        .iter()
        .map(|(name, topic)| TopicEntry {
            name: name.clone(),
            partitions: topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, p)| PartitionEntry {
                    partition: index as i32,
                    group: p.group,
                    replicas: p.replicas.clone(),
                    target: p.target.clone(),
                })
                .collect(),
        })
        .collect();
    let mut replicas = Vec::new();
    for raft in broker.describe_groups().await {
        if !groups.is_empty() && !groups.contains(&raft.group) {
            continue;
        }
        let mut replica = ReplicaReport {
            raft,
            ..Default::default()
        };
        if let Some(partition) = broker.state.partition(replica.raft.group) {
            replica.topic = Some(partition.topic.clone());
            replica.partition = Some(partition.index);
            {
                let log = partition.log();
                replica.log_start_offset = Some(log.log_start_offset());
                replica.log_end_offset = Some(log.next_offset());
                replica.log_bytes = Some(log.segment_files().iter().map(|(_, len)| len).sum());
            }
            replica.high_watermark = Some(partition.high_watermark());
            if checksums {
                let checksum = tokio::task::spawn_blocking(move || partition.checksum()).await;
                replica.checksum = match checksum {
                    Ok(Ok(crc)) => Some(format!("{crc:08x}")),
                    Ok(Err(e)) => Some(format!("error: {e}")),
                    Err(e) => Some(format!("error: {e}")),
                };
            }
        }
        replicas.push(replica);
    }
    NodeReport {
        node_id: broker.config.node_id,
        cluster_id: metadata.cluster_id.clone(),
        metadata_leader: broker.leader_of(chronik_raft::METADATA_GROUP),
        metadata_applied: metadata.applied_index,
        version: metadata.version_level(),
        nodes,
        topics,
        replicas,
        disk: DiskReport {
            low: broker.disk.check(),
            free_bytes: broker.disk.free_bytes(),
            min_free_bytes: broker.disk.min_free_bytes(),
        },
        users: metadata
            .users
            .iter()
            .map(|(name, mechanisms)| UserEntry {
                name: name.clone(),
                mechanisms: mechanisms
                    .iter()
                    .map(|(m, c)| (m.name().to_string(), c.iterations))
                    .collect(),
            })
            .collect(),
    }
}
