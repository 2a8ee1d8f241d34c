//! Start-up checks: each misconfiguration ends with one line on stderr naming
//! the fix, the documented exit code, no event on stdout, and nothing created.

mod support;

use support::daemon::{run_to_exit, signal, Daemon};
use support::postgres::{shared, PgOptions, TestPostgres};

/// Run with the given flags; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    run_to_exit(args, &[])
}

fn assert_one_line(stderr: &str) {
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "expected one line, got:\n{stderr}"
    );
}

fn slot_exists(pg: &TestPostgres, db: &str, slot: &str) -> bool {
    pg.psql(
        db,
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    ) == "1"
}

#[test]
fn a_bad_connection_string_is_a_usage_error_without_the_password() {
    let (code, stdout, stderr) = run(&[
        "--connection",
        "postgres://app:s3cret@127.0.0.1:notaport/shop",
        "--slot",
        "s",
        "--publication",
        "p",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("port"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "password leaked: {stderr}");

    let (code, _, stderr) = run(&[
        "--connection",
        "host=localhost bogus_key=1",
        "--slot",
        "s",
        "--publication",
        "p",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bogus_key"), "{stderr}");
}

#[test]
fn a_missing_flag_is_a_usage_error() {
    let (code, _, stderr) = run(&["--connection", "dbname=x", "--slot", "s"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--publication"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_a_runtime_error_naming_the_address() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let conn =
        format!("host=127.0.0.1 port={port} user=postgres password=hunter2 connect_timeout=5");
    let (code, stdout, stderr) = run(&["--connection", &conn, "--slot", "s", "--publication", "p"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) || stderr.contains(&port.to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
}

/// A port where every connection is accepted and held without a word.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn a_server_that_accepts_and_never_answers_is_given_up_after_connect_timeout() {
    let port = silent_server();
    let conn = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=2");
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run(&["--connection", &conn, "--slot", "s", "--publication", "p"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("no connection within 2 s"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_stop_signal_while_a_server_holds_the_connection_ends_the_run_at_once() {
    let port = silent_server();
    let conn = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=60");
    let daemon = Daemon::spawn(&["-c", &conn, "-s", "s", "-p", "p"], &[]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let asked = std::time::Instant::now();
    signal(daemon.pid(), "TERM");
    let (status, stderr) = daemon.wait(std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "stopping took {:?}",
        asked.elapsed()
    );
    assert!(stderr.contains("Stopped while starting"), "{stderr}");
}

#[test]
fn a_port_where_another_protocol_answers_says_to_check_host_and_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // What a NATS server says first, then the connection closes.
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let _ = stream.read(&mut [0; 512]);
            let _ = stream.write_all(b"INFO {\"server_id\":\"x\"}\r\n");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    });
    let conn = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=5");
    let (code, _, stderr) = run(&["-c", &conn, "-s", "s", "-p", "p"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr);
    assert!(stderr.contains("check host and port"), "{stderr}");
}

#[test]
fn wal_level_replica_names_the_setting_to_change() {
    let pg = TestPostgres::start_with(PgOptions {
        conf: vec!["wal_level = replica".into()],
        ..PgOptions::default()
    });
    let conn = pg.conninfo("postgres");
    let (code, stdout, stderr) = run(&["-c", &conn, "-s", "s", "-p", "p", "--create-slot"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("wal_level = logical"), "{stderr}");
}

#[test]
fn a_missing_publication_is_named_and_no_slot_is_created() {
    let pg = shared();
    let db = pg.create_database();
    let conn = pg.conninfo(&db);
    let (code, stdout, stderr) = run(&[
        "-c",
        &conn,
        "-s",
        "never_made",
        "-p",
        "nope",
        "--create-slot",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("CREATE PUBLICATION \"nope\""), "{stderr}");
    assert!(
        !slot_exists(pg, &db, "never_made"),
        "a slot was created although the run failed"
    );

    // CREATE PUBLICATION Shop_Pub folds the name to lower case.
    pg.psql(&db, "CREATE PUBLICATION Shop_Pub FOR ALL TABLES");
    let (code, _, stderr) = run(&["-c", &conn, "-s", "never_made", "-p", "Shop_Pub"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_line(&stderr);
    assert!(stderr.contains("use -p shop_pub"), "{stderr}");
}

#[test]
fn configuration_mistakes_found_before_connecting_are_one_line_and_exit_2() {
    let pg = shared();
    let db = pg.create_database();
    pg.psql(&db, "CREATE PUBLICATION pub FOR ALL TABLES");
    let conn = pg.conninfo(&db);
    let base = [
        "-c",
        conn.as_str(),
        "-s",
        "early",
        "-p",
        "pub",
        "--create-slot",
    ];
    for (extra, expected) in [
        (
            &[
                "--snapshot",
                "initial",
                "--snapshot-state-file",
                "/nonexistent/state.json",
            ][..],
            "the directory /nonexistent does not exist",
        ),
        (&["--log-level", "verbose"][..], "expected a level"),
        (&["--metrics-addr", "9187"][..], "e.g. 127.0.0.1:9187"),
        (&["--catch-up-threshold", "0"][..], "off always streams"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    assert!(!slot_exists(pg, &db, "early"), "a slot was created");
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    for value in ["1", "yes", "on", "true"] {
        let (code, _, stderr) = run_to_exit(
            &["-c", "host=x", "-s", "s", "-p", "p"],
            &[("PGOUTPUT_STREAM_NO_STDOUT", value)],
        );
        assert_eq!(code, Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("--no-stdout leaves no output target"),
            "{value}: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_nats_server_is_named_with_what_to_check() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = shared();
    let db = pg.create_database();
    let conn = pg.conninfo(&db);
    let nats = format!("nats://127.0.0.1:{port}");
    let (code, _, stderr) = run(&["-c", &conn, "-s", "s", "-p", "p", "--nats-server", &nats]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr);
    assert!(stderr.contains("check --nats-server"), "{stderr}");
}

#[test]
fn help_never_shows_the_values_of_variables_that_can_hold_secrets() {
    let (code, stdout, stderr) = run_to_exit(
        &["--help"],
        &[
            ("PGOUTPUT_STREAM_CONNECTION", "host=x password=pg-s3cret"),
            ("PGOUTPUT_STREAM_NATS_SERVER", "nats://u:nats-s3cret@x:4222"),
            ("PGOUTPUT_STREAM_NATS_TOKEN", "t0ken-s3cret"),
            ("PGOUTPUT_STREAM_NATS_PASSWORD", "pw-s3cret"),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("PGOUTPUT_STREAM_NATS_SERVER"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
}

#[test]
fn a_start_lsn_beyond_the_servers_wal_is_refused_before_anything_is_created() {
    let pg = shared();
    let db = pg.create_database();
    pg.psql(&db, "CREATE PUBLICATION pub FOR ALL TABLES");
    let conn = pg.conninfo(&db);
    let (code, stdout, stderr) = run(&[
        "-c",
        &conn,
        "-s",
        "ahead",
        "-p",
        "pub",
        "--create-slot",
        "--start-lsn",
        "FFFFFF/0",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("ahead of the server's WAL"), "{stderr}");
    assert!(!slot_exists(pg, &db, "ahead"), "a slot was created");
}

#[test]
fn a_missing_slot_without_create_slot_suggests_the_flag_with_flags_from_the_environment() {
    let pg = shared();
    let db = pg.create_database();
    pg.psql(&db, "CREATE PUBLICATION pub FOR ALL TABLES");
    let conn = pg.conninfo(&db);
    let (code, stdout, stderr) = run_to_exit(
        &[],
        &[
            ("PGOUTPUT_STREAM_CONNECTION", conn.as_str()),
            ("PGOUTPUT_STREAM_SLOT", "absent_slot"),
            ("PGOUTPUT_STREAM_PUBLICATION", "pub"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("--create-slot"), "{stderr}");
}

#[test]
fn a_slot_in_use_by_another_process_is_a_runtime_error() {
    let pg = shared();
    let db = pg.create_database();
    pg.psql(&db, "CREATE PUBLICATION pub FOR ALL TABLES");
    let conn = pg.conninfo(&db);
    let slot = format!("busy_{}", std::process::id());
    let _first = Daemon::start(&["-c", &conn, "-s", &slot, "-p", "pub", "--create-slot"]);
    let (code, stdout, stderr) = run(&["-c", &conn, "-s", &slot, "-p", "pub"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn a_role_without_replication_is_told_how_to_grant_it() {
    let pg = shared();
    let db = pg.create_database();
    pg.psql(&db, "CREATE PUBLICATION pub FOR ALL TABLES");
    let role = format!("plain_{}", std::process::id());
    pg.psql(&db, &format!("CREATE ROLE {role} LOGIN"));
    let conn = format!("{} user={role}", pg.conninfo(&db));
    let (code, stdout, stderr) =
        run(&["-c", &conn, "-s", "s_norole", "-p", "pub", "--create-slot"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(stderr.contains("WITH REPLICATION"), "{stderr}");
}

#[test]
fn scram_login_streams_and_never_logs_the_password() {
    let pg = TestPostgres::start_with(PgOptions {
        conf: vec!["password_encryption = 'scram-sha-256'".into()],
        hba: vec![
            "host all cdc 127.0.0.1/32 scram-sha-256".into(),
            "host replication cdc 127.0.0.1/32 scram-sha-256".into(),
        ],
        ..PgOptions::default()
    });
    pg.psql(
        "postgres",
        "CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'Sup3r-s3cret';
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO cdc;
         CREATE PUBLICATION pub FOR TABLE t;",
    );
    let conn = format!("host=127.0.0.1 port={} user=cdc dbname=postgres", pg.port());
    let daemon = Daemon::spawn(
        &[
            "-c",
            &conn,
            "-s",
            "scram_slot",
            "-p",
            "pub",
            "--create-slot",
            "--log-level",
            "trace",
        ],
        &[("PGPASSWORD", "Sup3r-s3cret")],
    );
    daemon.wait_for_log("Streaming changes", std::time::Duration::from_secs(30));
    pg.psql("postgres", "INSERT INTO t VALUES (42)");
    let tx = daemon.transaction();
    assert_eq!(tx[2]["new"]["id"], 42, "{tx:?}");
    let (status, log) = daemon.interrupt();
    assert_eq!(status.code(), Some(0));
    assert!(!log.contains("Sup3r-s3cret"), "password in the log");

    let (code, _, stderr) = run_to_exit(
        &["-c", &conn, "-s", "scram_slot", "-p", "pub"],
        &[("PGPASSWORD", "wrong-password")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("password"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");

    // No password anywhere: the line says where one can come from.
    let home = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_to_exit(
        &["-c", &conn, "-s", "scram_slot", "-p", "pub"],
        &[("HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_line(&stderr);
    assert!(stderr.contains("PGPASSWORD"), "{stderr}");
}

#[test]
fn no_free_replication_slot_is_reported_with_the_servers_words() {
    let pg = TestPostgres::start_with(PgOptions {
        conf: vec!["max_replication_slots = 1".into()],
        ..PgOptions::default()
    });
    let db = pg.create_database();
    pg.psql(
        &db,
        "CREATE PUBLICATION pub FOR ALL TABLES;
         SELECT 1 FROM pg_create_logical_replication_slot('taken', 'pgoutput')",
    );
    let conn = pg.conninfo(&db);
    let (code, stdout, stderr) = run(&["-c", &conn, "-s", "mine", "-p", "pub", "--create-slot"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert_one_line(&stderr);
    assert!(
        stderr.contains("all replication slots are in use"),
        "{stderr}"
    );
    assert!(stderr.contains("max_replication_slots"), "{stderr}");

    // A database that does not exist is a configuration error as well.
    let conn = conn.replace(&format!("dbname={db}"), "dbname=no_such_db");
    let (code, _, stderr) = run(&["-c", &conn, "-s", "mine", "-p", "pub"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("\"no_such_db\" does not exist"), "{stderr}");
}
