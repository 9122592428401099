//! Receiving: checks that a request comes from this cluster and is meant for
//! this node, then hands Raft messages to the loop. Snapshot files are
//! written to a staging directory first; the snapshot message enters the loop
//! only once all of them have arrived.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::proto::raft_transport_server::{RaftTransport, RaftTransportServer};
use super::proto::{
    InstallSnapshotResponse, ReadIndexRequest, ReadIndexResponse, SnapshotChunk, StepBatchRequest, StepStreamClosed,
};
use super::{ClusterId, MAX_MESSAGE_BYTES};
use crate::snapshot::{SnapshotManifest, staging_dir};
use crate::transport::Mailbox;
use crate::{NodeId, ProposeError};

pub struct RaftService {
    node_id: NodeId,
    cluster_id: ClusterId,
    mailbox: Mailbox,
    snapshot_dir: PathBuf,
}

impl RaftService {
    pub fn new(node_id: NodeId, cluster_id: ClusterId, mailbox: Mailbox, snapshot_dir: PathBuf) -> Self {
        RaftService {
            node_id,
            cluster_id,
            mailbox,
            snapshot_dir,
        }
    }

    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn check_peer(&self, cluster_id: &str, to: NodeId) -> Result<(), Status> {
        self.cluster_id.check(cluster_id)?;
        if to != self.node_id {
            return Err(Status::failed_precondition(format!(
                "this is node {}, the request is for node {to}; check the peer addresses",
                self.node_id
            )));
        }
        Ok(())
    }
}

fn decode(bytes: &Bytes) -> Result<Message, Status> {
    // Entries' data stays slices of the received buffer.
    Message::parse_from_carllerche_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn step_stream(
        &self,
        request: Request<Streaming<StepBatchRequest>>,
    ) -> Result<Response<StepStreamClosed>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            self.check_peer(&batch.cluster_id, batch.to)?;
            let messages = batch
                .messages
                .iter()
                .map(|m| Ok((m.group, decode(&m.message)?)))
                .collect::<Result<Vec<_>, Status>>()?;
            if !self.mailbox.deliver(batch.from, messages) {
                // Raft resends what is lost; closing the stream would only add a reconnect.
                tracing::debug!(from = batch.from, "the Raft loop is saturated; messages dropped");
            }
        }
        Ok(Response::new(StepStreamClosed {}))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<InstallSnapshotResponse>, Status> {
        let mut chunks = request.into_inner();
        let header = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        self.check_peer(&header.cluster_id, header.to)?;
        let message = decode(&header.message)?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument(
                "the first chunk must carry a snapshot message",
            ));
        }
        let index = message.get_snapshot().get_metadata().index;
        let manifest = SnapshotManifest::decode(&message.get_snapshot().data)
            .ok_or_else(|| Status::invalid_argument("the snapshot carries no valid manifest"))?;
        let expected: HashMap<String, u64> = manifest.files.iter().map(|f| (f.name.clone(), f.len)).collect();

        let dir = staging_dir(&self.snapshot_dir, header.group, index);
        let partial = dir.with_extension("partial");
        let _ = tokio::fs::remove_dir_all(&partial).await;
        tokio::fs::create_dir_all(&partial).await.map_err(io_status)?;
        let mut written: HashMap<String, u64> = HashMap::new();
        let mut open: Option<(String, tokio::fs::File)> = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let Some(&len) = expected.get(&chunk.file) else {
                return Err(Status::invalid_argument(format!(
                    "'{}' is not in the manifest",
                    chunk.file
                )));
            };
            let done = written.entry(chunk.file.clone()).or_default();
            if chunk.offset != *done || *done + chunk.data.len() as u64 > len {
                return Err(Status::invalid_argument(format!(
                    "chunk of '{}' out of order or too long",
                    chunk.file
                )));
            }
            if open.as_ref().is_none_or(|(name, _)| *name != chunk.file) {
                if let Some((_, file)) = open.take() {
                    file.sync_all().await.map_err(io_status)?;
                }
                let file = tokio::fs::File::create(partial.join(&chunk.file))
                    .await
                    .map_err(io_status)?;
                open = Some((chunk.file.clone(), file));
            }
            let (_, file) = open.as_mut().expect("opened above");
            file.write_all(&chunk.data).await.map_err(io_status)?;
            *done += chunk.data.len() as u64;
        }
        if let Some((_, file)) = open.take() {
            file.sync_all().await.map_err(io_status)?;
        }
        for file in &manifest.files {
            if written.get(&file.name).copied().unwrap_or(0) != file.len {
                return Err(Status::data_loss(format!(
                    "snapshot file '{}' arrived incomplete",
                    file.name
                )));
            }
            if file.len == 0 {
                tokio::fs::File::create(partial.join(&file.name))
                    .await
                    .map_err(io_status)?;
            }
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::rename(&partial, &dir).await.map_err(io_status)?;
        if !self.mailbox.deliver(header.from, vec![(header.group, message)]) {
            return Err(Status::unavailable("the Raft loop is saturated; snapshot dropped"));
        }
        Ok(Response::new(InstallSnapshotResponse {}))
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let request = request.into_inner();
        self.check_peer(&request.cluster_id, self.node_id)?;
        match self.mailbox.read_index(request.group).await {
            Ok(index) => Ok(Response::new(ReadIndexResponse { index })),
            Err(ProposeError::NotLeader { leader, .. }) => Err(Status::failed_precondition(format!(
                "node {} does not lead group {}; leader: {leader:?}",
                self.node_id, request.group
            ))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

fn io_status(e: std::io::Error) -> Status {
    Status::internal(format!("cannot stage snapshot: {e}"))
}
