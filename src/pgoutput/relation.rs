//! The relation cache: the server describes each table once per session (and
//! again after a schema change) with a Relation message; row changes refer to
//! it only by id. The cache turns those descriptions into shared [`Table`]s.

use std::collections::HashMap;
use std::sync::Arc;

use postgres_types::Type;

use crate::change::{Column, Table};
use crate::pgoutput::message::{Relation, TypeInfo};

/// Tables and non-built-in type names seen so far in this replication session.
#[derive(Debug, Default)]
pub struct RelationCache {
    tables: HashMap<u32, Arc<Table>>,
    /// Names from Type messages, which the server sends before a Relation
    /// that uses a type it cannot assume the client knows (enums, domains, ...).
    type_names: HashMap<u32, String>,
}

impl RelationCache {
    /// Record a Relation message (replacing an earlier one of the same id) → the shared Table.
    ///
    /// Rows already decoded keep the `Arc` of the description they were decoded with.
    pub fn update(&mut self, relation: Relation) -> Arc<Table> {
        let columns = relation
            .columns
            .into_iter()
            .map(|c| Column {
                type_name: self.type_name(c.type_oid),
                key: c.is_key(),
                name: c.name,
                type_oid: c.type_oid,
            })
            .collect();
        // The protocol sends an empty namespace for pg_catalog.
        let schema = if relation.namespace.is_empty() {
            "pg_catalog".to_owned()
        } else {
            relation.namespace
        };
        let table = Arc::new(Table {
            relation_id: relation.relation_id,
            schema,
            name: relation.name,
            replica_identity: relation.replica_identity,
            columns,
            key_identifies_row: false,
        });
        self.tables.insert(relation.relation_id, Arc::clone(&table));
        table
    }

    /// Remember the name of a type announced by a Type message, for later Relation messages.
    pub fn record_type(&mut self, ty: TypeInfo) {
        self.type_names.insert(ty.type_oid, ty.name);
    }

    /// The table last described under `relation_id`, if any.
    pub fn get(&self, relation_id: u32) -> Option<&Arc<Table>> {
        self.tables.get(&relation_id)
    }

    /// Built-in name, else the name from a Type message, else the OID in decimal.
    fn type_name(&self, oid: u32) -> String {
        if let Some(ty) = Type::from_oid(oid) {
            return ty.name().to_owned();
        }
        self.type_names
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| oid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::message::{RelationColumn, ReplicaIdentity};

    fn column(name: &str, type_oid: u32, flags: u8) -> RelationColumn {
        RelationColumn {
            flags,
            name: name.into(),
            type_oid,
            type_modifier: -1,
        }
    }

    fn relation(id: u32, namespace: &str, columns: Vec<RelationColumn>) -> Relation {
        Relation {
            relation_id: id,
            namespace: namespace.into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns,
        }
    }

    #[test]
    fn names_builtin_custom_and_unknown_types() {
        let mut cache = RelationCache::default();
        cache.record_type(TypeInfo {
            type_oid: 70_000,
            namespace: "public".into(),
            name: "mood".into(),
        });
        let table = cache.update(relation(
            1,
            "public",
            vec![
                column("id", 23, 1),
                column("tags", 1009, 0),
                column("feeling", 70_000, 0),
                column("other", 70_001, 0),
            ],
        ));
        let names: Vec<_> = table.columns.iter().map(|c| c.type_name.as_str()).collect();
        assert_eq!(names, ["int4", "_text", "mood", "70001"]);
        let keys: Vec<_> = table.columns.iter().map(|c| c.key).collect();
        assert_eq!(keys, [true, false, false, false]);
        assert_eq!(table.columns[2].type_oid, 70_000);
    }

    #[test]
    fn empty_namespace_means_pg_catalog() {
        let mut cache = RelationCache::default();
        assert_eq!(cache.update(relation(1, "", vec![])).schema, "pg_catalog");
        assert_eq!(cache.update(relation(2, "app", vec![])).schema, "app");
    }

    #[test]
    fn newer_relation_message_replaces_the_cached_table() {
        let mut cache = RelationCache::default();
        let old = cache.update(relation(5, "public", vec![column("a", 23, 1)]));
        let new = cache.update(relation(
            5,
            "public",
            vec![column("a", 23, 1), column("b", 25, 0)],
        ));
        assert_eq!(old.columns.len(), 1);
        assert_eq!(cache.get(5).map(|t| t.columns.len()), Some(2));
        assert!(Arc::ptr_eq(cache.get(5).unwrap(), &new));
        assert!(cache.get(6).is_none());
    }
}
