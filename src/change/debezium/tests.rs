use super::*;
use crate::change::sample::{customers, row, text, tx};
use crate::pgoutput::message::OldKind;

fn value(type_oid: u32, text: &str) -> String {
    let mut out = Vec::new();
    write_debezium_value(type_oid, text.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn dates_and_times_are_numbers_of_days_and_microseconds() {
    assert_eq!(value(DATE, "1970-01-01"), "0");
    assert_eq!(value(DATE, "2024-02-29"), "19782");
    assert_eq!(value(DATE, "1969-12-31"), "-1");
    // 1 BC is year 0 of the proleptic Gregorian calendar, as in java.time.
    assert_eq!(value(DATE, "0001-01-01 BC"), "-719528");
    assert_eq!(value(TIME, "13:14:15.5"), "47655500000");
    assert_eq!(value(TIME, "24:00:00"), "86400000000");
    assert_eq!(value(TIMESTAMP, "1970-01-01 00:00:01.000002"), "1000002");
    assert_eq!(value(TIMESTAMP, "2024-02-29 13:14:15"), "1709212455000000");
}

#[test]
fn timestamptz_is_normalized_to_utc_iso_8601() {
    assert_eq!(
        value(TIMESTAMPTZ, "2024-02-29 13:14:15.1234+00"),
        "\"2024-02-29T13:14:15.1234Z\""
    );
    assert_eq!(
        value(TIMESTAMPTZ, "2024-03-01 01:00:00+05:30"),
        "\"2024-02-29T19:30:00Z\""
    );
    assert_eq!(
        value(TIMESTAMPTZ, "2024-02-29 23:00:00-02"),
        "\"2024-03-01T01:00:00Z\""
    );
}

#[test]
fn other_types_follow_the_connector_settings() {
    assert_eq!(value(1700, "12.50"), "\"12.50\"");
    assert_eq!(value(MONEY, "$1.00"), "\"$1.00\"");
    assert_eq!(value(3802, "{\"a\": 1}"), "\"{\\\"a\\\": 1}\"");
    assert_eq!(value(BYTEA, "\\x0aff"), "\"Cv8=\"");
    assert_eq!(value(23, "42"), "42");
    assert_eq!(value(16, "t"), "true");
    assert_eq!(value(25, "text"), "\"text\"");
}

#[test]
fn what_does_not_parse_is_its_postgres_text() {
    for (oid, text) in [
        (DATE, "infinity"),
        (TIMESTAMP, "-infinity"),
        (TIMESTAMPTZ, "2024-02-30x"),
        (TIME, "25:00:00"),
        (BYTEA, "\\x0"),
        (DATE, "99999999999999-01-01"),
    ] {
        assert_eq!(
            value(oid, text),
            serde_json::to_string(text).unwrap(),
            "{text}"
        );
    }
}

fn encode(encoder: &mut DebeziumEncoder, change: &Change) -> serde_json::Value {
    let mut out = Vec::new();
    assert!(encoder.write(change, &mut out));
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

#[test]
fn a_transaction_is_begin_row_events_and_end_with_counts() {
    let mut encoder = DebeziumEncoder::new("shop", "shopdb");
    let begin = encode(&mut encoder, &Change::Begin(tx()));
    assert_eq!(begin["status"], "BEGIN");
    assert_eq!(begin["id"], format!("734:{}", 0x16B_3748));
    assert_eq!(begin["event_count"], serde_json::Value::Null);

    let new = vec![text("1"), text("Ann"), TupleValue::UnchangedToast];
    let insert = encode(&mut encoder, &Change::Insert(row(Some(new), None)));
    assert_eq!(insert["op"], "c");
    assert_eq!(insert["before"], serde_json::Value::Null);
    assert_eq!(
        insert["after"],
        serde_json::json!({"id": 1, "name": "Ann", "note": "__debezium_unavailable_value"})
    );
    let source = &insert["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], "shop");
    assert_eq!(source["db"], "shopdb");
    assert_eq!(source["schema"], "public");
    assert_eq!(source["table"], "customers");
    assert_eq!(source["txId"], 734);
    assert_eq!(source["lsn"], 0x16B_3700);
    assert_eq!(source["snapshot"], "false");
    assert!(source["ts_ms"].is_u64() && insert["ts_ms"].is_u64());
    assert_eq!(insert["transaction"]["total_order"], 1);
    assert_eq!(insert["transaction"]["data_collection_order"], 1);

    let old = (
        OldKind::Key,
        vec![text("1"), TupleValue::Null, TupleValue::Null],
    );
    let delete = encode(&mut encoder, &Change::Delete(row(None, Some(old))));
    assert_eq!(delete["op"], "d");
    assert_eq!(
        delete["before"],
        serde_json::json!({"id": 1, "name": null, "note": null})
    );
    assert_eq!(delete["after"], serde_json::Value::Null);
    assert_eq!(delete["transaction"]["total_order"], 2);

    let end = encode(
        &mut encoder,
        &Change::Commit {
            tx: tx(),
            end_lsn: Lsn(0x16B_3778),
        },
    );
    assert_eq!(end["status"], "END");
    assert_eq!(end["event_count"], 2);
    assert_eq!(
        end["data_collections"],
        serde_json::json!([{"data_collection": "public.customers", "event_count": 2}])
    );
    assert!(!encoder.write(&Change::Relation(customers()), &mut Vec::new()));
}

proptest::proptest! {
    #[test]
    fn any_text_of_any_date_time_type_is_valid_json(
        oid in proptest::sample::select(vec![DATE, TIME, TIMESTAMP, TIMESTAMPTZ, BYTEA, MONEY, 1700, 3802, 23]),
        text in proptest::string::string_regex("[0-9 :+.BCx\\\\a-f-]{0,40}").unwrap(),
    ) {
        let mut out = Vec::new();
        write_debezium_value(oid, text.as_bytes(), &mut out);
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
        proptest::prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn dates_round_trip_through_days(days in -3_000_000i64..3_000_000) {
        let mut text = Vec::new();
        crate::change::time::write_rfc3339(
            (days - 10_957) * MICROS_PER_DAY,
            &mut text,
        );
        let text = String::from_utf8(text).unwrap();
        // Only years 0000..=9999 print as plain ISO dates.
        if let Some(date) = text.get(..10).filter(|_| !text.starts_with(['+', '-'])) {
            let year: i64 = date[..4].parse().unwrap();
            let pg = if year == 0 {
                format!("0001{} BC", &date[4..])
            } else {
                date.to_owned()
            };
            if year >= 1 {
                proptest::prop_assert_eq!(value(DATE, &pg), days.to_string());
            }
        }
    }
}
