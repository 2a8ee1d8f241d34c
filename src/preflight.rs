//! Pre-flight checks on the ordinary SQL connection, run before anything is
//! changed on the server: each failure names the fix in one line. The slot is
//! created (with `--create-slot`) only after every other check passed.

use tokio_postgres::Client;
use tracing::info;

use crate::config::conninfo::SqlError;
use crate::lsn::Lsn;

/// What the checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// `server_version_num`, e.g. 150004.
    pub server_version_num: u32,
    pub database: String,
    /// The slot's confirmed position: streaming resumes after it.
    pub confirmed_flush: Lsn,
    /// The slot was created by this run.
    pub created_slot: bool,
    /// The slot does not exist and the caller creates it ([`SlotCreation::Deferred`]).
    pub slot_missing: bool,
}

/// What to do when the slot does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCreation {
    /// Fail with a fix (no `--create-slot`).
    Never,
    /// Create it here, after every other check passed.
    Now,
    /// Report it missing: the caller creates it on the replication connection
    /// (to export a snapshot).
    Deferred,
}

/// What a pre-flight check rejected.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("wal_level is '{0}' but logical replication needs 'logical': run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL")]
    WalLevel(String),
    #[error("database \"{database}\" uses encoding {encoding}; pgoutput-stream needs a UTF8 database (create it with ENCODING 'UTF8')")]
    Encoding { database: String, encoding: String },
    #[error("role \"{0}\" may not start replication: run ALTER ROLE \"{0}\" WITH REPLICATION; as a superuser, or connect as a role that has it")]
    NoReplicationRole(String),
    #[error("publication \"{publication}\" does not exist in database \"{database}\": {}", match similar {
        Some(similar) => format!("there is \"{similar}\" (names are case-sensitive: CREATE PUBLICATION Shop folds to shop); use -p {similar}"),
        None => format!("create it with CREATE PUBLICATION \"{publication}\" FOR TABLE ... (or FOR ALL TABLES)"),
    })]
    MissingPublication {
        publication: String,
        database: String,
        /// A publication whose name differs only in case.
        similar: Option<String>,
    },
    #[error("replication slot \"{0}\" does not exist: add --create-slot, or create it with SELECT pg_create_logical_replication_slot('{0}', 'pgoutput');")]
    MissingSlot(String),
    #[error("replication slot \"{slot}\" {problem}: use another --slot, or drop it with SELECT pg_drop_replication_slot('{slot}');")]
    UnusableSlot { slot: String, problem: String },
    #[error("replication slot \"{slot}\" is in use by another process (PID {pid}): stop the other consumer or choose another --slot")]
    SlotActive { slot: String, pid: i32 },
    #[error("pre-flight query failed ({context}): {}", SqlError(.source))]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PreflightError {
    /// True for problems of set-up that only a change of configuration fixes.
    pub fn is_configuration(&self) -> bool {
        match self {
            PreflightError::SlotActive { .. } => false,
            // No free slot (max_replication_slots) is fixed by configuration;
            // other failed queries may pass on a retry.
            PreflightError::Query { source, .. } => {
                source.code()
                    == Some(&tokio_postgres::error::SqlState::CONFIGURATION_LIMIT_EXCEEDED)
            }
            _ => true,
        }
    }
}

fn query_err(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PreflightError {
    move |source| PreflightError::Query { context, source }
}

/// Run every check; create the slot when asked and missing.
pub async fn run(
    client: &Client,
    slot: &str,
    publication: &str,
    creation: SlotCreation,
) -> Result<Preflight, PreflightError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('server_version_num')::int4, \
                    current_database()::text, pg_encoding_to_char(d.encoding)::text, current_user::text, \
                    r.rolreplication OR r.rolsuper \
             FROM pg_database d, pg_roles r \
             WHERE d.datname = current_database() AND r.rolname = current_user",
            &[],
        )
        .await
        .map_err(query_err("reading server settings"))?;
    let wal_level: String = row.get(0);
    let server_version_num = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
    let database: String = row.get(2);
    let encoding: String = row.get(3);
    let user: String = row.get(4);
    let may_replicate: bool = row.get(5);

    if wal_level != "logical" {
        return Err(PreflightError::WalLevel(wal_level));
    }
    if encoding != "UTF8" {
        return Err(PreflightError::Encoding { database, encoding });
    }
    if !may_replicate {
        return Err(PreflightError::NoReplicationRole(user));
    }
    let publication_exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(query_err("looking up the publication"))?
        .is_some();
    if !publication_exists {
        let similar = client
            .query_opt(
                "SELECT pubname::text FROM pg_publication WHERE lower(pubname) = lower($1) LIMIT 1",
                &[&publication],
            )
            .await
            .map_err(query_err("looking up the publication"))?
            .map(|row| row.get(0));
        return Err(PreflightError::MissingPublication {
            publication: publication.to_string(),
            database,
            similar,
        });
    }

    let (confirmed_flush, created_slot, slot_missing) =
        match (check_slot(client, slot, &database).await?, creation) {
            (Some(lsn), _) => (lsn, false, false),
            (None, SlotCreation::Now) => (create(client, slot).await?, true, false),
            (None, SlotCreation::Deferred) => (Lsn::ZERO, false, true),
            (None, SlotCreation::Never) => {
                return Err(PreflightError::MissingSlot(slot.to_string()))
            }
        };
    Ok(Preflight {
        server_version_num,
        database,
        confirmed_flush,
        created_slot,
        slot_missing,
    })
}

/// Take the advisory lock that marks the slot as this instance's. The SQL
/// session holds it for its lifetime, so another instance (a `--standby`)
/// waits even while the slot itself is briefly free, as between the chunks of
/// a catch-up through SQL. Fails with [`PreflightError::SlotActive`] (naming
/// the holder) when another session holds it.
pub async fn claim_slot(client: &Client, slot: &str) -> Result<(), PreflightError> {
    let key = slot_lock_key(slot);
    let claimed: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .map_err(query_err("locking the slot for this instance"))?
        .get(0);
    if claimed {
        return Ok(());
    }
    // A bigint advisory lock is keyed by its high (classid) and low (objid) halves.
    let pid = client
        .query_opt(
            "SELECT l.pid FROM pg_locks l \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1, 0)",
            &[&key],
        )
        .await
        .map_err(query_err("looking up the slot's lock"))?
        .map_or(0, |row| row.get::<_, i32>(0));
    Err(PreflightError::SlotActive {
        slot: slot.to_string(),
        pid,
    })
}

/// The text whose `hashtextextended(text, 0)` keys the slot's advisory lock.
pub fn slot_lock_key(slot: &str) -> String {
    format!("pgoutput-stream slot {slot}")
}

/// The slot's confirmed position, or `None` when it does not exist.
async fn check_slot(
    client: &Client,
    slot: &str,
    database: &str,
) -> Result<Option<Lsn>, PreflightError> {
    let Some(row) = client
        .query_opt(
            "SELECT slot_type::text, plugin::text, database::text, active, active_pid, \
                    confirmed_flush_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(query_err("looking up the replication slot"))?
    else {
        return Ok(None);
    };
    let slot_type: String = row.get(0);
    let plugin: Option<String> = row.get(1);
    let slot_database: Option<String> = row.get(2);
    let active: bool = row.get(3);
    let active_pid: Option<i32> = row.get(4);
    let confirmed: Option<String> = row.get(5);

    let unusable = |problem: String| PreflightError::UnusableSlot {
        slot: slot.to_string(),
        problem,
    };
    if slot_type != "logical" {
        return Err(unusable(format!(
            "is a {slot_type} slot, not a logical one"
        )));
    }
    if plugin.as_deref() != Some("pgoutput") {
        return Err(unusable(format!(
            "uses the output plugin {}, not pgoutput",
            plugin.unwrap_or_default()
        )));
    }
    if slot_database.as_deref() != Some(database) {
        return Err(unusable(format!(
            "belongs to database \"{}\", not \"{database}\"",
            slot_database.unwrap_or_default()
        )));
    }
    if active {
        return Err(PreflightError::SlotActive {
            slot: slot.to_string(),
            pid: active_pid.unwrap_or(0),
        });
    }
    let confirmed = confirmed.and_then(|s| s.parse().ok()).unwrap_or(Lsn::ZERO);
    Ok(Some(confirmed))
}

async fn create(client: &Client, slot: &str) -> Result<Lsn, PreflightError> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(query_err("creating the replication slot"))?;
    let lsn: String = row.get(0);
    let lsn = lsn.parse().unwrap_or(Lsn::ZERO);
    info!(message = "Created replication slot.", slot, consistent_point = %lsn);
    Ok(lsn)
}
