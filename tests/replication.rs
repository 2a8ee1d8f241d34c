//! The replication connection against a real PostgreSQL: handshake, streaming, status updates,
//! cancel-safety, authentication methods, Unix sockets and TLS modes.

mod support;

use std::time::{Duration, Instant};

use pgoutput_stream::config::conninfo::{connect_sql, ConnInfo};
use pgoutput_stream::lsn::Lsn;
use pgoutput_stream::replication::{
    ReplicationConnection, ReplicationError, ReplicationMessage, ReplicationStream,
};
use support::postgres::{shared, PgOptions, TestPostgres};

fn info(s: &str) -> ConnInfo {
    ConnInfo::parse(s).expect("valid conninfo")
}

/// A database with table `t`, publication `p` and a pgoutput slot named like the database
/// (slot names are cluster-wide).
fn database_with_slot(pg: &TestPostgres) -> String {
    let db = pg.create_database();
    pg.psql(
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE PUBLICATION p FOR TABLE t;
             SELECT 1 FROM pg_create_logical_replication_slot('{db}', 'pgoutput');"
        ),
    );
    db
}

async fn start_stream(pg: &TestPostgres, db: &str) -> ReplicationStream {
    let conn = ReplicationConnection::connect(&info(&pg.conninfo(db)))
        .await
        .expect("connect");
    conn.start_replication(
        db,
        Lsn::ZERO,
        &[("proto_version", "1"), ("publication_names", "p")],
    )
    .await
    .expect("start replication")
}

/// Reads until a Commit arrives; returns the first bytes of each XLogData and the Commit's
/// end LSN.
async fn read_transaction(stream: &mut ReplicationStream) -> (Vec<u8>, Lsn) {
    let mut kinds = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next_message())
            .await
            .expect("message within 10 s")
            .expect("no error")
            .expect("stream open");
        if let ReplicationMessage::XLogData { data, .. } = message {
            kinds.push(data[0]);
            if data[0] == b'C' {
                let end = u64::from_be_bytes(data[10..18].try_into().unwrap());
                return (kinds, Lsn(end));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_system_reports_database_and_position() {
    let started = Instant::now();
    let pg = shared();
    eprintln!("shared server ready after {:?}", started.elapsed());
    let db = pg.create_database();
    let mut conn = ReplicationConnection::connect(&info(&pg.conninfo(&db)))
        .await
        .unwrap();
    assert!(conn.server_version_num() >= 100000);
    let system = conn.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some(db.as_str()));
    assert_eq!(system.timeline, 1);
    assert!(system.xlogpos > Lsn::ZERO);
    assert!(!system.systemid.is_empty());
    let rows = conn.simple_query("SHOW wal_level").await.unwrap();
    assert_eq!(rows, vec![vec![Some("logical".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_begin_inserts_commit_and_keepalives() {
    let pg = shared();
    let db = database_with_slot(pg);
    let mut stream = start_stream(pg, &db).await;
    pg.psql(&db, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    let (mut kinds, commit_end) = read_transaction(&mut stream).await;
    // A relation may come again between the rows after an invalidation (a
    // concurrent ANALYZE of the table); only the first is required.
    assert_eq!(kinds[..2], *b"BR");
    kinds.retain(|&kind| kind != b'R');
    assert_eq!(kinds, b"BIIC".to_vec());

    // Asking for a reply makes the server answer with a keepalive.
    stream
        .send_status(commit_end, commit_end, commit_end, true)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no keepalive");
        match stream.next_message().await.unwrap() {
            Some(ReplicationMessage::Keepalive { wal_end, .. }) => {
                assert!(wal_end >= commit_end);
                break;
            }
            other => assert!(other.is_some()),
        }
    }
    stream.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_status_advances_confirmed_flush_lsn() {
    let pg = shared();
    let db = database_with_slot(pg);
    let mut stream = start_stream(pg, &db).await;
    pg.psql(&db, "INSERT INTO t VALUES (1, 'a')");
    let (_, commit_end) = read_transaction(&mut stream).await;
    stream
        .send_status(commit_end, commit_end, commit_end, false)
        .await
        .unwrap();
    let query =
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = current_database()";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let confirmed: Lsn = pg.psql(&db, query).parse().unwrap();
        if confirmed == commit_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn stuck at {confirmed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stream.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_message_is_cancel_safe_under_select() {
    let pg = shared();
    let db = database_with_slot(pg);
    let mut stream = start_stream(pg, &db).await;
    // Wide rows so that messages span several reads and timers fire mid-message.
    pg.psql(
        &db,
        "INSERT INTO t SELECT g, repeat(md5(g::text), 300) FROM generate_series(1, 500) g",
    );
    let mut inserts = 0;
    let mut timeouts = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "only {inserts} inserts arrived");
        tokio::select! {
            message = stream.next_message() => {
                if let Some(ReplicationMessage::XLogData { data, .. }) = message.unwrap() {
                    match data[0] {
                        b'I' => {
                            inserts += 1;
                            // 'I', relation id, 'N', column count, then the id column: 't', length, text.
                            let id_len = u32::from_be_bytes(data[9..13].try_into().unwrap());
                            let id = std::str::from_utf8(&data[13..13 + id_len as usize]).unwrap();
                            assert_eq!(id, inserts.to_string());
                        }
                        b'C' => break,
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_micros(200)) => timeouts += 1,
        }
    }
    assert_eq!(inserts, 500);
    eprintln!("{timeouts} timer wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_slot_is_a_server_error_with_sqlstate() {
    let pg = shared();
    let db = pg.create_database();
    let conn = ReplicationConnection::connect(&info(&pg.conninfo(&db)))
        .await
        .unwrap();
    let err = conn
        .start_replication("no_such_slot", Lsn::ZERO, &[])
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ReplicationError::Server { .. }), "{err}");
    assert_eq!(err.sqlstate(), Some("42704"));
    assert!(!err.is_configuration());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_connection_works() {
    let pg = shared();
    let s = format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    let mut conn = ReplicationConnection::connect(&info(&s)).await.unwrap();
    assert_eq!(
        conn.identify_system().await.unwrap().dbname.as_deref(),
        Some("postgres")
    );
    let client = connect_sql(&info(&s)).await.unwrap();
    let row = client.query_one("SELECT 1::int4", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_is_reported_as_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = format!("host=127.0.0.1 port={port} user=x dbname=x sslmode=disable");
    let err = ReplicationConnection::connect(&info(&s))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ReplicationError::Unreachable { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}: ")));
    assert!(!err.is_configuration());
    let err = connect_sql(&info(&s)).await.err().unwrap();
    assert!(matches!(err, ReplicationError::Unreachable { .. }), "{err}");

    // A listener that never answers: connect_timeout bounds the whole handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = format!("host=127.0.0.1 port={port} user=x dbname=x connect_timeout=1");
    let started = Instant::now();
    let err = ReplicationConnection::connect(&info(&s))
        .await
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    match err {
        ReplicationError::Unreachable { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut)
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_methods_scram_md5_and_cleartext_authenticate() {
    let hba = ["scram-sha-256", "md5", "password"]
        .iter()
        .zip(["scram_user", "md5_user", "plain_user"])
        .map(|(method, user)| format!("host all {user} 127.0.0.1/32 {method}"))
        .collect();
    let pg = TestPostgres::start_with(PgOptions {
        hba,
        ..PgOptions::default()
    });
    pg.psql(
        "postgres",
        "CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 'scram pw';
         SET password_encryption = 'md5';
         CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5 pw';
         CREATE ROLE plain_user LOGIN REPLICATION PASSWORD 'plain pw';",
    );
    let base = format!("host=127.0.0.1 port={} dbname=postgres", pg.port());
    for (user, password) in [
        ("scram_user", "scram pw"),
        ("md5_user", "md5 pw"),
        ("plain_user", "plain pw"),
    ] {
        let good = info(&format!("{base} user={user} password='{password}'"));
        let mut conn = ReplicationConnection::connect(&good)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        conn.identify_system().await.unwrap();
        connect_sql(&good)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));

        let bad = info(&format!("{base} user={user} password=Wr0ngSecret"));
        for err in [
            ReplicationConnection::connect(&bad).await.err().unwrap(),
            connect_sql(&bad).await.err().unwrap(),
        ] {
            assert!(
                matches!(err, ReplicationError::Auth { .. }),
                "{user}: {err}"
            );
            assert_eq!(err.sqlstate(), Some("28P01"), "{user}: {err}");
            assert!(err.is_configuration());
            assert!(!err.to_string().contains("Wr0ngSecret"));
            assert!(!format!("{err:?}").contains("Wr0ngSecret"));
        }
    }
    let none = info(&format!("{base} user=scram_user passfile=/nonexistent"));
    for err in [
        ReplicationConnection::connect(&none).await.err().unwrap(),
        connect_sql(&none).await.err().unwrap(),
    ] {
        assert!(matches!(err, ReplicationError::Auth { .. }), "{err}");
        assert!(err.is_configuration());
    }
}

/// A throwaway CA and a server certificate for `localhost`, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pgoutput-stream test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let (ca, cert, key) = certificates();
    let (other_ca, _, _) = certificates();
    let pg = TestPostgres::start_with(PgOptions {
        hba: vec!["hostssl all scram_user 127.0.0.1/32 scram-sha-256".into()],
        ssl_cert: Some(cert),
        ssl_key: Some(key),
        ..PgOptions::default()
    });
    pg.psql(
        "postgres",
        "CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 'pw'",
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let other_ca_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let with = |host: &str, mode: &str, root: &std::path::Path| {
        info(&format!(
            "host={host} port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={}",
            pg.port(),
            root.display()
        ))
    };
    let ssl_query = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for ok in [
        with("127.0.0.1", "require", &other_ca_file),
        with("127.0.0.1", "verify-ca", &ca_file),
        with("localhost", "verify-full", &ca_file),
        with("127.0.0.1", "prefer", &other_ca_file),
        // SCRAM over TLS: the server offers channel binding, we decline it explicitly.
        info(&format!(
            "host=127.0.0.1 port={} user=scram_user password=pw dbname=postgres sslmode=require",
            pg.port()
        )),
    ] {
        let mut conn = ReplicationConnection::connect(&ok)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        conn.identify_system().await.unwrap();
        let client = connect_sql(&ok)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        let row = client.query_one(ssl_query, &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "true", "{ok}");
    }
    for bad in [
        with("127.0.0.1", "verify-full", &ca_file),
        with("localhost", "verify-full", &other_ca_file),
        with("127.0.0.1", "verify-ca", &other_ca_file),
    ] {
        let err = ReplicationConnection::connect(&bad).await.err().unwrap();
        assert!(matches!(err, ReplicationError::Tls(_)), "{bad}: {err}");
        assert!(err.is_configuration());
        assert!(connect_sql(&bad).await.is_err(), "{bad}");
    }

    // A server without TLS: require fails, prefer falls back to plain.
    let plain = shared();
    let s = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        plain.port()
    );
    let err = ReplicationConnection::connect(&info(&format!("{s} sslmode=require")))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ReplicationError::Tls(_)), "{err}");
    let sql_err = connect_sql(&info(&format!("{s} sslmode=require")))
        .await
        .err()
        .unwrap();
    // Both connections name the fix, in the same words.
    assert_eq!(sql_err.to_string(), err.to_string());
    assert!(err.to_string().contains("sslmode=prefer"), "{err}");
    ReplicationConnection::connect(&info(&format!("{s} sslmode=prefer")))
        .await
        .unwrap();
}
