//! The charter a node starts from: read from its file, bounded, decoded and verified, with
//! its CID. A node of a network with a charter speaks its protocols under the charter's
//! network id, and takes the charter's word on whose receipts count.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

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

/// The charter a node runs under now: the founding one, then each later epoch that the
/// threshold of the committee before it signed. Later epochs are kept as files in a folder
/// (`epoch-N.block`) and read back at the next start. Cheap to clone: every role reads the
/// same one, and sees a new epoch as soon as it is accepted.
#[derive(Debug, Clone)]
pub struct CurrentCharter {
    /// Every epoch taken, oldest first; shared, so that reading one costs no copy.
    epochs: Arc<RwLock<Vec<Arc<NodeCharter>>>>,
    dir: Option<PathBuf>,
}

/// Most later epochs read back at a start.
const MAX_EPOCHS_READ: u64 = 10_000;

impl CurrentCharter {
    /// A charter that stays `founding` until a later epoch is accepted; epochs are not kept.
    pub fn new(founding: NodeCharter) -> Self {
        Self {
            epochs: Arc::new(RwLock::new(vec![Arc::new(founding)])),
            dir: None,
        }
    }

    /// `founding` and the later epochs kept in `dir`, each checked to follow the one before;
    /// later epochs accepted from now on are kept there too.
    pub fn open(founding: NodeCharter, dir: &Path) -> Result<Self, CharterFileError> {
        let current = Self {
            epochs: Arc::new(RwLock::new(vec![Arc::new(founding)])),
            dir: Some(dir.to_path_buf()),
        };
        for _ in 0..MAX_EPOCHS_READ {
            let path = dir.join(format!(
                "epoch-{}.block",
                current.latest().signed.charter.epoch + 1
            ));
            if !path.exists() {
                break;
            }
            let next = read(&path)?;
            current
                .accept(next)
                .map_err(|source| CharterFileError::Invalid { path, source })?;
        }
        Ok(current)
    }

    /// The charter in force now.
    pub fn get(&self) -> Arc<NodeCharter> {
        self.at(tessera_formats::time::now_ms())
    }

    /// The charter in force at `time_ms`: the latest epoch taken that starts by then. What a
    /// receipt made at that time is judged by.
    pub fn at(&self, time_ms: u64) -> Arc<NodeCharter> {
        let epochs = self.epochs.read().unwrap_or_else(|e| e.into_inner());
        epochs
            .iter()
            .rev()
            .find(|c| c.signed.charter.starts_ms <= time_ms)
            .unwrap_or(&epochs[0])
            .clone()
    }

    /// Every epoch taken, oldest first.
    pub fn epochs(&self) -> Vec<Arc<NodeCharter>> {
        self.epochs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest epoch taken, in force or announced for later.
    pub fn latest(&self) -> Arc<NodeCharter> {
        let epochs = self.epochs.read().unwrap_or_else(|e| e.into_inner());
        epochs[epochs.len() - 1].clone()
    }

    /// The network's id (the same in every epoch).
    pub fn network(&self) -> String {
        self.latest().network().to_string()
    }

    /// Takes `next` as the charter in force when it is the next epoch, signed by the
    /// threshold of the current committee; keeps it. `Ok(false)`: an epoch already taken.
    pub fn advance(&self, next: SignedCharter) -> Result<bool, CharterError> {
        let epoch = next.charter.epoch;
        if epoch <= self.latest().signed.charter.epoch {
            return Ok(false);
        }
        let block = next.to_block()?.1;
        self.accept(next)?;
        if let Some(dir) = &self.dir {
            let keep = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("epoch-{epoch}.block"));
                let part = dir.join(format!("epoch-{epoch}.block.part"));
                std::fs::write(&part, &block)?;
                std::fs::File::open(&part)?.sync_all()?;
                std::fs::rename(&part, &path)
            };
            if let Err(e) = keep() {
                tracing::warn!(epoch, error = %e, "keeping a charter epoch failed; it holds until the next start");
            }
        }
        Ok(true)
    }

    fn accept(&self, next: SignedCharter) -> Result<(), CharterError> {
        let mut epochs = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        let latest = &epochs[epochs.len() - 1];
        next.verify_after(&latest.signed)?;
        let (cid, _) = next.to_block()?;
        epochs.push(Arc::new(NodeCharter { signed: next, cid }));
        Ok(())
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
    fn a_later_epoch_counts_only_when_the_committee_before_it_signed_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let founding = Charter::found(
            "testnet",
            keys[..2].iter().map(PublisherKey::of).collect(),
            2,
            CharterParams::default(),
        )
        .signed_by(&[&keys[0], &keys[1]])
        .unwrap();
        let (cid, _) = founding.to_block().unwrap();
        let node = NodeCharter {
            signed: founding.clone(),
            cid,
        };
        let current = CurrentCharter::open(node.clone(), dir.path()).unwrap();
        let next = Charter::after(
            &founding.charter,
            cid,
            1_000,
            keys.iter().map(PublisherKey::of).collect(),
            2,
            CharterParams::default(),
        );
        // One signature of a threshold of two, or the new member's own, is not enough.
        let short = next.clone().signed_by(&[&keys[0], &keys[2]]);
        assert!(current.advance(short.unwrap()).is_err());
        assert_eq!(current.latest().signed.charter.epoch, 0);
        let signed = next.signed_by(&[&keys[0], &keys[1]]).unwrap();
        assert!(current.advance(signed.clone()).unwrap());
        assert!(!current.advance(signed.clone()).unwrap(), "taken already");
        assert_eq!(current.get().signed.charter.committee.len(), 3);
        assert_eq!(current.network(), "testnet");
        // Receipts are judged by the epoch of their time.
        assert_eq!(current.at(999).signed.charter.epoch, 0);
        assert_eq!(current.at(1_000).signed.charter.epoch, 1);
        // A restart reads the epoch back.
        let again = CurrentCharter::open(node, dir.path()).unwrap();
        assert_eq!(again.latest().signed, signed);
    }

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
