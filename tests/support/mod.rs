//! Shared helpers for integration tests: real server processes in temporary
//! directories, and the real binary under test.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod postgres;
pub mod scenario;

use std::time::{Duration, Instant};

/// Call `check` until it returns `Ok`, sleeping 10 ms after the first try and
/// up to 200 ms between later ones; panics after `timeout` with the last `Err`
/// (what `check` saw, for the failure message).
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => panic!("gave up after {timeout:?}: {seen}"),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
