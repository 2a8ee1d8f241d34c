//! The NATS JetStream target: every event is published to
//! `<prefix>.<schema>.<table>.<op>` with its compact JSON as payload and a
//! `Nats-Msg-Id` that is the same whenever the event is sent again, so the
//! stream's duplicate window drops replays. Publishing is pipelined: a task
//! keeps a bounded window of events awaiting their ack (see [`publisher`]).

mod batch;
mod headers;
pub mod publisher;
pub mod stream;
pub mod subject;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::ContextBuilder;
use async_nats::{ConnectOptions, Event as NatsEvent};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{Event, OutputError, OutputTarget};
use crate::config::NatsArgs;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use headers::MessageIds;
use publisher::{Item, Outgoing, Shared, BATCH};
use subject::{EventNames, PrefixError, Subjects};

const TARGET: &str = "jetstream";
/// Room left for the headers when checking an event against `max_payload`.
const HEADER_ALLOWANCE: usize = 1024;
/// How long closing waits for outstanding acks.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the JetStream target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamSetupError {
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("cannot read NATS credentials from {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("cannot connect to NATS at {servers}: {message}")]
    Connect {
        servers: String,
        message: String,
        /// Refused credentials, a bad address or TLS set-up: only a configuration change helps.
        configuration: bool,
    },
    #[error("invalid --nats-server {url}: {message}")]
    ServerUrl { url: String, message: String },
    #[error("JetStream stream \"{stream}\": {message}")]
    Stream { stream: String, message: String },
    #[error("JetStream stream \"{stream}\" captures {subjects} but not {wanted}: add {wanted} to its subjects or choose another --nats-stream / --nats-subject-prefix")]
    SubjectsNotCaptured {
        stream: String,
        subjects: String,
        wanted: String,
    },
}

impl JetStreamSetupError {
    /// Configuration problems (exit code 2) as opposed to an unreachable server.
    pub fn is_configuration(&self) -> bool {
        match self {
            JetStreamSetupError::Connect { configuration, .. } => *configuration,
            _ => true,
        }
    }
}

/// Publishes events to a JetStream stream.
pub struct JetStreamOutput {
    names: EventNames,
    ids: MessageIds,
    items: Option<mpsc::Sender<Vec<Item>>>,
    /// Items not yet handed to the task: sent at each commit or when [`BATCH`] long.
    batch: Vec<Item>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    client: async_nats::Client,
    /// The server's `max_payload` when we connected (0: unknown).
    max_payload: usize,
}

impl JetStreamOutput {
    /// Connect, make sure the stream exists, and start the publishing task.
    /// `slot` makes message ids unique per slot.
    pub async fn connect(
        args: &NatsArgs,
        slot: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, JetStreamSetupError> {
        let subjects = Subjects::new(&args.subject_prefix)?;
        let servers = args
            .servers
            .iter()
            .map(|url| redact_url(url))
            .collect::<Vec<_>>()
            .join(",");
        for url in &args.servers {
            check_server_url(url)?;
        }
        let options = connect_options(args, metrics.clone()).await?;
        let client = options
            .connect(args.servers.as_slice())
            .await
            .map_err(|e| {
                use async_nats::ConnectErrorKind as Kind;
                let configuration = matches!(
                    e.kind(),
                    Kind::Authentication
                        | Kind::AuthorizationViolation
                        | Kind::ServerParse
                        | Kind::Tls
                );
                let message = match e.kind() {
                    Kind::Authentication | Kind::AuthorizationViolation => {
                        "the server refused the credentials (authorization violation): check --nats-user/--nats-password, --nats-token, --nats-creds or --nats-nkey".to_owned()
                    }
                    Kind::Io | Kind::Dns | Kind::TimedOut => {
                        format!("{e}: is nats-server running there? check --nats-server")
                    }
                    _ => e.to_string(),
                };
                JetStreamSetupError::Connect {
                    servers: servers.clone(),
                    message,
                    configuration,
                }
            })?;
        let max_inflight = args.max_inflight as usize;
        let context = ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        let created = stream::ensure_stream(&context, args, &subjects.wildcard()).await?;
        let version = client.server_info().version;
        let batched = !args.no_batch_publish
            && stream::batched(&context, &args.stream, created, &version).await;
        info!(
            message = "Connected to NATS JetStream.",
            servers = servers.as_str(),
            stream = args.stream.as_str()
        );
        metrics.set_nats_connected(true);

        let shared = Arc::new(Shared::default());
        // The channel is small (up to 4 × BATCH events): the window in the
        // task bounds what is in flight.
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(publisher::run(
            client.clone(),
            rx,
            max_inflight,
            batched,
            shared.clone(),
            metrics,
        ));
        Ok(JetStreamOutput {
            names: EventNames::new(subjects),
            ids: MessageIds::new(slot),
            items: Some(tx),
            batch: Vec::with_capacity(BATCH + 1),
            shared,
            task: Some(task),
            max_payload: client.server_info().max_payload,
            client,
        })
    }

    /// The NATS connection (for the snapshot's key-value state).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Events published and awaiting their ack.
    pub fn inflight(&self) -> u64 {
        self.shared.inflight.load(Ordering::Relaxed)
    }

    /// Queue `item`; hand the batch to the task at a commit or when it is full.
    async fn send(&mut self, item: Item) -> Result<(), OutputError> {
        let ends_unit = matches!(item, Item::Commit(_));
        self.batch.push(item);
        if ends_unit || self.batch.len() >= BATCH {
            self.flush_batch().await?;
        }
        Ok(())
    }

    async fn flush_batch(&mut self) -> Result<(), OutputError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let failed = || OutputError::Failed {
            target: TARGET,
            message: "the publishing task ended".into(),
        };
        let items = self.items.as_ref().ok_or_else(failed)?;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH + 1));
        items.send(batch).await.map_err(|_| failed())
    }
}

#[async_trait]
impl OutputTarget for JetStreamOutput {
    fn name(&self) -> &'static str {
        TARGET
    }

    async fn write(&mut self, event: Event<'_>) -> Result<(), OutputError> {
        // The server closes the connection on a message over its max_payload; retrying
        // would loop forever, so such an event stops the daemon with a clear error.
        let limit = self.max_payload;
        if limit > 0 && event.json.len() + HEADER_ALLOWANCE > limit {
            return Err(OutputError::Failed {
                target: TARGET,
                message: format!(
                    "the {} event of {} at LSN {} is {} bytes, more than the NATS server's max_payload of {limit} bytes: raise max_payload in the nats-server configuration",
                    event.change.op(),
                    event.change.table().map_or_else(|| "the transaction".to_owned(), |t| format!("{}.{}", t.schema, t.name)),
                    headers::event_lsn(event.change).unwrap_or(Lsn::ZERO),
                    event.json.len(),
                ),
            });
        }
        let (subject, table) = self.names.for_change(event.change);
        let message = Outgoing {
            subject,
            headers: self.ids.fields(event.change, event.seq, table),
            payload: Bytes::copy_from_slice(event.json),
        };
        self.send(Item::Publish(message)).await
    }

    async fn commit(&mut self, end: Lsn) -> Result<(), OutputError> {
        self.send(Item::Commit(end)).await
    }

    fn durable(&self) -> Lsn {
        Lsn(self.shared.durable.load(Ordering::Acquire))
    }

    fn discard_uncommitted(&mut self) {
        // The batch holds only events after the last commit (it is handed over at each).
        self.batch.clear();
    }

    async fn close(&mut self) -> Result<(), OutputError> {
        // Events after the last commit are published too (they will be sent
        // again after a restart; the dedup window drops the copies).
        if let Err(err) = self.flush_batch().await {
            debug!(
                message = "Could not hand the last events to the publishing task.",
                error = err.to_string()
            );
        }
        // Dropping the sender lets the task finish the window and end.
        self.items = None;
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(CLOSE_TIMEOUT, &mut task).await {
                Ok(Err(err)) => warn!(
                    message = "JetStream publishing task failed.",
                    error = err.to_string()
                ),
                Ok(Ok(())) => {}
                Err(_) => {
                    // Unacknowledged events are not confirmed; they are sent again on restart.
                    warn!(
                        message = "JetStream did not acknowledge every event before the stop; the rest is sent again on restart.",
                        inflight = self.inflight(),
                    );
                    task.abort();
                    return Ok(());
                }
            }
        }
        if let Err(err) = self.client.drain().await {
            warn!(
                message = "Could not drain the NATS connection.",
                error = err.to_string()
            );
        }
        Ok(())
    }
}

/// `url` without a user name or password it may hold (`nats://***@host:4222`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // No scheme (`host:4222`) or a malformed one (`nats//user:pw@host`):
        // whatever comes before an `@` may be a secret.
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Refuses an address the NATS client would take for something else: in
/// `nats//host:4222` (a colon left out) the host is "nats" and the rest a path,
/// so the typo would show up as a DNS failure on every restart. Other
/// malformed addresses are refused by the client itself.
fn check_server_url(url: &str) -> Result<(), JetStreamSetupError> {
    let Ok(addr) = url.parse::<async_nats::ServerAddr>() else {
        return Ok(());
    };
    if addr.is_websocket() {
        return Ok(());
    }
    let parsed = addr.into_inner();
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        // The path is not shown: in a typo it can hold a password.
        return Err(JetStreamSetupError::ServerUrl {
            url: redact_url(url),
            message: format!(
                "it reads as host {:?} followed by a path; a NATS address is nats://host:port (or tls://) with nothing after it",
                parsed.host_str().unwrap_or_default(),
            ),
        });
    }
    Ok(())
}

/// Credentials written in a server address (`nats://user:password@host`, or
/// `nats://token@host`), percent-decoded: the NATS client would connect
/// without them. The `--nats-*` credential flags take precedence.
fn url_credentials(servers: &[String]) -> Option<(String, Option<String>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    servers.iter().find_map(|url| {
        let addr = url.parse::<async_nats::ServerAddr>().ok()?;
        let user = addr.username()?;
        Some((decode(user), addr.password().map(decode)))
    })
}

async fn connect_options(
    args: &NatsArgs,
    metrics: Arc<Metrics>,
) -> Result<ConnectOptions, JetStreamSetupError> {
    let mut options = if let Some(path) = &args.creds {
        ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| JetStreamSetupError::Credentials {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
    } else if let Some(path) = &args.nkey {
        let seed = std::fs::read_to_string(path).map_err(|e| JetStreamSetupError::Credentials {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        ConnectOptions::with_nkey(seed.trim().to_owned())
    } else if let Some(token) = &args.token {
        ConnectOptions::with_token(token.clone())
    } else if let (Some(user), Some(password)) = (&args.user, &args.password) {
        ConnectOptions::with_user_and_password(user.clone(), password.clone())
    } else if let Some((user, password)) = url_credentials(&args.servers) {
        match password {
            Some(password) => ConnectOptions::with_user_and_password(user, password),
            None => ConnectOptions::with_token(user),
        }
    } else {
        ConnectOptions::new()
    };
    if let Some(ca) = &args.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    let last_error = Arc::new(Mutex::new(String::new()));
    // Whether a connection was ever up: only the very first attempt goes at
    // once (a server that accepts and then drops every connection must not
    // be reconnected to in a tight loop; async-nats counts attempts from 1
    // again after each successful one).
    let was_up = Arc::new(AtomicBool::new(false));
    let reconnecting = was_up.clone();
    Ok(options
        .name("pgoutput-stream")
        .connection_timeout(Duration::from_secs(10))
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| {
            reconnect_delay(attempts, reconnecting.load(Ordering::Relaxed))
        })
        .event_callback(move |event| {
            if matches!(event, NatsEvent::Connected) {
                was_up.store(true, Ordering::Relaxed);
            }
            let metrics = metrics.clone();
            let last_error = last_error.clone();
            async move { log_event(event, &metrics, &last_error) }
        }))
}

/// One line per change of the NATS connection's state. `last_error` is the
/// client error last logged since the connection was up: failed reconnect
/// attempts repeat it every few seconds, so only a new one gets a line.
fn log_event(event: NatsEvent, metrics: &Metrics, last_error: &Mutex<String>) {
    match event {
        NatsEvent::Connected => {
            last_error.lock().unwrap_or_else(|e| e.into_inner()).clear();
            metrics.set_nats_connected(true);
            info!(message = "NATS connection is up.")
        }
        NatsEvent::Disconnected => {
            metrics.set_nats_connected(false);
            warn!(message = "NATS connection lost; reconnecting.")
        }
        NatsEvent::Closed => {
            metrics.set_nats_connected(false);
            info!(message = "NATS connection closed.")
        }
        // Our own close at shutdown.
        NatsEvent::Draining => debug!(message = "NATS connection draining."),
        NatsEvent::ClientError(error) => {
            let error = error.to_string();
            let mut last = last_error.lock().unwrap_or_else(|e| e.into_inner());
            if *last == error {
                debug!(message = "NATS client error.", error);
            } else {
                warn!(message = "NATS client error.", error);
                *last = error;
            }
        }
        other => warn!(
            message = "NATS connection event.",
            event = other.to_string()
        ),
    }
}

/// Delay before connection attempt `attempts` (counted from 1, at start-up
/// and again after each lost connection): none for the first attempt at
/// start-up (it used to wait 200-250 ms: every start did), otherwise 100 ms
/// doubling to 5 s, with up to 25% jitter so that many instances do not
/// reconnect in step.
fn reconnect_delay(attempts: usize, reconnecting: bool) -> Duration {
    if attempts <= 1 && !reconnecting {
        return Duration::ZERO;
    }
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempts.saturating_sub(1).min(6) as u32)
        .min(Duration::from_secs(5));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{check_server_url, reconnect_delay, redact_url, url_credentials};

    #[test]
    fn only_the_first_connection_attempt_at_start_up_does_not_wait() {
        assert_eq!(reconnect_delay(1, false), Duration::ZERO);
        let within = |attempts, ms: u64| {
            let delay = reconnect_delay(attempts, true);
            let base = Duration::from_millis(ms);
            assert!(
                delay >= base && delay <= base.mul_f64(1.25),
                "attempt {attempts}: {delay:?}"
            );
        };
        // After a lost connection, even the first attempt waits: a server
        // that accepts and drops every connection is not hammered.
        within(1, 100);
        within(2, 200);
        within(3, 400);
        within(8, 5000);
        within(usize::MAX, 5000);
    }

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(
            redact_url("nats://cdc:s3cret@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(
            redact_url("tls://token@nats:4222/x@y"),
            "tls://***@nats:4222/x@y"
        );
        assert_eq!(redact_url("nats://nats:4222"), "nats://nats:4222");
        assert_eq!(redact_url("nats:4222"), "nats:4222");
        assert_eq!(redact_url("cdc:s3cret@nats:4222"), "***@nats:4222");
        assert_eq!(redact_url("nats//cdc:s3cret@nats:4222"), "***@nats:4222");
    }

    #[test]
    fn credentials_in_an_address_are_decoded_and_used() {
        let servers = |urls: &[&str]| urls.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(url_credentials(&servers(&["nats://host:4222"])), None);
        assert_eq!(
            url_credentials(&servers(&["nats://a:4222", "nats://cdc:p%40ss@b:4222"])),
            Some(("cdc".to_owned(), Some("p@ss".to_owned())))
        );
        assert_eq!(
            url_credentials(&servers(&["t0ken@host"])),
            Some(("t0ken".to_owned(), None))
        );
    }

    #[test]
    fn an_address_with_a_path_is_refused_as_a_typo() {
        for url in [
            "nats//localhost:4222",
            "nats://host:4222/x",
            "tls://host?a=b",
        ] {
            let err = check_server_url(url).expect_err(url);
            assert!(err.is_configuration(), "{err}");
        }
        let err = check_server_url("nats//cdc:s3cret@nats:4222").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        for url in [
            "nats://localhost:4222",
            "localhost",
            "tls://u:p@host:4222/",
            "ws://host:80/nats",
            "127.0.0.1:4222",
        ] {
            check_server_url(url).expect(url);
        }
    }
}
