//! Tests of connection-string resolution: syntax, precedence, defaults, password sources.

use super::*;
use std::collections::HashMap;

/// A fake environment: given variables, and whether the default socket directory exists.
#[derive(Default)]
struct FakeEnv {
    vars: HashMap<&'static str, String>,
    socket_dir_exists: bool,
}

impl FakeEnv {
    fn with(vars: &[(&'static str, &str)]) -> FakeEnv {
        FakeEnv {
            vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            socket_dir_exists: false,
        }
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.socket_dir_exists && path == Path::new(DEFAULT_SOCKET_DIR)
    }
}

fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    parse_with(s, &FakeEnv::with(&[("USER", "osuser")]))
}

#[test]
fn keyword_string_sets_every_field() {
    let info = parse(
        "host=db.example port=6543 user=app password='se cret' dbname=shop sslmode=verify-full \
         sslrootcert=/ca.pem sslcert=/c.pem sslkey=/k.pem application_name=cdc connect_timeout=7",
    )
    .unwrap();
    assert_eq!(info.host, "db.example");
    assert_eq!(info.port, 6543);
    assert_eq!(info.user, "app");
    assert_eq!(info.password.as_deref(), Some("se cret"));
    assert_eq!(info.dbname, "shop");
    assert_eq!(info.sslmode, SslMode::VerifyFull);
    assert_eq!(info.sslrootcert.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(info.sslcert.as_deref(), Some(Path::new("/c.pem")));
    assert_eq!(info.sslkey.as_deref(), Some(Path::new("/k.pem")));
    assert_eq!(info.application_name, "cdc");
    assert_eq!(info.connect_timeout, Some(Duration::from_secs(7)));
}

#[test]
fn uri_and_keyword_strings_resolve_alike() {
    let uri = parse("postgresql://app:pw@db.example:6543/shop?sslmode=require").unwrap();
    let kv = parse("host=db.example port=6543 user=app password=pw dbname=shop sslmode=require")
        .unwrap();
    assert_eq!(uri, kv);
    let short = parse("postgres://app@db.example/shop").unwrap();
    assert_eq!(short.port, 5432);
    assert_eq!(short.password, None);
}

#[test]
fn later_keys_win() {
    let info = parse("user=a host=h user=b").unwrap();
    assert_eq!(info.user, "b");
    let info = parse("postgres://a@h/db?user=b").unwrap();
    assert_eq!(info.user, "b");
}

#[test]
fn unknown_key_is_named_in_the_error() {
    let err = parse("host=h colour=blue").unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::UnknownKey {
            key: "colour".into(),
            hint: None
        }
    );
    assert!(err.to_string().contains("colour"));
    assert!(err.to_string().contains("supported: host, port"), "{err}");
    assert!(parse("postgres://h/db?colour=blue").is_err());
}

#[test]
fn a_misspelt_key_gets_the_right_one_suggested_even_beside_a_password() {
    for (input, meant) in [
        ("host=h pasword=x", "password"),
        ("host=h dbnmae=shop", "dbname"),
        ("host=h sslmod=require", "sslmode"),
        ("postgres://app:s3cret@h/db?sslmod=require", "sslmode"),
        ("host=h password=s3cret conect_timeout=5", "connect_timeout"),
    ] {
        let err = parse(input).expect_err(input).to_string();
        assert!(
            err.contains(&format!("did you mean \"{meant}\"")),
            "{input}: {err}"
        );
        assert!(!err.contains("s3cret"), "{input}: {err}");
    }
    // Nothing close: no guess.
    let err = parse("host=h colour=blue").unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn a_libpq_parameter_not_taken_here_is_named_as_such() {
    let err = parse("host=h gssencmode=disable").unwrap_err().to_string();
    assert!(
        err.contains("\"gssencmode\" is not supported here"),
        "{err}"
    );
    let err = parse("postgres://h/db?target_session_attrs=read-write")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported here"), "{err}");
}

#[test]
fn bad_port_error_mentions_port() {
    for s in ["port=abc", "port=0", "port=70000", "postgres://h:x/db"] {
        let err = parse(s).unwrap_err();
        assert!(err.to_string().contains("port"), "{s}: {err}");
    }
}

#[test]
fn bad_sslmode_and_timeout_are_rejected() {
    assert!(matches!(
        parse("sslmode=maybe"),
        Err(ConnInfoError::InvalidSslMode(_))
    ));
    assert!(matches!(
        parse("connect_timeout=soon"),
        Err(ConnInfoError::InvalidConnectTimeout(_))
    ));
    assert_eq!(parse("connect_timeout=0").unwrap().connect_timeout, None);
}

#[test]
fn multiple_hosts_are_rejected_clearly() {
    let err = parse("host=a,b").unwrap_err();
    assert!(matches!(err, ConnInfoError::MultipleHosts(_)));
    assert!(parse("postgres://a:1,b:2/db").is_err());
}

#[test]
fn errors_never_contain_the_password() {
    for s in [
        "password=hunter2 port=bad",
        "password=hunter2 bogus=1",
        "postgres://u:hunter2@h:bad/db",
        "postgres://u:hunter2%zz@h/db",
        "password='hunter2",
    ] {
        let err = parse(s).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{s}: {err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{s}: {err:?}");
    }
}

#[test]
fn display_and_debug_omit_the_password() {
    let info = parse("host=127.0.0.1 port=5432 user=app password=hunter2 dbname=shop").unwrap();
    assert_eq!(
        info.to_string(),
        "host=127.0.0.1 port=5432 user=app dbname=shop"
    );
    assert!(!format!("{info:?}").contains("hunter2"));
    let odd = parse("host=h user='a b' dbname=x sslmode=require application_name=me").unwrap();
    assert_eq!(
        odd.to_string(),
        "host=h port=5432 user='a b' dbname=x sslmode=require application_name=me"
    );
    assert_eq!(parse(&odd.to_string()).unwrap(), odd);
}

#[test]
fn defaults_follow_libpq() {
    let info = parse("").unwrap();
    assert_eq!(info.host, "localhost");
    assert_eq!(info.port, 5432);
    assert_eq!(info.user, "osuser");
    assert_eq!(info.dbname, "osuser");
    assert_eq!(info.sslmode, SslMode::Prefer);
    assert_eq!(info.application_name, "pgoutput-stream");
    assert_eq!(info.connect_timeout, None);

    let mut env = FakeEnv::with(&[("USER", "osuser")]);
    env.socket_dir_exists = true;
    let info = parse_with("", &env).unwrap();
    assert_eq!(info.host, DEFAULT_SOCKET_DIR);
    assert!(info.is_unix_socket());
    assert_eq!(
        info.socket_path(),
        Path::new("/var/run/postgresql/.s.PGSQL.5432")
    );
}

#[test]
fn environment_variables_fill_what_the_string_leaves_out() {
    let env = FakeEnv::with(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "envapp"),
        ("USER", "osuser"),
    ]);
    let info = parse_with("", &env).unwrap();
    assert_eq!(info.host, "envhost");
    assert_eq!(info.port, 6000);
    assert_eq!(info.user, "envuser");
    assert_eq!(info.password.as_deref(), Some("envpw"));
    assert_eq!(info.dbname, "envdb");
    assert_eq!(info.sslmode, SslMode::Require);
    assert_eq!(info.application_name, "envapp");

    let info = parse_with("host=h port=1 user=u password=p dbname=d", &env).unwrap();
    assert_eq!(
        (info.host.as_str(), info.port, info.user.as_str()),
        ("h", 1, "u")
    );
    assert_eq!(info.password.as_deref(), Some("p"));
    assert_eq!(
        parse_with("port=bad", &FakeEnv::default()).unwrap_err(),
        ConnInfoError::InvalidPort("bad".into())
    );
    assert_eq!(
        parse_with("", &FakeEnv::default()).unwrap_err(),
        ConnInfoError::NoUser
    );
}

#[cfg(unix)]
#[test]
fn password_comes_from_the_password_file_when_not_given() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgpass");
    std::fs::write(
        &path,
        "db1:5432:shop:app:first\nlocalhost:*:*:app:socket\n*:*:*:*:any\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = path.to_str().unwrap();

    let env = FakeEnv::with(&[("USER", "app"), ("PGPASSFILE", file)]);
    let info = parse_with("host=db1 dbname=shop", &env).unwrap();
    assert_eq!(info.password.as_deref(), Some("first"));
    let info = parse_with("host=db2 dbname=shop", &env).unwrap();
    assert_eq!(info.password.as_deref(), Some("any"));
    let info = parse_with("host=/var/run/postgresql", &env).unwrap();
    assert_eq!(info.password.as_deref(), Some("socket"));
    // An explicit password beats the file.
    let info = parse_with("host=db1 dbname=shop password=given", &env).unwrap();
    assert_eq!(info.password.as_deref(), Some("given"));

    // passfile= in the string, and ~/.pgpass via HOME.
    let env = FakeEnv::with(&[("USER", "app")]);
    let info = parse_with(&format!("host=db1 dbname=shop passfile={file}"), &env).unwrap();
    assert_eq!(info.password.as_deref(), Some("first"));
    std::fs::copy(&path, dir.path().join(".pgpass")).unwrap();
    let home = FakeEnv::with(&[("USER", "app"), ("HOME", dir.path().to_str().unwrap())]);
    let info = parse_with("host=db1 dbname=shop", &home).unwrap();
    assert_eq!(info.password.as_deref(), Some("first"));

    // A world-readable file is ignored, like libpq does.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = FakeEnv::with(&[("USER", "app"), ("PGPASSFILE", file)]);
    assert_eq!(
        parse_with("host=db1 dbname=shop", &env).unwrap().password,
        None
    );
}

#[test]
fn errors_never_quote_pieces_of_a_password() {
    for (input, secret) in [
        ("postgres://app:xq/zz@db/shop", "xq"),
        ("postgres://app:s3cr?t@db/shop", "t@db"),
        ("host=db password=my secret", "secret"),
        ("host=db password=my secret=x", "secret"),
        ("host=db password=x port=s3cr3t", "s3cr3t"),
    ] {
        let err = parse(input).expect_err(input).to_string();
        assert!(!err.contains(secret), "{input}: {err}");
    }
    // Without a password the input is quoted, which helps find typos.
    let err = parse("host=db bogus_key=1").unwrap_err();
    assert!(err.to_string().contains("bogus_key"));
}
