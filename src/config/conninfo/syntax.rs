//! The two spellings of a connection string libpq accepts, reduced to `(key, value)` pairs:
//! `key=value` lists (with `'quoted values'`) and `postgres://` URIs.
//!
//! Both produce pairs in the order written so that later keys win when the caller applies them.

use super::ConnInfoError;

/// Splits a connection string of either syntax into `(key, value)` pairs in order.
pub(super) fn pairs(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let trimmed = s.trim_start();
    if let Some(rest) = trimmed
        .strip_prefix("postgresql://")
        .or_else(|| trimmed.strip_prefix("postgres://"))
    {
        uri_pairs(rest)
    } else {
        keyword_pairs(s)
    }
}

/// Parses `key = value key2='quoted \' value'` the way libpq does: whitespace separates pairs,
/// backslash escapes the next character, single quotes allow whitespace inside a value.
fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!(
                "missing \"=\" after {key:?} in connection string"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnInfoError::Syntax(format!(
                            "unterminated quoted value for {key:?} in connection string"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// Parses the part of a URI after `postgres://`:
/// `[user[:password]@][host][:port][/dbname][?key=value&...]`.
fn uri_pairs(rest: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut out = Vec::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // The password may contain '@' only percent-encoded, so the last '@' ends the user info.
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_string(), percent_decode(user, "user")?));
            }
            if let Some(p) = password {
                out.push(("password".to_string(), percent_decode(p, "password")?));
            }
            hostport
        }
        None => authority,
    };
    let (host, port) = split_host_port(hostport)?;
    if !host.is_empty() {
        out.push(("host".to_string(), percent_decode(host, "host")?));
    }
    if let Some(port) = port {
        out.push(("port".to_string(), percent_decode(port, "port")?));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.push(("dbname".to_string(), percent_decode(db, "dbname")?));
    }
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').ok_or_else(|| {
            ConnInfoError::Syntax(format!("URI query parameter {param:?} has no \"=\""))
        })?;
        let key = percent_decode(key, "parameter name")?;
        let value = percent_decode(value, &key)?;
        out.push((key, value));
    }
    Ok(out)
}

/// Splits `host:port`, `[v6addr]:port` or a comma list (kept whole for the caller to reject).
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), ConnInfoError> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(|| {
            ConnInfoError::Syntax(format!("unterminated \"[\" in URI host {hostport:?}"))
        })?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((addr, Some(port))),
            None if after.is_empty() => Ok((addr, None)),
            None => Err(ConnInfoError::Syntax(format!(
                "unexpected {after:?} after URI host {addr:?}"
            ))),
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(',') || !p.contains(',') => (h, Some(p)),
        _ => (hostport, None),
    })
}

/// Decodes `%XX` escapes; `what` names the component for the error message (never its value,
/// which might be the password).
fn percent_decode(s: &str, what: &str) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ConnInfoError::Syntax(format!("invalid percent-encoding in URI {what}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConnInfoError::Syntax(format!("URI {what} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        pairs(s).unwrap()
    }

    fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keyword_values_allow_spaces_around_equals_and_quotes() {
        assert_eq!(
            p("host = db1  port=5433 application_name='a b\\'c\\\\' user=''"),
            kv(&[
                ("host", "db1"),
                ("port", "5433"),
                ("application_name", "a b'c\\"),
                ("user", "")
            ])
        );
    }

    #[test]
    fn keyword_syntax_errors_are_reported() {
        assert!(pairs("host").is_err());
        assert!(pairs("host='abc").is_err());
    }

    #[test]
    fn uri_components_are_percent_decoded() {
        assert_eq!(
            p("postgresql://us%40er:p%3Ass@db.example:6543/my%20db?sslmode=require&application_name=x"),
            kv(&[
                ("user", "us@er"),
                ("password", "p:ss"),
                ("host", "db.example"),
                ("port", "6543"),
                ("dbname", "my db"),
                ("sslmode", "require"),
                ("application_name", "x"),
            ])
        );
    }

    #[test]
    fn uri_accepts_ipv6_socket_paths_and_missing_parts() {
        assert_eq!(
            p("postgres://[::1]:5433/db"),
            kv(&[("host", "::1"), ("port", "5433"), ("dbname", "db")])
        );
        assert_eq!(
            p("postgres://%2Ftmp%2Fsock/db"),
            kv(&[("host", "/tmp/sock"), ("dbname", "db")])
        );
        assert_eq!(p("postgres://"), kv(&[]));
        assert_eq!(
            p("postgres:///db?host=/tmp"),
            kv(&[("dbname", "db"), ("host", "/tmp")])
        );
    }

    #[test]
    fn uri_bad_percent_encoding_is_an_error() {
        assert!(pairs("postgres://u:%zz@h/db").is_err());
        assert!(pairs("postgres://h/db?sslmode").is_err());
    }
}
