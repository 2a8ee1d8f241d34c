//! Where the progress of the initial snapshot is kept so that it survives a
//! restart: a JetStream key-value bucket (`pgoutput_stream_snapshots`, one
//! key per slot) when the JetStream output is on, otherwise the file named by
//! `--snapshot-state-file`.

use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

/// The key-value bucket holding one entry per slot.
pub const BUCKET: &str = "pgoutput_stream_snapshots";

/// The progress of one slot's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    pub slot: String,
    /// The slot's consistent point, where the snapshot was taken (`16/B374D848`).
    /// None while the slot is being created: the state is saved before the
    /// slot, so that a slot whose snapshot was never begun is known as such.
    pub consistent_point: Option<String>,
    /// `schema.table` of every table whose rows are all durably published.
    pub done: Vec<String>,
    /// Every table is done: streaming may start.
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("snapshot state in JetStream bucket {BUCKET}: {0}")]
    Kv(String),
    #[error("snapshot state file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot state {0} is not valid JSON: {1}")]
    Json(String, serde_json::Error),
}

/// Where the state lives.
pub enum StateStore {
    Kv(Box<kv::Store>),
    File(PathBuf),
}

impl StateStore {
    /// The bucket on this NATS connection, created when missing with
    /// `replicas` (those of the event stream: the state is worth as much as
    /// the events). An existing bucket with fewer is used with a warning.
    pub async fn kv(client: async_nats::Client, replicas: u8) -> Result<Self, StateError> {
        let js = jetstream::new(client);
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => {
                let has = store.status().await.ok();
                let has = has.map(|s| s.info.config.num_replicas.max(1));
                if let Some(has) = has.filter(|&has| has < usize::from(replicas)) {
                    warn!(
                        message = "The snapshot state bucket has fewer replicas than --nats-replicas; losing it mid-snapshot skips the tables not read yet.",
                        bucket = BUCKET,
                        replicas = has,
                        wanted = replicas,
                    );
                }
                store
            }
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_owned(),
                    description: "pgoutput-stream initial snapshot progress, one key per slot"
                        .to_owned(),
                    history: 1,
                    num_replicas: usize::from(replicas),
                    ..Default::default()
                })
                .await
                .map_err(|e| StateError::Kv(e.to_string()))?,
        };
        Ok(StateStore::Kv(Box::new(store)))
    }

    pub async fn load(&self, slot: &str) -> Result<Option<SnapshotState>, StateError> {
        let bytes = match self {
            StateStore::Kv(store) => store
                .get(slot)
                .await
                .map_err(|e| StateError::Kv(e.to_string()))?
                .map(|b| b.to_vec()),
            StateStore::File(path) => match tokio::fs::read(path).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(StateError::File {
                        path: path.clone(),
                        source,
                    })
                }
            },
        };
        let Some(bytes) = bytes else { return Ok(None) };
        let state: SnapshotState =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Json(self.describe(slot), e))?;
        Ok((state.slot == slot).then_some(state))
    }

    pub async fn save(&self, state: &SnapshotState) -> Result<(), StateError> {
        let json = serde_json::to_vec(state)
            .map_err(|e| StateError::Json(self.describe(&state.slot), e))?;
        match self {
            StateStore::Kv(store) => {
                store
                    .put(state.slot.as_str(), json.into())
                    .await
                    .map_err(|e| StateError::Kv(e.to_string()))?;
            }
            StateStore::File(path) => {
                // Written whole, synced and renamed, so a crash (of the
                // process or the machine) leaves the old or the new state.
                let tmp = path.with_extension("tmp");
                let io = |source| StateError::File {
                    path: path.clone(),
                    source,
                };
                let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
                file.write_all(&json).await.map_err(io)?;
                // flush reports a failed write, which sync_all would not.
                file.flush().await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                tokio::fs::rename(&tmp, path).await.map_err(io)?;
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                sync_dir(dir).await;
            }
        }
        Ok(())
    }

    /// Forget the state of `slot` (best effort: the provisional state of a
    /// slot that could not be created).
    pub async fn delete(&self, slot: &str) {
        let result = match self {
            StateStore::Kv(store) => store.delete(slot).await.map_err(|e| e.to_string()),
            StateStore::File(path) => tokio::fs::remove_file(path)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = result {
            warn!(
                message = "Could not delete the snapshot state.",
                state = self.describe(slot),
                error
            );
        }
    }

    /// Where the state of `slot` is kept: `bucket/key` or the file's path.
    pub fn describe(&self, slot: &str) -> String {
        match self {
            StateStore::Kv(_) => format!("{BUCKET}/{slot}"),
            StateStore::File(path) => path.display().to_string(),
        }
    }
}

/// Sync the directory of a renamed file, so the rename survives a power loss.
/// As PostgreSQL does, a file system that cannot sync a directory (some
/// network and FUSE mounts) is not an error: the rename is all it offers.
async fn sync_dir(dir: &Path) {
    let synced = match tokio::fs::File::open(dir).await {
        Ok(dir) => dir.sync_all().await,
        Err(e) => Err(e),
    };
    if let Err(error) = synced {
        debug!(
            message = "Could not sync the snapshot state's directory.",
            dir = dir.display().to_string(),
            error = error.to_string()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_store_keeps_the_state_of_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::File(dir.path().join("state.json"));
        assert_eq!(store.load("s").await.unwrap(), None);
        let state = SnapshotState {
            slot: "s".into(),
            consistent_point: Some("0/16B3748".into()),
            done: vec!["public.a".into()],
            finished: false,
        };
        store.save(&state).await.unwrap();
        assert_eq!(store.load("s").await.unwrap(), Some(state));
        // Another slot's state is not this slot's.
        assert_eq!(store.load("other").await.unwrap(), None);
        store.delete("s").await;
        assert_eq!(store.load("s").await.unwrap(), None);
        // Deleting what is not there is no error.
        store.delete("s").await;
    }
}
