//! Shared helpers for integration tests: real server processes in temporary
//! directories, and the real binary under test.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod postgres;
pub mod scenario;
