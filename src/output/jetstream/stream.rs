//! The JetStream stream that stores the events: created with the configured
//! limits when missing, used as it is when it exists, as long as it captures
//! the prefix's subjects.

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use tracing::info;

use super::JetStreamSetupError;
use crate::config::{NatsArgs, Storage};

/// Make sure the stream `args.stream` exists and captures `<prefix>.>`.
pub async fn ensure_stream(
    context: &Context,
    args: &NatsArgs,
    wildcard: &str,
) -> Result<(), JetStreamSetupError> {
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
            info!(message = "Using the existing JetStream stream.", stream = %args.stream);
            Ok(())
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
            context
                .create_stream(config)
                .await
                .map_err(|e| setup(e.to_string()))?;
            info!(message = "Created the JetStream stream.", stream = %args.stream, subjects = %wildcard);
            Ok(())
        }
        Err(err) => Err(setup(err.to_string())),
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
    use super::covers;

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
