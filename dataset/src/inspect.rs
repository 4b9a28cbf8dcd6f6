//! Reading what a Parquet file is without reading its data: its Arrow schema, rows and row
//! groups, from the footer alone.

use std::{fs::File, path::Path, sync::Arc};

use arrow::datatypes::Schema;
use tessera_formats::manifest::RowGroup;

use super::{
    DatasetError,
    parquet_guard::{ParquetLimits, chunk_range, open_checked},
};

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

/// Reads the footer of the Parquet file at `path`, checked against the default limits (the
/// file may have come from anyone).
pub fn inspect(path: &Path) -> Result<ParquetInfo, DatasetError> {
    inspect_with(path, &ParquetLimits::default())
}

/// Reads the footer of the Parquet file at `path`, checked against `limits`.
pub fn inspect_with(path: &Path, limits: &ParquetLimits) -> Result<ParquetInfo, DatasetError> {
    let bad = |reason: String| DatasetError::NotParquet {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let builder = open_checked(file, limits).map_err(bad)?;
    let metadata = builder.metadata();
    let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
    for rg in metadata.row_groups() {
        let (mut start, mut end) = (u64::MAX, 0u64);
        for column in rg.columns() {
            let (s, len) = chunk_range(column).map_err(bad)?;
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow::{
        array::{ArrayRef, Float64Array, Int64Array, RecordBatch},
        datatypes::{DataType, Field},
    };
    use parquet::{arrow::ArrowWriter, file::properties::WriterProperties};

    use super::*;

    /// Writes `rows` rows of `id: Int64` and `score` (of type `score`) in row groups of 1,000.
    pub(crate) fn write(path: &Path, rows: usize, score: &DataType) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", score.clone(), false),
        ]));
        let ids = Int64Array::from_iter_values(0..i64::try_from(rows).unwrap());
        let scores: ArrayRef = match score {
            DataType::Float64 => Arc::new(Float64Array::from_iter_values(
                ids.values().iter().map(|&i| i as f64),
            )),
            _ => Arc::new(ids.clone()),
        };
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), scores]).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1_000))
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn rows_and_row_groups_come_from_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        write(&path, 4_500, &DataType::Float64);
        let info = inspect(&path).unwrap();
        assert_eq!(info.rows, 4_500);
        assert_eq!(info.size, std::fs::metadata(&path).unwrap().len());
        assert_eq!(
            info.row_groups.iter().map(|g| g.rows).collect::<Vec<_>>(),
            [1_000, 1_000, 1_000, 1_000, 500]
        );
        let mut end = 4; // the leading "PAR1"
        for group in &info.row_groups {
            assert!(group.offset >= end && group.size > 0, "{group:?}");
            end = group.offset + group.size;
        }
        assert!(end < info.size, "the footer follows the last row group");
        assert_eq!(info.schema.fields().len(), 2);
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.parquet");
        std::fs::write(&text, "id,score\n1,2.0\n").unwrap();
        let cut = dir.path().join("cut.parquet");
        write(&cut, 2_000, &DataType::Float64);
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
        for path in [text, cut] {
            match inspect(&path) {
                Err(e @ DatasetError::NotParquet { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn schema_differences_name_the_column() {
        let field = |name: &str, ty: DataType, nullable: bool| Field::new(name, ty, nullable);
        let base = Schema::new(vec![
            field("id", DataType::Int64, false),
            field("text", DataType::Utf8, true),
        ]);
        assert_eq!(schema_difference(&base, &base.clone()), None);
        let retyped = Schema::new(vec![
            field("id", DataType::Int32, false),
            field("text", DataType::Utf8, true),
        ]);
        let why = schema_difference(&base, &retyped).unwrap();
        assert!(
            why.contains("\"id\": Int32") && why.contains("Int64"),
            "{why}"
        );
        let nullable = Schema::new(vec![
            field("id", DataType::Int64, true),
            field("text", DataType::Utf8, true),
        ]);
        assert!(
            schema_difference(&base, &nullable)
                .unwrap()
                .contains("(nullable)")
        );
        let extra = Schema::new(vec![
            field("id", DataType::Int64, false),
            field("text", DataType::Utf8, true),
            field("lang", DataType::Utf8, true),
        ]);
        assert_eq!(
            schema_difference(&base, &extra).unwrap(),
            "extra column \"lang\""
        );
        let missing = Schema::new(vec![field("id", DataType::Int64, false)]);
        assert_eq!(
            schema_difference(&base, &missing).unwrap(),
            "missing column \"text\""
        );
    }
}
