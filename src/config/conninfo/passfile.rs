//! Password files (`~/.pgpass`): lines of `host:port:database:user:password` where `*` matches
//! anything and `\:` / `\\` escape. Like libpq, a file readable by group or others is ignored,
//! because a password file others can read is a leak we should not silently rely on.

use std::path::Path;

/// What the password file is searched for.
pub(super) struct Lookup<'a> {
    /// Host as written, or `localhost` for the default Unix socket directory.
    pub host: &'a str,
    /// Port as text.
    pub port: &'a str,
    /// Database name.
    pub dbname: &'a str,
    /// User name.
    pub user: &'a str,
}

/// Returns the password of the first matching line, or `None` when the file is missing,
/// unreadable, too permissive or has no match.
pub(super) fn lookup(path: &Path, wanted: &Lookup<'_>) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                message = "Password file has group or world access; ignoring it. Use chmod 0600.",
                path = path.display().to_string()
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    find_in(&text, wanted)
}

/// Finds the password for `wanted` in the text of a password file.
pub(super) fn find_in(text: &str, wanted: &Lookup<'_>) -> Option<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line);
            let [host, port, db, user, password] = fields.as_slice() else {
                return None;
            };
            let ok = |pattern: &String, value: &str| pattern == "*" || pattern == value;
            (ok(host, wanted.host)
                && ok(port, wanted.port)
                && ok(db, wanted.dbname)
                && ok(user, wanted.user))
            .then(|| password.clone())
        })
}

/// Splits a line on unescaped `:` into at most five fields; the password takes the rest.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if let Some(f) = fields.last_mut() {
                        f.push(next);
                    }
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: Lookup<'static> = Lookup {
        host: "db.example",
        port: "5432",
        dbname: "shop",
        user: "app",
    };

    #[test]
    fn first_matching_line_wins_and_wildcards_match() {
        let text = "# comment\n\
                    other:5432:shop:app:nope\n\
                    db.example:*:shop:app:s3cr\\:et\n\
                    *:*:*:*:fallback\n";
        assert_eq!(find_in(text, &WANTED).as_deref(), Some("s3cr:et"));
        let other = Lookup {
            host: "x",
            ..WANTED
        };
        assert_eq!(find_in(text, &other).as_deref(), Some("fallback"));
    }

    #[test]
    fn escaped_colons_and_backslashes_in_fields_are_literal() {
        let text = "db.example:5432:shop:app:a\\\\b:c\n";
        assert_eq!(find_in(text, &WANTED).as_deref(), Some("a\\b:c"));
        let text = "db\\:x:5432:shop:app:pw\n";
        assert_eq!(find_in(text, &WANTED), None);
    }

    #[test]
    fn short_lines_never_match() {
        assert_eq!(find_in("*:*:*:*\n", &WANTED), None);
    }

    #[cfg(unix)]
    #[test]
    fn file_with_group_or_world_access_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &WANTED).as_deref(), Some("pw"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, &WANTED), None);
        assert_eq!(lookup(&dir.path().join("missing"), &WANTED), None);
    }
}
