//! Every value mapping, end to end: values written by a real server arrive
//! with the documented JSON types.

mod support;

use serde_json::{json, Value};
use support::daemon::Daemon;
use support::postgres::shared;
use support::scenario::Scenario;

/// One database and daemon per test; each call makes a table of its own.
struct Values {
    db: String,
    daemon: Daemon,
    tables: std::cell::Cell<usize>,
}

impl Values {
    fn start() -> Values {
        let pg = shared();
        let db = pg.create_database();
        pg.psql(
            &db,
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE PUBLICATION pub FOR ALL TABLES;",
        );
        let slot = format!(
            "v_{}",
            db.to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let conn = pg.conninfo(&db);
        let daemon = Daemon::start(&[
            "--connection",
            &conn,
            "--slot",
            &slot,
            "--publication",
            "pub",
            "--create-slot",
        ]);
        Values {
            db,
            daemon,
            tables: std::cell::Cell::new(0),
        }
    }

    /// Insert one row per literal into a column of `sql_type`; the decoded values.
    fn roundtrip(&self, sql_type: &str, literals: &[&str]) -> Vec<Value> {
        let n = self.tables.get() + 1;
        self.tables.set(n);
        let rows: Vec<String> = literals.iter().map(|l| format!("({l})")).collect();
        shared().psql(
            &self.db,
            &format!(
                "CREATE TABLE t{n} (id serial PRIMARY KEY, v {sql_type});
                 INSERT INTO t{n} (v) VALUES {};",
                rows.join(", ")
            ),
        );
        self.daemon
            .transaction()
            .into_iter()
            .filter(|e| e["op"] == "insert")
            .map(|e| e["new"]["v"].clone())
            .collect()
    }
}

#[test]
fn integers_and_oids_are_numbers() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip("int2", &["-32768", "32767"]),
        [json!(-32768), json!(32767)]
    );
    assert_eq!(
        v.roundtrip("int4", &["-1", "0", "2147483647"]),
        [json!(-1), json!(0), json!(2147483647)]
    );
    assert_eq!(
        v.roundtrip("int8", &["-9223372036854775808", "9223372036854775807"]),
        [json!(i64::MIN), json!(i64::MAX)]
    );
    assert_eq!(v.roundtrip("oid", &["4294967295"]), [json!(4294967295u32)]);
}

#[test]
fn floats_are_numbers_and_special_values_strings() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip(
            "float8",
            &[
                "1.5",
                "-0.25",
                "1e300",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'"
            ]
        ),
        [
            json!(1.5),
            json!(-0.25),
            json!(1e300),
            json!("NaN"),
            json!("Infinity"),
            json!("-Infinity")
        ]
    );
    assert_eq!(
        v.roundtrip("float4", &["0.1", "'NaN'"]),
        [json!(0.1), json!("NaN")]
    );
}

#[test]
fn numeric_is_an_exact_string() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip(
            "numeric",
            &["12345678901234567890.000000000000000001", "'NaN'", "-1.50"]
        ),
        [
            json!("12345678901234567890.000000000000000001"),
            json!("NaN"),
            json!("-1.50")
        ]
    );
}

#[test]
fn booleans_and_nulls() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip("bool", &["true", "false", "NULL"]),
        [json!(true), json!(false), Value::Null]
    );
}

#[test]
fn json_and_jsonb_are_embedded_on_one_line() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip("json", &["'{\n  \"a\": [1, 2],\n  \"s\": \"x  y\"\n}'"]),
        [json!({"a": [1, 2], "s": "x  y"})]
    );
    assert_eq!(
        v.roundtrip("jsonb", &["'{\"b\": {\"c\": null}, \"a\": 1}'"]),
        [json!({"a": 1, "b": {"c": null}})]
    );
}

#[test]
fn arrays_become_json_arrays() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip("int4[]", &["'{1,NULL,3}'"]),
        [json!([1, null, 3])]
    );
    assert_eq!(
        v.roundtrip("int8[]", &["'{{1,2},{3,4}}'"]),
        [json!([[1, 2], [3, 4]])]
    );
    assert_eq!(v.roundtrip("bool[]", &["'{t,f}'"]), [json!([true, false])]);
    assert_eq!(
        v.roundtrip("numeric[]", &["'{1.10,NaN}'"]),
        [json!(["1.10", "NaN"])]
    );
    assert_eq!(
        v.roundtrip(
            "text[]",
            &[r#"ARRAY['a,b', 'say "hi"', 'back\slash', 'NULL', '{braces}']"#]
        ),
        [json!([
            "a,b",
            "say \"hi\"",
            "back\\slash",
            "NULL",
            "{braces}"
        ])]
    );
    assert_eq!(
        v.roundtrip("jsonb[]", &[r#"ARRAY['{"k": [1]}'::jsonb, 'null']"#]),
        [json!([{"k": [1]}, null])]
    );
    assert_eq!(v.roundtrip("int4[]", &["'[0:1]={7,8}'"]), [json!([7, 8])]);
    assert_eq!(
        v.roundtrip("float8[]", &["'{1.5,Infinity}'"]),
        [json!([1.5, "Infinity"])]
    );
}

#[test]
fn other_types_are_their_exact_postgres_text() {
    let v = Values::start();
    assert_eq!(
        v.roundtrip("timestamptz", &["'2024-02-29 13:14:15.123456+00'"]),
        [json!("2024-02-29 13:14:15.123456+00")]
    );
    assert_eq!(
        v.roundtrip("timestamp", &["'2024-02-29 13:14:15'"]),
        [json!("2024-02-29 13:14:15")]
    );
    assert_eq!(
        v.roundtrip("date", &["'2024-02-29'"]),
        [json!("2024-02-29")]
    );
    assert_eq!(
        v.roundtrip("uuid", &["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
        [json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
    );
    assert_eq!(
        v.roundtrip("bytea", &["'\\xdeadbeef'"]),
        [json!("\\xdeadbeef")]
    );
    assert_eq!(
        v.roundtrip("interval", &["'1 day 02:03:04'"]),
        [json!("1 day 02:03:04")]
    );
    assert_eq!(
        v.roundtrip("inet", &["'192.168.0.1/24'"]),
        [json!("192.168.0.1/24")]
    );
    assert_eq!(v.roundtrip("mood", &["'happy'"]), [json!("happy")]);
    assert_eq!(
        v.roundtrip("text", &["E'line\\nbreak \"quoted\" \\\\'"]),
        [json!("line\nbreak \"quoted\" \\")]
    );
    assert_eq!(v.roundtrip("varchar(5)", &["'abc'"]), [json!("abc")]);
}

#[test]
fn values_read_and_streamed_are_exact_whatever_the_database_settings() {
    // Output settings a database (or role) may carry: floats cut to 12 digits,
    // bytea escaped, dates day-first, intervals in SQL form.
    let s = Scenario::new(
        "CREATE TABLE t (id int PRIMARY KEY, f float8, b bytea, at timestamp, span interval)",
    );
    for setting in [
        "extra_float_digits = -3",
        "bytea_output = 'escape'",
        "DateStyle = 'SQL, DMY'",
        "IntervalStyle = 'sql_standard'",
    ] {
        s.sql(&format!("ALTER DATABASE \"{}\" SET {setting}", s.db));
    }
    let row = "0.1::float8 + 0.2, '\\xdeadbeef', '2024-02-29 13:14:15', '1 day 02:03:04'";
    s.sql(&format!("INSERT INTO t VALUES (1, {row})"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let daemon = s.start(
        None,
        &["--snapshot", "initial", "--snapshot-state-file", state],
    );
    s.sql(&format!("INSERT INTO t VALUES (2, {row})"));
    let events = daemon.events_until(|e| e["op"] == "insert");
    let rows: Vec<&Value> = events
        .iter()
        .filter(|e| e["op"] == "read" || e["op"] == "insert")
        .map(|e| &e["new"])
        .collect();
    let exact = |id: i64| {
        json!({"id": id, "f": 0.30000000000000004, "b": "\\xdeadbeef",
               "at": "2024-02-29 13:14:15", "span": "1 day 02:03:04"})
    };
    assert_eq!(rows, [&exact(1), &exact(2)]);
}
