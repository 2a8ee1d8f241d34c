//! `--streaming` against a real PostgreSQL that streams every transaction
//! over 64 kB: only committed changes are published, in commit order, without
//! rolled-back subtransactions or aborted transactions, with the daemon's
//! buffer spilling to disk.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::postgres::{PgOptions, TestPostgres};
use support::scenario::Scenario;
use support::wait_until;

fn inserted_id(event: &Value) -> Option<i64> {
    (event["op"] == "insert").then(|| event["new"]["id"].as_i64().unwrap())
}

#[test]
fn streamed_transactions_publish_only_what_committed_in_commit_order() {
    let pg = TestPostgres::start_with(PgOptions {
        conf: vec!["logical_decoding_work_mem = '64kB'".into()],
        ..PgOptions::default()
    });
    let s = Scenario::on(&pg, "CREATE TABLE t (id int PRIMARY KEY, note text)");
    let daemon = s.start(None, &["--streaming", "--streaming-memory", "256kB"]);

    // A large transaction with a rolled-back savepoint, still open while a small one commits.
    let big = "BEGIN;
         INSERT INTO t SELECT g, repeat('a', 100) FROM generate_series(1, 20000) g;
         SAVEPOINT s;
         INSERT INTO t SELECT g, repeat('b', 100) FROM generate_series(100001, 105000) g;
         ROLLBACK TO SAVEPOINT s;
         INSERT INTO t SELECT g, repeat('c', 100) FROM generate_series(200001, 200010) g;
         DO $$ BEGIN
             FOR i IN 1..1200 LOOP
                 EXIT WHEN EXISTS (SELECT 1 FROM t WHERE id = 999999);
                 PERFORM pg_sleep(0.05);
             END LOOP;
         END $$;
         COMMIT;";
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| s.sql(big));
        // The small transaction commits once the large one has written all its
        // rows and waits for it (sleeping in the loop above).
        wait_until(Duration::from_secs(60), || {
            match s
                .sql(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event = 'PgSleep' AND datname = current_database()",
                )
                .as_str()
            {
                "1" => Ok(()),
                _ => Err("the large transaction did not get to its wait".to_owned()),
            }
        });
        s.sql("INSERT INTO t VALUES (999999, 'small')");
        writer.join().unwrap();
    });
    // A large transaction that aborts: nothing of it.
    s.sql(
        "BEGIN;
         INSERT INTO t SELECT g, repeat('d', 100) FROM generate_series(300001, 320000) g;
         ROLLBACK;",
    );
    s.sql("INSERT INTO t VALUES (0, 'marker')");

    let events = daemon.events_until(|e| inserted_id(e) == Some(0));
    let ids: Vec<i64> = events.iter().filter_map(inserted_id).collect();
    let mut expected = vec![999_999];
    expected.extend(1..=20_000);
    expected.extend(200_001..=200_010);
    expected.push(0);
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "inserts out of order or wrong");
    // Whole transactions: the small one, the large one, then the marker's begin.
    let ops: Vec<&str> = events
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .filter(|op| *op == "begin" || *op == "commit")
        .collect();
    assert_eq!(ops, ["begin", "commit", "begin", "commit", "begin"]);
    // The server did stream: this was not decoded whole at commit.
    let streamed = s.sql(&format!(
        "SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = '{}'",
        s.slot
    ));
    assert_eq!(streamed, "t");
}
