//! The worst days: lost connections, server restarts, a standby taking over,
//! kill -9 at random moments, idle connections, huge transactions, bad
//! databases, and shutdown while NATS is down. Real PostgreSQL and nats-server.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::daemon::{run_to_exit, signal};
use support::nats::{Stored, TestNats};
use support::postgres::{shared, PgOptions, TestPostgres};
use support::scenario::Scenario;
use support::wait_until;

const STREAM: &str = "postgres_replication";

/// The `id`s of the insert events stored in the stream, in stream order.
fn inserted_ids(messages: &[Stored]) -> Vec<i64> {
    messages
        .iter()
        .filter(|m| m.header("Pg-Op") == "insert")
        .map(|m| m.json()["new"]["id"].as_i64().expect("id"))
        .collect()
}

/// Wait until the stream holds `expected` distinct inserted ids 1..=expected, then
/// assert that each is there exactly once.
fn assert_every_row_once(nats: &TestNats, expected: i64, timeout: Duration) {
    let (ids, distinct) = wait_until(timeout, || {
        let ids = inserted_ids(&nats.messages(STREAM));
        let distinct: BTreeSet<i64> = ids.iter().copied().collect();
        if distinct.len() as i64 >= expected {
            Ok((ids, distinct))
        } else {
            Err(format!("{} of {expected} rows arrived", distinct.len()))
        }
    });
    assert_eq!(ids.len(), distinct.len(), "duplicates in the stream");
    assert_eq!(distinct, (1..=expected).collect(), "unexpected ids");
}

#[test]
fn a_terminated_backend_and_a_server_restart_are_survived_without_loss() {
    let pg = TestPostgres::start();
    let nats = TestNats::start();
    let s = Scenario::on(&pg, "CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(
        Some(&nats),
        &["--no-stdout", "--reconnect-max-backoff", "1s"],
    );
    s.sql("INSERT INTO t SELECT generate_series(1, 100)");

    let pid = s.active_pid().expect("the daemon streams");
    s.sql(&format!("SELECT pg_terminate_backend({pid})"));
    daemon.wait_for_log(
        "Replication connection lost; reconnecting",
        Duration::from_secs(10),
    );
    s.sql("INSERT INTO t SELECT generate_series(101, 200)");
    assert_every_row_once(&nats, 200, Duration::from_secs(30));

    // The server goes away under a live connection.
    assert!(
        s.active_pid().is_some(),
        "streaming again before the restart"
    );
    pg.restart("fast");
    s.sql("INSERT INTO t SELECT generate_series(201, 300)");
    let end = s.wal_position();
    assert_every_row_once(&nats, 300, Duration::from_secs(60));
    s.wait_confirmed_past(&end, Duration::from_secs(30));
    assert!(
        daemon.stderr().matches("Streaming changes").count() >= 3,
        "{}",
        daemon.stderr()
    );
}

#[test]
fn a_standby_instance_takes_over_within_seconds_when_the_first_dies() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let first = s.start(Some(&nats), &["--standby", "--no-stdout"]);
    let second = s.spawn(Some(&nats), &["--standby", "--no-stdout"]);
    second.wait_for_log("standing by to take over", Duration::from_secs(30));
    s.sql("INSERT INTO t VALUES (1)");
    nats.wait_for_messages(STREAM, 4, Duration::from_secs(20));

    let killed = Instant::now();
    signal(first.pid(), "KILL");
    second.wait_for_log("Streaming changes", Duration::from_secs(15));
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "took over after {:?}",
        killed.elapsed()
    );
    s.sql("INSERT INTO t VALUES (2)");
    assert_every_row_once(&nats, 2, Duration::from_secs(20));
    drop(first);
}

/// A small deterministic generator, so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn next_in(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        low + (self.0 >> 33) % (high - low)
    }
}

#[test]
fn kill_9_at_random_moments_neither_loses_nor_duplicates_a_row() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY, note text)");
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261123);
    let mut random = Lcg(seed);
    // Copies re-published minutes after the first store must still be dropped
    // on a slow machine: a dedup window longer than the test may take.
    let args = [
        "--standby",
        "--no-stdout",
        "--reconnect-max-backoff",
        "1s",
        "--nats-duplicate-window",
        "1h",
    ];
    let mut daemon = s.start(Some(&nats), &args);

    // 50,000 rows in 250 transactions, written while the daemon is killed and restarted.
    let conn = s.conninfo();
    let load = std::thread::spawn(move || {
        let pg = shared();
        let db = conn.rsplit("dbname=").next().unwrap_or_default().to_owned();
        for tx in 0..250 {
            let from = tx * 200 + 1;
            pg.psql(
                &db,
                &format!(
                    "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series({from}, {}) g",
                    from + 199
                ),
            );
        }
    });
    for kill in 0..6 {
        std::thread::sleep(Duration::from_millis(random.next_in(200, 1500)));
        eprintln!("kill -9 number {kill} (seed {seed})");
        signal(daemon.pid(), "KILL");
        drop(daemon);
        daemon = s.spawn(Some(&nats), &args);
    }
    load.join().expect("load finished");
    assert_every_row_once(&nats, 50_000, Duration::from_secs(120));
    drop(daemon);
}

#[test]
fn an_idle_connection_outlives_wal_sender_timeout() {
    let pg = TestPostgres::start_with(PgOptions {
        conf: vec!["wal_sender_timeout = '4s'".into()],
        ..PgOptions::default()
    });
    let s = Scenario::on(&pg, "CREATE TABLE t (id int PRIMARY KEY)");
    // Status updates only every 30 s: staying connected relies on answering keepalives.
    let daemon = s.start(None, &["--status-interval", "30s"]);
    std::thread::sleep(Duration::from_secs(10));
    s.sql("INSERT INTO t VALUES (1)");
    let tx = daemon.transaction();
    assert_eq!(tx.iter().filter(|e| e["op"] == "insert").count(), 1);
    assert!(
        !daemon.stderr().contains("reconnecting"),
        "{}",
        daemon.stderr()
    );
    assert!(!pg
        .log_tail()
        .contains("terminating walsender process due to replication timeout"));
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("kB");
    kib * 1024
}

#[test]
fn a_million_row_transaction_streams_through_in_bounded_memory() {
    let nats = TestNats::start();
    // Its own server: 130 MB of WAL in a few seconds would otherwise slow the
    // other tests' slots, which read the whole cluster's WAL.
    let pg = TestPostgres::start();
    let s = Scenario::on(&pg, "CREATE TABLE t (id int PRIMARY KEY, note text)");
    let daemon = s.start(
        Some(&nats),
        &[
            "--no-stdout",
            "--nats-max-msgs",
            "2000000",
            "--nats-max-bytes=-1",
        ],
    );
    s.sql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000000) g");
    let end = s.wal_position();
    s.wait_confirmed_past(&end, Duration::from_secs(600));
    let peak = peak_rss(daemon.pid());
    eprintln!("peak RSS of the daemon: {:.1} MB", peak as f64 / 1e6);
    assert!(peak < 150_000_000, "peak RSS {peak} bytes");
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.public.t.insert"),
        1_000_000
    );
    assert_eq!(
        nats.message_count_on(STREAM, "postgres.transactions.commit.event"),
        1
    );
    // The server may describe the table again in the middle (e.g. after an ANALYZE
    // invalidated its cache entry), so relation events are not counted exactly.
}

#[test]
fn a_database_that_is_not_utf8_is_refused_at_start_up() {
    let pg = shared();
    let db = format!("latin_{}", std::process::id());
    pg.psql(
        "postgres",
        &format!(
            "CREATE DATABASE {db} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    pg.psql(
        &db,
        "CREATE TABLE t (id int); CREATE PUBLICATION pub FOR ALL TABLES",
    );
    let conn = pg.conninfo(&db);
    let (code, stdout, stderr) = run_to_exit(
        &[
            "--connection",
            &conn,
            "--slot",
            "latin",
            "--publication",
            "pub",
            "--create-slot",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("LATIN1") && stderr.contains("UTF8"),
        "{stderr}"
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'latin'"
        ),
        "0"
    );
}

#[test]
fn sigterm_waits_for_acks_within_the_timeout_confirms_only_what_was_acked_and_a_restart_resumes() {
    let mut nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let args = ["--no-stdout", "--shutdown-timeout", "3s"];
    let daemon = s.start(Some(&nats), &args);
    s.sql("INSERT INTO t SELECT generate_series(1, 100)");
    let first = s.wal_position();
    nats.wait_for_messages(STREAM, 103, Duration::from_secs(20));
    s.wait_confirmed_past(&first, Duration::from_secs(30));

    nats.pause();
    s.sql("INSERT INTO t SELECT generate_series(101, 200)");
    let second = s.wal_position();
    // Time to receive the transaction, which cannot be acknowledged.
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    signal(daemon.pid(), "TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        asked.elapsed()
    );
    // Checked below, once the transaction's commit position is known.
    let confirmed_at_stop = s.confirmed_flush();

    nats.resume();
    let daemon = s.start(Some(&nats), &args);
    assert_every_row_once(&nats, 200, Duration::from_secs(60));
    // While idle the daemon confirms the server's keepalive positions, so the
    // slot may have moved while NATS was down, but never past the start of the
    // unacknowledged transaction's commit (the server would skip it).
    let stored = nats.messages(STREAM);
    let row_101 = stored
        .iter()
        .find(|m| m.header("Pg-Op") == "insert" && m.json()["new"]["id"] == 101)
        .expect("row 101 is stored");
    let commit_lsn = row_101.header("Pg-Commit-Lsn");
    assert_eq!(
        s.sql(&format!(
            "SELECT '{confirmed_at_stop}'::pg_lsn <= '{commit_lsn}'::pg_lsn"
        )),
        "t",
        "the slot confirmed {confirmed_at_stop}, past the commit at {commit_lsn} of unacknowledged events"
    );
    s.wait_confirmed_past(&second, Duration::from_secs(30));
    let asked = Instant::now();
    signal(daemon.pid(), "TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_second_stop_signal_exits_at_once_but_one_signal_delivered_twice_does_not() {
    let mut nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let args = ["--no-stdout", "--shutdown-timeout", "60s"];
    let mut daemon = s.start(Some(&nats), &args);
    nats.pause();
    s.sql("INSERT INTO t SELECT generate_series(1, 50)");
    // Time to receive the transaction, which cannot be acknowledged.
    std::thread::sleep(Duration::from_secs(1));
    // As GNU timeout or a wrapper's process group delivers it: twice at once.
    signal(daemon.pid(), "TERM");
    signal(daemon.pid(), "TERM");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        daemon.exited(),
        None,
        "one stop request, waiting for acks, was taken for two:\n{}",
        daemon.stderr()
    );
    let asked = Instant::now();
    signal(daemon.pid(), "TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Second stop signal"), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the second signal took {:?}",
        asked.elapsed()
    );

    // Nothing was confirmed past the unacknowledged transaction: a restart delivers it.
    nats.resume();
    let daemon = s.start(Some(&nats), &args);
    assert_every_row_once(&nats, 50, Duration::from_secs(60));
    drop(daemon);
}

#[test]
fn nats_restarted_in_the_middle_of_a_batch_loses_and_duplicates_nothing() {
    let mut nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY, note text)");
    let daemon = s.start(Some(&nats), &["--no-stdout"]);
    s.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g");
    // Killed while the transaction's batch is being stored: the server
    // forgets the batch, and the events it had not acknowledged go again.
    wait_until(Duration::from_secs(60), || {
        match nats.message_count(STREAM) {
            n if n >= 4_000 => Ok(()),
            n => Err(format!("{n} messages stored")),
        }
    });
    nats.pause();
    std::thread::sleep(Duration::from_secs(1));
    nats.resume();
    // Confirmed only once every row is stored; then each is there once.
    s.wait_confirmed_past(&s.wal_position(), Duration::from_secs(120));
    assert_every_row_once(&nats, 40_000, Duration::from_secs(10));
    drop(daemon);
}

#[test]
fn a_stream_deleted_while_running_holds_the_slot_until_it_is_back_and_nothing_is_lost() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(Some(&nats), &["--no-stdout"]);
    s.sql("INSERT INTO t VALUES (1)");
    nats.wait_for_messages(STREAM, 4, Duration::from_secs(20));
    let config = nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        let mut stream = js.get_stream(STREAM).await.expect("the daemon's stream");
        let config = stream.info().await.expect("stream info").config.clone();
        js.delete_stream(STREAM).await.expect("delete the stream");
        config
    });
    let before = s.wal_position();
    s.sql("INSERT INTO t VALUES (2)");
    daemon.wait_for_log("was the stream deleted", Duration::from_secs(20));
    // Nothing stored it: the slot stays before the transaction.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        s.sql(&format!(
            "SELECT confirmed_flush_lsn <= '{before}' FROM pg_replication_slots WHERE slot_name = '{}'",
            s.slot
        )),
        "t"
    );
    nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        js.create_stream(config)
            .await
            .expect("create the stream again");
    });
    // begin, insert, commit of the second transaction.
    let stored = nats.wait_for_messages(STREAM, 3, Duration::from_secs(60));
    assert_eq!(inserted_ids(&stored), [2]);
    s.wait_confirmed_past(&s.wal_position(), Duration::from_secs(30));
    drop(daemon);
}

#[test]
fn a_publication_dropped_behind_the_slot_ends_the_run_with_the_way_out() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(None, &[]);
    s.sql("INSERT INTO t VALUES (1)");
    daemon.transaction();
    s.sql("DROP PUBLICATION pub");
    s.sql("INSERT INTO t VALUES (2)");
    s.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("drop the slot"), "{stderr}");
    // A restart finds the publication at start-up, and decoding fails the same
    // way: the explanation comes again, as the last line.
    s.wait_slot_inactive();
    let (code, _, stderr) = s.run_to_exit(None, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("move the slot past its creation"), "{stderr}");
}
