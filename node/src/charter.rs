//! The charter a node starts from: read from its file, bounded, decoded and verified, with
//! its CID. A node of a network with a charter speaks its protocols under the charter's
//! network id, and takes the charter's word on whose receipts count.

use std::path::{Path, PathBuf};

use tessera_formats::{
    Cid,
    charter::{CharterError, MAX_CHARTER_BYTES, SignedCharter},
};

/// A charter file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CharterFileError {
    /// It could not be read.
    #[error("charter {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than a charter can be.
    #[error("charter {}: {len} bytes; at most {MAX_CHARTER_BYTES}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// It is not a valid founding charter.
    #[error("charter {}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CharterError,
    },
}

/// A verified charter and the CID of its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCharter {
    /// The charter, with its signatures.
    pub signed: SignedCharter,
    /// The CID of its block: what assignments are computed under.
    pub cid: Cid,
}

impl NodeCharter {
    /// The network's id.
    pub fn network(&self) -> &str {
        &self.signed.charter.network
    }
}

/// Reads the charter block in `path`, bounded, and checks its rules, not its signatures: a
/// charter still being signed reads too.
pub fn read(path: &Path) -> Result<SignedCharter, CharterFileError> {
    let read = |source| CharterFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_CHARTER_BYTES as u64 {
        return Err(CharterFileError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    SignedCharter::from_block(&bytes).map_err(|source| CharterFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the founding charter in `path` (a DAG-CBOR block) and checks it: its rules and its
/// committee's signatures.
pub fn load(path: &Path) -> Result<NodeCharter, CharterFileError> {
    let invalid = |source| CharterFileError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let signed = read(path)?;
    signed.verify_founding().map_err(invalid)?;
    let (cid, _) = signed.to_block().map_err(invalid)?;
    Ok(NodeCharter { signed, cid })
}

/// [`load`] of a node's `charter` setting; none when it has none (the unnamed network).
pub fn load_setting(path: Option<&Path>) -> Result<Option<NodeCharter>, CharterFileError> {
    path.map(load).transpose()
}

#[cfg(test)]
mod tests {
    use tessera_formats::{
        PublisherKey,
        charter::{Charter, CharterParams},
        record::SigningKey,
    };

    use super::*;

    #[test]
    fn a_charter_file_is_read_verified_or_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        ];
        let charter = Charter::found(
            "testnet",
            keys.iter().map(PublisherKey::of).collect(),
            2,
            CharterParams::default(),
        );
        let good = charter.clone().signed_by(&[&keys[0], &keys[1]]).unwrap();
        let (cid, block) = good.to_block().unwrap();
        let path = dir.path().join("charter.block");
        std::fs::write(&path, &block).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.cid, loaded.network()), (cid, "testnet"));

        let short = charter.signed_by(&[&keys[0]]).unwrap();
        std::fs::write(&path, short.to_block().unwrap().1).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("charter.block") && err.contains("signatures"),
            "{err}"
        );
        std::fs::write(&path, b"not a charter").unwrap();
        assert!(matches!(load(&path), Err(CharterFileError::Invalid { .. })));
        std::fs::write(&path, vec![0u8; MAX_CHARTER_BYTES + 1]).unwrap();
        assert!(matches!(
            load(&path),
            Err(CharterFileError::TooLarge { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(CharterFileError::Read { .. })
        ));
    }
}
