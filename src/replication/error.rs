//! Errors of the replication connection, sorted by what the caller can do about them.

/// What went wrong talking to the server. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// TCP/Unix connect failed or timed out: retry later.
    #[error("cannot reach PostgreSQL at {target}: {source}")]
    Unreachable {
        /// `host:port` or the socket path.
        target: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up as the sslmode demands (bad certificate, server without TLS, ...).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server rejected the login (SQLSTATE class 28) or no password was available.
    #[error("authentication failed: {message}{}", sqlstate_suffix(.code))]
    Auth {
        /// SQLSTATE, empty when the failure was detected on our side.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Any other ErrorResponse from the server.
    #[error("server error: {message}{}", sqlstate_suffix(.code))]
    Server {
        /// SQLSTATE.
        code: String,
        /// The server's message (with detail and hint when given).
        message: String,
    },
    /// The connection broke after it was established.
    #[error("I/O error on the PostgreSQL connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// ` (SQLSTATE 28P01)`, or nothing for errors detected on our side.
fn sqlstate_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" (SQLSTATE {code})")
    }
}

impl ReplicationError {
    /// The SQLSTATE of a server-reported error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Auth { code, .. } | ReplicationError::Server { code, .. }
                if !code.is_empty() =>
            {
                Some(code)
            }
            _ => None,
        }
    }

    /// Auth (and TLS configuration problems) → true: only a config change fixes them (exit code 2).
    pub fn is_configuration(&self) -> bool {
        match self {
            ReplicationError::Auth { .. } | ReplicationError::Tls(_) => true,
            // invalid_catalog_name: the database in the connection string does not exist.
            ReplicationError::Server { code, .. } => code == "3D000",
            _ => false,
        }
    }

    /// Builds `Auth` for SQLSTATE class 28 (invalid authorization), `Server` otherwise.
    pub(crate) fn from_server(code: String, message: String) -> ReplicationError {
        if code.starts_with("28") {
            ReplicationError::Auth { code, message }
        } else {
            ReplicationError::Server { code, message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_28_is_an_auth_error_and_a_configuration_problem() {
        let e = ReplicationError::from_server("28P01".into(), "bad password".into());
        assert!(matches!(e, ReplicationError::Auth { .. }));
        assert!(e.is_configuration());
        assert_eq!(e.sqlstate(), Some("28P01"));
        assert_eq!(
            e.to_string(),
            "authentication failed: bad password (SQLSTATE 28P01)"
        );
        let e = ReplicationError::from_server("57P01".into(), "shutdown".into());
        assert!(matches!(e, ReplicationError::Server { .. }));
        assert!(!e.is_configuration());
        assert_eq!(e.sqlstate(), Some("57P01"));
        assert_eq!(e.to_string(), "server error: shutdown (SQLSTATE 57P01)");
        let local = ReplicationError::Auth {
            code: String::new(),
            message: "no password".into(),
        };
        assert_eq!(local.sqlstate(), None);
        assert_eq!(local.to_string(), "authentication failed: no password");
    }

    #[test]
    fn unreachable_names_the_target() {
        let e = ReplicationError::Unreachable {
            target: "127.0.0.1:5432".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(e
            .to_string()
            .starts_with("cannot reach PostgreSQL at 127.0.0.1:5432: "));
        assert!(!e.is_configuration());
        assert_eq!(e.sqlstate(), None);
    }
}
