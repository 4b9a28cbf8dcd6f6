//! Reading what a Parquet file is without reading its data: its Arrow schema, rows and row
//! groups, from the footer alone.

use std::{fs::File, path::Path, sync::Arc};

use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_formats::manifest::RowGroup;

use super::DatasetError;

/// What one Parquet file holds.
#[derive(Debug, Clone)]
pub struct ParquetInfo {
    /// Its Arrow schema.
    pub schema: Arc<Schema>,
    /// Rows.
    pub rows: u64,
    /// Row groups, in file order.
    pub row_groups: Vec<RowGroup>,
    /// File size.
    pub size: u64,
}

/// Reads the footer of the Parquet file at `path`.
pub fn inspect(path: &Path) -> Result<ParquetInfo, DatasetError> {
    let bad = |reason: String| DatasetError::NotParquet {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let metadata = builder.metadata();
    let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
    for rg in metadata.row_groups() {
        let (mut start, mut end) = (u64::MAX, 0u64);
        for column in rg.columns() {
            let (s, len) = column.byte_range();
            start = start.min(s);
            end = end.max(s.saturating_add(len));
        }
        let rows = u64::try_from(rg.num_rows()).map_err(|_| bad("negative row count".into()))?;
        if start > end || end > size {
            return Err(bad(format!(
                "a row group claims bytes {start}..{end} of a {size}-byte file"
            )));
        }
        row_groups.push(RowGroup {
            offset: start,
            size: end - start,
            rows,
        });
    }
    let rows = row_groups.iter().map(|g| g.rows).sum();
    Ok(ParquetInfo {
        schema: builder.schema().clone(),
        rows,
        row_groups,
        size,
    })
}

/// Says how `other` differs from `first`, or `None` when they are the same schema. Schema-level
/// metadata (writer versions and the like) is not compared; fields are, with their types,
/// nullability and metadata.
pub fn schema_difference(first: &Schema, other: &Schema) -> Option<String> {
    for (i, field) in other.fields().iter().enumerate() {
        match first.fields().get(i) {
            None => return Some(format!("extra column {:?}", field.name())),
            Some(f) if f != field => {
                return Some(format!(
                    "column {i} is {:?}: {}{}, expected {:?}: {}{}",
                    field.name(),
                    field.data_type(),
                    if field.is_nullable() {
                        " (nullable)"
                    } else {
                        ""
                    },
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { " (nullable)" } else { "" },
                ));
            }
            Some(_) => {}
        }
    }
    first
        .fields()
        .get(other.fields().len())
        .map(|missing| format!("missing column {:?}", missing.name()))
}

/// The schema as an Arrow IPC flatbuffer, as the manifest keeps it.
pub fn schema_bytes(schema: &Schema) -> Vec<u8> {
    arrow::ipc::convert::IpcSchemaEncoder::new()
        .schema_to_fb(schema)
        .finished_data()
        .to_vec()
}
