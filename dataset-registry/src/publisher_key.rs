//! A publisher's Ed25519 signing key on disk: 32 random bytes in a file only its owner can
//! read, created on first use. `tessera publish` and a scraper node's coordinator (which
//! publishes its crawls) both keep their key this way.
//!
//! After a key rotation the file holds the new key, and `FILE.publisher` names the publisher
//! id it signs for (the first key's, 64 hex digits); the old key is kept beside it as
//! `FILE.retired-N`, and a rotation not yet accepted waits in `FILE.next`.

use std::path::{Path, PathBuf};

use tessera_formats::{
    PublisherKey,
    record::{Signer, SigningKey},
};
use tessera_net::identity::create_key_file;

/// The key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file is there but is not a key.
    #[error("{} is not a publisher key (32 bytes)", .0.display())]
    NotAKey(PathBuf),
    /// The file naming the publisher a rotated key signs for does not name one.
    #[error("{} does not name a publisher (64 hex digits)", .0.display())]
    NotAPublisher(PathBuf),
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

/// `path` with `suffix` added to its file name.
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Loads the signer at `path` if its key exists: the key, and the publisher it signs for
/// (named in `PATH.publisher` after a rotation, the key's own otherwise).
pub fn load_signer(path: &Path) -> Result<Option<Signer>, KeyFileError> {
    let Some(key) = load(path)? else {
        return Ok(None);
    };
    let named = beside(path, ".publisher");
    let publisher = match std::fs::read(&named) {
        Ok(bytes) if bytes.len() <= 80 => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<PublisherKey>().ok())
            .ok_or_else(|| KeyFileError::NotAPublisher(named.clone()))?,
        Ok(_) => return Err(KeyFileError::NotAPublisher(named)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PublisherKey::of(&key),
        Err(source) => {
            return Err(KeyFileError::Io {
                what: "reading",
                path: named,
                source,
            });
        }
    };
    Ok(Some(Signer { key, publisher }))
}

/// Loads the signer at `path`, creating a key if there is none; says whether it was created.
pub fn load_or_create_signer(path: &Path) -> Result<(Signer, bool), KeyFileError> {
    if let Some(signer) = load_signer(path)? {
        return Ok((signer, false));
    }
    let (key, created) = load_or_create(path)?;
    Ok((Signer::own(key), created))
}

/// The key a rotation of the signer at `path` moves to: the one waiting in `PATH.next` from
/// an attempt that was not accepted, or a new one written there first, so that a rotation
/// accepted by some nodes never loses its key.
pub fn next_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    Ok(load_or_create(&beside(path, ".next"))?.0)
}

/// Makes the key waiting in `PATH.next` the signer's key once its rotation was accepted:
/// the old key moves to `PATH.retired-N` and `PATH.publisher` names `publisher`.
pub fn finish_rotation(
    path: &Path,
    publisher: &PublisherKey,
    sequence: u64,
) -> Result<(), KeyFileError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { what, path, source }
    };
    let retired = beside(path, &format!(".retired-{sequence}"));
    std::fs::rename(path, &retired).map_err(io("retiring", path))?;
    let next = beside(path, ".next");
    std::fs::rename(&next, path).map_err(io("installing", &next))?;
    let named = beside(path, ".publisher");
    std::fs::write(&named, format!("{publisher}\n")).map_err(io("writing", &named))
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

    #[test]
    fn a_rotated_key_signs_for_its_first_publisher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        let (first, _) = load_or_create_signer(&path).unwrap();
        assert_eq!(first.publisher, PublisherKey::of(&first.key));
        let next = next_key(&path).unwrap();
        // An attempt that failed leaves the same next key for the one after.
        assert_eq!(next_key(&path).unwrap().to_bytes(), next.to_bytes());
        finish_rotation(&path, &first.publisher, 1).unwrap();
        let rotated = load_signer(&path).unwrap().unwrap();
        assert_eq!(rotated.publisher, first.publisher);
        assert_eq!(rotated.key.to_bytes(), next.to_bytes());
        let retired = load(&beside(&path, ".retired-1")).unwrap().unwrap();
        assert_eq!(retired.to_bytes(), first.key.to_bytes());

        std::fs::write(beside(&path, ".publisher"), "not a key").unwrap();
        assert!(matches!(
            load_signer(&path),
            Err(KeyFileError::NotAPublisher(_))
        ));
    }
}
