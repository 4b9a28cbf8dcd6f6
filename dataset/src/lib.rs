//! Datasets: a directory of Parquet files published as one manifest, and fetched back.
//!
//! - [`inspect`]: schema, rows and row groups from a Parquet footer.
//! - [`publish`]: check the files, store each as an erasure-coded shard (reusing the parent
//!   version's unchanged shards and, after an interruption, the pieces already stored), then
//!   store the manifest on more nodes than any piece.
//! - [`fetch`]: a manifest's shards into a directory, in parallel, each verified, resuming
//!   where an earlier run stopped.
//! - [`journal`]: what an interrupted publish had already stored.
//! - [`parquet_guard`]: a Parquet file checked before it is decoded.
//! - [`version`]: publishing and fetching whole versions: the operations above joined to the
//!   registry's signed records.
//!
//! Storage nodes link none of this: Arrow and Parquet are for the processes that publish and
//! read datasets.
use std::path::PathBuf;

use cid::Cid;
use tessera_formats::manifest::ManifestError;

use tessera_client::error::ClientError;

pub mod fetch;
pub mod inspect;
pub mod journal;
pub mod parquet_guard;
pub mod publish;
pub mod version;

pub use fetch::{FetchOptions, FetchReport, fetch_dataset, fetch_manifest};
pub use publish::{
    PublishOptions, PublishReport, StoredShard, default_params, publish, publish_among,
    store_manifest, store_shard,
};
pub use version::{
    Published, Registered, StoredVersion, VersionError, fetch_version, publish_stored,
    publish_version,
};

/// What a publish or fetch reports while it runs, for a progress display.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The work ahead: shards and bytes.
    Planned {
        /// Shards to store or fetch.
        shards: usize,
        /// Their bytes.
        bytes: u64,
        /// Pieces to store (publish) or 0 (fetch).
        pieces: usize,
    },
    /// A shard is done.
    ShardDone {
        /// Its name.
        name: String,
        /// Its bytes.
        bytes: u64,
        /// Whether nothing had to move (unchanged since the parent, or already on disk).
        reused: bool,
    },
    /// A piece was stored.
    PieceStored {
        /// Its bytes.
        bytes: u64,
    },
}

/// Where progress goes; `None` for nowhere.
pub type ProgressSink = Option<std::sync::Arc<dyn Fn(Progress) + Send + Sync>>;

fn report(sink: &ProgressSink, event: Progress) {
    if let Some(sink) = sink {
        sink(event);
    }
}

/// A dataset operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The directory holds no Parquet file.
    #[error("{} holds no .parquet files", .0.display())]
    NoFiles(PathBuf),
    /// A file is not valid Parquet.
    #[error("{} is not a valid Parquet file: {reason}", path.display())]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file's schema differs from the first file's.
    #[error("{} has another schema than {}: {difference}", path.display(), first.display())]
    SchemaMismatch {
        /// The file that differs.
        path: PathBuf,
        /// The file whose schema the dataset takes.
        first: PathBuf,
        /// How it differs.
        difference: String,
    },
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is unusable.
    #[error("manifest {cid}: {source}")]
    Manifest {
        /// Its CID.
        cid: Box<Cid>,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A file in the output directory is in a shard's place with other bytes.
    #[error(
        "{} exists and is neither the shard {cid} nor a file of an older version of this \
         dataset; move it away and run again",
        path.display()
    )]
    Conflict {
        /// The file.
        path: PathBuf,
        /// The shard it should be.
        cid: Box<Cid>,
    },
    /// Some shards could not be fetched or rebuilt; the others are in place.
    #[error("{} of {total} shards could not be fetched: {}", failed.len(), failed.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; "))]
    Shards {
        /// Shards in the dataset.
        total: usize,
        /// Each shard that failed, and why.
        failed: Vec<(String, String)>,
    },
    /// A network or storage step failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl DatasetError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| DatasetError::Io { what, source }
    }
}
