use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::change::sample::*;
use crate::lsn::Lsn;

fn line(change: &Change) -> String {
    let mut out = Vec::new();
    write_text(change, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn begin_and_commit() {
    assert_eq!(
        line(&Change::Begin(tx())),
        "BEGIN xid=734 commit_lsn=0/16B3748 commit_ts=2024-02-29T13:14:15.123456Z"
    );
    let commit = Change::Commit {
        tx: tx(),
        end_lsn: Lsn(0x16B_3778),
    };
    assert_eq!(line(&commit), "COMMIT xid=734 end_lsn=0/16B3778");
}

#[test]
fn relation_marks_key_columns_with_a_star() {
    assert_eq!(
        line(&Change::Relation(customers())),
        "RELATION public.customers id:int4* name:text note:text"
    );
}

#[test]
fn insert_quotes_text_and_shows_null() {
    let change = Change::Insert(row(
        Some(vec![text("1"), text("Ada"), TupleValue::Null]),
        None,
    ));
    assert_eq!(
        line(&change),
        "INSERT public.customers id=1 name='Ada' note=NULL"
    );
}

#[test]
fn update_shows_unchanged_toast_and_old_key() {
    let change = Change::Update(row(
        Some(vec![text("2"), text("Grace"), TupleValue::UnchangedToast]),
        Some((
            OldKind::Key,
            vec![text("1"), TupleValue::Null, TupleValue::Null],
        )),
    ));
    assert_eq!(
        line(&change),
        "UPDATE public.customers id=2 name='Grace' note=<unchanged> (old: id=1)"
    );
    let change = Change::Update(row(Some(vec![text("1"), text("G"), text("n")]), None));
    assert_eq!(
        line(&change),
        "UPDATE public.customers id=1 name='G' note='n'"
    );
}

#[test]
fn delete_shows_old_row() {
    let change = Change::Delete(row(
        None,
        Some((
            OldKind::Key,
            vec![text("1"), TupleValue::Null, TupleValue::Null],
        )),
    ));
    assert_eq!(line(&change), "DELETE public.customers (old: id=1)");
    let change = Change::Delete(row(
        None,
        Some((
            OldKind::Full,
            vec![text("1"), text("Ada"), TupleValue::Null],
        )),
    ));
    assert_eq!(
        line(&change),
        "DELETE public.customers (old: id=1 name='Ada' note=NULL)"
    );
}

#[test]
fn truncate() {
    let change = Change::Truncate {
        table: customers(),
        lsn: Lsn(1),
        tx: tx(),
        cascade: false,
        restart_identity: true,
    };
    assert_eq!(
        line(&change),
        "TRUNCATE public.customers cascade=false restart_identity=true"
    );
}

#[test]
fn message_text_and_binary_content() {
    let message = |content: &'static [u8]| Change::Message {
        prefix: "audit".into(),
        content: Bytes::from_static(content),
        transactional: true,
        lsn: Lsn(1),
        tx: None,
    };
    assert_eq!(
        line(&message(b"it's")),
        "MESSAGE prefix=audit transactional=true content='it''s'"
    );
    assert_eq!(
        line(&message(b"\x0a\xff")),
        r"MESSAGE prefix=audit transactional=true content='\x0aff'"
    );
}

#[test]
fn quotes_are_doubled_and_control_characters_escaped() {
    let change = Change::Insert(row(
        Some(vec![text("1"), text("O'Hara\nline\ttab\u{1}"), text("\r")]),
        None,
    ));
    assert_eq!(
        line(&change),
        r"INSERT public.customers id=1 name='O''Hara\nline\ttab\x01' note='\r'"
    );
}

#[test]
fn numbers_and_booleans_are_bare_unless_odd() {
    let mut table = (*customers()).clone();
    table.columns = vec![
        column("b", "bool", 16, false),
        column("f", "float8", 701, false),
        column("n", "numeric", 1700, false),
        column("i", "int4", 23, false),
        column("a", "_int4", 1007, false),
    ];
    let mut r = row(
        Some(vec![
            text("t"),
            text("-Infinity"),
            text("1.50"),
            text("1 2"),
            text("{1,2}"),
        ]),
        None,
    );
    r.table = Arc::new(table);
    assert_eq!(
        line(&Change::Insert(r)),
        "INSERT public.customers b=true f=-Infinity n=1.50 i='1 2' a='{1,2}'"
    );
}

proptest! {
    #[test]
    fn every_event_is_exactly_one_line(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 3),
        name in "\\PC{0,8}|.{0,8}",
    ) {
        let mut table = (*customers()).clone();
        table.name = name.clone();
        table.columns[1].name = name;
        let tuple: Vec<_> = values.into_iter().map(|v| TupleValue::Text(v.into())).collect();
        let mut r = row(Some(tuple.clone()), Some((OldKind::Full, tuple)));
        r.table = Arc::new(table);
        let text = line(&Change::Update(r));
        prop_assert!(!text.contains(['\n', '\r']), "{:?}", text);
    }
}
