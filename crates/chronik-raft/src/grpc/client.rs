//! Sending: a queue and a task per peer. Each task keeps one connection,
//! merges whatever batches queued up while the previous request was in
//! flight, and reconnects with backoff.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use super::proto::raft_transport_client::RaftTransportClient;
use super::proto::{GroupMessage, SnapshotChunk, StepBatchRequest, StepRequest};
use super::{CONNECTION_WINDOW_BYTES, ClusterId, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES};
use crate::snapshot::{CHUNK_BYTES, SnapshotManifest};
use crate::transport::{SnapshotDone, Transport};
use crate::{GroupId, NodeId};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A snapshot may be large; it gets longer than one request.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Loop iterations' batches queued per peer; beyond that they are dropped
/// and Raft retransmits.
const PEER_QUEUE_DEPTH: usize = 1024;
/// Bytes of messages merged into one request. A bigger single message (one
/// huge entry) goes alone, up to `MAX_MESSAGE_BYTES`.
const MAX_REQUEST_BYTES: usize = 8 << 20;

/// The Raft address of every peer, shared with whoever learns of new ones.
#[derive(Debug, Clone, Default)]
pub struct PeerAddresses {
    inner: Arc<RwLock<HashMap<NodeId, String>>>,
}

impl PeerAddresses {
    pub fn set(&self, node: NodeId, addr: String) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).insert(node, addr);
    }

    pub fn get(&self, node: NodeId) -> Option<String> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).get(&node).cloned()
    }

    pub fn all(&self) -> Vec<(NodeId, String)> {
        let mut all: Vec<_> = self
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        all.sort();
        all
    }
}

type Batch = Vec<(GroupId, Message)>;

struct Shared {
    node_id: NodeId,
    cluster_id: ClusterId,
    peers: PeerAddresses,
}

pub struct GrpcTransport {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    queues: Mutex<HashMap<NodeId, mpsc::Sender<Batch>>>,
}

impl GrpcTransport {
    /// Must be called inside the tokio runtime that will run the senders.
    pub fn new(node_id: NodeId, cluster_id: ClusterId, peers: PeerAddresses) -> Self {
        GrpcTransport {
            shared: Arc::new(Shared {
                node_id,
                cluster_id,
                peers,
            }),
            runtime: tokio::runtime::Handle::current(),
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self, to: NodeId) -> mpsc::Sender<Batch> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(to)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PEER_QUEUE_DEPTH);
                self.runtime.spawn(send_to_peer(self.shared.clone(), to, rx));
                tx
            })
            .clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        if self.queue(to).try_send(messages).is_err() {
            tracing::debug!(to, "peer queue full; Raft messages dropped");
        }
    }

    fn send_snapshot(&self, to: NodeId, group: GroupId, message: Message, done: SnapshotDone) {
        let shared = self.shared.clone();
        self.runtime.spawn(async move {
            let result = send_snapshot(&shared, to, group, message).await;
            if let Err(e) = &result {
                tracing::warn!(to, group, "cannot send snapshot: {e}");
            } else {
                tracing::info!(to, group, "snapshot sent");
            }
            done.finish(result.is_ok());
        });
    }
}

/// A connection to a node's gRPC port (`host:port`), with the cluster's
/// timeouts: 5 s to connect, `timeout` per request.
pub async fn connect_channel(addr: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .connect()
        .await
}

async fn connect(addr: &str, timeout: Duration) -> Result<RaftTransportClient<Channel>, tonic::transport::Error> {
    let channel = connect_channel(addr, timeout).await?;
    Ok(RaftTransportClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn encode(batch: Batch, into: &mut VecDeque<GroupMessage>) -> usize {
    let mut bytes = 0;
    for (group, message) in batch {
        match message.write_to_bytes() {
            Ok(encoded) => {
                bytes += encoded.len();
                into.push_back(GroupMessage {
                    group,
                    message: encoded,
                });
            }
            Err(e) => tracing::error!(group, "cannot encode a Raft message: {e}"),
        }
    }
    bytes
}

/// Takes messages from the front of `pending` for one request: up to
/// `MAX_REQUEST_BYTES`, and at least one message whatever its size.
fn next_request(pending: &mut VecDeque<GroupMessage>, pending_bytes: &mut usize) -> Vec<GroupMessage> {
    let mut request = Vec::new();
    let mut bytes = 0;
    while let Some(front) = pending.front() {
        if !request.is_empty() && bytes + front.message.len() > MAX_REQUEST_BYTES {
            break;
        }
        bytes += front.message.len();
        request.push(pending.pop_front().expect("front exists"));
    }
    *pending_bytes -= bytes;
    request
}

async fn send_to_peer(shared: Arc<Shared>, to: NodeId, mut queue: mpsc::Receiver<Batch>) {
    let mut client = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    let mut pending = VecDeque::new();
    let mut pending_bytes = 0;
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(batch) => pending_bytes += encode(batch, &mut pending),
                None => return,
            }
        }
        while pending_bytes < MAX_REQUEST_BYTES {
            match queue.try_recv() {
                Ok(more) => pending_bytes += encode(more, &mut pending),
                Err(_) => break,
            }
        }
        let messages = next_request(&mut pending, &mut pending_bytes);
        let outcome = async {
            if client.is_none() {
                let addr = shared
                    .peers
                    .get(to)
                    .ok_or_else(|| format!("no Raft address known for node {to}"))?;
                client = Some(
                    connect(&addr, REQUEST_TIMEOUT)
                        .await
                        .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
                );
            }
            let connected = client.as_mut().expect("connected above");
            let (cluster_id, from) = (shared.cluster_id.get(), shared.node_id);
            let sent = if messages.len() == 1 {
                let message = messages.into_iter().next();
                connected
                    .step(StepRequest {
                        cluster_id,
                        from,
                        to,
                        message,
                    })
                    .await
            } else {
                connected
                    .step_batch(StepBatchRequest {
                        cluster_id,
                        from,
                        to,
                        messages,
                    })
                    .await
            };
            sent.map(|_| ())
                .map_err(|status| format!("node {to} refused Raft messages: {}", status.message()))
        }
        .await;
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!(to, "reached peer again");
                }
                failing = false;
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(to, "{e}; retrying with backoff");
                }
                failing = true;
                client = None;
                // What queued meanwhile is stale; Raft sends afresh.
                pending.clear();
                pending_bytes = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn send_snapshot(shared: &Shared, to: NodeId, group: GroupId, message: Message) -> Result<(), String> {
    let manifest = SnapshotManifest::decode(&message.get_snapshot().data)
        .ok_or_else(|| "the snapshot carries no valid manifest".to_string())?;
    let addr = shared
        .peers
        .get(to)
        .ok_or_else(|| format!("no Raft address known for node {to}"))?;
    let mut client = connect(&addr, SNAPSHOT_TIMEOUT)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let header = SnapshotChunk {
        cluster_id: shared.cluster_id.get(),
        from: shared.node_id,
        to,
        group,
        message: message.write_to_bytes().map_err(|e| e.to_string())?,
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(4);
    let reader = tokio::spawn(async move {
        if tx.send(header).await.is_err() {
            return Ok(());
        }
        for file in manifest.files {
            let mut source = tokio::fs::File::open(&file.path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", file.path.display()))?;
            let mut offset = 0u64;
            while offset < file.len {
                let want = CHUNK_BYTES.min((file.len - offset) as usize);
                let mut data = vec![0; want];
                tokio::io::AsyncReadExt::read_exact(&mut source, &mut data)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
                let chunk = SnapshotChunk {
                    file: file.name.clone(),
                    offset,
                    data,
                    ..Default::default()
                };
                offset += want as u64;
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<(), String>(())
    });
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let sent = client
        .install_snapshot(request)
        .await
        .map(|_| ())
        .map_err(|status| format!("node {to} refused the snapshot: {}", status.message()));
    let read = reader.await.map_err(|e| e.to_string())?;
    read.and(sent)
}
