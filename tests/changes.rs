//! End to end: a real PostgreSQL, the real binary, every kind of event on stdout.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::Daemon;
use support::postgres::shared;
use support::scenario::Scenario;
use support::wait_until;

/// A [`Scenario`] on the shared server with a running daemon (stdout only).
struct Stream {
    s: Scenario<'static>,
    daemon: Option<Daemon>,
}

impl Stream {
    fn start(setup: &str) -> Stream {
        Stream::start_with(setup, "CREATE PUBLICATION pub FOR ALL TABLES")
    }

    fn start_with(setup: &str, publication: &str) -> Stream {
        let mut stream = Stream {
            s: Scenario::with_publication(shared(), setup, publication),
            daemon: None,
        };
        stream.restart();
        stream
    }

    fn restart(&mut self) {
        self.stop();
        self.daemon = Some(self.s.start(None, &[]));
    }

    /// Stop the daemon (kill) and wait until the server has released the slot.
    fn stop(&mut self) {
        self.daemon = None;
        self.s.wait_slot_inactive();
    }

    fn sql(&self, sql: &str) -> String {
        self.s.sql(sql)
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon running")
    }

    /// The events of the next transaction, without begin and commit.
    fn next_changes(&self) -> Vec<Value> {
        let tx = self.daemon().transaction();
        assert_eq!(
            tx.first().map(|e| e["op"].clone()),
            Some(json!("begin")),
            "{tx:?}"
        );
        tx[1..tx.len() - 1].to_vec()
    }

    /// Row changes of the next transaction (relation events dropped).
    fn next_rows(&self) -> Vec<Value> {
        self.next_changes()
            .into_iter()
            .filter(|e| e["op"] != "relation")
            .collect()
    }

    fn confirmed_flush_lsn(&self) -> String {
        self.s.confirmed_flush()
    }
}

fn lsn_value(lsn: &Value) -> u64 {
    let (hi, lo) = lsn
        .as_str()
        .expect("LSN is a string")
        .split_once('/')
        .expect("hi/lo");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

fn is_rfc3339_micros(ts: &Value) -> bool {
    let s = ts.as_str().unwrap_or("");
    // 2024-01-02T03:04:05.123456Z
    s.len() == 27
        && s.as_bytes()[10] == b'T'
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && s[20..26].bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn a_transaction_arrives_as_begin_relation_rows_commit_with_consistent_fields() {
    let s = Stream::start("CREATE TABLE items (id int PRIMARY KEY, name text)");
    s.sql(
        "BEGIN; INSERT INTO items VALUES (1, 'one'); INSERT INTO items VALUES (2, 'two'); COMMIT;",
    );
    let mut tx = s.daemon().transaction();
    // The server describes the table again when another transaction changes
    // its catalog entry mid-transaction (an ANALYZE, say, from autovacuum);
    // such a repeat is identical to the first description.
    let first_relation = tx[1].clone();
    let mut seen = false;
    tx.retain(|e| e != &first_relation || !std::mem::replace(&mut seen, true));
    let ops: Vec<&str> = tx.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["begin", "relation", "insert", "insert", "commit"]);

    let (begin, relation, commit) = (&tx[0], &tx[1], &tx[4]);
    assert_eq!(begin.as_object().unwrap().len(), 4, "{begin}");
    assert!(begin["xid"].as_u64().unwrap() > 0);
    assert!(is_rfc3339_micros(&begin["commit_ts"]), "{begin}");
    assert_eq!(commit["xid"], begin["xid"]);
    assert_eq!(commit["commit_lsn"], begin["commit_lsn"]);
    assert_eq!(commit["commit_ts"], begin["commit_ts"]);
    assert!(lsn_value(&commit["end_lsn"]) > lsn_value(&commit["commit_lsn"]));

    assert_eq!(
        relation,
        &json!({"op": "relation", "schema": "public", "table": "items",
                "relation_id": relation["relation_id"], "replica_identity": "default",
                "columns": [{"name": "id", "type": "int4", "type_oid": 23, "key": true},
                            {"name": "name", "type": "text", "type_oid": 25, "key": false}]})
    );
    let insert = &tx[2];
    assert_eq!(
        insert,
        &json!({"op": "insert", "schema": "public", "table": "items", "lsn": insert["lsn"],
                "xid": begin["xid"], "commit_lsn": begin["commit_lsn"], "commit_ts": begin["commit_ts"],
                "new": {"id": 1, "name": "one"}, "key": {"id": 1}})
    );
    assert!(lsn_value(&tx[2]["lsn"]) < lsn_value(&tx[3]["lsn"]));
    assert!(lsn_value(&tx[3]["lsn"]) < lsn_value(&commit["commit_lsn"]));
}

#[test]
fn updates_and_deletes_under_replica_identity_default_carry_the_key() {
    let s = Stream::start("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)");
    s.sql("INSERT INTO items VALUES (1, 'one', 5)");
    s.next_changes();

    s.sql("UPDATE items SET qty = 6 WHERE id = 1");
    let update = &s.next_rows()[0];
    assert_eq!(update["op"], "update");
    assert_eq!(update["new"], json!({"id": 1, "name": "one", "qty": 6}));
    assert_eq!(update["old"], Value::Null, "key unchanged: no old row");
    assert_eq!(update["key"], json!({"id": 1}));
    assert_eq!(update["unchanged_toast"], json!([]));

    s.sql("UPDATE items SET id = 10 WHERE id = 1");
    let update = &s.next_rows()[0];
    assert_eq!(
        update["old"],
        json!({"id": 1}),
        "a changed key sends the old key only"
    );
    assert_eq!(update["key"], json!({"id": 10}));

    s.sql("DELETE FROM items WHERE id = 10");
    let delete = &s.next_rows()[0];
    assert_eq!(delete["op"], "delete");
    assert_eq!(delete["old"], json!({"id": 10}));
    assert_eq!(delete["key"], json!({"id": 10}));
    assert!(delete.get("new").is_none(), "{delete}");
}

#[test]
fn replica_identity_full_sends_the_whole_old_row() {
    let s = Stream::start(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
         ALTER TABLE items REPLICA IDENTITY FULL;",
    );
    s.sql("INSERT INTO items VALUES (1, 'one', 5)");
    let changes = s.next_changes();
    assert_eq!(changes[0]["replica_identity"], "full");

    s.sql("UPDATE items SET qty = 6 WHERE id = 1");
    let update = &s.next_rows()[0];
    assert_eq!(update["old"], json!({"id": 1, "name": "one", "qty": 5}));
    assert_eq!(update["new"], json!({"id": 1, "name": "one", "qty": 6}));

    s.sql("DELETE FROM items");
    let delete = &s.next_rows()[0];
    assert_eq!(delete["old"], json!({"id": 1, "name": "one", "qty": 6}));
}

#[test]
fn unchanged_toast_columns_are_named_and_left_out_of_new() {
    let s = Stream::start("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)");
    // md5 strings barely compress, so the value is stored out of line.
    s.sql(
        "INSERT INTO docs SELECT 1, 'draft', string_agg(md5(i::text), '') FROM generate_series(1, 400) i",
    );
    let insert = &s.next_rows()[0];
    assert_eq!(insert["new"]["body"].as_str().unwrap().len(), 400 * 32);

    s.sql("UPDATE docs SET title = 'final' WHERE id = 1");
    let update = &s.next_rows()[0];
    assert_eq!(update["unchanged_toast"], json!(["body"]));
    assert_eq!(update["new"], json!({"id": 1, "title": "final"}));
}

#[test]
fn truncate_gives_one_event_per_table_with_its_options() {
    let s = Stream::start(
        "CREATE TABLE parents (id serial PRIMARY KEY);
         CREATE TABLE children (id serial PRIMARY KEY, parent int REFERENCES parents);",
    );
    s.sql("INSERT INTO parents DEFAULT VALUES; INSERT INTO children (parent) VALUES (1);");
    s.next_changes();
    s.next_changes();

    s.sql("TRUNCATE parents, children RESTART IDENTITY CASCADE");
    let truncates = s.next_rows();
    let tables: Vec<&str> = truncates
        .iter()
        .map(|e| e["table"].as_str().unwrap())
        .collect();
    assert_eq!(truncates.len(), 2, "{truncates:?}");
    assert!(
        tables.contains(&"parents") && tables.contains(&"children"),
        "{tables:?}"
    );
    for t in &truncates {
        assert_eq!(t["op"], "truncate");
        assert_eq!(t["cascade"], true);
        assert_eq!(t["restart_identity"], true);
        assert_eq!(t["schema"], "public");
    }

    s.sql("TRUNCATE children");
    let plain = &s.next_rows()[0];
    assert_eq!(
        (plain["cascade"].clone(), plain["restart_identity"].clone()),
        (json!(false), json!(false))
    );
}

#[test]
fn logical_messages_arrive_transactional_or_not() {
    let s = Stream::start("CREATE TABLE unused (id int PRIMARY KEY)");
    s.sql("SELECT pg_logical_emit_message(false, 'audit', 'outside')");
    let message = s.daemon().next_event();
    assert_eq!(
        message,
        json!({"op": "message", "prefix": "audit", "content": "outside", "transactional": false,
               "lsn": message["lsn"]})
    );

    s.sql("BEGIN; SELECT pg_logical_emit_message(true, 'audit', 'inside {\"a\": 1}'); COMMIT;");
    let tx = s.daemon().transaction();
    assert_eq!(tx.len(), 3, "{tx:?}");
    let (message, commit) = (&tx[1], &tx[2]);
    assert_eq!(message["content"], "inside {\"a\": 1}");
    assert_eq!(message["transactional"], true);
    // A transactional message names its transaction as row events do.
    for field in ["xid", "commit_lsn", "commit_ts"] {
        assert!(!message[field].is_null(), "{field} missing: {message}");
        assert_eq!(
            message[field], commit[field],
            "{field}: {message} / {commit}"
        );
    }
}

#[test]
fn a_table_name_with_a_dot_and_a_space_is_reported_as_is() {
    let s = Stream::start(
        "CREATE SCHEMA \"sales data\"; CREATE TABLE \"sales data\".\"odd.name here\" (id int PRIMARY KEY);",
    );
    s.sql("INSERT INTO \"sales data\".\"odd.name here\" VALUES (7)");
    let insert = &s.next_rows()[0];
    assert_eq!(insert["schema"], "sales data");
    assert_eq!(insert["table"], "odd.name here");
    assert_eq!(insert["new"], json!({"id": 7}));
}

#[test]
fn a_schema_change_sends_a_new_relation_before_the_next_row() {
    let s = Stream::start("CREATE TABLE items (id int PRIMARY KEY)");
    s.sql("INSERT INTO items VALUES (1)");
    s.next_changes();
    s.sql("ALTER TABLE items ADD COLUMN note text; INSERT INTO items VALUES (2, 'new column');");
    let changes = s.next_changes();
    assert_eq!(changes[0]["op"], "relation");
    assert_eq!(changes[0]["columns"][1]["name"], "note");
    assert_eq!(changes[1]["new"], json!({"id": 2, "note": "new column"}));
}

#[test]
fn sigint_confirms_what_was_written_and_a_restart_resumes_after_it() {
    let mut s = Stream::start("CREATE TABLE items (id int PRIMARY KEY)");
    s.sql("INSERT INTO items VALUES (1)");
    let first = s.daemon().transaction();
    let end_lsn = first.last().unwrap()["end_lsn"].clone();

    let (status, log) = s.daemon.take().unwrap().interrupt();
    assert_eq!(status.code(), Some(0), "{log}");
    let confirmed = Value::String(s.confirmed_flush_lsn());
    assert!(
        lsn_value(&confirmed) >= lsn_value(&end_lsn),
        "confirmed {confirmed} < {end_lsn}"
    );

    s.sql("INSERT INTO items VALUES (2)");
    s.restart();
    let rows = s.next_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["new"],
        json!({"id": 2}),
        "the first transaction is not sent again"
    );
}

#[test]
fn the_slot_position_follows_durable_transactions_while_streaming() {
    let s = Stream::start("CREATE TABLE items (id int PRIMARY KEY)");
    s.sql("INSERT INTO items VALUES (1)");
    let tx = s.daemon().transaction();
    let end = lsn_value(&tx.last().unwrap()["end_lsn"]);
    wait_until(Duration::from_secs(10), || {
        let confirmed = lsn_value(&Value::String(s.confirmed_flush_lsn()));
        match confirmed >= end {
            true => Ok(()),
            false => Err(format!("slot confirmed {confirmed:X}, not {end:X}")),
        }
    });
}

#[test]
fn a_quiet_publication_does_not_pin_wal_while_other_tables_are_busy() {
    let s = Stream::start_with(
        "CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int, pad text);",
        "CREATE PUBLICATION pub FOR TABLE quiet",
    );
    s.sql("INSERT INTO busy SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i");
    let wal_after_busy = lsn_value(&Value::String(s.sql("SELECT pg_current_wal_lsn()")));
    wait_until(Duration::from_secs(20), || {
        let confirmed = lsn_value(&Value::String(s.confirmed_flush_lsn()));
        match confirmed >= wal_after_busy {
            true => Ok(()),
            false => Err(format!(
                "confirmed {confirmed:X} stayed behind {wal_after_busy:X}: the slot pins WAL"
            )),
        }
    });
    assert!(
        s.daemon().next_line(Duration::from_millis(200)).is_none(),
        "no event for an unpublished table"
    );
}

#[test]
fn a_closed_stdout_ends_the_run_cleanly_and_what_was_not_written_comes_again() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut s = Stream::start("CREATE TABLE items (id int PRIMARY KEY)");
    s.stop(); // this test runs its own process, like `pgoutput-stream | head -n 3`
    let log_path = std::env::temp_dir().join(format!("{}.log", s.s.slot));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(support::daemon::binary())
        .args(["-c", &s.s.conninfo(), "-s", &s.s.slot, "-p", "pub"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    s.sql("INSERT INTO items VALUES (1)");
    let mut line = String::new();
    while !line.contains("\"op\":\"commit\"") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stdout ended early"
        );
    }
    drop(reader); // the reader goes away, as `head` does

    s.sql("INSERT INTO items VALUES (2)");
    let status = wait_until(Duration::from_secs(20), || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the daemon kept running".to_owned())
    });
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(status.code(), Some(0), "{log}");

    s.restart();
    let rows = s.next_rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["new"],
        json!({"id": 2}),
        "the unwritten transaction is sent again, the written one not"
    );
}
