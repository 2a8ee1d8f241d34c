//! The initial snapshot (`--snapshot initial`): when the slot is created, it
//! exports the snapshot of its consistent point; every table of the
//! publication is read with COPY in a transaction bound to that snapshot and
//! each row becomes a `read` event; streaming then starts at the consistent
//! point, so no change is missed and none is delivered twice. Which tables
//! are done is kept in [`state`], so an interrupted snapshot resumes with the
//! tables not finished.
//!
//! The reading itself is driven by `pipeline::snapshot`, which hands the rows
//! to the same filter, encoder and outputs as streamed changes.

pub mod copy;
pub mod state;
pub mod tables;
