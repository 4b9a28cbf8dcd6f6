//! Publishing and fetching whole dataset versions: the client's dataset operations joined to
//! the registry's records.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};
use tessera_formats::time::now_ms;

use cid::Cid;
use tessera_client::Session;
use tessera_dataset_registry::{
    AuditScope, Entry, QuotaMeter,
    remote::{self, RemoteError},
};
use tessera_formats::{
    DatasetRef, Manifest, PublisherKey, ShardLayout, SignedRecord, VersionRecord, VersionSel,
    manifest::{MANIFEST_VERSION, ManifestError, Schema, ShardEntry},
    record::{RECORD_VERSION, RecordError, Signer, check_name},
};

use crate::{
    DatasetError, FetchOptions, FetchReport, PublishOptions, PublishReport, fetch::fetch_manifest,
    fetch_dataset, publish_among, store_manifest,
};

/// Publishing or fetching a version failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The registry could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Storing or fetching the data failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The record could not be made.
    #[error("record: {0}")]
    Record(#[from] RecordError),
}

/// A version published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The record's CID.
    pub record_cid: Cid,
    /// The signed record.
    pub record: SignedRecord,
    /// What storing the data did.
    pub report: PublishReport,
}

/// Publishes `files` as the next version of the signer's dataset `name`: finds the current
/// version (its unchanged shards are reused), stores the data and the manifest, signs the
/// record and submits it to a registry node.
pub async fn publish_version(
    session: &Session,
    files: Vec<(String, PathBuf)>,
    name: &str,
    message: &str,
    signer: impl Into<Signer>,
    mut options: PublishOptions,
) -> Result<Published, VersionError> {
    let signer = &signer.into();
    check_name(name)?;
    let parent = latest(session, signer, name).await?;
    if let Some(parent) = &parent {
        let cid = parent.record.record.manifest;
        options.parent = Some((cid, fetch_manifest(session, cid).await?));
    }
    let report = publish_among(session, files, &options, async || {
        siblings(session, signer, name).await
    })
    .await?;
    if report.unchanged
        && let Some(parent) = parent
    {
        return Ok(Published {
            record_cid: parent.cid,
            record: parent.record,
            report,
        });
    }
    let (record_cid, record) = register(
        session,
        name,
        message,
        signer,
        report.manifest_cid,
        parent.as_ref(),
    )
    .await?;
    Ok(Published {
        record_cid,
        record,
        report,
    })
}

/// A version whose shards are already stored in the network (a crawl's, stored as they
/// closed): its manifest is built, stored and registered as the signer's next version of
/// `name`, with the current version as its parent.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The dataset's name.
    pub name: String,
    /// What this version is.
    pub message: String,
    /// The shards, in the order the manifest lists them.
    pub shards: Vec<ShardEntry>,
    /// Their common schema.
    pub schema: Schema,
    /// Free-form metadata for the manifest.
    pub metadata: BTreeMap<String, String>,
}

/// What registering a [`StoredVersion`] made.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The manifest's CID: the version's name.
    pub manifest_cid: Cid,
    /// The record's CID.
    pub record_cid: Cid,
    /// The signed record.
    pub record: SignedRecord,
}

/// Publishes `version`; see [`StoredVersion`].
pub async fn publish_stored(
    session: &Session,
    version: StoredVersion,
    signer: impl Into<Signer>,
) -> Result<Registered, VersionError> {
    let signer = &signer.into();
    check_name(&version.name)?;
    let parent = latest(session, signer, &version.name).await?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        schema: Some(version.schema),
        shards: version.shards,
        parent: parent.as_ref().map(|p| p.record.record.manifest),
        created_ms: now_ms(),
        metadata: version.metadata,
    };
    manifest
        .validate()
        .map_err(|source| DatasetError::Manifest {
            cid: Box::new(Cid::default()),
            source,
        })?;
    let (manifest_cid, _) = store_manifest(session, &manifest, 1).await?;
    let (record_cid, record) = register(
        session,
        &version.name,
        &version.message,
        signer,
        manifest_cid,
        parent.as_ref(),
    )
    .await?;
    Ok(Registered {
        manifest_cid,
        record_cid,
        record,
    })
}

/// Most of a publisher's other datasets whose shards a publish looks among.
pub const MAX_SIBLINGS: usize = 32;
/// Most dataset heads listed to find them.
const MAX_HEADS: usize = 10_000;

/// The shards of the latest versions of the signer's other datasets (at most
/// [`MAX_SIBLINGS`]), by content CID: the same files published under another name are not
/// uploaded again. Only the signer's own records count, so no one else's layout is taken;
/// a registry or manifest that cannot be read just means less is reused.
async fn siblings(session: &Session, signer: &Signer, name: &str) -> BTreeMap<Cid, ShardLayout> {
    let mut known = BTreeMap::new();
    let Ok(heads) = remote::list(session, MAX_HEADS).await else {
        return known;
    };
    let own = heads
        .iter()
        .map(|e| &e.record.record)
        .filter(|r| r.publisher == signer.publisher && r.name != name)
        .take(MAX_SIBLINGS);
    for record in own {
        if let Ok(manifest) = fetch_manifest(session, record.manifest).await {
            known.extend(
                manifest
                    .shards
                    .into_iter()
                    .map(|s| (s.layout.content, s.layout)),
            );
        }
    }
    known
}

/// The signer's current version of `name`, if it has one.
async fn latest(
    session: &Session,
    signer: &Signer,
    name: &str,
) -> Result<Option<Entry>, VersionError> {
    let publisher = signer.publisher.to_string();
    match remote::find(session, Some(&publisher), name, VersionSel::Latest, None).await {
        Ok(entry) => Ok(Some(entry)),
        Err(RemoteError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Signs the record of `manifest` as the version after `parent` and submits it.
async fn register(
    session: &Session,
    name: &str,
    message: &str,
    signer: &Signer,
    manifest: Cid,
    parent: Option<&Entry>,
) -> Result<(Cid, SignedRecord), VersionError> {
    let record = VersionRecord {
        format: RECORD_VERSION,
        publisher: signer.publisher,
        name: name.to_string(),
        version: parent.map_or(1, |p| p.record.record.version + 1),
        manifest,
        parent: parent.map(|p| p.cid),
        time_ms: now_ms(),
        message: message.to_string(),
    }
    .sign_as(&signer.key)?;
    let (_, block) = record.to_block()?;
    let record_cid = remote::submit(session, block).await?;
    Ok((record_cid, record))
}

/// Resolves `reference` and fetches the version into `out`. Returns the manifest CID, the
/// record (none for a bare CID) and what the fetch did.
pub async fn fetch_version(
    session: &Session,
    reference: &DatasetRef,
    out: &Path,
    own: Option<&PublisherKey>,
    options: &FetchOptions,
) -> Result<(Cid, Option<Entry>, FetchReport), VersionError> {
    let (cid, entry) = remote::resolve(session, reference, own).await?;
    let report = fetch_dataset(session, cid, out, options).await?;
    Ok((cid, entry, report))
}

/// Most datasets [`admitted_piece_sizes`] walks.
pub const MAX_SIZED_DATASETS: usize = 100_000;

/// The size of every piece the audits of `scope` cover: every version of the datasets of
/// the publishers it admits, newest first, each publisher within its quota, as an auditor's
/// audit set counts them ([`QuotaMeter`]); sizes from the layouts, read over the network.
/// What a receipt under a charter must name. Records come from a quorum of registry nodes;
/// each manifest is checked against its CID. At most `max_pieces` pieces.
pub async fn admitted_piece_sizes(
    session: &Session,
    scope: &AuditScope,
    max_pieces: usize,
) -> Result<std::collections::HashMap<Cid, u64>, VersionError> {
    let mut sizes = std::collections::HashMap::new();
    let mut quota = QuotaMeter::default();
    for head in remote::list(session, MAX_SIZED_DATASETS).await? {
        let record = &head.record.record;
        if !scope.admits(&record.publisher) {
            continue;
        }
        let log = remote::log(session, &record.publisher, &record.name).await?;
        for entry in log.iter().rev() {
            let manifest = fetch_manifest(session, entry.record.record.manifest).await?;
            for (index, shard) in manifest.shards.iter().enumerate() {
                let (cid, _) =
                    shard
                        .layout
                        .to_block()
                        .map_err(|source| DatasetError::Manifest {
                            cid: Box::new(entry.record.record.manifest),
                            source: ManifestError::Layout {
                                index,
                                name: shard.name.clone(),
                                source,
                            },
                        })?;
                if quota.counted(&cid) || !quota.fits(scope, &record.publisher, &shard.layout) {
                    continue;
                }
                if sizes.len() + shard.layout.pieces.len() > max_pieces {
                    return Ok(sizes);
                }
                quota.count(&record.publisher, cid, &shard.layout);
                let len = shard.layout.piece_len();
                for piece in &shard.layout.pieces {
                    sizes.insert(*piece, len);
                }
            }
        }
    }
    Ok(sizes)
}
