//! Prometheus metrics and the health endpoints: every metric's name lives
//! here. The pipeline and the outputs update them; `--metrics-addr` serves
//! `/metrics`, `/healthz` (the process is alive) and `/readyz` (connected to
//! PostgreSQL and, when configured, NATS, and streaming).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::lsn::Lsn;

/// Labels of the event counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub op: &'static str,
    /// `schema.table`, empty for begin, commit and messages.
    pub table: String,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub bytes_published: Counter,
    pub publish_retries: Counter,
    pub publish_failures: Counter,
    pub batches: Counter,
    pub inflight: Gauge,
    pub received_lsn: Gauge,
    pub confirmed_lsn: Gauge,
    pub lag_bytes: Gauge,
    pub reconnects: Counter,
    seconds_since_last_event: Gauge<f64, AtomicU64>,
    last_event: Mutex<Option<Instant>>,
    started: Instant,
    postgres_streaming: AtomicBool,
    /// `None` when there is no NATS output.
    nats_connected: Option<AtomicBool>,
}

impl Metrics {
    /// `nats`: whether a NATS output is configured (it counts for readiness).
    pub fn new(nats: bool) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("pgoutput_stream");
        let metrics = Metrics {
            events: Family::default(),
            bytes_published: Counter::default(),
            publish_retries: Counter::default(),
            publish_failures: Counter::default(),
            batches: Counter::default(),
            inflight: Gauge::default(),
            received_lsn: Gauge::default(),
            confirmed_lsn: Gauge::default(),
            lag_bytes: Gauge::default(),
            reconnects: Counter::default(),
            seconds_since_last_event: Gauge::default(),
            last_event: Mutex::new(None),
            started: Instant::now(),
            postgres_streaming: AtomicBool::new(false),
            nats_connected: nats.then(|| AtomicBool::new(false)),
            registry: Registry::default(),
        };
        registry.register(
            "events",
            "Events handed to the outputs",
            metrics.events.clone(),
        );
        registry.register(
            "published_bytes",
            "Payload bytes published to JetStream",
            metrics.bytes_published.clone(),
        );
        registry.register(
            "publish_retries",
            "JetStream publishes sent again after a failure",
            metrics.publish_retries.clone(),
        );
        registry.register(
            "publish_failures",
            "JetStream publishes that failed or timed out",
            metrics.publish_failures.clone(),
        );
        registry.register(
            "jetstream_batches",
            "JetStream fast-ingest batches started (events acknowledged by flow acks instead of one by one)",
            metrics.batches.clone(),
        );
        registry.register(
            "inflight_acks",
            "Events published to JetStream and awaiting their ack",
            metrics.inflight.clone(),
        );
        registry.register(
            "received_lsn",
            "Highest WAL position received from PostgreSQL",
            metrics.received_lsn.clone(),
        );
        registry.register(
            "confirmed_lsn",
            "WAL position last confirmed to PostgreSQL (flush)",
            metrics.confirmed_lsn.clone(),
        );
        registry.register(
            "replication_lag_bytes",
            "pg_current_wal_lsn() minus the slot's confirmed position",
            metrics.lag_bytes.clone(),
        );
        registry.register(
            "reconnects",
            "Replication connections reopened after a failure",
            metrics.reconnects.clone(),
        );
        registry.register(
            "seconds_since_last_event",
            "Seconds since the last event was handed to the outputs (since start if none)",
            metrics.seconds_since_last_event.clone(),
        );
        Arc::new(Metrics {
            registry,
            ..metrics
        })
    }

    /// Count one event.
    pub fn event(&self, counter: &Counter) {
        counter.inc();
        if let Ok(mut last) = self.last_event.lock() {
            *last = Some(Instant::now());
        }
    }

    pub fn set_lsn(gauge: &Gauge, lsn: Lsn) {
        gauge.set(i64::try_from(lsn.0).unwrap_or(i64::MAX));
    }

    pub fn set_postgres_streaming(&self, streaming: bool) {
        self.postgres_streaming.store(streaming, Ordering::Relaxed);
    }

    pub fn set_nats_connected(&self, connected: bool) {
        if let Some(flag) = &self.nats_connected {
            flag.store(connected, Ordering::Relaxed);
        }
    }

    /// Streaming from PostgreSQL and (if configured) connected to NATS.
    pub fn ready(&self) -> bool {
        self.postgres_streaming.load(Ordering::Relaxed)
            && self
                .nats_connected
                .as_ref()
                .is_none_or(|flag| flag.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let since = self
            .last_event
            .lock()
            .ok()
            .and_then(|last| *last)
            .unwrap_or(self.started);
        self.seconds_since_last_event
            .set(since.elapsed().as_secs_f64());
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            warn!(
                message = "Could not encode the metrics.",
                error = err.to_string()
            );
        }
        out
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
/// Binding happens before this returns, so a bad address is a start-up error.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .with_state(metrics);
    info!(message = "Serving metrics.", addr = %listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            warn!(
                message = "The metrics server stopped.",
                error = err.to_string()
            );
        }
    });
    Ok(())
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn readiness(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_the_prefix() {
        let metrics = Metrics::new(true);
        let counter = metrics
            .events
            .get_or_create(&EventLabels {
                op: "insert",
                table: "public.orders".into(),
            })
            .clone();
        metrics.event(&counter);
        Metrics::set_lsn(&metrics.confirmed_lsn, Lsn(0x1_0000_0000));
        let text = metrics.render();
        assert!(
            text.contains(r#"pgoutput_stream_events_total{op="insert",table="public.orders"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("pgoutput_stream_confirmed_lsn 4294967296"),
            "{text}"
        );
        for name in [
            "published_bytes_total",
            "publish_retries_total",
            "publish_failures_total",
            "inflight_acks",
            "received_lsn",
            "replication_lag_bytes",
            "reconnects_total",
            "seconds_since_last_event",
        ] {
            assert!(
                text.contains(&format!("pgoutput_stream_{name}")),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn ready_needs_postgres_streaming_and_nats_when_configured() {
        let metrics = Metrics::new(true);
        assert!(!metrics.ready());
        metrics.set_postgres_streaming(true);
        assert!(!metrics.ready(), "NATS is not connected yet");
        metrics.set_nats_connected(true);
        assert!(metrics.ready());
        let without_nats = Metrics::new(false);
        without_nats.set_postgres_streaming(true);
        assert!(without_nats.ready());
    }
}
