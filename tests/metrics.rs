//! The metrics and health endpoints, scraped while the daemon streams, and
//! heartbeats.

mod support;

use std::time::Duration;

use support::nats::TestNats;
use support::scenario::Scenario;
use support::wait_until;
use support::{free_port, http_get as get, metric as sample};

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_until(timeout, || match check() {
        true => Ok(()),
        false => Err(format!("no {what}")),
    })
}

#[test]
fn metrics_and_health_are_served_while_streaming() {
    let mut nats = TestNats::start();
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = s.start(Some(&nats), &["--metrics-addr", &addr]);
    assert_eq!(get(port, "/healthz").0, 200);
    wait_for("readiness", Duration::from_secs(10), || {
        get(port, "/readyz").0 == 200
    });

    s.sql("INSERT INTO t VALUES (1), (2), (3)");
    daemon.transaction();
    let mut text = String::new();
    wait_for(
        "the inserts in the metrics",
        Duration::from_secs(20),
        || {
            text = get(port, "/metrics").1;
            sample(
                &text,
                r#"pgoutput_stream_events_total{op="insert",table="public.t"}"#,
            ) == Some(3.0)
                && sample(&text, "pgoutput_stream_published_bytes_total").unwrap_or(0.0) > 0.0
                && sample(&text, "pgoutput_stream_confirmed_lsn").unwrap_or(0.0) > 0.0
        },
    );
    assert_eq!(
        sample(
            &text,
            r#"pgoutput_stream_events_total{op="begin",table=""}"#
        ),
        Some(1.0)
    );
    assert!(
        sample(&text, "pgoutput_stream_received_lsn").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "pgoutput_stream_reconnects_total"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "pgoutput_stream_inflight_acks").is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "pgoutput_stream_seconds_since_last_event").is_some(),
        "{text}"
    );
    wait_for("the lag to be polled", Duration::from_secs(15), || {
        sample(
            &get(port, "/metrics").1,
            "pgoutput_stream_replication_lag_bytes",
        )
        .is_some()
    });

    // Not ready while NATS is down; a failed publish is counted.
    nats.pause();
    wait_for("unreadiness", Duration::from_secs(10), || {
        get(port, "/readyz").0 == 503
    });
    s.sql("INSERT INTO t VALUES (4)");
    wait_for("a counted publish failure", Duration::from_secs(30), || {
        sample(
            &get(port, "/metrics").1,
            "pgoutput_stream_publish_failures_total",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    nats.resume();
    wait_for("readiness again", Duration::from_secs(20), || {
        get(port, "/readyz").0 == 200
    });
    drop(daemon);
}

#[test]
fn heartbeats_move_the_slot_without_reaching_the_outputs() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    // A second slot shows what was written to the WAL of this database.
    let probe = format!("{}_probe", s.slot);
    s.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{probe}', 'test_decoding')"
    ));
    let daemon = s.start(None, &["--heartbeat-interval", "1s"]);
    let first = s.confirmed_flush();
    let heartbeats = format!(
        "SELECT count(*) FROM pg_logical_slot_peek_changes('{probe}', NULL, NULL) \
         WHERE data LIKE '%prefix: pgoutput-stream.heartbeat%'"
    );
    wait_for("two heartbeats", Duration::from_secs(20), || {
        s.sql(&heartbeats).parse::<u32>().unwrap_or(0) >= 2
    });
    wait_for("the slot to move", Duration::from_secs(20), || {
        s.confirmed_flush() != first
    });
    assert_eq!(
        daemon.next_line(Duration::from_millis(500)),
        None,
        "a heartbeat reached stdout"
    );
    s.sql("INSERT INTO t VALUES (1)");
    assert_eq!(
        daemon.transaction().len(),
        4,
        "begin, relation, insert, commit"
    );
    drop(daemon);
    s.wait_slot_inactive();
    s.sql(&format!("SELECT pg_drop_replication_slot('{probe}')"));
}
