//! The JetStream stream that stores the events: created with the configured
//! limits when missing, used as it is when it exists, as long as it captures
//! the prefix's subjects.

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use serde_json::{json, Value};
use tracing::{debug, info};

use super::JetStreamSetupError;
use crate::config::{NatsArgs, Storage};

/// Make sure the stream `args.stream` exists and captures `<prefix>.>`;
/// returns whether it was created now.
pub async fn ensure_stream(
    context: &Context,
    args: &NatsArgs,
    wildcard: &str,
) -> Result<bool, JetStreamSetupError> {
    let setup = |message: String| JetStreamSetupError::Stream {
        stream: args.stream.clone(),
        message,
    };
    match context.get_stream(&args.stream).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(|e| setup(e.to_string()))?;
            let subjects = &info.config.subjects;
            if !subjects.iter().any(|s| covers(s, wildcard)) {
                return Err(JetStreamSetupError::SubjectsNotCaptured {
                    stream: args.stream.clone(),
                    subjects: subjects.join(", "),
                    wanted: wildcard.to_owned(),
                });
            }
            info!(
                message = "Using the existing JetStream stream.",
                stream = args.stream.as_str()
            );
            Ok(false)
        }
        Err(err) if is_not_found(&err) => {
            let config = Config {
                name: args.stream.clone(),
                subjects: vec![wildcard.to_owned()],
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::Old,
                storage: match args.storage {
                    Storage::File => StorageType::File,
                    Storage::Memory => StorageType::Memory,
                },
                max_messages: args.max_msgs,
                max_bytes: args.max_bytes,
                max_age: args.max_age,
                num_replicas: usize::from(args.replicas),
                duplicate_window: args.duplicate_window,
                ..Config::default()
            };
            if let Err(err) = context.create_stream(config).await {
                use async_nats::jetstream::context::CreateStreamErrorKind;
                use async_nats::jetstream::ErrorCode;
                let overlap = matches!(err.kind(), CreateStreamErrorKind::JetStream(e)
                    if e.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP);
                if overlap {
                    if let Some((other, subjects)) = overlapping_stream(context, wildcard).await {
                        return Err(setup(format!(
                            "its subjects {wildcard} overlap those of stream \"{other}\" ({subjects}): publish into that one with --nats-stream {other}, or choose another --nats-subject-prefix"
                        )));
                    }
                }
                return Err(setup(err.to_string()));
            }
            info!(
                message = "Created the JetStream stream.",
                stream = args.stream.as_str(),
                subjects = wildcard
            );
            Ok(true)
        }
        Err(err) => Err(setup(err.to_string())),
    }
}

/// Whether the stream takes fast-ingest batches (`allow_batched`, nats-server
/// 2.14+). On a stream created by this run they are switched on; a stream
/// that existed is used as it is.
pub async fn batched(context: &Context, name: &str, created: bool, server_version: &str) -> bool {
    if !has_batches(server_version) {
        return false;
    }
    let info = context
        .request::<_, _, Value>(format!("STREAM.INFO.{name}"), &json!({}))
        .await;
    let Some(mut config) = info
        .ok()
        .and_then(|mut info| info.get_mut("config").map(Value::take))
    else {
        return false;
    };
    if config["allow_batched"] == true {
        return true;
    }
    if !created {
        info!(
            message = "The stream does not allow batched publishing, so every event is acknowledged on its own; allow_batched: true on the stream saves nats-server and the daemon work.",
            stream = name
        );
        return false;
    }
    config["allow_batched"] = json!(true);
    let updated = context
        .request::<_, _, Value>(format!("STREAM.UPDATE.{name}"), &config)
        .await;
    match updated {
        Ok(reply) if reply["config"]["allow_batched"] == true => true,
        Ok(reply) => {
            debug!(message = "Batched publishing not switched on.", reply = %reply);
            false
        }
        Err(err) => {
            debug!(message = "Batched publishing not switched on.", error = %err);
            false
        }
    }
}

/// Whether nats-server `version` (`2.14.0`, `2.15.1-beta`) has fast-ingest batches.
fn has_batches(version: &str) -> bool {
    let mut numbers = version
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (2, 14)
}

/// The first stream with a subject that overlaps `wildcard`, and its subjects.
async fn overlapping_stream(context: &Context, wildcard: &str) -> Option<(String, String)> {
    use futures_util::TryStreamExt;
    let mut streams = context.streams();
    while let Ok(Some(info)) = streams.try_next().await {
        let subjects = &info.config.subjects;
        if subjects.iter().any(|s| overlaps(s, wildcard)) {
            return Some((info.config.name.clone(), subjects.join(", ")));
        }
    }
    None
}

/// Whether some subject matches both patterns.
fn overlaps(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn is_not_found(err: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Whether the stream subject `pattern` captures every subject matched by
/// `wanted`, a literal prefix followed by `.>`.
pub fn covers(pattern: &str, wanted: &str) -> bool {
    let Some(prefix) = wanted.strip_suffix(".>") else {
        return pattern == wanted;
    };
    let wanted_tokens: Vec<&str> = prefix.split('.').collect();
    for (i, token) in pattern.split('.').enumerate() {
        match (token, wanted_tokens.get(i)) {
            (">", _) => return true,
            ("*", Some(_)) => {}
            (literal, Some(w)) if literal == *w => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{covers, has_batches, overlaps};

    #[test]
    fn batches_come_with_nats_server_2_14() {
        assert!(has_batches("2.14.0"));
        assert!(has_batches("2.15.1"));
        assert!(has_batches("3.0.0-beta.1"));
        assert!(!has_batches("2.12.3"));
        assert!(!has_batches("2.9.25"));
        assert!(!has_batches(""));
    }

    #[test]
    fn patterns_overlap_when_one_subject_matches_both() {
        assert!(overlaps("postgres.>", "postgres.>"));
        assert!(overlaps("postgres.public.*.*", "postgres.>"));
        assert!(overlaps(">", "cdc.>"));
        assert!(overlaps("*.orders.insert", "cdc.>"));
        assert!(!overlaps("other.>", "postgres.>"));
        assert!(!overlaps("postgres", "postgres.>"));
        assert!(!overlaps("a.b", "a.b.c"));
    }

    #[test]
    fn a_pattern_covers_the_prefix_wildcard_only_if_it_matches_everything_under_it() {
        assert!(covers("postgres.>", "postgres.>"));
        assert!(covers(">", "postgres.>"));
        assert!(covers("*.>", "postgres.>"));
        assert!(covers("cdc.>", "cdc.shop.>"));
        assert!(covers("cdc.*.>", "cdc.shop.>"));
        assert!(!covers("postgres.*", "postgres.>"));
        assert!(!covers("postgres.public.>", "postgres.>"));
        assert!(!covers("other.>", "postgres.>"));
        assert!(!covers("postgres", "postgres.>"));
    }
}
