//! What makes several brokers one cluster, besides Raft itself:
//!
//! - [`admin_service`]: the gRPC service next to the Raft transport, through
//!   which nodes forward metadata writes to the metadata leader and operators
//!   read a node's view ([`report`]);
//! - [`peer_view`]: the leaders and in-sync replicas of partitions this node
//!   holds no replica of, learned from its peers, for Metadata responses;
//! - [`reconciler`]: on each node, the groups it leads are brought to the
//!   members the metadata wants (joins, moves, removals);
//! - [`identity`]: the node id a data directory belongs to, and whether the
//!   node was removed;
//! - `peer_tls`: the TLS handshakes of the gRPC port, where peers show a
//!   certificate of the cluster CA.

pub mod admin_service;
pub mod identity;
mod peer_tls;
pub mod peer_view;
pub mod reconciler;
pub mod report;
pub mod upgrade;

/// Generated from `proto/admin.proto`.
pub mod proto {
    tonic::include_proto!("chronik.admin");
}

use std::time::Duration;

use chronik_raft::grpc::{PeerChannel, PeerSecurity};
use proto::cluster_admin_client::ClusterAdminClient;

/// A client of the admin service of the node at `addr` (its Raft address).
pub async fn admin_client(
    addr: &str,
    timeout: Duration,
    security: &PeerSecurity,
) -> Result<ClusterAdminClient<PeerChannel>, String> {
    let channel = chronik_raft::grpc::connect_channel(addr, timeout, security)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    Ok(ClusterAdminClient::new(channel)
        .max_decoding_message_size(chronik_raft::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(chronik_raft::grpc::MAX_MESSAGE_BYTES))
}

/// The `chronik.version` levels the build of the node at `addr` (its Raft
/// address) reads. A build from before the version has no such call, and
/// reads only the first level.
pub async fn supported_versions(
    addr: &str,
    timeout: Duration,
    security: &PeerSecurity,
    cluster_id: &str,
) -> Result<std::ops::RangeInclusive<i16>, String> {
    let mut client = admin_client(addr, timeout, security).await?;
    let request = proto::SupportedVersionsRequest {
        cluster_id: cluster_id.to_string(),
    };
    match client.supported_versions(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            let level = |l: i32| i16::try_from(l).unwrap_or(i16::MAX);
            Ok(level(answer.min_level)..=level(answer.max_level))
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            Ok(chronik_state::version::FIRST..=chronik_state::version::FIRST)
        }
        Err(status) => Err(status.message().to_string()),
    }
}

/// The view of the node at `addr` (its Raft address), as it stands there.
pub async fn describe_node(
    addr: &str,
    timeout: Duration,
    security: &PeerSecurity,
) -> Result<report::NodeReport, String> {
    let mut client = admin_client(addr, timeout, security).await?;
    let report = client
        .describe(proto::DescribeRequest::default())
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner()
        .report;
    serde_json::from_slice(&report).map_err(|e| e.to_string())
}

/// Asks the node that leads `group` to hand the leadership to `to`: this
/// node, or another through its admin service.
pub async fn transfer_leadership(
    broker: &crate::Broker,
    group: chronik_raft::GroupId,
    to: chronik_raft::NodeId,
) -> Result<(), String> {
    let leader = broker
        .leader_of(group)
        .ok_or_else(|| format!("group {group} has no leader"))?;
    if leader == broker.config.node_id {
        return broker.transfer_leader(group, to).await.map_err(|e| e.to_string());
    }
    let addr = broker
        .peers
        .get(leader)
        .ok_or_else(|| format!("no address known for node {leader}"))?;
    let mut client = admin_client(&addr, chronik_raft::grpc::REQUEST_TIMEOUT, &broker.peer_security).await?;
    client
        .transfer_leader(proto::TransferLeaderRequest {
            cluster_id: broker.cluster_id.get(),
            group,
            to,
        })
        .await
        .map_err(|s| format!("node {leader}: {}", s.message()))?;
    Ok(())
}

/// Serves the Raft transport and the admin service on `listener` until the
/// process ends: behind mutual TLS when the cluster uses it, and behind the
/// cluster secret check when it has one.
pub async fn serve(broker: std::sync::Arc<crate::Broker>, listener: tokio::net::TcpListener) {
    let raft = chronik_raft::grpc::RaftService::new(
        broker.config.node_id,
        broker.cluster_id.clone(),
        broker.peers.clone(),
        broker.mailbox(),
        broker.config.data_dir.join("raft-snapshots"),
    );
    use chronik_raft::grpc::{CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, STREAM_WINDOW_BYTES};
    let security = broker.peer_security.clone();
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .tcp_nodelay(true)
        .layer(tonic::service::InterceptorLayer::new(security.checker()))
        .add_service(raft.into_server())
        .add_service(admin_service::AdminService::server(broker));
    let served = match &security.tls {
        None => {
            router
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        }
        Some(tls) => match crate::security::tls::peer_acceptor(tls) {
            Ok(acceptor) => router.serve_with_incoming(peer_tls::incoming(listener, acceptor)).await,
            Err(e) => {
                tracing::error!("cannot serve Raft over TLS: {e:#}");
                return;
            }
        },
    };
    if let Err(e) = served {
        tracing::error!("the Raft and admin gRPC server stopped: {e}");
    }
}
