//! Catching up through SQL when the slot is far behind: the events are the
//! ones streaming would deliver, byte for byte and in the same order; the slot
//! moves only past what the outputs took; kill -9 in the middle of it loses
//! and duplicates nothing. Real PostgreSQL and nats-server.

mod support;

use std::time::Duration;

use support::daemon::signal;
use support::nats::TestNats;
use support::scenario::Scenario;
use support::wait_until;

const STREAM: &str = "postgres_replication";

/// Stdout lines up to and including the one for which `last` is true.
fn lines_until(daemon: &support::daemon::Daemon, last: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = daemon
            .next_line(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no event arrived; daemon log:\n{}", daemon.stderr()));
        let done = last(&line);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

#[test]
fn a_backlog_read_through_sql_is_what_streaming_delivers() {
    let s = Scenario::new(
        "CREATE TABLE items (id int PRIMARY KEY, note text, price numeric);
         CREATE TABLE other (k text PRIMARY KEY)",
    );
    let reference = format!("{}_ref", s.slot);
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{0}', 'pgoutput');
         SELECT 1 FROM pg_copy_logical_replication_slot('{0}', '{reference}')",
        s.slot
    ));
    // A backlog of every kind of event, written while no daemon runs: more
    // than one chunk, so both reading sessions take turns.
    for tx in 0..60 {
        let from = tx * 1000 + 1;
        s.sql(&format!(
            "INSERT INTO items SELECT g, 'note ' || g, g / 3.0 FROM generate_series({from}, {}) g",
            from + 999
        ));
    }
    s.sql(
        "BEGIN;
         UPDATE items SET note = 'changed' WHERE id % 100 = 0;
         DELETE FROM items WHERE id % 100 = 1;
         INSERT INTO other VALUES ('a');
         SELECT 1 FROM pg_logical_emit_message(true, 'app', 'in a transaction');
         COMMIT;
         SELECT 1 FROM pg_logical_emit_message(false, 'app', 'on its own');
         TRUNCATE other;
         INSERT INTO other VALUES ('last')",
    );
    let end = s.wal_position();
    let last = |line: &str| line.contains("\"op\":\"insert\"") && line.contains("\"last\"");

    // Any backlog at all is read through SQL.
    let daemon = s.spawn(
        None,
        &[
            "--catch-up-threshold",
            "1",
            "--log-level",
            "info,pgoutput_stream::pipeline::catchup=debug",
        ],
    );
    let caught_up = lines_until(&daemon, last);
    daemon.wait_for_log("catching up through SQL", Duration::from_secs(10));
    daemon.wait_for_log("Caught up; streaming", Duration::from_secs(30));
    // The temporary copies of the slot went with their sessions.
    wait_for_no_copies(&s);
    let chunks = daemon.stderr().matches("Read one chunk.").count();
    assert!(chunks >= 2, "{chunks} chunk(s): {}", daemon.stderr());
    // Streaming takes over where catching up stopped.
    s.sql("INSERT INTO other VALUES ('streamed')");
    let streamed = lines_until(&daemon, |line| line.contains("\"streamed\""));
    assert!(streamed.iter().any(|l| l.contains("\"op\":\"begin\"")));
    let (status, log) = daemon.interrupt();
    assert!(status.success(), "{log}");
    s.wait_confirmed_past(&end, Duration::from_secs(10));

    let streaming_args = ["--slot", reference.as_str(), "--catch-up-threshold", "off"];
    let args = s.args(None, &[]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let slot_at = args.iter().position(|a| *a == "--slot").unwrap();
    args.drain(slot_at..slot_at + 2);
    args.extend(streaming_args);
    let daemon = support::daemon::Daemon::start(&args);
    let reference_lines = lines_until(&daemon, last);
    assert!(
        !daemon.stderr().contains("catching up"),
        "{}",
        daemon.stderr()
    );
    drop(daemon);

    // The server describes a table again whenever its cache entry was
    // invalidated (an autovacuum ANALYZE, a new decoding session), at moments
    // that differ between two runs; such repeats are identical and dropped
    // before comparing. Everything else must match byte for byte.
    let (got, want) = (
        without_repeated_relations(&caught_up),
        without_repeated_relations(&reference_lines),
    );
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got, want);
    }
    assert_eq!(
        caught_up
            .iter()
            .filter(|l| l.contains("\"op\":\"insert\""))
            .count(),
        60_002
    );
}

/// `lines` without relation events identical to the table's previous one.
fn without_repeated_relations(lines: &[String]) -> Vec<&str> {
    let mut last: std::collections::HashMap<String, &str> = Default::default();
    let mut kept = Vec::with_capacity(lines.len());
    for line in lines {
        if line.contains("\"op\":\"relation\"") {
            let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let id = event["relation_id"].to_string();
            if last.get(&id) == Some(&line.as_str()) {
                continue;
            }
            last.insert(id, line);
        }
        kept.push(line.as_str());
    }
    kept
}

/// Wait until no temporary copy of a slot (made to read ahead) is left in the scenario's database.
fn wait_for_no_copies(s: &Scenario) {
    wait_until(Duration::from_secs(10), || {
        let copies = s.sql(
            "SELECT count(*) FROM pg_replication_slots \
             WHERE slot_name LIKE 'pgoutput\\_stream\\_ahead\\_%' AND database = current_database()",
        );
        match copies.trim() {
            "0" => Ok(()),
            left => Err(format!("{left} temporary copies of the slot are left")),
        }
    })
}

#[test]
fn without_free_slots_for_the_copies_it_streams_and_says_how_to_fix_it() {
    // The slot itself and one copy fit; the second copy does not.
    let pg = support::postgres::TestPostgres::start_with(support::postgres::PgOptions {
        conf: vec!["max_replication_slots = 2".into()],
        ..Default::default()
    });
    let s = Scenario::on(&pg, "CREATE TABLE t (id int PRIMARY KEY)");
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    s.sql("SET synchronous_commit = on; INSERT INTO t SELECT generate_series(1, 3000)");
    let daemon = s.spawn(None, &["--catch-up-threshold", "1"]);
    let lines = lines_until(&daemon, |line| line.contains("\"op\":\"commit\""));
    daemon.wait_for_log("raise max_replication_slots", Duration::from_secs(10));
    let inserts = lines
        .iter()
        .filter(|l| l.contains("\"op\":\"insert\""))
        .count();
    assert_eq!(inserts, 3000, "{}", daemon.stderr());
    wait_for_no_copies(&s);
    // Streaming goes on.
    s.sql("INSERT INTO t VALUES (0)");
    let next = lines_until(&daemon, |line| line.contains("\"op\":\"insert\""));
    assert!(next.last().unwrap().contains("\"id\":0"), "{next:?}");
}

/// A slot, then `transactions` transactions of 1,000 rows into `t` behind it;
/// the WAL position after them.
fn backlog(transactions: i64) -> (Scenario<'static>, String) {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY, note text)");
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    for tx in 0..transactions {
        let from = tx * 1000 + 1;
        s.sql(&format!(
            "INSERT INTO t SELECT g, repeat('x', 50) FROM generate_series({from}, {}) g",
            from + 999
        ));
    }
    let end = s.wal_position();
    (s, end)
}

#[test]
fn kill_9_while_catching_up_loses_and_duplicates_nothing() {
    let nats = TestNats::start();
    // 250,000 rows: several chunks.
    let (s, end) = backlog(250);
    // Copies re-published minutes after the first store must still be dropped
    // on a slow machine: a dedup window longer than the test may take.
    let args = [
        "--no-stdout",
        "--catch-up-threshold",
        "1",
        "--nats-duplicate-window",
        "1h",
    ];
    let daemon = s.spawn(Some(&nats), &args);
    daemon.wait_for_log("catching up through SQL", Duration::from_secs(20));
    // Kill it once part of the backlog is stored, and once more after a chunk was confirmed.
    nats.wait_for_count(STREAM, 30_000, Duration::from_secs(120));
    signal(daemon.pid(), "KILL");
    drop(daemon);
    s.wait_slot_inactive();
    let daemon = s.spawn(Some(&nats), &args);
    daemon.wait_for_log("catching up through SQL", Duration::from_secs(20));
    nats.wait_for_count(STREAM, 130_000, Duration::from_secs(120));
    signal(daemon.pid(), "KILL");
    drop(daemon);
    s.wait_slot_inactive();
    let daemon = s.spawn(Some(&nats), &args);
    s.wait_confirmed_past(&end, Duration::from_secs(180));
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.t.insert"),
        250_000
    );
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.transactions.commit.event"),
        250
    );
    drop(daemon);
}

#[test]
fn a_standby_waits_while_the_first_instance_catches_up_then_takes_over() {
    let nats = TestNats::start();
    let (s, end) = backlog(150);
    // Between chunks the slot itself is free for a moment; the instance's lock is not.
    let args = ["--no-stdout", "--catch-up-threshold", "1", "--standby"];
    let first = s.spawn(Some(&nats), &args);
    first.wait_for_log("catching up through SQL", Duration::from_secs(20));
    let second = s.spawn(Some(&nats), &args);
    second.wait_for_log("standing by", Duration::from_secs(20));
    s.wait_confirmed_past(&end, Duration::from_secs(180));
    let log = second.stderr();
    assert!(
        !log.contains("taking over"),
        "took over a running instance:\n{log}"
    );
    signal(first.pid(), "KILL");
    drop(first);
    second.wait_for_log("taking over", Duration::from_secs(30));
    s.sql("INSERT INTO t VALUES (0, 'after')");
    wait_until(Duration::from_secs(30), || {
        match nats.message_count_on(STREAM, "postgres.public.t.insert") {
            150_001.. => Ok(()),
            n => Err(format!(
                "{n} inserts: the one after the take-over did not arrive"
            )),
        }
    });
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.t.insert"),
        150_001
    );
}
