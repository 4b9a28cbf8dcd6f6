//! What reading a shard with limits costs: the checks alone (footer, every page header) next
//! to decoding the same file, a 64 MiB shard of text rows in zstd as scraper nodes write them.

#![allow(clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc};

use arrow::{
    array::{Int64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::Compression,
    file::properties::WriterProperties,
};
use tessera_stream::ParquetLimits;

fn shard() -> tempfile::NamedTempFile {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let file = tempfile::NamedTempFile::new().unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(1024))
        .build();
    let mut writer =
        ArrowWriter::try_new(file.reopen().unwrap(), schema.clone(), Some(props)).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in 0..64 {
        let texts: Vec<String> = (0..1024)
            .map(|_| {
                (0..1000)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        char::from(b'a' + u8::try_from(state % 26).unwrap())
                    })
                    .collect()
            })
            .collect();
        let ids = Int64Array::from_iter_values((0..1024).map(|i| chunk * 1024 + i));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(StringArray::from(texts))],
        )
        .unwrap();
        writer.write(&batch).unwrap();
    }
    writer.close().unwrap();
    file
}

fn checks_against_decoding(c: &mut Criterion) {
    let file = shard();
    let size = file.as_file().metadata().unwrap().len();
    let mut g = c.benchmark_group("shard_64k_rows");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.bench_function("checks_only", |b| {
        b.iter(|| {
            let builder = tessera_dataset::parquet_guard::open_checked(
                file.reopen().unwrap(),
                &ParquetLimits::default(),
            )
            .unwrap();
            black_box(builder.metadata().num_row_groups())
        })
    });
    g.bench_function("decode_unchecked", |b| {
        b.iter(|| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file.reopen().unwrap())
                .unwrap()
                .build()
                .unwrap();
            reader.map(|r| r.unwrap().num_rows()).sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, checks_against_decoding);
criterion_main!(benches);
