//! Filters against a real PostgreSQL and nats-server: tables by glob,
//! operations, transaction events; filtered changes still move the slot, and
//! JetStream message ids do not depend on what is filtered.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::nats::{Stored, TestNats};
use support::scenario::Scenario;

const STREAM: &str = "postgres_replication";

const TABLES: &str = "CREATE TABLE orders (id int PRIMARY KEY, note text);
     CREATE TABLE order_lines (id int PRIMARY KEY);
     CREATE TABLE secrets (id int PRIMARY KEY);
     CREATE SCHEMA audit;
     CREATE TABLE audit.log (id int PRIMARY KEY)";

/// Every kind of change to every table, in four transactions, the last one
/// touching only tables the filters below drop.
const LOAD: &str = "INSERT INTO orders VALUES (1, 'a');
     BEGIN;
     INSERT INTO order_lines VALUES (1);
     INSERT INTO secrets VALUES (1);
     INSERT INTO audit.log VALUES (1);
     UPDATE orders SET note = 'b' WHERE id = 1;
     SELECT 1 FROM pg_logical_emit_message(true, 'app', 'hello');
     COMMIT;
     DELETE FROM orders WHERE id = 1;
     BEGIN;
     INSERT INTO secrets VALUES (2);
     INSERT INTO audit.log VALUES (2);
     COMMIT;";

fn summary(event: &Value) -> String {
    match event["table"].as_str() {
        Some(table) => format!(
            "{} {}.{table}",
            event["op"].as_str().unwrap(),
            event["schema"].as_str().unwrap()
        ),
        None => event["op"].as_str().unwrap().to_owned(),
    }
}

/// `summary` of a stored message, from its headers.
fn stored_summary(message: &Stored) -> String {
    match message.header("Pg-Table") {
        "" => message.header("Pg-Op").to_owned(),
        table => format!(
            "{} {}.{table}",
            message.header("Pg-Op"),
            message.header("Pg-Schema")
        ),
    }
}

/// The `summary`s of `events` without the relation events, after checking
/// that each table is described before its first change and only a table
/// that has changes is. The server may describe a table once more before any
/// change of it (after an invalidation, e.g. by a concurrent ANALYZE), so
/// other relation events are not compared.
fn changes_described_first(events: &[String]) -> Vec<String> {
    let mut described = std::collections::BTreeSet::new();
    let mut changed = std::collections::BTreeSet::new();
    let mut changes = Vec::new();
    for event in events {
        match event.split_once(' ') {
            Some(("relation", table)) => {
                described.insert(table);
                continue;
            }
            Some((_, table)) => {
                assert!(
                    described.contains(table),
                    "{table} not described first: {events:?}"
                );
                changed.insert(table);
            }
            None => {}
        }
        changes.push(event.clone());
    }
    assert_eq!(described, changed, "{events:?}");
    changes
}

/// How many of `stored` have the `Pg-Op` `op`.
fn count_op(stored: &[Stored], op: &str) -> usize {
    stored.iter().filter(|m| m.header("Pg-Op") == op).count()
}

#[test]
fn tables_ops_and_transaction_events_are_filtered_and_the_slot_still_moves() {
    let s = Scenario::new(TABLES);
    let daemon = s.start(
        None,
        &[
            "--include-tables",
            "public.order*,audit.*",
            "--exclude-tables",
            "audit.log",
            "--ops",
            "insert,update,message",
        ],
    );
    s.sql(LOAD);
    let end = s.wal_position();
    s.sql("INSERT INTO orders VALUES (9, 'marker')");
    let events = daemon.events_until(|e| e["new"]["id"] == 9);
    let got: Vec<String> = events.iter().map(summary).collect();
    assert_eq!(
        changes_described_first(&got),
        [
            "begin",
            "insert public.orders",
            "commit",
            "begin",
            "insert public.order_lines",
            "update public.orders",
            "message",
            "commit",
            // The delete and the transaction touching only dropped tables publish nothing.
            "begin",
            "insert public.orders",
        ],
        "{got:?}"
    );
    // The slot moved past the transactions that published nothing.
    s.wait_confirmed_past(&end, Duration::from_secs(10));
    drop(daemon);
}

#[test]
fn without_transaction_events_ids_stay_those_of_the_unfiltered_stream() {
    let nats = TestNats::start();
    let s = Scenario::new(TABLES);
    let reference = format!("{}_all", s.slot);
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{0}', 'pgoutput');
         SELECT 1 FROM pg_copy_logical_replication_slot('{0}', '{reference}')",
        s.slot
    ));
    s.sql(LOAD);
    s.sql("INSERT INTO orders VALUES (9, 'marker')");

    // Filtered, into the stream; then everything, into a second stream on the same server.
    let filtered = s.start(
        Some(&nats),
        &["--no-transaction-events", "--ops", "insert", "--no-stdout"],
    );
    // 7 inserts (orders, order_lines, secrets, audit.log, secrets, audit.log, orders) and
    // (at least) the relation events of the 4 tables.
    let stored = nats.wait_for_messages_until(
        async_nats::ConnectOptions::new(),
        STREAM,
        11,
        Duration::from_secs(30),
        |stored| count_op(stored, "insert") >= 7,
    );
    drop(filtered);
    let all_args = s.args(Some(&nats), &[]);
    let mut all_args: Vec<&str> = all_args.iter().map(String::as_str).collect();
    let slot_at = all_args.iter().position(|a| *a == "--slot").unwrap();
    all_args[slot_at + 1] = &reference;
    all_args.extend([
        "--nats-stream",
        "everything",
        "--nats-subject-prefix",
        "all",
        "--no-stdout",
    ]);
    let everything = support::daemon::Daemon::start(&all_args);
    // 5 transactions: 4 + 10 + 3 + 4 + 3 events, 4 of them relation events (or more).
    let all = nats.wait_for_messages_until(
        async_nats::ConnectOptions::new(),
        "everything",
        24,
        Duration::from_secs(30),
        |stored| count_op(stored, "commit") >= 5,
    );
    drop(everything);

    let ops: Vec<&str> = stored.iter().map(|m| m.header("Pg-Op")).collect();
    assert!(
        ops.iter().all(|op| *op == "insert" || *op == "relation"),
        "{ops:?}"
    );
    let summaries: Vec<String> = stored.iter().map(stored_summary).collect();
    assert_eq!(
        changes_described_first(&summaries).len(),
        7,
        "{summaries:?}"
    );
    let summaries: Vec<String> = all.iter().map(stored_summary).collect();
    assert_eq!(
        changes_described_first(&summaries).len(),
        20,
        "{summaries:?}"
    );
    // Each published event has the id it has in the unfiltered stream (but for the slot name).
    let suffix = |id: &str| id.split_once(':').unwrap().1.to_owned();
    for message in stored.iter().filter(|m| m.header("Pg-Op") == "insert") {
        let twin = all
            .iter()
            .find(|m| m.payload == message.payload)
            .unwrap_or_else(|| panic!("{} not in the unfiltered stream", message.payload));
        assert_eq!(
            suffix(message.header("Nats-Msg-Id")),
            suffix(twin.header("Nats-Msg-Id"))
        );
    }
}

#[test]
fn a_table_renamed_into_the_included_ones_is_published_from_its_next_change() {
    let s = Scenario::new(
        "CREATE TABLE other (id int PRIMARY KEY); CREATE TABLE keep_a (id int PRIMARY KEY)",
    );
    let daemon = s.start(None, &["--include-tables", "public.keep_*"]);
    s.sql("INSERT INTO other VALUES (1)");
    s.sql("INSERT INTO keep_a VALUES (1)");
    let first = daemon.transaction();
    assert!(first.iter().any(|e| e["table"] == "keep_a"), "{first:?}");
    s.sql("ALTER TABLE other RENAME TO keep_b");
    s.sql("INSERT INTO keep_b VALUES (2)");
    let renamed = daemon.transaction();
    let got: Vec<String> = renamed.iter().map(summary).collect();
    assert_eq!(
        changes_described_first(&got),
        ["begin", "insert public.keep_b", "commit"],
        "{got:?}"
    );
}

#[test]
fn a_bad_glob_is_a_usage_error() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let (code, _, stderr) = s.run_to_exit(None, &["--include-tables", "public.[t"]);
    assert_eq!(code, Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("public.[t"), "{last}");
    // Refused before anything was created.
    let slots = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
        s.slot
    );
    assert_eq!(s.sql(&slots), "0");
}

#[test]
fn an_include_pattern_that_matches_no_published_table_is_warned_about() {
    let s = Scenario::new(TABLES);
    let daemon = s.start(None, &["--include-tables", "public.Orders,audit.*"]);
    // Logged at start-up, before streaming begins.
    daemon.wait_for_log("Streaming changes.", Duration::from_secs(10));
    let log = daemon.stderr();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("matches none")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("public.Orders"), "{log}");
    assert!(warnings[0].contains("public.orders"), "{log}");
}
