//! Print the events stored in a JetStream stream: one line per message with
//! its subject, `Nats-Msg-Id` and payload.
//!
//! ```sh
//! cargo run --example jetstream_tail -- nats://127.0.0.1:4222 postgres_replication
//! ```
//! Add `--follow` to keep waiting for new events.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().map_or("nats://127.0.0.1:4222", String::as_str);
    let stream_name = args.get(1).map_or("postgres_replication", String::as_str);
    let follow = args.iter().any(|a| a == "--follow");

    let client = async_nats::connect(url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(stream_name).await?;
    // An ephemeral consumer reading the whole stream from its start.
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let message = match next {
            Ok(Some(message)) => message?,
            Ok(None) => break,
            Err(_) if follow => continue,
            Err(_) => break,
        };
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map_or("", |v| v.as_str());
        println!(
            "{}  {}  {}",
            message.subject,
            id,
            String::from_utf8_lossy(&message.payload)
        );
        message.ack().await?;
    }
    Ok(())
}
