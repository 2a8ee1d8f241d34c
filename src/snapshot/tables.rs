//! The tables of the publication, described as a relation message would
//! describe them, and the query that reads each one.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::change::{Column, Table};
use crate::pgoutput::message::ReplicaIdentity;
use crate::replication::quote_identifier;

/// One table to read.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    pub table: Arc<Table>,
    /// `COPY (SELECT <columns> FROM [ONLY] <table> [WHERE <row filter>]) TO STDOUT`:
    /// `ONLY` but for a partitioned table, whose partitions' rows are read
    /// through it.
    pub copy_sql: String,
    /// The same query for no rows: whether the role may read the table.
    pub probe_sql: String,
    /// `pg_class.reltuples`: the planner's row estimate (-1 when never analysed).
    pub estimate: i64,
}

impl SnapshotTable {
    /// `schema.table`, as progress and state name it; a part holding `.` or
    /// `"` is double-quoted, so that `"a.b".c` and `a."b.c"` stay apart.
    pub fn name(&self) -> String {
        let part = |name: &str| {
            if name.contains(['.', '"']) {
                quote_identifier(name)
            } else {
                name.to_owned()
            }
        };
        format!("{}.{}", part(&self.table.schema), part(&self.table.name))
    }
}

/// The publication's tables in name order, with the column lists and row
/// filters of PostgreSQL 15+ publications applied as pgoutput applies them.
pub async fn publication_tables(
    client: &Client,
    publication: &str,
    server_version_num: u32,
) -> Result<Vec<SnapshotTable>, tokio_postgres::Error> {
    let (attnames, rowfilter) = if server_version_num >= 150_000 {
        ("pt.attnames", "pt.rowfilter")
    } else {
        ("NULL::name[]", "NULL::text")
    };
    let rows = client
        .query(
            &format!(
                "SELECT pt.schemaname::text, pt.tablename::text, c.oid, c.relreplident::text, \
                        c.reltuples::int8, {attnames}::text[], {rowfilter}, c.relkind = 'p' \
                 FROM pg_publication_tables pt \
                 JOIN pg_namespace n ON n.nspname = pt.schemaname \
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
                 WHERE pt.pubname = $1 \
                 ORDER BY 1, 2"
            ),
            &[&publication],
        )
        .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.get(0);
        let name: String = row.get(1);
        let oid: u32 = row.get(2);
        let identity: String = row.get(3);
        let estimate: i64 = row.get(4);
        let published: Option<Vec<String>> = row.get(5);
        let filter: Option<String> = row.get(6);
        // A partitioned table is listed (publish_via_partition_root) in place
        // of its partitions and holds no rows itself: its rows are theirs.
        let partitioned: bool = row.get(7);
        let (columns, key_identifies_row) = columns(
            client,
            oid,
            identity.as_str(),
            published.as_deref(),
            server_version_num,
        )
        .await?;
        let list = columns
            .iter()
            .map(|c| quote_identifier(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let mut select = format!(
            "SELECT {list} FROM {}{}.{}",
            if partitioned { "" } else { "ONLY " },
            quote_identifier(&schema),
            quote_identifier(&name)
        );
        if let Some(filter) = filter {
            select.push_str(&format!(" WHERE {filter}"));
        }
        tables.push(SnapshotTable {
            table: Arc::new(Table {
                relation_id: oid,
                schema,
                name,
                replica_identity: identity
                    .bytes()
                    .next()
                    .and_then(ReplicaIdentity::from_byte)
                    .unwrap_or(ReplicaIdentity::Default),
                columns,
                key_identifies_row,
            }),
            copy_sql: format!("COPY ({select}) TO STDOUT"),
            probe_sql: format!("{select} LIMIT 0"),
            estimate,
        });
    }
    Ok(tables)
}

/// The published columns in order; key columns are those of the replica
/// identity, as in a relation message: the key columns of the primary key
/// (not deferrable, else the table has no identity) or of the identity index,
/// not their INCLUDE columns; an invalid index (a partitioned table's key
/// before each partition has its own) counts from PostgreSQL 18 on. From
/// PostgreSQL 15 on the publication names the columns, but before 18 pgoutput
/// never sends generated ones even where it names them; before 15, every
/// column but generated ones. With them, whether the key columns identify a
/// row: the identity is a valid primary key or index (unique and not null) and
/// the publication has all its columns (a column list of an insert-only
/// publication may leave some out).
async fn columns(
    client: &Client,
    oid: u32,
    identity: &str,
    published: Option<&[String]>,
    server_version_num: u32,
) -> Result<(Vec<Column>, bool), tokio_postgres::Error> {
    let since_18 = server_version_num >= 180_000;
    let rows = client
        .query(
            // The identity index, if any (at most one primary key, at most
            // one replica identity index): its key columns and whether it is valid.
            "SELECT a.attname::text, a.atttypid, t.typname::text, \
                    $2 = 'f' OR coalesce(a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]) \
                                         AND (i.indisvalid OR $3), false), \
                    a.attgenerated <> '', \
                    coalesce(i.indisvalid, false) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid \
                  AND CASE $2 WHEN 'd' THEN i.indisprimary AND i.indimmediate \
                              WHEN 'i' THEN i.indisreplident ELSE false END \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid, &identity, &since_18],
        )
        .await?;
    let mut keys = 0;
    // A valid primary key or identity index (none for FULL or NOTHING); an
    // invalid one (a partitioned table's key before every partition has its
    // own) does not keep two rows from sharing a key.
    let valid_index = rows.first().is_some_and(|row| row.get::<_, bool>(5));
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let column = Column {
            name: row.get(0),
            type_oid: row.get(1),
            type_name: row.get(2),
            key: row.get(3),
        };
        let generated: bool = row.get(4);
        keys += usize::from(column.key);
        let is_published = match published {
            Some(names) => names.contains(&column.name) && (!generated || since_18),
            None => !generated,
        };
        if is_published {
            columns.push(column);
        }
    }
    let published_keys = columns.iter().filter(|c| c.key).count();
    let unique = valid_index && keys > 0 && published_keys == keys;
    Ok((columns, unique))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(schema: &str, name: &str) -> String {
        let table = SnapshotTable {
            table: Arc::new(Table {
                relation_id: 1,
                schema: schema.to_owned(),
                name: name.to_owned(),
                replica_identity: ReplicaIdentity::Default,
                columns: Vec::new(),
                key_identifies_row: false,
            }),
            copy_sql: String::new(),
            probe_sql: String::new(),
            estimate: 0,
        };
        table.name()
    }

    #[test]
    fn names_of_tables_with_dots_in_them_stay_apart() {
        assert_eq!(named("public", "t"), "public.t");
        assert_eq!(named("a.b", "c"), "\"a.b\".c");
        assert_eq!(named("a", "b.c"), "a.\"b.c\"");
        assert_eq!(named("a", "say \"hi\""), "a.\"say \"\"hi\"\"\"");
    }
}
