//! Running the initial snapshot (see [`crate::snapshot`]): create the slot
//! with an exported snapshot (or resume an unfinished one), read every table
//! of the publication with COPY in one REPEATABLE READ transaction, and hand
//! each row as a `read` event to the same filter, encoder and outputs as
//! streamed changes. A table counts as done once the outputs have durably
//! taken all its rows; only then is it recorded in the state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::applier::{Applier, Rules};
use super::{close_outputs, RunError, Stop};
use crate::change::{time, Change, RowChange, TxInfo};
use crate::checkpoint::Checkpoint;
use crate::config::conninfo::{self, ConnInfo, SqlError};
use crate::config::Cli;
use crate::lsn::Lsn;
use crate::metrics::Metrics;
use crate::output::{CompositeOutput, OutputTarget, Seq};
use crate::preflight::Preflight;
use crate::replication::{quote_identifier, ReplicationConnection};
use crate::shutdown::Shutdown;
use crate::snapshot::copy::CopyRows;
use crate::snapshot::state::{SnapshotState, StateStore};
use crate::snapshot::tables::{publication_tables, SnapshotTable};

/// How often progress is logged while a table is read.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the durable position is looked at while a table's last acks arrive.
const DURABLE_POLL: Duration = Duration::from_millis(5);

/// What the snapshot needs of the run.
pub(super) struct SnapshotRun<'a> {
    pub(super) info: &'a ConnInfo,
    pub(super) cli: &'a Cli,
    pub(super) metrics: &'a Arc<Metrics>,
    pub(super) rules: &'a Rules,
    pub(super) store: StateStore,
}

/// Take or resume the snapshot. Updates `checked` when the slot was created
/// here. `Some(stop)` when a stop was requested (or an output closed) before
/// it finished.
pub(super) async fn run(
    run: SnapshotRun<'_>,
    checked: &mut Preflight,
    output: &mut CompositeOutput,
    shutdown: &mut Shutdown,
) -> Result<Option<Stop>, RunError> {
    let slot = run.cli.slot.as_str();
    let failed = |context: &str, err: &dyn std::fmt::Display| {
        RunError::Snapshot(format!("{context}: {err}"))
    };
    let sql = conninfo::connect_sql(run.info)
        .await
        .map_err(RunError::Connect)?;
    // A row-level security policy would hide rows from the snapshot that the
    // stream publishes (logical decoding applies none): an error instead.
    sql.batch_execute("SET row_security = off")
        .await
        .map_err(|e| failed("setting row_security", &SqlError(&e)))?;
    let mut state = if checked.slot_missing {
        check_readable(&sql, &run, checked.server_version_num).await?;
        let mut replication = ReplicationConnection::connect(run.info)
            .await
            .map_err(RunError::Replication)?;
        // Saved before the slot exists: if the process dies before the state
        // below is saved, the next start finds the slot with a snapshot to take.
        let mut state = SnapshotState {
            slot: slot.to_owned(),
            consistent_point: None,
            done: Vec::new(),
            finished: false,
        };
        run.store
            .save(&state)
            .await
            .map_err(|e| failed("saving the snapshot state", &e))?;
        let (consistent_point, snapshot) =
            match replication.create_slot_exporting_snapshot(slot).await {
                Ok(created) => created,
                Err(err) => {
                    // No slot, no snapshot to take: a slot created later
                    // otherwise must not be taken for this one.
                    run.store.delete(slot).await;
                    return Err(RunError::Replication(err));
                }
            };
        info!(
            message = "Created replication slot with an exported snapshot.",
            slot,
            consistent_point = %consistent_point,
        );
        state.consistent_point = Some(consistent_point.to_string());
        run.store
            .save(&state)
            .await
            .map_err(|e| failed("saving the snapshot state", &e))?;
        // The exported snapshot lives until the replication connection's next command.
        sql.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ))
        .await
        .map_err(|e| failed("importing the slot's snapshot", &SqlError(&e)))?;
        drop(replication);
        checked.confirmed_flush = consistent_point;
        checked.created_slot = true;
        checked.slot_missing = false;
        state
    } else {
        match run
            .store
            .load(slot)
            .await
            .map_err(|e| failed("loading the snapshot state", &e))?
        {
            Some(mut state) if !state.finished => {
                check_readable(&sql, &run, checked.server_version_num).await?;
                match &state.consistent_point {
                    None => {
                        // The slot was created and nothing read yet: nothing has
                        // confirmed a position, so the slot is still at its consistent point.
                        info!(
                            message = "Taking the initial snapshot of a slot whose start stopped before reading.",
                            slot,
                        );
                        state.consistent_point = Some(checked.confirmed_flush.to_string());
                        run.store
                            .save(&state)
                            .await
                            .map_err(|e| failed("saving the snapshot state", &e))?;
                    }
                    // Nothing moves the slot before its snapshot is finished:
                    // elsewhere it is another slot (dropped and created again)
                    // or was moved by hand, and the changes between the two
                    // positions are not in the tables already read.
                    Some(saved) if saved.parse::<Lsn>().ok() != Some(checked.confirmed_flush) => {
                        return Err(RunError::SnapshotConfiguration(format!(
                            "the unfinished snapshot recorded for slot {slot} started at {saved}, \
                             but the slot is at {} (created again or moved since); to take the \
                             snapshot again, drop the slot and delete the state ({})",
                            checked.confirmed_flush,
                            run.store.describe(slot)
                        )));
                    }
                    Some(_) => info!(
                        message = "Resuming the initial snapshot with the tables not finished; they are read from a new snapshot.",
                        slot,
                        done = state.done.len(),
                    ),
                }
                sql.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| failed("starting the snapshot transaction", &SqlError(&e)))?;
                state
            }
            Some(_) => return Ok(None),
            None => {
                // --snapshot initial asked for one: that it is not taken is worth a warning.
                warn!(
                    message = "The slot already exists and no snapshot of it is recorded: streaming changes only (drop the slot to take an initial snapshot).",
                    slot,
                );
                return Ok(None);
            }
        }
    };
    let consistent_point: Lsn = state
        .consistent_point
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| failed("the snapshot state's consistent point", &e))?;
    let tables = publication_tables(&sql, &run.cli.publication, checked.server_version_num)
        .await
        .map_err(|e| failed("listing the publication's tables", &SqlError(&e)))?;
    let taken_at = time::now();
    let started = Instant::now();
    let mut rows_total = 0u64;
    // Tables the filters drop are not read at all.
    let mut filter = run.rules.filter.clone();
    for (number, table) in tables.iter().enumerate() {
        let name = table.name();
        if state.done.contains(&name) || !filter.keeps(&Change::Relation(table.table.clone())) {
            continue;
        }
        let mut applier = Applier::new(
            &mut *output,
            Arc::new(Mutex::new(Checkpoint::new(consistent_point))),
            run.metrics.clone(),
            run.rules.clone(),
        );
        let read = read_table(&sql, table, consistent_point, taken_at, &mut applier);
        let rows = tokio::select! {
            rows = read => rows?,
            _ = shutdown.wait() => {
                drop(applier);
                return Ok(Some(stopped(output, run.cli.shutdown_timeout).await));
            }
        };
        // Durable before it counts as done: a marker below every real position
        // (the stream starts at the consistent point) that grows per table.
        let marker = Lsn(number as u64 + 1);
        applier
            .output
            .commit(marker)
            .await
            .map_err(RunError::Output)?;
        drop(applier);
        tokio::select! {
            () = durable(&*output, marker) => {}
            _ = shutdown.wait() => return Ok(Some(stopped(output, run.cli.shutdown_timeout).await)),
        }
        state.done.push(name);
        run.store
            .save(&state)
            .await
            .map_err(|e| failed("saving the snapshot state", &e))?;
        rows_total += rows;
    }
    sql.batch_execute("COMMIT")
        .await
        .map_err(|e| failed("ending the snapshot transaction", &SqlError(&e)))?;
    state.finished = true;
    run.store
        .save(&state)
        .await
        .map_err(|e| failed("saving the snapshot state", &e))?;
    info!(
        message = "Initial snapshot finished; streaming from its consistent point.",
        tables = tables.len(),
        rows = rows_total,
        seconds = started.elapsed().as_secs_f64().round() as u64,
        consistent_point = %consistent_point,
    );
    Ok(None)
}

/// Whether the role may read every table the snapshot reads, in full: each
/// table's query for no rows, before anything is created or read, so a
/// missing grant or a row-level security policy ends the start with the fix
/// instead of a snapshot stopped halfway.
async fn check_readable(
    sql: &Client,
    run: &SnapshotRun<'_>,
    server_version_num: u32,
) -> Result<(), RunError> {
    let tables = publication_tables(sql, &run.cli.publication, server_version_num)
        .await
        .map_err(|e| {
            RunError::Snapshot(format!(
                "listing the publication's tables: {}",
                SqlError(&e)
            ))
        })?;
    let mut filter = run.rules.filter.clone();
    for table in &tables {
        if !filter.keeps(&Change::Relation(table.table.clone())) {
            continue;
        }
        let Err(err) = sql.batch_execute(&table.probe_sql).await else {
            continue;
        };
        let name = table.name();
        let Some(db) = err
            .as_db_error()
            .filter(|db| *db.code() == SqlState::INSUFFICIENT_PRIVILEGE)
        else {
            return Err(RunError::Snapshot(format!(
                "reading {name}: {}",
                SqlError(&err)
            )));
        };
        let role = quote_identifier(&run.info.user);
        let fix = if db.message().contains("row-level security") {
            format!(
                "a row-level security policy would hide rows the stream publishes: \
                 ALTER ROLE {role} BYPASSRLS, or disable the policy"
            )
        } else {
            format!(
                "GRANT SELECT ON {}.{} TO {role}",
                quote_identifier(&table.table.schema),
                quote_identifier(&table.table.name)
            )
        };
        return Err(RunError::SnapshotConfiguration(format!(
            "cannot read {name}: {}; {fix}",
            db.message()
        )));
    }
    Ok(())
}

/// COPY one table and publish its rows (after its relation event); the number of rows.
async fn read_table<O: OutputTarget + ?Sized>(
    sql: &Client,
    table: &SnapshotTable,
    consistent_point: Lsn,
    taken_at: i64,
    applier: &mut Applier<'_, O>,
) -> Result<u64, RunError> {
    let name = table.name();
    let failed = |e: &dyn std::fmt::Display| RunError::Snapshot(format!("reading {name}: {e}"));
    info!(
        message = "Snapshot of table started.",
        table = name.as_str(),
        estimated_rows = table.estimate.max(0),
    );
    let seq = |index| Seq {
        commit_lsn: consistent_point,
        index,
    };
    applier
        .publish_row(&Change::Relation(table.table.clone()), seq(0))
        .await?;
    let tx = TxInfo {
        xid: 0,
        commit_lsn: consistent_point,
        commit_ts: taken_at,
    };
    let copy = sql
        .copy_out(table.copy_sql.as_str())
        .await
        .map_err(|e| failed(&SqlError(&e)))?;
    pin_mut!(copy);
    let columns = table.table.columns.len();
    let mut parser = CopyRows::default();
    let mut tuples = Vec::new();
    let mut rows = 0u64;
    let started = Instant::now();
    let mut last_report = started;
    let bar = progress_bar(&name, table.estimate);
    while let Some(chunk) = copy.try_next().await.map_err(|e| failed(&SqlError(&e)))? {
        parser
            .push(&chunk, columns, &mut tuples)
            .map_err(|e| failed(&e))?;
        for tuple in tuples.drain(..) {
            let change = Change::Read(RowChange {
                table: table.table.clone(),
                lsn: consistent_point,
                tx,
                new: Some(tuple),
                old: None,
            });
            applier.publish_row(&change, seq(rows)).await?;
            rows += 1;
        }
        match &bar {
            Some(bar) => {
                bar.set_length(bar.length().unwrap_or(0).max(rows));
                bar.set_position(rows);
            }
            None if last_report.elapsed() >= PROGRESS_EVERY => {
                last_report = Instant::now();
                report(&name, rows, table.estimate, started, false);
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !parser.is_empty() {
        return Err(failed(&"the COPY output ended inside a row"));
    }
    report(&name, rows, table.estimate, started, true);
    Ok(rows)
}

/// On a terminal, a bar (rows of the estimate, rate, time left) instead of progress lines.
fn progress_bar(table: &str, estimate: i64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(u64::try_from(estimate).unwrap_or(0));
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, {eta} left",
    )
    .ok()?;
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(table.to_owned());
    Some(bar)
}

/// One progress line: rows done, rate, and (while running) the estimate.
fn report(table: &str, rows: u64, estimate: i64, started: Instant, done: bool) {
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    };
    if done {
        info!(
            message = "Snapshot of table done.",
            table,
            rows,
            rows_per_second = rate.round() as u64
        );
    } else {
        let estimate = u64::try_from(estimate).unwrap_or(0);
        let remaining_seconds = if rate > 0.0 && estimate > rows {
            ((estimate - rows) as f64 / rate).round() as u64
        } else {
            0
        };
        info!(
            message = "Snapshot progress.",
            table,
            rows,
            estimated_rows = estimate,
            rows_per_second = rate.round() as u64,
            remaining_seconds,
        );
    }
}

async fn durable<O: OutputTarget + ?Sized>(output: &O, marker: Lsn) {
    while output.durable() < marker {
        tokio::time::sleep(DURABLE_POLL).await;
    }
}

/// A stop during the snapshot: let the outputs finish what they hold; the
/// table being read is read again on restart.
async fn stopped(output: &mut CompositeOutput, timeout: Duration) -> Stop {
    info!(
        message =
            "Stop requested during the snapshot; the unfinished table is read again on restart."
    );
    output.discard_uncommitted();
    close_outputs(output, timeout).await;
    Stop::Requested
}
