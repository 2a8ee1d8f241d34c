//! The filter between the decoder and the outputs: which events are
//! published (`--include-tables`, `--exclude-tables`, `--ops`,
//! `--no-transaction-events`). It only decides; the pipeline still hands every
//! transaction's end to the outputs, so the slot moves past filtered changes.

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::change::{Change, Table};
use crate::config::filter::{FilterArgs, Op};

/// A table glob that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid table pattern {pattern:?}: {reason}")]
pub struct FilterError {
    pattern: String,
    reason: String,
}

/// What is published.
#[derive(Debug, Clone)]
pub struct Filter {
    include: Option<GlobSet>,
    /// The `--include-tables` patterns, in the set's order.
    include_patterns: Vec<String>,
    exclude: Option<GlobSet>,
    ops: Vec<Op>,
    transaction_events: bool,
    /// The table decision per relation id, made again at each relation event
    /// (the server sends one after a rename before the table's next change).
    tables: HashMap<u32, bool>,
}

impl Default for Filter {
    /// Everything.
    fn default() -> Self {
        Filter {
            include: None,
            include_patterns: Vec::new(),
            exclude: None,
            ops: Op::ALL.to_vec(),
            transaction_events: true,
            tables: HashMap::new(),
        }
    }
}

impl Filter {
    pub fn new(args: &FilterArgs) -> Result<Self, FilterError> {
        let include_patterns = patterns(&args.include_tables);
        Ok(Filter {
            include: globs(&include_patterns)?,
            include_patterns,
            exclude: globs(&patterns(&args.exclude_tables))?,
            ops: args.ops.clone(),
            transaction_events: !args.no_transaction_events,
            tables: HashMap::new(),
        })
    }

    /// Whether begin and commit events are published (for transactions that
    /// have at least one published event).
    pub fn transaction_events(&self) -> bool {
        self.transaction_events
    }

    /// Whether `change` is published. Begin and commit are decided by the
    /// pipeline: they are published around a transaction's first and after its
    /// last published event.
    pub fn keeps(&mut self, change: &Change) -> bool {
        let op = match change {
            Change::Begin(_) | Change::Commit { .. } => return self.transaction_events,
            Change::Relation(table) => {
                let keep = self.matches(table);
                self.tables.insert(table.relation_id, keep);
                return keep;
            }
            Change::Insert(_) => Op::Insert,
            Change::Read(_) => Op::Read,
            Change::Update(_) => Op::Update,
            Change::Delete(_) => Op::Delete,
            Change::Truncate { .. } => Op::Truncate,
            Change::Message { .. } => Op::Message,
        };
        self.ops.contains(&op) && change.table().is_none_or(|t| self.keeps_table(t))
    }

    /// Whether `--include-tables` was given.
    pub fn has_includes(&self) -> bool {
        self.include.is_some()
    }

    /// The `--include-tables` patterns that match none of `tables`
    /// (`schema.table` names): a mistyped or wrongly cased name publishes nothing.
    pub fn unmatched_includes(&self, tables: &[String]) -> Vec<&str> {
        let Some(set) = &self.include else {
            return Vec::new();
        };
        let mut matched = vec![false; self.include_patterns.len()];
        for table in tables {
            for index in set.matches(table) {
                matched[index] = true;
            }
        }
        self.include_patterns
            .iter()
            .zip(matched)
            .filter(|(_, matched)| !matched)
            .map(|(pattern, _)| pattern.as_str())
            .collect()
    }

    fn keeps_table(&mut self, table: &Table) -> bool {
        if self.include.is_none() && self.exclude.is_none() {
            return true;
        }
        match self.tables.get(&table.relation_id) {
            Some(&keep) => keep,
            None => {
                let keep = self.matches(table);
                self.tables.insert(table.relation_id, keep);
                keep
            }
        }
    }

    fn matches(&self, table: &Table) -> bool {
        if self.include.is_none() && self.exclude.is_none() {
            return true;
        }
        let name = format!("{}.{}", table.schema, table.name);
        self.include.as_ref().is_none_or(|set| set.is_match(&name))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(&name))
    }
}

/// The patterns as given, without blanks.
fn patterns(given: &[String]) -> Vec<String> {
    given
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The set of `patterns` (as [`patterns`] gives them); `None` when there are none.
fn globs(patterns: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let pattern = pattern.as_str();
        // `schema.table` always holds a dot: a plain name without one (a
        // forgotten schema) matches nothing and would drop every change.
        if !pattern.contains(['.', '*', '?', '[', '{']) {
            return Err(FilterError {
                pattern: pattern.to_owned(),
                reason: format!(
                    "patterns match schema.table, so this matches no table; write e.g. public.{pattern}"
                ),
            });
        }
        let glob = Glob::new(pattern).map_err(|err| FilterError {
            pattern: pattern.to_owned(),
            reason: err.kind().to_string(),
        })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|err| FilterError {
        pattern: err.glob().unwrap_or_default().to_owned(),
        reason: err.kind().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::sample::{customers, row, tx};
    use clap::Parser;

    fn filter(args: &[&str]) -> Filter {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            filter: FilterArgs,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Filter::new(&Cli::try_parse_from(all).unwrap().filter).unwrap()
    }

    /// An insert into `schema.name`, a table with a relation id of its own.
    fn table(schema: &str, name: &str) -> Change {
        static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(20000);
        let mut t = (*customers()).clone();
        t.relation_id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.schema = schema.into();
        t.name = name.into();
        let mut r = row(None, None);
        r.table = std::sync::Arc::new(t);
        Change::Insert(r)
    }

    #[test]
    fn everything_passes_by_default() {
        let mut f = filter(&[]);
        assert!(f.keeps(&Change::Begin(tx())));
        assert!(f.keeps(&table("public", "customers")));
        assert!(f.keeps(&Change::Relation(customers())));
        assert!(f.transaction_events());
    }

    #[test]
    fn tables_are_matched_by_globs_on_schema_and_name() {
        let mut f = filter(&[
            "--include-tables",
            "public.*,sales.order_?",
            "--exclude-tables",
            "public.audit*",
        ]);
        assert!(f.keeps(&table("public", "customers")));
        assert!(f.keeps(&table("sales", "order_1")));
        assert!(!f.keeps(&table("sales", "order_10")));
        assert!(!f.keeps(&table("public", "audit_log")));
        assert!(!f.keeps(&table("other", "customers")));
        // Names are compared as they are, case included.
        assert!(!f.keeps(&table("Public", "customers")));
        // Events without a table are not filtered by table.
        assert!(f.keeps(&Change::Begin(tx())));
    }

    #[test]
    fn include_patterns_matching_no_table_are_named() {
        let f = filter(&["--include-tables", "public.Orders,public.cust*,sales.*"]);
        let tables = ["public.orders".to_owned(), "public.customers".to_owned()];
        assert_eq!(f.unmatched_includes(&tables), ["public.Orders", "sales.*"]);
        assert!(filter(&[]).unmatched_includes(&tables).is_empty());
    }

    #[test]
    fn a_relation_event_decides_again_after_a_rename() {
        let mut f = filter(&["--include-tables", "public.keep_*"]);
        let mut insert = match table("public", "keep_me") {
            Change::Insert(row) => row,
            _ => unreachable!(),
        };
        assert!(f.keeps(&Change::Insert(insert.clone())));
        let mut renamed = (*insert.table).clone();
        renamed.name = "dropped".into();
        let renamed = std::sync::Arc::new(renamed);
        assert!(!f.keeps(&Change::Relation(renamed.clone())));
        insert.table = renamed;
        assert!(!f.keeps(&Change::Insert(insert)));
    }

    #[test]
    fn ops_select_operations_and_messages() {
        let mut f = filter(&["--ops", "insert,delete"]);
        assert!(f.keeps(&table("public", "customers")));
        assert!(!f.keeps(&Change::Update(row(None, None))));
        assert!(f.keeps(&Change::Delete(row(None, None))));
        let message = Change::Message {
            prefix: "app".into(),
            content: bytes::Bytes::new(),
            transactional: false,
            lsn: crate::lsn::Lsn(1),
            tx: None,
        };
        assert!(!f.keeps(&message));
        assert!(filter(&["--ops", "message"]).keeps(&message));
    }

    #[test]
    fn transaction_events_can_be_dropped() {
        let mut f = filter(&["--no-transaction-events"]);
        assert!(!f.keeps(&Change::Begin(tx())));
        assert!(!f.transaction_events());
        assert!(f.keeps(&table("public", "customers")));
    }

    #[test]
    fn bad_globs_and_ops_are_refused() {
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            filter: FilterArgs,
        }
        let args = Cli::try_parse_from(["test", "--include-tables", "public.[x"]).unwrap();
        let err = Filter::new(&args.filter).unwrap_err().to_string();
        assert!(err.contains("public.[x"), "{err}");
        let args = Cli::try_parse_from(["test", "--include-tables", "orders"]).unwrap();
        let err = Filter::new(&args.filter).unwrap_err().to_string();
        assert!(err.contains("public.orders"), "{err}");
        let args = Cli::try_parse_from(["test", "--exclude-tables", "audit*"]).unwrap();
        assert!(Filter::new(&args.filter).is_ok());
        assert!(Cli::try_parse_from(["test", "--ops", "insert,upsert"]).is_err());
    }
}
