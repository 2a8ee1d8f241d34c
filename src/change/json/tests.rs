use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::change::sample::*;
use crate::pgoutput::message::ReplicaIdentity;

fn compact(change: &Change) -> String {
    let mut out = Vec::new();
    write_json(change, &mut out);
    String::from_utf8(out).unwrap()
}

fn pretty(change: &Change) -> String {
    let mut out = Vec::new();
    write_json_pretty(change, &mut out);
    String::from_utf8(out).unwrap()
}

const ROW_HEAD: &str = r#""schema":"public","table":"customers","lsn":"0/16B3700","xid":734,"commit_lsn":"0/16B3748","commit_ts":"2024-02-29T13:14:15.123456Z""#;

#[test]
fn begin() {
    assert_eq!(
        compact(&Change::Begin(tx())),
        r#"{"op":"begin","xid":734,"commit_lsn":"0/16B3748","commit_ts":"2024-02-29T13:14:15.123456Z"}"#
    );
}

#[test]
fn commit() {
    let change = Change::Commit {
        tx: tx(),
        end_lsn: Lsn(0x16B_3778),
    };
    assert_eq!(
        compact(&change),
        r#"{"op":"commit","xid":734,"commit_lsn":"0/16B3748","end_lsn":"0/16B3778","commit_ts":"2024-02-29T13:14:15.123456Z"}"#
    );
}

#[test]
fn relation_lists_columns_with_types_and_keys() {
    assert_eq!(
        compact(&Change::Relation(customers())),
        r#"{"op":"relation","schema":"public","table":"customers","relation_id":16384,"replica_identity":"default","columns":[{"name":"id","type":"int4","type_oid":23,"key":true},{"name":"name","type":"text","type_oid":25,"key":false},{"name":"note","type":"text","type_oid":25,"key":false}]}"#
    );
}

#[test]
fn insert_has_new_row_and_key() {
    let change = Change::Insert(row(
        Some(vec![text("1"), text("Ada"), TupleValue::Null]),
        None,
    ));
    assert_eq!(
        compact(&change),
        format!(
            r#"{{"op":"insert",{ROW_HEAD},"new":{{"id":1,"name":"Ada","note":null}},"key":{{"id":1}}}}"#
        )
    );
}

#[test]
fn update_without_old_row() {
    let change = Change::Update(row(Some(vec![text("1"), text("Grace"), text("x")]), None));
    assert_eq!(
        compact(&change),
        format!(
            r#"{{"op":"update",{ROW_HEAD},"new":{{"id":1,"name":"Grace","note":"x"}},"old":null,"key":{{"id":1}},"unchanged_toast":[]}}"#
        )
    );
}

#[test]
fn update_with_changed_key_shows_only_old_key_columns() {
    let change = Change::Update(row(
        Some(vec![text("2"), text("Grace"), TupleValue::UnchangedToast]),
        Some((
            OldKind::Key,
            vec![text("1"), TupleValue::Null, TupleValue::Null],
        )),
    ));
    assert_eq!(
        compact(&change),
        format!(
            r#"{{"op":"update",{ROW_HEAD},"new":{{"id":2,"name":"Grace"}},"old":{{"id":1}},"key":{{"id":2}},"unchanged_toast":["note"]}}"#
        )
    );
}

#[test]
fn update_with_full_old_row_and_unchanged_toast_key_takes_key_from_old() {
    let change = Change::Update(row(
        Some(vec![
            TupleValue::UnchangedToast,
            text("Grace"),
            TupleValue::Null,
        ]),
        Some((
            OldKind::Full,
            vec![text("1"), text("Ada"), TupleValue::Null],
        )),
    ));
    assert_eq!(
        compact(&change),
        format!(
            r#"{{"op":"update",{ROW_HEAD},"new":{{"name":"Grace","note":null}},"old":{{"id":1,"name":"Ada","note":null}},"key":{{"id":1}},"unchanged_toast":["id"]}}"#
        )
    );
}

#[test]
fn unknown_key_value_is_left_out_of_key() {
    let change = Change::Update(row(
        Some(vec![
            TupleValue::UnchangedToast,
            text("Grace"),
            TupleValue::Null,
        ]),
        None,
    ));
    assert!(compact(&change).contains(r#""old":null,"key":{},"unchanged_toast":["id"]"#));
}

#[test]
fn delete_with_key_image() {
    let change = Change::Delete(row(
        None,
        Some((
            OldKind::Key,
            vec![text("1"), TupleValue::Null, TupleValue::Null],
        )),
    ));
    assert_eq!(
        compact(&change),
        format!(r#"{{"op":"delete",{ROW_HEAD},"old":{{"id":1}},"key":{{"id":1}}}}"#)
    );
}

#[test]
fn delete_with_full_image() {
    let change = Change::Delete(row(
        None,
        Some((
            OldKind::Full,
            vec![text("1"), text("Ada"), TupleValue::Null],
        )),
    ));
    assert_eq!(
        compact(&change),
        format!(
            r#"{{"op":"delete",{ROW_HEAD},"old":{{"id":1,"name":"Ada","note":null}},"key":{{"id":1}}}}"#
        )
    );
}

#[test]
fn table_without_key_columns_has_empty_key() {
    let mut table = (*customers()).clone();
    table.columns.iter_mut().for_each(|c| c.key = false);
    let mut r = row(Some(vec![text("1"), text("Ada"), text("n")]), None);
    r.table = Arc::new(table);
    assert!(compact(&Change::Insert(r)).ends_with(r#","key":{}}"#));
}

#[test]
fn short_or_missing_tuples_do_not_panic() {
    let change = Change::Insert(row(Some(vec![text("1")]), None));
    assert!(compact(&change).ends_with(r#""new":{"id":1},"key":{"id":1}}"#));
    let change = Change::Delete(row(None, None));
    assert!(compact(&change).ends_with(r#""old":null,"key":{}}"#));
    let change = Change::Update(row(None, None));
    assert!(compact(&change).ends_with(r#""new":null,"old":null,"key":{},"unchanged_toast":[]}"#));
}

#[test]
fn truncate() {
    let change = Change::Truncate {
        table: customers(),
        lsn: Lsn(0x16B_3700),
        tx: tx(),
        cascade: true,
        restart_identity: false,
    };
    assert_eq!(
        compact(&change),
        format!(r#"{{"op":"truncate",{ROW_HEAD},"cascade":true,"restart_identity":false}}"#)
    );
}

fn message(content: &'static [u8]) -> Change {
    Change::Message {
        prefix: "audit".into(),
        content: Bytes::from_static(content),
        transactional: true,
        lsn: Lsn(0x1_0000_00AB),
        tx: Some(tx()),
    }
}

const MESSAGE_TX: &str =
    r#""xid":734,"commit_lsn":"0/16B3748","commit_ts":"2024-02-29T13:14:15.123456Z""#;

#[test]
fn message_with_utf8_content() {
    assert_eq!(
        compact(&message(b"hi \"you\"\n")),
        format!(
            r#"{{"op":"message","prefix":"audit","content":"hi \"you\"\n","transactional":true,"lsn":"1/AB",{MESSAGE_TX}}}"#
        )
    );
}

#[test]
fn message_with_binary_content_uses_bytea_hex() {
    assert_eq!(
        compact(&message(b"\x0a\xff")),
        format!(
            r#"{{"op":"message","prefix":"audit","content":"\\x0aff","transactional":true,"lsn":"1/AB",{MESSAGE_TX}}}"#
        )
    );
}

#[test]
fn a_message_outside_a_transaction_has_no_transaction_fields() {
    let outside = Change::Message {
        prefix: "heartbeat".into(),
        content: Bytes::from_static(b"tick"),
        transactional: false,
        lsn: Lsn(0x1_0000_00AB),
        tx: None,
    };
    assert_eq!(
        compact(&outside),
        r#"{"op":"message","prefix":"heartbeat","content":"tick","transactional":false,"lsn":"1/AB"}"#
    );
}

#[test]
fn column_names_and_values_are_escaped() {
    let mut table = (*customers()).clone();
    table.columns[1].name = "we\"ird\nname".into();
    let mut r = row(Some(vec![text("1"), text("a\\b"), TupleValue::Null]), None);
    r.table = Arc::new(table);
    assert!(compact(&Change::Insert(r)).contains(r#""we\"ird\nname":"a\\b""#));
}

#[test]
fn lsn_and_integers_match_display() {
    for v in [0u64, 1, 0xF, 0x10, 0x16_B374_D848, u64::MAX] {
        let mut out = Vec::new();
        write_lsn(Lsn(v), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), Lsn(v).to_string());
        let mut out = Vec::new();
        write_uint(v, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
    }
}

#[test]
fn pretty_form_is_indented_with_keys_in_order() {
    let change = Change::Insert(row(
        Some(vec![text("1"), text("a, \"b\": {c}"), TupleValue::Null]),
        None,
    ));
    let expected = r#"{
  "op": "insert",
  "schema": "public",
  "table": "customers",
  "lsn": "0/16B3700",
  "xid": 734,
  "commit_lsn": "0/16B3748",
  "commit_ts": "2024-02-29T13:14:15.123456Z",
  "new": {
    "id": 1,
    "name": "a, \"b\": {c}",
    "note": null
  },
  "key": {
    "id": 1
  }
}"#;
    assert_eq!(pretty(&change), expected);
}

#[test]
fn pretty_form_keeps_empty_containers_inline_and_same_content() {
    let change = Change::Update(row(Some(vec![]), None));
    let p = pretty(&change);
    assert!(p.contains("\"new\": {},"), "{p}");
    assert!(p.contains("\"unchanged_toast\": []\n}"), "{p}");
    let reference: serde_json::Value = serde_json::from_str(&compact(&change)).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&p).unwrap(),
        reference
    );
}

fn arb_value() -> impl Strategy<Value = TupleValue> {
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| TupleValue::Text(b.into())),
    ]
}

proptest! {
    #[test]
    fn every_row_event_is_valid_single_line_json(
        oids in proptest::collection::vec(prop_oneof![Just(23u32), Just(25), Just(3802), Just(1007), any::<u32>()], 0..5),
        keys in proptest::collection::vec(any::<bool>(), 5),
        new in proptest::collection::vec(arb_value(), 0..6),
        old in proptest::collection::vec(arb_value(), 0..6),
        name in ".{0,8}",
        content in proptest::collection::vec(any::<u8>(), 0..16),
        op in 0..4u8,
    ) {
        let table = Arc::new(Table {
            relation_id: 1,
            schema: name.clone(),
            name: name.clone(),
            replica_identity: ReplicaIdentity::Full,
            columns: oids.iter().zip(&keys).map(|(&oid, &key)| column(&name, &name, oid, key)).collect(),
            key_identifies_row: false,
        });
        let mut r = row(Some(new), Some((OldKind::Full, old)));
        r.table = table.clone();
        let change = match op {
            0 => Change::Insert(r),
            1 => Change::Update(r),
            2 => Change::Delete(r),
            _ => Change::Message { prefix: name, content: content.into(), transactional: false, lsn: Lsn(1), tx: None },
        };
        for text in [compact(&change), pretty(&change)] {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                // JSON allows numbers beyond f64; serde_json's Value does not.
                prop_assert!(e.to_string().contains("number out of range"), "{}: {}", text, e);
            }
        }
        prop_assert!(!compact(&change).contains('\n'));
        prop_assert!(!compact(&Change::Relation(table)).contains('\n'));
    }
}

/// Run with `cargo test --release --lib five_column_insert_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn five_column_insert_throughput() {
    let table = Arc::new(Table {
        relation_id: 16384,
        schema: "public".into(),
        name: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", "int8", 20, true),
            column("customer", "text", 25, false),
            column("amount", "numeric", 1700, false),
            column("paid", "bool", 16, false),
            column("created_at", "timestamptz", 1184, false),
        ],
        key_identifies_row: false,
    });
    let mut r = row(
        Some(vec![
            text("1234567"),
            text("Ada Lovelace"),
            text("199.90"),
            text("t"),
            text("2024-02-29 13:14:15.123456+00"),
        ]),
        None,
    );
    r.table = table;
    let change = Change::Insert(r);
    let n = 2_000_000;
    let mut out = Vec::with_capacity(1 << 20);
    let start = std::time::Instant::now();
    for _ in 0..n {
        out.clear();
        write_json(&change, &mut out);
        std::hint::black_box(&out);
    }
    let per_sec = f64::from(n) / start.elapsed().as_secs_f64();
    eprintln!("{} bytes/event, {per_sec:.0} events/s", out.len());
}
