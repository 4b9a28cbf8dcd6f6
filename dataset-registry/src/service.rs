//! The registry role of a node: admits records, answers the registry protocol, announces what
//! it accepts and catches up with other registry nodes.
//!
//! ```text
//!  Submit / announcement ──▶ verify ──▶ chain check ──▶ fetch manifest ──▶ store ──▶ gossip
//!                                          │ parent unknown                    └──▶ DHT head
//!                                          ▼
//!                              Chain { from: have + 1 } to the sender, then admit in order
//!  PeerJoined / every sync interval ──▶ Heads pages from the peer ──▶ Chain for what is behind
//! ```
//!
//! Convergence: every accepted record is announced; a node that missed announcements (it was
//! offline, its queue was full) learns the heads of every dataset from each registry peer it
//! meets and then every interval, and fetches the versions it lacks in order. Two honest nodes
//! that can reach each other therefore end with the same chains. A publisher that signs two
//! different records for one version forks its own chain; each node keeps the one it saw
//! first, refuses the other (`VersionReused`) and keeps both as evidence. Evidence, its own or
//! sent by a client that saw the fork across nodes, refuses every read of that dataset
//! (`Equivocated`): readers get a clear error, not whichever side a node saw first.
//!
//! A publisher that rotated its key signs new records with the new key; a node that has not
//! kept the rotation yet asks the record's sender for the publisher's rotations (`Rotations`)
//! before it refuses the record as signed by the wrong key.

use parking_lot::Mutex;
use std::{collections::HashSet, path::PathBuf, sync::Arc, time::Duration};

use cid::Cid;
use serde_bytes::ByteBuf;
use tessera_client::{Session, fetch::fetch_block};
use tessera_formats::{
    Manifest, PublisherKey, SignedRecord,
    address::{dag_cbor_cid, raw_cid},
    manifest::MAX_MANIFEST_BYTES,
    record::{MAX_RECORD_BYTES, RecordError},
    rotation::SignedRotation,
};
use tessera_net::{Client, Inbound, PeerId, Request, TopicEvent};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::{
    protocol::{
        MAX_RECORDS_PER_RESPONSE, REGISTRY_TOPIC, RegistryErrorCode, RegistryProtocol,
        RegistryRequest, RegistryResponse,
    },
    store::{Admission, AdmitError, AuditScope, Entry, Evidence, RecordStore},
};

/// The DHT key registry nodes provide, so that clients can find them.
pub fn rendezvous() -> Cid {
    raw_cid(b"/tessera/registry/1")
}

/// The DHT key under which a dataset's latest record is stored.
pub fn head_key(publisher: &PublisherKey, name: &str) -> Vec<u8> {
    format!("/tessera/dataset-head/1/{publisher}/{name}").into_bytes()
}

/// How the registry role runs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where its RocksDB lives.
    pub dir: PathBuf,
    /// Where the gateway spools shards it fetches; emptied at start.
    pub spool_dir: PathBuf,
    /// How often it catches up with the registry peers it knows.
    pub sync_interval: Duration,
    /// Registry events handled at once.
    pub parallel: usize,
    /// Most pages of heads read from one peer in one catch-up.
    pub max_sync_pages: usize,
    /// The publishers whose records it keeps; the default keeps every publisher's.
    pub scope: AuditScope,
    /// The network's charter: when set, the publishers it admits in the epoch in force are
    /// kept, in place of `scope`.
    pub charter: Option<tessera_node::charter::CurrentCharter>,
}

impl RegistryConfig {
    /// Defaults, with the database in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let mut spool = dir.clone().into_os_string();
        spool.push("-spool");
        Self {
            dir,
            spool_dir: spool.into(),
            sync_interval: Duration::from_secs(60),
            parallel: 16,
            max_sync_pages: 1024,
            scope: AuditScope::default(),
            charter: None,
        }
    }
}

/// A record that was refused, with the wire code.
#[derive(Debug)]
pub struct Refusal {
    /// For programs.
    pub code: RegistryErrorCode,
    /// For people.
    pub message: String,
}

impl Refusal {
    fn new(code: RegistryErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<AdmitError> for Refusal {
    fn from(e: AdmitError) -> Self {
        let code = match &e {
            AdmitError::Record(_) => RegistryErrorCode::BadRecord,
            AdmitError::VersionReused { .. } => RegistryErrorCode::VersionReused,
            AdmitError::MissingParent { .. } | AdmitError::BrokenChain(_) => {
                RegistryErrorCode::BrokenChain
            }
            AdmitError::NotEvidence(_)
            | AdmitError::Rotation(_)
            | AdmitError::RotationConflict { .. } => RegistryErrorCode::BadRequest,
            _ => RegistryErrorCode::Internal,
        };
        Refusal::new(code, e.to_string())
    }
}

/// The registry role: a handle shared by the event loop, its tasks and the HTTP API.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: RecordStore,
    session: Session,
    peers: Mutex<HashSet<PeerId>>,
    spool_dir: PathBuf,
    scope: AuditScope,
    charter: Option<tessera_node::charter::CurrentCharter>,
}

impl Registry {
    /// Opens the record store in a database of its own and takes a handle on the node's
    /// network.
    pub fn open(config: &RegistryConfig, net: Client) -> Result<Self, AdmitError> {
        Self::with_store(config, RecordStore::open(&config.dir)?, net)
    }

    /// The registry with its records in `column` of a node's database; a database of its own
    /// left in `config.dir` by an older node is imported into it first.
    pub fn open_in(
        config: &RegistryConfig,
        db: &tessera_node::db::Db,
        column: tessera_node::db::Column,
        net: Client,
    ) -> Result<Self, AdmitError> {
        db.import(&column, &config.dir)?;
        Self::with_store(config, RecordStore::in_column(column), net)
    }

    fn with_store(
        config: &RegistryConfig,
        store: RecordStore,
        net: Client,
    ) -> Result<Self, AdmitError> {
        // Leftovers of a gateway fetch cut short by a crash.
        let _ = std::fs::remove_dir_all(&config.spool_dir);
        std::fs::create_dir_all(&config.spool_dir).map_err(|e| {
            AdmitError::Damaged(format!("creating {}: {e}", config.spool_dir.display()))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                session: Session::with_client(net),
                peers: Mutex::new(HashSet::new()),
                spool_dir: config.spool_dir.clone(),
                scope: config.scope.clone(),
                charter: config.charter.clone(),
            }),
        })
    }

    /// The record store.
    pub fn store(&self) -> &RecordStore {
        &self.inner.store
    }

    /// The node's network session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// A fresh directory in the spool, removed when dropped.
    pub fn spool(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("shard-")
            .tempdir_in(&self.inner.spool_dir)
    }

    fn net(&self) -> &Client {
        self.inner.session.net()
    }

    fn remember(&self, peer: PeerId) {
        if peer != self.net().peer_id() {
            self.inner.peers.lock().insert(peer);
        }
    }

    /// Admits a record block: verifies it, checks the chain (fetching missing ancestors from
    /// `source`, or from every registry peer known), resolves its manifest, stores it and,
    /// when it is new, announces it.
    pub async fn accept(&self, block: Vec<u8>, source: Option<PeerId>) -> Result<Cid, Refusal> {
        let (cid, record) = parse(&block)?;
        let mut admitted = self.blocking_admit(&record, cid).await;
        if let (Err(AdmitError::Record(RecordError::WrongKey(_))), Some(peer)) = (&admitted, source)
        {
            // Signed by a key this node does not know the publisher rotated to: the sender
            // knows the rotation, or the record is refused.
            if let Err(e) = self.learn_rotations(peer, &record.record.publisher).await {
                debug!(%peer, error = %e.message, "fetching key rotations failed");
            }
            admitted = self.blocking_admit(&record, cid).await;
        }
        if let Err(AdmitError::MissingParent { have, .. }) = admitted {
            let peers: Vec<PeerId> = match source {
                Some(peer) => vec![peer],
                None => self.inner.peers.lock().iter().copied().collect(),
            };
            let r = &record.record;
            for peer in peers {
                if let Err(e) = self.catch_up(peer, &r.publisher, &r.name, have + 1).await {
                    debug!(%peer, error = %e.message, "catching up a chain failed");
                }
                if self.blocking_admit(&record, cid).await.is_ok() {
                    break;
                }
            }
        }
        self.admit_in_order(record, cid, block).await
    }

    /// Keeps a publisher's key rotations, in order: each one that verifies and follows the
    /// ones kept here. Returns the publisher's chain as kept after.
    pub async fn rotate(&self, blocks: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, Refusal> {
        let rotations = blocks
            .iter()
            .map(|b| SignedRotation::from_block(b).map_err(AdmitError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = rotations.first() else {
            return Err(Refusal::new(RegistryErrorCode::BadRequest, "no rotation"));
        };
        let publisher = first.rotation.publisher;
        if rotations.iter().any(|r| r.rotation.publisher != publisher) {
            return Err(Refusal::new(
                RegistryErrorCode::BadRequest,
                "rotations of more than one publisher",
            ));
        }
        self.check_admitted(&publisher)?;
        let store = self.store().clone();
        let kept = blocking(move || {
            for rotation in &rotations {
                if store.add_rotation(rotation)? == Admission::New {
                    let r = &rotation.rotation;
                    info!(publisher = %r.publisher, sequence = r.sequence, key = %r.new, "publisher key rotated");
                }
            }
            store.rotations(&publisher)
        })
        .await?;
        kept.iter()
            .map(|r| r.to_block().map_err(|e| AdmitError::from(e).into()))
            .collect()
    }

    /// Asks `peer` for `publisher`'s key rotations and keeps those that follow.
    async fn learn_rotations(&self, peer: PeerId, publisher: &PublisherKey) -> Result<(), Refusal> {
        let request = RegistryRequest::Rotations {
            publisher: *publisher,
        };
        let answer = self
            .net()
            .request::<RegistryProtocol>(peer, request)
            .await
            .map_err(|e| Refusal::new(RegistryErrorCode::Internal, e.to_string()))?;
        match answer {
            RegistryResponse::Rotations { rotations } if !rotations.is_empty() => {
                let blocks = rotations.into_iter().map(ByteBuf::into_vec).collect();
                self.rotate(blocks).await.map(|_| ())
            }
            RegistryResponse::Rotations { .. } => Ok(()),
            RegistryResponse::Error { code, message } => Err(Refusal::new(code, message)),
            other => Err(Refusal::new(
                RegistryErrorCode::BadRequest,
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    /// Refuses a publisher the network's charter does not admit.
    fn check_admitted(&self, publisher: &PublisherKey) -> Result<(), Refusal> {
        let admits = match &self.inner.charter {
            Some(charter) => AuditScope::of(&charter.get().signed.charter).admits(publisher),
            None => self.inner.scope.admits(publisher),
        };
        if admits {
            Ok(())
        } else {
            Err(Refusal::new(
                RegistryErrorCode::NotAdmitted,
                format!("publisher {publisher} is not admitted by the network's charter"),
            ))
        }
    }

    /// Stores a record whose parent is known (or that has none), after resolving its manifest.
    async fn admit_in_order(
        &self,
        record: SignedRecord,
        cid: Cid,
        block: Vec<u8>,
    ) -> Result<Cid, Refusal> {
        // Records of publishers the charter does not admit are not kept, whoever sends them.
        self.check_admitted(&record.record.publisher)?;
        match self.blocking_admit(&record, cid).await {
            Ok(Admission::Known) => return Ok(cid),
            Ok(Admission::New) => {}
            Err(e @ AdmitError::VersionReused { .. }) => {
                if let AdmitError::VersionReused { existing, .. } = &e {
                    self.fork_seen(**existing, &block).await;
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        let (manifest, manifest_block) = self.resolve_manifest(&record).await?;
        let store = self.store().clone();
        let admitted = {
            let (record, block) = (record.clone(), block.clone());
            tokio::task::spawn_blocking(move || {
                store.insert(&record, &cid, &block, &manifest, &manifest_block)
            })
            .await
            .map_err(|e| Refusal::new(RegistryErrorCode::Internal, e.to_string()))??
        };
        if admitted == Admission::New {
            let r = &record.record;
            info!(%cid, publisher = %r.publisher, name = %r.name, version = r.version, "record accepted");
            if let Err(e) = self.net().publish(REGISTRY_TOPIC, block.clone()).await {
                warn!(error = %e, "announcing a record failed");
            }
            let key = head_key(&r.publisher, &r.name);
            let net = self.net().clone();
            // The DHT put is slow on a large network; nothing waits for it.
            tokio::spawn(async move {
                if let Err(e) = net.put_record(key, block).await {
                    debug!(error = %e, "storing a dataset head on the DHT failed");
                }
            });
        }
        Ok(cid)
    }

    /// A record was offered for a version this node holds as record `existing`: both are
    /// kept as evidence of the fork.
    async fn fork_seen(&self, existing: Cid, offered: &[u8]) {
        let (store, offered) = (self.store().clone(), offered.to_vec());
        let kept = blocking(move || {
            let first = store
                .block(&existing)?
                .ok_or_else(|| AdmitError::Damaged(format!("record {existing}")))?;
            store.keep_evidence(&Evidence {
                first,
                second: offered,
            })
        })
        .await;
        match kept {
            Ok(true) => {
                warn!(%existing, "a publisher signed two records for one version; both kept as evidence")
            }
            Ok(false) => {}
            Err(e) => debug!(error = %e, "keeping evidence of a fork failed"),
        }
    }

    /// The answer to reads of `publisher`'s `name` when this node holds evidence of a fork:
    /// the evidence, for the reader to check.
    fn forked(&self, publisher: &PublisherKey, name: &str) -> Option<RegistryResponse> {
        let evidence = self.store().evidence(publisher, name).ok()??;
        Some(RegistryResponse::Forked {
            first: evidence.first,
            second: evidence.second,
        })
    }

    async fn blocking_admit(
        &self,
        record: &SignedRecord,
        cid: Cid,
    ) -> Result<Admission, AdmitError> {
        let (store, record) = (self.store().clone(), record.clone());
        blocking(move || store.admit(&record, &cid)).await
    }

    /// Fetches the record's manifest from the network and checks it, and that it derives from
    /// the parent version's manifest.
    async fn resolve_manifest(
        &self,
        record: &SignedRecord,
    ) -> Result<(Manifest, Vec<u8>), Refusal> {
        let r = &record.record;
        let unresolved = |why: String| {
            Refusal::new(
                RegistryErrorCode::ManifestUnresolved,
                format!("manifest {}: {why}", r.manifest),
            )
        };
        let block = match self.store().manifest(&r.manifest)? {
            Some(block) => block,
            None => fetch_block(self.session(), r.manifest, MAX_MANIFEST_BYTES as u64)
                .await
                .map_err(|e| unresolved(e.to_string()))?,
        };
        let manifest = Manifest::from_block(&block).map_err(|e| unresolved(e.to_string()))?;
        if let Some(parent) = &r.parent {
            let parent = self
                .store()
                .get(parent)?
                .ok_or_else(|| unresolved("its parent record vanished".into()))?;
            if manifest.parent != Some(parent.record.record.manifest) {
                return Err(unresolved(format!(
                    "it names parent manifest {:?}, but version {} is manifest {}",
                    manifest.parent.map(|c| c.to_string()),
                    parent.record.record.version,
                    parent.record.record.manifest
                )));
            }
        }
        Ok((manifest, block))
    }

    /// Fetches and admits, in order, the versions of one dataset from `from` on that `peer`
    /// has.
    async fn catch_up(
        &self,
        peer: PeerId,
        publisher: &PublisherKey,
        name: &str,
        mut from: u64,
    ) -> Result<(), Refusal> {
        loop {
            let request = RegistryRequest::Chain {
                publisher: *publisher,
                name: name.to_string(),
                from,
                limit: MAX_RECORDS_PER_RESPONSE,
            };
            let (records, more) = self.records_from(peer, request).await?;
            let Some(last) = records.len().checked_sub(1) else {
                return Ok(());
            };
            for (i, block) in records.into_iter().enumerate() {
                let (cid, record) = parse(&block)?;
                if record.record.publisher != *publisher || record.record.name != name {
                    return Err(Refusal::new(
                        RegistryErrorCode::BadRequest,
                        format!("{peer} answered a chain request with another dataset"),
                    ));
                }
                let version = record.record.version;
                // The peer sends versions in order, so each one's parent is known by now.
                self.admit_in_order(record, cid, block).await?;
                if i == last {
                    from = version + 1;
                }
            }
            if !more {
                return Ok(());
            }
        }
    }

    async fn records_from(
        &self,
        peer: PeerId,
        request: RegistryRequest,
    ) -> Result<(Vec<Vec<u8>>, bool), Refusal> {
        let net_error =
            |e: tessera_net::NetError| Refusal::new(RegistryErrorCode::Internal, e.to_string());
        match self
            .net()
            .request::<RegistryProtocol>(peer, request)
            .await
            .map_err(net_error)?
        {
            RegistryResponse::Records { records, more } => {
                Ok((records.into_iter().map(ByteBuf::into_vec).collect(), more))
            }
            RegistryResponse::Error { code, message } => Err(Refusal::new(code, message)),
            other => Err(Refusal::new(
                RegistryErrorCode::BadRequest,
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    /// Reads every dataset head `peer` has and fetches the versions this node lacks.
    pub async fn sync_with(&self, peer: PeerId, max_pages: usize) -> Result<usize, Refusal> {
        let mut after = None;
        let mut learned = 0;
        for _ in 0..max_pages {
            let request = RegistryRequest::Heads {
                after: after.clone(),
                limit: MAX_RECORDS_PER_RESPONSE,
            };
            let (heads, more) = self.records_from(peer, request).await?;
            for block in heads {
                let (cid, record) = parse(&block)?;
                let r = &record.record;
                after = Some((r.publisher, r.name.clone()));
                match self.blocking_admit(&record, cid).await {
                    Ok(Admission::Known) => continue,
                    Err(AdmitError::VersionReused { existing, .. }) => {
                        warn!(%peer, name = %r.name, version = r.version, %existing, "a peer has another record for a version this node holds");
                        self.fork_seen(*existing, &block).await;
                        continue;
                    }
                    _ => {}
                }
                let have = self
                    .store()
                    .head(&r.publisher, &r.name)?
                    .map_or(0, |e| e.record.record.version);
                if let Err(e) = self.catch_up(peer, &r.publisher, &r.name, have + 1).await {
                    debug!(%peer, name = %r.name, error = %e.message, "catching up failed");
                } else {
                    learned += 1;
                }
            }
            if !more {
                break;
            }
        }
        Ok(learned)
    }

    /// Looks for a dataset's latest record on the DHT and admits the newest valid one found,
    /// fetching its ancestors from known registry peers.
    pub async fn find_on_dht(&self, publisher: &PublisherKey, name: &str) -> Option<Entry> {
        let values = self
            .net()
            .get_record(head_key(publisher, name))
            .await
            .ok()?;
        let mut best: Option<(u64, Vec<u8>)> = None;
        for value in values {
            let Ok((_, record)) = parse(&value) else {
                continue;
            };
            let r = &record.record;
            if r.publisher == *publisher
                && r.name == name
                && best.as_ref().is_none_or(|(v, _)| r.version > *v)
            {
                best = Some((r.version, value));
            }
        }
        let (_, block) = best?;
        let cid = self.accept(block, None).await.ok()?;
        self.store().get(&cid).ok().flatten()
    }

    /// Answers one registry protocol request.
    pub async fn answer(&self, peer: PeerId, request: RegistryRequest) -> RegistryResponse {
        let limit = |l: u32| l.clamp(1, MAX_RECORDS_PER_RESPONSE) as usize;
        let records = |(entries, more): (Vec<Entry>, bool)| RegistryResponse::Records {
            records: entries
                .into_iter()
                .map(|e| ByteBuf::from(e.block))
                .collect(),
            more,
        };
        let result = match request {
            RegistryRequest::Submit { record } => {
                return match self.accept(record, Some(peer)).await {
                    Ok(record) => RegistryResponse::Accepted { record },
                    Err(r) => RegistryResponse::Error {
                        code: r.code,
                        message: r.message,
                    },
                };
            }
            RegistryRequest::Evidence { first, second } => {
                let store = self.store().clone();
                let evidence = Evidence { first, second };
                return match blocking(move || {
                    store.keep_evidence(&evidence)?;
                    Ok(dag_cbor_cid(&evidence.first))
                })
                .await
                {
                    Ok(record) => {
                        warn!(%peer, "evidence of a fork received and kept");
                        RegistryResponse::Accepted { record }
                    }
                    Err(e) => {
                        let refusal = Refusal::from(e);
                        RegistryResponse::Error {
                            code: refusal.code,
                            message: refusal.message,
                        }
                    }
                };
            }
            RegistryRequest::Rotate { rotations } => {
                let blocks = rotations.into_iter().map(ByteBuf::into_vec).collect();
                return match self.rotate(blocks).await {
                    Ok(kept) => RegistryResponse::Rotations {
                        rotations: kept.into_iter().map(ByteBuf::from).collect(),
                    },
                    Err(r) => RegistryResponse::Error {
                        code: r.code,
                        message: r.message,
                    },
                };
            }
            RegistryRequest::Rotations { publisher } => {
                let store = self.store().clone();
                blocking(move || store.rotations(&publisher))
                    .await
                    .and_then(|kept| {
                        kept.iter()
                            .map(|r| r.to_block().map(ByteBuf::from).map_err(AdmitError::from))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map(|rotations| RegistryResponse::Rotations { rotations })
            }
            RegistryRequest::Heads { after, limit: l } => {
                let store = self.store().clone();
                blocking(move || store.heads(after.as_ref(), limit(l)))
                    .await
                    .map(records)
            }
            RegistryRequest::Chain {
                publisher,
                name,
                from,
                limit: l,
            } => {
                if let Some(refused) = self.forked(&publisher, &name) {
                    return refused;
                }
                let store = self.store().clone();
                blocking(move || store.chain(&publisher, &name, from, limit(l)))
                    .await
                    .map(records)
            }
            RegistryRequest::Find {
                publisher,
                name,
                version,
            } => {
                let found = {
                    let (store, publisher, name) =
                        (self.store().clone(), publisher.clone(), name.clone());
                    blocking(move || store.find(publisher.as_deref(), &name, version)).await
                };
                let fork = found.as_ref().ok().and_then(|f| {
                    f.iter().find_map(|e| {
                        self.forked(&e.record.record.publisher, &e.record.record.name)
                    })
                });
                if let Some(refused) = fork {
                    return refused;
                }
                match found {
                    Ok(found) if found.is_empty() => {
                        // Not known here: a full publisher key lets the DHT say.
                        let key = publisher
                            .as_deref()
                            .and_then(|p| p.parse::<PublisherKey>().ok());
                        let mut found = Vec::new();
                        if let Some(key) = key
                            && self.find_on_dht(&key, &name).await.is_some()
                        {
                            let store = self.store().clone();
                            found = blocking(move || {
                                store.find(Some(&key.to_string()), &name, version)
                            })
                            .await
                            .unwrap_or_default();
                        }
                        Ok(records((found, false)))
                    }
                    other => other.map(|f| (f, false)).map(records),
                }
            }
        };
        result.unwrap_or_else(|e| RegistryResponse::Error {
            code: RegistryErrorCode::Internal,
            message: e.to_string(),
        })
    }
}

fn parse(block: &[u8]) -> Result<(Cid, SignedRecord), Refusal> {
    if block.len() > MAX_RECORD_BYTES {
        return Err(Refusal::new(
            RegistryErrorCode::BadRecord,
            format!(
                "{} bytes; a record is at most {MAX_RECORD_BYTES}",
                block.len()
            ),
        ));
    }
    let record = SignedRecord::from_block(block)
        .map_err(|e| Refusal::new(RegistryErrorCode::BadRecord, e.to_string()))?;
    Ok((dag_cbor_cid(block), record))
}

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdmitError> + Send + 'static,
) -> Result<T, AdmitError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdmitError::Damaged(e.to_string()))?
}

/// What reaches the registry role: a request, or news on the announcement topic.
enum Event {
    Request(Request<RegistryProtocol>),
    Topic(TopicEvent),
}

/// Runs the registry role until the network stops: handles `requests` and the announcement
/// topic's `news` (`config.parallel` at once), advertises the node as a registry, and catches
/// up with the registry peers it knows every `config.sync_interval`.
pub async fn run(
    registry: Registry,
    config: RegistryConfig,
    mut requests: Inbound<RegistryProtocol>,
    mut news: mpsc::Receiver<TopicEvent>,
) {
    let permits = Arc::new(Semaphore::new(config.parallel.max(1)));
    let advertise = registry.clone();
    tokio::spawn(async move {
        // Providing fails until the routing table has a peer; retry a few times.
        for _ in 0..10 {
            if advertise.net().start_providing(rendezvous()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let mut ticks = tokio::time::interval(config.sync_interval);
    loop {
        let event = tokio::select! {
            event = requests.recv() => event.map(Event::Request),
            event = news.recv() => event.map(Event::Topic),
            _ = ticks.tick() => {
                let registry = registry.clone();
                let max_pages = config.max_sync_pages;
                tokio::spawn(async move { registry.sync_all(max_pages).await });
                continue;
            }
        };
        let Some(event) = event else { break };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let registry = registry.clone();
        let max_pages = config.max_sync_pages;
        tokio::spawn(async move {
            let _permit = permit;
            handle(&registry, event, max_pages).await;
        });
    }
    debug!("registry stopped");
}

impl Registry {
    /// Catches up with every registry peer known, and those the DHT lists.
    pub async fn sync_all(&self, max_pages: usize) {
        if let Ok(found) = self.net().get_providers(rendezvous()).await {
            for peer in found {
                self.remember(peer);
            }
        }
        let peers: Vec<PeerId> = self.inner.peers.lock().iter().copied().collect();
        for peer in peers {
            match self.sync_with(peer, max_pages).await {
                Ok(n) if n > 0 => info!(%peer, datasets = n, "caught up"),
                Ok(_) => {}
                Err(e) => debug!(%peer, error = %e.message, "catching up failed"),
            }
        }
    }
}

async fn handle(registry: &Registry, event: Event, max_pages: usize) {
    match event {
        Event::Request(Request {
            peer,
            request,
            responder,
        }) => {
            let response = registry.answer(peer, request).await;
            let _ = responder.respond(response).await;
        }
        Event::Topic(TopicEvent::Message { source, data }) => {
            registry.remember(source);
            if let Err(e) = registry.accept(data, Some(source)).await {
                debug!(%source, error = %e.message, "announced record refused");
            }
        }
        Event::Topic(TopicEvent::PeerJoined { peer }) => {
            registry.remember(peer);
            if let Err(e) = registry.sync_with(peer, max_pages).await {
                debug!(%peer, error = %e.message, "catching up failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tessera_formats::{
        VersionRecord, address::dag_cbor_cid, record::RECORD_VERSION, record::SigningKey,
    };
    use tessera_net::{Keypair, NetworkConfig};

    use super::*;

    /// Version 1 of `key`'s dataset "data", naming a manifest nobody holds.
    fn record(key: &SigningKey) -> Vec<u8> {
        VersionRecord {
            format: RECORD_VERSION,
            publisher: PublisherKey::of(key),
            name: "data".into(),
            version: 1,
            manifest: dag_cbor_cid(b"a manifest"),
            parent: None,
            time_ms: 1,
            message: String::new(),
        }
        .sign(key)
        .unwrap()
        .to_block()
        .unwrap()
        .1
    }

    #[tokio::test]
    async fn records_of_publishers_the_charter_does_not_admit_are_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (admitted, other) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let config = RegistryConfig {
            scope: AuditScope {
                publishers: Some([PublisherKey::of(&admitted)].into()),
                quota: 0,
            },
            ..RegistryConfig::new(dir.path().join("registry"))
        };
        let net = tessera_net::start(Keypair::generate_ed25519(), NetworkConfig::default())
            .await
            .unwrap();
        let registry = Registry::open(&config, net.client.clone()).unwrap();
        let refused = registry.accept(record(&other), None).await.unwrap_err();
        assert_eq!(
            refused.code,
            RegistryErrorCode::NotAdmitted,
            "{}",
            refused.message
        );
        assert!(
            registry
                .store()
                .head(&PublisherKey::of(&other), "data")
                .unwrap()
                .is_none()
        );
        // An admitted publisher's record gets past admission (and on to its manifest, which
        // nobody holds here).
        let refused = registry.accept(record(&admitted), None).await.unwrap_err();
        assert_eq!(refused.code, RegistryErrorCode::ManifestUnresolved);
        net.task.abort();
    }

    /// Under a charter, the publishers kept are those of the epoch in force: a change that
    /// admits a publisher takes effect without a restart.
    #[tokio::test]
    async fn a_new_epoch_admitting_a_publisher_takes_effect_at_once() {
        use tessera_formats::charter::{Charter, CharterParams};
        use tessera_node::charter::{CurrentCharter, NodeCharter};

        let dir = tempfile::tempdir().unwrap();
        let validator = SigningKey::from_bytes(&[9; 32]);
        let (first, later) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let params = |listed: Vec<PublisherKey>| CharterParams {
            validators_per_piece: 1,
            publishers: listed,
            ..CharterParams::default()
        };
        let founding = Charter::found(
            "registrytest",
            vec![PublisherKey::of(&validator)],
            1,
            params(vec![PublisherKey::of(&first)]),
        )
        .signed_by(&[&validator])
        .unwrap();
        let (cid, _) = founding.to_block().unwrap();
        let charter = CurrentCharter::new(NodeCharter {
            signed: founding.clone(),
            cid,
        });
        let config = RegistryConfig {
            charter: Some(charter.clone()),
            ..RegistryConfig::new(dir.path().join("registry"))
        };
        let net = tessera_net::start(Keypair::generate_ed25519(), NetworkConfig::default())
            .await
            .unwrap();
        let registry = Registry::open(&config, net.client.clone()).unwrap();
        let refused = registry.accept(record(&later), None).await.unwrap_err();
        assert_eq!(refused.code, RegistryErrorCode::NotAdmitted);

        let mut listed = vec![PublisherKey::of(&first), PublisherKey::of(&later)];
        listed.sort();
        let next = Charter::after(
            &founding.charter,
            cid,
            1,
            vec![PublisherKey::of(&validator)],
            1,
            params(listed),
        )
        .signed_by(&[&validator])
        .unwrap();
        assert!(charter.advance(next).unwrap());
        // Admitted now: on to its manifest, which nobody holds here.
        let refused = registry.accept(record(&later), None).await.unwrap_err();
        assert_eq!(refused.code, RegistryErrorCode::ManifestUnresolved);
        net.task.abort();
    }
}
