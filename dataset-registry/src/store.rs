//! The registry's records in RocksDB: verified record blocks, the chain of each dataset, its
//! head, an index by name, and the manifests the records name.
//!
//! ```text
//! r CID                          -> signed record block
//! v PUBLISHER NAME 0 VERSION(be) -> record CID          (one slot per version: no reuse)
//! h PUBLISHER NAME               -> head VERSION(be)
//! n NAME 0 PUBLISHER             -> ()                  (find by name)
//! m MANIFEST-CID                 -> manifest block
//! s SHARD-CID                    -> MANIFEST-CID INDEX(be u32)   (the gateway's index)
//! x PUBLISHER NAME               -> Evidence: two records signed for one version (a fork)
//! k PUBLISHER SEQUENCE(be)       -> signed key rotation block (the publisher's chain of keys)
//! ```
//!
//! Only records that passed [`RecordStore::admit`] are written, all keys of one record in one
//! synced batch, under one writer lock: the check and the write see the same state.

use parking_lot::Mutex;
use std::{path::Path, sync::Arc};

use cid::Cid;
use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};
use tessera_formats::{
    Manifest, PublisherKey, ShardLayout, SignedRecord, block,
    record::{MAX_RECORD_BYTES, RecordError},
    rotation::{RotationError, SignedRotation},
};
use tessera_node::db::{Column, DEFAULT, Db, DbError, Durability};

/// A record as stored: verified, with its CID and block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record block's CID.
    pub cid: Cid,
    /// The record.
    pub record: SignedRecord,
    /// The block.
    pub block: Vec<u8>,
}

/// Which publishers' datasets an auditor covers, and how much of each: a network's charter
/// says ([`AuditScope::of`]); the default covers every publisher without a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditScope {
    /// The publishers admitted; none admits every publisher.
    pub publishers: Option<std::collections::BTreeSet<PublisherKey>>,
    /// Most bytes of pieces covered per publisher, newest versions first; 0 is no limit.
    pub quota: u64,
}

impl AuditScope {
    /// The scope a charter sets.
    pub fn of(charter: &tessera_formats::charter::Charter) -> Self {
        let listed = &charter.params.publishers;
        Self {
            publishers: (!listed.is_empty()).then(|| listed.iter().copied().collect()),
            quota: charter.params.publisher_quota,
        }
    }

    /// Whether `publisher`'s datasets are covered.
    pub fn admits(&self, publisher: &PublisherKey) -> bool {
        self.publishers
            .as_ref()
            .is_none_or(|listed| listed.contains(publisher))
    }
}

/// Shards counted against a scope's per-publisher quota, each once: the rule that the audit
/// set and the piece sizes rewards are judged by share, applied to each dataset's versions
/// newest first, datasets in (publisher, name) order.
#[derive(Debug, Default)]
pub struct QuotaMeter {
    used: std::collections::BTreeMap<PublisherKey, u64>,
    seen: std::collections::BTreeSet<Cid>,
}

impl QuotaMeter {
    /// Whether the shard with layout CID `cid` is counted already.
    pub fn counted(&self, cid: &Cid) -> bool {
        self.seen.contains(cid)
    }

    /// Whether `publisher`'s quota has room for a shard with `layout`.
    pub fn fits(&self, scope: &AuditScope, publisher: &PublisherKey, layout: &ShardLayout) -> bool {
        let used = self.used.get(publisher).copied().unwrap_or(0);
        scope.quota == 0 || used.saturating_add(stored_bytes(layout)) <= scope.quota
    }

    /// Counts the shard with layout CID `cid` against `publisher`'s quota.
    pub fn count(&mut self, publisher: &PublisherKey, cid: Cid, layout: &ShardLayout) {
        let used = self.used.entry(*publisher).or_default();
        *used = used.saturating_add(stored_bytes(layout));
        self.seen.insert(cid);
    }
}

/// The bytes a shard's pieces take.
fn stored_bytes(layout: &ShardLayout) -> u64 {
    layout
        .piece_len()
        .saturating_mul(layout.pieces.len() as u64)
}

/// The shards an auditor covers and the datasets they belong to ([`RecordStore::audit_set`]).
#[derive(Debug, Clone, Default)]
pub struct AuditSet {
    /// Each distinct shard layout, with its block's CID.
    pub shards: Vec<(Cid, ShardLayout)>,
    /// Each dataset's latest version and its shards' layout CIDs.
    pub datasets: Vec<DatasetShards>,
    /// Whether shards were left out to keep within the piece limit.
    pub more: bool,
}

/// A dataset's latest version and the layout CIDs of its shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetShards {
    /// Its publisher.
    pub publisher: PublisherKey,
    /// Its name.
    pub name: String,
    /// The latest version.
    pub version: u64,
    /// That version's manifest.
    pub manifest: Cid,
    /// Its shards' layout CIDs, in manifest order.
    pub shards: Vec<Cid>,
}

/// Whether a record is new to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It is stored already.
    Known,
    /// It can be stored.
    New,
}

/// Why a record cannot be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The block does not parse, breaks a rule or its signature fails.
    #[error("bad record: {0}")]
    Record(RecordError),
    /// Another record holds this publisher, name and version.
    #[error("version {version} of {name} is already record {existing}")]
    VersionReused {
        /// The dataset.
        name: String,
        /// The version.
        version: u64,
        /// The record that holds it.
        existing: Box<Cid>,
    },
    /// The parent record is not known here yet: fetch the chain from version `have + 1`.
    #[error("parent record {parent} is not known here (this node has up to version {have})")]
    MissingParent {
        /// The parent's CID.
        parent: Box<Cid>,
        /// The highest version of the dataset known here (0 for none).
        have: u64,
    },
    /// The record does not follow its parent.
    #[error("{0}")]
    BrokenChain(RecordError),
    /// The database failed.
    #[error("registry database: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database could not be opened.
    #[error("registry database: {0}")]
    Open(#[from] DbError),
    /// A stored value is damaged.
    #[error("registry database: damaged value under {0}")]
    Damaged(String),
    /// Two records offered as evidence of a fork are not one.
    #[error("not evidence of a fork: {0}")]
    NotEvidence(String),
    /// A key rotation that does not verify or does not follow the publisher's chain.
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// The publisher signed another rotation with this number: the first one stands.
    #[error(
        "publisher {publisher} already made rotation {sequence}, to {existing}: a key rotates once"
    )]
    RotationConflict {
        /// The publisher.
        publisher: PublisherKey,
        /// The rotation's number.
        sequence: u64,
        /// The key the stored rotation moved to.
        existing: PublisherKey,
    },
}

/// Two records one publisher signed for one version of one dataset: proof that it forked its
/// own history, which anyone can check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// One signed record block.
    #[serde(with = "serde_bytes")]
    pub first: Vec<u8>,
    /// Another for the same version.
    #[serde(with = "serde_bytes")]
    pub second: Vec<u8>,
}

impl Evidence {
    /// The two records, if they are evidence: both verify, name one publisher, dataset and
    /// version, and are not the same record.
    pub fn check(&self) -> Result<(SignedRecord, SignedRecord), AdmitError> {
        let read = |block: &[u8]| SignedRecord::from_block(block).map_err(AdmitError::Record);
        let (a, b) = (read(&self.first)?, read(&self.second)?);
        let (x, y) = (&a.record, &b.record);
        if x.publisher != y.publisher || x.name != y.name || x.version != y.version {
            return Err(AdmitError::NotEvidence(
                "the records are of different datasets or versions".into(),
            ));
        }
        if self.first == self.second {
            return Err(AdmitError::NotEvidence("the records are the same".into()));
        }
        Ok((a, b))
    }
}

/// The record store; cheap to clone.
#[derive(Clone)]
pub struct RecordStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore").finish_non_exhaustive()
    }
}

struct Inner {
    db: Column,
    write: Mutex<()>,
}

fn dataset_key(tag: u8, publisher: &PublisherKey, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 32 + name.len() + 9);
    k.push(tag);
    k.extend_from_slice(&publisher.0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn version_key(publisher: &PublisherKey, name: &str, version: u64) -> Vec<u8> {
    let mut k = dataset_key(b'v', publisher, name);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bytes.len());
    k.push(tag);
    k.extend_from_slice(bytes);
    k
}

fn name_key(name: &str, publisher: &PublisherKey) -> Vec<u8> {
    let mut k = tagged(b'n', name.as_bytes());
    k.push(0);
    k.extend_from_slice(&publisher.0);
    k
}

fn rotation_key(publisher: &PublisherKey, sequence: u64) -> Vec<u8> {
    let mut k = tagged(b'k', &publisher.0);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn u64_of(bytes: &[u8], what: &str) -> Result<u64, AdmitError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| AdmitError::Damaged(what.to_string()))?;
    Ok(u64::from_be_bytes(arr))
}

impl RecordStore {
    /// Opens (or creates) the store in a database of its own in `dir`.
    pub fn open(dir: &Path) -> Result<Self, AdmitError> {
        Ok(Self::in_column(Db::open(dir, &[])?.column(DEFAULT)?))
    }

    /// The store in `db`, a column of a node's database.
    pub fn in_column(db: Column) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                write: Mutex::new(()),
            }),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.write.lock()
    }

    /// Whether `record` (with block CID `cid`) may be stored: known already, new, or refused.
    /// It must be signed by the key that signs for its publisher at its time, as the
    /// publisher's rotations known here say.
    pub fn admit(&self, record: &SignedRecord, cid: &Cid) -> Result<Admission, AdmitError> {
        record.verify().map_err(AdmitError::Record)?;
        let db = &self.inner.db;
        if db.get_pinned(tagged(b'r', &cid.to_bytes()))?.is_some() {
            return Ok(Admission::Known);
        }
        let r = &record.record;
        record
            .check_key(&self.rotations(&r.publisher)?)
            .map_err(AdmitError::Record)?;
        if let Some(existing) = self.version_cid(&r.publisher, &r.name, r.version)? {
            return Err(AdmitError::VersionReused {
                name: r.name.clone(),
                version: r.version,
                existing: Box::new(existing),
            });
        }
        if let Some(parent_cid) = &r.parent {
            let Some(parent) = self.get(parent_cid)? else {
                return Err(AdmitError::MissingParent {
                    parent: Box::new(*parent_cid),
                    have: self.head_version(&r.publisher, &r.name)?.unwrap_or(0),
                });
            };
            record
                .check_follows(&parent.record, parent_cid)
                .map_err(AdmitError::BrokenChain)?;
        }
        Ok(Admission::New)
    }

    /// Stores an admitted record with its manifest (already fetched and validated, CID
    /// `record.record.manifest`). Checks admission again under the writer lock.
    pub fn insert(
        &self,
        record: &SignedRecord,
        cid: &Cid,
        block: &[u8],
        manifest: &Manifest,
        manifest_block: &[u8],
    ) -> Result<Admission, AdmitError> {
        let _writer = self.lock();
        if self.admit(record, cid)? == Admission::Known {
            return Ok(Admission::Known);
        }
        let r = &record.record;
        let mut batch = self.inner.db.batch();
        batch.put(tagged(b'r', &cid.to_bytes()), block);
        batch.put(
            version_key(&r.publisher, &r.name, r.version),
            cid.to_bytes(),
        );
        // Versions arrive in order (a missing parent is refused), so this one is the head.
        batch.put(
            dataset_key(b'h', &r.publisher, &r.name),
            r.version.to_be_bytes(),
        );
        batch.put(name_key(&r.name, &r.publisher), []);
        let manifest_cid = r.manifest.to_bytes();
        batch.put(tagged(b'm', &manifest_cid), manifest_block);
        for (index, shard) in manifest.shards.iter().enumerate() {
            let mut value = manifest_cid.clone();
            value.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
            batch.put(tagged(b's', &shard.layout.content.to_bytes()), value);
        }
        self.inner.db.write(batch, Durability::Synced)?;
        Ok(Admission::New)
    }

    /// Keeps a publisher's key rotation once it verifies and follows the rotations kept
    /// here; returns whether it is new. The same rotation again is [`Admission::Known`];
    /// another with the same number is refused: a key rotates once.
    pub fn add_rotation(&self, rotation: &SignedRotation) -> Result<Admission, AdmitError> {
        rotation.verify()?;
        let r = &rotation.rotation;
        let _writer = self.lock();
        let chain = self.rotations(&r.publisher)?;
        if let Some(existing) = usize::try_from(r.sequence - 1)
            .ok()
            .and_then(|i| chain.get(i))
        {
            return if existing == rotation {
                Ok(Admission::Known)
            } else {
                Err(AdmitError::RotationConflict {
                    publisher: r.publisher,
                    sequence: r.sequence,
                    existing: existing.rotation.new,
                })
            };
        }
        r.check_follows(chain.last().map(|s| &s.rotation))?;
        let mut batch = self.inner.db.batch();
        batch.put(rotation_key(&r.publisher, r.sequence), rotation.to_block()?);
        self.inner.db.write(batch, Durability::Synced)?;
        Ok(Admission::New)
    }

    /// The key rotations of `publisher` kept here, in order.
    pub fn rotations(&self, publisher: &PublisherKey) -> Result<Vec<SignedRotation>, AdmitError> {
        let start = rotation_key(publisher, 0);
        let prefix = &start[..start.len() - 8];
        let mut out = Vec::new();
        let iter = self
            .inner
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            // Kept blocks verified on the way in: a failure here is disk damage.
            out.push(
                SignedRotation::from_block(&value)
                    .map_err(|e| AdmitError::Damaged(format!("rotation of {publisher}: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Keeps `evidence` of a fork after checking it; returns whether it is new here. Reads of
    /// that dataset are refused from then on.
    pub fn keep_evidence(&self, evidence: &Evidence) -> Result<bool, AdmitError> {
        let (a, _) = evidence.check()?;
        let r = &a.record;
        let key = dataset_key(b'x', &r.publisher, &r.name);
        let _writer = self.lock();
        if self.inner.db.get_pinned(&key)?.is_some() {
            return Ok(false);
        }
        let value = block::encode(evidence).map_err(|e| AdmitError::Damaged(e.to_string()))?;
        let mut batch = self.inner.db.batch();
        batch.put(key, value);
        self.inner.db.write(batch, Durability::Synced)?;
        Ok(true)
    }

    /// The evidence of a fork of `publisher`'s dataset `name`, if this node holds one.
    pub fn evidence(
        &self,
        publisher: &PublisherKey,
        name: &str,
    ) -> Result<Option<Evidence>, AdmitError> {
        let key = dataset_key(b'x', publisher, name);
        let Some(value) = self.inner.db.get(&key)? else {
            return Ok(None);
        };
        block::decode(&value, 2 * MAX_RECORD_BYTES + 64)
            .map(Some)
            .map_err(|e| AdmitError::Damaged(format!("evidence of {name}: {e}")))
    }

    /// The block of the record with CID `cid`, as it was received.
    pub fn block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, AdmitError> {
        Ok(self.inner.db.get(tagged(b'r', &cid.to_bytes()))?)
    }

    /// The record with block CID `cid`.
    pub fn get(&self, cid: &Cid) -> Result<Option<Entry>, AdmitError> {
        let Some(block) = self.inner.db.get(tagged(b'r', &cid.to_bytes()))? else {
            return Ok(None);
        };
        // Stored blocks were verified on the way in: parse strictly, but do not check the
        // signature again on every read. A failure here is disk damage.
        let record = block::decode::<SignedRecord>(&block, MAX_RECORD_BYTES)
            .map_err(|e| AdmitError::Damaged(format!("record {cid}: {e}")))?;
        Ok(Some(Entry {
            cid: *cid,
            record,
            block,
        }))
    }

    fn version_cid(
        &self,
        publisher: &PublisherKey,
        name: &str,
        version: u64,
    ) -> Result<Option<Cid>, AdmitError> {
        let key = version_key(publisher, name, version);
        match self.inner.db.get(&key)? {
            None => Ok(None),
            Some(bytes) => Cid::try_from(bytes.as_slice())
                .map(Some)
                .map_err(|_| AdmitError::Damaged(format!("version {version} of {name}"))),
        }
    }

    fn head_version(
        &self,
        publisher: &PublisherKey,
        name: &str,
    ) -> Result<Option<u64>, AdmitError> {
        match self.inner.db.get(dataset_key(b'h', publisher, name))? {
            None => Ok(None),
            Some(bytes) => u64_of(&bytes, name).map(Some),
        }
    }

    /// Version `version` of a dataset.
    pub fn version(
        &self,
        publisher: &PublisherKey,
        name: &str,
        version: u64,
    ) -> Result<Option<Entry>, AdmitError> {
        match self.version_cid(publisher, name, version)? {
            Some(cid) => self.get(&cid),
            None => Ok(None),
        }
    }

    /// A dataset's latest version.
    pub fn head(&self, publisher: &PublisherKey, name: &str) -> Result<Option<Entry>, AdmitError> {
        match self.head_version(publisher, name)? {
            Some(v) => self.version(publisher, name, v),
            None => Ok(None),
        }
    }

    /// Up to `limit` records of a dataset from version `from` on, and whether more follow.
    pub fn chain(
        &self,
        publisher: &PublisherKey,
        name: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), AdmitError> {
        let head = self.head_version(publisher, name)?.unwrap_or(0);
        let mut out = Vec::new();
        let mut v = from.max(1);
        while v <= head && out.len() < limit {
            if let Some(entry) = self.version(publisher, name, v)? {
                out.push(entry);
            }
            v += 1;
        }
        Ok((out, v <= head))
    }

    /// The latest record of up to `limit` datasets ordered by (publisher, name), starting
    /// after `after`, and whether more follow.
    pub fn heads(
        &self,
        after: Option<&(PublisherKey, String)>,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), AdmitError> {
        let start = match after {
            Some((publisher, name)) => {
                let mut k = dataset_key(b'h', publisher, name);
                k.push(0); // just past `after`
                k
            }
            None => vec![b'h'],
        };
        let mut out = Vec::new();
        let iter = self
            .inner
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if key.first() != Some(&b'h') {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            let (publisher, name) = parse_dataset_key(&key)?;
            let version = u64_of(&value, &name)?;
            if let Some(entry) = self.version(&publisher, &name, version)? {
                out.push(entry);
            }
        }
        Ok((out, false))
    }

    /// The records of datasets named `name` whose publisher key starts with `prefix` (any if
    /// none): version `version`, or the latest.
    pub fn find(
        &self,
        prefix: Option<&str>,
        name: &str,
        version: Option<u64>,
    ) -> Result<Vec<Entry>, AdmitError> {
        let mut start = tagged(b'n', name.as_bytes());
        start.push(0);
        let mut out = Vec::new();
        let iter = self
            .inner
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, _) = item?;
            let Some(rest) = key.strip_prefix(start.as_slice()) else {
                break;
            };
            let publisher = PublisherKey(
                rest.try_into()
                    .map_err(|_| AdmitError::Damaged(format!("name index of {name}")))?,
            );
            if prefix.is_some_and(|p| !publisher.has_prefix(p)) {
                continue;
            }
            let entry = match version {
                Some(v) => self.version(&publisher, name, v)?,
                None => self.head(&publisher, name)?,
            };
            out.extend(entry);
            if out.len() >= 64 {
                break;
            }
        }
        Ok(out)
    }

    /// A manifest block a stored record names.
    pub fn manifest(&self, cid: &Cid) -> Result<Option<Vec<u8>>, AdmitError> {
        Ok(self.inner.db.get(tagged(b'm', &cid.to_bytes()))?)
    }

    /// What an auditor covers: the distinct shard layouts of every version of every dataset
    /// (until they hold more than `max_pieces` pieces), and the shards of each dataset's
    /// latest version, by which redundancy is reported.
    pub fn audit_set(&self, max_pieces: usize) -> Result<AuditSet, AdmitError> {
        self.audit_set_in(max_pieces, &AuditScope::default())
    }

    /// [`RecordStore::audit_set`] within `scope`: only admitted publishers' datasets, each
    /// publisher's newest versions first up to its quota. Records by anyone else neither
    /// enter the set nor push admitted datasets out of it, however many there are.
    pub fn audit_set_in(
        &self,
        max_pieces: usize,
        scope: &AuditScope,
    ) -> Result<AuditSet, AdmitError> {
        let mut set = AuditSet::default();
        let mut quota = QuotaMeter::default();
        let mut pieces = 0usize;
        let mut after = None;
        // Once full, the datasets are still listed (their redundancy is reported), their
        // shards no longer added.
        let mut full = false;
        loop {
            let (heads, more) = self.heads(after.as_ref(), 256)?;
            for entry in &heads {
                let record = &entry.record.record;
                if !scope.admits(&record.publisher) {
                    continue;
                }
                let mut latest = Vec::new();
                // Newest version first: a quota keeps what matters now.
                for version in (1..=record.version).rev() {
                    if full && version < record.version {
                        break;
                    }
                    let Some(entry) = self.version(&record.publisher, &record.name, version)?
                    else {
                        continue;
                    };
                    let Some(block) = self.manifest(&entry.record.record.manifest)? else {
                        continue;
                    };
                    let manifest = Manifest::from_block(&block)
                        .map_err(|_| AdmitError::Damaged("a stored manifest".into()))?;
                    for shard in manifest.shards {
                        let (cid, _) = shard.layout.to_block().map_err(|_| {
                            AdmitError::Damaged("a stored manifest's layout".into())
                        })?;
                        if version == record.version {
                            latest.push(cid);
                        }
                        if full || quota.counted(&cid) {
                            continue;
                        }
                        if !quota.fits(scope, &record.publisher, &shard.layout) {
                            set.more = true;
                            continue;
                        }
                        if pieces + shard.layout.pieces.len() > max_pieces {
                            set.more = true;
                            full = true;
                            continue;
                        }
                        quota.count(&record.publisher, cid, &shard.layout);
                        pieces += shard.layout.pieces.len();
                        set.shards.push((cid, shard.layout));
                    }
                }
                set.datasets.push(DatasetShards {
                    publisher: record.publisher,
                    name: record.name.clone(),
                    version: record.version,
                    manifest: record.manifest,
                    shards: latest,
                });
            }
            match heads.last() {
                Some(last) if more => {
                    let r = &last.record.record;
                    after = Some((r.publisher, r.name.clone()));
                }
                _ => break,
            }
        }
        Ok(set)
    }

    /// A manifest that lists the shard with content CID `shard`, and the shard's index in it.
    pub fn shard(&self, shard: &Cid) -> Result<Option<(Cid, usize)>, AdmitError> {
        let Some(value) = self.inner.db.get(tagged(b's', &shard.to_bytes()))? else {
            return Ok(None);
        };
        let damaged = || AdmitError::Damaged(format!("shard index of {shard}"));
        let split = value.len().checked_sub(4).ok_or_else(damaged)?;
        let (cid, index) = value.split_at(split);
        let cid = Cid::try_from(cid).map_err(|_| damaged())?;
        let index = u32::from_be_bytes(index.try_into().map_err(|_| damaged())?);
        Ok(Some((cid, index as usize)))
    }
}

fn parse_dataset_key(key: &[u8]) -> Result<(PublisherKey, String), AdmitError> {
    let damaged = || AdmitError::Damaged("a dataset head".into());
    let rest = key.get(1..).ok_or_else(damaged)?;
    if rest.len() < 32 {
        return Err(damaged());
    }
    let (publisher, name) = rest.split_at(32);
    let publisher = PublisherKey(publisher.try_into().map_err(|_| damaged())?);
    let name = String::from_utf8(name.to_vec()).map_err(|_| damaged())?;
    Ok((publisher, name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use tessera_formats::{
        VersionRecord,
        manifest::MANIFEST_VERSION,
        record::{RECORD_VERSION, SigningKey},
    };

    use super::*;

    fn manifest(n: u64, parent: Option<Cid>) -> (Manifest, Cid, Vec<u8>) {
        let m = Manifest {
            version: MANIFEST_VERSION,
            schema: None,
            shards: vec![],
            parent,
            created_ms: n,
            metadata: BTreeMap::new(),
        };
        let (cid, block) = m.to_block().unwrap();
        (m, cid, block)
    }

    struct Chain {
        key: SigningKey,
        name: String,
        last: Option<(Cid, Cid)>,
        version: u64,
    }

    impl Chain {
        fn new(seed: u8, name: &str) -> Self {
            Self {
                key: SigningKey::from_bytes(&[seed; 32]),
                name: name.into(),
                last: None,
                version: 0,
            }
        }

        /// The next record, its CID, block and manifest; does not store it.
        fn next(&mut self) -> (SignedRecord, Cid, Vec<u8>, Manifest, Vec<u8>) {
            self.version += 1;
            let (m, mcid, mblock) = manifest(self.version, self.last.map(|l| l.1));
            let record = VersionRecord {
                format: RECORD_VERSION,
                publisher: PublisherKey::of(&self.key),
                name: self.name.clone(),
                version: self.version,
                manifest: mcid,
                parent: self.last.map(|l| l.0),
                time_ms: self.version,
                message: String::new(),
            }
            .sign(&self.key)
            .unwrap();
            let (cid, block) = record.to_block().unwrap();
            self.last = Some((cid, mcid));
            (record, cid, block, m, mblock)
        }
    }

    fn insert(
        store: &RecordStore,
        r: &(SignedRecord, Cid, Vec<u8>, Manifest, Vec<u8>),
    ) -> Result<Admission, AdmitError> {
        store.insert(&r.0, &r.1, &r.2, &r.3, &r.4)
    }

    /// Version `version` of `name` by `key`, its manifest listing one shard per seed.
    fn version_with_shards(
        key: &SigningKey,
        name: &str,
        version: u64,
        parent: Option<Cid>,
        seeds: std::ops::Range<u64>,
    ) -> (SignedRecord, Cid, Vec<u8>, Manifest, Vec<u8>) {
        use tessera_formats::{
            erasure::{ErasureParams, encode_to_vecs},
            manifest::{RowGroup, ShardEntry},
        };
        let params = ErasureParams::new(2, 1, 1024).unwrap();
        let shards = seeds
            .map(|seed| ShardEntry {
                name: format!("s{seed}.parquet"),
                rows: 1,
                row_groups: vec![RowGroup {
                    offset: 4,
                    size: 10,
                    rows: 1,
                }],
                layout: encode_to_vecs(params, &seed.to_le_bytes().repeat(300))
                    .unwrap()
                    .0,
                degraded: None,
            })
            .collect();
        let m = Manifest {
            shards,
            ..manifest(version, None).0
        };
        let (mcid, mblock) = m.to_block().unwrap();
        let record = VersionRecord {
            format: RECORD_VERSION,
            publisher: PublisherKey::of(key),
            name: name.into(),
            version,
            manifest: mcid,
            parent,
            time_ms: version,
            message: String::new(),
        }
        .sign(key)
        .unwrap();
        let (cid, block) = record.to_block().unwrap();
        (record, cid, block, m, mblock)
    }

    #[test]
    fn evidence_of_a_fork_is_checked_kept_once_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        let mut one = Chain::new(3, "forked");
        let (record, _, first, _, _) = one.next();
        // The same version signed again with another message: a fork.
        let (_, second) = VersionRecord {
            message: "the other side".into(),
            ..record.record
        }
        .sign(&one.key)
        .unwrap()
        .to_block()
        .unwrap();
        let evidence = Evidence {
            first: first.clone(),
            second,
        };
        let publisher = PublisherKey::of(&SigningKey::from_bytes(&[3; 32]));
        assert!(store.evidence(&publisher, "forked").unwrap().is_none());
        assert!(store.keep_evidence(&evidence).unwrap());
        assert!(!store.keep_evidence(&evidence).unwrap());
        assert_eq!(
            store.evidence(&publisher, "forked").unwrap(),
            Some(evidence)
        );

        let same = Evidence {
            first: first.clone(),
            second: first.clone(),
        };
        assert!(matches!(same.check(), Err(AdmitError::NotEvidence(_))));
        let (_, _, later, _, _) = one.next();
        let apart = Evidence {
            first: first.clone(),
            second: later,
        };
        assert!(matches!(apart.check(), Err(AdmitError::NotEvidence(_))));
        let mut forged = first.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let bad = Evidence {
            first,
            second: forged,
        };
        assert!(matches!(bad.check(), Err(AdmitError::Record(_))));
        assert!(store.keep_evidence(&bad).is_err());
    }

    #[test]
    fn the_audit_set_covers_admitted_publishers_within_quota_whatever_others_register() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        let (honest, greedy, spammer) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
        );
        // A spammer registers far more pieces than the auditor covers.
        insert(
            &store,
            &version_with_shards(&spammer, "spam", 1, None, 1000..1100),
        )
        .unwrap();
        insert(&store, &version_with_shards(&honest, "data", 1, None, 0..2)).unwrap();
        let v1 = version_with_shards(&greedy, "big", 1, None, 10..13);
        insert(&store, &v1).unwrap();
        insert(
            &store,
            &version_with_shards(&greedy, "big", 2, Some(v1.1), 20..23),
        )
        .unwrap();
        let shard_bytes = {
            let layout = &v1.3.shards[0].layout;
            layout.piece_len() * layout.pieces.len() as u64
        };

        let covered = |set: &AuditSet, m: &Manifest| {
            m.shards
                .iter()
                .filter(|s| set.shards.iter().any(|(_, l)| *l == s.layout))
                .count()
        };
        let honest_manifest = version_with_shards(&honest, "data", 1, None, 0..2).3;
        let spam = version_with_shards(&spammer, "spam", 1, None, 1000..1100).3;
        // Without a scope the spam takes room in a 60-piece audit set, and it is full.
        let open = store.audit_set(60).unwrap();
        assert!(open.more && covered(&open, &spam) > 0);

        // Within the charter's scope: the spammer is not admitted, the greedy publisher gets
        // its quota, newest version first.
        let scope = AuditScope {
            publishers: Some([PublisherKey::of(&honest), PublisherKey::of(&greedy)].into()),
            quota: 4 * shard_bytes,
        };
        let set = store.audit_set_in(60, &scope).unwrap();
        assert_eq!(covered(&set, &spam), 0);
        assert_eq!(covered(&set, &honest_manifest), 2);
        let v2 = version_with_shards(&greedy, "big", 2, Some(v1.1), 20..23).3;
        assert_eq!(covered(&set, &v2), 3, "the newest version first");
        assert_eq!(covered(&set, &v1.3), 1, "then what the quota leaves");
        assert!(set.more);
        assert_eq!(set.datasets.len(), 2, "{:?}", set.datasets);
        assert!(
            set.datasets
                .iter()
                .all(|d| d.publisher != PublisherKey::of(&spammer))
        );
    }

    #[test]
    fn chains_grow_in_order_and_refuse_reuse_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        let mut chain = Chain::new(1, "web");
        let v1 = chain.next();
        let v2 = chain.next();
        let v3 = chain.next();
        // v2 before v1: its parent is missing.
        assert!(matches!(
            insert(&store, &v2),
            Err(AdmitError::MissingParent { have: 0, .. })
        ));
        assert_eq!(insert(&store, &v1).unwrap(), Admission::New);
        assert_eq!(insert(&store, &v1).unwrap(), Admission::Known);
        assert_eq!(insert(&store, &v2).unwrap(), Admission::New);
        // Another v2 signed by the same publisher: the version is taken.
        let mut fork = Chain::new(1, "web");
        fork.next();
        fork.last = Some((v1.1, v1.0.record.manifest));
        let mut other_v2 = fork.next();
        other_v2.0.record.message = "fork".into();
        other_v2.0 = other_v2.0.record.clone().sign(&fork.key).unwrap();
        other_v2.1 = other_v2.0.to_block().unwrap().0;
        assert!(matches!(
            insert(&store, &other_v2),
            Err(AdmitError::VersionReused { version: 2, .. })
        ));
        assert_eq!(insert(&store, &v3).unwrap(), Admission::New);
        let head = store.head(&v1.0.record.publisher, "web").unwrap().unwrap();
        assert_eq!(head.cid, v3.1);
        let (log, more) = store.chain(&v1.0.record.publisher, "web", 1, 2).unwrap();
        assert_eq!(
            log.iter()
                .map(|e| e.record.record.version)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(more);
        assert_eq!(
            store.manifest(&v3.0.record.manifest).unwrap(),
            Some(v3.4.clone())
        );

        // A forged record is never stored.
        let mut forged = chain.next();
        forged.0.record.message = "forged".into();
        assert!(matches!(
            insert(&store, &forged),
            Err(AdmitError::Record(_))
        ));
        assert_eq!(
            store
                .head(&v1.0.record.publisher, "web")
                .unwrap()
                .unwrap()
                .cid,
            v3.1
        );

        // Reopening keeps everything.
        drop(store);
        let store = RecordStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&v2.1).unwrap().unwrap().record, v2.0);
    }

    #[test]
    fn heads_page_and_find_by_name_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        let mut publishers = Vec::new();
        for seed in 1..=3u8 {
            for name in ["a", "web", "web-2"] {
                let mut chain = Chain::new(seed, name);
                insert(&store, &chain.next()).unwrap();
                if name == "web" {
                    insert(&store, &chain.next()).unwrap();
                }
            }
            publishers.push(PublisherKey::of(&SigningKey::from_bytes(&[seed; 32])));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, more) = store.heads(after.as_ref(), 4).unwrap();
            for e in &page {
                seen.push((e.record.record.publisher, e.record.record.name.clone()));
            }
            after = seen.last().cloned();
            if !more {
                break;
            }
        }
        assert_eq!(seen.len(), 9);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);

        assert_eq!(store.find(None, "web", None).unwrap().len(), 3);
        assert!(
            store
                .find(None, "web", None)
                .unwrap()
                .iter()
                .all(|e| e.record.record.version == 2)
        );
        assert_eq!(store.find(None, "web", Some(1)).unwrap().len(), 3);
        assert!(store.find(None, "web", Some(3)).unwrap().is_empty());
        let prefix = &publishers[1].to_string()[..16];
        let found = store.find(Some(prefix), "web", Some(1)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.record.publisher, publishers[1]);
        assert!(store.find(None, "we", None).unwrap().is_empty());
    }
}
