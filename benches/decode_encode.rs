//! Micro-benchmarks of the hot path, one event at a time: decoding a pgoutput
//! Insert of a typical 5-column row (bigint, text, numeric, jsonb with a
//! 120-character note, timestamptz; about 300 bytes as text) and encoding it
//! as the compact JSON line every target receives.
//!
//! ```sh
//! cargo bench --bench decode_encode
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgoutput_stream::change::json::write_json;
use pgoutput_stream::change::Change;
use pgoutput_stream::lsn::Lsn;
use pgoutput_stream::pgoutput::decoder::Decoder;

const RELATION_ID: u32 = 16_384;

/// Column name, type OID and whether it is part of the key.
const COLUMNS: [(&str, u32, bool); 5] = [
    ("id", 20, true),
    ("name", 25, false),
    ("amount", 1700, false),
    ("payload", 3802, false),
    ("created_at", 1184, false),
];

fn relation_message() -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(RELATION_ID);
    b.put_slice(b"public\0bench_rows\0");
    b.put_u8(b'd');
    b.put_i16(COLUMNS.len() as i16);
    for (name, oid, key) in COLUMNS {
        b.put_u8(u8::from(key));
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(oid);
        b.put_i32(-1);
    }
    b.freeze()
}

fn begin_message() -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'B');
    b.put_u64(0x1_6B37_4D48);
    b.put_i64(786_000_000_000_000);
    b.put_u32(4242);
    b.freeze()
}

/// The row as the server sends it (text format), about 300 bytes of values.
fn insert_message(id: u64) -> Bytes {
    let note = "n".repeat(120);
    let values = [
        id.to_string(),
        format!("customer-{id:08}-with-a-name-of-usual-length"),
        "12345.67".to_owned(),
        format!(
            r#"{{"kind": "order", "items": [1, 2, 3], "flags": {{"paid": true, "gift": false}}, "note": "{note}"}}"#
        ),
        "2024-11-23 10:01:31.123456+00".to_owned(),
    ];
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(RELATION_ID);
    b.put_u8(b'N');
    b.put_i16(values.len() as i16);
    for v in &values {
        b.put_u8(b't');
        b.put_i32(v.len() as i32);
        b.put_slice(v.as_bytes());
    }
    b.freeze()
}

/// A decoder inside an open transaction that knows the table.
fn ready_decoder() -> Decoder {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    decoder
        .decode(Lsn(1), relation_message(), &mut out)
        .expect("relation decodes");
    decoder
        .decode(Lsn(2), begin_message(), &mut out)
        .expect("begin decodes");
    decoder
}

fn benches(c: &mut Criterion) {
    let insert = insert_message(1_234_567);
    let mut group = c.benchmark_group("insert_5_columns");
    group.throughput(Throughput::Elements(1));

    let mut decoder = ready_decoder();
    let mut changes: Vec<Change> = Vec::with_capacity(4);
    group.bench_function("decode", |b| {
        b.iter(|| {
            changes.clear();
            decoder
                .decode(Lsn(3), insert.clone(), &mut changes)
                .expect("insert decodes");
        })
    });

    let mut one = Vec::new();
    ready_decoder()
        .decode(Lsn(3), insert.clone(), &mut one)
        .expect("insert decodes");
    let change = one.pop().expect("one event");
    let mut json = Vec::with_capacity(1024);
    write_json(&change, &mut json);
    eprintln!(
        "event: {} bytes of pgoutput, {} bytes of JSON",
        insert.len(),
        json.len()
    );
    group.bench_function("encode_json", |b| {
        b.iter(|| {
            json.clear();
            write_json(&change, &mut json);
        })
    });

    let mut decoder = ready_decoder();
    group.bench_function("decode_and_encode_json", |b| {
        b.iter(|| {
            changes.clear();
            decoder
                .decode(Lsn(3), insert.clone(), &mut changes)
                .expect("insert decodes");
            json.clear();
            for change in &changes {
                write_json(change, &mut json);
            }
        })
    });

    // A fresh payload per event, as it arrives from the socket.
    let mut decoder = ready_decoder();
    group.bench_function("decode_and_encode_json_fresh_buffer", |b| {
        b.iter_batched(
            || Bytes::copy_from_slice(&insert),
            |payload| {
                changes.clear();
                decoder
                    .decode(Lsn(3), payload, &mut changes)
                    .expect("insert decodes");
                json.clear();
                for change in &changes {
                    write_json(change, &mut json);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(decode_encode, benches);
criterion_main!(decode_encode);
