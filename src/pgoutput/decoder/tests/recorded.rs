//! Payloads recorded from PostgreSQL 15.18 with
//! `pg_logical_slot_peek_binary_changes(slot, NULL, NULL, 'proto_version', '1',
//! 'publication_names', 'pub', 'messages', 'true')` for this script:
//!
//! ```sql
//! create type mood as enum ('sad','happy');
//! create table users (id int primary key, name text, feeling mood, tags text[], big text);
//! create table other (x int);
//! alter table users alter column big set storage external;
//! alter table other replica identity full;
//! create publication pub for all tables;
//! select pg_create_logical_replication_slot('s', 'pgoutput');
//! insert into users values (1, 'ann', 'happy', '{a,"b c"}', null);
//! begin;
//! insert into users values (2, 'bob', null, null, repeat('x', 2100));
//! update users set name = 'bobby' where id = 2;
//! update users set id = 3 where id = 2;
//! select pg_logical_emit_message(true, 'audit', 'tx msg');
//! delete from users where id = 1;
//! commit;
//! select pg_logical_emit_message(false, 'ping', E'\\x00ff'::bytea);
//! insert into other values (5);
//! update other set x = 6;
//! delete from other;
//! alter table users add column age smallint;
//! insert into users (id, name, age) values (10, 'cy', 4);
//! truncate users, other restart identity cascade;
//! ```
//!
//! Each entry is (LSN the SQL interface reported, payload in hex). Decoding
//! them checks the parser against the real server, not only against the
//! test encoder.

use bytes::Bytes;

use super::super::*;
use crate::pgoutput::message::{OldKind, ReplicaIdentity, TupleValue};

/// The recorded payloads, in the order the server sent them.
const RECORDED: &[(&str, &str)] = &[
    ("0/153ABF8", "42000000000153ad00000303ecfd6063d8000002ea"),
    ("0/153ABF8", "59000040167075626c6963006d6f6f6400"),
    (
        "0/153ABF8",
        "520000401b7075626c6963007573657273006400050169640000000017ffffffff006e616d650000\
         000019ffffffff006665656c696e670000004016ffffffff007461677300000003f1ffffffff0062\
         69670000000019ffffffff",
    ),
    (
        "0/153ABF8",
        "490000401b4e00057400000001317400000003616e6e7400000005686170707974000000097b612c\
         22622063227d6e",
    ),
    (
        "0/153AD30",
        "4300000000000153ad00000000000153ad30000303ecfd6063d8",
    ),
    ("0/153B6D0", "42000000000153b960000303ecfd606a40000002eb"),
    (
        "0/153B6D0",
        "490000401b4e00057400000001327400000003626f626e6e74000008347878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         78787878787878787878787878787878787878787878787878787878787878787878787878787878\
         787878787878787878",
    ),
    (
        "0/153B7A0",
        "550000401b4e00057400000001327400000005626f6262796e6e75",
    ),
    (
        "0/153B838",
        "550000401b4b00057400000001326e6e6e6e4e00057400000001337400000005626f6262796e6e75",
    ),
    (
        "0/153B920",
        "4d01000000000153b920617564697400000000067478206d7367",
    ),
    ("0/153B920", "440000401b4b00057400000001316e6e6e6e"),
    (
        "0/153B990",
        "4300000000000153b960000000000153b990000303ecfd606a40",
    ),
    ("0/153B9D0", "4d00000000000153b9d070696e67000000000200ff"),
    ("0/153B9D0", "42000000000153ba10000303ecfd606cb5000002ec"),
    (
        "0/153B9D0",
        "52000040227075626c6963006f746865720066000101780000000017ffffffff",
    ),
    ("0/153B9D0", "49000040224e0001740000000135"),
    (
        "0/153BA40",
        "4300000000000153ba10000000000153ba40000303ecfd606cb5",
    ),
    ("0/153BA40", "42000000000153ba90000303ecfd606e4d000002ed"),
    (
        "0/153BA40",
        "55000040224f00017400000001354e0001740000000136",
    ),
    (
        "0/153BAC0",
        "4300000000000153ba90000000000153bac0000303ecfd606e4d",
    ),
    ("0/153BAC0", "42000000000153bb00000303ecfd606f59000002ee"),
    ("0/153BAC0", "44000040224f0001740000000136"),
    (
        "0/153BB30",
        "4300000000000153bb00000000000153bb30000303ecfd606f59",
    ),
    ("0/153BEA0", "42000000000153bf28000303ecfd60725a000002f0"),
    ("0/153BEA0", "59000040167075626c6963006d6f6f6400"),
    (
        "0/153BEA0",
        "520000401b7075626c6963007573657273006400060169640000000017ffffffff006e616d650000\
         000019ffffffff006665656c696e670000004016ffffffff007461677300000003f1ffffffff0062\
         69670000000019ffffffff006167650000000015ffffffff",
    ),
    (
        "0/153BEA0",
        "490000401b4e000674000000023130740000000263796e6e6e740000000134",
    ),
    (
        "0/153BF58",
        "4300000000000153bf28000000000153bf58000303ecfd60725a",
    ),
    ("0/153CD40", "42000000000153cd70000303ecfd607a31000002f1"),
    ("0/153CD40", "59000040167075626c6963006d6f6f6400"),
    (
        "0/153CD40",
        "520000401b7075626c6963007573657273006400060169640000000017ffffffff006e616d650000\
         000019ffffffff006665656c696e670000004016ffffffff007461677300000003f1ffffffff0062\
         69670000000019ffffffff006167650000000015ffffffff",
    ),
    (
        "0/153CD40",
        "52000040227075626c6963006f746865720066000101780000000017ffffffff",
    ),
    ("0/153CD40", "5400000002030000401b00004022"),
    (
        "0/153CF18",
        "4300000000000153cd70000000000153cf18000303ecfd607a31",
    ),
];

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

fn decode_all() -> Vec<Change> {
    let mut decoder = Decoder::default();
    let mut events = Vec::new();
    for (lsn, hex) in RECORDED {
        let lsn: Lsn = lsn.parse().expect("fixture LSN");
        decoder
            .decode(lsn, Bytes::from(unhex(hex)), &mut events)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!decoder.in_transaction());
    events
}

fn text(v: &TupleValue) -> Option<&str> {
    match v {
        TupleValue::Text(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn values(tuple: Option<&Tuple>) -> Vec<Option<&str>> {
    tuple.map_or_else(Vec::new, |t| t.iter().map(text).collect())
}

fn row(change: &Change) -> &RowChange {
    match change {
        Change::Insert(r) | Change::Update(r) | Change::Delete(r) => r,
        other => panic!("not a row change: {other:?}"),
    }
}

#[test]
fn recorded_server_payloads_decode_in_order() {
    let events = decode_all();
    let ops: Vec<_> = events.iter().map(Change::op).collect();
    #[rustfmt::skip]
    let expected = [
        "begin", "relation", "insert", "commit",
        "begin", "insert", "update", "update", "message", "delete", "commit",
        "message",
        "begin", "relation", "insert", "commit",
        "begin", "update", "commit",
        "begin", "delete", "commit",
        "begin", "relation", "insert", "commit",
        "begin", "relation", "relation", "truncate", "truncate", "commit",
    ];
    assert_eq!(ops, expected);
}

#[test]
fn recorded_relation_names_builtin_and_enum_types() {
    let events = decode_all();
    let Change::Relation(users) = &events[1] else {
        panic!("not a relation")
    };
    assert_eq!(
        (users.schema.as_str(), users.name.as_str()),
        ("public", "users")
    );
    assert_eq!(users.replica_identity, ReplicaIdentity::Default);
    let columns: Vec<_> = users
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.key))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "int4", true),
            ("name", "text", false),
            ("feeling", "mood", false),
            ("tags", "_text", false),
            ("big", "text", false),
        ]
    );
    let Change::Relation(altered) = &events[23] else {
        panic!("not a relation")
    };
    assert_eq!(
        altered.columns.last().map(|c| c.type_name.as_str()),
        Some("int2")
    );
}

#[test]
fn recorded_rows_carry_values_toast_markers_and_old_keys() {
    let events = decode_all();
    let first = row(&events[2]);
    assert_eq!(
        values(first.new.as_ref()),
        [
            Some("1"),
            Some("ann"),
            Some("happy"),
            Some("{a,\"b c\"}"),
            None
        ]
    );
    assert_eq!(first.new.as_ref().map(|t| &t[4]), Some(&TupleValue::Null));
    let big = row(&events[5]);
    assert_eq!(values(big.new.as_ref())[4].map(str::len), Some(2100));
    // Renaming leaves the TOASTed column out of the WAL record.
    let renamed = row(&events[6]);
    assert!(renamed.old.is_none());
    assert_eq!(
        renamed.new.as_ref().map(|t| &t[4]),
        Some(&TupleValue::UnchangedToast)
    );
    // Changing the key sends the old key, other columns null.
    let rekeyed = row(&events[7]);
    let old = rekeyed.old.as_ref().expect("old key");
    assert_eq!(old.kind, OldKind::Key);
    assert_eq!(
        values(Some(&old.tuple)),
        [Some("2"), None, None, None, None]
    );
    assert_eq!(values(rekeyed.new.as_ref())[0], Some("3"));
    assert!(rekeyed.lsn > renamed.lsn);
    let deleted = row(&events[9]);
    assert_eq!(deleted.old.as_ref().map(|o| o.kind), Some(OldKind::Key));
    assert_eq!(deleted.tx, rekeyed.tx);
}

#[test]
fn recorded_full_identity_table_sends_whole_old_rows() {
    let events = decode_all();
    let update = row(&events[17]);
    let old = update.old.as_ref().expect("old row");
    assert_eq!(old.kind, OldKind::Full);
    assert_eq!(values(Some(&old.tuple)), [Some("5")]);
    assert_eq!(values(update.new.as_ref()), [Some("6")]);
    let delete = row(&events[20]);
    assert_eq!(delete.old.as_ref().map(|o| o.kind), Some(OldKind::Full));
}

#[test]
fn recorded_messages_and_truncates_decode() {
    let events = decode_all();
    let Change::Message {
        prefix,
        content,
        transactional,
        tx,
        ..
    } = &events[8]
    else {
        panic!("not a message")
    };
    assert_eq!(
        (prefix.as_str(), content.as_ref()),
        ("audit", &b"tx msg"[..])
    );
    assert!(*transactional);
    assert_eq!(tx.map(|t| t.xid), Some(row(&events[5]).tx.xid));
    let Change::Message {
        prefix,
        content,
        tx: None,
        transactional: false,
        ..
    } = &events[11]
    else {
        panic!("not a non-transactional message")
    };
    assert_eq!(
        (prefix.as_str(), content.as_ref()),
        ("ping", &[0u8, 0xff][..])
    );
    let names: Vec<_> = events[29..31]
        .iter()
        .map(|e| match e {
            Change::Truncate {
                table,
                cascade: true,
                restart_identity: true,
                ..
            } => table.name.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, ["users", "other"]);
    let Change::Commit { tx, end_lsn } = &events[31] else {
        panic!("not a commit")
    };
    assert!(*end_lsn > tx.commit_lsn);
}
