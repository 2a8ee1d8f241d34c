//! Graceful shutdown: SIGINT and SIGTERM become a [`Shutdown`] handle that the
//! pipeline awaits between messages, so the current write always completes.

use std::time::Duration;

use tokio::sync::watch;

/// Signals closer together than this after the first are the same request.
const REPEAT_WINDOW: Duration = Duration::from_millis(250);

/// Resolves once a stop was requested.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Lets tests (and signal handlers) request a stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Ask every holder of the paired [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A handle that is triggered by hand.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A handle triggered by SIGINT or SIGTERM; a second signal (more than
    /// [`REPEAT_WINDOW`] after the first) exits at once (code 1). Needs a running tokio runtime.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            trigger.trigger();
            let first = tokio::time::Instant::now();
            // A second signal means "now": what is not confirmed is sent again on restart.
            // One sent to the process and its group at once (GNU timeout,
            // a terminal's Ctrl-C with a wrapper script) arrives twice within
            // microseconds and is one request.
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if first.elapsed() >= REPEAT_WINDOW {
                    break;
                }
            }
            tracing::warn!(message = "Second stop signal; exiting without waiting.");
            std::process::exit(1);
        });
        Ok(shutdown)
    }

    /// True once a stop was requested.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Wait until a stop is requested (forever if the trigger is dropped untriggered).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
