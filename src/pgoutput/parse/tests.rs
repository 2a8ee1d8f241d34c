//! Unit tests of [`super::parse`]: hand-written payloads laid out as in the
//! protocol documentation, encoder-built payloads, and malformed input.

use bytes::Bytes;

use super::encode::encode;
use super::*;
use crate::lsn::Lsn;

mod props;

fn parse_slice(bytes: &[u8]) -> Result<LogicalMessage, DecodeError> {
    parse(Bytes::copy_from_slice(bytes))
}

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn parses_begin_from_documented_layout() {
    let bytes = [
        b'B', 0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48, // final LSN 16/B374D848
        0, 0, 0, 0, 0, 0, 0x01, 0x00, // commit timestamp 256 µs
        0, 0, 0x02, 0xDE, // xid 734
    ];
    assert_eq!(
        parse_slice(&bytes),
        Ok(LogicalMessage::Begin(Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_ts: 256,
            xid: 734,
        }))
    );
}

#[test]
fn parses_commit_from_documented_layout() {
    let bytes = [
        b'C', 0, // flags
        0, 0, 0, 0, 0, 0, 0, 0x10, // commit LSN
        0, 0, 0, 0, 0, 0, 0, 0x38, // end LSN
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // timestamp -1
    ];
    assert_eq!(
        parse_slice(&bytes),
        Ok(LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x10),
            end_lsn: Lsn(0x38),
            commit_ts: -1,
        }))
    );
}

#[test]
fn parses_relation_from_documented_layout() {
    let mut bytes = vec![b'R', 0, 0, 0x40, 0x01]; // relation id 16385
    bytes.extend(b"public\0users\0f");
    bytes.extend([0, 2]); // two columns
    bytes.extend(b"\x01id\0");
    bytes.extend([0, 0, 0, 23, 0xFF, 0xFF, 0xFF, 0xFF]); // int4, typmod -1
    bytes.extend(b"\x00name\0");
    bytes.extend([0, 0, 0x04, 0x13, 0, 0, 0, 36]); // varchar(32): typmod 32 + 4
    let LogicalMessage::Relation(rel) = parse_slice(&bytes).unwrap() else {
        panic!("not a relation");
    };
    assert_eq!(rel.relation_id, 16385);
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "users")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Full);
    assert_eq!(rel.columns.len(), 2);
    assert!(rel.columns[0].is_key());
    assert_eq!(
        (rel.columns[0].type_oid, rel.columns[0].type_modifier),
        (23, -1)
    );
    assert!(!rel.columns[1].is_key());
    assert_eq!(rel.columns[1].name, "name");
    assert_eq!(
        (rel.columns[1].type_oid, rel.columns[1].type_modifier),
        (1043, 36)
    );
}

#[test]
fn parses_insert_with_null_toast_and_text_values() {
    let mut bytes = vec![b'I', 0, 0, 0x40, 0x01, b'N', 0, 3];
    bytes.extend(b"t\0\0\0\x0242");
    bytes.extend(b"n");
    bytes.extend(b"u");
    assert_eq!(
        parse_slice(&bytes),
        Ok(LogicalMessage::Insert(Insert {
            relation_id: 16385,
            new: vec![text("42"), TupleValue::Null, TupleValue::UnchangedToast],
        }))
    );
}

#[test]
fn tuple_values_share_the_input_buffer() {
    let data = Bytes::from_static(b"I\0\0\0\x01N\0\x01t\0\0\0\x05hello");
    let LogicalMessage::Insert(insert) = parse(data.clone()).unwrap() else {
        panic!("not an insert");
    };
    let TupleValue::Text(value) = &insert.new[0] else {
        panic!("not text");
    };
    assert_eq!(value.as_ref(), b"hello");
    assert_eq!(value.as_ptr(), data[data.len() - 5..].as_ptr());
}

#[test]
fn parses_update_with_and_without_old_tuple() {
    let plain = b"U\0\0\0\x07N\0\x01t\0\0\0\x01x";
    assert_eq!(
        parse_slice(plain),
        Ok(LogicalMessage::Update(Update {
            relation_id: 7,
            old: None,
            new: vec![text("x")],
        }))
    );
    let keyed = b"U\0\0\0\x07K\0\x01t\0\0\0\x01a\
                  N\0\x01t\0\0\0\x01b";
    assert_eq!(
        parse_slice(keyed),
        Ok(LogicalMessage::Update(Update {
            relation_id: 7,
            old: Some(OldTuple {
                kind: OldKind::Key,
                tuple: vec![text("a")],
            }),
            new: vec![text("b")],
        }))
    );
}

#[test]
fn update_with_old_tuple_but_no_new_tuple_is_an_error() {
    let err = parse_slice(b"U\0\0\0\x07O\0\x01nX\0\x01n").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Update, 9));
}

#[test]
fn parses_delete_with_full_old_row() {
    assert_eq!(
        parse_slice(b"D\0\0\0\x09O\0\x02nt\0\0\0\0"),
        Ok(LogicalMessage::Delete(Delete {
            relation_id: 9,
            old: OldTuple {
                kind: OldKind::Full,
                tuple: vec![TupleValue::Null, text("")],
            },
        }))
    );
}

#[test]
fn delete_without_old_tuple_marker_is_an_error() {
    let err = parse_slice(b"D\0\0\0\x09N\0\0").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Delete, 5));
}

#[test]
fn parses_truncate_options_and_ids() {
    let bytes = b"T\0\0\0\x02\x03\0\0\0\x01\0\0\0\x02";
    assert_eq!(
        parse_slice(bytes),
        Ok(LogicalMessage::Truncate(Truncate {
            cascade: true,
            restart_identity: true,
            relation_ids: vec![1, 2],
        }))
    );
    let LogicalMessage::Truncate(t) = parse_slice(b"T\0\0\0\0\x02").unwrap() else {
        panic!("not a truncate");
    };
    assert!(!t.cascade && t.restart_identity && t.relation_ids.is_empty());
}

#[test]
fn parses_logical_decoding_message() {
    let mut bytes = vec![b'M', 1, 0, 0, 0, 1, 0, 0, 0, 0x20];
    bytes.extend(b"audit\0\0\0\0\x03a\0b");
    assert_eq!(
        parse_slice(&bytes),
        Ok(LogicalMessage::Message(Message {
            transactional: true,
            lsn: Lsn(0x1_0000_0020),
            prefix: "audit".into(),
            content: Bytes::from_static(b"a\0b"),
        }))
    );
}

#[test]
fn parses_type_and_origin() {
    assert_eq!(
        parse_slice(b"Y\0\0\x40\x10public\0mood\0"),
        Ok(LogicalMessage::Type(TypeInfo {
            type_oid: 0x4010,
            namespace: "public".into(),
            name: "mood".into(),
        }))
    );
    assert_eq!(
        parse_slice(b"O\0\0\0\0\0\0\0\x05node_a\0"),
        Ok(LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(5),
            name: "node_a".into(),
        }))
    );
}

#[test]
fn empty_payload_is_an_empty_kind_error() {
    let err = parse(Bytes::new()).unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Empty, 0));
}

#[test]
fn unknown_tag_is_named_in_the_error() {
    let err = parse_slice(b"Zabc").unwrap_err();
    assert_eq!(err.kind, MessageKind::Unknown(b'Z'));
    assert!(err.to_string().contains("'Z'"), "{err}");
}

#[test]
fn truncated_field_reports_where_it_starts() {
    let err = parse_slice(b"B\0\0\0\0\0\0\0\x01\0\0").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Begin, 9));
    assert!(err.reason.contains("commit timestamp"), "{err}");
}

#[test]
fn trailing_bytes_after_a_complete_message_are_an_error() {
    let mut bytes = encode(&LogicalMessage::Truncate(Truncate {
        cascade: false,
        restart_identity: false,
        relation_ids: vec![3],
    }));
    let end = bytes.len();
    bytes.push(0);
    let err = parse_slice(&bytes).unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Truncate, end));
}

#[test]
fn invalid_utf8_in_a_name_is_an_error() {
    let err = parse_slice(b"Y\0\0\0\x01pub\xFFlic\0t\0").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Type, 5));
    assert!(err.reason.contains("UTF-8"), "{err}");
}

#[test]
fn unterminated_string_is_an_error() {
    let err = parse_slice(b"O\0\0\0\0\0\0\0\x05node").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Origin, 9));
}

#[test]
fn negative_counts_and_lengths_are_errors() {
    let negative_columns = b"I\0\0\0\x01N\xFF\xFF";
    assert_eq!(parse_slice(negative_columns).unwrap_err().offset, 6);
    let negative_value_len = b"I\0\0\0\x01N\0\x01t\xFF\xFF\xFF\xFF";
    assert_eq!(parse_slice(negative_value_len).unwrap_err().offset, 9);
    let negative_relations = b"T\x80\0\0\0\0";
    assert_eq!(parse_slice(negative_relations).unwrap_err().offset, 1);
    let mut negative_content = vec![b'M', 0, 0, 0, 0, 0, 0, 0, 0, 0, b'p', 0];
    negative_content.extend([0xFF, 0xFF, 0xFF, 0xFE]);
    assert_eq!(parse_slice(&negative_content).unwrap_err().offset, 12);
}

#[test]
fn huge_counts_fail_as_truncation_without_huge_allocation() {
    let err = parse_slice(b"T\x7F\xFF\xFF\xFF\0\0\0\0\x01").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Truncate, 10));
}

#[test]
fn unknown_replica_identity_is_an_error() {
    let err = parse_slice(b"R\0\0\0\x01s\0t\0x\0\0").unwrap_err();
    assert_eq!((err.kind, err.offset), (MessageKind::Relation, 9));
}

#[test]
fn binary_and_unknown_value_kinds_are_errors() {
    let binary = parse_slice(b"I\0\0\0\x01N\0\x01b\0\0\0\x01x").unwrap_err();
    assert_eq!(binary.offset, 8);
    assert!(binary.reason.contains("binary"), "{binary}");
    assert_eq!(parse_slice(b"I\0\0\0\x01N\0\x01?").unwrap_err().offset, 8);
}
