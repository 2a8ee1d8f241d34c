//! The pipeline: checks the server, opens the replication stream and moves
//! every change from the decoder to the outputs, confirming positions back to
//! the server only once the outputs have durably taken them. A lost
//! replication connection is reopened (with backoff) from the last confirmed
//! position; the outputs stay open across reconnects.

mod applier;
mod catchup;
mod error;
mod housekeeping;
mod reconnect;
mod snapshot;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::config::conninfo::{self, ConnInfo};
use crate::config::{CatchUpThreshold, Cli, Format, SnapshotMode};
use crate::filter::Filter;
use crate::lsn::Lsn;
use crate::metrics::{self, Metrics};
use crate::output::{CompositeOutput, JetStreamOutput, OutputTarget, StdoutOutput};
use crate::preflight::{self, Preflight, PreflightError, SlotCreation};
use crate::replication::{quote_identifier, ReplicationConnection, ReplicationStream};
use crate::shutdown::Shutdown;
use crate::snapshot::state::StateStore;
use applier::{Payload, Rules};
use catchup::{CatchUp, SqlSource};

pub use error::RunError;
pub use housekeeping::HEARTBEAT_PREFIX;
pub use reconnect::{is_retryable, Backoff};
pub use stream::Stop;
use stream::Streamer;

/// How often a standby looks at whether the slot was released.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// Run the daemon until a stop is requested, the outputs close, or a failure
/// that reconnecting cannot fix.
pub async fn run(cli: Cli, mut shutdown: Shutdown) -> Result<Stop, RunError> {
    let info = ConnInfo::parse(&cli.connection).map_err(RunError::ConnInfo)?;
    let metrics = Metrics::new(cli.nats.enabled());
    if let Some(addr) = cli.metrics_addr {
        metrics::serve(addr, metrics.clone())
            .await
            .map_err(|err| RunError::Usage(format!("cannot serve metrics on {addr}: {err}")))?;
    }
    let rules = Rules {
        filter: Filter::new(&cli.filter).map_err(|err| RunError::Usage(err.to_string()))?,
        payload: match cli.format {
            Format::Debezium => Payload::Debezium {
                name: cli.nats.subject_prefix.clone(),
                db: info.dbname.clone(),
            },
            Format::Json | Format::JsonPretty | Format::Text => Payload::Native,
        },
        stream_memory: usize::try_from(cli.streaming_memory).unwrap_or(usize::MAX),
    };
    if cli.snapshot == SnapshotMode::Initial
        && !cli.nats.enabled()
        && cli.snapshot_state_file.is_none()
    {
        return Err(RunError::Usage(
            "--snapshot initial keeps its progress in JetStream or a file: add --nats-server or --snapshot-state-file".into(),
        ));
    }
    for ignored in ignored_flags(&cli) {
        warn!(
            message = "A flag has no effect in this configuration.",
            flag = ignored
        );
    }
    if let Some(path) = &cli.snapshot_state_file {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(RunError::Usage(format!(
                "--snapshot-state-file {}: the directory {} does not exist; create it first",
                path.display(),
                dir.display()
            )));
        }
    }
    // Nothing has been read or confirmed while connecting (at most the
    // JetStream stream was created, as the next start would): a stop request
    // (a hanging server holds us up to connect_timeout) ends the run at once.
    let (mut output, nats) = tokio::select! {
        built = build_outputs(&cli, &metrics) => built?,
        _ = shutdown.wait() => return Ok(stopped_while_starting()),
    };
    let Some((mut checked, client)) = check_server(&info, &cli, &mut shutdown).await? else {
        return Ok(Stop::Requested);
    };
    if cli.streaming && checked.server_version_num < 140_000 {
        return Err(RunError::Usage(format!(
            "--streaming needs PostgreSQL 14 or later (pgoutput protocol version 2); the server is {}: drop --streaming",
            checked.server_version_num
        )));
    }
    warn_unmatched_includes(&client, &cli.publication, &rules.filter).await;
    let housekeeping = tokio::spawn(housekeeping::run(
        info.clone(),
        Some(client),
        cli.slot.clone(),
        cli.heartbeat(),
        metrics.clone(),
    ));
    if cli.snapshot == SnapshotMode::Initial {
        let store = match (nats, &cli.snapshot_state_file) {
            (_, Some(path)) => StateStore::File(path.clone()),
            (Some(client), None) => StateStore::kv(client, cli.nats.replicas)
                .await
                .map_err(|e| RunError::Snapshot(e.to_string()))?,
            (None, None) => unreachable!("checked above"),
        };
        let snapshot = snapshot::SnapshotRun {
            info: &info,
            cli: &cli,
            metrics: &metrics,
            rules: &rules,
            store,
        };
        match snapshot::run(snapshot, &mut checked, &mut output, &mut shutdown).await {
            Ok(None) => {}
            Ok(Some(stop)) => {
                housekeeping.abort();
                return Ok(stop);
            }
            Err(err) => {
                housekeeping.abort();
                return stream::output_stop(Err(err));
            }
        }
    }
    let run = Run {
        info: &info,
        cli: &cli,
        checked: &checked,
        metrics: &metrics,
        rules: &rules,
    };
    let result = stream(&run, &mut output, &mut shutdown).await;
    housekeeping.abort();
    result
}

/// What every streaming session and catch-up of a run shares.
struct Run<'a> {
    info: &'a ConnInfo,
    cli: &'a Cli,
    checked: &'a Preflight,
    metrics: &'a Arc<Metrics>,
    rules: &'a Rules,
}

/// Stream, reconnecting after lost connections, until a stop or a failure.
async fn stream(
    run: &Run<'_>,
    output: &mut CompositeOutput,
    shutdown: &mut Shutdown,
) -> Result<Stop, RunError> {
    let Run {
        cli,
        checked,
        metrics,
        ..
    } = *run;
    let mut confirmed = cli
        .start_lsn
        .unwrap_or(Lsn::ZERO)
        .max(checked.confirmed_flush);
    let mut backoff = Backoff::new(cli.reconnect_max_backoff);
    let mut first = true;
    let mut outputs_closed = false;
    loop {
        if let CatchUpThreshold::Bytes(threshold) = cli.catch_up_threshold {
            let caught_up = catch_up(run, threshold, output, confirmed, shutdown).await;
            metrics.set_postgres_streaming(false);
            match caught_up {
                Ok(CatchUp::Stream(position)) => confirmed = position,
                Ok(CatchUp::Stopped { stop, confirmed }) => {
                    info!(message = "Stopped.", confirmed_lsn = %confirmed);
                    return Ok(stop);
                }
                Err(err) => {
                    if !matches!(err, RunError::Output(_)) {
                        close_outputs(output, cli.shutdown_timeout).await;
                    }
                    info!(message = "Stopped.", confirmed_lsn = %confirmed);
                    return Err(err);
                }
            }
        }
        let opened = tokio::select! {
            opened = open_stream(run, confirmed, first) => opened,
            _ = shutdown.wait() => {
                close_outputs(output, cli.shutdown_timeout).await;
                info!(message = "Stopped.", confirmed_lsn = %confirmed);
                return Ok(Stop::Requested);
            }
        };
        let result = match opened {
            Ok(stream) => {
                first = false;
                backoff.reset();
                metrics.set_postgres_streaming(true);
                let mut streamer = Streamer::new(
                    stream,
                    &mut *output,
                    confirmed,
                    cli.status_interval,
                    metrics.clone(),
                    run.rules.clone(),
                );
                let result = streamer.run(shutdown.clone(), cli.shutdown_timeout).await;
                let retry = matches!(&result, Err(err) if is_retryable(err));
                confirmed = streamer.finish(&result, !retry, cli.shutdown_timeout).await;
                outputs_closed = !retry;
                metrics.set_postgres_streaming(false);
                result
            }
            // The first connection must work: a failure there is reported, not retried.
            Err(err) if first => return Err(err),
            Err(err) => Err(err),
        };
        match result {
            Err(err) if is_retryable(&err) => {
                output.discard_uncommitted();
                metrics.reconnects.inc();
                let delay = backoff.next_delay();
                warn!(
                    message = "Replication connection lost; reconnecting.",
                    error = err.to_string(),
                    retry_in_ms = delay.as_millis() as u64,
                    resume_from = %confirmed,
                );
                if sleep_or_stop(delay, shutdown).await {
                    close_outputs(output, cli.shutdown_timeout).await;
                    info!(message = "Stopped.", confirmed_lsn = %confirmed);
                    return Ok(Stop::Requested);
                }
            }
            Err(err) => {
                // Failed for good: outputs that still work get what they hold
                // acknowledged (it will be sent again anyway; this spares duplicates).
                if !outputs_closed && !matches!(err, RunError::Output(_)) {
                    close_outputs(output, cli.shutdown_timeout).await;
                }
                info!(message = "Stopped.", confirmed_lsn = %confirmed);
                return Err(err.explain_recreated_publication());
            }
            Ok(stop) => {
                info!(message = "Stopped.", confirmed_lsn = %confirmed);
                return Ok(stop);
            }
        }
    }
}

/// Pre-flight checks on an ordinary SQL connection. With `--standby`, a slot
/// held by another process is waited for; `None` means a stop was requested
/// while waiting.
async fn check_server(
    info: &ConnInfo,
    cli: &Cli,
    shutdown: &mut Shutdown,
) -> Result<Option<(Preflight, Client)>, RunError> {
    let client = tokio::select! {
        client = conninfo::connect_sql(info) => client.map_err(RunError::Connect)?,
        _ = shutdown.wait() => {
            stopped_while_starting();
            return Ok(None);
        }
    };
    if let Some(start) = cli.start_lsn {
        check_start_lsn(&client, start).await?;
    }
    let mut waiting = false;
    loop {
        let creation = match (cli.create_slot, cli.snapshot) {
            (false, _) => SlotCreation::Never,
            (true, SnapshotMode::Never) => SlotCreation::Now,
            (true, SnapshotMode::Initial) => SlotCreation::Deferred,
        };
        let checked = match preflight::run(&client, &cli.slot, &cli.publication, creation).await {
            Ok(checked) => preflight::claim_slot(&client, &cli.slot)
                .await
                .map(|()| checked),
            Err(err) => Err(err),
        };
        match checked {
            Err(PreflightError::SlotActive { slot, pid }) if cli.standby => {
                if !waiting {
                    info!(
                        message = "Replication slot is in use by another process; standing by to take over.",
                        slot = slot.as_str(),
                        pid,
                    );
                    waiting = true;
                }
                if sleep_or_stop(STANDBY_POLL, shutdown).await {
                    return Ok(None);
                }
            }
            Err(err) => return Err(RunError::Preflight(err)),
            Ok(checked) => {
                if waiting {
                    info!(
                        message = "Replication slot released; taking over.",
                        slot = cli.slot.as_str()
                    );
                }
                return Ok(Some((checked, client)));
            }
        }
    }
}

/// Flags given that this configuration never uses, with why: a forgotten
/// `--nats-server` or `--snapshot initial` would otherwise go unnoticed.
fn ignored_flags(cli: &Cli) -> Vec<&'static str> {
    let nats = &cli.nats;
    let mut ignored = Vec::new();
    if !nats.enabled() {
        for (given, flag) in [
            (nats.token.is_some(), "--nats-token (no --nats-server)"),
            (nats.user.is_some(), "--nats-user (no --nats-server)"),
            (nats.creds.is_some(), "--nats-creds (no --nats-server)"),
            (nats.nkey.is_some(), "--nats-nkey (no --nats-server)"),
            (nats.tls_ca.is_some(), "--nats-tls-ca (no --nats-server)"),
        ] {
            if given {
                ignored.push(flag);
            }
        }
    }
    if cli.snapshot != SnapshotMode::Initial {
        if cli.snapshot_state_file.is_some() {
            ignored.push("--snapshot-state-file (no --snapshot initial)");
        }
        if cli.filter.ops == [crate::config::filter::Op::Read] {
            ignored.push("--ops read: only snapshot rows, and no --snapshot initial, so nothing is published");
        }
    }
    ignored
}

/// A warning for each `--include-tables` pattern that matches none of the
/// publication's tables now (names are compared as they are, case included):
/// not an error, as tables may join the publication later.
async fn warn_unmatched_includes(client: &Client, publication: &str, filter: &Filter) {
    if !filter.has_includes() {
        return;
    }
    let tables: Vec<String> = match client
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&publication],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|row| row.get(0)).collect(),
        Err(_) => return,
    };
    const SHOWN: usize = 10;
    for pattern in filter.unmatched_includes(&tables) {
        let mut listed = tables
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if tables.len() > SHOWN {
            listed.push_str(&format!(", and {} more", tables.len() - SHOWN));
        }
        warn!(
            message = "An --include-tables pattern matches none of the publication's tables; names are schema.table, case included.",
            pattern,
            publication,
            tables = listed.as_str(),
        );
    }
}

/// Refuses a `--start-lsn` beyond what the server has written: the slot would
/// be confirmed there at once, and every change until the server got that far
/// would be skipped for good (before anything is created).
async fn check_start_lsn(client: &Client, start: Lsn) -> Result<(), RunError> {
    let row = client
        .query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END)::text",
            &[],
        )
        .await
        .map_err(|source| {
            RunError::Preflight(PreflightError::Query {
                context: "reading the server's WAL position",
                source,
            })
        })?;
    let end: Option<String> = row.get(0);
    let Some(end) = end.and_then(|end| end.parse::<Lsn>().ok()) else {
        return Ok(());
    };
    if start > end {
        return Err(RunError::Usage(format!(
            "--start-lsn {start} is ahead of the server's WAL ({end}): the slot would skip every change until the server gets there; give a position it has written, or leave --start-lsn out"
        )));
    }
    Ok(())
}

/// Connect for replication and start streaming from `from`.
async fn open_stream(run: &Run<'_>, from: Lsn, first: bool) -> Result<ReplicationStream, RunError> {
    let Run {
        info, cli, checked, ..
    } = *run;
    let mut connection = ReplicationConnection::connect(info)
        .await
        .map_err(RunError::Replication)?;
    let system = connection
        .identify_system()
        .await
        .map_err(RunError::Replication)?;
    if first {
        info!(
            message = "Connected to PostgreSQL.",
            server = info.to_string(),
            server_version = checked.server_version_num,
            system_id = %system.systemid,
            timeline = system.timeline,
            wal_position = %system.xlogpos,
        );
    }
    let options = plugin_options(cli, checked, cli.streaming);
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stream = connection
        .start_replication(&cli.slot, from, &options)
        .await
        .map_err(RunError::Replication)?;
    info!(
        message = "Streaming changes.",
        slot = cli.slot.as_str(),
        publication = cli.publication.as_str(),
        from_lsn = %from,
    );
    Ok(stream)
}

/// The pgoutput options. `streaming`: protocol version 2 with in-progress
/// transactions streamed (replication connections only; the SQL functions do
/// not stream, and version 1 messages are what version 2 sends otherwise).
fn plugin_options(cli: &Cli, checked: &Preflight, streaming: bool) -> Vec<(&'static str, String)> {
    let version = if streaming { "2" } else { "1" };
    let mut options = vec![
        ("proto_version", version.to_string()),
        ("publication_names", quote_identifier(&cli.publication)),
    ];
    if streaming {
        options.push(("streaming", "on".to_string()));
    }
    // Logical decoding messages are forwarded by pgoutput from PostgreSQL 14 on.
    if checked.server_version_num >= 140_000 {
        options.push(("messages", "true".to_string()));
    }
    options
}

/// Catch up through SQL while the slot is far behind (see [`catchup`]).
async fn catch_up(
    run: &Run<'_>,
    threshold: u64,
    output: &mut CompositeOutput,
    confirmed: Lsn,
    shutdown: &mut Shutdown,
) -> Result<CatchUp, RunError> {
    let options = plugin_options(run.cli, run.checked, false);
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(source) = SqlSource::connect(run.info, &run.cli.slot, &options).await else {
        return Ok(CatchUp::Stream(confirmed));
    };
    let chunk = catchup::Chunk {
        metrics: run.metrics,
        rules: run.rules,
        shutdown_timeout: run.cli.shutdown_timeout,
    };
    catchup::catch_up(&source, &chunk, threshold, output, confirmed, shutdown).await
}

/// Logs a stop requested before anything was read.
fn stopped_while_starting() -> Stop {
    info!(message = "Stopped while starting; nothing was read.");
    Stop::Requested
}

/// Sleep, unless a stop is requested first (then true).
async fn sleep_or_stop(delay: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.wait() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Let the outputs finish (bounded by `timeout`).
async fn close_outputs<O: OutputTarget + ?Sized>(output: &mut O, timeout: Duration) {
    match tokio::time::timeout(timeout, output.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(
            message = "Could not flush outputs while stopping.",
            error = err.to_string()
        ),
        Err(_) => warn!(message = "Outputs did not finish within the shutdown timeout; the rest is sent again on restart."),
    }
}

/// The configured targets. The JetStream one is set up (connection, stream)
/// before anything is created on the PostgreSQL side.
/// Also returns the NATS connection, when there is one.
async fn build_outputs(
    cli: &Cli,
    metrics: &Arc<Metrics>,
) -> Result<(CompositeOutput, Option<async_nats::Client>), RunError> {
    if cli.no_stdout && !cli.nats.enabled() {
        return Err(RunError::Usage(
            "--no-stdout leaves no output target: add --nats-server or drop --no-stdout".into(),
        ));
    }
    let mut output = CompositeOutput::new();
    let mut nats = None;
    if cli.nats.enabled() {
        let jetstream = JetStreamOutput::connect(&cli.nats, &cli.slot, metrics.clone())
            .await
            .map_err(RunError::JetStream)?;
        nats = Some(jetstream.client());
        output.push(Box::new(jetstream));
    }
    if !cli.no_stdout {
        output.push(Box::new(StdoutOutput::stdout(cli.format)));
    }
    Ok((output, nats))
}
