//! A Kafka listener: accepts connections (with TLS on SSL listeners), reads
//! size-prefixed frames, runs the SASL exchange on SASL listeners, and
//! writes responses back in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Broker;
use crate::codec::{self, Response};
use crate::frame::{Connection, write_frame};
use crate::security::listener::ListenerConfig;
use crate::security::sasl::{Outcome, SaslExchange};
use crate::security::session::Session;
use crate::security::tls::{self, TlsAcceptorCell};
use crate::{authenticate, dispatch};

/// Requests one connection may have in flight before the broker stops reading
/// from it. Kafka clients pipeline (librdkafka sends up to 5 produce requests
/// per partition), so this is well above what they use.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 128;

/// A SASL client that has not authenticated by then is dropped.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest frame read before SASL authentication (Kafka's
/// sasl.server.max.receive.size).
const MAX_UNAUTHENTICATED_FRAME: i32 = 512 * 1024;

/// A client that has not taken a whole response by then is dropped: the
/// file ranges of a Fetch response keep their segment files, deleted ones
/// too, on the disk until it is written. (librdkafka gives up on a request
/// after 60 s, `socket.timeout.ms`.)
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka listener with what its connections need: its name and protocol,
/// and the TLS acceptor if it speaks TLS.
pub struct KafkaListener {
    pub config: ListenerConfig,
    pub tls: Option<Arc<TlsAcceptorCell>>,
}

/// Serves Kafka clients on `listener` until `shutdown` resolves.
pub async fn serve(
    broker: Arc<Broker>,
    tcp: TcpListener,
    listener: Arc<KafkaListener>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let listener = listener.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_connection(broker, stream, peer, listener).await {
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

async fn handle_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<KafkaListener>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let _open = OpenConnection::new(&broker);
    let mut session = Session::new(&listener.config.name, peer.ip());
    let sasl = listener
        .config
        .protocol
        .sasl()
        .then(|| SaslExchange::new(broker.config.security.sasl_mechanisms.clone()));
    let Some(tls) = &listener.tls else {
        let (reader, writer) = stream.into_split();
        return run_connection(broker, session, sasl, reader, writer).await;
    };
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = %listener.config.name, "TLS handshake failed: {e}");
            return Ok(());
        }
        Err(_) => {
            tracing::info!(%peer, listener = %listener.config.name, "TLS handshake timed out");
            return Ok(());
        }
    };
    if let Some(principal) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(tls::principal_of)
    {
        session.principal = principal;
    }
    let (reader, writer) = tokio::io::split(stream);
    run_connection(broker, session, sasl, reader, writer).await
}

async fn run_connection<R, W>(
    broker: Arc<Broker>,
    session: Session,
    sasl: Option<SaslExchange>,
    mut reader: R,
    writer: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: Connection,
{
    let (pending_tx, pending_rx) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer_task = tokio::spawn(write_responses(writer, pending_rx));
    let result = read_requests(&broker, session, sasl, &mut reader, pending_tx).await;
    // The writer drains what is in flight, then stops when the channel closes.
    let _ = writer_task.await;
    result
}

async fn read_requests<R: AsyncRead + Unpin>(
    broker: &Arc<Broker>,
    session: Session,
    mut sasl: Option<SaslExchange>,
    reader: &mut R,
    pending: mpsc::Sender<JoinHandle<Response>>,
) -> std::io::Result<()> {
    let mut session = Arc::new(session);
    let authentication_deadline = tokio::time::Instant::now() + AUTHENTICATION_TIMEOUT;
    loop {
        let authenticating = sasl.as_ref().is_some_and(|s| !s.is_authenticated());
        // A client that has not authenticated gets a deadline, and small
        // frames that take nothing of the node's request budget.
        let size = if authenticating {
            match tokio::time::timeout_at(authentication_deadline, reader.read_i32()).await {
                Ok(read) => read,
                Err(_) => return Err(std::io::Error::other("SASL authentication did not finish in time")),
            }
        } else {
            reader.read_i32().await
        };
        let size = match size {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if authenticating && !(0..=MAX_UNAUTHENTICATED_FRAME).contains(&size) {
            return Err(std::io::Error::other(format!(
                "a frame of {size} bytes before SASL authentication"
            )));
        }
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
        let filled = async {
            while frame.len() < size as usize {
                if body.read_buf(&mut frame).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        };
        if authenticating {
            tokio::time::timeout_at(authentication_deadline, filled)
                .await
                .map_err(|_| std::io::Error::other("SASL authentication did not finish in time"))??;
        } else {
            filled.await?;
        }
        let frame = frame.freeze();
        let api_key = frame.get(..2).map(|k| i16::from_be_bytes([k[0], k[1]]));
        let sasl_frame =
            matches!(api_key, Some(k) if k == ApiKey::SaslHandshake as i16 || k == ApiKey::SaslAuthenticate as i16);
        let raw_token = sasl.as_ref().is_some_and(SaslExchange::expects_raw_token);
        if let Some(mut exchange) = sasl.take_if(|_| raw_token || sasl_frame) {
            // PLAIN stretches the password: off the async workers.
            let broker = broker.clone();
            let frame = frame.clone();
            let ((response, outcome), exchange) = tokio::task::spawn_blocking(move || {
                let step = if raw_token {
                    authenticate::raw_step(&broker, &mut exchange, frame)
                } else {
                    authenticate::step(&broker, &mut exchange, frame)
                };
                (step, exchange)
            })
            .await
            .map_err(|e| std::io::Error::other(format!("the SASL step failed: {e}")))?;
            sasl = Some(exchange);
            let _ = pending.send(tokio::spawn(async move { response })).await;
            match outcome {
                Outcome::Continue => {}
                Outcome::Authenticated(principal) => {
                    tracing::debug!(%principal, host = %session.host, "authenticated");
                    session = Arc::new(Session {
                        principal,
                        ..(*session).clone()
                    });
                }
                Outcome::Close => return Err(std::io::Error::other("SASL authentication failed")),
            }
            continue;
        }
        if sasl.as_ref().is_some_and(|s| !s.is_authenticated()) && api_key != Some(ApiKey::ApiVersions as i16) {
            // Kafka's rule: before authentication only ApiVersions and SASL.
            return Err(std::io::Error::other(format!(
                "request of API {api_key:?} before SASL authentication"
            )));
        }
        let read_at = Instant::now();
        let deferred = dispatch::dispatch(broker, &session, frame).await;
        // The request's bytes count against the node's budget until it is answered.
        let counted = broker.clone();
        let answered = async move {
            let _budget = budget;
            let response = deferred.await;
            if let Some(key) = api_key {
                counted.telemetry.requests.answered(key, read_at.elapsed());
            }
            response
        };
        if pending.send(tokio::spawn(answered)).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_responses<W: Connection>(writer: W, mut pending: mpsc::Receiver<JoinHandle<Response>>) {
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
        if let Some(frame) = response {
            match tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut writer, frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!("cannot write a response: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!("closing a connection that took {WRITE_TIMEOUT:?} to take one response");
                    return;
                }
            }
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

/// Counts a client connection in the node's traffic while it is open.
struct OpenConnection(Arc<Broker>);

impl OpenConnection {
    fn new(broker: &Arc<Broker>) -> Self {
        broker.telemetry.traffic.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(broker.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.telemetry.traffic.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
