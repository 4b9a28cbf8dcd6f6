//! Erasure-codes a file into pieces on disk and rebuilds it from k of them, in bounded memory.
//!
//! ```text
//! cargo run --release --example erasure -- FILE [--k 10] [--m 4] [--stripe 1MiB] [--dir DIR]
//! ```
//! The m pieces taken away are data pieces, so the rebuild really runs Reed-Solomon. Memory
//! stays at a few stripes whatever the file's size.

#![allow(clippy::print_stdout)]

use std::{
    fs::{self, File},
    io::{BufReader, BufWriter},
    path::PathBuf,
    time::Instant,
};

use anyhow::{Context as _, ensure};
use bytesize::ByteSize;
use clap::Parser;
use tessera_formats::{
    address::{HashFn, hash_reader},
    erasure::{self, ErasureParams},
};

/// Erasure-code FILE into k + m pieces, lose m of them, and rebuild FILE from the rest.
#[derive(Debug, Parser)]
struct Args {
    /// The file to encode.
    file: PathBuf,
    /// Data pieces.
    #[arg(long, default_value_t = 10)]
    k: u16,
    /// Parity pieces.
    #[arg(long, default_value_t = 4)]
    m: u16,
    /// Bytes per piece per stripe.
    #[arg(long, default_value = "1MiB")]
    stripe: ByteSize,
    /// Where to put pieces and the rebuilt file (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stripe = u32::try_from(args.stripe.as_u64()).context("stripe size too large")?;
    let params = ErasureParams::new(args.k, args.m, stripe)?;
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let len = fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let piece = |i: usize| dir.join(format!("piece-{i:03}"));

    let started = Instant::now();
    let layout = {
        let mut sinks = (0..params.total())
            .map(|i| File::create(piece(i)).map(|f| BufWriter::with_capacity(1 << 20, f)))
            .collect::<Result<Vec<_>, _>>()?;
        let input = BufReader::with_capacity(1 << 20, File::open(&args.file)?);
        erasure::encode(params, len, input, &mut sinks)?
    };
    let encode_time = started.elapsed();
    println!(
        "encoded {} into {} + {} pieces of {} in {:.2?} ({:.0} MB/s)",
        ByteSize::b(len),
        params.k,
        params.m,
        ByteSize::b(layout.piece_len()),
        encode_time,
        len as f64 / encode_time.as_secs_f64() / 1e6
    );
    println!("file CID   {}", layout.content);
    println!("layout CID {}", layout.to_block()?.0);

    for i in 0..usize::from(params.m).min(params.data()) {
        fs::remove_file(piece(i))?;
    }
    let rebuilt = dir.join("rebuilt");
    let started = Instant::now();
    let report = {
        let mut sources = (0..params.total())
            .map(|i| {
                File::open(piece(i))
                    .ok()
                    .map(|f| BufReader::with_capacity(1 << 20, f))
            })
            .collect::<Vec<_>>();
        let out = BufWriter::with_capacity(1 << 20, File::create(&rebuilt)?);
        erasure::decode(&layout, &mut sources, out)?
    };
    let decode_time = started.elapsed();
    println!(
        "lost pieces {:?}; rebuilt from {:?} in {:.2?} ({:.0} MB/s, pieces verified first)",
        report.missing,
        report.used,
        decode_time,
        len as f64 / decode_time.as_secs_f64() / 1e6
    );
    let (cid, _) = hash_reader(File::open(&rebuilt)?, HashFn::Blake3)?;
    ensure!(cid == layout.content, "rebuilt file differs: {cid}");
    println!("rebuilt file is identical: {cid}");
    Ok(())
}
