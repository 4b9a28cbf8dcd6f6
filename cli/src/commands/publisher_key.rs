//! The publisher's Ed25519 signing key: 32 random bytes in a file only its owner can read,
//! created on first use (`~/.config/tessera/publisher.key` unless `--key` says otherwise).

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
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
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("{} is not a publisher key (32 bytes)", path.display())
            })?;
            Ok(Some(SigningKey::from_bytes(&seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Loads the key at `path`, creating it if there is none.
pub(crate) fn load_or_create(path: &Path) -> anyhow::Result<SigningKey> {
    if let Some(key) = load(path)? {
        return Ok(key);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let seed: [u8; 32] = rand::random();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&seed)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("created publisher key {}", path.display());
    Ok(SigningKey::from_bytes(&seed))
}
