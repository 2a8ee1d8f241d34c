//! (to be written)
pub mod conninfo;
