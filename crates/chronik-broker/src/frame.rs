//! A response frame as a connection writes it: encoded bytes and, for
//! Fetch, ranges of segment files between them. A plaintext connection
//! sends large ranges with `sendfile`, from the page cache to the socket
//! without copying them through the broker; a TLS connection reads them
//! first, since it must encrypt them.

use std::io;

use bytes::Bytes;
use chronik_log::FileRange;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter, Interest, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_rustls::server::TlsStream;

#[derive(Debug)]
pub enum Part {
    Bytes(Bytes),
    File(FileRange),
}

/// One response, without its size prefix.
#[derive(Debug)]
pub struct Frame {
    parts: Vec<Part>,
    len: usize,
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Frame {
            len: bytes.len(),
            parts: vec![Part::Bytes(bytes)],
        }
    }
}

impl Frame {
    pub fn from_parts(parts: Vec<Part>) -> Self {
        let len = parts
            .iter()
            .map(|part| match part {
                Part::Bytes(bytes) => bytes.len(),
                Part::File(range) => range.len() as usize,
            })
            .sum();
        Frame { parts, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole frame in memory, file ranges read.
    #[cfg(test)]
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(self.len);
        for part in &self.parts {
            match part {
                Part::Bytes(bytes) => out.extend_from_slice(bytes),
                Part::File(range) => range.read_into(&mut out)?,
            }
        }
        Ok(Bytes::from(out))
    }
}

/// The write half of a client connection.
pub trait Connection: AsyncWrite + Unpin + Send + 'static {
    /// The socket itself, if bytes may go to it without passing through
    /// this side of the connection (not TLS).
    fn plain_socket(&self) -> Option<&TcpStream>;
}

impl Connection for OwnedWriteHalf {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl Connection for WriteHalf<TlsStream<TcpStream>> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// Ranges shorter than this are read and written with the bytes around
/// them: for a few KiB, a flush and a `sendfile` of their own cost more
/// syscalls and packets than the copy they save (a tailing consumer's
/// fetches carry a few batches per partition).
const SENDFILE_MIN_BYTES: u64 = 64 * 1024;

/// Writes `frame` with its size prefix.
pub async fn write_frame<C: Connection>(writer: &mut BufWriter<C>, frame: Frame) -> io::Result<()> {
    let size = i32::try_from(frame.len).map_err(|_| io::Error::other("a response larger than 2 GiB"))?;
    writer.write_i32(size).await?;
    for part in frame.parts {
        match part {
            Part::Bytes(bytes) => writer.write_all(&bytes).await?,
            Part::File(range) => {
                let direct = range.len() >= SENDFILE_MIN_BYTES && writer.get_ref().plain_socket().is_some();
                if direct {
                    // What is buffered goes first.
                    writer.flush().await?;
                }
                match writer.get_ref().plain_socket().filter(|_| direct) {
                    Some(socket) => send_file(socket, &range).await?,
                    None => {
                        let mut bytes = Vec::with_capacity(range.len() as usize);
                        range.read_into(&mut bytes)?;
                        writer.write_all(&bytes).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `sendfile(2)` of `range` to the non-blocking `socket`, waiting while its
/// send buffer is full.
async fn send_file(socket: &TcpStream, range: &FileRange) -> io::Result<()> {
    let end = range.position() + range.len();
    let mut offset = range.position();
    while offset < end {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
            rustix::fs::sendfile(socket, range.file(), Some(&mut offset), count).map_err(io::Error::from)
        });
        match sent {
            // The file is shorter than the range: the frame cannot be
            // completed, and the client must reconnect.
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment file cut short")),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
