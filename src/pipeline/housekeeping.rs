//! Work on the ordinary SQL connection while streaming: poll the slot's lag
//! for the metrics and, with `--heartbeat-interval`, write heartbeat messages
//! so the slot's position keeps moving while the published tables are idle.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tracing::{debug, warn};

use crate::config::conninfo::{self, ConnInfo, SqlError};
use crate::metrics::Metrics;
use crate::preflight;

/// Prefix of the heartbeat messages; the pipeline does not forward them.
pub const HEARTBEAT_PREFIX: &str = "pgoutput-stream.heartbeat";

/// How often the lag is polled.
const LAG_INTERVAL: Duration = Duration::from_secs(10);

/// Run until the process ends (the task is aborted at shutdown). `client` is
/// the pre-flight connection; it is reopened when it breaks.
pub async fn run(
    info: ConnInfo,
    mut client: Option<Client>,
    slot: String,
    heartbeat: Option<Duration>,
    metrics: Arc<Metrics>,
) {
    let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
    let mut heartbeat_tick = tokio::time::interval(heartbeat.unwrap_or(Duration::MAX / 4));
    // The first tick of an interval is immediate; the heartbeat waits a whole interval.
    heartbeat_tick.tick().await;
    let mut warned = false;
    loop {
        let query = tokio::select! {
            _ = lag_tick.tick() => Query::Lag,
            _ = heartbeat_tick.tick(), if heartbeat.is_some() => Query::Heartbeat,
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = conninfo::connect_sql(&info).await.ok();
            // The slot's lock went with the old session.
            if let Some(sql) = client.as_ref() {
                if let Err(err) = preflight::claim_slot(sql, &slot).await {
                    warn!(message = "Could not lock the slot again after reconnecting; a standby may take over.", error = err.to_string());
                }
            }
        }
        let Some(sql) = client.as_ref() else { continue };
        let result = match query {
            Query::Lag => sql
                .query_opt(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map(|row| {
                    if let Some(lag) = row.and_then(|r| r.get::<_, Option<i64>>(0)) {
                        metrics.lag_bytes.set(lag);
                    }
                }),
            Query::Heartbeat => sql
                .execute(
                    "SELECT pg_logical_emit_message(false, $1, '')",
                    &[&HEARTBEAT_PREFIX],
                )
                .await
                .map(|_| debug!(message = "Heartbeat written.")),
        };
        match result {
            Ok(()) => warned = false,
            Err(err) if !warned => {
                warn!(
                    message = "Query on the SQL connection failed; retrying later.",
                    error = SqlError(&err).to_string()
                );
                warned = true;
            }
            Err(_) => {}
        }
    }
}

enum Query {
    Lag,
    Heartbeat,
}
