//! The publisher's Ed25519 signing key: `~/.config/tessera/publisher.key` unless `--key`
//! says otherwise, created on first use; and `tessera publisher-key show|rotate`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tessera_dataset_registry::{publisher_key, remote};
use tessera_formats::{
    PublisherKey,
    record::Signer,
    rotation::{KeyRotation, ROTATION_VERSION},
    time::now_ms,
};

use super::{config::default_path, join::JoinArgs};

/// The key file to use.
pub(crate) fn key_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(p) => Ok(p.to_path_buf()),
        None => default_path("publisher.key").context("no --key and no home directory"),
    }
}

/// Loads the signer at `path` if its key exists.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Signer>> {
    Ok(publisher_key::load_signer(path)?)
}

/// Loads the signer at `path`, creating a key if there is none.
pub(crate) fn load_or_create(path: &Path) -> anyhow::Result<Signer> {
    let (signer, created) = publisher_key::load_or_create_signer(path)?;
    if created {
        eprintln!("created publisher key {}", path.display());
    }
    Ok(signer)
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
#[command(rename_all = "kebab-case")]
enum KeyCommand {
    /// Print the publisher id (what dataset names start with) and the key that signs for it.
    Show {
        /// The publisher key file [default: ~/.config/tessera/publisher.key].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Move the signing of new versions to a new key, keeping the publisher id: the rotation
    /// is signed by the key in force and the new one and kept by the registry nodes; the old
    /// key file is kept as FILE.retired-N.
    Rotate {
        /// The publisher key file [default: ~/.config/tessera/publisher.key].
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        join: JoinArgs,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        KeyCommand::Show { key } => {
            let path = key_path(key.as_deref())?;
            let signer =
                load(&path)?.with_context(|| format!("no publisher key at {}", path.display()))?;
            println!("{}", signer.publisher);
            let key = PublisherKey::of(&signer.key);
            if key != signer.publisher {
                eprintln!("signed with the rotated key {key}");
            }
            Ok(())
        }
        KeyCommand::Rotate { key, join } => rotate(&key_path(key.as_deref())?, &join).await,
    }
}

async fn rotate(path: &Path, join: &JoinArgs) -> anyhow::Result<()> {
    let signer = load(path)?.with_context(|| format!("no publisher key at {}", path.display()))?;
    let session = join.join().await?;
    let publisher = signer.publisher;
    let chain = remote::rotations(&session, &publisher)
        .await
        .context("reading the publisher's key rotations")?;
    let in_force = chain.last().map_or(publisher, |r| r.rotation.new);
    let current = PublisherKey::of(&signer.key);
    let next = publisher_key::next_key(path)?;
    let sequence = chain.len() as u64 + 1;
    // A rotation accepted before its files were switched: finish switching them.
    if in_force == PublisherKey::of(&next) {
        publisher_key::finish_rotation(path, &publisher, sequence - 1)?;
        eprintln!(
            "rotation {} was already kept; key files switched",
            sequence - 1
        );
        println!("{in_force}");
        return Ok(());
    }
    anyhow::ensure!(
        in_force == current,
        "{} holds key {current}, but {in_force} signs for publisher {publisher}",
        path.display()
    );
    let after = chain.last().map_or(0, |r| r.rotation.time_ms);
    let rotation = KeyRotation {
        format: ROTATION_VERSION,
        publisher,
        sequence,
        old: current,
        new: PublisherKey::of(&next),
        time_ms: now_ms().max(after + 1),
    }
    .sign(&signer.key, &next)?;
    let mut full = chain;
    full.push(rotation);
    let kept = remote::rotate(&session, &publisher, &full)
        .await
        .context("keeping the rotation on the registry nodes")?;
    anyhow::ensure!(
        kept.len() as u64 >= sequence,
        "the registry nodes did not keep the rotation"
    );
    publisher_key::finish_rotation(path, &publisher, sequence)?;
    eprintln!(
        "publisher {publisher}: rotation {sequence} kept; new versions are signed by the key in {} (the old one is {})",
        path.display(),
        publisher_key::beside(path, &format!(".retired-{sequence}")).display()
    );
    println!("{}", PublisherKey::of(&next));
    Ok(())
}
