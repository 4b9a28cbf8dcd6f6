//! A segment's rows: each shard's needed rows put in the order they are used (on the thread
//! that decoded the shard), and the segment's batches merged from them one at a time.

use std::collections::VecDeque;

use arrow::{
    array::RecordBatch,
    compute::{concat_batches, interleave_record_batch},
};

use super::read::READ_BATCH_ROWS;
use crate::error::StreamError;

/// A segment's decoded rows: each shard's needed rows in the order they are used, and where
/// each sample is among them, in output order. Batches are put together from it one at a
/// time, so no copy of the whole segment is made, and a part is let go once its last row is
/// taken: the segment's memory shrinks as it is emitted.
pub(super) struct SegmentRows {
    parts: Vec<RecordBatch>,
    /// Rows of each part not yet taken.
    uses: Vec<usize>,
    /// (part, row in part) of each sample, in output order.
    indices: Vec<(usize, usize)>,
    /// Samples already taken.
    taken: usize,
}

impl SegmentRows {
    pub(super) fn new(parts: Vec<RecordBatch>, indices: Vec<(usize, usize)>) -> Self {
        let mut uses = vec![0; parts.len()];
        for &(part, _) in &indices {
            if let Some(n) = uses.get_mut(part) {
                *n += 1;
            }
        }
        Self {
            parts,
            uses,
            indices,
            taken: 0,
        }
    }

    pub(super) fn left(&self) -> usize {
        self.indices.len() - self.taken
    }

    /// The next `n` samples as one batch.
    pub(super) fn take(&mut self, n: usize) -> Result<RecordBatch, StreamError> {
        let indices = &self.indices[self.taken..self.taken + n];
        let parts: Vec<&RecordBatch> = self.parts.iter().collect();
        let batch = interleave_record_batch(&parts, indices).map_err(|e| StreamError::Parquet {
            name: "(segment)".into(),
            reason: e.to_string(),
        })?;
        for &(part, _) in indices {
            if let Some(n) = self.uses.get_mut(part) {
                *n -= 1;
                if *n == 0 {
                    let spent = &mut self.parts[part];
                    *spent = RecordBatch::new_empty(spent.schema());
                }
            }
        }
        self.taken += n;
        Ok(batch)
    }
}

/// Takes the next `want` samples off `pending`, across segments when a batch spans two.
pub(super) fn take_front(
    pending: &mut VecDeque<SegmentRows>,
    want: usize,
) -> Result<RecordBatch, StreamError> {
    let mut parts = Vec::new();
    let mut taken = 0;
    while taken < want {
        let Some(front) = pending.front_mut() else {
            break;
        };
        let n = (want - taken).min(front.left());
        if n > 0 {
            parts.push(front.take(n)?);
            taken += n;
        }
        if front.left() == 0 {
            pending.pop_front();
        }
    }
    let short = || StreamError::Parquet {
        name: "(batch)".into(),
        reason: format!("{taken} rows for a batch of {want}"),
    };
    if taken < want {
        return Err(short());
    }
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        [first, ..] => concat_batches(&first.schema(), &parts).map_err(|e| StreamError::Parquet {
            name: "(batch)".into(),
            reason: e.to_string(),
        }),
        [] => Err(short()),
    }
}

/// One shard's needed rows as read: in row order, in batches.
pub(super) struct ShardRows {
    batches: Vec<RecordBatch>,
    /// Where a row of the shard is among the rows read.
    ranks: Ranks,
    /// Rows before each batch, and after the last.
    offsets: Vec<usize>,
}

/// The rank of a row among the rows read from a shard.
pub(super) enum Ranks {
    /// Every row was read: a row is its own rank.
    All,
    /// Most rows were read: a table of every row's rank (`u32::MAX` for those not read), so a
    /// lookup is one memory access and not a search.
    Dense(Vec<u32>),
    /// Few rows were read: their sorted list, searched.
    Sparse(Vec<u64>),
}

impl Ranks {
    /// For `rows` (sorted, distinct) of a shard of `total` rows.
    pub(super) fn new(rows: Vec<u64>, total: u64) -> Self {
        if rows.len() as u64 == total {
            return Self::All;
        }
        let dense = usize::try_from(total)
            .ok()
            .filter(|&t| t <= 8 * rows.len() && u32::try_from(t).is_ok());
        match dense {
            Some(total) => {
                let mut table = vec![u32::MAX; total];
                for (rank, &row) in rows.iter().enumerate() {
                    if let (Some(slot), Ok(rank)) = (
                        usize::try_from(row).ok().and_then(|r| table.get_mut(r)),
                        u32::try_from(rank),
                    ) {
                        *slot = rank;
                    }
                }
                Self::Dense(table)
            }
            None => Self::Sparse(rows),
        }
    }

    fn of(&self, row: u64) -> Option<usize> {
        match self {
            Self::All => usize::try_from(row).ok(),
            Self::Dense(table) => {
                let rank = *table.get(usize::try_from(row).ok()?)?;
                (rank != u32::MAX).then_some(rank as usize)
            }
            Self::Sparse(rows) => rows.binary_search(&row).ok(),
        }
    }
}

impl ShardRows {
    pub(super) fn new(batches: Vec<RecordBatch>, ranks: Ranks) -> Self {
        let mut offsets = vec![0];
        for b in &batches {
            offsets.push(offsets.last().copied().unwrap_or(0) + b.num_rows());
        }
        Self {
            batches,
            ranks,
            offsets,
        }
    }

    /// (batch, row in batch) of `row`.
    fn locate(&self, row: u64) -> Option<(usize, usize)> {
        let rank = self.ranks.of(row)?;
        let batch = self
            .offsets
            .partition_point(|&o| o <= rank)
            .checked_sub(1)?;
        (batch + 1 < self.offsets.len()).then(|| (batch, rank - self.offsets[batch]))
    }

    /// The rows of `order` (rows of the shard, each among those read), in that order, in
    /// batches of at most [`READ_BATCH_ROWS`]. A random gather over one shard: the emitter's
    /// interleave of the segment's shards then reads each of them front to back.
    pub(super) fn in_order(
        self,
        name: &str,
        order: &[u64],
    ) -> Result<Vec<RecordBatch>, StreamError> {
        let bad = |reason: String| StreamError::Parquet {
            name: name.to_string(),
            reason,
        };
        let indices = order
            .iter()
            .map(|&row| {
                self.locate(row)
                    .ok_or_else(|| bad(format!("row {row} is missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        indices
            .chunks(READ_BATCH_ROWS)
            .map(|chunk| interleave_record_batch(&batches, chunk).map_err(|e| bad(e.to_string())))
            .collect()
    }
}

/// `rows` of a shard of `total` rows (as the manifest says) sorted and without repeats: marked
/// in a bitmap when they fit it, every row when there are as many as the shard has (the
/// samples of a block are distinct, so a segment that covers it needs them all), else sorted.
pub(super) fn needed_rows(mut rows: Vec<u64>, total: u64) -> Vec<u64> {
    if rows.len() as u64 >= total && total > 0 {
        return (0..total).collect();
    }
    let fits = usize::try_from(total)
        .ok()
        .filter(|&t| t <= 64 * rows.len() && rows.iter().all(|&r| r < total));
    let Some(total) = fits else {
        rows.sort_unstable();
        rows.dedup();
        return rows;
    };
    let mut marked = vec![0u64; total.div_ceil(64)];
    for row in rows.iter().filter_map(|&r| usize::try_from(r).ok()) {
        if let Some(word) = marked.get_mut(row / 64) {
            *word |= 1 << (row % 64);
        }
    }
    rows.clear();
    for (w, &word) in marked.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            rows.push((w * 64) as u64 + u64::from(bits.trailing_zeros()));
            bits &= bits - 1;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{AsArray as _, Int64Array},
        datatypes::{DataType, Field, Int64Type, Schema},
    };
    use proptest::prelude::*;

    use super::*;

    /// `rows` of a shard, as read: an `id` column holding each row's number, in batches of
    /// `per_batch`.
    fn read(rows: &[u64], per_batch: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        rows.chunks(per_batch)
            .map(|chunk| {
                let ids = Int64Array::from_iter_values(chunk.iter().map(|&r| r as i64));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap()
            })
            .collect()
    }

    fn ids(batches: &[RecordBatch]) -> Vec<u64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .map(|id| id as u64)
            .collect()
    }

    #[test]
    fn a_shard_is_put_in_order_in_batches_of_at_most_the_read_size() {
        let total = 2 * READ_BATCH_ROWS as u64 + 100;
        let rows: Vec<u64> = (0..total).filter(|r| r % 3 != 0).collect();
        // Every row read, back to front, and one of them twice (as a padded epoch has it).
        let mut order: Vec<u64> = rows.iter().rev().copied().collect();
        order.push(rows[7]);
        let shard = ShardRows::new(read(&rows, 1000), Ranks::new(rows.clone(), total));
        let got = shard.in_order("s", &order).unwrap();
        assert!(got.iter().all(|b| b.num_rows() <= READ_BATCH_ROWS));
        assert_eq!(ids(&got), order);
    }

    #[test]
    fn a_row_that_was_not_read_is_an_error() {
        let rows = vec![1, 2, 5];
        let shard = ShardRows::new(read(&rows, 2), Ranks::new(rows.clone(), 10));
        let err = shard.in_order("part-7", &[2, 3]).unwrap_err();
        assert!(err.to_string().contains("row 3 is missing"), "{err}");
    }

    #[test]
    fn a_part_is_let_go_once_its_last_row_is_taken() {
        let parts = read(&(0..6).collect::<Vec<_>>(), 3);
        // Part 0's rows are all taken by the fourth sample; part 1's last goes in the sixth.
        let indices = vec![(0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (1, 2)];
        let mut segment = SegmentRows::new(parts, indices);
        assert_eq!(ids(&[segment.take(3).unwrap()]), vec![0, 3, 1]);
        assert_eq!(segment.parts[0].num_rows(), 3);
        assert_eq!(ids(&[segment.take(1).unwrap()]), vec![2]);
        assert_eq!(segment.parts[0].num_rows(), 0);
        assert_eq!(segment.parts[1].num_rows(), 3);
        assert_eq!(ids(&[segment.take(2).unwrap()]), vec![4, 5]);
        assert_eq!(segment.parts[1].num_rows(), 0);
        assert_eq!(segment.left(), 0);
    }

    proptest! {
        /// Whichever way they are found, the needed rows are the asked ones, sorted, once each;
        /// or every row of the shard when as many were asked as it has.
        #[test]
        fn needed_rows_are_the_asked_ones_sorted_once(
            total in 0u64..5_000,
            rows in proptest::collection::vec(0u64..6_000, 0..800),
            past_the_end in any::<bool>(),
        ) {
            // Mostly rows of the shard (the bitmap's case), sometimes past its end too.
            let rows: Vec<u64> = if past_the_end {
                rows
            } else {
                rows.iter().map(|r| r % total.max(1)).collect()
            };
            let mut want = rows.clone();
            want.sort_unstable();
            want.dedup();
            let got = needed_rows(rows.clone(), total);
            if rows.len() as u64 >= total && total > 0 {
                prop_assert_eq!(got, (0..total).collect::<Vec<_>>());
            } else {
                prop_assert_eq!(got, want);
            }
        }

        /// However many rows were read (every row, most, or few: each way of ranking them) and
        /// in whatever batches, a shard's rows come out in the order asked, repeats included.
        #[test]
        fn a_shard_comes_out_in_the_order_asked(
            total in 1u64..2_000,
            keep_one_in in 1u64..20,
            per_batch in 1usize..700,
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..1_500),
        ) {
            let rows: Vec<u64> = (0..total).filter(|r| r % keep_one_in == 0).collect();
            let order: Vec<u64> = picks.iter().map(|i| rows[i.index(rows.len())]).collect();
            let shard = ShardRows::new(read(&rows, per_batch), Ranks::new(rows.clone(), total));
            prop_assert_eq!(ids(&shard.in_order("s", &order).unwrap()), order);
        }
    }
}
