//! Publishing and fetching whole dataset versions: the client's dataset operations joined to
//! the registry's records.

use std::path::{Path, PathBuf};

use cid::Cid;
use tessera_client::{
    Session,
    dataset::{
        DatasetError, FetchOptions, FetchReport, PublishOptions, PublishReport,
        fetch::fetch_manifest, fetch_dataset, publish, unix_ms,
    },
};
use tessera_formats::{
    DatasetRef, PublisherKey, SignedRecord, VersionRecord, VersionSel,
    record::{RECORD_VERSION, RecordError, SigningKey, check_name},
};

use crate::{
    remote::{self, RemoteError},
    store::Entry,
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
    signer: &SigningKey,
    mut options: PublishOptions,
) -> Result<Published, VersionError> {
    check_name(name)?;
    let publisher = PublisherKey::of(signer);
    let parent = match remote::find(
        session,
        Some(&publisher.to_string()),
        name,
        VersionSel::Latest,
        None,
    )
    .await
    {
        Ok(entry) => Some(entry),
        Err(RemoteError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(parent) = &parent {
        let cid = parent.record.record.manifest;
        options.parent = Some((cid, fetch_manifest(session, cid).await?));
    }
    let report = publish(session, files, &options).await?;
    let time_ms = unix_ms();
    let record = VersionRecord {
        format: RECORD_VERSION,
        publisher,
        name: name.to_string(),
        version: parent.as_ref().map_or(1, |p| p.record.record.version + 1),
        manifest: report.manifest_cid,
        parent: parent.as_ref().map(|p| p.cid),
        time_ms,
        message: message.to_string(),
    }
    .sign(signer)?;
    let (_, block) = record.to_block()?;
    let record_cid = remote::submit(session, block).await?;
    Ok(Published {
        record_cid,
        record,
        report,
    })
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
