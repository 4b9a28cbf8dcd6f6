//! `tessera fetch CID|NAME@VERSION -o DIR`: fetch a dataset version, every shard verified;
//! run it again after an interruption and it fetches only what is missing.

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_dataset::FetchOptions;
use tessera_dataset::fetch_version;
use tessera_formats::DatasetRef;

use super::{progress, reader::ReaderArgs};

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// A manifest CID, or [PUBLISHER/]NAME[@latest|@vN].
    reference: String,
    /// The directory to write the dataset's files into.
    #[arg(short, long)]
    output: PathBuf,
    /// Shards fetched at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    #[command(flatten)]
    reader: ReaderArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let reference: DatasetRef = args.reference.parse()?;
    let own = args.reader.preferred()?;
    let session = args.reader.join().await?;
    let (bar, sink) = progress::bar(&session);
    let options = FetchOptions {
        parallel_shards: args.parallel,
        progress: sink,
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let (cid, entry, report) =
        fetch_version(&session, &reference, &args.output, own.as_ref(), &options)
            .await
            .with_context(|| format!("fetching {reference}"))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(entry) = entry {
        let r = &entry.record.record;
        eprintln!("{}/{}@v{}: {}", r.publisher, r.name, r.version, r.message);
    }
    eprintln!(
        "fetched {cid} into {}: {} shards fetched ({}, {:.1} MB/s), {} already in place, {} replacing an older version's, {} rebuilt from parity",
        args.output.display(),
        report.fetched.len(),
        ByteSize::b(report.bytes),
        report.bytes as f64 / 1e6 / seconds.max(1e-9),
        report.present.len(),
        report.replaced.len(),
        report.reconstructed.len(),
    );
    Ok(())
}
