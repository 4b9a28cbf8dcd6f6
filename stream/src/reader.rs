//! The reader: a rank's (or worker's) part of an epoch as Arrow record batches.
//!
//! ```text
//! plan ─▶ segments: runs of the worker's samples that fall in one block
//!   prefetcher: for each segment's shards, in use order ─▶ cache.reserve ─▶ fetch or verify
//!               (spawned; at most `prefetch_shards` ahead, in a bounded queue)
//!   decoder:    for each segment ─▶ each shard's needed rows (Parquet row selection,
//!               projected columns), put in the order they are used, the shards on
//!               blocking threads in parallel
//!   emitter:    the shards' rows merged into the epoch's order ─▶ cut at batch boundaries
//!               ─▶ bounded channel ─▶ next_batch()
//! ```
//!
//! The random gather that shuffling takes is done once per shard, on the threads that decode
//! the shards, over the rows of one shard. The one emitter reads each shard's rows front to
//! back, which takes it a quarter to a third of the time of a gather over the whole block: the
//! one thread does the least of the work.
//!
//! Memory: the rows of two segments (each at most one block's, capped at
//! [`StreamOptions::segment_samples`]), a second copy of each shard's rows while they are put
//! in order (up to a block's worth: a block's shards are decoded at once), and the batches in
//! the channel. A segment's rows are let go batch by batch as they are emitted. Rows come only
//! from shard files whose bytes were just checked against their CID.

use std::{
    collections::VecDeque,
    fs::File,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow::{
    array::RecordBatch,
    compute::{concat_batches, interleave_record_batch},
    datatypes::SchemaRef,
};
use cid::Cid;
use parquet::arrow::{
    ProjectionMask,
    arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector},
};
use serde::{Deserialize, Serialize};
use tessera_client::Session;
use tessera_formats::Manifest;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use crate::{
    cache::{Lease, ShardCache},
    error::StreamError,
    plan::{EpochOrder, Partition, PlanError, Remainder, Sample, Split},
};

/// Most samples decoded together by default: 2^22, so that a block of four shards of a
/// million rows each is decoded once. A block with more is read in several segments, each
/// decoding every shard of the block again.
pub const DEFAULT_SEGMENT_SAMPLES: usize = 1 << 22;
/// Batches decoded ahead of the consumer.
const BATCHES_AHEAD: usize = 4;

/// What to read and how.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Who reads.
    pub partition: Partition,
    /// The shuffle's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// Samples per batch.
    pub batch_size: u64,
    /// Shards whose samples are shuffled together.
    pub block_shards: u32,
    /// What happens to the samples that do not fill a batch on every rank.
    pub remainder: Remainder,
    /// Columns to read (in the file's order); all if `None`.
    pub columns: Option<Vec<String>>,
    /// Shards fetched ahead of the one being read.
    pub prefetch_shards: usize,
    /// Samples of this rank already consumed (from a saved [`StreamState`]).
    pub consumed: u64,
    /// Most samples decoded together: a block with more is read in segments of this many,
    /// each decoding the block's shards again. Memory grows with it.
    pub segment_samples: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            partition: Partition::SINGLE,
            seed: 0,
            epoch: 0,
            batch_size: 1024,
            block_shards: 4,
            remainder: Remainder::Drop,
            columns: None,
            prefetch_shards: 4,
            consumed: 0,
            segment_samples: DEFAULT_SEGMENT_SAMPLES,
        }
    }
}

/// Where a rank stands in an epoch: enough to resume it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// The dataset version.
    pub manifest: Cid,
    /// The shuffle's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// Ranks in the job.
    pub world_size: u32,
    /// This rank.
    pub rank: u32,
    /// Samples per batch.
    pub batch_size: u64,
    /// Samples of this rank's part of the epoch already consumed.
    pub consumed: u64,
}

impl StreamState {
    /// Checks that this state belongs to a stream of `manifest` with `options`, and returns
    /// the options with its position.
    pub fn resume(
        &self,
        manifest: &Cid,
        mut options: StreamOptions,
    ) -> Result<StreamOptions, StreamError> {
        let p = &options.partition;
        let same = self.manifest == *manifest
            && self.seed == options.seed
            && self.world_size == p.world_size
            && self.rank == p.rank
            && self.batch_size == options.batch_size;
        if !same {
            return Err(StreamError::StateMismatch(format!(
                "{} seed {} rank {}/{} batch {}",
                self.manifest, self.seed, self.rank, self.world_size, self.batch_size
            )));
        }
        options.epoch = self.epoch;
        options.consumed = self.consumed;
        Ok(options)
    }
}

/// A stream of one worker's batches of an epoch.
#[derive(Debug)]
pub struct DatasetStream {
    batches: mpsc::Receiver<Result<(RecordBatch, u64), StreamError>>,
    state: StreamState,
    schema: SchemaRef,
    batches_left: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DatasetStream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DatasetStream {
    /// Starts reading `manifest` (whose CID is `manifest_cid`) through `cache`.
    pub fn open(
        session: &Session,
        manifest_cid: Cid,
        manifest: Arc<Manifest>,
        cache: ShardCache,
        options: &StreamOptions,
    ) -> Result<Self, StreamError> {
        let rows: Vec<u64> = manifest.shards.iter().map(|s| s.rows).collect();
        let order = EpochOrder::new(
            &manifest_cid,
            &rows,
            options.seed,
            options.epoch,
            options.block_shards,
        )?;
        let split = Split::new(
            order.total(),
            options.partition,
            options.batch_size,
            options.remainder,
        )?;
        if options.segment_samples == 0 {
            return Err(PlanError::Zero("segment_samples").into());
        }
        let spans: Vec<(u64, u64)> = split.spans(options.consumed).collect();
        let schema = output_schema(&manifest, options.columns.as_deref())?;
        let plan = Arc::new(Plan {
            order,
            split,
            spans,
            manifest,
            segment_samples: options.segment_samples,
        });
        // One slot per shard fetched ahead, and one for the segment they belong to.
        let (steps_tx, steps_rx) = mpsc::channel(options.prefetch_shards.max(1) + 1);
        let (batches_tx, batches_rx) = mpsc::channel(BATCHES_AHEAD);
        let prefetcher = tokio::spawn(prefetch(
            plan.clone(),
            cache,
            session.clone_handle(),
            steps_tx,
        ));
        let columns = options.columns.clone();
        // One decoded segment waits while the emitter cuts the one before into batches.
        let (decoded_tx, decoded_rx) = mpsc::channel(1);
        let decoder = tokio::spawn(decode(plan.clone(), columns, steps_rx, decoded_tx));
        let emitter = tokio::spawn(emit(decoded_rx, batches_tx));
        Ok(Self {
            batches: batches_rx,
            state: StreamState {
                manifest: manifest_cid,
                seed: options.seed,
                epoch: options.epoch,
                world_size: options.partition.world_size,
                rank: options.partition.rank,
                batch_size: options.batch_size,
                consumed: options.consumed,
            },
            schema,
            batches_left: plan.spans.len() as u64,
            tasks: vec![prefetcher, decoder, emitter],
        })
    }

    /// The batches' schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Batches this stream has still to yield.
    pub fn batches_left(&self) -> u64 {
        self.batches_left
    }

    /// The next batch, or `None` at the end of this worker's part of the epoch.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch, StreamError>> {
        match self.batches.recv().await? {
            Ok((batch, end)) => {
                self.state.consumed = end;
                self.batches_left = self.batches_left.saturating_sub(1);
                Some(Ok(batch))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Where the stream stands: for one worker per rank, the rank's position; with several,
    /// the rank's count is the total of batches the data loader handed out, which the job
    /// knows.
    pub fn state(&self) -> StreamState {
        self.state.clone()
    }
}

struct Plan {
    order: EpochOrder,
    split: Split,
    spans: Vec<(u64, u64)>,
    manifest: Arc<Manifest>,
    segment_samples: usize,
}

/// Runs of the worker's samples in one block each: (samples in output order, shards needed
/// in use order).
struct Segment {
    samples: Vec<Sample>,
    shards: Vec<u32>,
    /// The spans (batches) whose last sample is in this segment.
    span_ends: Vec<(u64, u64)>,
}

impl Plan {
    fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        let mut span = 0usize;
        let mut next = self.spans.first().map_or(0, |s| s.0);
        std::iter::from_fn(move || {
            let mut samples = Vec::new();
            let mut span_ends = Vec::new();
            let mut block = None;
            while let Some(&(start, end)) = self.spans.get(span) {
                let i = next.max(start);
                if i >= end {
                    span_ends.push((start, end));
                    span += 1;
                    continue;
                }
                let position = self.split.position(i) % self.order.total();
                let b = self.order.block_of(position);
                let room = self.segment_samples.saturating_sub(samples.len());
                let Some(found) = self.order.blocks().get(b) else {
                    break;
                };
                if block.is_some_and(|x| x != b) || room == 0 {
                    break;
                }
                block = Some(b);
                // The span's next samples in this block, up to the cap, in one run: their
                // positions are consecutive and end inside the block, so they do not wrap.
                let offset = position - found.start;
                let run = (end - i)
                    .min(found.len().saturating_sub(offset))
                    .min(u64::try_from(room).unwrap_or(u64::MAX))
                    .max(1);
                found.samples(offset, offset + run, &mut samples);
                next = i + run;
            }
            if samples.is_empty() && span_ends.is_empty() {
                return None;
            }
            let shards = match block.and_then(|b| self.order.blocks().get(b)) {
                Some(b) => b
                    .shards
                    .iter()
                    .copied()
                    .filter(|s| samples.iter().any(|x| x.shard == *s))
                    .collect(),
                None => Vec::new(),
            };
            Some(Segment {
                samples,
                shards,
                span_ends,
            })
        })
    }
}

type Ready = JoinHandle<(Lease, Result<File, StreamError>)>;

/// What the prefetcher hands the decoder, in order: a segment, then one item per shard it
/// needs. The plan is walked once, here.
enum Step {
    Segment(Arc<Segment>),
    Shard(Result<Ready, StreamError>),
}

async fn prefetch(plan: Arc<Plan>, cache: ShardCache, session: Session, steps: mpsc::Sender<Step>) {
    let session = Arc::new(session);
    for segment in plan.segments() {
        let segment = Arc::new(segment);
        if steps.send(Step::Segment(segment.clone())).await.is_err() {
            return;
        }
        for &shard in &segment.shards {
            let ready = match plan.manifest.shards.get(shard as usize) {
                Some(entry) => cache.reserve(&entry.layout).await.map(|lease| {
                    let session = session.clone();
                    tokio::spawn(async move {
                        let file = lease.ready(&session).await;
                        (lease, file)
                    })
                }),
                None => Err(StreamError::Parquet {
                    name: format!("shard {shard}"),
                    reason: "not in the manifest".into(),
                }),
            };
            let failed = ready.is_err();
            if steps.send(Step::Shard(ready)).await.is_err() || failed {
                return;
            }
        }
    }
}

/// A segment as the decoder hands it to the emitter: its rows (none if it has no samples)
/// and the batches that end in it.
struct Decoded {
    rows: Option<SegmentRows>,
    span_ends: Vec<(u64, u64)>,
}

/// Reads each segment's rows, while the emitter cuts the previous one into batches.
async fn decode(
    plan: Arc<Plan>,
    columns: Option<Vec<String>>,
    mut steps: mpsc::Receiver<Step>,
    decoded: mpsc::Sender<Result<Decoded, StreamError>>,
) {
    let columns = columns.map(Arc::new);
    while let Some(step) = steps.recv().await {
        let Step::Segment(segment) = step else {
            let _ = decoded.send(Err(out_of_step())).await;
            return;
        };
        // Wait for room first, so at most one decoded segment waits beside the one emitted.
        let Ok(permit) = decoded.reserve().await else {
            return;
        };
        match read_segment(&plan, &segment, columns.clone(), &mut steps).await {
            Ok(rows) => permit.send(Ok(Decoded {
                rows,
                span_ends: segment.span_ends.clone(),
            })),
            Err(e) => {
                permit.send(Err(e));
                return;
            }
        }
    }
}

/// Cuts decoded segments into the worker's batches, in order.
async fn emit(
    mut decoded: mpsc::Receiver<Result<Decoded, StreamError>>,
    batches: mpsc::Sender<Result<(RecordBatch, u64), StreamError>>,
) {
    let mut pending = VecDeque::new();
    let mut idle_since = Instant::now();
    while let Some(segment) = decoded.recv().await {
        // Where the time goes, stage by stage: waiting for the decoder, gathering batches,
        // waiting for the consumer to take them.
        let waited_for_decoder = idle_since.elapsed();
        let (mut gathering, mut waited_for_consumer) = (Duration::ZERO, Duration::ZERO);
        let segment = match segment {
            Ok(segment) => segment,
            Err(e) => {
                let _ = batches.send(Err(e)).await;
                return;
            }
        };
        pending.extend(segment.rows);
        for &(start, end) in &segment.span_ends {
            let want = usize::try_from(end - start).unwrap_or(usize::MAX);
            let gathered = Instant::now();
            let batch = take_front(&mut pending, want);
            gathering += gathered.elapsed();
            let failed = batch.is_err();
            let sent = Instant::now();
            if batches.send(batch.map(|b| (b, end))).await.is_err() || failed {
                return;
            }
            waited_for_consumer += sent.elapsed();
        }
        debug!(
            batches = segment.span_ends.len(),
            ?waited_for_decoder,
            ?gathering,
            ?waited_for_consumer,
            "segment emitted"
        );
        idle_since = Instant::now();
    }
}

/// A segment's decoded rows: each shard's needed rows in the order they are used, and where
/// each sample is among them, in output order. Batches are put together from it one at a
/// time, so no copy of the whole segment is made, and a part is let go once its last row is
/// taken: the segment's memory shrinks as it is emitted.
struct SegmentRows {
    parts: Vec<RecordBatch>,
    /// Rows of each part not yet taken.
    uses: Vec<usize>,
    /// (part, row in part) of each sample, in output order.
    indices: Vec<(usize, usize)>,
    /// Samples already taken.
    taken: usize,
}

impl SegmentRows {
    fn new(parts: Vec<RecordBatch>, indices: Vec<(usize, usize)>) -> Self {
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

    fn left(&self) -> usize {
        self.indices.len() - self.taken
    }

    /// The next `n` samples as one batch.
    fn take(&mut self, n: usize) -> Result<RecordBatch, StreamError> {
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
fn take_front(
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

fn out_of_step() -> StreamError {
    StreamError::io("prefetch")(std::io::Error::other("a shard arrived outside its segment"))
}

/// One shard's needed rows as read: in row order, in batches.
struct ShardRows {
    batches: Vec<RecordBatch>,
    /// Where a row of the shard is among the rows read.
    ranks: Ranks,
    /// Rows before each batch, and after the last.
    offsets: Vec<usize>,
}

/// The rank of a row among the rows read from a shard.
enum Ranks {
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
    fn new(rows: Vec<u64>, total: u64) -> Self {
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
    fn new(batches: Vec<RecordBatch>, ranks: Ranks) -> Self {
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
    fn in_order(self, name: &str, order: &[u64]) -> Result<Vec<RecordBatch>, StreamError> {
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

/// Reads the segment's needed rows from its shards (taken from `steps` in the order the
/// prefetcher reserved them), the shards in parallel on blocking threads.
async fn read_segment(
    plan: &Plan,
    segment: &Segment,
    columns: Option<Arc<Vec<String>>>,
    steps: &mut mpsc::Receiver<Step>,
) -> Result<Option<SegmentRows>, StreamError> {
    if segment.samples.is_empty() {
        return Ok(None);
    }
    // A block's few shards, sorted, with their place in the segment: a lookup per sample.
    let mut slots: Vec<(u32, usize)> = segment
        .shards
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, i))
        .collect();
    slots.sort_unstable();
    let slot = |shard: u32| {
        slots
            .binary_search_by_key(&shard, |&(s, _)| s)
            .ok()
            .map(|at| slots[at].1)
    };
    // Each shard's samples in output order: the rows it is read for, and the order they are
    // put in before the emitter interleaves the shards.
    let mut wanted = vec![Vec::new(); segment.shards.len()];
    for sample in &segment.samples {
        if let Some(i) = slot(sample.shard) {
            wanted[i].push(sample.row);
        }
    }
    let started = Instant::now();
    let mut waited_for_shards = Duration::ZERO;
    let mut reads = Vec::with_capacity(segment.shards.len());
    for (&shard, order) in segment.shards.iter().zip(wanted) {
        let waiting = Instant::now();
        let ready = match steps.recv().await {
            Some(Step::Shard(ready)) => ready?,
            Some(Step::Segment(_)) => return Err(out_of_step()),
            None => {
                return Err(StreamError::io("prefetch")(std::io::Error::other(
                    "stopped",
                )));
            }
        };
        let (lease, file) = ready
            .await
            .map_err(|e| StreamError::io("prefetch")(std::io::Error::other(e)))?;
        waited_for_shards += waiting.elapsed();
        let file = file?;
        let entry = plan.manifest.shards.get(shard as usize);
        let rows = needed_rows(order.clone(), entry.map_or(0, |s| s.rows));
        let name = entry.map(|s| s.name.clone()).unwrap_or_default();
        let columns = columns.clone();
        reads.push(tokio::task::spawn_blocking(move || {
            let read = read_rows(file, &name, &rows, columns.as_deref().map(Vec::as_slice));
            drop(lease);
            let (batches, total) = read?;
            ShardRows::new(batches, Ranks::new(rows, total)).in_order(&name, &order)
        }));
    }
    // Each shard's rows are in the order they are used now: the samples take them front to
    // back, shard by shard, a merge and not a random gather over the whole block.
    let mut parts: Vec<RecordBatch> = Vec::new();
    // Per shard: its next (part, row in part), and the part after its last.
    let mut next = Vec::with_capacity(reads.len());
    for read in reads {
        let batches = read
            .await
            .map_err(|e| StreamError::io("reading a shard")(std::io::Error::other(e)))??;
        let first = parts.len();
        parts.extend(batches);
        next.push(((first, 0), parts.len()));
    }
    let mut indices = Vec::with_capacity(segment.samples.len());
    for sample in &segment.samples {
        let found = slot(sample.shard).and_then(|i| {
            let ((mut part, mut row), end) = *next.get(i)?;
            while part < end && row == parts[part].num_rows() {
                (part, row) = (part + 1, 0);
            }
            next[i].0 = (part, row + 1);
            (part < end).then_some((part, row))
        });
        let Some(index) = found else {
            return Err(StreamError::Parquet {
                name: format!("shard {}", sample.shard),
                reason: format!("row {} is missing", sample.row),
            });
        };
        indices.push(index);
    }
    debug!(
        samples = segment.samples.len(),
        shards = next.len(),
        ?waited_for_shards,
        took = ?started.elapsed(),
        "segment read"
    );
    Ok(Some(SegmentRows::new(parts, indices)))
}

/// `rows` of a shard of `total` rows (as the manifest says) sorted and without repeats: marked
/// in a bitmap when they fit it, every row when there are as many as the shard has (the
/// samples of a block are distinct, so a segment that covers it needs them all), else sorted.
fn needed_rows(mut rows: Vec<u64>, total: u64) -> Vec<u64> {
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

/// Rows decoded per Parquet read; a shard's rows arrive in batches of this many.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// Reads rows `rows` (sorted, distinct) of the Parquet `file`: the batches, and the file's
/// row count.
fn read_rows(
    file: File,
    name: &str,
    rows: &[u64],
    columns: Option<&[String]>,
) -> Result<(Vec<RecordBatch>, u64), StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: name.to_string(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let mask = match columns {
        Some(names) => {
            let roots = root_indices(builder.schema(), names).map_err(bad)?;
            ProjectionMask::roots(builder.parquet_schema(), roots)
        }
        None => ProjectionMask::all(),
    };
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    if let Some(&last) = rows.last()
        && last >= total
    {
        return Err(bad(format!("row {last} of a {total}-row file")));
    }
    let all = rows.len() as u64 == total;
    let mut builder = builder
        .with_projection(mask)
        .with_batch_size(rows.len().clamp(1, READ_BATCH_ROWS));
    if !all {
        builder = builder.with_row_selection(selection(rows));
    }
    let reader = builder.build().map_err(|e| bad(e.to_string()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if read != rows.len() {
        return Err(bad(format!("{read} rows read, {} asked for", rows.len())));
    }
    Ok((batches, total))
}

/// The row selection of `rows` (sorted, distinct), a run of neighbours as one selector.
fn selection(rows: &[u64]) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    let mut iter = rows.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        if first > at {
            selectors.push(RowSelector::skip(usize::try_from(first - at).unwrap_or(0)));
        }
        selectors.push(RowSelector::select(
            usize::try_from(last - first + 1).unwrap_or(0),
        ));
        at = last + 1;
    }
    RowSelection::from(selectors)
}

fn root_indices(schema: &SchemaRef, names: &[String]) -> Result<Vec<usize>, String> {
    names
        .iter()
        .map(|n| schema.index_of(n).map_err(|_| format!("no column {n:?}")))
        .collect()
}

/// The schema of the batches: the manifest's, projected.
fn output_schema(
    manifest: &Manifest,
    columns: Option<&[String]>,
) -> Result<SchemaRef, StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: "(manifest schema)".into(),
        reason,
    };
    let bytes = manifest
        .schema
        .as_ref()
        .map(|s| s.bytes.clone())
        .ok_or_else(|| bad("the manifest has no schema".into()))?;
    // The manifest keeps a bare Schema flatbuffer (verified here before it is read).
    let fb = arrow::ipc::root_as_schema(&bytes).map_err(|e| bad(e.to_string()))?;
    let schema =
        Arc::new(arrow::ipc::convert::try_fb_to_schema(fb).map_err(|e| bad(e.to_string()))?);
    match columns {
        None => Ok(schema),
        Some(names) => {
            let mut roots = names
                .iter()
                .map(|n| {
                    schema.index_of(n).map_err(|_| StreamError::NoColumn {
                        column: n.clone(),
                        columns: schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            roots.sort_unstable();
            roots.dedup();
            Ok(Arc::new(
                schema.project(&roots).map_err(|e| bad(e.to_string()))?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
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
