//! A publisher's Ed25519 signing key on disk: 32 random bytes in a file only its owner can
//! read, created on first use. `tessera publish` and a scraper node's coordinator (which
//! publishes its crawls) both keep their key this way.

use std::path::{Path, PathBuf};

use tessera_formats::record::SigningKey;
use tessera_net::identity::create_key_file;

/// The key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file is there but is not a key.
    #[error("{} is not a publisher key (32 bytes)", .0.display())]
    NotAKey(PathBuf),
    /// Reading or creating it failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or its folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Loads the key at `path` if it exists.
pub fn load(path: &Path) -> Result<Option<SigningKey>, KeyFileError> {
    let io = |what, source| KeyFileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    // A key file is 32 bytes: refuse anything larger before reading it.
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() != 32 => return Err(KeyFileError::NotAKey(path.to_path_buf())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", e)),
    }
    let bytes = std::fs::read(path).map_err(|e| io("reading", e))?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::NotAKey(path.to_path_buf()))?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

/// Loads the key at `path`, creating it if there is none; says whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
    if let Some(key) = load(path)? {
        return Ok((key, false));
    }
    let seed: [u8; 32] = rand::random();
    create_key_file(path, &seed).map_err(|source| KeyFileError::Io {
        what: "creating",
        path: path.to_path_buf(),
        source,
    })?;
    Ok((SigningKey::from_bytes(&seed), true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_key_is_created_once_and_a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/publisher.key");
        assert!(load(&path).unwrap().is_none());
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.to_bytes(), again.to_bytes());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, vec![1u8; 4096]).unwrap();
        assert!(matches!(load(&bad), Err(KeyFileError::NotAKey(_))));
        assert!(matches!(
            load_or_create(&bad),
            Err(KeyFileError::NotAKey(_))
        ));
    }
}
