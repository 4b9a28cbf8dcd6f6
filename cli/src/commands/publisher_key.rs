//! The publisher's Ed25519 signing key: `~/.config/tessera/publisher.key` unless `--key`
//! says otherwise, created on first use.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tessera_dataset_registry::publisher_key;
use tessera_formats::record::SigningKey;

use super::config::default_path;

/// The key file to use.
pub(crate) fn key_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(p) => Ok(p.to_path_buf()),
        None => default_path("publisher.key").context("no --key and no home directory"),
    }
}

/// Loads the key at `path` if it exists.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<SigningKey>> {
    Ok(publisher_key::load(path)?)
}

/// Loads the key at `path`, creating it if there is none.
pub(crate) fn load_or_create(path: &Path) -> anyhow::Result<SigningKey> {
    let (key, created) = publisher_key::load_or_create(path)?;
    if created {
        eprintln!("created publisher key {}", path.display());
    }
    Ok(key)
}
