//! Streaming a dataset version into a training job.
//!
//! - [`plan`]: the epoch's order (shards shuffled, then samples shuffled inside blocks of
//!   shards) and its split among ranks and data-loader workers; pure.
//! - [`permutation`]: the keyed permutation both shuffles use.

pub mod permutation;
pub mod plan;

pub use plan::{EpochOrder, Partition, PlanError, Remainder, Sample, Split};
