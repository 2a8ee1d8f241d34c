//! The logical replication connection: startup with `replication=database`, authentication,
//! TLS, `IDENTIFY_SYSTEM`, and the CopyBoth stream of `START_REPLICATION`.
//!
//! tokio-postgres has no replication support, so the protocol is spoken here with
//! postgres-protocol's frontend codecs and a small backend framer of our own.

mod error;
pub(crate) mod tls;

pub use error::ReplicationError;
