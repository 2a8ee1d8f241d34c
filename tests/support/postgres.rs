//! A throwaway PostgreSQL server per test binary (or per test that needs special settings):
//! `initdb` into a temp dir, start on a free port, stop and delete on drop.
//!
//! When the tests run as root the server runs as `postgres` (it refuses root). Because a
//! `static` server is never dropped, every server is watched by a tiny shell loop that stops it
//! and removes its directory once the test process is gone.

use super::free_port;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Extra settings for a server.
#[derive(Default)]
pub struct PgOptions {
    /// Lines appended to postgresql.conf.
    pub conf: Vec<String>,
    /// pg_hba.conf lines placed before the default trust lines.
    pub hba: Vec<String>,
    /// Server certificate (PEM); with `ssl_key` turns `ssl = on`.
    pub ssl_cert: Option<String>,
    /// Server private key (PEM).
    pub ssl_key: Option<String>,
}

/// A running server; dropping it stops the server and removes its directory.
pub struct TestPostgres {
    root: PathBuf,
    data: PathBuf,
    port: u16,
    bindir: PathBuf,
    as_postgres: bool,
    watcher: Option<Child>,
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

impl TestPostgres {
    /// Starts a server with the default settings.
    pub fn start() -> TestPostgres {
        TestPostgres::start_with(PgOptions::default())
    }

    /// Starts a server with extra settings.
    pub fn start_with(options: PgOptions) -> TestPostgres {
        let bindir = bindir();
        let as_postgres = is_root();
        let root = temp_dir("pgtest");
        let data = root.join("data");
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&root));
        }
        // Copying a pristine cluster is ~10x faster than running initdb for every server.
        run(Command::new("cp")
            .arg("-a")
            .arg(template(&bindir, as_postgres))
            .arg(&data));

        let mut server = TestPostgres {
            root,
            data,
            port: 0,
            bindir,
            as_postgres,
            watcher: None,
        };
        server.write_config(&options);
        // A free port can be taken by someone else before the server binds it: retry.
        for attempt in 0..5 {
            server.port = free_port();
            server.set_port();
            if server.pg_ctl_start() {
                server.watcher = Some(server.spawn_watcher());
                return server;
            }
            eprintln!(
                "postgres did not start (attempt {attempt}): {}",
                server.log_tail()
            );
        }
        panic!("postgres failed to start: {}", server.log_tail());
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the Unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// key=value connection string over TCP to 127.0.0.1 as superuser `postgres`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// Runs SQL with psql (-X -q -t -A -v ON_ERROR_STOP=1), returns trimmed stdout; panics with
    /// stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut child = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.root)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-f", "-"])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("psql stdin")
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let out = child.wait_with_output().expect("wait for psql");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// CREATE DATABASE with a fresh unique name, returned.
    pub fn create_database(&self) -> String {
        let name = format!(
            "db_{}_{}",
            NEXT_DB.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn write_config(&self, options: &PgOptions) {
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             wal_level = logical\n\
             max_replication_slots = 64\n\
             max_wal_senders = 64\n\
             max_connections = 200\n\
             timezone = 'UTC'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             log_min_messages = info\n\
             log_line_prefix = '%m [%p] %q%a '\n\
             include_if_exists = 'port.conf'\n",
            self.root.display()
        );
        if let (Some(cert), Some(key)) = (&options.ssl_cert, &options.ssl_key) {
            self.write_private("server.crt", cert);
            self.write_private("server.key", key);
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for line in &options.conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        file.write_all(conf.as_bytes())
            .expect("write postgresql.conf");

        let mut hba = options.hba.join("\n");
        hba.push_str(
            "\nlocal all all trust\n\
             local replication all trust\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        );
        std::fs::write(self.data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    /// Writes a file in the data directory readable only by the server's user (the server
    /// refuses a key file others can read).
    fn write_private(&self, name: &str, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data.join(name);
        std::fs::write(&path, contents).expect("write key material");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key material");
        if self.as_postgres {
            run(Command::new("chown").arg("postgres").arg(&path));
        }
    }

    fn set_port(&self) {
        let path = self.data.join("port.conf");
        std::fs::write(&path, format!("port = {}\n", self.port)).expect("write port.conf");
        if self.as_postgres {
            run(Command::new("chown").arg("postgres").arg(&path));
        }
    }

    /// Stop the server (`pg_ctl stop -m <mode>`: smart, fast or immediate) and start it
    /// again on the same port.
    pub fn restart(&self, mode: &str) {
        let status = pg_command(self.as_postgres, &self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl stop");
        assert!(status.success(), "pg_ctl stop failed: {}", self.log_tail());
        assert!(
            self.pg_ctl_start(),
            "postgres did not start again: {}",
            self.log_tail()
        );
    }

    fn pg_ctl_start(&self) -> bool {
        let status = pg_command(self.as_postgres, &self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        status.success()
    }

    fn stop_command(&self) -> String {
        let pg_ctl = format!(
            "{} -D '{}' -m immediate -w stop",
            self.bindir.join("pg_ctl").display(),
            self.data.display()
        );
        if self.as_postgres {
            format!("runuser -u postgres -- {pg_ctl}")
        } else {
            pg_ctl
        }
    }

    /// A shell loop that outlives us only long enough to clean up after us.
    fn spawn_watcher(&self) -> Child {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            stop = self.stop_command(),
            root = self.root.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watcher")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(self.stop_command())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One server shared by all tests of a test binary, started on first use.
pub fn shared() -> &'static TestPostgres {
    static SHARED: OnceLock<TestPostgres> = OnceLock::new();
    SHARED.get_or_init(TestPostgres::start)
}

/// A freshly initdb'ed data directory, made once per test process and removed by a watcher
/// when the process is gone.
fn template(bindir: &Path, as_postgres: bool) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let root = temp_dir("pgtemplate");
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&root));
        }
        let data = root.join("data");
        let mut initdb = pg_command(as_postgres, &bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .args(["--no-locale", "--no-instructions"]);
        run(&mut initdb);
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; rm -rf '{}'",
            std::process::id(),
            root.display()
        );
        // Never waited for on purpose: it must outlive this process to clean up after it.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn template watcher");
        data
    })
}

/// A directory we delete ourselves (Drop or watcher), in RAM when possible: on a busy disk
/// copying and starting a cluster takes seconds, in tmpfs a fraction of one.
fn temp_dir(prefix: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix(prefix).tempdir_in(shm);
    let dir = match builder {
        Ok(dir) if shm.is_dir() => dir,
        _ => tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create temp dir"),
    };
    dir.keep()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `PG_BINDIR`, else `pg_config --bindir`, else the highest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("no PostgreSQL found: set PG_BINDIR")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL found: set PG_BINDIR")
}

/// A command for a server binary, run as `postgres` when we are root.
fn pg_command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
