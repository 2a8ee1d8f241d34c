//! Checkpointing: which WAL position may be confirmed to the server.
//!
//! Confirming a position tells Postgres it may discard WAL before it and will
//! never send those changes again, so the confirmed (flush) position must never
//! pass a transaction that some target has not durably taken. Holding it back
//! needlessly is also harmful: the slot pins WAL on the server. So:
//!
//! - while a transaction is being received, or a handed-over one is not yet
//!   durable, the flush position is the end of the last durable transaction;
//! - when nothing is in flight, it is the last position the server reported
//!   in a keepalive (it has sent everything before it, and we have taken it),
//!   so a quiet publication on a busy cluster does not fill the disk.

use crate::lsn::Lsn;

/// The positions reported in a standby status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPositions {
    /// Highest position received from the server.
    pub write: Lsn,
    /// Position up to which everything is durable: the one the slot confirms.
    pub flush: Lsn,
}

/// Tracks received, handed-over and durable positions.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    received: Lsn,
    /// End of the last unit (transaction or non-transactional message) handed to the targets.
    handed: Lsn,
    /// What the targets report as durable.
    durable: Lsn,
    /// Server position reported while no transaction was being received.
    idle: Lsn,
    in_transaction: bool,
    /// Payloads received but not yet decoded and handed over.
    queued: u64,
    /// Last flush position reported; never goes back.
    confirmed: Lsn,
}

impl Checkpoint {
    /// Start from the slot's confirmed position (nothing before it will be sent).
    pub fn new(confirmed: Lsn) -> Self {
        Checkpoint {
            received: confirmed,
            handed: confirmed,
            durable: confirmed,
            idle: confirmed,
            in_transaction: false,
            queued: 0,
            confirmed,
        }
    }

    /// Data up to `lsn` arrived from the server.
    pub fn received(&mut self, lsn: Lsn) {
        self.received = self.received.max(lsn);
    }

    /// A payload starting at `lsn` was received and queued for decoding.
    pub fn queued(&mut self, lsn: Lsn) {
        self.queued += 1;
        self.received(lsn);
    }

    /// A queued payload was decoded and its events handed over.
    pub fn applied(&mut self) {
        self.queued = self.queued.saturating_sub(1);
    }

    /// A transaction started arriving.
    pub fn begin(&mut self) {
        self.in_transaction = true;
    }

    /// Every event of a unit ending at `end` was handed to the targets.
    pub fn handed(&mut self, end: Lsn) {
        self.in_transaction = false;
        self.handed = self.handed.max(end);
        self.received(end);
    }

    /// The targets report everything up to `lsn` durable.
    pub fn durable(&mut self, lsn: Lsn) {
        self.durable = self.durable.max(lsn);
    }

    /// The server reported (keepalive) that it has sent everything before `wal_end`.
    pub fn keepalive(&mut self, wal_end: Lsn) {
        self.received(wal_end);
        if !self.in_transaction && self.queued == 0 {
            self.idle = self.idle.max(wal_end);
        }
    }

    /// True when every unit handed over is durable and none is being received or queued.
    pub fn is_idle(&self) -> bool {
        !self.in_transaction && self.queued == 0 && self.durable >= self.handed
    }

    /// The positions to report now; the flush position never goes back.
    pub fn status(&mut self) -> StatusPositions {
        let candidate = if self.is_idle() {
            self.durable.max(self.idle)
        } else {
            self.durable.min(self.handed)
        };
        self.confirmed = self.confirmed.max(candidate);
        StatusPositions {
            write: self.received.max(self.confirmed),
            flush: self.confirmed,
        }
    }

    /// The flush position last reported.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_confirmed_past_a_transaction_that_is_not_durable() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.begin();
        cp.received(Lsn(150));
        cp.keepalive(Lsn(180));
        cp.handed(Lsn(200));
        assert_eq!(cp.status().flush, Lsn(100));
        cp.durable(Lsn(200));
        assert_eq!(cp.status().flush, Lsn(200));
    }

    #[test]
    fn a_keepalive_inside_a_transaction_does_not_move_the_position() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.begin();
        cp.keepalive(Lsn(500));
        assert_eq!(cp.status().flush, Lsn(100));
        cp.handed(Lsn(300));
        cp.durable(Lsn(300));
        // The keepalive arrived mid-transaction, so only the commit end counts.
        assert_eq!(cp.status().flush, Lsn(300));
    }

    #[test]
    fn when_idle_the_server_position_is_confirmed() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.keepalive(Lsn(9000));
        let status = cp.status();
        assert_eq!(status.flush, Lsn(9000));
        assert_eq!(status.write, Lsn(9000));
    }

    #[test]
    fn an_idle_position_waits_for_earlier_units_to_become_durable() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.begin();
        cp.handed(Lsn(200));
        cp.keepalive(Lsn(250));
        assert_eq!(
            cp.status().flush,
            Lsn(100),
            "the transaction is not durable yet"
        );
        cp.durable(Lsn(200));
        assert_eq!(cp.status().flush, Lsn(250));
    }

    #[test]
    fn a_keepalive_behind_queued_payloads_is_not_an_idle_position() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.queued(Lsn(150));
        cp.keepalive(Lsn(400));
        assert_eq!(
            cp.status().flush,
            Lsn(100),
            "the queued payload may start a transaction"
        );
        cp.applied();
        cp.begin();
        cp.handed(Lsn(300));
        cp.durable(Lsn(300));
        assert_eq!(
            cp.status().flush,
            Lsn(300),
            "not the keepalive seen while data was queued"
        );
    }

    #[test]
    fn the_flush_position_never_goes_back() {
        let mut cp = Checkpoint::new(Lsn(100));
        cp.keepalive(Lsn(400));
        assert_eq!(cp.status().flush, Lsn(400));
        cp.begin();
        assert_eq!(cp.status().flush, Lsn(400));
        assert_eq!(cp.confirmed(), Lsn(400));
    }

    #[test]
    fn the_start_position_is_never_reported_lower() {
        let mut cp = Checkpoint::new(Lsn(0x5000));
        assert_eq!(cp.status().flush, Lsn(0x5000));
    }
}
