//! `--snapshot initial` against a real PostgreSQL and nats-server: every
//! existing row as a `read` event, then the stream from the slot's consistent
//! point without gap or duplicate, even with writes during the snapshot; an
//! interrupted snapshot resumes with the tables not finished.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::daemon::signal;
use support::nats::{Stored, TestNats};
use support::postgres::shared;
use support::scenario::Scenario;
use support::wait_until;

const STREAM: &str = "postgres_replication";

/// How often each id of `table` appears in `messages`, by op.
fn ids_by_op(messages: &[Stored], table: &str) -> BTreeMap<(String, i64), usize> {
    let mut ids = BTreeMap::new();
    for m in messages {
        if m.header("Pg-Table") != table {
            continue;
        }
        let op = m.header("Pg-Op").to_owned();
        if op == "read" || op == "insert" {
            let id = m.json()["new"]["id"].as_i64().expect("id");
            *ids.entry((op, id)).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn existing_rows_then_changes_each_exactly_once_with_writes_during_the_snapshot() {
    let nats = TestNats::start();
    let s = Scenario::new(
        "CREATE TABLE t (id int PRIMARY KEY, note text, amount numeric(10,2), doc jsonb, day date);
         INSERT INTO t SELECT g, 'row ' || g, g / 4.0, jsonb_build_object('n', g), date '2024-01-01' + g % 300
           FROM generate_series(1, 20000) g;
         CREATE TABLE small (k text PRIMARY KEY);
         INSERT INTO small VALUES ('a'), ('b')",
    );
    let daemon = s.spawn(Some(&nats), &["--snapshot", "initial"]);
    // Writes while the slot is created and the snapshot is read.
    let conn = s.conninfo();
    let writer = std::thread::spawn(move || {
        let db = conn.rsplit("dbname=").next().unwrap_or_default().to_owned();
        for id in 20_001..=20_300 {
            shared().psql(
                &db,
                &format!("INSERT INTO t VALUES ({id}, 'row {id}', {id} / 4.0, jsonb_build_object('n', {id}), date '2024-01-01' + {id} % 300)"),
            );
        }
    });
    writer.join().unwrap();
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(120));
    s.sql("INSERT INTO small VALUES ('marker')");
    // Counted on its subject while waiting (cheap); the whole stream is read once.
    wait_until(Duration::from_secs(60), || {
        match nats.message_count_on(STREAM, "postgres.public.small.insert") {
            0 => Err("the marker did not arrive".to_owned()),
            _ => Ok(()),
        }
    });
    let stored = nats.messages(STREAM);
    assert!(stored.iter().any(|m| m.payload.contains("\"marker\"")));
    let ids = ids_by_op(&stored, "t");
    // Every row exactly once: as read if it was there at the consistent point, else as insert.
    for id in 1..=20_300 {
        let read = ids.get(&("read".to_owned(), id)).copied().unwrap_or(0);
        let insert = ids.get(&("insert".to_owned(), id)).copied().unwrap_or(0);
        assert_eq!(read + insert, 1, "id {id}: {read} reads, {insert} inserts");
    }
    assert!((1..=20_000).all(|id| ids.contains_key(&("read".to_owned(), id))));
    let small: Vec<String> = stored
        .iter()
        .filter(|m| m.subject == "postgres.public.small.read")
        .map(|m| m.json()["new"]["k"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(small, ["a", "b"]);

    // A read row is typed as a streamed one: same values, same JSON.
    let read = stored
        .iter()
        .find(|m| m.header("Pg-Op") == "read" && m.json()["new"]["id"] == 20_000)
        .unwrap()
        .json();
    assert_eq!(read["op"], "read");
    assert_eq!(read["schema"], "public");
    assert_eq!(read["key"], serde_json::json!({"id": 20000}));
    let insert = stored
        .iter()
        .find(|m| m.header("Pg-Op") == "insert" && m.json()["new"]["id"] == 20_300)
        .map(Stored::json);
    // The last row written during the snapshot may have been read or streamed.
    let row_20300 = insert.unwrap_or_else(|| {
        let read = stored.iter().find(|m| m.json()["new"]["id"] == 20_300);
        read.unwrap().json()
    });
    for row in [&read["new"], &row_20300["new"]] {
        assert!(row["id"].is_i64(), "{row}");
        assert!(row["amount"].is_string(), "{row}");
        assert!(row["doc"].is_object(), "{row}");
        assert!(row["day"].is_string(), "{row}");
    }
    assert_eq!(
        read["new"],
        serde_json::json!({"id": 20000, "note": "row 20000", "amount": "5000.00",
                           "doc": {"n": 20000}, "day": "2024-07-19"})
    );
    let log = daemon.stderr();
    assert!(
        log.contains("Snapshot of table done.") && log.contains("public.t"),
        "{log}"
    );
}

/// Kill -9 a snapshot of `s` once 20,000 messages are stored, `table` (300,000
/// rows, `id` 1 to 300,000, read in that order) being read; delete ids up to
/// 10,000 (read before the kill: the new read's rows come at other places);
/// start again and wait for the snapshot to finish. The daemon, and how many
/// of `table`'s rows were published before the kill.
fn resume_after_deleting_rows_read(
    s: &Scenario,
    nats: &TestNats,
    table: &str,
) -> (support::daemon::Daemon, u64) {
    let args = ["--snapshot", "initial", "--no-stdout"];
    let daemon = s.spawn(Some(nats), &args);
    daemon.wait_for_log(
        &format!("Snapshot of table started. table=\"public.{table}\""),
        Duration::from_secs(60),
    );
    nats.wait_for_count(STREAM, 20_000, Duration::from_secs(60));
    signal(daemon.pid(), "KILL");
    drop(daemon);
    s.wait_slot_inactive();
    s.sql(&format!("DELETE FROM {table} WHERE id <= 10000"));
    let subject = format!("postgres.public.{table}.read");
    let read_before = nats.message_count_on(STREAM, &subject);
    assert!(
        read_before > 10_000 && read_before < 300_000,
        "{read_before}"
    );
    let daemon = s.spawn(Some(nats), &args);
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(180));
    (daemon, read_before)
}

#[test]
fn an_interrupted_snapshot_resumes_with_the_tables_not_finished() {
    let nats = TestNats::start();
    let s = Scenario::new(
        "CREATE TABLE a (id int PRIMARY KEY);
         INSERT INTO a SELECT generate_series(1, 1000);
         CREATE TABLE b (id int PRIMARY KEY, note text);
         INSERT INTO b SELECT g, repeat('x', 40) FROM generate_series(1, 300000) g",
    );
    let (daemon, _) = resume_after_deleting_rows_read(&s, &nats, "b");
    let log = daemon.stderr();
    assert!(log.contains("Resuming the initial snapshot"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("Snapshot of table") && l.contains("public.a")),
        "table a was read again:\n{log}"
    );
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.a.read"),
        1000
    );
    // Rows are named by their key: every row once, those read twice dropped by the stream.
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.b.read"),
        300_000
    );
    // Then changes stream, from the consistent point: the deletes, then a new row.
    s.sql("INSERT INTO a VALUES (1001)");
    wait_until(Duration::from_secs(60), || {
        let deletes = nats.message_count_on(STREAM, "postgres.public.b.delete");
        let inserts = nats.message_count_on(STREAM, "postgres.public.a.insert");
        match (deletes, inserts) {
            (10_000, 1) => Ok(()),
            other => Err(format!("(deletes, inserts) = {other:?}")),
        }
    });
}

#[test]
fn a_resumed_snapshot_of_a_table_without_key_publishes_it_again_whole() {
    let nats = TestNats::start();
    let s = Scenario::new(
        "CREATE TABLE c (id int, note text);
         ALTER TABLE c REPLICA IDENTITY FULL;
         INSERT INTO c SELECT g, repeat('x', 40) FROM generate_series(1, 300000) g",
    );
    let (_daemon, read_before) = resume_after_deleting_rows_read(&s, &nats, "c");
    // Without a key a row is its place in one read: the new read is published
    // whole next to the old part (duplicates), none of it taken for an old row.
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.c.read"),
        read_before + 290_000
    );
}

/// The daemon with `--snapshot initial` and its state in a file of a temporary directory.
fn start_with_state_file(
    s: &Scenario,
    extra: &[&str],
) -> (
    support::daemon::Daemon,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().unwrap().to_owned();
    let mut args = vec!["--snapshot", "initial", "--snapshot-state-file", &state_arg];
    args.extend_from_slice(extra);
    let daemon = s.start(None, &args);
    (daemon, dir, state)
}

#[test]
fn without_jetstream_the_snapshot_needs_a_state_file() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let (code, _, stderr) = s.run_to_exit(None, &["--snapshot", "initial"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--snapshot-state-file"), "{stderr}");

    s.sql("INSERT INTO t VALUES (1), (2)");
    let (daemon, _dir, state) = start_with_state_file(&s, &[]);
    let reads = daemon.events_until(|e| e["op"] == "read" && e["new"]["id"] == 2);
    assert_eq!(reads.iter().filter(|e| e["op"] == "read").count(), 2);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["done"], serde_json::json!(["public.t"]));
}

#[test]
fn column_lists_and_row_filters_apply_to_the_snapshot_as_to_the_stream() {
    let probe = Scenario::new("SELECT 1");
    if probe.sql("SELECT current_setting('server_version_num')::int < 150000") == "t" {
        eprintln!("column lists and row filters need PostgreSQL 15");
        return;
    }
    let s = Scenario::with_publication(
        shared(),
        "CREATE TABLE t (id int PRIMARY KEY, note text, secret text);
         INSERT INTO t SELECT g, 'n' || g, 's' || g FROM generate_series(1, 20) g",
        "CREATE PUBLICATION pub FOR TABLE t (id, note) WHERE (id > 10)",
    );
    let (daemon, _dir, _state) = start_with_state_file(&s, &[]);
    let reads = daemon.events_until(|e| e["op"] == "read" && e["new"]["id"] == 20);
    let rows: Vec<&serde_json::Value> = reads.iter().filter(|e| e["op"] == "read").collect();
    assert_eq!(rows.len(), 10, "only rows the filter passes");
    assert_eq!(rows[0]["new"], serde_json::json!({"id": 11, "note": "n11"}));
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(30));
    s.sql("INSERT INTO t VALUES (30, 'n30', 's30'), (-5, 'n-5', 's-5')");
    let tx = daemon.transaction();
    let inserts: Vec<&serde_json::Value> = tx.iter().filter(|e| e["op"] == "insert").collect();
    assert_eq!(inserts.len(), 1);
    assert_eq!(
        inserts[0]["new"],
        serde_json::json!({"id": 30, "note": "n30"})
    );
}

#[test]
fn tables_the_filters_drop_are_not_read() {
    let s = Scenario::new(
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);
         CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b VALUES (1)",
    );
    let (daemon, _dir, _state) = start_with_state_file(&s, &["--exclude-tables", "public.b"]);
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(30));
    s.sql("INSERT INTO a VALUES (2)");
    let events = daemon.events_until(|e| e["op"] == "insert");
    let tables: Vec<&str> = events
        .iter()
        .filter(|e| e["op"] == "read")
        .map(|e| e["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["a"]);
    assert!(
        !daemon
            .stderr()
            .lines()
            .any(|l| l.contains("Snapshot of table") && l.contains("public.b")),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn an_existing_slot_without_a_recorded_snapshot_only_streams() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    let (daemon, _dir, state) = start_with_state_file(&s, &[]);
    s.sql("INSERT INTO t VALUES (2)");
    let events = daemon.events_until(|e| e["op"] == "insert");
    assert!(events.iter().all(|e| e["op"] != "read"), "{events:?}");
    assert_eq!(events.last().unwrap()["new"]["id"], 2);
    assert!(daemon.stderr().contains("no snapshot of it is recorded"));
    assert!(!state.exists());
}

#[test]
fn a_slot_created_before_its_snapshot_began_gets_the_snapshot_on_the_next_start() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)");
    // What a start that died right after creating the slot leaves: the slot,
    // and the state it saved before creating it (no consistent point yet).
    let created_at = s.sql(&format!(
        "SELECT lsn FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let provisional = serde_json::json!({
        "slot": s.slot, "consistent_point": null, "done": [], "finished": false
    });
    std::fs::write(&state, provisional.to_string()).unwrap();
    let state_arg = state.to_str().unwrap();
    let daemon = s.start(
        None,
        &["--snapshot", "initial", "--snapshot-state-file", state_arg],
    );
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(30));
    s.sql("INSERT INTO t VALUES (3)");
    let events = daemon.events_until(|e| e["op"] == "insert");
    let ids = |op: &str| -> Vec<i64> {
        let rows = events.iter().filter(|e| e["op"] == op);
        rows.map(|e| e["new"]["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(ids("read"), [1, 2]);
    assert_eq!(ids("insert"), [3]);
    assert!(daemon
        .stderr()
        .contains("Taking the initial snapshot of a slot"));
    // The slot's position when it was created is the snapshot's consistent point.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["consistent_point"], created_at.as_str(), "{saved}");
    assert_eq!(saved["finished"], true);
}

#[test]
fn a_partitioned_table_published_through_its_root_is_read_through_it() {
    let s = Scenario::with_publication(
        shared(),
        "CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE m_low PARTITION OF m FOR VALUES FROM (0) TO (100);
         CREATE TABLE m_high PARTITION OF m FOR VALUES FROM (100) TO (200);
         INSERT INTO m SELECT g, 'v' || g FROM generate_series(1, 150) g",
        "CREATE PUBLICATION pub FOR TABLE m WITH (publish_via_partition_root = true)",
    );
    let (daemon, _dir, _state) = start_with_state_file(&s, &[]);
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(30));
    s.sql("INSERT INTO m VALUES (160, 'v160')");
    let events = daemon.events_until(|e| e["op"] == "insert");
    let reads: Vec<&serde_json::Value> = events.iter().filter(|e| e["op"] == "read").collect();
    assert_eq!(reads.len(), 150, "every partition's rows, once");
    assert!(reads.iter().all(|e| e["table"] == "m"), "{:?}", reads[0]);
    let mut ids: Vec<i64> = reads
        .iter()
        .map(|e| e["new"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=150).collect::<Vec<_>>());
    // Changes name the root too, as the snapshot did.
    assert_eq!(events.last().unwrap()["table"], "m");
}

#[test]
fn an_unfinished_snapshot_of_another_slot_of_that_name_is_refused() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    // The state of a snapshot that started at 0/1000000, then the slot
    // dropped and created again by hand: tables already read miss the
    // changes in between, so resuming would lose them.
    s.sql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let stale = serde_json::json!({
        "slot": s.slot, "consistent_point": "0/1000000", "done": ["public.a"], "finished": false
    })
    .to_string();
    std::fs::write(&state, &stale).unwrap();
    let state_arg = state.to_str().unwrap();
    let (code, stdout, stderr) = s.run_to_exit(
        None,
        &["--snapshot", "initial", "--snapshot-state-file", state_arg],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("started at 0/1000000"), "{stderr}");
    assert!(
        stderr.contains("drop the slot and delete the state"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing read: {stdout}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), stale);
}

#[test]
fn the_snapshot_describes_each_table_as_the_stream_does() {
    // What pgoutput leaves out of a relation message's key (INCLUDE columns,
    // a deferrable primary key) or of its columns (generated ones).
    let s = Scenario::new(
        "CREATE TABLE g (id int, code int, note text, twice int GENERATED ALWAYS AS (code * 2) STORED,
                         PRIMARY KEY (id) INCLUDE (note));
         CREATE TABLE d (id int PRIMARY KEY DEFERRABLE, v text);
         INSERT INTO g VALUES (1, 1, 'a'); INSERT INTO d VALUES (1, 'a')",
    );
    let (daemon, _dir, _state) = start_with_state_file(&s, &[]);
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(30));
    s.sql("BEGIN; INSERT INTO g VALUES (2, 2, 'b'); INSERT INTO d VALUES (2, 'b'); COMMIT");
    let events = daemon.events_until(|e| e["op"] == "insert" && e["table"] == "d");
    for table in ["g", "d"] {
        let of = |op: &str| -> Vec<&serde_json::Value> {
            let all = events.iter().filter(|e| e["table"] == table);
            all.filter(|e| e["op"] == op).collect()
        };
        let relations = of("relation");
        assert_eq!(relations.len(), 2, "{table}: snapshot's and stream's");
        let described =
            |e: &serde_json::Value| (e["replica_identity"].clone(), e["columns"].clone());
        assert_eq!(described(relations[0]), described(relations[1]), "{table}");
        let names = |e: &serde_json::Value| -> Vec<String> {
            e["new"].as_object().unwrap().keys().cloned().collect()
        };
        let (read, insert) = (of("read"), of("insert"));
        assert_eq!(names(read[0]), names(insert[0]), "{table}");
        assert_eq!(
            read[0]["key"].as_object().map(|k| k.len()),
            insert[0]["key"].as_object().map(|k| k.len()),
            "{table}"
        );
    }
}

#[test]
fn rows_of_a_table_whose_key_is_not_yet_enforced_keep_ids_of_their_own() {
    // A partitioned table's primary key added to the parent ONLY stays
    // invalid until each partition has its index: meanwhile a partition may
    // hold two rows with one key, and both must reach the stream.
    let nats = TestNats::start();
    let s = Scenario::with_publication(
        shared(),
        "CREATE TABLE m (id int NOT NULL, v text) PARTITION BY RANGE (id);
         CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);
         INSERT INTO m1 VALUES (5, 'a'), (5, 'b'), (6, 'c');
         ALTER TABLE ONLY m ADD PRIMARY KEY (id)",
        "CREATE PUBLICATION pub FOR TABLE m WITH (publish_via_partition_root = true)",
    );
    let daemon = s.spawn(Some(&nats), &["--snapshot", "initial"]);
    daemon.wait_for_log("Initial snapshot finished", Duration::from_secs(60));
    s.sql("INSERT INTO m1 VALUES (7, 'd')");
    wait_until(Duration::from_secs(30), || {
        match nats.message_count_on(STREAM, "postgres.public.m.insert") {
            0 => Err("the insert did not arrive".to_owned()),
            _ => Ok(()),
        }
    });
    let stored = nats.messages(STREAM);
    let read: Vec<String> = stored
        .iter()
        .filter(|m| m.subject == "postgres.public.m.read")
        .map(|m| m.json()["new"]["v"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(read, ["a", "b", "c"]);
    // The snapshot describes the table as the stream does (whose pgoutput
    // takes the invalid key for the identity from PostgreSQL 17 on).
    let relations: Vec<serde_json::Value> = stored
        .iter()
        .filter(|m| m.subject == "postgres.public.m.relation")
        .map(|m| m.json()["columns"].clone())
        .collect();
    assert_eq!(relations.len(), 2, "{relations:?}");
    assert_eq!(relations[0], relations[1]);
}

#[test]
fn a_table_the_role_may_not_read_in_full_stops_the_start_before_the_slot_is_created() {
    let s = Scenario::new(
        "CREATE TABLE t (id int PRIMARY KEY, owner text);
         INSERT INTO t VALUES (1, 'me'), (2, 'someone else');
         ALTER TABLE t ENABLE ROW LEVEL SECURITY;
         CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1)",
    );
    let role = format!("r_{}", s.slot);
    s.sql(&format!(
        "CREATE ROLE {role} LOGIN REPLICATION;
         CREATE POLICY mine ON t TO {role} USING (owner = 'me');
         GRANT SELECT ON t TO {role}"
    ));
    let mut args = s.args(None, &["--snapshot", "initial", "--snapshot-state-file"]);
    let dir = tempfile::tempdir().unwrap();
    args.push(dir.path().join("state.json").to_str().unwrap().to_owned());
    let connection = args.iter().position(|a| a == "--connection").unwrap() + 1;
    args[connection] = format!("{} user={role}", s.conninfo());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let slots = || {
        s.sql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            s.slot
        ))
    };

    // The policy would hide row 2 from the snapshot, not from the stream.
    let (code, stdout, stderr) = support::daemon::run_to_exit(&args, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read public.t"), "{stderr}");
    assert!(
        stderr.contains(&format!("ALTER ROLE \"{role}\" BYPASSRLS")),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(slots(), "0", "nothing created");

    s.sql(&format!("ALTER ROLE \"{role}\" BYPASSRLS"));
    let (code, _, stderr) = support::daemon::run_to_exit(&args, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("GRANT SELECT ON \"public\".\"u\" TO \"{role}\"")),
        "{stderr}"
    );
    assert_eq!(slots(), "0", "nothing created");

    s.sql(&format!("GRANT SELECT ON u TO {role}"));
    let daemon = support::daemon::Daemon::start(&args);
    let events = daemon.events_until(|e| e["op"] == "read" && e["table"] == "u");
    let read = |table: &str| {
        events
            .iter()
            .filter(|e| e["op"] == "read" && e["table"] == table)
            .count()
    };
    assert_eq!((read("t"), read("u")), (2, 1));
}
