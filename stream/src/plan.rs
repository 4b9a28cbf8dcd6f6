//! Which sample comes where in an epoch, and which rank and worker reads it: pure functions of
//! the manifest, the seed and the epoch.
//!
//! ```text
//! shards (manifest order) ─▶ shard order: a permutation keyed by (manifest, seed, epoch)
//!   ─▶ blocks of `block_shards` consecutive shards
//!   ─▶ inside each block, a permutation of all its rows
//!   = the epoch's global order, positions 0..N
//! positions ─▶ Drop: the first W·L, or Pad: N then 0, 1, … again up to W·L
//!   ─▶ rank r: positions r·L .. (r+1)·L, in batches of b (L is a multiple of b)
//!   ─▶ worker w of K: the rank's batches i with i mod K = w
//! ```
//!
//! A sample is one row; samples are numbered in manifest order (shard 0's rows first). Shuffle
//! quality and memory: neighbouring samples come from any of the `block_shards` shards of their
//! block, in a uniformly random order inside it, and the shard order changes every epoch. A
//! reader holds at most the rows it needs from one block, so memory grows with `block_shards`
//! times the shard size and not with the dataset. Larger blocks mix more, at that cost.

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::permutation::Permutation;

/// What happens to the samples that do not fill a whole batch on every rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Remainder {
    /// The last `N mod (W·b)` samples of the epoch's order are not read (different ones every
    /// epoch, since the order changes).
    #[default]
    Drop,
    /// The epoch is filled up to whole batches on every rank with samples from the start of
    /// its order, so every sample is read and some twice.
    Pad,
}

/// Who is reading: a rank of a job, and a data-loader worker within the rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// This rank, `0..world_size`.
    pub rank: u32,
    /// Ranks in the job.
    pub world_size: u32,
    /// This worker within the rank, `0..workers`.
    pub worker: u32,
    /// Workers per rank.
    pub workers: u32,
}

impl Partition {
    /// The only reader of a job with one rank and one worker.
    pub const SINGLE: Self = Self {
        rank: 0,
        world_size: 1,
        worker: 0,
        workers: 1,
    };

    fn check(&self) -> Result<(), PlanError> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(PlanError::Partition(format!(
                "rank {} of world size {}",
                self.rank, self.world_size
            )));
        }
        if self.workers == 0 || self.worker >= self.workers {
            return Err(PlanError::Partition(format!(
                "worker {} of {}",
                self.worker, self.workers
            )));
        }
        Ok(())
    }
}

/// A plan that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Rank, world size, worker or workers out of range.
    #[error("partition: {0}")]
    Partition(String),
    /// A batch size of zero or a block of no shards.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The dataset has no rows.
    #[error("the dataset has no rows")]
    Empty,
    /// Dropping the remainder leaves nothing: fewer samples than one batch on every rank.
    #[error(
        "{total} samples do not fill one batch of {batch_size} on each of {world_size} ranks: \
         pad the remainder instead of dropping it (`--remainder pad`), or use smaller batches"
    )]
    TooSmall {
        /// Samples in the dataset.
        total: u64,
        /// The batch size.
        batch_size: u64,
        /// Ranks.
        world_size: u32,
    },
    /// More shards than a plan indexes.
    #[error("{0} shards; at most 2^32 - 1")]
    TooManyShards(usize),
}

/// A sample: a row of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sample {
    /// The shard's index in the manifest.
    pub shard: u32,
    /// The row within the shard.
    pub row: u64,
}

/// One block of the epoch's order.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block's first position in the epoch's order.
    pub start: u64,
    /// Its shards (manifest indices) in the epoch's shard order.
    pub shards: Vec<u32>,
    /// Rows before each of `shards` within the block, and the block's rows last.
    bounds: Vec<u64>,
    rows: Permutation,
}

impl Block {
    /// Rows in the block.
    pub fn len(&self) -> u64 {
        self.bounds.last().copied().unwrap_or(0)
    }

    /// Whether the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample at `offset` (`< len()`) within the block.
    fn sample(&self, offset: u64) -> Sample {
        self.sample_of(self.rows.apply(offset))
    }

    /// The samples at `start..end` (`end <= len()`) within the block, in order.
    pub fn samples(&self, start: u64, end: u64, out: &mut Vec<Sample>) {
        self.rows
            .apply_run(start, end, |slot| out.push(self.sample_of(slot)));
    }

    /// The sample in row `slot` of the block's shards laid end to end.
    fn sample_of(&self, slot: u64) -> Sample {
        // The last bound <= slot: the shard that holds it.
        let i = self
            .bounds
            .partition_point(|&b| b <= slot)
            .saturating_sub(1);
        Sample {
            shard: self.shards.get(i).copied().unwrap_or(0),
            row: slot - self.bounds.get(i).copied().unwrap_or(0),
        }
    }
}

/// The order of one epoch's samples.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    blocks: Vec<Block>,
    total: u64,
}

impl EpochOrder {
    /// The order for `epoch` of the dataset whose manifest is `manifest` and whose shards have
    /// `shard_rows` rows, shuffled with `seed`, `block_shards` shards to a block.
    pub fn new(
        manifest: &Cid,
        shard_rows: &[u64],
        seed: u64,
        epoch: u64,
        block_shards: u32,
    ) -> Result<Self, PlanError> {
        if block_shards == 0 {
            return Err(PlanError::Zero("block_shards"));
        }
        let shards = u32::try_from(shard_rows.len())
            .map_err(|_| PlanError::TooManyShards(shard_rows.len()))?;
        let key = |what: &str, index: u64| {
            let mut h = blake3::Hasher::new_derive_key("tessera stream order 1");
            h.update(&manifest.to_bytes())
                .update(&seed.to_le_bytes())
                .update(&epoch.to_le_bytes())
                .update(what.as_bytes())
                .update(&index.to_le_bytes());
            *h.finalize().as_bytes()
        };
        let shard_order = Permutation::new(u64::from(shards), &key("shards", 0));
        let order: Vec<u32> = (0..u64::from(shards))
            .map(|i| u32::try_from(shard_order.apply(i)).unwrap_or(0))
            .collect();
        let mut blocks = Vec::with_capacity(order.len().div_ceil(block_shards as usize));
        let mut start = 0u64;
        for (index, chunk) in order.chunks(block_shards as usize).enumerate() {
            let mut bounds = Vec::with_capacity(chunk.len() + 1);
            let mut rows = 0u64;
            for &s in chunk {
                bounds.push(rows);
                rows = rows.saturating_add(shard_rows.get(s as usize).copied().unwrap_or(0));
            }
            bounds.push(rows);
            if rows == 0 {
                continue;
            }
            blocks.push(Block {
                start,
                shards: chunk.to_vec(),
                bounds,
                rows: Permutation::new(rows, &key("block", index as u64)),
            });
            start = start.saturating_add(rows);
        }
        if start == 0 {
            return Err(PlanError::Empty);
        }
        Ok(Self {
            blocks,
            total: start,
        })
    }

    /// Samples in the epoch (the dataset's rows).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The index of the block holding position `position` (`< total()`).
    pub fn block_of(&self, position: u64) -> usize {
        self.blocks
            .partition_point(|b| b.start <= position)
            .saturating_sub(1)
    }

    /// The sample at `position` of the order; positions past the end wrap around (padding).
    pub fn sample_at(&self, position: u64) -> Sample {
        let position = position % self.total;
        let block = &self.blocks[self.block_of(position)];
        block.sample(position - block.start)
    }
}

/// A run of consecutive positions of the epoch's order, `[start, end)`. Positions past the
/// epoch's samples wrap around to its start (padding).
pub type Run = (u64, u64);

/// The runs of positions that a fresh epoch reads: `[0, W·L)`, where each of the `W` ranks
/// reads `L` samples, a multiple of the batch size (fewer than the epoch's samples when the
/// remainder is dropped, more when it is padded).
pub fn epoch_runs(
    total: u64,
    world_size: u32,
    batch_size: u64,
    remainder: Remainder,
) -> Result<Vec<Run>, PlanError> {
    if batch_size == 0 {
        return Err(PlanError::Zero("batch_size"));
    }
    if world_size == 0 {
        return Err(PlanError::Zero("world_size"));
    }
    if total == 0 {
        return Err(PlanError::Empty);
    }
    let stride = batch_size.saturating_mul(u64::from(world_size));
    let batches = match remainder {
        Remainder::Drop => total / stride,
        Remainder::Pad => total.div_ceil(stride),
    };
    if batches == 0 {
        return Err(PlanError::TooSmall {
            total,
            batch_size,
            world_size,
        });
    }
    Ok(vec![(0, batches.saturating_mul(stride))])
}

/// Positions in `runs`.
fn runs_len(runs: &[Run]) -> u64 {
    runs.iter().map(|(a, b)| b.saturating_sub(*a)).sum()
}

/// The positions `from..to` (counted along `runs`) of `runs`, as runs.
fn cut(runs: &[Run], from: u64, to: u64) -> Vec<Run> {
    let mut out = Vec::new();
    let mut seen = 0u64;
    for &(a, b) in runs {
        let len = b.saturating_sub(a);
        let (lo, hi) = (from.max(seen), to.min(seen + len));
        if lo < hi {
            out.push((a + (lo - seen), a + (hi - seen)));
        }
        seen += len;
        if seen >= to {
            break;
        }
    }
    out
}

/// Rank `rank`'s share of `base`, split among `world_size` ranks: consecutive parts in rank
/// order, as even as they can be (the first `len mod W` ranks read one sample more). A fresh
/// epoch's runs split into equal shares of whole batches.
fn share(base: &[Run], world_size: u32, rank: u32) -> Vec<Run> {
    let len = runs_len(base);
    let (w, r) = (u64::from(world_size.max(1)), u64::from(rank));
    let (each, extra) = (len / w, len % w);
    let start = r * each + r.min(extra);
    cut(base, start, start + each + u64::from(r < extra))
}

/// What is left of `base` once every one of its `world_size` ranks has consumed the first
/// `consumed` samples of its share: the base a job resumed under another world size, batch
/// size or worker count reads, so that it reads exactly the samples not yet delivered.
///
/// Ranks of a data-parallel job step together, so one rank's count stands for all of them.
pub fn rest(base: &[Run], world_size: u32, consumed: u64) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for rank in 0..world_size.max(1) {
        let part = share(base, world_size, rank);
        let len = runs_len(&part);
        for run in cut(&part, consumed.min(len), len) {
            match out.last_mut() {
                Some(last) if last.1 == run.0 => last.1 = run.1,
                _ => out.push(run),
            }
        }
    }
    out
}

/// How an epoch's positions are split among ranks and workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// This rank's positions, in order.
    share: Vec<Run>,
    /// Samples before each run of `share`.
    before: Vec<u64>,
    /// Samples this rank reads.
    pub len: u64,
    /// The batch size.
    pub batch_size: u64,
    /// Who reads.
    pub partition: Partition,
}

impl Split {
    /// Splits `total` samples among `partition.world_size` ranks in batches of `batch_size`.
    pub fn new(
        total: u64,
        partition: Partition,
        batch_size: u64,
        remainder: Remainder,
    ) -> Result<Self, PlanError> {
        partition.check()?;
        let base = epoch_runs(total, partition.world_size, batch_size, remainder)?;
        Self::over(&base, partition, batch_size)
    }

    /// Splits the positions `base` (a fresh epoch's [`epoch_runs`], or what a resumed job
    /// has left: [`rest`]) among the ranks, in batches of `batch_size`; a rank's last batch
    /// is short when its share is not a whole number of batches.
    pub fn over(base: &[Run], partition: Partition, batch_size: u64) -> Result<Self, PlanError> {
        partition.check()?;
        if batch_size == 0 {
            return Err(PlanError::Zero("batch_size"));
        }
        let share = share(base, partition.world_size, partition.rank);
        let mut before = Vec::with_capacity(share.len());
        let mut len = 0u64;
        for (a, b) in &share {
            before.push(len);
            len += b - a;
        }
        Ok(Self {
            share,
            before,
            len,
            batch_size,
            partition,
        })
    }

    /// Batches this rank reads.
    pub fn batches_per_rank(&self) -> u64 {
        self.len.div_ceil(self.batch_size)
    }

    /// The epoch position of this rank's sample `i` (`< len`), and how many of the rank's
    /// samples from `i` on have consecutive positions.
    pub fn position(&self, i: u64) -> (u64, u64) {
        let run = self.before.partition_point(|&b| b <= i).saturating_sub(1);
        match (self.share.get(run), self.before.get(run)) {
            (Some(&(a, b)), Some(&first)) => {
                let p = a + (i - first);
                (p, b.saturating_sub(p))
            }
            _ => (0, 0),
        }
    }

    /// This worker's spans of the rank's samples, `[start, end)` in rank sample numbers, in
    /// order, from the rank's sample `consumed` on. The batch that `consumed` falls inside is
    /// cut short at the front, so batch boundaries stay where an uninterrupted run had them.
    ///
    /// A data loader hands its workers' batches out in order, so the batches a rank has
    /// delivered are always the first ones: the end of the last one is all a restart needs,
    /// whatever the number of workers.
    pub fn spans(&self, consumed: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let Partition {
            worker, workers, ..
        } = self.partition;
        let first = consumed.min(self.len) / self.batch_size;
        (first..self.batches_per_rank())
            .filter(move |i| i % u64::from(workers) == u64::from(worker))
            .map(move |i| {
                let start = (i * self.batch_size).max(consumed);
                (start, ((i + 1) * self.batch_size).min(self.len))
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use proptest::prelude::*;
    use tessera_formats::address::dag_cbor_cid;

    use super::*;

    fn read_all(
        order: &EpochOrder,
        world_size: u32,
        workers: u32,
        batch: u64,
        remainder: Remainder,
    ) -> (Vec<Vec<Sample>>, u64) {
        let mut ranks = Vec::new();
        let mut per_rank = 0;
        for rank in 0..world_size {
            let mut got = Vec::new();
            for worker in 0..workers {
                let partition = Partition {
                    rank,
                    world_size,
                    worker,
                    workers,
                };
                let split = Split::new(order.total(), partition, batch, remainder).unwrap();
                per_rank = split.len;
                for (a, b) in split.spans(0) {
                    assert_eq!(b - a, batch);
                    got.extend((a..b).map(|i| (i, order.sample_at(split.position(i).0))));
                }
            }
            // Workers interleave batch by batch, as a data loader does.
            got.sort_by_key(|(i, _)| *i);
            ranks.push(got.into_iter().map(|(_, s)| s).collect());
        }
        (ranks, per_rank)
    }

    proptest! {
        #[test]
        fn every_sample_once_and_equal_batches(
            rows in prop::collection::vec(0u64..40, 1..12),
            world_size in 1u32..5,
            workers in 1u32..4,
            batch in 1u64..7,
            block_shards in 1u32..4,
            pad in any::<bool>(),
        ) {
            let total: u64 = rows.iter().sum();
            prop_assume!(total > 0);
            let cid = dag_cbor_cid(b"m");
            let order = EpochOrder::new(&cid, &rows, 1, 0, block_shards).unwrap();
            let remainder = if pad { Remainder::Pad } else { Remainder::Drop };
            if !pad && total < batch * u64::from(world_size) {
                let first = Partition { rank: 0, world_size, worker: 0, workers };
                let too_small = matches!(
                    Split::new(total, first, batch, remainder),
                    Err(PlanError::TooSmall { .. })
                );
                prop_assert!(too_small);
                return Ok(());
            }
            let (ranks, per_rank) = read_all(&order, world_size, workers, batch, remainder);
            let mut count: HashMap<Sample, u64> = HashMap::new();
            for rank in &ranks {
                prop_assert_eq!(rank.len() as u64, per_rank);
                for s in rank {
                    prop_assert!(s.row < rows[s.shard as usize]);
                    *count.entry(*s).or_default() += 1;
                }
            }
            let read = per_rank * u64::from(world_size);
            if pad {
                prop_assert_eq!(count.len() as u64, total, "every sample read");
                prop_assert!(read - total < batch * u64::from(world_size));
            } else {
                prop_assert!(count.values().all(|&n| n == 1), "a sample read twice");
                prop_assert!(total - read < batch * u64::from(world_size));
            }
        }
    }

    /// The positions a job reads, rank by rank, worker batches interleaved as a data loader
    /// hands them out; the first `consumed` of every rank only when `delivered`.
    fn positions(
        base: &[Run],
        world_size: u32,
        workers: u32,
        batch: u64,
        consumed: u64,
        delivered: bool,
    ) -> Vec<u64> {
        let mut all = Vec::new();
        for rank in 0..world_size {
            let mut got = Vec::new();
            for worker in 0..workers {
                let partition = Partition {
                    rank,
                    world_size,
                    worker,
                    workers,
                };
                let split = Split::over(base, partition, batch).unwrap();
                let spans: Vec<_> = if delivered {
                    split.spans(0).collect()
                } else {
                    split.spans(consumed).collect()
                };
                for (a, b) in spans {
                    for i in a..b {
                        if delivered && i >= consumed {
                            break;
                        }
                        got.push((i, split.position(i).0));
                    }
                }
            }
            got.sort_unstable();
            all.extend(got.into_iter().map(|(_, p)| p));
        }
        all
    }

    proptest! {
        #[test]
        fn a_job_resumed_under_another_world_reads_exactly_what_is_left(
            total in 1u64..400,
            worlds in prop::collection::vec((1u32..5, 1u32..4, 1u64..9), 2..4),
            stops in prop::collection::vec(0u64..120, 3),
            pad in any::<bool>(),
        ) {
            let (w0, _, b0) = worlds[0];
            let remainder = if pad { Remainder::Pad } else { Remainder::Drop };
            let Ok(mut base) = epoch_runs(total, w0, b0, remainder) else { return Ok(()); };
            let planned: Vec<u64> = positions(&base, w0, 1, b0, 0, false);
            let mut read = Vec::new();
            for (i, &(world, workers, batch)) in worlds.iter().enumerate() {
                let stop = stops[i];
                if i + 1 == worlds.len() {
                    read.extend(positions(&base, world, workers, batch, 0, false));
                } else {
                    read.extend(positions(&base, world, workers, batch, stop, true));
                    base = rest(&base, world, stop);
                }
            }
            let (mut planned, mut read) = (planned, read);
            planned.sort_unstable();
            read.sort_unstable();
            prop_assert_eq!(read, planned, "every planned position once, none other");
        }
    }

    #[test]
    fn a_share_that_is_not_whole_batches_ends_in_a_short_one() {
        let short = Split::over(&[(0, 12)], Partition::SINGLE, 5).unwrap();
        assert_eq!(
            short.spans(0).collect::<Vec<_>>(),
            [(0, 5), (5, 10), (10, 12)]
        );
        assert_eq!(short.spans(7).collect::<Vec<_>>(), [(7, 10), (10, 12)]);
    }

    #[test]
    fn the_same_seed_and_epoch_give_the_same_order_and_others_do_not() {
        let cid = dag_cbor_cid(b"m");
        let rows = [100, 50, 75, 120, 10];
        let all = |seed, epoch| {
            let order = EpochOrder::new(&cid, &rows, seed, epoch, 2).unwrap();
            (0..order.total())
                .map(|p| order.sample_at(p))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(7, 0), all(7, 0));
        assert_ne!(all(7, 0), all(7, 1));
        assert_ne!(all(7, 0), all(8, 0));
        let other = EpochOrder::new(&dag_cbor_cid(b"n"), &rows, 7, 0, 2).unwrap();
        assert_ne!(
            all(7, 0),
            (0..other.total())
                .map(|p| other.sample_at(p))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn neighbours_come_from_every_shard_of_their_block() {
        let cid = dag_cbor_cid(b"m");
        let order = EpochOrder::new(&cid, &[1000; 8], 3, 0, 4).unwrap();
        let first: Vec<u32> = (0..40).map(|p| order.sample_at(p).shard).collect();
        let shards: std::collections::BTreeSet<u32> = first.iter().copied().collect();
        assert_eq!(shards.len(), 4, "{first:?}");
        assert_eq!(shards, order.blocks()[0].shards.iter().copied().collect(),);
    }

    #[test]
    fn resumed_spans_continue_where_the_run_stopped() {
        let partition = Partition {
            rank: 1,
            world_size: 2,
            worker: 0,
            workers: 1,
        };
        let split = Split::new(100, partition, 8, Remainder::Drop).unwrap();
        assert_eq!(split.len, 48);
        let all: Vec<u64> = split.spans(0).flat_map(|(a, b)| a..b).collect();
        for consumed in [0, 1, 7, 8, 20, 47, 48, 60] {
            let rest: Vec<u64> = split.spans(consumed).flat_map(|(a, b)| a..b).collect();
            assert_eq!(rest, all[(consumed.min(48) as usize)..], "{consumed}");
        }
        let spans: Vec<_> = split.spans(20).collect();
        assert_eq!(spans[0], (20, 24), "the cut batch ends where it did");
        assert_eq!(split.position(0), (48, 48));
    }

    #[test]
    fn bad_plans_are_refused() {
        let cid = dag_cbor_cid(b"m");
        assert_eq!(
            EpochOrder::new(&cid, &[0, 0], 1, 0, 2).unwrap_err(),
            PlanError::Empty
        );
        assert!(EpochOrder::new(&cid, &[1], 1, 0, 0).is_err());
        let bad = Partition {
            rank: 2,
            world_size: 2,
            worker: 0,
            workers: 1,
        };
        assert!(matches!(
            Split::new(10, bad, 1, Remainder::Drop),
            Err(PlanError::Partition(_))
        ));
        assert!(matches!(
            Split::new(10, Partition::SINGLE, 0, Remainder::Drop),
            Err(PlanError::Zero(_))
        ));
        let four = Partition {
            world_size: 4,
            ..Partition::SINGLE
        };
        let too_small = Split::new(10, four, 4, Remainder::Drop).unwrap_err();
        assert!(matches!(too_small, PlanError::TooSmall { .. }));
        // The advice names the option as users type it.
        assert!(
            too_small.to_string().contains("`--remainder pad`"),
            "{too_small}"
        );
        assert_eq!(Split::new(10, four, 4, Remainder::Pad).unwrap().len, 4);
    }
}
