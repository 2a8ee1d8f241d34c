//! Decoder tests: whole transactions, schema changes, and every way the
//! message order or the relation cache can be violated.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::pgoutput::message::*;
use crate::pgoutput::parse::{arbitrary, encode::encode};

mod recorded;

const REL: u32 = 16385;
const FINAL: Lsn = Lsn(0x1_0000_0100);

fn feed(d: &mut Decoder, lsn: u64, msg: LogicalMessage) -> Result<Vec<Change>, DecoderError> {
    let mut out = Vec::new();
    d.decode(Lsn(lsn), Bytes::from(encode(&msg)), &mut out)?;
    Ok(out)
}

fn begin(xid: u32) -> LogicalMessage {
    LogicalMessage::Begin(Begin {
        final_lsn: FINAL,
        commit_ts: 1_000,
        xid,
    })
}

fn commit(commit_lsn: Lsn) -> LogicalMessage {
    LogicalMessage::Commit(Commit {
        flags: 0,
        commit_lsn,
        end_lsn: Lsn(FINAL.0 + 0x30),
        commit_ts: 1_000,
    })
}

fn relation(columns: &[(&str, u32)]) -> LogicalMessage {
    LogicalMessage::Relation(Relation {
        relation_id: REL,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .enumerate()
            .map(|(i, &(name, type_oid))| RelationColumn {
                flags: u8::from(i == 0),
                name: name.into(),
                type_oid,
                type_modifier: -1,
            })
            .collect(),
    })
}

fn row(values: &[&'static str]) -> Tuple {
    values
        .iter()
        .map(|v| TupleValue::Text(Bytes::from_static(v.as_bytes())))
        .collect()
}

fn insert(values: &[&'static str]) -> LogicalMessage {
    LogicalMessage::Insert(Insert {
        relation_id: REL,
        new: row(values),
    })
}

/// A decoder inside transaction 7 that knows `users(id int4, name text)`.
fn ready() -> Decoder {
    let mut d = Decoder::default();
    feed(&mut d, 0x10, begin(7)).unwrap();
    feed(&mut d, 0x18, relation(&[("id", 23), ("name", 25)])).unwrap();
    d
}

#[test]
fn decodes_a_whole_transaction_in_order() {
    let mut d = Decoder::default();
    let mut events = Vec::new();
    let tx = TxInfo {
        xid: 7,
        commit_lsn: FINAL,
        commit_ts: 1_000,
    };
    let update = LogicalMessage::Update(Update {
        relation_id: REL,
        old: Some(OldTuple {
            kind: OldKind::Key,
            tuple: vec![TupleValue::Text(Bytes::from_static(b"1")), TupleValue::Null],
        }),
        new: row(&["2", "bob"]),
    });
    let delete = LogicalMessage::Delete(Delete {
        relation_id: REL,
        old: OldTuple {
            kind: OldKind::Key,
            tuple: vec![TupleValue::Text(Bytes::from_static(b"2")), TupleValue::Null],
        },
    });
    let messages = [
        begin(7),
        relation(&[("id", 23), ("name", 25)]),
        insert(&["1", "ann"]),
        update,
        delete,
        commit(FINAL),
    ];
    for (i, m) in messages.into_iter().enumerate() {
        events.extend(feed(&mut d, 0x10 + i as u64, m).unwrap());
    }
    let ops: Vec<_> = events.iter().map(Change::op).collect();
    assert_eq!(
        ops,
        ["begin", "relation", "insert", "update", "delete", "commit"]
    );
    assert_eq!(events[0], Change::Begin(tx));
    let Change::Insert(ins) = &events[2] else {
        panic!("not an insert")
    };
    assert_eq!((ins.lsn, ins.tx), (Lsn(0x12), tx));
    assert_eq!(ins.table.name, "users");
    assert_eq!(ins.new, Some(row(&["1", "ann"])));
    let Change::Update(upd) = &events[3] else {
        panic!("not an update")
    };
    assert_eq!(upd.old.as_ref().map(|o| o.kind), Some(OldKind::Key));
    let Change::Delete(del) = &events[4] else {
        panic!("not a delete")
    };
    assert!(del.new.is_none() && del.old.is_some());
    assert_eq!(
        events[5],
        Change::Commit {
            tx,
            end_lsn: Lsn(FINAL.0 + 0x30)
        }
    );
    assert!(!d.in_transaction());
}

#[test]
fn schema_change_replaces_the_cached_relation() {
    let mut d = ready();
    let before = feed(&mut d, 0x20, insert(&["1", "ann"])).unwrap();
    let events = feed(
        &mut d,
        0x28,
        relation(&[("id", 23), ("name", 25), ("age", 21)]),
    )
    .unwrap();
    let Change::Relation(table) = &events[0] else {
        panic!("not a relation")
    };
    assert_eq!(table.columns[2].type_name, "int2");
    let after = feed(&mut d, 0x30, insert(&["2", "bob", "40"])).unwrap();
    assert_eq!(after[0].table().map(|t| t.columns.len()), Some(3));
    // Rows decoded earlier keep the description they were decoded with.
    assert_eq!(before[0].table().map(|t| t.columns.len()), Some(2));
    let err = feed(&mut d, 0x38, insert(&["3", "cy"])).unwrap_err();
    assert!(matches!(
        err.cause,
        DecoderErrorCause::ColumnCount {
            expected: 3,
            got: 2
        }
    ));
}

#[test]
fn malformed_payload_error_names_lsn_and_kind() {
    let mut d = ready();
    let mut out = Vec::new();
    let err = d
        .decode(Lsn(0x16_B374_D848), Bytes::from_static(b"I\0\0"), &mut out)
        .unwrap_err();
    assert_eq!(
        (err.lsn, err.kind),
        (Lsn(0x16_B374_D848), MessageKind::Insert)
    );
    assert!(matches!(err.cause, DecoderErrorCause::Malformed(_)));
    let text = err.to_string();
    assert!(
        text.contains("Insert") && text.contains("16/B374D848"),
        "{text}"
    );
    assert!(out.is_empty());
}

#[test]
fn unknown_relation_is_an_error() {
    let mut d = Decoder::default();
    feed(&mut d, 1, begin(1)).unwrap();
    let err = feed(&mut d, 2, insert(&["1"])).unwrap_err();
    assert_eq!(err.kind, MessageKind::Insert);
    assert_eq!(err.cause, DecoderErrorCause::UnknownRelation(REL));
}

#[test]
fn column_count_mismatch_is_an_error_for_old_and_new_tuples() {
    let mut d = ready();
    let err = feed(&mut d, 0x20, insert(&["1"])).unwrap_err();
    assert_eq!(
        err.cause,
        DecoderErrorCause::ColumnCount {
            expected: 2,
            got: 1
        }
    );
    let short_old = LogicalMessage::Delete(Delete {
        relation_id: REL,
        old: OldTuple {
            kind: OldKind::Full,
            tuple: row(&["1", "ann", "extra"]),
        },
    });
    let err = feed(&mut d, 0x28, short_old).unwrap_err();
    assert_eq!(err.kind, MessageKind::Delete);
    assert!(matches!(err.cause, DecoderErrorCause::ColumnCount { .. }));
}

#[test]
fn type_message_names_a_custom_type() {
    let mut d = Decoder::default();
    let ty = LogicalMessage::Type(TypeInfo {
        type_oid: 90_001,
        namespace: "public".into(),
        name: "mood".into(),
    });
    assert!(feed(&mut d, 1, ty).unwrap().is_empty());
    feed(&mut d, 2, relation(&[("id", 23), ("feeling", 90_001)])).unwrap();
    let table = d.relations().get(REL).unwrap();
    assert_eq!(table.columns[1].type_name, "mood");
}

#[test]
fn changes_outside_a_transaction_are_errors() {
    let mut d = Decoder::default();
    feed(&mut d, 1, relation(&[("id", 23)])).unwrap();
    let err = feed(&mut d, 2, insert(&["1"])).unwrap_err();
    assert_eq!(err.cause, DecoderErrorCause::OutsideTransaction);
    let err = feed(&mut d, 3, commit(FINAL)).unwrap_err();
    assert_eq!(
        (err.kind, err.cause),
        (MessageKind::Commit, DecoderErrorCause::OutsideTransaction)
    );
}

#[test]
fn begin_inside_a_transaction_is_an_error() {
    let mut d = ready();
    let err = feed(&mut d, 0x20, begin(8)).unwrap_err();
    assert_eq!(err.cause, DecoderErrorCause::NestedBegin { open_xid: 7 });
    assert!(d.in_transaction());
}

#[test]
fn commit_for_another_lsn_is_an_error_and_keeps_the_transaction() {
    let mut d = ready();
    let err = feed(&mut d, 0x20, commit(Lsn(FINAL.0 + 1))).unwrap_err();
    assert!(matches!(
        err.cause,
        DecoderErrorCause::CommitMismatch { .. }
    ));
    assert!(d.in_transaction());
    assert_eq!(feed(&mut d, 0x20, commit(FINAL)).unwrap().len(), 1);
}

#[test]
fn truncate_emits_one_event_per_table_or_nothing() {
    let mut d = ready();
    let other = LogicalMessage::Relation(Relation {
        relation_id: REL + 1,
        namespace: String::new(),
        name: "other".into(),
        replica_identity: ReplicaIdentity::Nothing,
        columns: vec![],
    });
    feed(&mut d, 0x20, other).unwrap();
    let truncate = |ids: Vec<u32>| {
        LogicalMessage::Truncate(Truncate {
            cascade: true,
            restart_identity: false,
            relation_ids: ids,
        })
    };
    let events = feed(&mut d, 0x28, truncate(vec![REL, REL + 1])).unwrap();
    assert_eq!(events.len(), 2);
    let Change::Truncate {
        table,
        lsn,
        cascade,
        ..
    } = &events[1]
    else {
        panic!("not a truncate")
    };
    assert_eq!(
        (table.schema.as_str(), *lsn, *cascade),
        ("pg_catalog", Lsn(0x28), true)
    );
    let mut out = Vec::new();
    let payload = Bytes::from(encode(&truncate(vec![REL, 999])));
    let err = d.decode(Lsn(0x30), payload, &mut out).unwrap_err();
    assert_eq!(err.cause, DecoderErrorCause::UnknownRelation(999));
    assert!(out.is_empty());
}

#[test]
fn messages_carry_the_transaction_only_when_transactional() {
    let message = |transactional| {
        LogicalMessage::Message(Message {
            transactional,
            lsn: Lsn(0x99),
            prefix: "audit".into(),
            content: Bytes::from_static(b"hi"),
        })
    };
    let mut d = Decoder::default();
    let err = feed(&mut d, 1, message(true)).unwrap_err();
    assert_eq!(
        (err.kind, err.cause),
        (MessageKind::Message, DecoderErrorCause::OutsideTransaction)
    );
    let outside = feed(&mut d, 1, message(false)).unwrap();
    assert!(matches!(
        &outside[0],
        Change::Message {
            tx: None,
            lsn: Lsn(0x99),
            ..
        }
    ));
    feed(&mut d, 2, begin(3)).unwrap();
    let inside = feed(&mut d, 3, message(true)).unwrap();
    assert!(matches!(&inside[0], Change::Message { tx: Some(tx), .. } if tx.xid == 3));
    let untied = feed(&mut d, 4, message(false)).unwrap();
    assert!(matches!(&untied[0], Change::Message { tx: None, .. }));
}

#[test]
fn origin_emits_nothing() {
    let mut d = ready();
    let origin = LogicalMessage::Origin(Origin {
        commit_lsn: Lsn(1),
        name: "node".into(),
    });
    assert!(feed(&mut d, 0x20, origin).unwrap().is_empty());
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        arbitrary::message().prop_map(|m| encode(&m)),
    ]
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic_and_errors_change_nothing(
        payloads in proptest::collection::vec(payload(), 0..24),
    ) {
        let mut d = ready();
        for p in payloads {
            let mut out = Vec::new();
            let was_in_tx = d.in_transaction();
            if d.decode(Lsn(1), Bytes::from(p), &mut out).is_err() {
                prop_assert!(out.is_empty());
                prop_assert_eq!(d.in_transaction(), was_in_tx);
            }
        }
    }
}

fn feed_streamed(d: &mut Decoder, lsn: u64, msg: LogicalMessage, xid: u32) -> Vec<Change> {
    let mut out = Vec::new();
    let bytes = crate::pgoutput::parse::encode::encode_streamed(&msg, xid);
    d.decode(Lsn(lsn), Bytes::from(bytes), &mut out).unwrap();
    out
}

fn ids(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert(r) => match &r.new.as_ref().unwrap()[0] {
                TupleValue::Text(t) => format!("insert {}", String::from_utf8_lossy(t)),
                _ => "insert ?".into(),
            },
            other => other.op().to_owned(),
        })
        .collect()
}

/// Replays everything pending, a few events at a time.
fn drain(d: &mut Decoder, out: &mut Vec<Change>) {
    while d.replaying() {
        d.replay(2, out).unwrap();
    }
}

#[test]
fn streamed_transactions_come_out_whole_at_commit_without_aborted_parts() {
    // A small stream limit: chunks of transaction 10 go to a temporary file.
    let mut d = Decoder::new(64);
    let start = |xid| {
        LogicalMessage::StreamStart(StreamStart {
            xid,
            first_segment: false,
        })
    };
    assert!(feed(&mut d, 0x10, start(10)).unwrap().is_empty());
    assert!(feed_streamed(&mut d, 0x11, relation(&[("id", 23)]), 10).is_empty());
    assert!(feed_streamed(&mut d, 0x12, insert(&["1"]), 10).is_empty());
    assert!(feed_streamed(&mut d, 0x13, insert(&["2"]), 12).is_empty());
    assert!(feed(&mut d, 0x14, LogicalMessage::StreamStop)
        .unwrap()
        .is_empty());

    // Transaction 11 commits in between, normally: it comes first.
    let mut out = feed(&mut d, 0x20, begin(11)).unwrap();
    out.extend(feed(&mut d, 0x21, relation(&[("id", 23)])).unwrap());
    out.extend(feed(&mut d, 0x22, insert(&["100"])).unwrap());
    out.extend(feed(&mut d, 0x23, commit(FINAL)).unwrap());
    assert_eq!(ids(&out), ["begin", "relation", "insert 100", "commit"]);

    feed(&mut d, 0x30, start(10)).unwrap();
    feed_streamed(&mut d, 0x31, insert(&["3"]), 12);
    feed_streamed(&mut d, 0x32, insert(&["4"]), 10);
    feed(&mut d, 0x33, LogicalMessage::StreamStop).unwrap();
    // Subtransaction 12 rolled back: rows 2 and 3 never happened.
    let abort = LogicalMessage::StreamAbort(StreamAbort {
        xid: 10,
        subxid: 12,
    });
    assert!(feed(&mut d, 0x34, abort).unwrap().is_empty());
    // A whole streamed transaction aborted: nothing at all.
    feed(&mut d, 0x35, start(13)).unwrap();
    feed_streamed(&mut d, 0x36, insert(&["13"]), 13);
    feed(&mut d, 0x37, LogicalMessage::StreamStop).unwrap();
    let abort = LogicalMessage::StreamAbort(StreamAbort {
        xid: 13,
        subxid: 13,
    });
    assert!(feed(&mut d, 0x38, abort).unwrap().is_empty());

    let stream_commit = LogicalMessage::StreamCommit(StreamCommit {
        xid: 10,
        flags: 0,
        commit_lsn: Lsn(0x40),
        end_lsn: Lsn(0x48),
        commit_ts: 5,
    });
    let mut out = feed(&mut d, 0x40, stream_commit).unwrap();
    drain(&mut d, &mut out);
    assert_eq!(
        ids(&out),
        ["begin", "relation", "insert 1", "insert 4", "commit"]
    );
    match out.last() {
        Some(Change::Commit { tx, end_lsn }) => {
            assert_eq!(
                (tx.xid, tx.commit_lsn, *end_lsn),
                (10, Lsn(0x40), Lsn(0x48))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!d.in_transaction());
}

#[test]
fn stream_messages_out_of_order_are_errors() {
    let mut d = ready();
    let start = LogicalMessage::StreamStart(StreamStart {
        xid: 9,
        first_segment: true,
    });
    let err = feed(&mut d, 0x20, start).unwrap_err();
    assert!(
        matches!(err.cause, DecoderErrorCause::StreamOrder(_)),
        "{err}"
    );
    let mut d = Decoder::default();
    let err = feed(&mut d, 0x20, LogicalMessage::StreamStop).unwrap_err();
    assert!(
        matches!(err.cause, DecoderErrorCause::StreamOrder(_)),
        "{err}"
    );
}
