//! Helpers shared by Tessera's cross-crate integration tests (the tests are in `tests/`), and
//! the network testbed of homes and routers ([`testbed`]).

pub mod testbed;

use std::{path::Path, sync::Arc};

use arrow::{
    array::{Float64Array, Int64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    file::properties::WriterProperties,
};

/// Deterministic pseudo-random bytes for test data: the same `(label, len)` always gives the
/// same bytes, and different labels give unrelated bytes.
pub fn sample_bytes(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(label)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Writes a Parquet file of `rows` rows in row groups of 2,000, with text that does not
/// compress, so the file is about `rows * 130` bytes.
pub fn write_parquet(path: &Path, label: &str, rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
        Field::new("score", DataType::Float64, false),
    ]));
    let noise = sample_bytes(label, rows * 48);
    let texts: Vec<String> = noise.chunks(48).map(|c| format!("{c:02x?}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(StringArray::from_iter_values(texts)),
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 / 7.0),
            )),
        ],
    )
    .expect("test data");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2_000))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).expect("test data"),
        schema,
        Some(props),
    )
    .expect("test data");
    writer.write(&batch).expect("test data");
    writer.close().expect("test data");
}

/// Every row of the Parquet file at `path`.
pub fn read_rows(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("test data"))
        .expect("test data")
        .build()
        .expect("test data")
        .map(Result::unwrap)
        .collect()
}
