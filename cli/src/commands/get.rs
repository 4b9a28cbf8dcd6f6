//! `tessera get CID -o FILE`: fetch a file stored with `tessera put`, verified, rebuilt from
//! parity when up to m of its pieces are lost.

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_client::{GetOptions, get_file};

use super::join::JoinArgs;

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// The layout CID that `tessera put` printed.
    cid: String,
    /// Where to write the file; it must not exist.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    join: JoinArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let cid = tessera_formats::address::parse(&args.cid).context("reading the CID")?;
    let session = args.join.join().await?;
    let started = Instant::now();
    let report = get_file(&session, cid, &args.output, &GetOptions::default())
        .await
        .with_context(|| format!("fetching {cid}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let size = report.layout.size;
    eprintln!(
        "fetched {} ({}) in {seconds:.2} s ({:.1} MB/s), verified against {}",
        args.output.display(),
        ByteSize::b(size),
        size as f64 / 1e6 / seconds.max(1e-9),
        report.layout.content,
    );
    for (index, why) in &report.failed {
        eprintln!("  piece {index} unavailable: {why}");
    }
    if report.reconstructed {
        eprintln!("  rebuilt from pieces {:?}", report.used);
    }
    Ok(())
}
