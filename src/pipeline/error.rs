//! Failures of a run, each mapped to the documented exit code.

use crate::config::conninfo::{ConnInfoError, ConnectError};
use crate::output::jetstream::JetStreamSetupError;
use crate::output::OutputError;
use crate::pgoutput::decoder::DecoderError;
use crate::preflight::PreflightError;
use crate::replication::ReplicationError;

/// Why a run ended with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
    #[error("invalid --connection: {0}")]
    ConnInfo(#[source] ConnInfoError),
    #[error("{0}")]
    Connect(#[source] ConnectError),
    #[error("{0}")]
    JetStream(#[source] JetStreamSetupError),
    #[error("{0}")]
    Preflight(#[source] PreflightError),
    #[error("replication connection: {0}")]
    Replication(#[source] ReplicationError),
    #[error("{0}; nothing after the last complete transaction was confirmed")]
    Decode(#[source] DecoderError),
    #[error("{0}")]
    Output(#[source] OutputError),
    #[error("the server ended the replication stream")]
    StreamEnded,
    #[error("initial snapshot: {0}")]
    Snapshot(String),
    /// A snapshot that cannot be taken as configured: a state that does not
    /// belong to the slot as it is, a table the role may not read in full.
    #[error("initial snapshot: {0}")]
    SnapshotConfiguration(String),
}

impl RunError {
    /// The server's `publication "..." does not exist` while decoding, after
    /// the start-up check found it: the publication was dropped (and perhaps
    /// created again) behind the slot, and decoding reads the catalog as of
    /// each change, where it is missing. Restarting cannot help; the text says what does.
    pub(super) fn explain_recreated_publication(self) -> RunError {
        match self {
            RunError::Replication(ReplicationError::Server { code, message })
                if code == "42704" && message.starts_with("publication ") =>
            {
                RunError::Replication(ReplicationError::Server {
                    code,
                    message: format!(
                        "{message} at the slot's position: it was dropped (and perhaps created again) since, and decoding reads the catalog as of each change, so restarting cannot help; create it if it is missing, then drop the slot and start with --create-slot (and --snapshot initial), or move the slot past its creation (docs/operations.md, \"Publication dropped and created again\")"
                    ),
                })
            }
            other => other,
        }
    }

    /// 2 for usage and configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        let configuration = match self {
            RunError::Usage(_) | RunError::ConnInfo(_) | RunError::SnapshotConfiguration(_) => true,
            RunError::Preflight(err) => err.is_configuration(),
            RunError::JetStream(err) => err.is_configuration(),
            RunError::Connect(err) => err.is_configuration(),
            RunError::Replication(err) => err.is_configuration(),
            RunError::Decode(_)
            | RunError::Output(_)
            | RunError::StreamEnded
            | RunError::Snapshot(_) => false,
        };
        if configuration {
            2
        } else {
            1
        }
    }
}
