//! The byte stream under the protocol: TCP or Unix socket, optionally wrapped in TLS, plus the
//! read buffer that backend messages are framed from.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::{self, Frame};
use super::{tls, ReplicationError};
use crate::config::conninfo::{ConnInfo, SslMode};

/// Bytes asked of the socket per read: large, so a busy stream costs few system calls.
const READ_CHUNK: usize = 64 * 1024;

/// Anything we can speak the protocol over.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// An open connection with its read buffer.
pub(crate) struct Wire {
    stream: Box<dyn AsyncStream>,
    read_buf: BytesMut,
    /// Reused for every frontend message so steady-state sends do not allocate.
    pub(crate) write_buf: BytesMut,
    /// Whether TLS is in use (for logging).
    pub(crate) tls: bool,
}

impl Wire {
    /// Opens the socket and negotiates TLS as `info.sslmode` says.
    pub(crate) async fn open(info: &ConnInfo) -> Result<Wire, ReplicationError> {
        let unreachable = |source| ReplicationError::Unreachable {
            target: info.target(),
            source,
        };
        if info.is_unix_socket() {
            #[cfg(unix)]
            {
                // Like libpq, no TLS over Unix sockets: the kernel already protects the bytes.
                let stream = tokio::net::UnixStream::connect(info.socket_path())
                    .await
                    .map_err(unreachable)?;
                return Ok(Wire::new(Box::new(stream), false));
            }
            #[cfg(not(unix))]
            return Err(unreachable(std::io::Error::from(
                std::io::ErrorKind::Unsupported,
            )));
        }
        let mut tcp = TcpStream::connect((info.host.as_str(), info.port))
            .await
            .map_err(unreachable)?;
        // Status updates are tiny and latency matters more than packet count.
        tcp.set_nodelay(true).map_err(ReplicationError::Io)?;
        if matches!(info.sslmode, SslMode::Disable | SslMode::Allow) {
            return Ok(Wire::new(Box::new(tcp), false));
        }
        let mut request = BytesMut::with_capacity(8);
        postgres_protocol::message::frontend::ssl_request(&mut request);
        tcp.write_all(&request).await.map_err(unreachable)?;
        let answer = tcp.read_u8().await.map_err(unreachable)?;
        match answer {
            b'S' => {
                let config = tls::client_config(info)?;
                let name = tls::server_name(&info.host)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::InvalidData {
                            ReplicationError::Tls(format!(
                                "handshake with {} failed: {e}",
                                info.target()
                            ))
                        } else {
                            unreachable(e)
                        }
                    })?;
                Ok(Wire::new(Box::new(stream), true))
            }
            b'N' if info.sslmode == SslMode::Prefer => Ok(Wire::new(Box::new(tcp), false)),
            b'N' => Err(no_tls(info)),
            other => Err(ReplicationError::Protocol(format!(
                "unexpected answer {:?} to the TLS request",
                char::from(other)
            ))),
        }
    }

    fn new(stream: Box<dyn AsyncStream>, tls: bool) -> Wire {
        Wire {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(256),
            tls,
        }
    }

    /// The next backend message. Cancel-safe: partial messages stay in the read buffer, and
    /// the only await is a `read_buf`, which either delivers bytes into the buffer or nothing.
    /// `Ok(None)` on end of file.
    pub(crate) async fn read_frame(&mut self) -> Result<Option<Frame>, ReplicationError> {
        loop {
            let missing = match backend::try_frame(&mut self.read_buf)? {
                Ok(frame) => return Ok(Some(frame)),
                Err(missing) => missing,
            };
            // Reserve for the whole message at once when it is large, else a normal chunk.
            self.read_buf.reserve(missing.max(READ_CHUNK));
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return if self.read_buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReplicationError::Protocol(
                        "connection closed in the middle of a message".into(),
                    ))
                };
            }
        }
    }

    /// Writes `write_buf` out. Cancel-safe: what was written is removed from the
    /// buffer as it goes, so a write dropped half way (in a `select!`) is completed
    /// by the next one instead of leaving a torn message on the wire.
    pub(crate) async fn flush_write_buf(&mut self) -> Result<(), ReplicationError> {
        while !self.write_buf.is_empty() {
            let n = self.stream.write(&self.write_buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.write_buf.advance(n);
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Writes raw bytes (a message prepared on the stack), after whatever an
    /// interrupted earlier write left. Cancel-safe like [`Self::flush_write_buf`].
    pub(crate) async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ReplicationError> {
        self.write_buf.extend_from_slice(bytes);
        self.flush_write_buf().await
    }

    /// Sends Terminate and shuts the stream down; errors are irrelevant at this point.
    pub(crate) async fn terminate(mut self) {
        self.write_buf.clear();
        postgres_protocol::message::frontend::terminate(&mut self.write_buf);
        let _ = self.flush_write_buf().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Runs `fut` under the connect timeout, reporting a timeout as unreachable.
pub(crate) async fn with_timeout<T>(
    info: &ConnInfo,
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, ReplicationError>>,
) -> Result<T, ReplicationError> {
    match timeout {
        None => fut.await,
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(ReplicationError::Unreachable {
                target: info.target(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {} s", limit.as_secs()),
                ),
            })
        }),
    }
}

/// A server that answered the TLS request with "no" while `sslmode` demands TLS.
pub(crate) fn no_tls(info: &ConnInfo) -> ReplicationError {
    ReplicationError::Tls(format!(
        "the server at {} does not support TLS, but sslmode={}: turn on ssl in the server's configuration, or connect with sslmode=prefer or disable",
        info.target(),
        info.sslmode.as_str()
    ))
}
