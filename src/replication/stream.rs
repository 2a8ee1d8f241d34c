//! The CopyBoth stream after `START_REPLICATION`: XLogData and keepalives in, standby status
//! updates out.

use std::time::Duration;

use bytes::Buf;

use super::connection::log_notice;
use super::wire::Wire;
use super::ReplicationError;
use crate::change::time;
use crate::lsn::Lsn;

/// How long `close` waits for the server to finish the copy before hanging up anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// A chunk of decoded WAL (one pgoutput message).
    XLogData {
        /// WAL position of the start of `data`.
        wal_start: Lsn,
        /// Server's current end of WAL.
        wal_end: Lsn,
        /// Server clock at sending, µs since 2000-01-01.
        server_time: i64,
        /// The plugin's message; a zero-copy view of the read buffer.
        data: bytes::Bytes,
    },
    /// Primary keepalive.
    Keepalive {
        /// Server's current end of WAL.
        wal_end: Lsn,
        /// Server clock at sending, µs since 2000-01-01.
        server_time: i64,
        /// The server wants a status update now (else it may time us out).
        reply_requested: bool,
    },
}

/// A running replication stream.
pub struct ReplicationStream {
    wire: Wire,
    /// The server sent CopyDone: no more data will come.
    server_done: bool,
}

impl ReplicationStream {
    pub(crate) fn new(wire: Wire) -> ReplicationStream {
        ReplicationStream {
            wire,
            server_done: false,
        }
    }

    /// Next message; Ok(None) when the server ends the copy stream. Cancel-safe (usable in
    /// `tokio::select!` with a timer): partial frames stay in the internal buffer.
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ReplicationError> {
        while !self.server_done {
            let Some(frame) = self.wire.read_frame().await? else {
                return Err(ReplicationError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during replication",
                )));
            };
            match frame.tag {
                b'd' => return parse_copy_data(frame.body).map(Some),
                b'c' => self.server_done = true,
                // A walsender that shuts down (server stop) ends the stream with
                // CommandComplete and no CopyDone.
                b'C' => {
                    self.server_done = true;
                    return Ok(None);
                }
                b'E' => return Err(super::backend::server_error(&frame.body)),
                b'N' => log_notice(&frame),
                b'S' => {}
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "unexpected message type {:?} in the replication stream",
                        char::from(other)
                    )))
                }
            }
        }
        Ok(None)
    }

    /// Standby status update ('r'): write/flush/apply positions, clock now (µs since
    /// 2000-01-01), reply flag. Cancel-safe: a write dropped half way is completed before the
    /// next message, so the server never sees a torn update.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let message = status_update(write, flush, apply, time::now(), reply_requested);
        self.wire.write_bytes(&message).await
    }

    /// CopyDone, drain to ReadyForQuery or EOF, Terminate.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        self.wire.write_bytes(&[b'c', 0, 0, 0, 4]).await?;
        let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
            loop {
                match self.wire.read_frame().await? {
                    None => return Ok(()),
                    Some(frame) => match frame.tag {
                        b'Z' => return Ok(()),
                        b'E' => return Err(super::backend::server_error(&frame.body)),
                        _ => {}
                    },
                }
            }
        })
        .await;
        self.wire.terminate().await;
        match drained {
            Ok(result) => result,
            Err(_) => Err(ReplicationError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not end the replication stream",
            ))),
        }
    }
}

/// Parses a CopyData payload: 'w' XLogData or 'k' primary keepalive.
fn parse_copy_data(mut body: bytes::Bytes) -> Result<ReplicationMessage, ReplicationError> {
    let short = |what: &str| ReplicationError::Protocol(format!("truncated {what} message"));
    match body.first() {
        Some(b'w') => {
            if body.len() < 25 {
                return Err(short("XLogData"));
            }
            body.advance(1);
            let wal_start = Lsn(body.get_u64());
            let wal_end = Lsn(body.get_u64());
            let server_time = body.get_i64();
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                server_time,
                data: body,
            })
        }
        Some(b'k') => {
            if body.len() < 18 {
                return Err(short("keepalive"));
            }
            body.advance(1);
            Ok(ReplicationMessage::Keepalive {
                wal_end: Lsn(body.get_u64()),
                server_time: body.get_i64(),
                reply_requested: body.get_u8() != 0,
            })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unknown replication message type {:?}",
            other.map(|&b| char::from(b))
        ))),
    }
}

/// The 39-byte CopyData message carrying a standby status update.
fn status_update(write: Lsn, flush: Lsn, apply: Lsn, now: i64, reply: bool) -> [u8; 39] {
    let mut m = [0u8; 39];
    m[0] = b'd';
    m[1..5].copy_from_slice(&38i32.to_be_bytes());
    m[5] = b'r';
    m[6..14].copy_from_slice(&write.0.to_be_bytes());
    m[14..22].copy_from_slice(&flush.0.to_be_bytes());
    m[22..30].copy_from_slice(&apply.0.to_be_bytes());
    m[30..38].copy_from_slice(&now.to_be_bytes());
    m[38] = u8::from(reply);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};

    #[test]
    fn xlogdata_is_parsed_and_data_shares_the_buffer() {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x10);
        b.put_u64(0x20);
        b.put_i64(12345);
        b.put_slice(b"B...");
        let body = b.freeze();
        let base = body.as_ptr();
        match parse_copy_data(body).unwrap() {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                server_time,
                data,
            } => {
                assert_eq!(
                    (wal_start, wal_end, server_time),
                    (Lsn(0x10), Lsn(0x20), 12345)
                );
                assert_eq!(&data[..], b"B...");
                assert_eq!(data.as_ptr(), base.wrapping_add(25));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keepalive_is_parsed() {
        let mut b = BytesMut::new();
        b.put_u8(b'k');
        b.put_u64(0x99);
        b.put_i64(7);
        b.put_u8(1);
        assert_eq!(
            parse_copy_data(b.freeze()).unwrap(),
            ReplicationMessage::Keepalive {
                wal_end: Lsn(0x99),
                server_time: 7,
                reply_requested: true
            }
        );
    }

    #[test]
    fn truncated_or_unknown_copy_data_is_a_protocol_error() {
        for body in [&b"w\0\0"[..], b"k\0", b"x", b""] {
            assert!(matches!(
                parse_copy_data(Bytes::copy_from_slice(body)),
                Err(ReplicationError::Protocol(_))
            ));
        }
    }

    #[test]
    fn status_update_has_the_documented_layout() {
        let m = status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(&m[..6], &[b'd', 0, 0, 0, 38, b'r']);
        assert_eq!(m[13], 1);
        assert_eq!(m[21], 2);
        assert_eq!(m[29], 3);
        assert_eq!(m[37], 4);
        assert_eq!(m[38], 1);
    }

    #[test]
    fn protocol_clock_counts_from_2000() {
        // 2020-01-01 is 20 years after the protocol epoch; any later date is larger.
        assert!(time::now() > 631_152_000_000_000);
    }
}
