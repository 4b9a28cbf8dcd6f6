//! The node's persistent Ed25519 identity: created on first start, kept in the data directory.

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
/// A new key is written to a temporary file, flushed, and renamed into place, so a crash never
/// leaves a half-written key; the file is readable by its owner only.
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
            fs::create_dir_all(dir).map_err(io_err)?;
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            let mut file = open_private(&tmp).map_err(io_err)?;
            file.write_all(&bytes).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            fs::rename(&tmp, &path).map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
