//! Reading a shard's needed rows from its Parquet file, and the schema of what is read.

use std::{fs::File, sync::Arc};

use arrow::{array::RecordBatch, datatypes::SchemaRef};
use parquet::arrow::{
    ProjectionMask,
    arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector},
};
use tessera_formats::Manifest;

use crate::error::StreamError;

/// Rows decoded per Parquet read; a shard's rows arrive in batches of this many.
pub(super) const READ_BATCH_ROWS: usize = 8 * 1024;

/// Reads rows `rows` (sorted, distinct) of the Parquet `file`: the batches, and the file's
/// row count.
pub(super) fn read_rows(
    file: File,
    name: &str,
    rows: &[u64],
    columns: Option<&[String]>,
) -> Result<(Vec<RecordBatch>, u64), StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: name.to_string(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let mask = match columns {
        Some(names) => {
            let roots = root_indices(builder.schema(), names).map_err(bad)?;
            ProjectionMask::roots(builder.parquet_schema(), roots)
        }
        None => ProjectionMask::all(),
    };
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    if let Some(&last) = rows.last()
        && last >= total
    {
        return Err(bad(format!("row {last} of a {total}-row file")));
    }
    let all = rows.len() as u64 == total;
    let mut builder = builder
        .with_projection(mask)
        .with_batch_size(rows.len().clamp(1, READ_BATCH_ROWS));
    if !all {
        builder = builder.with_row_selection(selection(rows));
    }
    let reader = builder.build().map_err(|e| bad(e.to_string()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if read != rows.len() {
        return Err(bad(format!("{read} rows read, {} asked for", rows.len())));
    }
    Ok((batches, total))
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
pub(super) fn output_schema(
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
    // The manifest keeps a bare Schema flatbuffer (verified here before it is read).
    let fb = arrow::ipc::root_as_schema(&bytes).map_err(|e| bad(e.to_string()))?;
    let schema =
        Arc::new(arrow::ipc::convert::try_fb_to_schema(fb).map_err(|e| bad(e.to_string()))?);
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
