//! The logical replication connection: startup with `replication=database`, authentication,
//! TLS, `IDENTIFY_SYSTEM`, and the CopyBoth stream of `START_REPLICATION`.
//!
//! tokio-postgres has no replication support, so the protocol is spoken here with
//! postgres-protocol's frontend codecs and a small backend framer of our own.

mod backend;
mod connection;
mod error;
mod stream;
pub(crate) mod tls;
mod wire;

pub(crate) use connection::no_password;
pub use connection::{quote_identifier, ReplicationConnection, SystemInfo, OUTPUT_SETTINGS};
pub use error::ReplicationError;
pub use stream::{ReplicationMessage, ReplicationStream};
pub(crate) use wire::{no_tls, with_timeout};
