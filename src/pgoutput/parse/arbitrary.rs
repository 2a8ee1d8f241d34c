//! Test-only proptest strategies for arbitrary well-formed messages, shared
//! by the parser's and the decoder's property tests.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::lsn::Lsn;
use crate::pgoutput::message::*;

fn name() -> impl Strategy<Value = String> {
    // Printable characters only: names cannot hold NUL, and non-ASCII must survive.
    "\\PC{0,12}"
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn tuple() -> impl Strategy<Value = Tuple> {
    let value = prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        vec(any::<u8>(), 0..24).prop_map(|b| TupleValue::Text(Bytes::from(b))),
    ];
    vec(value, 0..6)
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    (
        prop_oneof![Just(OldKind::Key), Just(OldKind::Full)],
        tuple(),
    )
        .prop_map(|(kind, tuple)| OldTuple { kind, tuple })
}

fn identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn relation() -> impl Strategy<Value = Relation> {
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    );
    (any::<u32>(), name(), name(), identity(), vec(column, 0..5)).prop_map(
        |(relation_id, namespace, name, replica_identity, columns)| Relation {
            relation_id,
            namespace,
            name,
            replica_identity,
            columns,
        },
    )
}

/// Any message the encoder can produce.
pub(crate) fn message() -> impl Strategy<Value = LogicalMessage> {
    prop_oneof![
        (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
            LogicalMessage::Begin(Begin {
                final_lsn,
                commit_ts,
                xid,
            })
        }),
        (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(|(flags, c, e, ts)| {
            LogicalMessage::Commit(Commit {
                flags,
                commit_lsn: c,
                end_lsn: e,
                commit_ts: ts,
            })
        }),
        (lsn(), name())
            .prop_map(|(commit_lsn, name)| { LogicalMessage::Origin(Origin { commit_lsn, name }) }),
        relation().prop_map(LogicalMessage::Relation),
        (any::<u32>(), name(), name()).prop_map(|(type_oid, namespace, name)| {
            LogicalMessage::Type(TypeInfo {
                type_oid,
                namespace,
                name,
            })
        }),
        (any::<u32>(), tuple())
            .prop_map(|(relation_id, new)| { LogicalMessage::Insert(Insert { relation_id, new }) }),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple()).prop_map(
            |(relation_id, old, new)| LogicalMessage::Update(Update {
                relation_id,
                old,
                new
            })
        ),
        (any::<u32>(), old_tuple())
            .prop_map(|(relation_id, old)| { LogicalMessage::Delete(Delete { relation_id, old }) }),
        (any::<bool>(), any::<bool>(), vec(any::<u32>(), 0..5)).prop_map(
            |(cascade, restart_identity, relation_ids)| LogicalMessage::Truncate(Truncate {
                cascade,
                restart_identity,
                relation_ids,
            })
        ),
        (any::<bool>(), lsn(), name(), vec(any::<u8>(), 0..32)).prop_map(
            |(transactional, lsn, prefix, content)| LogicalMessage::Message(Message {
                transactional,
                lsn,
                prefix,
                content: Bytes::from(content),
            })
        ),
    ]
}
