//! Receiving: checks that a request comes from this cluster and is meant for
//! this node, then hands Raft messages to the loop. Snapshot files are
//! written to a staging directory first; the snapshot message enters the loop
//! only once all of them have arrived.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::proto::raft_transport_server::{RaftTransport, RaftTransportServer};
use super::proto::{
    InstallSnapshotResponse, ReadIndexRequest, ReadIndexResponse, SnapshotChunk, SnapshotProgressRequest,
    SnapshotProgressResponse, StagedFile, StepBatchRequest, StepStreamClosed,
};
use super::{ClusterId, MAX_MESSAGE_BYTES, PeerAddresses, SNAPSHOT_STALL_TIMEOUT};
use crate::mailbox::Mailbox;
use crate::snapshot::{SnapshotManifest, staging_dir};
use crate::telemetry;
use crate::{NodeId, ProposeError};

pub struct RaftService {
    node_id: NodeId,
    cluster_id: ClusterId,
    /// The nodes this one knows as peers: the only senders of Raft messages
    /// it accepts without the cluster id (while the cluster forms, or from a
    /// member that has not learnt the id yet).
    peers: PeerAddresses,
    mailbox: Mailbox,
    snapshot_dir: PathBuf,
    receiving: Receiving,
}

impl RaftService {
    pub fn new(
        node_id: NodeId,
        cluster_id: ClusterId,
        peers: PeerAddresses,
        mailbox: Mailbox,
        snapshot_dir: PathBuf,
    ) -> Self {
        RaftService {
            node_id,
            cluster_id,
            peers,
            mailbox,
            snapshot_dir,
            receiving: Receiving::default(),
        }
    }

    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn check_peer(&self, cluster_id: &str, from: NodeId, to: NodeId) -> Result<(), Status> {
        if cluster_id.is_empty() {
            if self.peers.get(from).is_none() {
                tracing::warn!(from, "refused Raft messages from a node that is not a known peer");
                return Err(Status::permission_denied(format!(
                    "node {from} is not a peer of node {}: list it in --peers, or add it with `cluster add-node`",
                    self.node_id
                )));
            }
        } else {
            self.cluster_id.check(cluster_id)?;
        }
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
            self.check_peer(&batch.cluster_id, batch.from, batch.to)?;
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
        let header = next_chunk(&mut chunks)
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_peer(&header.cluster_id, header.from, header.to)?;
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

        if !self.mailbox.takes_data() {
            return Err(Status::resource_exhausted(
                "this node is low on disk space and takes no snapshot until space is freed",
            ));
        }
        let dir = staging_dir(&self.snapshot_dir, header.group, index);
        let partial = dir.with_extension("partial");
        let _receiving = self.receiving.claim(&partial)?;
        tokio::fs::create_dir_all(&partial).await.map_err(io_status)?;
        // What an earlier, broken transfer of this snapshot staged is kept:
        // the sender resumes after it (see `snapshot_progress`).
        let mut written = staged_files(&partial, &expected).await.map_err(io_status)?;
        let mut open: Option<(String, tokio::fs::File)> = None;
        let mut received = 0u64;
        while let Some(chunk) = next_chunk(&mut chunks).await? {
            let Some(&len) = expected.get(&chunk.file) else {
                return Err(Status::invalid_argument(format!(
                    "'{}' is not in the manifest",
                    chunk.file
                )));
            };
            let done = written.entry(chunk.file.clone()).or_default();
            if chunk.offset != *done || *done + chunk.data.len() as u64 > len {
                return Err(Status::invalid_argument(format!(
                    "chunk of '{}' at {} does not follow the {} bytes staged, or is too long",
                    chunk.file, chunk.offset, *done
                )));
            }
            if open.as_ref().is_none_or(|(name, _)| *name != chunk.file) {
                if let Some((_, file)) = open.take() {
                    file.sync_all().await.map_err(io_status)?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(partial.join(&chunk.file))
                    .await
                    .map_err(io_status)?;
                open = Some((chunk.file.clone(), file));
            }
            let (_, file) = open.as_mut().expect("opened above");
            file.write_all(&chunk.data).await.map_err(io_status)?;
            *done += chunk.data.len() as u64;
            received += chunk.data.len() as u64;
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
        metrics::counter!(telemetry::SNAPSHOTS_RECEIVED).increment(1);
        metrics::counter!(telemetry::SNAPSHOT_BYTES_RECEIVED).increment(received);
        Ok(Response::new(InstallSnapshotResponse {}))
    }

    async fn snapshot_progress(
        &self,
        request: Request<SnapshotProgressRequest>,
    ) -> Result<Response<SnapshotProgressResponse>, Status> {
        let request = request.into_inner();
        self.check_peer(&request.cluster_id, request.from, request.to)?;
        let partial = staging_dir(&self.snapshot_dir, request.group, request.index).with_extension("partial");
        let mut files = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&partial).await {
            while let Some(entry) = entries.next_entry().await.map_err(io_status)? {
                let len = entry.metadata().await.map_err(io_status)?.len();
                if let Some(name) = entry.file_name().to_str() {
                    files.push(StagedFile {
                        name: name.to_string(),
                        len,
                    });
                }
            }
        }
        Ok(Response::new(SnapshotProgressResponse { files }))
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let request = request.into_inner();
        self.cluster_id.check(&request.cluster_id)?;
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

/// The next chunk of a snapshot stream; a sender that stops sending for
/// `SNAPSHOT_STALL_TIMEOUT` is given up on, so a dead one frees the transfer.
async fn next_chunk(chunks: &mut Streaming<SnapshotChunk>) -> Result<Option<SnapshotChunk>, Status> {
    match tokio::time::timeout(SNAPSHOT_STALL_TIMEOUT, chunks.next()).await {
        Ok(chunk) => chunk.transpose(),
        Err(_) => Err(Status::deadline_exceeded("the snapshot sender stalled")),
    }
}

/// The lengths of the files already staged, keeping only those the manifest
/// lists at no more than their length.
async fn staged_files(partial: &Path, expected: &HashMap<String, u64>) -> std::io::Result<HashMap<String, u64>> {
    let mut staged = HashMap::new();
    let mut entries = tokio::fs::read_dir(partial).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata().await?.len();
        match expected.get(&name) {
            Some(&wanted) if len <= wanted => {
                staged.insert(name, len);
            }
            _ => tokio::fs::remove_file(entry.path()).await?,
        }
    }
    Ok(staged)
}

/// Staging directories a transfer is writing into: one transfer each.
#[derive(Default)]
struct Receiving(Arc<Mutex<HashSet<PathBuf>>>);

struct ReceivingGuard(Arc<Mutex<HashSet<PathBuf>>>, PathBuf);

impl Receiving {
    fn claim(&self, dir: &Path) -> Result<ReceivingGuard, Status> {
        let mut receiving = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !receiving.insert(dir.to_path_buf()) {
            return Err(Status::unavailable("this snapshot is already being received"));
        }
        Ok(ReceivingGuard(self.0.clone(), dir.to_path_buf()))
    }
}

impl Drop for ReceivingGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
    }
}

fn io_status(e: std::io::Error) -> Status {
    Status::internal(format!("cannot stage snapshot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_messages_without_the_cluster_id_come_only_from_known_peers() {
        let (inbound, _delivered) = tokio::sync::mpsc::channel(1);
        let mailbox = Mailbox {
            inbound,
            queued_bytes: Default::default(),
            disk: None,
        };
        let known = PeerAddresses::default();
        known.set(2, "127.0.0.1:1".into());
        let cluster = ClusterId::default();
        let service = RaftService::new(1, cluster.clone(), known, mailbox, PathBuf::from("unused"));
        assert!(service.check_peer("", 2, 1).is_ok(), "a peer of the forming cluster");
        let stranger = service.check_peer("", 9, 1).unwrap_err();
        assert_eq!(stranger.code(), tonic::Code::PermissionDenied, "{stranger}");
        assert!(service.check_peer("", 2, 3).is_err(), "addressed to another node");
        cluster.set("abc");
        assert!(service.check_peer("abc", 9, 1).is_ok());
        assert!(service.check_peer("xyz", 2, 1).is_err(), "another cluster");
        assert!(
            service.check_peer("", 2, 1).is_ok(),
            "a peer that has not learnt the id yet"
        );
    }
}
