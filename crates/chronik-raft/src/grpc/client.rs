//! Sending: a queue and a task per peer. Each task keeps one message stream
//! open to its peer, merges whatever batches queued up while the previous
//! item was handed over, and reconnects with backoff.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::peer_auth::{PeerChannel, PeerSecurity};
use super::proto::raft_transport_client::RaftTransportClient;
use super::proto::{SnapshotChunk, SnapshotProgressRequest, StepBatchRequest, StepStreamClosed};
use super::step_codec::{Outgoing, OutgoingBatch, step_stream};
use super::{CONNECTION_WINDOW_BYTES, ClusterId, MAX_MESSAGE_BYTES, SNAPSHOT_STALL_TIMEOUT, STREAM_WINDOW_BYTES};
use crate::snapshot::{CHUNK_BYTES, SnapshotManifest};
use crate::telemetry;
use crate::transport::{SnapshotDone, Transport, message_bytes};
use crate::{GroupId, NodeId};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an open stream pings its peer, and how long it waits for the
/// answer before it gives the connection up.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stream items handed to the connection but not yet written out.
const STREAM_ITEMS_BUFFERED: usize = 16;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Loop iterations' batches queued per peer, and their bytes; beyond either
/// they are dropped and Raft retransmits.
const PEER_QUEUE_DEPTH: usize = 1024;
const PEER_QUEUE_BYTES: usize = 128 << 20;
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

/// A peer's queue, with the bytes it holds (see `message_bytes`).
#[derive(Clone)]
struct PeerQueue {
    batches: mpsc::Sender<(Batch, usize)>,
    bytes: Arc<AtomicUsize>,
    depth: metrics::Gauge,
    dropped: metrics::Counter,
}

struct Shared {
    node_id: NodeId,
    cluster_id: ClusterId,
    peers: PeerAddresses,
    security: PeerSecurity,
    departed: Departed,
}

/// Peers whose Raft port refused a connection, until the loop takes them.
#[derive(Default)]
struct Departed(Mutex<BTreeSet<NodeId>>);

impl Departed {
    fn report(&self, node: NodeId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(node);
    }

    fn take(&self) -> Vec<NodeId> {
        let mut departed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *departed).into_iter().collect()
    }
}

pub struct GrpcTransport {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    queues: Mutex<HashMap<NodeId, PeerQueue>>,
}

impl GrpcTransport {
    /// Must be called inside the tokio runtime that will run the senders.
    pub fn new(node_id: NodeId, cluster_id: ClusterId, peers: PeerAddresses, security: PeerSecurity) -> Self {
        GrpcTransport {
            shared: Arc::new(Shared {
                node_id,
                cluster_id,
                peers,
                security,
                departed: Departed::default(),
            }),
            runtime: tokio::runtime::Handle::current(),
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queue(&self, to: NodeId) -> PeerQueue {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(to)
            .or_insert_with(|| {
                let (batches, rx) = mpsc::channel(PEER_QUEUE_DEPTH);
                let bytes = Arc::new(AtomicUsize::new(0));
                let received = Received {
                    batches: rx,
                    bytes: bytes.clone(),
                };
                self.runtime.spawn(send_to_peer(self.shared.clone(), to, received));
                let peer = to.to_string();
                PeerQueue {
                    batches,
                    bytes,
                    depth: metrics::gauge!(telemetry::PEER_QUEUE_BYTES, "peer" => peer.clone()),
                    dropped: metrics::counter!(telemetry::PEER_MESSAGES_DROPPED, "peer" => peer),
                }
            })
            .clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        let queue = self.queue(to);
        let bytes: usize = messages.iter().map(|(_, m)| message_bytes(m)).sum();
        let queued = queue.bytes.fetch_add(bytes, Ordering::Relaxed);
        if (queued > 0 && queued + bytes > PEER_QUEUE_BYTES) || queue.batches.try_send((messages, bytes)).is_err() {
            queue.bytes.fetch_sub(bytes, Ordering::Relaxed);
            queue.dropped.increment(1);
            tracing::debug!(to, "peer queue full; Raft messages dropped");
        }
        queue.depth.set(queue.bytes.load(Ordering::Relaxed) as f64);
    }

    fn send_snapshot(&self, to: NodeId, group: GroupId, message: Message, done: SnapshotDone) {
        let shared = self.shared.clone();
        self.runtime.spawn(async move {
            let result = send_snapshot(&shared, to, group, message).await;
            match &result {
                Err(e) => tracing::warn!(to, group, "cannot send snapshot: {e}"),
                Ok(bytes) => {
                    metrics::counter!(telemetry::SNAPSHOTS_SENT).increment(1);
                    metrics::counter!(telemetry::SNAPSHOT_BYTES_SENT).increment(*bytes);
                    tracing::info!(to, group, bytes, "snapshot sent");
                }
            }
            done.finish(result.is_ok());
        });
    }

    fn take_departed(&self) -> Vec<NodeId> {
        self.shared.departed.take()
    }
}

/// A node's gRPC port (`host:port`) with the cluster's connection settings.
fn endpoint(addr: &str, security: &PeerSecurity) -> Result<Endpoint, String> {
    Ok(security
        .endpoint(addr)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

/// A connection for requests that each end within `timeout`.
pub async fn connect_channel(addr: &str, timeout: Duration, security: &PeerSecurity) -> Result<PeerChannel, String> {
    let channel = endpoint(addr, security)?
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| connect_error(&e))?;
    Ok(security.channel(channel))
}

/// Why a stream could not be opened.
#[derive(Debug)]
struct ConnectFailure {
    message: String,
    /// The peer's host answered that nothing listens on the port.
    refused: bool,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A connection for streams without a deadline (Raft messages, snapshots):
/// HTTP/2 pings find a peer that stopped answering.
async fn connect_stream(addr: &str, security: &PeerSecurity) -> Result<PeerChannel, ConnectFailure> {
    let endpoint = endpoint(addr, security).map_err(|message| ConnectFailure {
        message,
        refused: false,
    })?;
    let channel = endpoint
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .connect()
        .await
        .map_err(|e| ConnectFailure {
            message: connect_error(&e),
            refused: refused(&e),
        })?;
    Ok(security.channel(channel))
}

/// Whether a connection error is a refusal: the host is up and nothing
/// listens on the port.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// A connection error with its causes: a TLS refusal is only in the source chain.
fn connect_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

fn transport_client(channel: PeerChannel) -> RaftTransportClient<PeerChannel> {
    RaftTransportClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn encode(batch: Batch, into: &mut VecDeque<Outgoing>) -> usize {
    let mut bytes = 0;
    for (group, message) in batch {
        let outgoing = Outgoing::new(group, message);
        bytes += outgoing.len();
        into.push_back(outgoing);
    }
    bytes
}

/// Takes messages from the front of `pending` for one stream item: up to
/// `MAX_REQUEST_BYTES`, and at least one message whatever its size.
fn next_request(pending: &mut VecDeque<Outgoing>, pending_bytes: &mut usize) -> Vec<Outgoing> {
    let mut request = Vec::new();
    let mut bytes = 0;
    while let Some(front) = pending.front() {
        if !request.is_empty() && bytes + front.len() > MAX_REQUEST_BYTES {
            break;
        }
        bytes += front.len();
        request.push(pending.pop_front().expect("front exists"));
    }
    *pending_bytes -= bytes;
    request
}

/// The receiving end of a peer's queue.
struct Received {
    batches: mpsc::Receiver<(Batch, usize)>,
    bytes: Arc<AtomicUsize>,
}

impl Received {
    async fn recv(&mut self) -> Option<Batch> {
        let (batch, bytes) = self.batches.recv().await?;
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        Some(batch)
    }

    fn try_recv(&mut self) -> Option<Batch> {
        let (batch, bytes) = self.batches.try_recv().ok()?;
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        Some(batch)
    }
}

/// Keeps a message stream open to peer `to` for as long as the transport
/// lives, reopening it with backoff when it breaks.
async fn send_to_peer(shared: Arc<Shared>, to: NodeId, mut queue: Received) {
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let opened = Instant::now();
        let Err(e) = stream_to_peer(&shared, to, &mut queue).await else {
            return;
        };
        if opened.elapsed() >= MAX_BACKOFF {
            // The stream worked for a while: this is a new failure.
            backoff = MIN_BACKOFF;
            failing = false;
        }
        if !failing {
            tracing::warn!(to, "{e}; reconnecting with backoff");
        }
        failing = true;
        // What queued meanwhile is stale; Raft sends afresh.
        while queue.try_recv().is_some() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Streams batches from `queue` to peer `to` until the stream breaks
/// (an error) or the queue closes (`Ok`). Batches that queued while the
/// previous item was being handed over travel together.
async fn stream_to_peer(shared: &Shared, to: NodeId, queue: &mut Received) -> Result<(), String> {
    let addr = shared
        .peers
        .get(to)
        .ok_or_else(|| format!("no Raft address known for node {to}"))?;
    let channel = connect_stream(&addr, &shared.security).await.map_err(|e| {
        if e.refused {
            shared.departed.report(to);
        }
        format!("cannot connect to {addr}: {e}")
    })?;
    let (items, outgoing) = mpsc::channel(STREAM_ITEMS_BUFFERED);
    let call = step_stream(channel, ReceiverStream::new(outgoing));
    tokio::pin!(call);
    let ended = |result: Result<tonic::Response<StepStreamClosed>, tonic::Status>| match result {
        Ok(_) => format!("node {to} closed the Raft message stream"),
        Err(status) => format!("node {to} refused Raft messages: {}", status.message()),
    };
    let mut pending = VecDeque::new();
    let mut pending_bytes = 0;
    loop {
        if pending.is_empty() {
            tokio::select! {
                result = &mut call => return Err(ended(result)),
                batch = queue.recv() => match batch {
                    Some(batch) => pending_bytes += encode(batch, &mut pending),
                    None => return Ok(()),
                },
            }
        }
        while pending_bytes < MAX_REQUEST_BYTES {
            match queue.try_recv() {
                Some(more) => pending_bytes += encode(more, &mut pending),
                None => break,
            }
        }
        let item = OutgoingBatch {
            head: StepBatchRequest {
                cluster_id: shared.cluster_id.get(),
                from: shared.node_id,
                to,
                messages: Vec::new(),
            },
            messages: next_request(&mut pending, &mut pending_bytes),
        };
        tokio::select! {
            result = &mut call => return Err(ended(result)),
            sent = items.send(item) => sent.map_err(|_| format!("the stream to node {to} closed"))?,
        }
    }
}

/// Streams a snapshot's files to `to`, resuming after what an earlier
/// attempt staged there. There is no deadline for the whole transfer, which
/// may be tens of GB; a transfer that makes no progress for
/// `SNAPSHOT_STALL_TIMEOUT` is given up instead.
/// Returns the bytes of file data sent.
async fn send_snapshot(shared: &Shared, to: NodeId, group: GroupId, message: Message) -> Result<u64, String> {
    let manifest = SnapshotManifest::decode(&message.get_snapshot().data)
        .ok_or_else(|| "the snapshot carries no valid manifest".to_string())?;
    let addr = shared
        .peers
        .get(to)
        .ok_or_else(|| format!("no Raft address known for node {to}"))?;
    let mut client = connect_stream(&addr, &shared.security)
        .await
        .map(transport_client)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let staged = staged_on_peer(
        &mut client,
        shared,
        to,
        group,
        message.get_snapshot().get_metadata().index,
    )
    .await;
    let header = SnapshotChunk {
        cluster_id: shared.cluster_id.get(),
        from: shared.node_id,
        to,
        group,
        message: message.write_to_bytes().map_err(|e| e.to_string())?.into(),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel(4);
    let mut reader = tokio::spawn(async move {
        let send = |chunk| async {
            match tokio::time::timeout(SNAPSHOT_STALL_TIMEOUT, tx.send(chunk)).await {
                Ok(sent) => Ok(sent.is_ok()),
                Err(_) => Err(format!(
                    "node {to} took no snapshot data for {SNAPSHOT_STALL_TIMEOUT:?}"
                )),
            }
        };
        let mut sent = 0u64;
        if !send(header).await? {
            return Ok(sent);
        }
        for file in manifest.files {
            let mut offset = staged.get(&file.name).copied().unwrap_or(0).min(file.len);
            let mut source = tokio::fs::File::open(&file.path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", file.path.display()))?;
            tokio::io::AsyncSeekExt::seek(&mut source, std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
            while offset < file.len {
                let want = CHUNK_BYTES.min((file.len - offset) as usize);
                let mut data = vec![0; want];
                tokio::io::AsyncReadExt::read_exact(&mut source, &mut data)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
                let chunk = SnapshotChunk {
                    file: file.name.clone(),
                    offset,
                    data: data.into(),
                    ..Default::default()
                };
                offset += want as u64;
                sent += want as u64;
                if !send(chunk).await? {
                    return Ok(sent);
                }
            }
        }
        Ok::<u64, String>(sent)
    });
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let call = client.install_snapshot(request);
    tokio::pin!(call);
    let refused = |status: tonic::Status| format!("node {to} refused the snapshot: {}", status.message());
    tokio::select! {
        answered = &mut call => {
            // The receiver answered before everything was sent: it refused.
            reader.abort();
            answered.map(|_| 0).map_err(refused)
        }
        read = &mut reader => {
            let sent = read.map_err(|e| e.to_string())??;
            match tokio::time::timeout(SNAPSHOT_STALL_TIMEOUT, call).await {
                Ok(answered) => answered.map(|_| sent).map_err(refused),
                Err(_) => Err(format!("node {to} did not confirm the snapshot within {SNAPSHOT_STALL_TIMEOUT:?}")),
            }
        }
    }
}

/// What an earlier attempt staged on `to` of the snapshot of `group` at
/// `index`, per file; nothing if the peer cannot tell.
async fn staged_on_peer(
    client: &mut RaftTransportClient<PeerChannel>,
    shared: &Shared,
    to: NodeId,
    group: GroupId,
    index: u64,
) -> HashMap<String, u64> {
    let request = SnapshotProgressRequest {
        cluster_id: shared.cluster_id.get(),
        from: shared.node_id,
        to,
        group,
        index,
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, client.snapshot_progress(request)).await {
        Ok(Ok(response)) => response
            .into_inner()
            .files
            .into_iter()
            .map(|f| (f.name, f.len))
            .collect(),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::RaftService;
    use crate::mailbox::Mailbox;
    use crate::shell::Control;
    use crate::snapshot::{SnapshotFile, staging_dir};
    use raft::eraftpb::MessageType;

    /// A snapshot transfer that broke part way resumes where it stopped:
    /// what the first attempt staged is kept, not sent again.
    #[tokio::test]
    async fn a_broken_snapshot_transfer_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let source: Vec<u8> = (0..3 * CHUNK_BYTES as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("a.log"), &source).unwrap();
        std::fs::write(dir.path().join("b.log"), b"").unwrap();
        let manifest = SnapshotManifest {
            files: ["a.log", "b.log"]
                .into_iter()
                .map(|name| SnapshotFile {
                    name: name.to_string(),
                    path: dir.path().join(name),
                    len: std::fs::metadata(dir.path().join(name)).unwrap().len(),
                })
                .collect(),
            state: b"state".to_vec(),
        };
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgSnapshot);
        message.from = 1;
        message.to = 2;
        message.mut_snapshot().data = manifest.encode().into();
        message.mut_snapshot().mut_metadata().index = 7;

        // Node 2's Raft service, feeding a mailbox the test reads.
        let (inbound, mut delivered) = mpsc::channel(16);
        let mailbox = Mailbox {
            inbound,
            queued_bytes: Default::default(),
            disk: None,
        };
        let staging = dir.path().join("staging");
        let known = PeerAddresses::default();
        known.set(1, "127.0.0.1:1".into());
        let service = RaftService::new(2, ClusterId::default(), known, mailbox, staging.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        // A first attempt sends one chunk of marker bytes, then stops.
        let header = SnapshotChunk {
            from: 1,
            to: 2,
            group: 5,
            message: message.write_to_bytes().unwrap().into(),
            ..Default::default()
        };
        let marker = SnapshotChunk {
            file: "a.log".into(),
            offset: 0,
            data: vec![0xAB; CHUNK_BYTES].into(),
            ..Default::default()
        };
        let mut client = transport_client(connect_stream(&addr, &PeerSecurity::default()).await.unwrap());
        let refused = client
            .install_snapshot(tokio_stream::iter([header, marker]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::DataLoss, "{refused}");

        // The retry learns what is staged and sends only the rest.
        let peers = PeerAddresses::default();
        peers.set(2, addr);
        let shared = Shared {
            node_id: 1,
            cluster_id: ClusterId::default(),
            peers,
            security: PeerSecurity::default(),
            departed: Departed::default(),
        };
        send_snapshot(&shared, 2, 5, message).await.unwrap();
        let staged = std::fs::read(staging_dir(&staging, 5, 7).join("a.log")).unwrap();
        assert_eq!(staged.len(), source.len());
        assert!(
            staged[..CHUNK_BYTES].iter().all(|b| *b == 0xAB),
            "the staged part was not sent again"
        );
        assert_eq!(staged[CHUNK_BYTES..], source[CHUNK_BYTES..]);
        assert!(staging_dir(&staging, 5, 7).join("b.log").exists());
        match delivered.recv().await {
            Some(Control::Messages { from: 1, messages, .. }) => {
                assert_eq!(messages[0].0, 5);
                assert_eq!(messages[0].1.get_msg_type(), MessageType::MsgSnapshot);
            }
            _ => panic!("the snapshot message reached the loop"),
        }
    }

    /// A peer whose port refuses connections is reported departed; one
    /// that accepts connections and then says nothing (paused) is not.
    #[tokio::test]
    async fn only_a_refused_connection_reports_the_peer_departed() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((connection, _)) = silent.accept().await {
                connections.push(connection);
            }
        });
        let peers = PeerAddresses::default();
        peers.set(2, closed_addr);
        peers.set(3, silent_addr);
        let transport = GrpcTransport::new(1, ClusterId::default(), peers, PeerSecurity::default());
        let mut departed = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !departed.contains(&2) && Instant::now() < deadline {
            for to in [2, 3] {
                transport.send(to, vec![(1, Message::default())]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            departed.extend(transport.take_departed());
        }
        assert!(departed.contains(&2), "the refused peer is reported");
        // Node 3's connection has had as long as node 2's to be reported.
        tokio::time::sleep(Duration::from_millis(500)).await;
        departed.extend(transport.take_departed());
        assert_eq!(departed, BTreeSet::from([2]), "a silent peer is not");
        held.abort();
    }
}
