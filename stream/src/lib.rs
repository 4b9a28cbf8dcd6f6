//! Streaming a dataset version into a training job.
//!
//! - [`plan`]: the epoch's order (shards shuffled, then samples shuffled inside blocks of
//!   shards) and its split among ranks and data-loader workers; pure.
//! - [`permutation`]: the keyed permutation both shuffles use.
//! - [`cache`]: shard files by content CID, verified on every use, LRU past a byte limit.
//! - [`reader`]: a worker's batches: shards prefetched into the cache, the needed rows read
//!   from each and put in the epoch's order.

pub mod cache;
pub mod error;
pub mod permutation;
pub mod plan;
pub mod reader;

pub use cache::{CacheStats, Lease, ShardCache};
pub use error::StreamError;
pub use plan::{EpochOrder, Partition, PlanError, Remainder, Run, Sample, Split, epoch_runs, rest};
pub use reader::{DEFAULT_SEGMENT_SAMPLES, DatasetStream, StreamOptions, StreamState};
/// The Arrow schema a manifest declares, decoded as a stream decodes it (a published manifest
/// may hold any bytes there).
pub fn manifest_schema(
    manifest: &tessera_formats::Manifest,
) -> Result<arrow::datatypes::SchemaRef, StreamError> {
    reader::read::output_schema(manifest, None)
}

/// The limits a shard's Parquet is read with ([`StreamOptions::parquet_limits`]).
pub use tessera_dataset::parquet_guard::ParquetLimits;
