//! Reads a directory of Parquet files into Arrow record batches with the parquet crate, file
//! after file: the local-disk baseline that `scripts/bench-stream` compares streaming with.
//!
//! ```text
//! cargo run --release -p tessera-examples --example read_parquet -- DIR [--batch-size 1024]
//! ```
//! Prints `rows N bytes B seconds S`: the rows decoded, the files' bytes and the time taken.
//! It runs on the allocator `tessera` runs on, so the two are compared and not two mallocs.

#![allow(clippy::print_stdout)]

use std::{fs::File, path::PathBuf, time::Instant};

use anyhow::Context as _;
use clap::Parser;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Read every .parquet file in DIR, in name order, all columns.
#[derive(Debug, Parser)]
struct Args {
    /// The directory of Parquet files.
    dir: PathBuf,
    /// Rows per record batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("reading {}", args.dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files.sort();
    let started = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    for path in &files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        bytes += file.metadata()?.len();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("reading {}", path.display()))?
            .with_batch_size(args.batch_size)
            .build()?;
        for batch in reader {
            rows += batch?.num_rows() as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("rows {rows} bytes {bytes} seconds {seconds:.3}");
    Ok(())
}
