//! Sample events for unit tests of the encodings and the output targets.

use std::sync::Arc;

use bytes::Bytes;

use super::{Column, RowChange, Table, TxInfo};
use crate::lsn::Lsn;
use crate::pgoutput::message::{OldKind, OldTuple, ReplicaIdentity, TupleValue};

/// 2024-02-29T13:14:15.123456Z in µs since 2000-01-01.
pub const TS: i64 = 762_527_655_123_456;

pub fn tx() -> TxInfo {
    TxInfo {
        xid: 734,
        commit_lsn: Lsn(0x16B_3748),
        commit_ts: TS,
    }
}

pub fn column(name: &str, type_name: &str, type_oid: u32, key: bool) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
        type_oid,
        key,
    }
}

/// `public.customers (id int4 key, name text, note text)`.
pub fn customers() -> Arc<Table> {
    Arc::new(Table {
        relation_id: 16384,
        schema: "public".into(),
        name: "customers".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", "int4", 23, true),
            column("name", "text", 25, false),
            column("note", "text", 25, false),
        ],
        key_identifies_row: false,
    })
}

pub fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// A change of a `customers` row in [`tx`].
pub fn row(new: Option<Vec<TupleValue>>, old: Option<(OldKind, Vec<TupleValue>)>) -> RowChange {
    RowChange {
        table: customers(),
        lsn: Lsn(0x16B_3700),
        tx: tx(),
        new,
        old: old.map(|(kind, tuple)| OldTuple { kind, tuple }),
    }
}
