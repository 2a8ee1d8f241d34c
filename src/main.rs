//! The `pgoutput-stream` binary: parse flags, set up logging, run the pipeline,
//! and turn its outcome into one line on stderr and the documented exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use pgoutput_stream::config::{Cli, LogFormat};
use pgoutput_stream::pipeline;
use pgoutput_stream::shutdown::Shutdown;

/// glibc's allocator handled the daemon's churn of small allocations slowly
/// (a quarter of the JetStream path's CPU when it ran on two threads), and
/// mimalloc kept more memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // clap exits with code 2 on usage errors.
    let cli = Cli::parse();
    let log_format = cli.log_format;
    if let Err(err) = init_logging(cli.log_level.as_deref(), cli.log_format) {
        eprintln!("pgoutput-stream: invalid --log-level: {err}");
        return ExitCode::from(2);
    }

    // One thread: the daemon needs well under one core (docs/performance.md),
    // and tasks handing events to each other on one thread never have to wake
    // another one (15–25% less CPU than two worker threads in the benchmark).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pgoutput-stream: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = Shutdown::on_signals().map_err(|err| {
            pipeline::RunError::Usage(format!("cannot install signal handlers: {err}"))
        })?;
        pipeline::run(cli, shutdown).await
    });
    // Tasks still running (the NATS client's connection events, say) log
    // nothing after this: the failure line below is the last one on stderr.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            // The last line, in the format of the others: a log shipper
            // reading JSON lines gets the reason as one of them.
            match log_format {
                LogFormat::Text => eprintln!("pgoutput-stream: {err}"),
                LogFormat::Json => tracing::error!(
                    message = "pgoutput-stream stopped with an error.",
                    error = err.to_string(),
                    exit_code = err.exit_code()
                ),
            }
            ExitCode::from(err.exit_code())
        }
    }
}

/// Our own state changes at info; the NATS client repeats them in its own
/// words, and its connector's errors reach us as the connect error (at start)
/// or as client error events (when reconnecting), each logged once.
const DEFAULT_LOG_FILTER: &str = "info,async_nats=warn,async_nats::connector=off";

/// Logs go to stderr so that stdout carries only events. `--log-level`
/// wins over `RUST_LOG`; the default is `info`.
fn init_logging(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).map_err(|err| err.to_string())?,
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
        }
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text => registry
            .with(
                logs.with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter)
                    .with_filter(filter_fn(without_secrets)),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                logs.json()
                    .with_filter(filter)
                    .with_filter(filter_fn(without_secrets)),
            )
            .init(),
    }
    Ok(())
}

/// The NATS client's connection code logs the server address (with any
/// password in it) at debug and its CONNECT message (token, password) at
/// trace: those lines are never written, whatever the level asked for.
fn without_secrets(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.target().starts_with("async_nats::connect") && *meta.level() >= tracing::Level::DEBUG)
}
