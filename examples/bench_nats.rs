//! Helpers of `scripts/bench.sh` that talk to NATS JetStream directly:
//!
//! - `publish URL STREAM COUNT SIZE [WINDOW]`: the store limit. Publishes COUNT
//!   messages of SIZE bytes to a fresh stream, each with a unique
//!   `Nats-Msg-Id` and the daemon's seven `Pg-*` headers (the same header
//!   bytes as the daemon's messages, so the server does the same dedup and
//!   storage work; `BENCH_ID_ONLY` in the environment sends the id alone),
//!   keeping up to WINDOW (default 4096, the daemon's default) awaiting their
//!   ack, and waits for every ack.
//! - `publish-batched URL STREAM COUNT SIZE`: the same messages as one
//!   JetStream fast-ingest batch (nats-server 2.14+, a stream with
//!   `allow_batched`, `gap: fail`), with at most two flows awaiting their flow
//!   ack, as the daemon publishes a backlog; waits for the final ack. The
//!   store limit when the stream acknowledges every few hundred messages.
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
use async_nats::jetstream::context::{Context, ContextBuilder};
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
        "publish-batched" => {
            publish_batched(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await
        }
        "sizes" => sizes(arg(1)?, arg(2)?).await,
        "latency" => latency(arg(1)?, arg(2)?).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}

/// A fresh stream like the daemon's (file storage, 2-minute dedup window),
/// the subject to publish to, and a payload of `size` bytes.
async fn fresh_stream(
    context: &Context,
    stream: &str,
    count: u64,
    size: usize,
) -> Result<(String, Bytes), BoxError> {
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
    // JSON-looking filler so compression-free transport sees realistic bytes.
    let mut body = br#"{"op":"insert","note":""#.to_vec();
    body.resize(size.saturating_sub(2).max(body.len()), b'x');
    body.extend_from_slice(b"\"}");
    Ok((
        format!("{stream}.public.bench_rows.insert"),
        Bytes::from(body),
    ))
}

/// What follows every message's id in its `Nats-Msg-Id` value, as the
/// daemon sends an insert's headers: the seven `Pg-*` headers with values of
/// typical length, carried in the one header value with CRLFs between them
/// as the daemon does (the same bytes on the wire as eight headers). With
/// `BENCH_ID_ONLY` set in the environment, nothing: the id alone.
fn pg_headers() -> String {
    if std::env::var_os("BENCH_ID_ONLY").is_some() {
        return String::new();
    }
    [
        ("Pg-Op", "insert"),
        ("Pg-Schema", "public"),
        ("Pg-Table", "bench_rows"),
        ("Pg-Lsn", "0/961DE38"),
        ("Pg-Commit-Lsn", "0/961DE38"),
        ("Pg-Xid", "734"),
        ("Pg-Commit-Ts", "2024-02-29T13:14:15.123456Z"),
    ]
    .map(|(name, value)| format!("\r\n{name}: {value}"))
    .concat()
}

/// Message `i`'s headers: a unique `Nats-Msg-Id` (so the server does the
/// same dedup work), followed by `pg_headers`.
fn headers(i: u64, pg_headers: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("bench:{i}{pg_headers}").as_str(),
    );
    headers
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
    let (subject, payload) = fresh_stream(&context, stream, count, size).await?;
    let pg_headers = pg_headers();
    let started = Instant::now();
    let mut acks = VecDeque::with_capacity(window);
    for i in 0..count {
        if acks.len() >= window {
            if let Some(ack) = acks.pop_front() {
                let _: async_nats::jetstream::publish::PublishAck = ack.await?;
            }
        }
        let ack = context
            .publish_with_headers(subject.clone(), headers(i, &pg_headers), payload.clone())
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

async fn publish_batched(url: &str, stream: &str, count: u64, size: usize) -> Result<(), BoxError> {
    const ASKED_FLOW: u64 = 1000;
    let client = async_nats::connect(url).await?;
    let context = ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let (subject, payload) = fresh_stream(&context, stream, count, size).await?;
    let info: serde_json::Value = context
        .request(format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
        .await?;
    let mut config = info["config"].clone();
    config["allow_batched"] = true.into();
    let updated: serde_json::Value = context
        .request(format!("STREAM.UPDATE.{stream}"), &config)
        .await?;
    if updated["config"]["allow_batched"] != true {
        return Err(format!("the server does not take batches: {updated}").into());
    }
    // The batch id is the inbox's second token; replies go to each message's reply subject.
    let prefix = format!("{}1", client.new_inbox());
    let mut replies = client.subscribe(format!("{prefix}.>")).await?;
    let reply_to = |seq: u64, op: u8| format!("{prefix}.{ASKED_FLOW}.fail.{seq}.{op}.$FI");
    let pg_headers = pg_headers();
    let started = Instant::now();
    // Batch messages known stored, and messages per flow ack (the server's choice).
    let (mut acked, mut flow) = (0u64, 0u64);
    let mut stored = None;
    for seq in 1..=count {
        // The first message's reply (it says the flow) before the second;
        // then two flows outstanding at most.
        while (seq > 1 && flow == 0) || (flow > 0 && seq > acked + 2 * flow) {
            stored = batch_reply(&mut replies, &mut acked, &mut flow)
                .await?
                .or(stored);
        }
        let op = if seq == 1 { 0 } else { 1 };
        client
            .publish_with_reply_and_headers(
                subject.clone(),
                reply_to(seq, op),
                headers(seq - 1, &pg_headers),
                payload.clone(),
            )
            .await?;
    }
    // End of batch: a commit that stores nothing; its final ack counts what was stored.
    client
        .publish_with_reply(subject.clone(), reply_to(count + 1, 3), Bytes::new())
        .await?;
    let stored = loop {
        if let Some(stored) = stored {
            break stored;
        }
        stored = batch_reply(&mut replies, &mut acked, &mut flow).await?;
    };
    if stored != count {
        return Err(format!("the batch stored {stored} of {count} messages").into());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "published {count} messages of {} bytes in one batch in {secs:.3} s",
        payload.len()
    );
    Ok(())
}

/// The next reply to the batch: a flow ack moves `acked` and `flow`; a final
/// ack returns the number of messages stored; anything else is an error.
async fn batch_reply(
    replies: &mut async_nats::Subscriber,
    acked: &mut u64,
    flow: &mut u64,
) -> Result<Option<u64>, BoxError> {
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await?
        .ok_or("the subscription ended")?;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    if let Some(stored) = body["count"].as_u64() {
        return Ok(Some(stored));
    }
    match (body["type"].as_str(), body["seq"].as_u64()) {
        (Some("ack"), Some(seq)) => {
            *acked = (*acked).max(seq);
            *flow = body["msgs"].as_u64().unwrap_or(*flow).max(1);
            Ok(None)
        }
        _ => Err(format!("batch reply: {body}").into()),
    }
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
