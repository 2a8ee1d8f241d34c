//! The pipeline: checks the server, opens the replication stream and moves
//! every change from the decoder to the outputs, confirming positions back to
//! the server only once the outputs have durably taken them.

mod error;
mod stream;

use tracing::info;

use crate::config::conninfo::{self, ConnInfo};
use crate::config::Cli;
use crate::lsn::Lsn;
use crate::output::{CompositeOutput, JetStreamOutput, StdoutOutput};
use crate::preflight;
use crate::replication::ReplicationConnection;
use crate::shutdown::Shutdown;

pub use error::RunError;
pub use stream::{Stop, Streamer};

/// Run the daemon until a stop is requested, the outputs close, or a failure.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<Stop, RunError> {
    let info = ConnInfo::parse(&cli.connection).map_err(RunError::ConnInfo)?;
    let mut output = build_outputs(&cli).await?;

    let client = conninfo::connect_sql(&info)
        .await
        .map_err(RunError::Connect)?;
    let checked = preflight::run(&client, &cli.slot, &cli.publication, cli.create_slot)
        .await
        .map_err(RunError::Preflight)?;
    drop(client);

    let mut connection = ReplicationConnection::connect(&info)
        .await
        .map_err(RunError::Replication)?;
    let system = connection
        .identify_system()
        .await
        .map_err(RunError::Replication)?;
    info!(
        message = "Connected to PostgreSQL.",
        server = %info,
        server_version = checked.server_version_num,
        system_id = %system.systemid,
        timeline = system.timeline,
        wal_position = %system.xlogpos,
    );

    let start = cli.start_lsn.unwrap_or(Lsn::ZERO);
    let publication_names = quote_identifier(&cli.publication);
    let mut options = vec![
        ("proto_version", "1"),
        ("publication_names", publication_names.as_str()),
    ];
    // Logical decoding messages are forwarded by pgoutput from PostgreSQL 14 on.
    if checked.server_version_num >= 140_000 {
        options.push(("messages", "true"));
    }
    let stream = connection
        .start_replication(&cli.slot, start, &options)
        .await
        .map_err(RunError::Replication)?;
    let from = start.max(checked.confirmed_flush);
    info!(
        message = "Streaming changes.",
        slot = %cli.slot,
        publication = %cli.publication,
        from_lsn = %from,
    );

    let mut streamer = Streamer::new(stream, &mut output, from, cli.status_interval);
    let result = streamer.run(shutdown).await;
    let confirmed = streamer.finish(&result).await;
    info!(message = "Stopped.", confirmed_lsn = %confirmed);
    result
}

/// The configured targets. The JetStream one is set up (connection, stream)
/// before anything is created on the PostgreSQL side.
async fn build_outputs(cli: &Cli) -> Result<CompositeOutput, RunError> {
    if cli.no_stdout && !cli.nats.enabled() {
        return Err(RunError::Usage(
            "--no-stdout leaves no output target: add --nats-server or drop --no-stdout".into(),
        ));
    }
    let mut output = CompositeOutput::new();
    if cli.nats.enabled() {
        let jetstream = JetStreamOutput::connect(&cli.nats, &cli.slot)
            .await
            .map_err(RunError::JetStream)?;
        output.push(Box::new(jetstream));
    }
    if !cli.no_stdout {
        output.push(Box::new(StdoutOutput::stdout(cli.format)));
    }
    Ok(output)
}

/// `name` as a double-quoted SQL identifier, as `publication_names` expects.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_doubled_quotes() {
        assert_eq!(quote_identifier("shop_pub"), "\"shop_pub\"");
        assert_eq!(quote_identifier("a\"b, c"), "\"a\"\"b, c\"");
    }
}
