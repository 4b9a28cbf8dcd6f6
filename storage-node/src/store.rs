//! The piece store: piece bytes in files, indexed by RocksDB.
//!
//! ```text
//! DATA/db/                 RocksDB: "p" + CID -> PieceMeta (size, stored at)
//! DATA/pieces/XY/CID       the piece's bytes (XY: last two characters of the CID)
//! DATA/pieces/XY/CID.obao  its proof outboard (tree hashes down to 16 KiB groups)
//! DATA/tmp/                uploads in progress
//! ```
//! A piece is written to `tmp/`, hashed while it arrives, checked against its CID, flushed to
//! disk, renamed into `pieces/`, and only then indexed with a synced write. Room is reserved as
//! bytes arrive, not when an upload is announced, so announcements alone pin nothing. A crash at any
//! point leaves either a whole, indexed piece, or a temporary file that the next start deletes,
//! or a whole piece file not yet indexed, which the next start verifies and indexes. Files keep
//! piece bytes out of RocksDB's compactions and give proofs and range reads positional reads;
//! see docs/BENCHMARKS.md for the measurement behind the choice.
//!
//! Faults never delete good data: a piece is removed only when its bytes were read in full and
//! do not hash to its CID. A piece that cannot be read (an I/O error, too many open files, a
//! disk gone for a moment) is marked unreadable, kept, and checked again at the next scrub.

use parking_lot::Mutex;
use std::{
    fs::{self, File},
    io::{self, Read as _, Write},
    path::{Path, PathBuf},
    sync::Arc,
};
use tessera_formats::time::now_ms;

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_formats::address::{ContentHasher, DAG_CBOR, HashFn, RAW, VerifyError, verify_reader};
use tessera_node::db::{Column, DEFAULT, Db, DbError, Durability};
use tessera_proofs::Outboard;
use tracing::{info, warn};

const PIECE_PREFIX: &[u8] = b"p";

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The node's data directory.
    pub dir: PathBuf,
    /// Most bytes of pieces the node keeps.
    pub capacity: u64,
    /// Largest single piece it accepts.
    pub max_piece: u64,
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Not enough room left.
    #[error("capacity exceeded: the piece needs {needed} bytes, {free} of the capacity are free")]
    CapacityExceeded {
        /// The piece's size.
        needed: u64,
        /// Bytes free (capacity minus stored and reserved).
        free: u64,
    },
    /// Larger than any piece the node accepts.
    #[error("piece of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The piece's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The CID cannot name a piece.
    #[error("not a piece CID: {0}")]
    BadCid(String),
    /// The store's directories or index are gone or cannot be written.
    #[error("store unhealthy: {0}")]
    Unhealthy(String),
    /// The uploaded bytes do not hash to the CID.
    #[error("uploaded bytes do not match {expected}: they hash to {actual}")]
    HashMismatch {
        /// The CID announced.
        expected: Box<Cid>,
        /// The CID of the bytes received.
        actual: Box<Cid>,
    },
    /// Bytes for the wrong place in an upload.
    #[error("upload is at byte {expected}; bytes for {got} do not fit")]
    OutOfOrder {
        /// Where the upload stands.
        expected: u64,
        /// Where the bytes were meant to go.
        got: u64,
    },
    /// More bytes than announced.
    #[error("upload would exceed the announced {size} bytes")]
    Overflow {
        /// The size announced.
        size: u64,
    },
    /// Finished before all bytes arrived.
    #[error("upload has {written} of {size} bytes")]
    Incomplete {
        /// Bytes received.
        written: u64,
        /// The size announced.
        size: u64,
    },
    /// The upload was ended by an earlier error or finished already.
    #[error("the upload has ended; start it again")]
    Ended,
    /// The piece is not held.
    #[error("piece {0} is not held")]
    NotFound(Box<Cid>),
    /// A disk operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// RocksDB failed.
    #[error("index: {0}")]
    Db(#[from] rocksdb::Error),
    /// The node's database could not be opened.
    #[error("index: {0}")]
    Open(#[from] DbError),
    /// The index holds a value this build cannot read.
    #[error("index entry for {key} is unreadable: {reason}")]
    Index {
        /// The key, hex.
        key: String,
        /// Why.
        reason: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// What the index records of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceMeta {
    /// The piece's length.
    pub size: u64,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_ms: u64,
}

/// What the start-up check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupReport {
    /// Pieces indexed and present.
    pub pieces: u64,
    /// Index entries whose files were gone or the wrong size (removed from the index).
    pub missing: Vec<Cid>,
    /// Whole piece files that were not yet indexed (verified and indexed).
    pub recovered: Vec<Cid>,
    /// Files that were neither (deleted): interrupted uploads and damaged orphans.
    pub discarded: u64,
}

/// Bytes used and free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Pieces held.
    pub pieces: u64,
    /// Bytes of pieces held.
    pub used: u64,
    /// Bytes promised to uploads in progress.
    pub reserved: u64,
    /// The configured capacity.
    pub capacity: u64,
    /// Held pieces whose bytes could not be read at their last check.
    pub unreadable: u64,
}

/// What a scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Pieces read in full that no longer match their CID: removed.
    pub bad: Vec<Cid>,
    /// Pieces that could not be read, with the error: kept, and checked again next time.
    pub unreadable: Vec<(Cid, String)>,
}

/// What checking one piece's bytes found.
enum PieceCheck {
    /// Read in full; it matches its CID.
    Good,
    /// Read in full; it does not match.
    Bad(String),
    /// Not read in full: nothing is known of its bytes.
    Unreadable(String),
}

impl Usage {
    /// Bytes still free for new pieces.
    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used + self.reserved)
    }
}

#[derive(Debug)]
struct Inner {
    db: Column,
    dir: PathBuf,
    pieces_dir: PathBuf,
    tmp_dir: PathBuf,
    max_piece: u64,
    usage: Mutex<Usage>,
    /// Pieces that could not be read at their last check, with the error.
    unreadable: Mutex<std::collections::BTreeMap<Cid, String>>,
    /// Held while a finished upload is moved into place and indexed: two uploads of one
    /// piece store and count it once.
    committing: Mutex<()>,
}

/// The piece store; cheap to clone, safe to share between threads. Its methods block on disk
/// I/O: call them from blocking threads.
#[derive(Debug, Clone)]
pub struct PieceStore {
    inner: Arc<Inner>,
}

/// A piece held by the store, open for reading.
#[derive(Debug)]
pub struct StoredPiece {
    /// The piece's bytes.
    pub file: File,
    /// Its proof outboard.
    pub outboard: Outboard,
    /// Its length.
    pub size: u64,
}

impl PieceStore {
    /// Opens (or creates) the store in `config.dir`, with a database of its own, and checks
    /// its index against the disk.
    pub fn open(config: &StoreConfig) -> Result<(Self, StartupReport), StoreError> {
        Self::prepare(config)?;
        let db = Db::open(&config.dir.join("db"), &[])?;
        Self::open_in(config, db.column(DEFAULT)?)
    }

    /// Readies `config.dir` for the node's database (in `config.dir/db`): refused when the
    /// pieces folder is missing beside an existing index.
    pub fn prepare(config: &StoreConfig) -> Result<(), StoreError> {
        let pieces_dir = config.dir.join("pieces");
        let db_dir = config.dir.join("db");
        // An index with no pieces folder beside it is a disk that is not there (unmounted,
        // moved): starting would unindex every piece on it.
        if db_dir.exists() && !pieces_dir.exists() {
            return Err(StoreError::Unhealthy(format!(
                "{} is missing but the index {} exists; is the disk mounted?",
                pieces_dir.display(),
                db_dir.display()
            )));
        }
        fs::create_dir_all(&pieces_dir)
            .map_err(io_err(format!("creating {}", pieces_dir.display())))
    }

    /// Opens the store with its index in `db` (a column of the node's database, readied by
    /// [`PieceStore::prepare`]) and checks the index against the disk.
    pub fn open_in(config: &StoreConfig, db: Column) -> Result<(Self, StartupReport), StoreError> {
        let pieces_dir = config.dir.join("pieces");
        let tmp_dir = config.dir.join("tmp");
        for dir in [&pieces_dir, &tmp_dir] {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let inner = Inner {
            db,
            dir: config.dir.clone(),
            pieces_dir,
            tmp_dir,
            max_piece: config.max_piece,
            usage: Mutex::new(Usage {
                pieces: 0,
                used: 0,
                reserved: 0,
                capacity: config.capacity,
                unreadable: 0,
            }),
            unreadable: Mutex::new(std::collections::BTreeMap::new()),
            committing: Mutex::new(()),
        };
        let store = Self {
            inner: Arc::new(inner),
        };
        let report = store.check()?;
        info!(
            pieces = report.pieces,
            missing = report.missing.len(),
            recovered = report.recovered.len(),
            discarded = report.discarded,
            "piece store opened"
        );
        Ok((store, report))
    }

    /// Bytes used and free.
    pub fn usage(&self) -> Usage {
        let mut usage = *self.inner.usage.lock();
        usage.unreadable = self.inner.unreadable.lock().len() as u64;
        usage
    }

    /// Pieces that could not be read at their last check, with the error.
    pub fn unreadable(&self) -> Vec<(Cid, String)> {
        self.inner
            .unreadable
            .lock()
            .iter()
            .map(|(cid, why)| (*cid, why.clone()))
            .collect()
    }

    /// Whether the store can keep pieces: its directories are there and writable and its
    /// index is on disk. The reason when not.
    pub fn health(&self) -> Result<(), String> {
        let inner = &self.inner;
        self.folders_present(&[&inner.dir, &inner.pieces_dir, &inner.tmp_dir])?;
        let current = inner.dir.join("db").join("CURRENT");
        if let Err(e) = fs::metadata(&current) {
            return Err(format!("index {}: {e}", current.display()));
        }
        let probe = inner.tmp_dir.join(".write-probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(|e| format!("{} is not writable: {e}", inner.tmp_dir.display()))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    /// That each of `dirs` is a directory; the first that is not, and why.
    fn folders_present(&self, dirs: &[&PathBuf]) -> Result<(), String> {
        for dir in dirs {
            match fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("{} is not a directory", dir.display())),
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            }
        }
        Ok(())
    }

    /// The size of a held piece.
    pub fn has(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(self.meta(cid)?.map(|m| m.size))
    }

    /// The index entry of a piece.
    pub fn meta(&self, cid: &Cid) -> Result<Option<PieceMeta>, StoreError> {
        self.inner
            .db
            .get(key(cid))?
            .map(|v| decode_meta(&key(cid), &v))
            .transpose()
    }

    /// Every held piece.
    pub fn list(&self) -> Result<Vec<(Cid, PieceMeta)>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.db.prefix_iterator(PIECE_PREFIX) {
            let (k, v) = item?;
            if !k.starts_with(PIECE_PREFIX) {
                break;
            }
            let cid = Cid::try_from(&k[PIECE_PREFIX.len()..]).map_err(|e| StoreError::Index {
                key: hex(&k),
                reason: e.to_string(),
            })?;
            out.push((cid, decode_meta(&k, &v)?));
        }
        Ok(out)
    }

    /// Opens a held piece with its outboard.
    pub fn open_piece(&self, cid: &Cid) -> Result<StoredPiece, StoreError> {
        let meta = self
            .meta(cid)?
            .ok_or_else(|| StoreError::NotFound(Box::new(*cid)))?;
        let path = self.inner.piece_path(cid);
        let file = File::open(&path).map_err(io_err(format!("opening {}", path.display())))?;
        let obao = outboard_path(&path);
        let bytes = fs::read(&obao).map_err(io_err(format!("reading {}", obao.display())))?;
        let outboard = Outboard::from_bytes(&bytes).map_err(|e| StoreError::Io {
            what: format!("reading {}", obao.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(StoredPiece {
            file,
            outboard,
            size: meta.size,
        })
    }

    /// Where a piece's bytes live on disk (whether or not it is held): for operators' tools.
    pub fn piece_path(&self, cid: &Cid) -> PathBuf {
        self.inner.piece_path(cid)
    }

    /// Starts receiving a piece of `size` bytes. The piece must fit in the room free now;
    /// room is reserved as its bytes arrive.
    pub fn begin_upload(&self, cid: Cid, size: u64) -> Result<Upload, StoreError> {
        check_piece_cid(&cid)?;
        let hasher = ContentHasher::new(cid.codec(), HashFn::Blake3);
        if size > self.inner.max_piece {
            return Err(StoreError::TooLarge {
                size,
                max: self.inner.max_piece,
            });
        }
        let free = self.usage().free();
        if free < size {
            return Err(StoreError::CapacityExceeded { needed: size, free });
        }
        // The folders are checked on every upload; the rest of the store's health is not
        // worth a probe file per piece.
        self.folders_present(&[&self.inner.pieces_dir, &self.inner.tmp_dir])
            .map_err(StoreError::Unhealthy)?;
        // From here on, dropping the upload gives its reservation back.
        let mut upload = Upload {
            store: self.clone(),
            cid,
            size,
            written: 0,
            hasher,
            file: None,
            tmp_path: self
                .inner
                .tmp_dir
                .join(format!("{cid}.{:016x}", rand::random::<u64>())),
            reserved: 0,
        };
        let file = File::create(&upload.tmp_path)
            .map_err(io_err(format!("creating {}", upload.tmp_path.display())))?;
        upload.file = Some(file);
        Ok(upload)
    }

    /// Stores a piece from a local file (a piece this node rebuilt), checked against its CID
    /// as any upload is.
    pub fn import(&self, cid: Cid, path: &Path) -> Result<(), StoreError> {
        let mut file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
        let size = file
            .metadata()
            .map_err(io_err(format!("reading {}", path.display())))?
            .len();
        let mut upload = self.begin_upload(cid, size)?;
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io_err(format!("reading {}", path.display())))?;
            if n == 0 {
                break;
            }
            upload.write(upload.written(), &buf[..n])?;
        }
        upload.finish()
    }

    /// Removes a piece (its index entry first, then its files).
    pub fn remove(&self, cid: &Cid) -> Result<bool, StoreError> {
        let Some(meta) = self.meta(cid)? else {
            return Ok(false);
        };
        self.inner.db.delete(key(cid), Durability::Synced)?;
        let path = self.inner.piece_path(cid);
        let _ = fs::remove_file(outboard_path(&path));
        let _ = fs::remove_file(&path);
        let mut usage = self.inner.usage.lock();
        usage.used = usage.used.saturating_sub(meta.size);
        usage.pieces = usage.pieces.saturating_sub(1);
        Ok(true)
    }

    /// Re-hashes every held piece against its CID. Removes the ones read in full that no
    /// longer match (bit rot, tampering), so the node stops serving and announcing them; marks
    /// the ones that could not be read, and keeps them.
    pub fn scrub(&self) -> Result<ScrubReport, StoreError> {
        let mut report = ScrubReport::default();
        for (cid, _) in self.list()? {
            match check_file(&cid, &self.inner.piece_path(&cid)) {
                PieceCheck::Good => {
                    self.inner.unreadable.lock().remove(&cid);
                }
                PieceCheck::Bad(why) => {
                    warn!(%cid, %why, "stored piece does not match its CID; removing it");
                    self.remove(&cid)?;
                    self.inner.unreadable.lock().remove(&cid);
                    report.bad.push(cid);
                }
                PieceCheck::Unreadable(why) => {
                    warn!(%cid, %why, "stored piece could not be read; kept, checked again later");
                    self.inner.unreadable.lock().insert(cid, why.clone());
                    report.unreadable.push((cid, why));
                }
            }
        }
        Ok(report)
    }

    /// Reconciles the index with the files on disk (run at every start).
    fn check(&self) -> Result<StartupReport, StoreError> {
        let mut report = StartupReport::default();
        // Interrupted uploads.
        for entry in read_dir(&self.inner.tmp_dir)? {
            let _ = fs::remove_file(entry);
            report.discarded += 1;
        }
        // Index entries must have their files. Only a file that is gone, or whose length
        // cannot be the piece's, is unindexed; one that cannot be looked at is kept.
        let mut used = 0;
        for (cid, meta) in self.list()? {
            let path = self.inner.piece_path(&cid);
            let problem = match fs::metadata(&path) {
                Ok(m) if m.len() == meta.size => match fs::metadata(outboard_path(&path)) {
                    Ok(_) => None,
                    // The outboard is derived from the bytes: made again, not a loss.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        match self.rebuild_outboard(&cid, &path) {
                            PieceCheck::Good => None,
                            PieceCheck::Bad(why) => Some(Err(why)),
                            PieceCheck::Unreadable(why) => Some(Ok(why)),
                        }
                    }
                    Err(e) => Some(Ok(format!("outboard: {e}"))),
                },
                Ok(m) => Some(Err(format!(
                    "{} bytes on disk, {} indexed",
                    m.len(),
                    meta.size
                ))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Err("file gone".into())),
                Err(e) => Some(Ok(e.to_string())),
            };
            match problem {
                None => {
                    used += meta.size;
                    report.pieces += 1;
                }
                Some(Ok(unreadable)) => {
                    warn!(%cid, why = %unreadable, "indexed piece could not be checked; kept");
                    self.inner.unreadable.lock().insert(cid, unreadable);
                    used += meta.size;
                    report.pieces += 1;
                }
                Some(Err(why)) => {
                    warn!(%cid, %why, "indexed piece is missing or truncated on disk; unindexing it");
                    self.inner.db.delete(key(&cid), Durability::Synced)?;
                    let _ = fs::remove_file(&path);
                    let _ = fs::remove_file(outboard_path(&path));
                    report.missing.push(cid);
                }
            }
        }
        {
            let mut usage = self.inner.usage.lock();
            usage.used = used;
            usage.pieces = report.pieces;
        }
        // Piece files must be indexed: whole ones (renamed, not yet indexed) are indexed now.
        for shard in read_dir(&self.inner.pieces_dir)? {
            for path in read_dir(&shard)? {
                if path.extension().is_some_and(|e| e == "obao") {
                    // An outboard whose piece is gone (removed before a crash) is deleted.
                    if !path.with_extension("").exists() {
                        let _ = fs::remove_file(&path);
                        report.discarded += 1;
                    }
                    continue;
                }
                let cid = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| Cid::try_from(n).ok());
                let indexed = match cid {
                    Some(cid) => self.meta(&cid)?.is_some(),
                    None => false,
                };
                if indexed {
                    continue;
                }
                match cid.map(|cid| (cid, self.adopt(&cid, &path))) {
                    Some((cid, Ok(PieceCheck::Good))) => report.recovered.push(cid),
                    Some((cid, Ok(PieceCheck::Bad(why)))) => {
                        warn!(%cid, %why, "discarding an unindexed piece file");
                        let _ = fs::remove_file(outboard_path(&path));
                        let _ = fs::remove_file(&path);
                        report.discarded += 1;
                    }
                    // Left for the next start, which may be able to read it.
                    Some((cid, Ok(PieceCheck::Unreadable(why)))) => {
                        warn!(%cid, %why, "an unindexed piece file could not be read; left as it is");
                    }
                    Some((cid, Err(e))) => {
                        warn!(%cid, error = %e, "an unindexed piece file could not be indexed; left as it is");
                    }
                    None => {
                        let _ = fs::remove_file(&path);
                        report.discarded += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Verifies a whole piece file left unindexed by a crash and indexes it.
    fn adopt(&self, cid: &Cid, path: &Path) -> Result<PieceCheck, StoreError> {
        let check = self.rebuild_outboard(cid, path);
        if matches!(check, PieceCheck::Good) {
            let size = fs::metadata(path)
                .map_err(io_err(format!("reading {}", path.display())))?
                .len();
            self.index(cid, size)?;
        }
        Ok(check)
    }

    /// Verifies a piece file and writes its outboard again.
    fn rebuild_outboard(&self, cid: &Cid, path: &Path) -> PieceCheck {
        let check = check_file(cid, path);
        if !matches!(check, PieceCheck::Good) {
            return check;
        }
        let written = File::open(path)
            .map_err(io_err(format!("opening {}", path.display())))
            .and_then(|file| {
                write_outboard(&file, path, &outboard_path(path).with_extension("obao.tmp"))
            });
        match written {
            Ok(()) => PieceCheck::Good,
            Err(e) => PieceCheck::Unreadable(e.to_string()),
        }
    }

    fn index(&self, cid: &Cid, size: u64) -> Result<(), StoreError> {
        let meta = PieceMeta {
            size,
            stored_ms: now_ms(),
        };
        let value = serde_ipld_dagcbor::to_vec(&meta).map_err(|e| StoreError::Index {
            key: hex(&key(cid)),
            reason: e.to_string(),
        })?;
        self.inner.db.put(key(cid), value, Durability::Synced)?;
        let mut usage = self.inner.usage.lock();
        usage.used += size;
        usage.pieces += 1;
        Ok(())
    }
}

/// A piece being received. Dropping it before [`Upload::finish`] discards the bytes and frees
/// the reserved room.
#[derive(Debug)]
pub struct Upload {
    store: PieceStore,
    cid: Cid,
    size: u64,
    written: u64,
    hasher: ContentHasher,
    file: Option<File>,
    tmp_path: PathBuf,
    reserved: u64,
}

impl Upload {
    /// The piece being received.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Where this upload's outboard waits to be moved into place.
    fn outboard_tmp(&self) -> PathBuf {
        let mut path = self.tmp_path.clone().into_os_string();
        path.push(".obao");
        path.into()
    }

    /// Appends bytes that belong at `offset`; returns the new length.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<u64, StoreError> {
        if offset != self.written {
            return Err(StoreError::OutOfOrder {
                expected: self.written,
                got: offset,
            });
        }
        let end = self.written + bytes.len() as u64;
        if end > self.size {
            return Err(StoreError::Overflow { size: self.size });
        }
        let file = self.file.as_mut().ok_or(StoreError::Incomplete {
            written: self.written,
            size: self.size,
        })?;
        // Room is taken as bytes arrive: an upload that sends nothing holds nothing.
        {
            let mut usage = self.store.inner.usage.lock();
            let needed = end.saturating_sub(self.reserved);
            if usage.free() < needed {
                return Err(StoreError::CapacityExceeded {
                    needed: self.size - self.reserved,
                    free: usage.free(),
                });
            }
            usage.reserved += needed;
            self.reserved += needed;
        }
        file.write_all(bytes)
            .map_err(io_err(format!("writing {}", self.tmp_path.display())))?;
        self.hasher.update(bytes);
        self.written = end;
        Ok(end)
    }

    /// Checks the bytes against the CID, makes them durable and indexes the piece.
    pub fn finish(mut self) -> Result<(), StoreError> {
        if self.written != self.size {
            return Err(StoreError::Incomplete {
                written: self.written,
                size: self.size,
            });
        }
        let actual = self.hasher.finish();
        if actual.hash() != self.cid.hash() {
            return Err(StoreError::HashMismatch {
                expected: Box::new(self.cid),
                actual: Box::new(actual),
            });
        }
        let file = self.file.take().ok_or(StoreError::Incomplete {
            written: self.written,
            size: self.size,
        })?;
        file.sync_all()
            .map_err(io_err(format!("syncing {}", self.tmp_path.display())))?;
        let inner = &self.store.inner;
        let path = inner.piece_path(&self.cid);
        // The outboard is computed beside this upload's own temporary file, so that uploads
        // of one piece never write the same file.
        let reader = File::open(&self.tmp_path)
            .map_err(io_err(format!("opening {}", self.tmp_path.display())))?;
        write_outboard(&reader, &path, &self.outboard_tmp())?;
        let _committing = inner.committing.lock();
        if inner.db.get(key(&self.cid))?.is_some() {
            // Stored meanwhile by another upload of the same piece.
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        }
        fs::rename(self.outboard_tmp(), outboard_path(&path))
            .map_err(io_err(format!("renaming into {}", path.display())))?;
        fs::rename(&self.tmp_path, &path)
            .map_err(io_err(format!("renaming into {}", path.display())))?;
        sync_dir(path.parent())?;
        // From here the reservation becomes use.
        inner.usage.lock().reserved -= self.reserved;
        self.reserved = 0;
        self.store.index(&self.cid, self.size)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.reserved > 0 {
            let mut usage = self.store.inner.usage.lock();
            usage.reserved = usage.reserved.saturating_sub(self.reserved);
        }
        let _ = fs::remove_file(&self.tmp_path);
        let _ = fs::remove_file(self.outboard_tmp());
    }
}

impl Inner {
    fn piece_path(&self, cid: &Cid) -> PathBuf {
        let name = cid.to_string();
        let shard = name.get(name.len().saturating_sub(2)..).unwrap_or("00");
        self.pieces_dir.join(shard).join(name)
    }
}

fn outboard_path(piece: &Path) -> PathBuf {
    piece.with_extension("obao")
}

/// Computes the outboard of the piece in `file` and writes it durably to `tmp`; renamed next
/// to `piece_path` unless `tmp` is the upload's own (the upload renames it when it commits).
fn write_outboard(file: &File, piece_path: &Path, tmp: &Path) -> Result<(), StoreError> {
    let (outboard, _) = Outboard::compute(file).map_err(|e| StoreError::Io {
        what: format!("hashing {}", piece_path.display()),
        source: io::Error::other(e.to_string()),
    })?;
    let mut out = File::create(tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    out.write_all(&outboard.to_bytes())
        .and_then(|()| out.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    let path = outboard_path(piece_path);
    if tmp.parent() == path.parent() {
        fs::rename(tmp, &path).map_err(io_err(format!("renaming into {}", path.display())))?;
    }
    Ok(())
}

/// Reads a piece file in full against its CID: only a full read that does not match says the
/// bytes are bad.
fn check_file(cid: &Cid, path: &Path) -> PieceCheck {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return PieceCheck::Unreadable(format!("opening {}: {e}", path.display())),
    };
    match verify_reader(cid, file) {
        Ok(_) => PieceCheck::Good,
        Err(e @ VerifyError::Mismatch { .. }) => PieceCheck::Bad(e.to_string()),
        Err(e) => PieceCheck::Unreadable(format!("reading {}: {e}", path.display())),
    }
}

fn sync_dir(dir: Option<&Path>) -> Result<(), StoreError> {
    if let Some(dir) = dir {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("syncing {}", dir.display())))?;
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}

/// A node keeps raw pieces and DAG-CBOR blocks (layouts, manifests), named by BLAKE3: verified
/// ranges and storage proofs are built on the BLAKE3 tree.
fn check_piece_cid(cid: &Cid) -> Result<(), StoreError> {
    if HashFn::of(cid).map_err(|e| StoreError::BadCid(e.to_string()))? != HashFn::Blake3 {
        return Err(StoreError::BadCid(format!(
            "{cid} is not a BLAKE3 CID; pieces are named by BLAKE3"
        )));
    }
    if cid.codec() != RAW && cid.codec() != DAG_CBOR {
        return Err(StoreError::BadCid(format!(
            "{cid} names neither raw bytes nor a DAG-CBOR block"
        )));
    }
    Ok(())
}

fn key(cid: &Cid) -> Vec<u8> {
    [PIECE_PREFIX, &cid.to_bytes()].concat()
}

fn decode_meta(key: &[u8], value: &[u8]) -> Result<PieceMeta, StoreError> {
    serde_ipld_dagcbor::from_slice(value).map_err(|e| StoreError::Index {
        key: hex(key),
        reason: e.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
