//! Connection strings as libpq understands them: `key=value` lists and `postgres://` URIs, with
//! libpq's defaults (`PG*` environment variables, Unix socket directory, `~/.pgpass`).
//!
//! The password is kept out of every `Display` and `Debug` output and out of every error, so a
//! `ConnInfo` can be logged freely.

mod passfile;
mod sql;
mod syntax;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use sql::{connect_sql, ConnectError, SqlError};

/// The Unix socket directory Debian's and most distributions' servers use; libpq's default host
/// when it exists.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The `application_name` reported to the server unless the user chose another.
pub const DEFAULT_APPLICATION_NAME: &str = "pgoutput-stream";

/// Why a connection string was rejected. Never contains the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnInfoError {
    /// The string is not a valid `key=value` list or URI.
    #[error("invalid connection string: {0}")]
    Syntax(String),
    /// A key this program does not know (a typo would otherwise be silently ignored).
    #[error("{}", unknown_key(.key, *.hint))]
    UnknownKey { key: String, hint: Option<KeyHint> },
    /// The port is not a number between 1 and 65535.
    #[error("invalid port {0:?}: expected a number between 1 and 65535")]
    InvalidPort(String),
    /// The sslmode is not one of libpq's six modes.
    #[error(
        "invalid sslmode {0:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
    )]
    InvalidSslMode(String),
    /// connect_timeout is not a whole number of seconds.
    #[error("invalid connect_timeout {0:?}: expected a whole number of seconds")]
    InvalidConnectTimeout(String),
    /// More than one host or port was given; failover between hosts is not supported.
    #[error("multiple hosts or ports ({0:?}) are not supported: give exactly one host")]
    MultipleHosts(String),
    /// No user name anywhere: not in the string, PGUSER or USER.
    #[error("no user name: set user= in the connection string, or PGUSER")]
    NoUser,
}

/// What an unknown connection parameter probably is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHint {
    /// A misspelling of this parameter.
    Typo(&'static str),
    /// One of libpq's parameters that pgoutput-stream does not take.
    Unsupported,
}

/// Where [`Raw`] keeps a parameter's value.
type Field = fn(&mut Raw) -> &mut Option<String>;

/// The parameters pgoutput-stream takes, and where [`Raw`] keeps each: the
/// one list both parsing and the error messages read.
const KEYS: [(&str, Field); 12] = [
    ("host", |raw| &mut raw.host),
    ("port", |raw| &mut raw.port),
    ("user", |raw| &mut raw.user),
    ("password", |raw| &mut raw.password),
    ("dbname", |raw| &mut raw.dbname),
    ("sslmode", |raw| &mut raw.sslmode),
    ("sslrootcert", |raw| &mut raw.sslrootcert),
    ("sslcert", |raw| &mut raw.sslcert),
    ("sslkey", |raw| &mut raw.sslkey),
    ("application_name", |raw| &mut raw.application_name),
    ("connect_timeout", |raw| &mut raw.connect_timeout),
    ("passfile", |raw| &mut raw.passfile),
];

/// The names of [`KEYS`], for messages.
fn key_names() -> String {
    KEYS.map(|(name, _)| name).join(", ")
}

/// libpq's other parameters (PostgreSQL 17): valid in a connection string
/// elsewhere, not taken here.
const LIBPQ_ONLY_KEYS: [&str; 29] = [
    "hostaddr",
    "options",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslnegotiation",
    "sslcompression",
    "sslcertmode",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "require_auth",
    "channel_binding",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "client_encoding",
];

impl KeyHint {
    fn of(key: &str) -> Option<KeyHint> {
        if LIBPQ_ONLY_KEYS.contains(&key) {
            return Some(KeyHint::Unsupported);
        }
        KEYS.iter()
            .map(|&(known, _)| (strsim::damerau_levenshtein(key, known), known))
            .filter(|(distance, known)| *distance <= 2 && *distance < known.len() / 2)
            .min()
            .map(|(_, known)| KeyHint::Typo(known))
    }
}

fn unknown_key(key: &str, hint: Option<KeyHint>) -> String {
    match hint {
        Some(KeyHint::Typo(known)) => {
            format!("unknown connection parameter {key:?}; did you mean {known:?}?")
        }
        Some(KeyHint::Unsupported) => format!(
            "connection parameter {key:?} is not supported here; remove it (supported: {})",
            key_names()
        ),
        None => format!(
            "unknown connection parameter {key:?} (supported: {})",
            key_names()
        ),
    }
}

/// How hard to insist on TLS, with libpq's meanings.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connection only.
    Disable,
    /// Plain connection (TLS only if the server insists; treated like `disable` here).
    Allow,
    /// TLS if the server offers it, plain otherwise.
    #[default]
    Prefer,
    /// TLS, but the server certificate is not verified.
    Require,
    /// TLS with the certificate chain verified against the root certificates.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(ConnInfoError::InvalidSslMode(other.to_string())),
        })
    }
}

/// Where defaults come from; the process environment in production, a fake in tests.
pub trait Environment {
    /// An environment variable, `None` when unset or not UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// Whether `path` is an existing directory (for the default Unix socket directory).
    fn is_dir(&self, path: &Path) -> bool;
    /// The operating system user's name, libpq's default role (`$USER` by default).
    fn os_user(&self) -> Option<String> {
        self.var("USER").filter(|v| !v.is_empty())
    }
}

/// The real process environment and file system.
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    /// `$USER`, else the name of the process's user in /etc/passwd (containers
    /// often run without `$USER`).
    fn os_user(&self) -> Option<String> {
        if let Some(user) = self.var("USER").filter(|v| !v.is_empty()) {
            return Some(user);
        }
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .nth(1)?
            .to_owned();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid).then(|| name.to_owned())
        })
    }
}

/// A fully resolved connection target: every default has been applied.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Host name, IP address, or (starting with `/`) a Unix socket directory.
    pub host: String,
    /// TCP port, also the suffix of the Unix socket file name.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, from the string, PGPASSWORD or the password file.
    pub password: Option<String>,
    /// Database to connect to.
    pub dbname: String,
    /// TLS policy.
    pub sslmode: SslMode,
    /// PEM file with the root certificates for `verify-ca`/`verify-full` (`system`: webpki roots).
    pub sslrootcert: Option<PathBuf>,
    /// PEM client certificate, sent when the server asks for one.
    pub sslcert: Option<PathBuf>,
    /// PEM private key of `sslcert`.
    pub sslkey: Option<PathBuf>,
    /// Name shown in `pg_stat_activity` / `pg_stat_replication`.
    pub application_name: String,
    /// Limit for establishing the connection (TCP, TLS and authentication); `None`: no limit.
    pub connect_timeout: Option<Duration>,
}

impl ConnInfo {
    /// Parses a connection string using the process environment for defaults.
    pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
        parse_with(s, &SystemEnvironment)
    }

    /// `connect_timeout`, or 30 s when it is not set: a daemon must not wait
    /// forever for a host that does not answer (libpq would).
    pub fn connect_timeout_or_default(&self) -> Duration {
        self.connect_timeout.unwrap_or(Duration::from_secs(30))
    }

    /// Whether `host` names a Unix socket directory rather than a network host.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The socket file for a Unix socket connection: `<dir>/.s.PGSQL.<port>`.
    pub fn socket_path(&self) -> PathBuf {
        Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }

    /// Where we connect, for messages: `host:port` or the socket file path.
    pub fn target(&self) -> String {
        if self.is_unix_socket() {
            self.socket_path().display().to_string()
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses a connection string, taking defaults from `env` instead of the process environment.
pub fn parse_with(s: &str, env: &dyn Environment) -> Result<ConnInfo, ConnInfoError> {
    let parsed = (|| {
        let mut raw = Raw::default();
        for (key, value) in syntax::pairs(s)? {
            raw.set(&key, value)?;
        }
        raw.resolve(env)
    })();
    // A malformed string may split a password into pieces that would show up in the
    // error as a "key" or a "port": say what is wrong without quoting the input.
    parsed.map_err(|err| {
        if holds_password(s) {
            err.without_input()
        } else {
            err
        }
    })
}

/// Whether `s` may hold a password: a `password` key, or a URI with `user:password@`.
fn holds_password(s: &str) -> bool {
    if s.contains("password") {
        return true;
    }
    let rest = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|scheme| s.strip_prefix(scheme));
    rest.and_then(|rest| rest.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

impl ConnInfoError {
    /// The same error with every piece of the input replaced by `(hidden)`.
    fn without_input(self) -> ConnInfoError {
        const HIDDEN: &str = "(hidden: the connection string holds a password)";
        match self {
            ConnInfoError::Syntax(_) => ConnInfoError::Syntax(format!(
                "malformed key=value list or URI; check quoting (values with spaces in '...') and percent-encoding of reserved characters in URIs {HIDDEN}"
            )),
            // The hint names a known parameter, never a piece of the input.
            ConnInfoError::UnknownKey { hint, .. } => ConnInfoError::UnknownKey {
                key: HIDDEN.into(),
                hint,
            },
            ConnInfoError::InvalidPort(_) => ConnInfoError::InvalidPort(HIDDEN.into()),
            ConnInfoError::InvalidSslMode(_) => ConnInfoError::InvalidSslMode(HIDDEN.into()),
            ConnInfoError::InvalidConnectTimeout(_) => {
                ConnInfoError::InvalidConnectTimeout(HIDDEN.into())
            }
            ConnInfoError::MultipleHosts(_) => ConnInfoError::MultipleHosts(HIDDEN.into()),
            ConnInfoError::NoUser => ConnInfoError::NoUser,
        }
    }
}

/// Values as written (later keys overwrite earlier ones), before defaults are applied.
#[derive(Default)]
struct Raw {
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<String>,
    passfile: Option<String>,
}

impl Raw {
    fn set(&mut self, key: &str, value: String) -> Result<(), ConnInfoError> {
        let Some((_, slot)) = KEYS.iter().find(|(name, _)| *name == key) else {
            return Err(ConnInfoError::UnknownKey {
                key: key.to_string(),
                hint: KeyHint::of(key),
            });
        };
        *slot(self) = Some(value);
        Ok(())
    }

    fn resolve(self, env: &dyn Environment) -> Result<ConnInfo, ConnInfoError> {
        // libpq treats an empty value like an absent one, so `host=` falls back to the default.
        let pick = |given: Option<String>, var: &str| {
            given
                .filter(|v| !v.is_empty())
                .or_else(|| env.var(var).filter(|v| !v.is_empty()))
        };
        let host = pick(self.host, "PGHOST").unwrap_or_else(|| {
            if env.is_dir(Path::new(DEFAULT_SOCKET_DIR)) {
                DEFAULT_SOCKET_DIR.to_string()
            } else {
                "localhost".to_string()
            }
        });
        if host.contains(',') {
            return Err(ConnInfoError::MultipleHosts(host));
        }
        let port = match pick(self.port, "PGPORT") {
            None => 5432,
            Some(p) if p.contains(',') => return Err(ConnInfoError::MultipleHosts(p)),
            Some(p) => match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(ConnInfoError::InvalidPort(p)),
            },
        };
        let user = pick(self.user, "PGUSER")
            .or_else(|| env.os_user())
            .ok_or(ConnInfoError::NoUser)?;
        let dbname = pick(self.dbname, "PGDATABASE").unwrap_or_else(|| user.clone());
        let sslmode = match pick(self.sslmode, "PGSSLMODE") {
            Some(m) => m.parse()?,
            None => SslMode::default(),
        };
        let connect_timeout = match pick(self.connect_timeout, "PGCONNECT_TIMEOUT") {
            None => None,
            Some(t) => match t.trim().parse::<i64>() {
                // libpq: zero or negative means wait forever.
                Ok(n) if n <= 0 => None,
                Ok(n) => Some(Duration::from_secs(n.unsigned_abs())),
                Err(_) => return Err(ConnInfoError::InvalidConnectTimeout(t)),
            },
        };
        let mut info = ConnInfo {
            host,
            port,
            user,
            password: None,
            dbname,
            sslmode,
            sslrootcert: pick(self.sslrootcert, "PGSSLROOTCERT").map(PathBuf::from),
            sslcert: pick(self.sslcert, "PGSSLCERT").map(PathBuf::from),
            sslkey: pick(self.sslkey, "PGSSLKEY").map(PathBuf::from),
            application_name: pick(self.application_name, "PGAPPNAME")
                .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_string()),
            connect_timeout,
        };
        info.password = match self.password.or_else(|| env.var("PGPASSWORD")) {
            Some(p) => Some(p),
            None => pick(self.passfile, "PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))
                .and_then(|path| passfile_password(&path, &info)),
        };
        Ok(info)
    }
}

fn passfile_password(path: &Path, info: &ConnInfo) -> Option<String> {
    // libpq matches a connection over the default socket directory as `localhost`.
    let host = if info.host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        info.host.as_str()
    };
    let port = info.port.to_string();
    passfile::lookup(
        path,
        &passfile::Lookup {
            host,
            port: &port,
            dbname: &info.dbname,
            user: &info.user,
        },
    )
}

/// Writes one `key=value` pair, quoting the value when libpq would need it.
fn write_pair(f: &mut fmt::Formatter<'_>, key: &str, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        write!(f, "{key}={value}")
    } else {
        let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
        write!(f, "{key}='{escaped}'")
    }
}

impl fmt::Display for ConnInfo {
    /// A `key=value` string without the password, e.g.
    /// `host=127.0.0.1 port=5432 user=app dbname=shop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pair(f, "host", &self.host)?;
        write!(f, " port={} ", self.port)?;
        write_pair(f, "user", &self.user)?;
        f.write_str(" ")?;
        write_pair(f, "dbname", &self.dbname)?;
        if self.sslmode != SslMode::default() {
            write!(f, " sslmode={}", self.sslmode.as_str())?;
        }
        if self.application_name != DEFAULT_APPLICATION_NAME {
            f.write_str(" ")?;
            write_pair(f, "application_name", &self.application_name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}
