//! `--format debezium` against a real PostgreSQL and nats-server: the
//! envelope of every op, typed values as the Debezium connector writes them,
//! transaction records, and the same payload on stdout and in JetStream.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::nats::TestNats;
use support::scenario::Scenario;

const STREAM: &str = "postgres_replication";

#[test]
fn every_op_in_the_debezium_envelope_on_stdout_and_in_jetstream() {
    let nats = TestNats::start();
    let s = Scenario::new(
        "CREATE TABLE items (
             id int PRIMARY KEY, name text, price numeric(10,2), added date,
             at timestamptz, local timestamp, t time, doc jsonb, raw bytea, ok boolean);
         ALTER TABLE items REPLICA IDENTITY FULL",
    );
    let daemon = s.start(Some(&nats), &["--format", "debezium"]);
    s.sql(
        "SET TIME ZONE 'Asia/Kolkata';
         BEGIN;
         INSERT INTO items VALUES (1, 'pen', 1.50, '2024-02-29', '2024-03-01 01:00:00+05:30',
             '2024-02-29 13:14:15.5', '13:14:15', '{\"a\": [1, 2]}', '\\x0aff', true);
         UPDATE items SET price = 2.25 WHERE id = 1;
         DELETE FROM items WHERE id = 1;
         TRUNCATE items;
         SELECT 1 FROM pg_logical_emit_message(true, 'app', 'hello');
         COMMIT;",
    );
    let events = daemon.events_until(|e| e["status"] == "END");
    let stored = nats.wait_for_messages(STREAM, events.len(), Duration::from_secs(20));
    assert_eq!(stored.len(), events.len());
    for (message, event) in stored.iter().zip(&events) {
        assert_eq!(
            message.json(),
            *event,
            "JetStream payload differs from stdout"
        );
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            e["op"]
                .as_str()
                .or(e["status"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    // No relation events: Debezium has no such record.
    assert_eq!(kinds, ["BEGIN", "c", "u", "d", "t", "m", "END"]);

    let insert = &events[1];
    assert_eq!(
        insert["after"],
        json!({
            "id": 1, "name": "pen", "price": "1.50", "added": 19782,
            "at": "2024-02-29T19:30:00Z", "local": 1709212455500000_i64, "t": 47655000000_i64,
            "doc": "{\"a\": [1, 2]}", "raw": "Cv8=", "ok": true
        })
    );
    assert_eq!(insert["before"], Value::Null);
    let source = &insert["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], "postgres");
    assert_eq!(source["db"], s.db.as_str());
    assert_eq!(source["schema"], "public");
    assert_eq!(source["table"], "items");
    assert_eq!(source["snapshot"], "false");
    assert!(source["lsn"].is_u64() && source["txId"].is_u64() && source["ts_ms"].is_u64());
    let tx_id = format!("{}:", source["txId"]);
    assert!(events[0]["id"].as_str().unwrap().starts_with(&tx_id));
    assert_eq!(insert["transaction"]["id"], events[0]["id"]);

    let update = &events[2];
    assert_eq!(update["before"]["price"], "1.50");
    assert_eq!(update["after"]["price"], "2.25");
    assert_eq!(update["transaction"]["total_order"], 2);
    let delete = &events[3];
    assert_eq!(delete["before"]["id"], 1);
    assert_eq!(delete["after"], Value::Null);
    assert_eq!(events[4]["source"]["table"], "items");
    assert_eq!(
        events[5]["message"],
        json!({"prefix": "app", "content": "aGVsbG8="})
    );

    let end = &events[6];
    assert_eq!(end["event_count"], 4);
    assert_eq!(
        end["data_collections"],
        json!([{"data_collection": "public.items", "event_count": 4}])
    );
    // JetStream subjects are the usual ones.
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "postgres.transactions.begin.event",
            "postgres.public.items.insert",
            "postgres.public.items.update",
            "postgres.public.items.delete",
            "postgres.public.items.truncate",
            "postgres.messages.app",
            "postgres.transactions.commit.event",
        ]
    );
}

#[test]
fn dates_parse_whatever_the_database_date_style_through_sql_and_streaming() {
    let s = Scenario::new("CREATE TABLE d (id int PRIMARY KEY, day date, at timestamptz)");
    s.sql(&format!(
        "ALTER DATABASE \"{}\" SET datestyle = 'SQL, DMY';
         SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.db, s.slot
    ));
    // Flushed at commit (the test server commits asynchronously): catching up reads flushed WAL only.
    s.sql(
        "SET synchronous_commit = on;
         INSERT INTO d VALUES (1, '2024-02-29', '2024-02-29 13:14:15+00')",
    );
    // Caught up through SQL first, then streamed.
    let daemon = s.start(None, &["--format", "debezium", "--catch-up-threshold", "1"]);
    let first = daemon.events_until(|e| e["op"] == "c");
    s.sql("INSERT INTO d VALUES (2, '2024-02-29', '2024-02-29 13:14:15+00')");
    let second = daemon.events_until(|e| e["op"] == "c");
    for event in [first.last().unwrap(), second.last().unwrap()] {
        assert_eq!(event["after"]["day"], 19782, "{event}");
        assert_eq!(event["after"]["at"], "2024-02-29T13:14:15Z", "{event}");
    }
    let log = daemon.stderr();
    assert!(log.contains("catching up through SQL"), "{log}");
}
