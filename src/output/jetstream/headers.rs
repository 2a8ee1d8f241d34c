//! Message headers, above all `Nats-Msg-Id`: stable for the same event across
//! restarts and replays, unique per event.
//!
//! Ids are `<slot>:<commit_lsn>:<n>`, n counting the transaction's events from
//! its begin (0) without relation events: the server sends a relation event
//! only before a table's first change in a session (and again after the
//! table's definition was invalidated), so after a restart the same
//! transaction may carry relation events at other places. A relation event is
//! named after the event it precedes: `<slot>:<commit_lsn>:<n>r<relation id>`
//! where n is the next event's number, so a replay that describes a table at
//! the same place gets the same id, and one that describes it at another place
//! (e.g. before its first change, as in every new session) a new one.
//! Non-transactional messages get `<slot>:<lsn>:m`.

use async_nats::HeaderMap;

use super::subject::push_token;
use crate::change::{time, Change, TxInfo};
use crate::lsn::Lsn;

/// Numbers the events of the current transaction.
#[derive(Debug)]
pub struct MessageIds {
    slot: String,
    current: Option<TxInfo>,
    next_index: u32,
}

impl MessageIds {
    pub fn new(slot: &str) -> Self {
        MessageIds {
            slot: slot.to_owned(),
            current: None,
            next_index: 0,
        }
    }

    /// The headers of `change`, which must be the next event of the stream.
    pub fn headers(&mut self, change: &Change) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let id = self.next_id(change);
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        headers.insert("Pg-Op", change.op());
        if let Some(table) = change.table() {
            headers.insert("Pg-Schema", token(&table.schema));
            headers.insert("Pg-Table", token(&table.name));
        }
        if let Some(lsn) = event_lsn(change) {
            headers.insert("Pg-Lsn", lsn.to_string());
        }
        if let Some(tx) = tx_of(change) {
            headers.insert("Pg-Commit-Lsn", tx.commit_lsn.to_string());
            headers.insert("Pg-Xid", tx.xid.to_string());
            let mut ts = Vec::with_capacity(32);
            time::write_rfc3339(tx.commit_ts, &mut ts);
            headers.insert("Pg-Commit-Ts", String::from_utf8_lossy(&ts).into_owned());
        }
        headers
    }

    fn next_id(&mut self, change: &Change) -> String {
        match change {
            Change::Relation(table) => {
                let commit_lsn = self.current.map_or(Lsn::ZERO, |tx| tx.commit_lsn);
                format!(
                    "{}:{commit_lsn}:{}r{}",
                    self.slot, self.next_index, table.relation_id
                )
            }
            Change::Message {
                transactional: false,
                lsn,
                ..
            } => format!("{}:{lsn}:m", self.slot),
            _ => {
                match change {
                    Change::Begin(tx) => {
                        self.current = Some(*tx);
                        self.next_index = 0;
                    }
                    Change::Commit { .. } => self.current = None,
                    _ => {}
                }
                let index = self.next_index;
                self.next_index += 1;
                let commit_lsn = tx_of(change).map_or(Lsn::ZERO, |tx| tx.commit_lsn);
                format!("{}:{commit_lsn}:{index}", self.slot)
            }
        }
    }
}

/// Header values must be one line: names use the subject token encoding.
fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_token(&mut out, name);
    out
}

/// The WAL position of the event itself.
pub fn event_lsn(change: &Change) -> Option<Lsn> {
    match change {
        Change::Begin(tx) => Some(tx.commit_lsn),
        Change::Commit { end_lsn, .. } => Some(*end_lsn),
        Change::Insert(row) | Change::Update(row) | Change::Delete(row) => Some(row.lsn),
        Change::Truncate { lsn, .. } | Change::Message { lsn, .. } => Some(*lsn),
        Change::Relation(_) => None,
    }
}

fn tx_of(change: &Change) -> Option<&TxInfo> {
    match change {
        Change::Begin(tx) | Change::Commit { tx, .. } | Change::Truncate { tx, .. } => Some(tx),
        Change::Insert(row) | Change::Update(row) | Change::Delete(row) => Some(&row.tx),
        Change::Message { tx, .. } => tx.as_ref(),
        Change::Relation(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::sample::{customers, row, tx};

    fn id(ids: &mut MessageIds, change: &Change) -> String {
        let headers = ids.headers(change);
        let value = headers.get(async_nats::header::NATS_MESSAGE_ID);
        value.map(|v| v.as_str().to_owned()).unwrap_or_default()
    }

    #[test]
    fn ids_number_events_within_the_transaction_without_relation_events() {
        let mut ids = MessageIds::new("shop");
        let commit = Change::Commit {
            tx: tx(),
            end_lsn: Lsn(0x16B_3778),
        };
        let sequence = [
            Change::Begin(tx()),
            Change::Relation(customers()),
            Change::Insert(row(None, None)),
            Change::Relation(customers()),
            Change::Delete(row(None, None)),
            commit,
        ];
        let got: Vec<String> = sequence.iter().map(|c| id(&mut ids, c)).collect();
        assert_eq!(
            got,
            [
                "shop:0/16B3748:0",
                "shop:0/16B3748:1r16384",
                "shop:0/16B3748:1",
                "shop:0/16B3748:2r16384",
                "shop:0/16B3748:2",
                "shop:0/16B3748:3",
            ]
        );
        // The same transaction again (a replay) gets the same ids, even without its relation events.
        let replay: Vec<String> = [&sequence[0], &sequence[2], &sequence[4], &sequence[5]]
            .into_iter()
            .map(|c| id(&mut ids, c))
            .collect();
        assert_eq!(
            replay,
            [
                "shop:0/16B3748:0",
                "shop:0/16B3748:1",
                "shop:0/16B3748:2",
                "shop:0/16B3748:3"
            ]
        );
    }

    #[test]
    fn headers_describe_the_event() {
        let mut ids = MessageIds::new("shop");
        ids.headers(&Change::Begin(tx()));
        let headers = ids.headers(&Change::Insert(row(None, None)));
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(get("Pg-Op").as_deref(), Some("insert"));
        assert_eq!(get("Pg-Schema").as_deref(), Some("public"));
        assert_eq!(get("Pg-Table").as_deref(), Some("customers"));
        assert_eq!(get("Pg-Lsn").as_deref(), Some("0/16B3700"));
        assert_eq!(get("Pg-Commit-Lsn").as_deref(), Some("0/16B3748"));
        assert_eq!(get("Pg-Xid").as_deref(), Some("734"));
        assert_eq!(
            get("Pg-Commit-Ts").as_deref(),
            Some("2024-02-29T13:14:15.123456Z")
        );
    }
}
