//! The Kafka listener: accepts connections, reads size-prefixed frames, and
//! writes responses back in request order.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Broker;
use crate::codec::{self, Response};
use crate::dispatch;

/// Requests one connection may have in flight before the broker stops reading
/// from it. Kafka clients pipeline (librdkafka sends up to 5 produce requests
/// per partition), so this is well above what they use.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 128;

/// Serves Kafka clients on `listener` until `shutdown` resolves.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_connection(broker, stream).await {
                            tracing::debug!(%peer, "connection closed: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn handle_connection(broker: Arc<Broker>, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let (pending_tx, pending_rx) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer_task = tokio::spawn(write_responses(writer, pending_rx));
    let result = read_requests(&broker, &mut reader, pending_tx).await;
    // The writer drains what is in flight, then stops when the channel closes.
    let _ = writer_task.await;
    result
}

async fn read_requests(
    broker: &Arc<Broker>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    pending: mpsc::Sender<JoinHandle<Response>>,
) -> std::io::Result<()> {
    loop {
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if size < 0 || size as usize > broker.config.max_request_bytes {
            let mut head = [0u8; 8];
            let available = (size.max(0) as usize).min(head.len());
            reader.read_exact(&mut head[..available]).await?;
            let response = codec::oversized(&head[..available], size, broker.config.max_request_bytes);
            let _ = pending.send(tokio::spawn(async move { response })).await;
            return Err(std::io::Error::other(format!(
                "request of {size} bytes exceeds the limit"
            )));
        }
        // Waits while requests read and not yet answered hold the node's budget.
        let budget = broker
            .request_budget
            .clone()
            .acquire_many_owned(size as u32)
            .await
            .map_err(|_| std::io::Error::other("the broker is shutting down"))?;
        // Filled straight from the socket, without zeroing it first; `take`
        // stops at the frame's end even if the buffer has room for more.
        let mut frame = BytesMut::with_capacity(size as usize);
        let mut body = (&mut *reader).take(size as u64);
        while frame.len() < size as usize {
            if body.read_buf(&mut frame).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let deferred = dispatch::dispatch(broker, frame.freeze()).await;
        // The request's bytes count against the node's budget until it is answered.
        let answered = async move {
            let _budget = budget;
            deferred.await
        };
        if pending.send(tokio::spawn(answered)).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_responses(writer: tokio::net::tcp::OwnedWriteHalf, mut pending: mpsc::Receiver<JoinHandle<Response>>) {
    let mut writer = BufWriter::new(writer);
    let mut next = pending.recv().await;
    while let Some(handle) = next {
        let response = match handle.await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!("request handler failed: {e}");
                return;
            }
        };
        if let Some(bytes) = response
            && write_frame(&mut writer, bytes).await.is_err()
        {
            return;
        }
        // Pipelined responses that are already done share one flush; anything
        // still in progress must not hold back what is written.
        next = match pending.try_recv() {
            Ok(handle) if handle.is_finished() => Some(handle),
            Ok(handle) => {
                if writer.flush().await.is_err() {
                    return;
                }
                Some(handle)
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                if writer.flush().await.is_err() {
                    return;
                }
                pending.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
    let _ = writer.flush().await;
}

async fn write_frame(writer: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>, bytes: Bytes) -> std::io::Result<()> {
    writer.write_i32(bytes.len() as i32).await?;
    writer.write_all(&bytes).await
}
