//! The NATS JetStream flags. The JetStream target is on when `--nats-server`
//! is given; authentication methods exclude one another.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::parse_duration;

/// Where JetStream keeps a stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    File,
    Memory,
}

/// NATS JetStream output.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "NATS JetStream output")]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (nats://host:4222, tls://host:4222); turns the JetStream output on.
    #[arg(
        long = "nats-server",
        env = "PGOUTPUT_STREAM_NATS_SERVER",
        // A URL can hold credentials: --help shows the variable, not its value.
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub servers: Vec<String>,

    /// JetStream stream receiving the events (created when missing).
    #[arg(
        long = "nats-stream",
        default_value = "postgres_replication",
        env = "PGOUTPUT_STREAM_NATS_STREAM",
        value_parser = parse_stream_name
    )]
    pub stream: String,

    /// Subject prefix: events go to <prefix>.<schema>.<table>.<op>.
    #[arg(
        long = "nats-subject-prefix",
        default_value = "postgres",
        env = "PGOUTPUT_STREAM_NATS_SUBJECT_PREFIX"
    )]
    pub subject_prefix: String,

    /// Credentials file (JWT and NKey seed) for authentication.
    #[arg(long = "nats-creds", env = "PGOUTPUT_STREAM_NATS_CREDS", value_name = "FILE",
          conflicts_with_all = ["nkey", "token", "user"])]
    pub creds: Option<PathBuf>,

    /// File holding an NKey seed for authentication.
    #[arg(long = "nats-nkey", env = "PGOUTPUT_STREAM_NATS_NKEY", value_name = "FILE",
          conflicts_with_all = ["token", "user"])]
    pub nkey: Option<PathBuf>,

    /// Token for authentication.
    #[arg(
        long = "nats-token",
        env = "PGOUTPUT_STREAM_NATS_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<String>,

    /// User name for authentication (with --nats-password).
    #[arg(
        long = "nats-user",
        env = "PGOUTPUT_STREAM_NATS_USER",
        requires = "password"
    )]
    pub user: Option<String>,

    /// Password for --nats-user.
    #[arg(
        long = "nats-password",
        env = "PGOUTPUT_STREAM_NATS_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,

    /// CA certificate (PEM) to verify the server with; turns TLS on.
    #[arg(
        long = "nats-tls-ca",
        env = "PGOUTPUT_STREAM_NATS_TLS_CA",
        value_name = "FILE"
    )]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS (with --nats-tls-key).
    #[arg(
        long = "nats-tls-cert",
        env = "PGOUTPUT_STREAM_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Client key (PEM) for mutual TLS (with --nats-tls-cert).
    #[arg(
        long = "nats-tls-key",
        env = "PGOUTPUT_STREAM_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Maximum number of published events awaiting their JetStream ack.
    #[arg(long = "nats-max-inflight", default_value_t = 4096, env = "PGOUTPUT_STREAM_NATS_MAX_INFLIGHT",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_inflight: u32,

    /// Acknowledge every event on its own, never in JetStream fast-ingest batches.
    #[arg(long = "nats-no-batch-publish", env = "PGOUTPUT_STREAM_NATS_NO_BATCH_PUBLISH",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_batch_publish: bool,

    /// Stream limit when the stream is created: maximum number of messages.
    #[arg(
        long = "nats-max-msgs",
        default_value_t = 1_000_000,
        env = "PGOUTPUT_STREAM_NATS_MAX_MSGS"
    )]
    pub max_msgs: i64,

    /// Stream limit when the stream is created: maximum size in bytes.
    #[arg(long = "nats-max-bytes", default_value_t = 1 << 30, env = "PGOUTPUT_STREAM_NATS_MAX_BYTES")]
    pub max_bytes: i64,

    /// Stream limit when the stream is created: maximum message age (0 = unlimited).
    #[arg(long = "nats-max-age", default_value = "0", env = "PGOUTPUT_STREAM_NATS_MAX_AGE",
          value_parser = parse_duration)]
    pub max_age: Duration,

    /// Storage of the stream when it is created.
    #[arg(long = "nats-storage", value_enum, default_value_t = Storage::File, env = "PGOUTPUT_STREAM_NATS_STORAGE")]
    pub storage: Storage,

    /// Replicas of the stream when it is created.
    #[arg(long = "nats-replicas", default_value_t = 1, env = "PGOUTPUT_STREAM_NATS_REPLICAS",
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,

    /// Deduplication window of the stream when it is created (events re-sent within it are dropped by the server).
    #[arg(long = "nats-duplicate-window", default_value = "2m", env = "PGOUTPUT_STREAM_NATS_DUPLICATE_WINDOW",
          value_parser = parse_duration)]
    pub duplicate_window: Duration,
}

impl NatsArgs {
    /// The JetStream output was asked for.
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }
}

/// A JetStream stream name: not empty, and none of the characters the server
/// refuses in one (it names subjects and files).
fn parse_stream_name(s: &str) -> Result<String, String> {
    const REFUSED: &[char] = &['.', '*', '>', '/', '\\'];
    if s.is_empty() {
        return Err("a stream name is required".to_owned());
    }
    if s.chars()
        .any(|c| REFUSED.contains(&c) || c.is_whitespace() || c.is_control())
    {
        return Err(
            "a stream name may not hold '.', '*', '>', '/', '\\' or whitespace; e.g. postgres_replication"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_stream_name;

    #[test]
    fn stream_names_the_server_would_refuse_are_refused_here() {
        assert!(parse_stream_name("postgres_replication").is_ok());
        assert!(parse_stream_name("Orders-2").is_ok());
        for bad in ["", "my.stream", "a b", "x*", "x>", "a/b"] {
            assert!(parse_stream_name(bad).is_err(), "{bad:?}");
        }
    }
}
