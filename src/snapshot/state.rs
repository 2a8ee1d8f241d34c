//! Where the progress of the initial snapshot is kept so that it survives a
//! restart: a JetStream key-value bucket (`pgoutput_stream_snapshots`, one
//! key per slot) when the JetStream output is on, otherwise the file named by
//! `--snapshot-state-file`.

use std::path::{Path, PathBuf};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

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
    /// The bucket on this NATS connection, created when missing.
    pub async fn kv(client: async_nats::Client) -> Result<Self, StateError> {
        let js = jetstream::new(client);
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_owned(),
                    description: "pgoutput-stream initial snapshot progress, one key per slot"
                        .to_owned(),
                    history: 1,
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
                let dir = tokio::fs::File::open(dir).await.map_err(io)?;
                dir.sync_all().await.map_err(io)?;
            }
        }
        Ok(())
    }

    /// Where the state of `slot` is kept: `bucket/key` or the file's path.
    pub fn describe(&self, slot: &str) -> String {
        match self {
            StateStore::Kv(_) => format!("{BUCKET}/{slot}"),
            StateStore::File(path) => path.display().to_string(),
        }
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
    }
}
