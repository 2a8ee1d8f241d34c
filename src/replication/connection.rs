//! Startup, authentication and the simple-query commands of a `replication=database` session.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;

use super::backend::{self, Frame};
use super::stream::ReplicationStream;
use super::wire::{self, Wire};
use super::ReplicationError;
use crate::config::conninfo::ConnInfo;
use crate::lsn::Lsn;

/// What `IDENTIFY_SYSTEM` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's unique system identifier.
    pub systemid: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// Database of this connection (`None` for physical replication connections).
    pub dbname: Option<String>,
}

/// A logged-in replication session, ready for commands.
pub struct ReplicationConnection {
    wire: Wire,
    server_version_num: u32,
}

impl ReplicationConnection {
    /// Startup with `replication=database`, auth (cleartext, MD5, SCRAM-SHA-256), TLS per sslmode
    /// (require: encrypt without verifying; verify-ca: chain against sslrootcert or webpki roots;
    /// verify-full: also the host name; prefer: try TLS, fall back to plain if the server says 'N';
    /// allow/disable: plain), TCP and Unix sockets, connect_timeout.
    pub async fn connect(info: &ConnInfo) -> Result<ReplicationConnection, ReplicationError> {
        let conn = wire::with_timeout(info, Some(info.connect_timeout_or_default()), async {
            let mut wire = Wire::open(info).await?;
            startup(&mut wire, info).await?;
            let version = authenticate(&mut wire, info).await?;
            Ok(ReplicationConnection {
                wire,
                server_version_num: backend::version_num(&version),
            })
        })
        .await?;
        tracing::debug!(
            message = "Connected to PostgreSQL for replication.",
            target = %info.target(),
            user = %info.user,
            dbname = %info.dbname,
            tls = conn.wire.tls,
            server_version_num = conn.server_version_num,
        );
        Ok(conn)
    }

    /// The server's version as a number, e.g. 150004 for 15.4.
    pub fn server_version_num(&self) -> u32 {
        self.server_version_num
    }

    /// Runs `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let bad = || ReplicationError::Protocol("unexpected IDENTIFY_SYSTEM result".into());
        let row = rows.first().ok_or_else(bad)?;
        let col = |i: usize| row.get(i).and_then(|v| v.clone());
        Ok(SystemInfo {
            systemid: col(0).ok_or_else(bad)?,
            timeline: col(1).and_then(|t| t.parse().ok()).ok_or_else(bad)?,
            xlogpos: col(2).and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            dbname: col(3),
        })
    }

    /// Runs one command with the simple query protocol and returns the rows of its result in
    /// text form (`None` for NULL). A server error is returned after the session is ready again,
    /// so the connection stays usable.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        self.send_query(sql).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = next(&mut self.wire).await?;
            match frame.tag {
                b'D' => rows.push(backend::data_row(&frame.body)?),
                b'T' | b'C' | b'I' | b'S' => {}
                b'E' => error = Some(backend::server_error(&frame.body)),
                b'N' => log_notice(&frame),
                b'Z' => return error.map_or(Ok(rows), Err),
                // COPY commands are not ours to run here; the server ends them on CopyFail.
                other => return Err(unexpected(other, "a simple query")),
            }
        }
    }

    /// Create a logical slot with pgoutput that exports its snapshot: returns
    /// the consistent point and the snapshot's name. The snapshot can be
    /// imported (`SET TRANSACTION SNAPSHOT`) only until this connection runs
    /// another command or closes.
    pub async fn create_slot_exporting_snapshot(
        &mut self,
        slot: &str,
    ) -> Result<(Lsn, String), ReplicationError> {
        let quoted = quote_identifier(slot);
        // PostgreSQL 15 introduced the option list; 14 has only the keyword form.
        let sql = if self.server_version_num >= 150_000 {
            format!("CREATE_REPLICATION_SLOT {quoted} LOGICAL pgoutput (SNAPSHOT 'export')")
        } else {
            format!("CREATE_REPLICATION_SLOT {quoted} LOGICAL pgoutput EXPORT_SNAPSHOT")
        };
        let rows = self.simple_query(&sql).await?;
        let bad = || ReplicationError::Protocol("unexpected CREATE_REPLICATION_SLOT result".into());
        let row = rows.first().ok_or_else(bad)?;
        let col = |i: usize| row.get(i).and_then(|v| v.clone());
        let consistent_point = col(1).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let snapshot = col(2).ok_or_else(bad)?;
        Ok((consistent_point, snapshot))
    }

    /// `START_REPLICATION SLOT "slot" LOGICAL X/Y (k 'v', ...)` (values single-quoted, quotes doubled)
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, ReplicationError> {
        let command = start_replication_command(slot, start, options);
        self.send_query(&command).await?;
        let mut error = None;
        loop {
            let frame = next(&mut self.wire).await?;
            match frame.tag {
                b'W' if error.is_none() => {
                    tracing::debug!(message = "Streaming changes.", slot, from = %start);
                    return Ok(ReplicationStream::new(self.wire));
                }
                b'E' => error = Some(backend::server_error(&frame.body)),
                b'N' => log_notice(&frame),
                b'S' | b'C' => {}
                b'Z' => {
                    return Err(error.unwrap_or_else(|| {
                        ReplicationError::Protocol(
                            "START_REPLICATION ended without streaming".into(),
                        )
                    }))
                }
                other => return Err(unexpected(other, "START_REPLICATION")),
            }
        }
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), ReplicationError> {
        self.wire.write_buf.clear();
        frontend::query(sql, &mut self.wire.write_buf)?;
        self.wire.flush_write_buf().await
    }
}

/// `name` as a double-quoted SQL identifier (quotes doubled): for slot names in
/// replication commands, table names in queries, and `publication_names`.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Builds the START_REPLICATION command; identifiers double-quoted, values single-quoted.
pub(crate) fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &[(&str, &str)],
) -> String {
    let mut command = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_identifier(slot)
    );
    if !options.is_empty() {
        let list: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} '{}'", quote_identifier(k), v.replace('\'', "''")))
            .collect();
        command.push_str(" (");
        command.push_str(&list.join(", "));
        command.push(')');
    }
    command
}

/// How the server writes values as text, set on every session that reads rows
/// (this one and the SQL sessions of catch-up and snapshot) whatever the
/// server's, database's or role's defaults: a value reads the same whichever
/// session wrote it, --format debezium can parse it, and text is exact (floats
/// with all their digits, so no two values print alike and share a message id).
pub const OUTPUT_SETTINGS: [(&str, &str); 4] = [
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

async fn startup(wire: &mut Wire, info: &ConnInfo) -> Result<(), ReplicationError> {
    let params = [
        ("user", info.user.as_str()),
        ("database", info.dbname.as_str()),
        ("replication", "database"),
        ("application_name", info.application_name.as_str()),
        ("client_encoding", "UTF8"),
    ];
    wire.write_buf.clear();
    let params = params.into_iter().chain(OUTPUT_SETTINGS);
    frontend::startup_message(params, &mut wire.write_buf)?;
    wire.flush_write_buf().await
}

/// Answers the server's authentication requests, then collects parameters until the session is
/// ready. Returns the `server_version` parameter.
async fn authenticate(wire: &mut Wire, info: &ConnInfo) -> Result<String, ReplicationError> {
    let mut scram: Option<ScramSha256> = None;
    let mut version = String::new();
    loop {
        let frame = next(wire).await?;
        match frame.tag {
            b'R' => {
                let body = &frame.body[..];
                let (kind, data) = match body.split_first_chunk::<4>() {
                    Some((kind, data)) => (i32::from_be_bytes(*kind), data),
                    None => return Err(ReplicationError::Protocol("short auth request".into())),
                };
                wire.write_buf.clear();
                match kind {
                    0 => continue,
                    3 => frontend::password_message(password(info)?, &mut wire.write_buf)?,
                    5 => {
                        let salt = data.first_chunk::<4>().copied().ok_or_else(|| {
                            ReplicationError::Protocol("MD5 request without salt".into())
                        })?;
                        let hash = md5_hash(info.user.as_bytes(), password(info)?, salt);
                        frontend::password_message(hash.as_bytes(), &mut wire.write_buf)?;
                    }
                    10 => {
                        let offers_scram = data
                            .split(|&b| b == 0)
                            .any(|m| m == SCRAM_SHA_256.as_bytes());
                        if !offers_scram {
                            return Err(ReplicationError::Auth {
                                code: String::new(),
                                message: "the server offers no SASL mechanism we support".into(),
                            });
                        }
                        // We never use channel binding, and say so ('n'): claiming support
                        // without using it would look like a downgrade attack over TLS.
                        let s = ScramSha256::new(password(info)?, ChannelBinding::unsupported());
                        frontend::sasl_initial_response(
                            SCRAM_SHA_256,
                            s.message(),
                            &mut wire.write_buf,
                        )?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| unexpected(b'R', "SASL"))?;
                        s.update(data).map_err(scram_error)?;
                        frontend::sasl_response(s.message(), &mut wire.write_buf)?;
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| unexpected(b'R', "SASL"))?;
                        s.finish(data).map_err(scram_error)?;
                        continue;
                    }
                    other => {
                        return Err(ReplicationError::Auth {
                            code: String::new(),
                            message: format!("unsupported authentication method (code {other})"),
                        })
                    }
                }
                wire.flush_write_buf().await?;
            }
            b'S' => {
                let (name, value) = backend::parameter_status(&frame.body);
                if name == "server_version" {
                    version = value;
                }
            }
            b'K' => {}
            b'N' => log_notice(&frame),
            b'E' => return Err(backend::server_error(&frame.body)),
            b'Z' => return Ok(version),
            other => return Err(unexpected(other, "authentication")),
        }
    }
}

fn password(info: &ConnInfo) -> Result<&[u8], ReplicationError> {
    info.password
        .as_deref()
        .map(str::as_bytes)
        .ok_or_else(|| no_password(info))
}

/// The server asked for a password and the connection string, PGPASSWORD and
/// the password file gave none.
pub(crate) fn no_password(info: &ConnInfo) -> ReplicationError {
    ReplicationError::Auth {
        code: String::new(),
        message: format!(
            "the server requires a password for user {:?}, but none was given: add password=... \
             to --connection, set PGPASSWORD, or add a ~/.pgpass entry (mode 0600)",
            info.user
        ),
    }
}

fn scram_error(e: std::io::Error) -> ReplicationError {
    ReplicationError::Auth {
        code: String::new(),
        message: format!("SCRAM authentication failed: {e}"),
    }
}

/// The next frame, treating end of file as an error (the server hung up on us).
async fn next(wire: &mut Wire) -> Result<Frame, ReplicationError> {
    wire.read_frame().await?.ok_or_else(|| {
        ReplicationError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ))
    })
}

pub(crate) fn log_notice(frame: &Frame) {
    let f = backend::error_fields(&frame.body);
    tracing::debug!(message = "Server notice.", severity = %f.severity, code = %f.code, text = %f.message);
}

fn unexpected(tag: u8, during: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "unexpected message type {:?} during {during}",
        char::from(tag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_doubled_quotes() {
        assert_eq!(quote_identifier("shop_pub"), "\"shop_pub\"");
        assert_eq!(quote_identifier("a\"b, c"), "\"a\"\"b, c\"");
    }

    #[test]
    fn start_replication_quotes_identifiers_and_values() {
        assert_eq!(
            start_replication_command(
                "my\"slot",
                Lsn(0x16_B374_D848),
                &[("proto_version", "1"), ("publication_names", "a'b")]
            ),
            "START_REPLICATION SLOT \"my\"\"slot\" LOGICAL 16/B374D848 \
             (\"proto_version\" '1', \"publication_names\" 'a''b')"
        );
        assert_eq!(
            start_replication_command("s", Lsn::ZERO, &[]),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0"
        );
    }
}
