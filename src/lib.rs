//! pgoutput-stream: change data capture from PostgreSQL logical replication.
//!
//! The modules follow the data flow:
//! [`config`] → [`preflight`] → [`replication`] (wire protocol) → [`pgoutput`]
//! (decoder) → [`change`] (events and their encodings) → [`output`] (targets),
//! with [`checkpoint`] deciding which position may be confirmed back to the
//! server and [`pipeline`] wiring the stages together.

pub mod change;
pub mod checkpoint;
pub mod config;
pub mod filter;
pub mod lsn;
pub mod metrics;
pub mod output;
pub mod pgoutput;
pub mod pipeline;
pub mod preflight;
pub mod replication;
pub mod shutdown;
pub mod snapshot;
