//! Test-only encoder: the inverse of [`super::parse`], used to build payloads
//! for unit tests and round-trip property tests.

use crate::pgoutput::message::{
    LogicalMessage, OldKind, OldTuple, ReplicaIdentity, Tuple, TupleValue,
};

/// The wire bytes of `message` (protocol version 1).
pub(crate) fn encode(message: &LogicalMessage) -> Vec<u8> {
    let mut w = Vec::new();
    match message {
        LogicalMessage::Begin(b) => {
            w.push(b'B');
            w.extend(b.final_lsn.0.to_be_bytes());
            w.extend(b.commit_ts.to_be_bytes());
            w.extend(b.xid.to_be_bytes());
        }
        LogicalMessage::Commit(c) => {
            w.push(b'C');
            w.push(c.flags);
            w.extend(c.commit_lsn.0.to_be_bytes());
            w.extend(c.end_lsn.0.to_be_bytes());
            w.extend(c.commit_ts.to_be_bytes());
        }
        LogicalMessage::Origin(o) => {
            w.push(b'O');
            w.extend(o.commit_lsn.0.to_be_bytes());
            cstr(&mut w, &o.name);
        }
        LogicalMessage::Relation(rel) => {
            w.push(b'R');
            w.extend(rel.relation_id.to_be_bytes());
            cstr(&mut w, &rel.namespace);
            cstr(&mut w, &rel.name);
            w.push(identity_byte(rel.replica_identity));
            w.extend(len16(rel.columns.len()).to_be_bytes());
            for c in &rel.columns {
                w.push(c.flags);
                cstr(&mut w, &c.name);
                w.extend(c.type_oid.to_be_bytes());
                w.extend(c.type_modifier.to_be_bytes());
            }
        }
        LogicalMessage::Type(t) => {
            w.push(b'Y');
            w.extend(t.type_oid.to_be_bytes());
            cstr(&mut w, &t.namespace);
            cstr(&mut w, &t.name);
        }
        LogicalMessage::Insert(i) => {
            w.push(b'I');
            w.extend(i.relation_id.to_be_bytes());
            w.push(b'N');
            tuple(&mut w, &i.new);
        }
        LogicalMessage::Update(u) => {
            w.push(b'U');
            w.extend(u.relation_id.to_be_bytes());
            if let Some(old) = &u.old {
                old_tuple(&mut w, old);
            }
            w.push(b'N');
            tuple(&mut w, &u.new);
        }
        LogicalMessage::Delete(d) => {
            w.push(b'D');
            w.extend(d.relation_id.to_be_bytes());
            old_tuple(&mut w, &d.old);
        }
        LogicalMessage::Truncate(t) => {
            w.push(b'T');
            w.extend(len32(t.relation_ids.len()).to_be_bytes());
            w.push(u8::from(t.cascade) | (u8::from(t.restart_identity) << 1));
            for id in &t.relation_ids {
                w.extend(id.to_be_bytes());
            }
        }
        LogicalMessage::Message(m) => {
            w.push(b'M');
            w.push(u8::from(m.transactional));
            w.extend(m.lsn.0.to_be_bytes());
            cstr(&mut w, &m.prefix);
            w.extend(len32(m.content.len()).to_be_bytes());
            w.extend_from_slice(&m.content);
        }
        LogicalMessage::StreamStart(s) => {
            w.push(b'S');
            w.extend(s.xid.to_be_bytes());
            w.push(u8::from(s.first_segment));
        }
        LogicalMessage::StreamStop => w.push(b'E'),
        LogicalMessage::StreamCommit(c) => {
            w.push(b'c');
            w.extend(c.xid.to_be_bytes());
            w.push(c.flags);
            w.extend(c.commit_lsn.0.to_be_bytes());
            w.extend(c.end_lsn.0.to_be_bytes());
            w.extend(c.commit_ts.to_be_bytes());
        }
        LogicalMessage::StreamAbort(a) => {
            w.push(b'A');
            w.extend(a.xid.to_be_bytes());
            w.extend(a.subxid.to_be_bytes());
        }
    }
    w
}

/// The bytes of `message` as sent inside a stream block: the xid of its
/// (sub)transaction right after the tag.
pub(crate) fn encode_streamed(message: &LogicalMessage, xid: u32) -> Vec<u8> {
    let plain = encode(message);
    let mut w = Vec::with_capacity(plain.len() + 4);
    w.push(plain[0]);
    w.extend(xid.to_be_bytes());
    w.extend_from_slice(&plain[1..]);
    w
}

fn len16(n: usize) -> i16 {
    i16::try_from(n).expect("test data: count fits Int16")
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).expect("test data: length fits Int32")
}

fn cstr(w: &mut Vec<u8>, s: &str) {
    w.extend_from_slice(s.as_bytes());
    w.push(0);
}

fn identity_byte(identity: ReplicaIdentity) -> u8 {
    match identity {
        ReplicaIdentity::Default => b'd',
        ReplicaIdentity::Nothing => b'n',
        ReplicaIdentity::Full => b'f',
        ReplicaIdentity::Index => b'i',
    }
}

fn old_tuple(w: &mut Vec<u8>, old: &OldTuple) {
    w.push(match old.kind {
        OldKind::Key => b'K',
        OldKind::Full => b'O',
    });
    tuple(w, &old.tuple);
}

fn tuple(w: &mut Vec<u8>, values: &Tuple) {
    w.extend(len16(values.len()).to_be_bytes());
    for v in values {
        match v {
            TupleValue::Null => w.push(b'n'),
            TupleValue::UnchangedToast => w.push(b'u'),
            TupleValue::Text(t) => {
                w.push(b't');
                w.extend(len32(t.len()).to_be_bytes());
                w.extend_from_slice(t);
            }
        }
    }
}
