//! Shared helpers for integration tests: real server processes in temporary
//! directories, and the real binary under test.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod postgres;
pub mod scenario;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
