//! Which events are published: tables, operations, transaction events.

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

/// An operation that `--ops` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
    /// Logical decoding messages (`pg_logical_emit_message`).
    Message,
    /// Rows of the initial snapshot (`--snapshot initial`).
    Read,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Insert,
        Op::Update,
        Op::Delete,
        Op::Truncate,
        Op::Message,
        Op::Read,
    ];
}

/// Filters. Filtered events are not published, but the slot moves past them
/// as past published ones.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Publish only changes of tables matching one of these globs on `schema.table`
    /// (comma-separated; `*` any characters, `?` one, `[abc]` a set), e.g. `public.*,sales.order_*`.
    #[arg(
        long,
        env = "PGOUTPUT_STREAM_INCLUDE_TABLES",
        value_delimiter = ',',
        value_name = "GLOBS"
    )]
    pub include_tables: Vec<String>,

    /// Do not publish changes of tables matching one of these globs (applied after --include-tables).
    #[arg(
        long,
        env = "PGOUTPUT_STREAM_EXCLUDE_TABLES",
        value_delimiter = ',',
        value_name = "GLOBS"
    )]
    pub exclude_tables: Vec<String>,

    /// Publish only these operations (comma-separated): insert, update, delete, truncate, message, read.
    #[arg(
        long,
        env = "PGOUTPUT_STREAM_OPS",
        value_delimiter = ',',
        value_enum,
        default_values_t = Op::ALL
    )]
    pub ops: Vec<Op>,

    /// Do not publish begin and commit events.
    #[arg(long, env = "PGOUTPUT_STREAM_NO_TRANSACTION_EVENTS", value_parser = BoolishValueParser::new())]
    pub no_transaction_events: bool,
}
