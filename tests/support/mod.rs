//! Shared helpers for integration tests: real server processes in temporary directories.
#![allow(dead_code)]

pub mod postgres;
