//! What can go wrong while streaming.

use cid::Cid;
use tessera_client::ClientError;

use crate::plan::PlanError;

/// Streaming failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The options do not make a plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A column asked for is not in the dataset.
    #[error("the dataset has no column {column:?}; its columns are: {columns}")]
    NoColumn {
        /// The column asked for.
        column: String,
        /// The dataset's columns.
        columns: String,
    },
    /// A saved state belongs to another stream.
    #[error("the saved state does not fit this stream: {0}")]
    StateMismatch(String),
    /// A shard is larger than the whole cache.
    #[error("shard {shard} is {size} bytes, more than the cache's limit of {limit}")]
    CacheTooSmall {
        /// The shard.
        shard: Box<Cid>,
        /// Its size.
        size: u64,
        /// The cache's limit.
        limit: u64,
    },
    /// Another reader of the same cache gave up fetching a shard this one waited for.
    #[error("shard {0}: the reader fetching it into the shared cache stopped")]
    FetchedElsewhere(Box<Cid>),
    /// A shard could not be fetched or rebuilt from the network.
    #[error("shard {shard}: {source}")]
    Fetch {
        /// The shard.
        shard: Box<Cid>,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A verified shard's Parquet could not be read.
    #[error("shard {name}: {reason}")]
    Parquet {
        /// The shard's name in the manifest.
        name: String,
        /// Why.
        reason: String,
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
}

impl StreamError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
