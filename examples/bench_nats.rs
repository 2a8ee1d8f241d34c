//! Helpers of `scripts/bench.sh` that talk to NATS JetStream directly:
//!
//! - `publish URL STREAM COUNT SIZE [WINDOW]`: the store limit. Publishes COUNT
//!   messages of SIZE bytes to a fresh stream, each with a unique
//!   `Nats-Msg-Id` (as the daemon sends them, so the server does the same
//!   dedup work), keeping up to WINDOW (default 4096, the daemon's default)
//!   awaiting their ack, and waits for every ack. With `BENCH_PG_HEADERS`
//!   set in the environment it also sends the daemon's seven `Pg-*` headers.
//! - `sizes URL STREAM`: prints `<messages> <payload bytes>` of a stream.
//! - `latency URL STREAM`: for every `commit` event in the stream, the time
//!   from its `commit_ts` to the stream's timestamp of the message; prints
//!   `<commits> <p50 ms> <p99 ms> <max ms>`.
//!
//! ```sh
//! cargo run --release --example bench_nats -- publish nats://127.0.0.1:4222 bench_raw 100000 520
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::stream::{Config, StorageType};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, BoxError> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {i}; see the module docs").into())
    };
    match arg(0)? {
        "publish" => {
            let window = args.get(5).map_or(Ok(4096), |w| w.parse())?;
            publish(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?, window).await
        }
        "sizes" => sizes(arg(1)?, arg(2)?).await,
        "latency" => latency(arg(1)?, arg(2)?).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}

async fn publish(
    url: &str,
    stream: &str,
    count: u64,
    size: usize,
    window: usize,
) -> Result<(), BoxError> {
    let client = async_nats::connect(url).await?;
    let context = ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(window + 16)
        .build(client);
    // A fresh stream like the daemon's: file storage, 2-minute dedup window.
    let _ = context.delete_stream(stream).await;
    context
        .create_stream(Config {
            name: stream.to_owned(),
            subjects: vec![format!("{stream}.>")],
            storage: StorageType::File,
            max_messages: i64::try_from(count)?.saturating_add(1000),
            duplicate_window: Duration::from_secs(120),
            ..Config::default()
        })
        .await?;
    let subject = format!("{stream}.public.bench_rows.insert");
    // JSON-looking filler so compression-free transport sees realistic bytes.
    let mut body = br#"{"op":"insert","note":""#.to_vec();
    body.resize(size.saturating_sub(2).max(body.len()), b'x');
    body.extend_from_slice(b"\"}");
    let payload = Bytes::from(body);

    let pg_headers = std::env::var_os("BENCH_PG_HEADERS").is_some();
    let started = Instant::now();
    let mut acks = VecDeque::with_capacity(window);
    for i in 0..count {
        if acks.len() >= window {
            if let Some(ack) = acks.pop_front() {
                let _: async_nats::jetstream::publish::PublishAck = ack.await?;
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("bench:{i}").as_str(),
        );
        if pg_headers {
            // The daemon's Pg-* headers, with values of typical length.
            for (name, value) in [
                ("Pg-Op", "insert"),
                ("Pg-Schema", "public"),
                ("Pg-Table", "bench_rows"),
                ("Pg-Lsn", "0/16B3700"),
                ("Pg-Commit-Lsn", "0/16B3748"),
                ("Pg-Xid", "734"),
                ("Pg-Commit-Ts", "2024-02-29T13:14:15.123456Z"),
            ] {
                headers.insert(name, value);
            }
        }
        let ack = context
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await?;
        acks.push_back(ack);
    }
    for ack in acks {
        ack.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "published {count} messages of {} bytes in {secs:.3} s",
        payload.len()
    );
    Ok(())
}

/// Every message of the stream, in order, with no acks to send.
async fn read_all(
    url: &str,
    stream: &str,
    mut each: impl FnMut(&async_nats::jetstream::Message) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let client = async_nats::connect(url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(stream).await?;
    let total = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await?;
    let mut seen = 0u64;
    while seen < total {
        match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            Ok(Some(message)) => {
                each(&message?)?;
                seen += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok(())
}

async fn sizes(url: &str, stream: &str) -> Result<(), BoxError> {
    let (mut count, mut bytes) = (0u64, 0u64);
    read_all(url, stream, |m| {
        count += 1;
        bytes += m.payload.len() as u64;
        Ok(())
    })
    .await?;
    println!("{count} {bytes}");
    Ok(())
}

async fn latency(url: &str, stream: &str) -> Result<(), BoxError> {
    let mut millis = Vec::new();
    read_all(url, stream, |m| {
        let event: serde_json::Value = serde_json::from_slice(&m.payload)?;
        if event.get("op").and_then(|v| v.as_str()) != Some("commit") {
            return Ok(());
        }
        let commit_ts = event
            .get("commit_ts")
            .and_then(|v| v.as_str())
            .ok_or("commit event without commit_ts")?;
        let committed = chrono::DateTime::parse_from_rfc3339(commit_ts)?;
        let committed_us = committed.timestamp_micros();
        let stored_us = i64::try_from(m.info()?.published.unix_timestamp_nanos() / 1000)?;
        millis.push((stored_us - committed_us) as f64 / 1000.0);
        Ok(())
    })
    .await?;
    if millis.is_empty() {
        return Err("no commit events in the stream".into());
    }
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((millis.len() - 1) as f64 * q).round() as usize;
        millis.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{} {:.2} {:.2} {:.2}",
        millis.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
