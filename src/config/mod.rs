//! Configuration: the command line (every flag also read from a
//! `PGOUTPUT_STREAM_<FLAG>` environment variable) and the connection string.

pub mod conninfo;
pub mod filter;
pub mod nats;

use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};

use crate::lsn::Lsn;

pub use filter::{FilterArgs, Op};
pub use nats::{NatsArgs, Storage};

const EXAMPLES: &str = "\
Example:
  # once, in the database (as a superuser or the table owner):
  #   ALTER SYSTEM SET wal_level = logical;   -- then restart PostgreSQL
  #   CREATE PUBLICATION shop_pub FOR TABLE orders, customers;
  pgoutput-stream --connection 'host=db.internal user=cdc dbname=shop' \\
      --slot shop_cdc --publication shop_pub --create-slot | jq .

  Every event is one JSON line on stdout; logs go to stderr.
  The password comes from the connection string, PGPASSWORD or ~/.pgpass.

  # publish to NATS JetStream only (subjects postgres.<schema>.<table>.<op>):
  pgoutput-stream -c 'host=db.internal user=cdc dbname=shop' -s shop_cdc -p shop_pub \\
      --nats-server nats://nats.internal:4222 --no-stdout --metrics-addr 0.0.0.0:9187

Exit codes:
  0  stopped by SIGINT/SIGTERM or because stdout was closed
  1  runtime failure (server unreachable at start-up, slot in use without --standby, bad data
     from the server, an event over NATS's max_payload); a lost connection is retried instead
  2  usage or configuration error (bad flag or connection string, wal_level, non-UTF8 database,
     missing publication or slot, role without REPLICATION, refused NATS credentials)";

/// Output format of the stdout target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One compact JSON object per line.
    Json,
    /// Indented JSON, one object after another.
    JsonPretty,
    /// One human-readable line per event, in the style of the test_decoding plugin.
    Text,
    /// The Debezium PostgreSQL connector's JSON envelope, one per line; also the
    /// JetStream payload (see docs/formats.md).
    Debezium,
}

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-23T09:41:00Z  INFO target: Message. key=value ...`
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pgoutput-stream",
    version,
    about = "Stream PostgreSQL changes (logical replication, pgoutput) as JSON events",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// PostgreSQL connection string: `key=value` pairs or a postgres:// URL.
    #[arg(
        short = 'c',
        long,
        env = "PGOUTPUT_STREAM_CONNECTION",
        hide_env_values = true
    )]
    pub connection: String,

    /// Logical replication slot to read (created with --create-slot when missing).
    #[arg(short = 's', long, env = "PGOUTPUT_STREAM_SLOT", value_parser = parse_slot_name)]
    pub slot: String,

    /// Publication whose tables are streamed.
    #[arg(short = 'p', long, env = "PGOUTPUT_STREAM_PUBLICATION", value_parser = parse_publication)]
    pub publication: String,

    /// Create the slot (plugin pgoutput) if it does not exist.
    #[arg(long, env = "PGOUTPUT_STREAM_CREATE_SLOT", value_parser = BoolishValueParser::new())]
    pub create_slot: bool,

    /// `initial`: when this run creates the slot, first publish every row of the
    /// publication's tables as a `read` event, read from the slot's exported snapshot,
    /// then stream from its consistent point; an interrupted snapshot resumes with the
    /// tables not finished. `never`: only changes.
    #[arg(long, value_enum, default_value_t = SnapshotMode::Never, env = "PGOUTPUT_STREAM_SNAPSHOT")]
    pub snapshot: SnapshotMode,

    /// Where the snapshot's progress is kept when the JetStream output is off
    /// (with it, in the JetStream key-value bucket `pgoutput_stream_snapshots`).
    #[arg(long, env = "PGOUTPUT_STREAM_SNAPSHOT_STATE_FILE", value_name = "PATH")]
    pub snapshot_state_file: Option<std::path::PathBuf>,

    /// Start from this LSN (e.g. 16/B374D848) instead of the slot's confirmed position;
    /// the server never goes back before the confirmed position.
    #[arg(long, env = "PGOUTPUT_STREAM_START_LSN", value_parser = parse_lsn)]
    pub start_lsn: Option<Lsn>,

    /// Format of the events written to stdout.
    #[arg(long, value_enum, default_value_t = Format::Json, env = "PGOUTPUT_STREAM_FORMAT")]
    pub format: Format,

    /// Do not write events to stdout.
    #[arg(long, env = "PGOUTPUT_STREAM_NO_STDOUT", value_parser = BoolishValueParser::new())]
    pub no_stdout: bool,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter such as
    /// `pgoutput_stream=debug`); RUST_LOG is used when this is not given.
    #[arg(long, env = "PGOUTPUT_STREAM_LOG_LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// Format of the log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PGOUTPUT_STREAM_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Longest time between two standby status updates sent to the server.
    #[arg(long, default_value = "10s", env = "PGOUTPUT_STREAM_STATUS_INTERVAL", value_parser = parse_positive_duration)]
    pub status_interval: Duration,

    /// When the slot is in use by another process, wait and take it over once it is
    /// released, instead of failing: run two instances with this flag for availability.
    #[arg(long, env = "PGOUTPUT_STREAM_STANDBY", value_parser = BoolishValueParser::new())]
    pub standby: bool,

    /// Longest wait between two attempts to reconnect to PostgreSQL after the
    /// connection was lost (the wait doubles from 500ms up to this, with jitter).
    #[arg(long, default_value = "30s", env = "PGOUTPUT_STREAM_RECONNECT_MAX_BACKOFF", value_parser = parse_duration)]
    pub reconnect_max_backoff: Duration,

    /// On SIGINT/SIGTERM, how long to wait for the outputs to take (and JetStream to
    /// acknowledge) what was already read before confirming it and exiting.
    #[arg(long, default_value = "30s", env = "PGOUTPUT_STREAM_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) on this
    /// address, e.g. 127.0.0.1:9187, localhost:9187 or :9187 (every interface). Off by default.
    #[arg(long, env = "PGOUTPUT_STREAM_METRICS_ADDR", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Write a tiny non-transactional logical message (prefix `pgoutput-stream.heartbeat`,
    /// not forwarded) this often, so the slot's position moves even when the published
    /// tables are idle. Off by default; `off` turns it off (over the environment variable).
    #[arg(long, env = "PGOUTPUT_STREAM_HEARTBEAT_INTERVAL", value_parser = parse_interval_or_off)]
    pub heartbeat_interval: Option<Duration>,

    /// Have the server stream large in-progress transactions (pgoutput protocol
    /// version 2, PostgreSQL 14+) instead of spilling them to its own disk until
    /// they commit; only committed changes are published, in commit order.
    #[arg(long, env = "PGOUTPUT_STREAM_STREAMING", value_parser = BoolishValueParser::new())]
    pub streaming: bool,

    /// With --streaming: memory for in-progress transactions' changes; beyond it
    /// the largest moves to a temporary file.
    #[arg(long, default_value = "64MB", env = "PGOUTPUT_STREAM_STREAMING_MEMORY", value_parser = parse_size)]
    pub streaming_memory: u64,

    /// When the slot is at least this far behind the server's WAL (e.g. after downtime),
    /// read the backlog through SQL in large chunks (`pg_logical_slot_get_binary_changes` on
    /// two temporary copies of the slot, which need two free replication slots, then
    /// `pg_replication_slot_advance` once the outputs have durably taken each chunk),
    /// which is several times faster than streaming, then switch to streaming.
    /// `off` always streams.
    #[arg(long, default_value = "16MB", env = "PGOUTPUT_STREAM_CATCH_UP_THRESHOLD", value_parser = parse_size_or_off)]
    pub catch_up_threshold: CatchUpThreshold,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub nats: NatsArgs,
}

impl Cli {
    /// How often to write a heartbeat message; `None`: never.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat_interval
            .filter(|interval| !interval.is_zero())
    }
}

fn parse_lsn(s: &str) -> Result<Lsn, String> {
    s.parse()
        .map_err(|e: crate::lsn::ParseLsnError| e.to_string())
}

/// Slot names are restricted by the server to lower-case letters, digits and underscores.
fn parse_slot_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(s.to_string())
    } else {
        Err("a slot name is 1 to 63 characters: lower-case letters, digits and underscores".into())
    }
}

/// Durations as `250ms`, `10s`, `5m` or a bare number of seconds.
fn parse_publication(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a publication name is required".to_owned());
    }
    Ok(s.to_owned())
}

/// A level, or a filter: a bare word that is not a level would be taken for
/// a module name and silence every line.
fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bare_word = !s.contains(['=', ',', ':']);
    if bare_word
        && !LEVELS
            .iter()
            .any(|level| level.eq_ignore_ascii_case(s.trim()))
    {
        return Err(format!(
            "expected a level ({}) or a filter such as pgoutput_stream=debug",
            LEVELS.join(", ")
        ));
    }
    Ok(s.to_owned())
}

/// `IP:port`, `host:port` (resolved once) or `:port` (every interface).
fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_owned(),
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| "expected IP:port, host:port or :port, e.g. 127.0.0.1:9187".to_owned())
}

/// Durations as `500ms`, `10s`, `5m`, `1h30m`, `2days` (humantime's syntax),
/// or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(s)
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 10s, 5m or 1h30m"))
}

/// Whether the tables' existing rows are published first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotMode {
    Initial,
    Never,
}

/// How far behind the slot must be for catching up through SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpThreshold {
    /// Always stream.
    Off,
    /// At least this many bytes of WAL behind.
    Bytes(u64),
}

/// Sizes as `16MB`, `512kB`, `1GB` (powers of 1024, as in PostgreSQL) or bytes, or `off`.
fn parse_size_or_off(s: &str) -> Result<CatchUpThreshold, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(CatchUpThreshold::Off);
    }
    match parse_size(s)? {
        // Nothing is ever less than 0 bytes behind: it would never stream.
        0 => Err("must be more than 0 (off always streams)".to_owned()),
        bytes => Ok(CatchUpThreshold::Bytes(bytes)),
    }
}

/// Sizes as `16MB`, `512kB`, `1GB`, `1TB` (powers of 1024, as in PostgreSQL;
/// any case, `MiB` too) or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let invalid = || format!("invalid size {s:?}: use e.g. 16MB, 512kB, 1GB or off");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| invalid())?;
    // Any case, with or without the binary "i": all are powers of 1024.
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        "tb" | "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    n.checked_mul(scale).ok_or_else(invalid)
}

/// A positive duration, or `off` (zero: see [`Cli::heartbeat`]).
fn parse_interval_or_off(s: &str) -> Result<Duration, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    parse_positive_duration(s).map_err(|err| format!("{err} (or off)"))
}

/// A duration of more than zero.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec!["pgoutput-stream"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
    }

    #[test]
    fn minimal_command_line_has_documented_defaults() {
        let cli = parse(&["-c", "dbname=shop", "-s", "shop_cdc", "-p", "shop_pub"]).unwrap();
        assert_eq!(cli.slot, "shop_cdc");
        assert_eq!(cli.format, Format::Json);
        assert!(!cli.no_stdout && !cli.create_slot);
        assert_eq!(cli.start_lsn, None);
        assert_eq!(cli.status_interval, Duration::from_secs(10));
    }

    #[test]
    fn sizes_take_units_or_off() {
        use CatchUpThreshold::{Bytes, Off};
        assert_eq!(parse_size_or_off("16MB"), Ok(Bytes(16 << 20)));
        assert_eq!(parse_size_or_off("512kB"), Ok(Bytes(512 << 10)));
        assert_eq!(parse_size_or_off("2GB"), Ok(Bytes(2 << 30)));
        assert!(parse_size_or_off("0").is_err());
        assert!(parse_size_or_off("0MB").is_err());
        assert_eq!(parse_size_or_off("1"), Ok(Bytes(1)));
        assert_eq!(parse_size_or_off("16mb"), Ok(Bytes(16 << 20)));
        assert_eq!(parse_size_or_off("16MiB"), Ok(Bytes(16 << 20)));
        assert_eq!(parse_size_or_off("1TB"), Ok(Bytes(1 << 40)));
        assert_eq!(parse_size_or_off("1000"), Ok(Bytes(1000)));
        assert_eq!(parse_size_or_off("off"), Ok(Off));
        for bad in ["", "MB", "16 XB", "-1MB", "99999999999999999999GB"] {
            assert!(parse_size_or_off(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_take_the_usual_forms() {
        let addr = |s: &str| parse_listen_addr(s).map(|a| a.to_string());
        assert_eq!(addr("127.0.0.1:9187").as_deref(), Ok("127.0.0.1:9187"));
        assert_eq!(addr(":9187").as_deref(), Ok("0.0.0.0:9187"));
        assert!(addr("localhost:9187").is_ok_and(|a| a.ends_with(":9187")));
        assert!(addr("9187").is_err());
        assert!(addr("127.0.0.1").is_err());
    }

    #[test]
    fn a_log_level_is_a_level_or_a_filter_not_any_word() {
        for ok in [
            "info",
            "DEBUG",
            "pgoutput_stream=debug",
            "info,async_nats=warn",
            "off",
        ] {
            assert_eq!(parse_log_level(ok).as_deref(), Ok(ok));
        }
        assert!(parse_log_level("verbose").is_err());
        assert!(parse_publication("").is_err());
    }

    #[test]
    fn rejects_slot_names_the_server_would_refuse() {
        for bad in ["Shop", "a-b", "", "a.b"] {
            let err = parse(&["-c", "x", "-s", bad, "-p", "p"]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn parses_start_lsn_and_format() {
        let cli = parse(&[
            "-c",
            "x",
            "-s",
            "s",
            "-p",
            "p",
            "--start-lsn",
            "16/B374D848",
            "--format",
            "json-pretty",
        ])
        .unwrap();
        assert_eq!(cli.start_lsn, Some(Lsn(0x16_B374_D848)));
        assert_eq!(cli.format, Format::JsonPretty);
        assert!(parse(&["-c", "x", "-s", "s", "-p", "p", "--start-lsn", "nope"]).is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2days"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn the_heartbeat_can_be_turned_off_over_the_environment() {
        let base = ["-c", "x", "-s", "s", "-p", "p"];
        let with = |value: &str| parse(&[&base[..], &["--heartbeat-interval", value]].concat());
        assert_eq!(parse(&base).unwrap().heartbeat(), None);
        assert_eq!(
            with("30s").unwrap().heartbeat(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(with("off").unwrap().heartbeat(), None);
        assert_eq!(with("OFF").unwrap().heartbeat(), None);
        let zero = with("0").unwrap_err().to_string();
        assert!(zero.contains("more than zero (or off)"), "{zero}");
    }

    #[test]
    fn every_flag_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        let command = <Cli as clap::CommandFactory>::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            assert!(
                doc.contains(&format!("`--{long}`")),
                "--{long} is not in docs/configuration.md"
            );
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let env = env.unwrap_or_else(|| panic!("--{long} has no environment variable"));
            assert!(
                doc.contains(&format!("`{env}`")),
                "{env} is not in docs/configuration.md"
            );
        }
    }

    #[test]
    fn help_shows_a_worked_example() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("--create-slot | jq"), "{help}");
        assert!(help.contains("Exit codes"), "{help}");
    }
}
