//! The stdout target: one event per line (or an indented object), written in
//! large blocks and flushed at the end of every transaction.

use async_trait::async_trait;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Event, OutputError, OutputTarget};
use crate::change::{json, text};
use crate::config::Format;
use crate::lsn::Lsn;

/// Size at which the buffer is written out even inside a transaction.
const BUFFER_LIMIT: usize = 256 * 1024;

/// Writes events to any `AsyncWrite` (stdout in the daemon, a `Vec<u8>` in tests).
pub struct StdoutOutput<W> {
    writer: W,
    format: Format,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    written: usize,
    durable: Lsn,
}

impl StdoutOutput<tokio::io::Stdout> {
    /// The process's standard output.
    pub fn stdout(format: Format) -> Self {
        StdoutOutput::new(tokio::io::stdout(), format)
    }
}

impl<W: AsyncWrite + Unpin + Send> StdoutOutput<W> {
    pub fn new(writer: W, format: Format) -> Self {
        StdoutOutput {
            writer,
            format,
            buf: Vec::with_capacity(BUFFER_LIMIT + 4096),
            written: 0,
            durable: Lsn::ZERO,
        }
    }

    /// The underlying writer (tests read what was written).
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    /// Write the buffer out. Cancel-safe: progress is kept in `written`, so a
    /// write dropped half way continues where it stopped instead of repeating bytes.
    async fn write_out(&mut self, flush: bool) -> Result<(), OutputError> {
        let result = async {
            while self.written < self.buf.len() {
                let n = self.writer.write(&self.buf[self.written..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.written += n;
            }
            self.buf.clear();
            self.written = 0;
            if flush {
                self.writer.flush().await?;
            }
            Ok(())
        }
        .await;
        result.map_err(|source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::BrokenPipe {
                OutputError::Closed { target: "stdout" }
            } else {
                OutputError::Io {
                    target: "stdout",
                    source,
                }
            }
        })
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> OutputTarget for StdoutOutput<W> {
    fn name(&self) -> &'static str {
        "stdout"
    }

    async fn write(&mut self, event: Event<'_>) -> Result<(), OutputError> {
        match self.format {
            Format::Json | Format::Debezium => self.buf.extend_from_slice(event.json),
            Format::JsonPretty => json::write_json_pretty(event.change, &mut self.buf),
            Format::Text => text::write_text(event.change, &mut self.buf),
        }
        self.buf.push(b'\n');
        if self.buf.len() >= BUFFER_LIMIT {
            self.write_out(false).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, end: Lsn) -> Result<(), OutputError> {
        self.write_out(true).await?;
        self.durable = self.durable.max(end);
        Ok(())
    }

    fn durable(&self) -> Lsn {
        self.durable
    }

    fn discard_uncommitted(&mut self) {
        // The buffer holds only events after the last commit; drop them unless
        // writing them out has begun (a line must not be cut).
        if self.written == 0 {
            self.buf.clear();
        }
    }

    async fn close(&mut self) -> Result<(), OutputError> {
        // Events after the last commit belong to a transaction that will be
        // sent again; writing them now still helps a reader that is watching.
        self.write_out(true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Change, TxInfo};

    fn begin(xid: u32) -> Change {
        Change::Begin(TxInfo {
            xid,
            commit_lsn: Lsn(0x100),
            commit_ts: 0,
        })
    }

    async fn write<W: AsyncWrite + Unpin + Send>(out: &mut StdoutOutput<W>, change: &Change) {
        let mut encoded = Vec::new();
        json::write_json(change, &mut encoded);
        out.write(Event {
            change,
            json: &encoded,
            seq: Default::default(),
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn buffers_until_commit_then_reports_durable() {
        let mut out = StdoutOutput::new(Vec::new(), Format::Json);
        write(&mut out, &begin(7)).await;
        assert!(
            out.get_ref().is_empty(),
            "nothing written before the commit"
        );
        assert_eq!(out.durable(), Lsn::ZERO);
        out.commit(Lsn(0x200)).await.unwrap();
        let written = String::from_utf8(out.get_ref().clone()).unwrap();
        assert_eq!(written.lines().count(), 1);
        assert!(written.starts_with(r#"{"op":"begin","xid":7"#), "{written}");
        assert_eq!(out.durable(), Lsn(0x200));
    }

    #[tokio::test]
    async fn writes_out_a_full_buffer_inside_a_transaction() {
        let mut out = StdoutOutput::new(Vec::new(), Format::Json);
        let change = begin(1);
        let mut n = 0;
        while out.get_ref().is_empty() {
            write(&mut out, &change).await;
            n += 1;
            assert!(n < 100_000, "buffer never written out");
        }
        assert!(out.get_ref().len() >= BUFFER_LIMIT);
        assert_eq!(out.durable(), Lsn::ZERO, "no commit yet");
    }

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl AsyncWrite for ClosedPipe {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A pipe that takes 7 bytes per write and, while `stalled`, blocks after one write.
    #[derive(Default)]
    struct SlowPipe {
        taken: Vec<u8>,
        stalled: bool,
        wrote_since_stall: bool,
    }

    impl AsyncWrite for SlowPipe {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if self.stalled && self.wrote_since_stall {
                return std::task::Poll::Pending;
            }
            self.wrote_since_stall = true;
            let n = buf.len().min(7);
            self.taken.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_write_dropped_half_way_continues_without_repeating_bytes() {
        use futures_util::FutureExt;
        let pipe = SlowPipe {
            stalled: true,
            ..SlowPipe::default()
        };
        let mut out = StdoutOutput::new(pipe, Format::Json);
        write(&mut out, &begin(1)).await;
        write(&mut out, &begin(2)).await;
        // The commit writes 7 bytes, then blocks and is dropped (as by a select!).
        assert!(out.commit(Lsn(0x200)).now_or_never().is_none());
        assert_eq!(out.durable(), Lsn::ZERO);
        out.writer.stalled = false;
        out.commit(Lsn(0x200)).await.unwrap();
        let text = String::from_utf8(out.writer.taken.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines.iter().all(|l| l.starts_with("{\"op\":\"begin\"")),
            "{text}"
        );
        assert_eq!(out.durable(), Lsn(0x200));
    }

    #[tokio::test]
    async fn uncommitted_events_are_discarded_before_a_replay() {
        let mut out = StdoutOutput::new(Vec::new(), Format::Json);
        write(&mut out, &begin(1)).await;
        out.discard_uncommitted();
        write(&mut out, &begin(2)).await;
        out.commit(Lsn(0x200)).await.unwrap();
        let text = String::from_utf8(out.get_ref().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"xid\":2"), "{text}");
    }

    #[tokio::test]
    async fn a_closed_pipe_is_reported_as_closed_and_not_durable() {
        let mut out = StdoutOutput::new(ClosedPipe, Format::Text);
        let change = begin(3);
        out.write(Event {
            change: &change,
            json: b"{}",
            seq: Default::default(),
        })
        .await
        .unwrap();
        let err = out.commit(Lsn(0x300)).await.unwrap_err();
        assert!(matches!(err, OutputError::Closed { .. }), "{err}");
        assert_eq!(out.durable(), Lsn::ZERO);
    }
}
