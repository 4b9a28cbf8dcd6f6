//! Writes a directory of Parquet files for benchmarks and trials of `tessera publish`.
//!
//! ```text
//! cargo run --release -p tessera-examples --example parquet_dataset -- DIR \
//!     [--files 10] [--size 1GiB] [--seed v1] [--only N]
//! ```
//! Every file has the same schema (`id`, `text`, `score`), row groups of 8,192 rows and text
//! that does not compress, so a file's size is close to its share of `--size`. The bytes
//! follow from the seed and the file's index: `--only 3 --seed v2` rewrites file 3 alone, as
//! a new version of a dataset would.

#![allow(clippy::print_stdout)]

use std::{fs::File, path::PathBuf, sync::Arc};

use anyhow::{Context as _, ensure};
use arrow::{
    array::{Float64Array, Int64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use bytesize::ByteSize;
use clap::Parser;
use parquet::{arrow::ArrowWriter, file::properties::WriterProperties};

/// Write `--files` Parquet files of `--size` in all into DIR.
#[derive(Debug, Parser)]
struct Args {
    /// The directory to write into (created if missing).
    dir: PathBuf,
    /// Files to write.
    #[arg(long, default_value_t = 10)]
    files: usize,
    /// Bytes in all files together.
    #[arg(long, default_value = "1GiB")]
    size: ByteSize,
    /// What the rows' text derives from.
    #[arg(long, default_value = "v1")]
    seed: String,
    /// Write only this file (0-based).
    #[arg(long)]
    only: Option<usize>,
}

const ROWS_PER_BATCH: usize = 8_192;
/// Text bytes per row: 96 random bytes as hex.
const TEXT_BYTES: usize = 96;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.files > 0, "--files must be at least 1");
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    // Each row holds 8 + 8 bytes of numbers and 2 * TEXT_BYTES of text, plus a length prefix.
    let row_bytes = (16 + 2 * TEXT_BYTES + 4) as u64;
    let rows = (args.size.as_u64() / args.files as u64 / row_bytes).max(1);
    for index in 0..args.files {
        if args.only.is_some_and(|only| only != index) {
            continue;
        }
        let path = args.dir.join(format!("part-{index:04}.parquet"));
        write_file(&path, &format!("{}/{index}", args.seed), rows)?;
        let len = std::fs::metadata(&path)?.len();
        println!("{} {rows} rows {}", path.display(), ByteSize::b(len));
    }
    Ok(())
}

fn write_file(path: &PathBuf, seed: &str, rows: u64) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROWS_PER_BATCH))
        .build();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut noise = blake3::Hasher::new_derive_key("tessera parquet_dataset example");
    noise.update(seed.as_bytes());
    let mut noise = noise.finalize_xof();
    let mut raw = vec![0u8; TEXT_BYTES];
    let mut start = 0u64;
    while start < rows {
        let n = (rows - start).min(ROWS_PER_BATCH as u64);
        let ids = i64::try_from(start)?..i64::try_from(start + n)?;
        let texts: Vec<String> = (0..n)
            .map(|_| {
                noise.fill(&mut raw);
                hex::encode(&raw)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let scores = ids.clone().map(|i| i as f64 / 7.0);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from_iter_values(texts)),
                Arc::new(Float64Array::from_iter_values(scores)),
            ],
        )?;
        writer.write(&batch)?;
        start += n;
    }
    writer.close()?;
    Ok(())
}
