//! `tessera put FILE`: erasure-code a file, store its pieces on distinct nodes, print the CID
//! that names it and its layout (the only thing printed on stdout, for scripts).

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_client::{PutOptions, put_file};
use tessera_formats::erasure::{DEFAULT_STRIPE_SIZE, ErasureParams};

use super::join::JoinArgs;

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// The file to store.
    file: PathBuf,
    /// Data pieces: any k of the k + m pieces rebuild the file.
    #[arg(long, default_value_t = 4)]
    k: u16,
    /// Parity pieces: how many pieces (nodes) may be lost.
    #[arg(long, default_value_t = 2)]
    m: u16,
    /// Where pieces are written before they are sent [default: the system's temp directory].
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Store the file even when fewer working nodes than pieces are found, so that it
    /// survives fewer than m node losses (the output says how many).
    #[arg(long)]
    degraded: bool,
    #[command(flatten)]
    join: JoinArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let params =
        ErasureParams::new(args.k, args.m, DEFAULT_STRIPE_SIZE).context("erasure parameters")?;
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let session = args.join.join().await?;
    let started = Instant::now();
    let options = PutOptions {
        params,
        spool_dir: args.spool,
        refuse_degraded: !args.degraded,
        ..PutOptions::default()
    };
    let report = put_file(&session, &args.file, &options)
        .await
        .with_context(|| format!("storing {}", args.file.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let nodes: std::collections::HashSet<_> = report.holders.iter().collect();
    eprintln!(
        "stored {} ({}) as {}+{} pieces on {} nodes in {seconds:.2} s ({:.1} MB/s); layout on {} nodes",
        args.file.display(),
        ByteSize::b(size),
        args.k,
        args.m,
        nodes.len(),
        size as f64 / 1e6 / seconds.max(1e-9),
        report.layout_holders.len(),
    );
    if report.survives < usize::from(args.m) {
        eprintln!(
            "warning: only {} working nodes hold the {} pieces: the file survives the loss of {} \
             nodes, not {}",
            nodes.len(),
            report.holders.len(),
            report.survives,
            args.m
        );
    }
    println!("{}", report.layout_cid);
    Ok(())
}
