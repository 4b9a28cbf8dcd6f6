//! Reading a shard's needed rows from its Parquet file, and the schema of what is read.

use std::{fs::File, sync::Arc};

use arrow::{array::RecordBatch, datatypes::SchemaRef};
use parquet::arrow::{
    ProjectionMask,
    arrow_reader::{RowSelection, RowSelectionPolicy, RowSelector},
};
use tessera_dataset::parquet_guard::{ParquetLimits, contain, open_checked};
use tessera_formats::Manifest;

use crate::error::StreamError;

/// Rows decoded per Parquet read; a shard's rows arrive in batches of this many.
pub(super) const READ_BATCH_ROWS: usize = 8 * 1024;

/// Reads rows `rows` (sorted, distinct) of the Parquet `file`: the batches, and the file's
/// row count. The file matched its CID, but anyone may have published it: it is read with
/// limits, and a panic in the reader fails this shard alone, by name.
pub(super) fn read_rows(
    file: File,
    name: &str,
    rows: &[u64],
    columns: Option<&[String]>,
    limits: &ParquetLimits,
) -> Result<(Vec<RecordBatch>, u64), StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: name.to_string(),
        reason,
    };
    contain(|| read_checked(file, rows, columns, limits)).map_err(bad)
}

fn read_checked(
    file: File,
    rows: &[u64],
    columns: Option<&[String]>,
    limits: &ParquetLimits,
) -> Result<(Vec<RecordBatch>, u64), String> {
    let builder = open_checked(file, limits)?;
    let mask = match columns {
        Some(names) => {
            let roots = root_indices(builder.schema(), names)?;
            ProjectionMask::roots(builder.parquet_schema(), roots)
        }
        None => ProjectionMask::all(),
    };
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    if let Some(&last) = rows.last()
        && last >= total
    {
        return Err(format!("row {last} of a {total}-row file"));
    }
    let all = rows.len() as u64 == total;
    let mut builder = builder
        .with_projection(mask)
        .with_batch_size(rows.len().clamp(1, READ_BATCH_ROWS));
    if !all {
        builder = builder.with_row_selection(selection(rows));
        if sparse(rows.len() as u64, total) {
            builder = builder.with_row_selection_policy(RowSelectionPolicy::Selectors);
        }
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if read != rows.len() {
        return Err(format!("{read} rows read, {} asked for", rows.len()));
    }
    Ok((batches, total))
}

/// Whether `wanted` rows of `total` are few enough to skip the others in the decoder rather
/// than decode every row and filter (the parquet crate's choice for selectors as short as a
/// shuffle's): a data loader's workers each read a share of every shard. With four workers
/// over text rows, skipping took 8% less CPU and a quarter less memory; with two, 5-10% more
/// CPU; with three, the same CPU and 15% less memory.
fn sparse(wanted: u64, total: u64) -> bool {
    wanted.saturating_mul(3) <= total
}

/// The row selection of `rows` (sorted, distinct), a run of neighbours as one selector.
fn selection(rows: &[u64]) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    let mut iter = rows.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        if first > at {
            selectors.push(RowSelector::skip(usize::try_from(first - at).unwrap_or(0)));
        }
        selectors.push(RowSelector::select(
            usize::try_from(last - first + 1).unwrap_or(0),
        ));
        at = last + 1;
    }
    RowSelection::from(selectors)
}

fn root_indices(schema: &SchemaRef, names: &[String]) -> Result<Vec<usize>, String> {
    names
        .iter()
        .map(|n| schema.index_of(n).map_err(|_| format!("no column {n:?}")))
        .collect()
}

/// The schema of the batches: the manifest's, projected.
pub(crate) fn output_schema(
    manifest: &Manifest,
    columns: Option<&[String]>,
) -> Result<SchemaRef, StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: "(manifest schema)".into(),
        reason,
    };
    let bytes = manifest
        .schema
        .as_ref()
        .map(|s| s.bytes.clone())
        .ok_or_else(|| bad("the manifest has no schema".into()))?;
    // The manifest keeps a bare Schema flatbuffer (verified here before it is read); anyone
    // may have published it, so a panic in arrow-ipc is contained.
    let schema = contain(|| {
        let fb = arrow::ipc::root_as_schema(&bytes).map_err(|e| e.to_string())?;
        arrow::ipc::convert::try_fb_to_schema(fb).map_err(|e| e.to_string())
    })
    .map(Arc::new)
    .map_err(bad)?;
    match columns {
        None => Ok(schema),
        Some(names) => {
            let mut roots = names
                .iter()
                .map(|n| {
                    schema.index_of(n).map_err(|_| StreamError::NoColumn {
                        column: n.clone(),
                        columns: schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            roots.sort_unstable();
            roots.dedup();
            Ok(Arc::new(
                schema.project(&roots).map_err(|e| bad(e.to_string()))?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::{
        array::{AsArray as _, Int32Builder, Int64Array, ListBuilder, StringArray},
        datatypes::{DataType, Field, Int32Type, Int64Type, Schema},
    };
    use parquet::{arrow::ArrowWriter, file::properties::WriterProperties};

    use super::*;

    /// A Parquet file of `total` rows (an `id`, and a `text` and a list of `tokens` derived
    /// from it, the list of `id % 4` tokens, empty for some) in row groups of 300 and pages of
    /// 64 rows, so that selections cross both.
    fn shard(total: u64) -> tempfile::NamedTempFile {
        let token = Arc::new(Field::new("item", DataType::Int32, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("tokens", DataType::List(token.clone()), false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .set_data_page_row_count_limit(64)
            .set_write_batch_size(64)
            .build();
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer =
            ArrowWriter::try_new(file.reopen().unwrap(), schema.clone(), Some(props)).unwrap();
        let ids: Vec<i64> = (0..total as i64).collect();
        let texts: Vec<String> = ids
            .iter()
            .map(|i| format!("row {i} {}", "x".repeat((i % 50) as usize)))
            .collect();
        let mut tokens = ListBuilder::new(Int32Builder::new()).with_field(token);
        for &id in &ids {
            tokens.values().append_slice(&tokens_of(id));
            tokens.append(true);
        }
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(texts)),
                Arc::new(tokens.finish()),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        file
    }

    fn tokens_of(id: i64) -> Vec<i32> {
        (0..id % 4)
            .map(|k| i32::try_from(id * 10 + k).unwrap())
            .collect()
    }

    #[test]
    fn every_density_of_rows_reads_exactly_the_rows_asked() {
        let total = 1000;
        let file = shard(total);
        // Every row, dense selections (decoded and filtered) and sparse ones (skipped in the
        // decoder), the last row included.
        for keep_one_in in [1u64, 2, 3, 4, 7, 100] {
            let rows: Vec<u64> = (0..total)
                .filter(|r| r % keep_one_in == keep_one_in - 1)
                .collect();
            let (batches, read_total) = read_rows(
                file.reopen().unwrap(),
                "s",
                &rows,
                None,
                &ParquetLimits::default(),
            )
            .unwrap();
            assert_eq!(read_total, total);
            let mut got = Vec::new();
            for b in &batches {
                let ids = b.column(0).as_primitive::<Int64Type>();
                let texts = b.column(1).as_string::<i32>();
                let tokens = b.column(2).as_list::<i32>();
                for (i, (id, text)) in ids.values().iter().zip(texts.iter()).enumerate() {
                    assert!(text.unwrap().starts_with(&format!("row {id} ")));
                    let row_tokens = tokens.value(i);
                    assert_eq!(
                        row_tokens.as_primitive::<Int32Type>().values().to_vec(),
                        tokens_of(*id)
                    );
                    got.push(*id as u64);
                }
            }
            assert_eq!(got, rows, "one in {keep_one_in}");
            assert_eq!(sparse(rows.len() as u64, total), keep_one_in >= 3);
        }
    }

    #[test]
    fn a_row_past_the_end_is_an_error() {
        let file = shard(10);
        let err = read_rows(
            file.reopen().unwrap(),
            "part-3",
            &[2, 10],
            None,
            &ParquetLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("row 10 of a 10-row file"), "{err}");
    }
}
