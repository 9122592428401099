//! The gRPC port's TLS handshakes, done here rather than inside tonic so
//! that a peer refused for its certificate is logged.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 64;

/// The connections on `listener` that completed a TLS handshake with a
/// certificate the acceptor trusts.
pub fn incoming(listener: TcpListener, acceptor: TlsAcceptor) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (accepted, stream) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::warn!("accept failed on the Raft port: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if accepted.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = accepted.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, "refused a connection to the Raft port: {e}"),
                    Err(_) => tracing::warn!(%peer, "refused a connection to the Raft port: TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
