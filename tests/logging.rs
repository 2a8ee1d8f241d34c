//! Logs: one structured line per state change, never one per event, as text
//! or as JSON lines.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::scenario::Scenario;

#[test]
fn json_logs_are_one_object_per_line_naming_each_state_change() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(None, &["--log-format", "json"]);
    s.sql("INSERT INTO t VALUES (1)");
    daemon.transaction();
    let (status, stderr) = daemon.interrupt();
    assert!(status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let streaming = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Streaming changes.")
        .expect("a line for the start of streaming");
    assert_eq!(streaming["level"], "INFO");
    assert_eq!(streaming["fields"]["slot"], s.slot.as_str());
    assert!(streaming["fields"]["from_lsn"]
        .as_str()
        .is_some_and(|l| l.contains('/')));
    assert!(lines.iter().any(|l| l["fields"]["message"] == "Stopped."));
}

#[test]
fn the_default_level_logs_state_changes_not_events() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(None, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let before = daemon.stderr().lines().count();
    for i in 0..50 {
        s.sql(&format!("INSERT INTO t VALUES ({i})"));
    }
    for _ in 0..50 {
        daemon.transaction();
    }
    let after = daemon.stderr().lines().count();
    assert_eq!(before, after, "{}", daemon.stderr());
}

#[test]
fn with_json_logs_a_failure_is_a_json_line_too() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let slot = format!("{}_missing", s.slot);
    let args = s.args(None, &["--log-format", "json"]);
    // Without --create-slot the missing slot fails the start.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--create-slot")
        .map(|a| if a == s.slot { slot.as_str() } else { a })
        .collect();
    let (code, _, stderr) = support::daemon::run_to_exit(&args, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let last: Value = serde_json::from_str(stderr.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(last["level"], "ERROR");
    assert!(last["fields"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("--create-slot")));
    assert_eq!(last["fields"]["exit_code"], 2);
}

#[test]
fn flags_this_configuration_never_uses_are_warned_about() {
    let s = Scenario::new("CREATE TABLE t (id int PRIMARY KEY)");
    let daemon = s.start(None, &["--nats-token", "t0ken", "--ops", "read"]);
    let log = daemon.stderr();
    let ignored: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("A flag has no effect"))
        .collect();
    assert_eq!(ignored.len(), 2, "{log}");
    assert!(
        ignored[0].contains("--nats-token (no --nats-server)"),
        "{log}"
    );
    assert!(ignored[1].contains("--ops read"), "{log}");
    assert!(!log.contains("t0ken"), "the token was logged: {log}");
}
