//! Runs the real `pgoutput-stream` binary and reads its events line by line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wait_until;

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pgoutput-stream")
}

/// A running daemon with its stdout lines and stderr collected.
pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Ends at the end of stderr: joined after the exit, so that all of it is read.
    stderr_reader: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Start the daemon and wait until it logs that it is streaming.
    pub fn start(args: &[&str]) -> Daemon {
        let daemon = Daemon::spawn(args, &[]);
        daemon.wait_for_log("Streaming changes", Duration::from_secs(30));
        daemon
    }

    /// Start the daemon without waiting, with extra environment variables.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start pgoutput-stream");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr_pipe);
            let mut chunk = [0u8; 4096];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Daemon {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the daemon has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("look at the daemon")
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until stderr contains `needle`; panics with the log on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        wait_until(timeout, || {
            let log = self.stderr();
            if log.contains(needle) {
                Ok(())
            } else {
                Err(format!("no {needle:?} in the daemon's log:\n{log}"))
            }
        })
    }

    /// The next stdout line, or `None` after `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next event as JSON; panics (with the log) when none arrives in time.
    pub fn next_event(&self) -> Value {
        let line = self
            .next_line(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no event arrived; daemon log:\n{}", self.stderr()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Events up to and including the first one for which `last` is true.
    pub fn events_until(&self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event();
            let done = last(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Events up to and including the next `commit`.
    pub fn transaction(&self) -> Vec<Value> {
        self.events_until(|e| e["op"] == "commit")
    }

    /// Wait for the exit, then return every stdout line that was printed.
    pub fn lines_so_far_after_exit(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    panic!("the daemon did not exit; log:\n{}", self.stderr())
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Send SIGINT and wait for the exit.
    pub fn interrupt(self) -> (ExitStatus, String) {
        signal(self.child.id(), "INT");
        self.wait(Duration::from_secs(30))
    }

    /// Wait for the daemon to exit by itself; returns its status and all of
    /// stderr. On timeout the panic drops the `Daemon`, which kills it.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let child = &mut self.child;
        let status = wait_until(timeout, || {
            match child.try_wait().expect("wait for the daemon") {
                Some(status) => Ok(status),
                None => Err("the daemon did not exit".to_owned()),
            }
        });
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a signal by name (`INT`, `TERM`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Run the daemon to completion (for start-up failures): exit code and stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let daemon = Daemon::spawn(args, env);
    let lines = daemon.lines_so_far_after_exit(Duration::from_secs(30));
    let (status, stderr) = daemon.wait(Duration::from_secs(1));
    (status.code(), lines.join("\n"), stderr)
}
