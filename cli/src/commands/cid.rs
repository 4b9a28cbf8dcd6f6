//! `tessera cid FILE...`: content addresses of files, hashed by streaming.

use std::{fs::File, io, path::PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;
use tessera_formats::address::{HashFn, hash_reader};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files to address; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Hash function of the CID.
    #[arg(long, value_enum, default_value_t = Hash::Blake3)]
    hash: Hash,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Hash {
    Blake3,
    #[value(name = "sha2-256")]
    Sha2_256,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let hash = match args.hash {
        Hash::Blake3 => HashFn::Blake3,
        Hash::Sha2_256 => HashFn::Sha2_256,
    };
    let many = args.files.len() > 1;
    for path in &args.files {
        let (cid, _) = if path.as_os_str() == "-" {
            hash_reader(io::stdin().lock(), hash).context("reading standard input")?
        } else {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            hash_reader(file, hash).with_context(|| format!("reading {}", path.display()))?
        };
        if many {
            println!("{cid}  {}", path.display());
        } else {
            println!("{cid}");
        }
    }
    Ok(())
}
