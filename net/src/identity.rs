//! The node's persistent Ed25519 identity, created on first start and kept in the data
//! directory, and how every key file of Tessera is written.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use libp2p::identity::Keypair;

/// File name of the identity inside a data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// The identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The key file exists but does not hold a key.
    #[error("identity file {path} is not a libp2p key: {reason}")]
    Corrupt {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the identity from `dir`, creating a new Ed25519 key there on first use.
///
/// A new key is written with [`create_key_file`]: whole or not at all, owner-only.
pub fn load_or_create(dir: &Path) -> Result<Keypair, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let io_err = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::read(&path) {
        Ok(bytes) => {
            if bytes.len() > 1024 {
                return Err(IdentityError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("{} bytes is too large for a key", bytes.len()),
                });
            }
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            create_key_file(&path, &bytes).map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Writes `bytes` as a new file at `path`, readable by its owner only, creating its folder.
/// A crash leaves either no file or the whole one, never a part of it, and the file is in the
/// folder for good once this returns: the bytes go to a temporary file in the same folder,
/// synced, which is then linked into place; the folder is synced last. A file already at
/// `path` is never replaced (`AlreadyExists`).
pub fn create_key_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::Builder::new().prefix(".key-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_owner_only_whole_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/a.key");
        create_key_file(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = create_key_file(&path, b"second").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn identity_persists_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }
}
