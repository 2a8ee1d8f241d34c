//! The pgoutput decoder: bytes of one XLogData payload → [`LogicalMessage`]
//! → [`crate::change::Change`] events, with a cache of the relations the server described.

pub mod decoder;
pub mod message;
pub mod parse;
pub mod relation;
pub mod streams;

pub use decoder::{Decoder, DecoderError, DecoderErrorCause};
pub use message::{LogicalMessage, MessageKind};
pub use parse::{parse, DecodeError};
pub use relation::RelationCache;
