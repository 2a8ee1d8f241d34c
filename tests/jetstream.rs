//! The JetStream target against a real nats-server: subjects, headers,
//! payloads, the stream, deduplicated replays, outages and authentication.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::nats::{NatsOptions, Stored, TestNats};
use support::scenario::Scenario;
use support::{free_port, http_get, metric, wait_until};

const STREAM: &str = "postgres_replication";

/// The `Nats-Msg-Id` of each of a transaction's events as they were printed:
/// `<slot>:<commit_lsn>:<n>`, n counting the events without relation events;
/// a relation event is named after the next event, plus its relation id.
fn message_ids(slot: &str, transaction: &[Value]) -> Vec<String> {
    let commit_lsn = transaction[0]["commit_lsn"].as_str().unwrap();
    let mut n = 0;
    transaction
        .iter()
        .map(|event| {
            if event["op"] == "relation" {
                format!("{slot}:{commit_lsn}:{n}r{}", event["relation_id"])
            } else {
                n += 1;
                format!("{slot}:{commit_lsn}:{}", n - 1)
            }
        })
        .collect()
}

fn stored_ids(messages: &[Stored]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.header("Nats-Msg-Id").to_owned())
        .collect()
}

fn ops(messages: &[Stored]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.header("Pg-Op").to_owned())
        .collect()
}

#[test]
fn every_op_is_published_to_its_subject_with_headers_and_the_stdout_payload() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE items (id int PRIMARY KEY, name text)");
    let daemon = s.start(Some(&nats), &[]);
    s.sql(
        "BEGIN;
         INSERT INTO items VALUES (1, 'pen');
         -- Changes the table's catalog entry, so the server describes it again
         -- before the next change: the extra relation event CI once met.
         ALTER TABLE items ALTER COLUMN name SET STATISTICS 50;
         UPDATE items SET name = 'pencil' WHERE id = 1;
         DELETE FROM items WHERE id = 1;
         TRUNCATE items;
         SELECT pg_logical_emit_message(true, 'audit.log', 'hello');
         COMMIT;",
    );
    // One transaction: begin, relation, insert, relation, update, delete, relation,
    // truncate, message, commit.
    let stdout = daemon.transaction();
    let stored = nats.wait_for_messages(STREAM, stdout.len(), Duration::from_secs(20));
    assert_eq!(stored.len(), stdout.len());
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    // The server may describe the table once more at any point (it does so
    // whenever its cache entry for the table was invalidated), so a repeated
    // relation event between the changes is legitimate; the changes and the
    // descriptions they need are not optional.
    let relation = "postgres.public.items.relation";
    let changes: Vec<&str> = subjects
        .iter()
        .copied()
        .filter(|s| *s != relation)
        .collect();
    assert_eq!(
        changes,
        [
            "postgres.transactions.begin.event",
            "postgres.public.items.insert",
            "postgres.public.items.update",
            "postgres.public.items.delete",
            "postgres.public.items.truncate",
            "postgres.messages.audit%2Elog",
            "postgres.transactions.commit.event",
        ],
        "{subjects:?}"
    );
    assert_eq!(subjects[1], relation, "{subjects:?}");
    // TRUNCATE makes the server describe the table again.
    let truncate = subjects
        .iter()
        .position(|s| s.ends_with(".truncate"))
        .unwrap();
    assert_eq!(subjects[truncate - 1], relation, "{subjects:?}");
    for (message, line) in stored.iter().zip(&stdout) {
        assert_eq!(
            message.json(),
            *line,
            "payload differs from the stdout event"
        );
    }
    let begin = &stdout[0];
    let commit_lsn = begin["commit_lsn"].as_str().unwrap();
    let insert_at = subjects
        .iter()
        .position(|s| s.ends_with(".insert"))
        .unwrap();
    let insert = &stored[insert_at];
    assert_eq!(
        insert.header("Nats-Msg-Id"),
        format!("{}:{commit_lsn}:1", s.slot)
    );
    assert_eq!(insert.header("Pg-Op"), "insert");
    assert_eq!(insert.header("Pg-Schema"), "public");
    assert_eq!(insert.header("Pg-Table"), "items");
    assert_eq!(
        insert.header("Pg-Lsn"),
        stdout[insert_at]["lsn"].as_str().unwrap()
    );
    assert_eq!(insert.header("Pg-Commit-Lsn"), commit_lsn);
    assert_eq!(insert.header("Pg-Xid"), begin["xid"].to_string());
    assert_eq!(
        insert.header("Pg-Commit-Ts"),
        begin["commit_ts"].as_str().unwrap()
    );
    let ids: std::collections::HashSet<&str> =
        stored.iter().map(|m| m.header("Nats-Msg-Id")).collect();
    assert_eq!(ids.len(), stored.len(), "message ids are unique");
    // A relation event's id is that of the change it precedes plus the relation id.
    let rel = stdout[1]["relation_id"].clone();
    assert_eq!(
        stored[insert_at - 1].header("Nats-Msg-Id"),
        format!("{}:{commit_lsn}:1r{rel}", s.slot)
    );
    assert_eq!(
        stored[truncate - 1].header("Nats-Msg-Id"),
        format!("{}:{commit_lsn}:4r{rel}", s.slot)
    );
    let change_ops: Vec<String> = ops(&stored)
        .into_iter()
        .filter(|op| op != "relation")
        .collect();
    assert_eq!(
        change_ops,
        ["begin", "insert", "update", "delete", "truncate", "message", "commit"]
    );
}

#[test]
fn the_stream_is_created_with_the_documented_limits() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let _daemon = s.start(Some(&nats), &[]);
    let config = nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        let mut stream = js.get_stream(STREAM).await.expect("stream exists");
        stream.info().await.expect("info").config.clone()
    });
    assert_eq!(config.subjects, ["postgres.>"]);
    assert_eq!(config.max_messages, 1_000_000);
    assert_eq!(config.max_bytes, 1 << 30);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
}

#[test]
fn an_existing_stream_is_used_as_it_is_and_must_capture_the_prefix() {
    let nats = TestNats::start();
    nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "mine".into(),
            subjects: vec!["cdc.>".into()],
            max_messages: 42,
            ..Default::default()
        })
        .await
        .expect("create stream");
    });
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(
        Some(&nats),
        &["--nats-stream", "mine", "--nats-subject-prefix", "cdc.shop"],
    );
    s.sql("INSERT INTO t VALUES (1)");
    daemon.transaction();
    let stored = nats.wait_for_messages("mine", 4, Duration::from_secs(20));
    assert_eq!(stored[2].subject, "cdc.shop.public.t.insert");
    let max = nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        js.get_stream("mine")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .max_messages
    });
    assert_eq!(max, 42, "an existing stream keeps its configuration");
    drop(daemon);
    s.wait_slot_inactive();

    let (code, stdout, stderr) = s.run_to_exit(
        Some(&nats),
        &["--nats-stream", "mine", "--nats-subject-prefix", "other"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("other.>") && stderr.contains("cdc.>"),
        "{stderr}"
    );

    // A new stream whose subjects another stream already captures: named.
    let (code, _, stderr) = s.run_to_exit(
        Some(&nats),
        &[
            "--nats-stream",
            "second",
            "--nats-subject-prefix",
            "cdc.shop",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--nats-stream mine"), "{stderr}");
}

#[test]
fn an_invalid_subject_prefix_is_a_usage_error() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let (code, _, stderr) = s.run_to_exit(Some(&nats), &["--nats-subject-prefix", "a.*"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--nats-subject-prefix"), "{stderr}");
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            s.slot
        )),
        "0"
    );
}

#[test]
fn names_with_separators_are_percent_encoded_into_one_token() {
    let nats = TestNats::start();
    let s = Scenario::new(
        r#"CREATE SCHEMA "my.schema"; CREATE TABLE "my.schema"."odd table>*%" (id int PRIMARY KEY)"#,
    );
    let daemon = s.start(Some(&nats), &[]);
    s.sql(r#"INSERT INTO "my.schema"."odd table>*%" VALUES (1)"#);
    daemon.transaction();
    let stored = nats.wait_for_messages(STREAM, 4, Duration::from_secs(20));
    assert_eq!(
        stored[2].subject,
        "postgres.my%2Eschema.odd%20table%3E%2A%25.insert"
    );
    assert_eq!(stored[2].json()["table"], json!("odd table>*%"));
}

#[test]
fn replaying_the_same_changes_adds_no_duplicates() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    // A copy of the slot at its starting position lets the test rewind it later.
    s.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        s.slot
    ));
    s.sql(&format!(
        "SELECT pg_copy_logical_replication_slot('{0}', '{0}_rewind')",
        s.slot
    ));
    let daemon = s.start(Some(&nats), &[]);
    s.sql("INSERT INTO t SELECT generate_series(1, 50)");
    // Two transactions: psql commits each statement.
    s.sql("INSERT INTO t VALUES (51); INSERT INTO t VALUES (52)");
    let first: Vec<Vec<Value>> = (0..3).map(|_| daemon.transaction()).collect();
    let first_ids: Vec<String> = first
        .iter()
        .flat_map(|tx| message_ids(&s.slot, tx))
        .collect();
    let before = nats.wait_for_messages(STREAM, first_ids.len(), Duration::from_secs(20));
    assert_eq!(stored_ids(&before), first_ids);
    drop(daemon);
    s.wait_slot_inactive();

    // Rewind: the slot of the same name starts again before the three transactions.
    s.sql(&format!("SELECT pg_drop_replication_slot('{}')", s.slot));
    s.sql(&format!(
        "SELECT pg_copy_logical_replication_slot('{0}_rewind', '{0}')",
        s.slot
    ));
    let daemon = s.start(Some(&nats), &[]);
    let mut second: Vec<Vec<Value>> = (0..3).map(|_| daemon.transaction()).collect();
    // Relation events aside (see below), the same events were sent again.
    let changes = |txs: &[Vec<Value>]| -> Vec<Value> {
        let events = txs.iter().flatten();
        events.filter(|e| e["op"] != "relation").cloned().collect()
    };
    assert_eq!(
        changes(&second),
        changes(&first),
        "the transactions were sent again"
    );
    s.sql("INSERT INTO t VALUES (53)");
    second.push(daemon.transaction());
    let new_commit_lsn = second[3][0]["commit_lsn"].as_str().unwrap();
    // The server may describe the table once more before any change (after an
    // invalidation, e.g. by a concurrent ANALYZE): such a relation event of the
    // replay has a new id and is added too. Every other event of the replay
    // has the id of a stored message.
    let added: Vec<String> = second
        .iter()
        .flat_map(|tx| message_ids(&s.slot, tx))
        .filter(|id| !first_ids.contains(id))
        .collect();
    let after = nats.wait_for_messages_until(
        async_nats::ConnectOptions::new(),
        STREAM,
        before.len() + 3,
        Duration::from_secs(20),
        |stored| {
            stored.iter().any(|m| {
                m.header("Pg-Op") == "commit" && m.header("Pg-Commit-Lsn") == new_commit_lsn
            })
        },
    );
    assert_eq!(stored_ids(&after), [first_ids, added].concat());
    // Only the new transaction's begin, insert and commit were added, besides
    // such relation events.
    let added_ops: Vec<String> = ops(&after[before.len()..])
        .into_iter()
        .filter(|op| op != "relation")
        .collect();
    assert_eq!(added_ops, ["begin", "insert", "commit"]);
    s.sql(&format!(
        "SELECT pg_drop_replication_slot('{}_rewind')",
        s.slot
    ));
}

/// The stream's configuration as the server reports it (with the fields
/// async-nats does not know).
fn raw_stream_config(nats: &TestNats, stream: &str) -> Value {
    nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        let info: Value = js
            .request(format!("STREAM.INFO.{stream}"), &json!({}))
            .await
            .expect("stream info");
        info["config"].clone()
    })
}

/// Counters from the daemon's metrics endpoint on `port`.
fn counter(port: u16, name: &str) -> f64 {
    metric(&http_get(port, "/metrics").1, name).unwrap_or(-1.0)
}

#[test]
fn large_transactions_are_published_in_batches_settled_by_flow_acks() {
    let nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY, note text)");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = s.start(Some(&nats), &["--no-stdout", "--metrics-addr", &addr]);
    assert_eq!(
        raw_stream_config(&nats, STREAM)["allow_batched"],
        true,
        "a stream the daemon creates takes batches"
    );
    s.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    let end = s.wal_position();
    // begin, relation, 20,000 inserts, commit.
    s.wait_confirmed_past(&end, Duration::from_secs(120));
    let stored = nats.messages(STREAM);
    assert_eq!(stored.len(), 20_003);
    let ids = stored_ids(&stored);
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a message stored twice");
    let rows: Vec<i64> = stored
        .iter()
        .filter(|m| m.header("Pg-Op") == "insert")
        .map(|m| m.json()["new"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        rows,
        (1..=20_000).collect::<Vec<_>>(),
        "rows in commit order"
    );
    let batches = counter(port, "pgoutput_stream_jetstream_batches_total");
    assert!(batches >= 1.0, "no batch was used: {batches}");
    assert_eq!(counter(port, "pgoutput_stream_publish_failures_total"), 0.0);
    // A single-row transaction is not worth a batch: published with its own ack.
    s.sql("INSERT INTO t VALUES (0, 'one')");
    s.wait_confirmed_past(&s.wal_position(), Duration::from_secs(30));
    // pgoutput sends the relation again when its cache was invalidated (an
    // autovacuum after the large insert does that).
    let added: Vec<String> = ops(&nats.messages(STREAM)[20_003..])
        .into_iter()
        .filter(|op| op != "relation")
        .collect();
    assert_eq!(added, ["begin", "insert", "commit"]);
    assert_eq!(
        counter(port, "pgoutput_stream_jetstream_batches_total"),
        batches
    );
    drop(daemon);
    s.wait_slot_inactive();

    // A stream that exists without allow_batched is used as it is: every
    // event with its own ack, and a line saying what batches would save.
    nats.with_client(async_nats::ConnectOptions::new(), async |js| {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "plain".into(),
            subjects: vec!["plain.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    });
    let args = [
        "--no-stdout",
        "--metrics-addr",
        &addr,
        "--nats-stream",
        "plain",
        "--nats-subject-prefix",
        "plain",
    ];
    let daemon = s.start(Some(&nats), &args);
    daemon.wait_for_log("allow_batched", Duration::from_secs(10));
    s.sql("INSERT INTO t SELECT g, 'y' FROM generate_series(20001, 25000) g");
    s.wait_confirmed_past(&s.wal_position(), Duration::from_secs(120));
    assert_eq!(nats.message_count("plain"), 5_003);
    assert_eq!(
        counter(port, "pgoutput_stream_jetstream_batches_total"),
        0.0
    );
    assert_ne!(raw_stream_config(&nats, "plain")["allow_batched"], true);
    drop(daemon);
}

#[test]
fn a_nats_outage_holds_the_slot_and_loses_nothing() {
    let mut nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY, note text)");
    let daemon = s.start(Some(&nats), &["--no-stdout"]);
    s.sql("INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g");
    nats.wait_for_messages(STREAM, 103, Duration::from_secs(20));

    nats.pause();
    for batch in 0..10 {
        let from = 101 + batch * 100;
        s.sql(&format!(
            "INSERT INTO t SELECT g, 'during' FROM generate_series({from}, {}) g",
            from + 99
        ));
    }
    // Publishing fails and is retried; meanwhile the slot stays where it was.
    daemon.wait_for_log("retrying", Duration::from_secs(60));
    let held = s.confirmed_flush();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.confirmed_flush(),
        held,
        "the slot moved while NATS was down"
    );

    nats.resume();
    s.sql("INSERT INTO t SELECT g, 'after' FROM generate_series(1101, 1200) g");
    // 12 transactions of 100 rows: 1200 inserts + 12 begins + 12 commits + 1 relation
    // (or more: the server may describe the table again before any change).
    let stored = nats.wait_for_messages_until(
        async_nats::ConnectOptions::new(),
        STREAM,
        1225,
        Duration::from_secs(60),
        |stored| {
            stored
                .iter()
                .filter(|m| m.header("Pg-Op") == "commit")
                .count()
                >= 12
        },
    );
    let mut ids: Vec<i64> = stored
        .iter()
        .filter(|m| m.header("Pg-Op") == "insert")
        .map(|m| m.json()["new"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=1200).collect::<Vec<_>>(),
        "every row arrived exactly once"
    );
    wait_until(Duration::from_secs(10), || {
        match s.confirmed_flush() == held {
            true => Err("the slot did not move again once acked".to_owned()),
            false => Ok(()),
        }
    });
    drop(daemon);
}

#[test]
fn token_and_user_password_authentication() {
    let nats = TestNats::start_with(NatsOptions {
        conf: vec!["authorization { token: \"t0ken-s3cret\" }".into()],
    });
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    // At trace level too: the NATS client's own connection logs would show it.
    let daemon = s.start(
        Some(&nats),
        &["--nats-token", "t0ken-s3cret", "--log-level", "trace"],
    );
    s.sql("INSERT INTO t VALUES (1)");
    daemon.transaction();
    // The stdout line can come before JetStream has stored the messages.
    let stored = nats.wait_for_messages_with(
        async_nats::ConnectOptions::with_token("t0ken-s3cret".into()),
        STREAM,
        4,
        Duration::from_secs(20),
    );
    assert_eq!(ops(&stored), ["begin", "relation", "insert", "commit"]);
    assert!(
        !daemon.stderr().contains("t0ken-s3cret"),
        "token leaked into the log"
    );
    drop(daemon);
    s.wait_slot_inactive();

    let (code, _, stderr) = s.run_to_exit(Some(&nats), &["--nats-token", "wrong-token"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("wrong-token"), "{stderr}");
    // One line, naming what to check (the client's own error line is not repeated).
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--nats-token"), "{stderr}");

    let nats = TestNats::start_with(NatsOptions {
        conf: vec!["authorization { user: cdc, password: \"pa55word\" }".into()],
    });
    let daemon = s.start(
        Some(&nats),
        &["--nats-user", "cdc", "--nats-password", "pa55word"],
    );
    s.sql("INSERT INTO t VALUES (2)");
    // The killed daemon had most likely not confirmed the first transaction
    // yet, so this one may send it again first: wait for the new row's, not
    // for a count or the next stdout transaction.
    let is_row =
        |id: i64| move |m: &Stored| m.header("Pg-Op") == "insert" && m.json()["new"]["id"] == id;
    let is_row_2 = is_row(2);
    let as_cdc =
        || async_nats::ConnectOptions::with_user_and_password("cdc".into(), "pa55word".into());
    let stored =
        nats.wait_for_messages_until(as_cdc(), STREAM, 3, Duration::from_secs(20), |stored| {
            stored
                .iter()
                .position(is_row_2)
                .is_some_and(|at| stored[at..].iter().any(|m| m.header("Pg-Op") == "commit"))
        });
    let row_2 = stored.iter().position(is_row_2).unwrap();
    let begin = stored[..row_2]
        .iter()
        .rposition(|m| m.header("Pg-Op") == "begin")
        .expect("a begin before the row");
    // A relation event may precede the row (it is a new session's first
    // change of the table unless the first transaction was sent again).
    let transaction: Vec<String> = ops(&stored[begin..])
        .into_iter()
        .filter(|op| op != "relation")
        .collect();
    assert_eq!(
        transaction,
        ["begin", "insert", "commit"],
        "{:?}",
        ops(&stored)
    );
    assert!(!daemon.stderr().contains("pa55word"));
    drop(daemon);
    s.wait_slot_inactive();

    // The same credentials written in the address, percent-encoded where needed.
    let url = format!("nats://cdc:pa55%77ord@127.0.0.1:{}", nats.port());
    let daemon = s.start(None, &["--nats-server", &url]);
    s.sql("INSERT INTO t VALUES (3)");
    nats.wait_for_messages_until(as_cdc(), STREAM, 1, Duration::from_secs(20), |stored| {
        stored.iter().any(is_row(3))
    });
    assert!(!daemon.stderr().contains("pa55"), "{}", daemon.stderr());
}

#[test]
fn tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), server.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();

    let nats = TestNats::start_with(NatsOptions {
        conf: vec![format!(
            "tls {{ cert_file: {:?}, key_file: {:?} }}",
            path("server.pem"),
            path("server.key")
        )],
    });
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let ca_file = path("ca.pem");
    let daemon = s.start(Some(&nats), &["--nats-tls-ca", &ca_file]);
    s.sql("INSERT INTO t VALUES (1)");
    daemon.transaction();
    // The stdout line can come before JetStream has stored the messages.
    let stored = nats.wait_for_messages_with(
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca_file.clone().into())
            .require_tls(true),
        STREAM,
        4,
        Duration::from_secs(20),
    );
    assert_eq!(ops(&stored), ["begin", "relation", "insert", "commit"]);
}

#[test]
fn an_event_over_the_servers_max_payload_stops_the_daemon_with_a_clear_error() {
    let nats = TestNats::start_with(NatsOptions {
        conf: vec!["max_payload: 8192".into()],
    });
    let s = Scenario::new("CREATE TABLE docs (id int PRIMARY KEY, body text)");
    let daemon = s.start(Some(&nats), &["--no-stdout"]);
    s.sql("INSERT INTO docs VALUES (1, 'small')");
    nats.wait_for_messages(STREAM, 4, Duration::from_secs(20));
    s.sql("INSERT INTO docs VALUES (2, repeat('x', 20000))");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("max_payload") && last.contains("public.docs"),
        "{last}"
    );
    // The big row was not confirmed: a restart (with a bigger limit) sends it again.
    let stored = nats.messages(STREAM);
    assert!(stored.iter().all(|m| !m.payload.contains("xxxxxxxx")));
    s.wait_slot_inactive();
    let pending = s.sql(&format!(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('{}', NULL, NULL, \
         'proto_version', '1', 'publication_names', 'pub')",
        s.slot
    ));
    assert_ne!(pending, "0", "the transaction is still in the slot");
}
