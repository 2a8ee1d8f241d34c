//! Buffers for in-progress transactions streamed by the server (pgoutput
//! protocol version 2, `--streaming`): their messages are kept, as received,
//! until the transaction commits (then replayed in order) or aborts (then
//! dropped; a subtransaction's abort drops its messages only). Past a memory
//! limit, the largest buffer moves to a temporary file, so memory stays
//! bounded whatever the transactions' sizes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use bytes::Bytes;

use crate::lsn::Lsn;

/// One message of a streamed transaction: where it was received, the
/// (sub)transaction it belongs to, and its payload (xid prefix included).
#[derive(Debug, Clone, PartialEq)]
pub struct Buffered {
    pub lsn: Lsn,
    pub subxid: u32,
    pub data: Bytes,
}

/// Every in-progress streamed transaction's messages.
#[derive(Debug)]
pub struct StreamBuffers {
    transactions: HashMap<u32, TxBuffer>,
    /// Payload bytes held in memory, over all transactions.
    in_memory: usize,
    limit: usize,
}

#[derive(Debug, Default)]
struct TxBuffer {
    /// Messages moved to disk, in order, before those in `memory`.
    spill: Option<Spill>,
    memory: VecDeque<Buffered>,
    memory_bytes: usize,
    aborted: HashSet<u32>,
}

#[derive(Debug)]
struct Spill {
    file: BufWriter<File>,
    messages: u64,
}

/// Reads a committed transaction's messages back, in order.
pub struct Replay {
    spilled: Option<(BufReader<File>, u64)>,
    memory: VecDeque<Buffered>,
    aborted: HashSet<u32>,
}

impl StreamBuffers {
    /// Keep at most about `limit` payload bytes in memory.
    pub fn new(limit: usize) -> Self {
        StreamBuffers {
            transactions: HashMap::new(),
            in_memory: 0,
            limit,
        }
    }

    /// Keep a message of transaction `xid`.
    pub fn push(&mut self, xid: u32, message: Buffered) -> std::io::Result<()> {
        let len = message.data.len();
        let tx = self.transactions.entry(xid).or_default();
        if tx.aborted.contains(&message.subxid) {
            return Ok(());
        }
        tx.memory_bytes += len;
        tx.memory.push_back(message);
        self.in_memory += len;
        while self.in_memory > self.limit {
            let Some((_, largest)) = self
                .transactions
                .iter_mut()
                .filter(|(_, tx)| tx.memory_bytes > 0)
                .max_by_key(|(_, tx)| tx.memory_bytes)
            else {
                break;
            };
            self.in_memory -= largest.memory_bytes;
            largest.spill()?;
        }
        Ok(())
    }

    /// Transaction `xid` (when `subxid == xid`) or its subtransaction `subxid` aborted.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(tx) = self.transactions.remove(&xid) {
                self.in_memory -= tx.memory_bytes;
            }
            return;
        }
        if let Some(tx) = self.transactions.get_mut(&xid) {
            let before = tx.memory_bytes;
            tx.memory.retain(|m| m.subxid != subxid);
            tx.memory_bytes = tx.memory.iter().map(|m| m.data.len()).sum();
            self.in_memory -= before - tx.memory_bytes;
            // Spilled messages of it are skipped when replayed.
            tx.aborted.insert(subxid);
        }
    }

    /// Transaction `xid` committed: its messages, in the order received.
    pub fn commit(&mut self, xid: u32) -> std::io::Result<Replay> {
        let tx = self.transactions.remove(&xid).unwrap_or_default();
        self.in_memory -= tx.memory_bytes;
        let spilled = match tx.spill {
            Some(spill) => {
                let mut file = spill.file.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                Some((BufReader::with_capacity(1 << 16, file), spill.messages))
            }
            None => None,
        };
        Ok(Replay {
            spilled,
            memory: tx.memory,
            aborted: tx.aborted,
        })
    }

    /// Payload bytes held in memory now.
    pub fn in_memory(&self) -> usize {
        self.in_memory
    }
}

impl TxBuffer {
    /// Move the in-memory messages to the end of the spill file.
    fn spill(&mut self) -> std::io::Result<()> {
        if self.spill.is_none() {
            self.spill = Some(Spill {
                file: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
                messages: 0,
            });
        }
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        for m in self.memory.drain(..) {
            spill.file.write_all(&m.lsn.0.to_be_bytes())?;
            spill.file.write_all(&m.subxid.to_be_bytes())?;
            spill.file.write_all(&(m.data.len() as u32).to_be_bytes())?;
            spill.file.write_all(&m.data)?;
            spill.messages += 1;
        }
        self.memory_bytes = 0;
        Ok(())
    }
}

impl Replay {
    /// The next message that was not aborted, or `None` at the end.
    pub fn next_message(&mut self) -> std::io::Result<Option<Buffered>> {
        loop {
            let message = match &mut self.spilled {
                Some((file, left)) if *left > 0 => {
                    *left -= 1;
                    let mut head = [0u8; 16];
                    file.read_exact(&mut head)?;
                    let lsn = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
                    let subxid = u32::from_be_bytes(head[8..12].try_into().unwrap_or_default());
                    let len = u32::from_be_bytes(head[12..].try_into().unwrap_or_default());
                    let mut data = vec![0u8; len as usize];
                    file.read_exact(&mut data)?;
                    Buffered {
                        lsn: Lsn(lsn),
                        subxid,
                        data: data.into(),
                    }
                }
                _ => match self.memory.pop_front() {
                    Some(message) => message,
                    None => return Ok(None),
                },
            };
            if !self.aborted.contains(&message.subxid) {
                return Ok(Some(message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(lsn: u64, subxid: u32, len: usize) -> Buffered {
        Buffered {
            lsn: Lsn(lsn),
            subxid,
            data: Bytes::from(vec![lsn as u8; len]),
        }
    }

    fn replay_all(buffers: &mut StreamBuffers, xid: u32) -> Vec<Buffered> {
        let mut replay = buffers.commit(xid).unwrap();
        let mut out = Vec::new();
        while let Some(m) = replay.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn messages_come_back_in_order_across_memory_and_disk_without_aborted_subtransactions() {
        let mut buffers = StreamBuffers::new(250);
        let mut expected = Vec::new();
        for i in 0..20u64 {
            // Subtransaction 11 aborts; its messages are both spilled and in memory.
            let subxid = if i % 3 == 0 { 11 } else { 10 };
            let m = msg(i, subxid, 50);
            if subxid == 10 {
                expected.push(m.clone());
            }
            buffers.push(10, m).unwrap();
            assert!(buffers.in_memory() <= 250);
        }
        // Another transaction, interleaved, is kept apart.
        buffers.push(20, msg(100, 20, 10)).unwrap();
        buffers.abort(10, 11);
        assert_eq!(replay_all(&mut buffers, 10), expected);
        assert_eq!(replay_all(&mut buffers, 20), vec![msg(100, 20, 10)]);
        assert_eq!(buffers.in_memory(), 0);
    }

    #[test]
    fn an_aborted_transaction_leaves_nothing() {
        let mut buffers = StreamBuffers::new(100);
        for i in 0..10 {
            buffers.push(7, msg(i, 7, 40)).unwrap();
        }
        buffers.abort(7, 7);
        assert_eq!(buffers.in_memory(), 0);
        assert!(replay_all(&mut buffers, 7).is_empty());
    }
}
