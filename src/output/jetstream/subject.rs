//! NATS subjects for events: `<prefix>.<schema>.<table>.<op>`, with each name
//! percent-encoded so that it is exactly one subject token.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::change::{Change, Table};

/// A `--nats-subject-prefix` that is not a valid literal subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --nats-subject-prefix {prefix:?}: {reason}")]
pub struct PrefixError {
    pub prefix: String,
    pub reason: &'static str,
}

/// Builds the subject of every event under one prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// `prefix` is one or more dot-separated tokens (`postgres`, `cdc.shop`),
    /// without wildcards or whitespace.
    pub fn new(prefix: &str) -> Result<Subjects, PrefixError> {
        let error = |reason| PrefixError {
            prefix: prefix.to_owned(),
            reason,
        };
        if prefix.is_empty() {
            return Err(error("it is empty"));
        }
        for token in prefix.split('.') {
            if token.is_empty() {
                return Err(error(
                    "it has an empty token (leading, trailing or double '.')",
                ));
            }
            if token.chars().any(|c| c == '*' || c == '>') {
                return Err(error("wildcards '*' and '>' are not allowed"));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(error("whitespace and control characters are not allowed"));
            }
        }
        Ok(Subjects {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix as given.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The wildcard subject capturing every event: `<prefix>.>`.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The subject of `change`:
    /// - row changes and truncate: `<prefix>.<schema>.<table>.<op>`
    /// - relation metadata: `<prefix>.<schema>.<table>.relation`
    /// - transaction boundaries: `<prefix>.transactions.begin.event`, `<prefix>.transactions.commit.event`
    /// - logical messages: `<prefix>.messages.<message prefix>`
    pub fn for_change(&self, change: &Change) -> String {
        if let Some(table) = change.table() {
            return self.for_table(&TableTokens::new(table), change.op());
        }
        let mut subject = String::with_capacity(self.prefix.len() + 32);
        subject.push_str(&self.prefix);
        subject.push('.');
        match change {
            Change::Begin(_) => subject.push_str("transactions.begin.event"),
            Change::Commit { .. } => subject.push_str("transactions.commit.event"),
            Change::Message { prefix, .. } => {
                subject.push_str("messages.");
                push_token(&mut subject, prefix);
            }
            // Events about a table are answered above.
            _ => {}
        }
        subject
    }

    /// `<prefix>.<schema token>.<table token>.<op>`.
    fn for_table(&self, tokens: &TableTokens, op: &str) -> String {
        let mut subject = String::with_capacity(
            self.prefix.len() + tokens.schema_token.len() + tokens.name_token.len() + op.len() + 3,
        );
        for part in [&self.prefix, &tokens.schema_token, &tokens.name_token] {
            subject.push_str(part);
            subject.push('.');
        }
        subject.push_str(op);
        subject
    }
}

/// A table's schema and name as they are and as subject tokens (the `Pg-Schema`
/// and `Pg-Table` headers carry the same tokens).
#[derive(Debug)]
pub struct TableTokens {
    schema: String,
    name: String,
    pub schema_token: String,
    pub name_token: String,
}

impl TableTokens {
    pub fn new(table: &Table) -> Self {
        TableTokens {
            schema: table.schema.clone(),
            name: table.name.clone(),
            schema_token: token(&table.schema),
            name_token: token(&table.name),
        }
    }

    fn is(&self, table: &Table) -> bool {
        self.schema == table.schema && self.name == table.name
    }
}

/// The subject and table tokens of each event. Rows of one table and
/// operation usually follow each other, so the last table's tokens and subject
/// are kept and shared (clones are reference counts) rather than encoded again
/// for every event.
#[derive(Debug)]
pub struct EventNames {
    subjects: Subjects,
    last: Option<LastTable>,
}

#[derive(Debug)]
struct LastTable {
    tokens: Arc<TableTokens>,
    op: &'static str,
    subject: async_nats::Subject,
}

impl EventNames {
    pub fn new(subjects: Subjects) -> Self {
        EventNames {
            subjects,
            last: None,
        }
    }

    /// The subject of `change` (see [`Subjects::for_change`]) and the tokens
    /// of its table, if it has one.
    pub fn for_change(
        &mut self,
        change: &Change,
    ) -> (async_nats::Subject, Option<Arc<TableTokens>>) {
        let Some(table) = change.table() else {
            return (self.subjects.for_change(change).into(), None);
        };
        let op = change.op();
        let tokens = match &self.last {
            Some(last) if last.tokens.is(table) => {
                if last.op == op {
                    return (last.subject.clone(), Some(last.tokens.clone()));
                }
                last.tokens.clone()
            }
            _ => Arc::new(TableTokens::new(table)),
        };
        let subject = async_nats::Subject::from(self.subjects.for_table(&tokens, op));
        self.last = Some(LastTable {
            tokens: tokens.clone(),
            op,
            subject: subject.clone(),
        });
        (subject, Some(tokens))
    }
}

/// `name` as one token.
fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_token(&mut out, name);
    out
}

/// Append `name` as one subject token: `.`, `*`, `>`, `%`, whitespace and
/// control characters become `%XX` (per UTF-8 byte); an empty name becomes
/// `%00`, which no PostgreSQL name can produce (names hold no NUL).
pub fn push_token(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push_str("%00");
        return;
    }
    for c in name.chars() {
        if matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() || c.is_control() {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::sample::{customers, row, tx};

    #[test]
    fn the_cache_gives_each_event_the_subject_it_would_get_anyway() {
        let subjects = Subjects::new("cdc").unwrap();
        let mut cache = EventNames::new(subjects.clone());
        let mut other = (*customers()).clone();
        other.name = "order items".into();
        let other: Arc<Table> = Arc::new(other);
        let on = |table: &Arc<Table>| {
            let mut r = row(None, None);
            r.table = table.clone();
            r
        };
        let changes = [
            Change::Insert(on(&customers())),
            Change::Insert(on(&customers())),
            Change::Update(on(&customers())),
            Change::Insert(on(&other)),
            Change::Relation(other.clone()),
            Change::Insert(on(&customers())),
            Change::Delete(on(&customers())),
        ];
        for change in &changes {
            let (subject, tokens) = cache.for_change(change);
            assert_eq!(subject.as_str(), subjects.for_change(change));
            let table = change.table().unwrap();
            let tokens = tokens.expect("a table event has tokens");
            assert_eq!(
                (tokens.schema.as_str(), tokens.name.as_str()),
                (table.schema.as_str(), table.name.as_str())
            );
        }
        let (subject, tokens) = cache.for_change(&changes[3]);
        assert_eq!(subject.as_str(), "cdc.public.order%20items.insert");
        assert_eq!(tokens.unwrap().name_token, "order%20items");
        assert!(cache.for_change(&Change::Begin(tx())).1.is_none());
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(token("orders"), "orders");
        assert_eq!(token("Ünïcode_tbl"), "Ünïcode_tbl");
    }

    #[test]
    fn separators_wildcards_whitespace_and_percent_are_encoded() {
        assert_eq!(token("my.schema"), "my%2Eschema");
        assert_eq!(token("odd table"), "odd%20table");
        assert_eq!(token("a*b>c"), "a%2Ab%3Ec");
        assert_eq!(token("100%"), "100%25");
        assert_eq!(token("tab\tnl\n"), "tab%09nl%0A");
        assert_eq!(token("nbsp\u{a0}"), "nbsp%C2%A0");
        assert_eq!(token(""), "%00");
    }

    #[test]
    fn every_event_kind_has_its_subject() {
        use crate::change::sample::{customers, row, tx};
        let subjects = Subjects::new("cdc").unwrap();
        let subject = |change: Change| subjects.for_change(&change);
        assert_eq!(subject(Change::Begin(tx())), "cdc.transactions.begin.event");
        assert_eq!(
            subject(Change::Commit {
                tx: tx(),
                end_lsn: crate::lsn::Lsn(9)
            }),
            "cdc.transactions.commit.event"
        );
        assert_eq!(
            subject(Change::Relation(customers())),
            "cdc.public.customers.relation"
        );
        assert_eq!(
            subject(Change::Insert(row(None, None))),
            "cdc.public.customers.insert"
        );
        assert_eq!(
            subject(Change::Update(row(None, None))),
            "cdc.public.customers.update"
        );
        assert_eq!(
            subject(Change::Delete(row(None, None))),
            "cdc.public.customers.delete"
        );
        let truncate = Change::Truncate {
            table: customers(),
            lsn: crate::lsn::Lsn(1),
            tx: tx(),
            cascade: false,
            restart_identity: false,
        };
        assert_eq!(subject(truncate), "cdc.public.customers.truncate");
        let message = Change::Message {
            prefix: "app.audit log".into(),
            content: bytes::Bytes::new(),
            transactional: false,
            lsn: crate::lsn::Lsn(1),
            tx: None,
        };
        assert_eq!(subject(message), "cdc.messages.app%2Eaudit%20log");
    }

    #[test]
    fn prefixes_must_be_literal_subjects() {
        assert!(Subjects::new("postgres").is_ok());
        assert!(Subjects::new("cdc.shop").is_ok());
        for bad in ["", ".x", "x.", "a..b", "a.*", "a.>", "a b"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Subjects::new("cdc.shop").map(|s| s.wildcard()),
            Ok("cdc.shop.>".to_owned())
        );
    }
}
