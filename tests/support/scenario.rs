//! A database of its own with a publication for all tables, a slot name, and
//! the daemon's command line for them: the common set-up of end-to-end tests.

use std::time::Duration;

use super::daemon::{run_to_exit, Daemon};
use super::nats::TestNats;
use super::postgres::{shared, TestPostgres};
use super::wait_until;

pub struct Scenario<'pg> {
    pub pg: &'pg TestPostgres,
    pub db: String,
    pub slot: String,
}

impl Scenario<'static> {
    /// On the shared server: run `sql`, then `CREATE PUBLICATION pub FOR ALL TABLES`.
    pub fn new(sql: &str) -> Scenario<'static> {
        Scenario::on(shared(), sql)
    }
}

impl<'pg> Scenario<'pg> {
    pub fn on(pg: &'pg TestPostgres, sql: &str) -> Scenario<'pg> {
        Scenario::with_publication(pg, sql, "CREATE PUBLICATION pub FOR ALL TABLES")
    }

    /// Run `sql`, then `publication` (which must create a publication named `pub`).
    pub fn with_publication(pg: &'pg TestPostgres, sql: &str, publication: &str) -> Scenario<'pg> {
        let db = pg.create_database();
        pg.psql(&db, sql);
        pg.psql(&db, publication);
        let slot = format!(
            "s_{}",
            db.to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        Scenario { pg, db, slot }
    }

    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql(&self.db, sql)
    }

    pub fn conninfo(&self) -> String {
        self.pg.conninfo(&self.db)
    }

    /// The daemon's arguments: this database, slot and publication, `--create-slot`,
    /// 1 s status updates (unless `extra` sets them), JetStream when `nats` is given, then `extra`.
    pub fn args(&self, nats: Option<&TestNats>, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--connection",
            &self.conninfo(),
            "--slot",
            &self.slot,
            "--publication",
            "pub",
            "--create-slot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.contains(&"--status-interval") {
            args.extend(["--status-interval".to_string(), "1s".to_string()]);
        }
        if let Some(nats) = nats {
            args.push("--nats-server".into());
            args.push(nats.url());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Start the daemon and wait until it streams.
    pub fn start(&self, nats: Option<&TestNats>, extra: &[&str]) -> Daemon {
        let args = self.args(nats, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(&args)
    }

    /// Start the daemon without waiting for it to stream.
    pub fn spawn(&self, nats: Option<&TestNats>, extra: &[&str]) -> Daemon {
        let args = self.args(nats, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::spawn(&args, &[])
    }

    /// Run the daemon to completion (start-up failures): exit code, stdout, stderr.
    pub fn run_to_exit(
        &self,
        nats: Option<&TestNats>,
        extra: &[&str],
    ) -> (Option<i32>, String, String) {
        let args = self.args(nats, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(&args, &[])
    }

    pub fn confirmed_flush(&self) -> String {
        self.sql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
            self.slot
        ))
    }

    /// The PID of the backend streaming the slot, if it is active.
    pub fn active_pid(&self) -> Option<String> {
        let pid = self.sql(&format!(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{}' AND active",
            self.slot
        ));
        (!pid.is_empty()).then_some(pid)
    }

    /// Wait until the server has released the slot, and the daemon's SQL
    /// session its advisory lock on it.
    pub fn wait_slot_inactive(&self) {
        let locked = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
               AND ((classid::int8 << 32) | objid::int8) = hashtextextended('{}', 0)",
            pgoutput_stream::preflight::slot_lock_key(&self.slot)
        );
        wait_until(Duration::from_secs(10), || {
            if self.active_pid().is_none() && self.sql(&locked) == "0" {
                Ok(())
            } else {
                Err(format!("slot {} stayed active", self.slot))
            }
        })
    }

    /// The current WAL insert position: everything written so far ends before it.
    pub fn wal_position(&self) -> String {
        self.sql("SELECT pg_current_wal_insert_lsn()")
    }

    /// Wait until the slot's confirmed position has reached `target`.
    pub fn wait_confirmed_past(&self, target: &str, timeout: Duration) {
        let query = format!(
            "SELECT confirmed_flush_lsn >= '{target}' FROM pg_replication_slots WHERE slot_name = '{}'",
            self.slot
        );
        wait_until(timeout, || {
            if self.sql(&query) == "t" {
                Ok(())
            } else {
                Err(format!("slot {} did not confirm {target}", self.slot))
            }
        })
    }
}
