//! Reconnecting after the replication connection was lost: which failures
//! are worth another attempt, and how long to wait before it.

use std::time::Duration;

use super::RunError;
use crate::replication::ReplicationError;

/// First wait before reconnecting; doubled on each failed attempt up to the maximum.
const FIRST: Duration = Duration::from_millis(500);

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { attempt: 0, max }
    }

    /// The wait before the next attempt: 500 ms, 1 s, 2 s, ... up to the
    /// maximum, each plus up to 25% so that instances do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = FIRST
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base + base.mul_f64(jitter())
    }

    /// Streaming worked again: start over from the shortest wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A fraction in [0, 0.25) that differs between processes and calls.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = (nanos ^ std::process::id().rotate_left(16)) % 1000;
    f64::from(mixed) / 4000.0
}

/// Whether a failure of the replication session may go away by reconnecting:
/// a lost or refused connection, a server restart or terminated backend, the
/// slot still held by the backend of the lost connection. Configuration
/// problems, bad data and output failures are not.
pub fn is_retryable(err: &RunError) -> bool {
    match err {
        RunError::StreamEnded => true,
        RunError::Replication(err) => replication_retryable(err),
        _ => false,
    }
}

fn replication_retryable(err: &ReplicationError) -> bool {
    match err {
        ReplicationError::Unreachable { .. } | ReplicationError::Io(_) => true,
        ReplicationError::Server { code, .. } => {
            // 08: connection exception; 57: operator intervention (admin shutdown,
            // crash shutdown, cannot connect now); 53: insufficient resources (too
            // many connections); 55006: object in use (the slot is still active).
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "55006"
        }
        ReplicationError::Tls(_)
        | ReplicationError::Auth { .. }
        | ReplicationError::Protocol(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(3));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let bases = [500, 1000, 2000, 3000, 3000].map(Duration::from_millis);
        for (wait, base) in waits.iter().zip(bases) {
            assert!(
                *wait >= base && *wait < base.mul_f64(1.25),
                "{wait:?} for {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(625));
    }

    #[test]
    fn lost_connections_are_retried_and_configuration_problems_are_not() {
        let server = |code: &str| {
            RunError::Replication(ReplicationError::Server {
                code: code.into(),
                message: String::new(),
            })
        };
        assert!(is_retryable(&RunError::StreamEnded));
        assert!(
            is_retryable(&server("57P01")),
            "terminated by an administrator"
        );
        assert!(is_retryable(&server("55006")), "slot still active");
        assert!(is_retryable(&RunError::Replication(ReplicationError::Io(
            std::io::ErrorKind::UnexpectedEof.into()
        ))));
        assert!(!is_retryable(&server("42704")), "slot does not exist");
        assert!(!is_retryable(&RunError::Replication(
            ReplicationError::Auth {
                code: "28P01".into(),
                message: String::new(),
            }
        )));
        assert!(!is_retryable(&RunError::Usage("x".into())));
    }
}
