//! An ordinary SQL session (tokio-postgres) to the same target as the replication connection,
//! for pre-flight checks and slot management.

use crate::replication::ReplicationError;

use super::{ConnInfo, SslMode};

/// Errors of [`connect_sql`]; the same kinds as the replication connection's, so callers decide
/// retry-or-exit (`is_configuration`) the same way for both.
pub type ConnectError = ReplicationError;

/// Connects with tokio-postgres within `connect_timeout` and spawns its connection task.
pub async fn connect_sql(info: &ConnInfo) -> Result<tokio_postgres::Client, ConnectError> {
    let options: Vec<String> = crate::replication::OUTPUT_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect();
    let options = options.join(" ");
    let mut config = tokio_postgres::Config::new();
    config
        .host(&info.host)
        .port(info.port)
        .user(&info.user)
        .dbname(&info.dbname)
        .application_name(&info.application_name)
        // As the replication connection: values read here are formatted the same.
        .options(&options);
    if let Some(password) = &info.password {
        config.password(password);
    }
    // tokio-postgres's connect_timeout bounds the TCP connect only: a server
    // that accepts and never answers is bounded by the timeout around it all.
    let timeout = info.connect_timeout_or_default();
    config.connect_timeout(timeout);
    crate::replication::with_timeout(info, Some(timeout), open(config, info)).await
}

/// The connection itself, TLS per `sslmode`.
async fn open(
    mut config: tokio_postgres::Config,
    info: &ConnInfo,
) -> Result<tokio_postgres::Client, ConnectError> {
    // Unix sockets never use TLS (as in libpq), whatever the sslmode says.
    let ssl_mode = match info.sslmode {
        _ if info.is_unix_socket() => tokio_postgres::config::SslMode::Disable,
        SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    };
    config.ssl_mode(ssl_mode);
    let client = if ssl_mode == tokio_postgres::config::SslMode::Disable {
        // NoTls also for Unix sockets: the rustls connector would demand a TLS server name.
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| classify(e, info))?;
        spawn_connection(connection);
        client
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            crate::replication::tls::client_config(info)?
                .as_ref()
                .clone(),
        );
        let (client, connection) = config.connect(tls).await.map_err(|e| classify(e, info))?;
        spawn_connection(connection);
        client
    };
    Ok(client)
}

/// Drives the connection in the background; the client's calls fail once it ends.
fn spawn_connection<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(
                message = "SQL connection ended with an error.",
                error = SqlError(&error).to_string()
            );
        }
    });
}

/// An I/O error's text, with a hint where it means that what answered is not
/// a PostgreSQL server (a wrong port: tokio-postgres reports the bytes it
/// could not parse or the peer closing in the middle of the start-up).
fn not_postgres_hint(io: &std::io::Error) -> String {
    let text = io.to_string();
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    if matches!(io.kind(), UnexpectedEof | BrokenPipe | ConnectionReset)
        || text.contains("bytes remaining on stream")
    {
        format!("{text} (what answered is not a PostgreSQL server, or it closed the connection: check host and port)")
    } else {
        text
    }
}

/// Sorts a tokio-postgres error into our kinds: server errors by SQLSTATE, I/O failures before
/// the session existed as unreachable, certificate problems as TLS.
fn classify(error: tokio_postgres::Error, info: &ConnInfo) -> ConnectError {
    if let Some(db) = error.as_db_error() {
        return ReplicationError::from_server(db.code().code().to_string(), db.message().into());
    }
    let io = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io {
        Some(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ReplicationError::Tls(io.to_string())
        }
        Some(io) => ReplicationError::Unreachable {
            target: info.target(),
            source: std::io::Error::new(io.kind(), not_postgres_hint(io)),
        },
        // With its causes: tokio-postgres's own text is "error performing TLS handshake".
        None if error.to_string().contains("TLS") || error.to_string().contains("SSL") => {
            let text = SqlError(&error).to_string();
            if text.contains("does not support TLS") {
                crate::replication::no_tls(info)
            } else {
                ReplicationError::Tls(text)
            }
        }
        // tokio-postgres reports e.g. "password missing" as a configuration error: only a
        // config change fixes it, like a rejected login.
        None if error.to_string().starts_with("invalid configuration") => {
            let text = SqlError(&error).to_string();
            if text.contains("password missing") {
                crate::replication::no_password(info)
            } else {
                ReplicationError::Auth {
                    code: String::new(),
                    message: text,
                }
            }
        }
        None => ReplicationError::Protocol(error.to_string()),
    }
}

/// A SQL session's error as a person needs it: the server's message, SQLSTATE
/// and hint for an error the server sent (tokio-postgres shows only "db
/// error"), else the error with its causes.
pub struct SqlError<'a>(pub &'a tokio_postgres::Error);

impl std::fmt::Display for SqlError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(f, "{} (SQLSTATE {})", db.message(), db.code().code())?;
            if let Some(hint) = db.hint() {
                write!(f, "; {hint}")?;
            }
            return Ok(());
        }
        let shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}
