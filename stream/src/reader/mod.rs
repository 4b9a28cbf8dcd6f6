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
use tessera_dataset::parquet_guard::ParquetLimits;

use arrow::{array::RecordBatch, datatypes::SchemaRef};
use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_client::Session;
use tessera_formats::Manifest;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use crate::{
    cache::{Lease, ShardCache},
    error::StreamError,
    plan::{EpochOrder, Partition, PlanError, Remainder, Run, Sample, Split, epoch_runs, rest},
};

pub(crate) mod read;
mod rows;

use read::{output_schema, read_rows};
use rows::{Ranks, SegmentRows, ShardRows, needed_rows, take_front};

/// Most samples decoded together by default: 2^22, so that a block of four shards of a
/// million rows each is decoded once. A block with more is read in several segments, each
/// decoding every shard of the block again.
pub const DEFAULT_SEGMENT_SAMPLES: usize = 1 << 22;
/// Batches decoded ahead of the consumer.
const BATCHES_AHEAD: usize = 4;
/// Batches in a stream's first segment: read on their own, so that the first batch waits
/// for a few rows of each shard and not for a whole block's (a block's rows take a few
/// hundred milliseconds to decode); the rest of the block is the next segment.
const FIRST_SEGMENT_BATCHES: u64 = 4;

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
    /// The epoch's positions this job reads, when it resumed a job of another shape
    /// ([`StreamState::resume`]); the whole epoch's if `None`.
    pub base: Option<Vec<Run>>,
    /// Most samples decoded together: a block with more is read in segments of this many,
    /// each decoding the block's shards again. Memory grows with it.
    pub segment_samples: usize,
    /// What a shard's Parquet may cost to read; a shard past them fails, by name.
    pub parquet_limits: ParquetLimits,
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
            base: None,
            segment_samples: DEFAULT_SEGMENT_SAMPLES,
            parquet_limits: ParquetLimits::default(),
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
    /// The epoch's positions the job reads, split among its ranks: the whole epoch's, or
    /// what an earlier job of another shape left. Empty in states saved before it was kept.
    #[serde(default)]
    pub base: Vec<Run>,
}

impl StreamState {
    /// Checks that this state belongs to a stream of `manifest` with `options`, and returns
    /// the options with its position. A job of the same world and batch size goes on where
    /// the state stands; one of another shape reads exactly the samples of the epoch that the
    /// saved job had not delivered, split among its own ranks (every rank of the saved job
    /// is taken to have consumed as many samples as this one: ranks step together).
    pub fn resume(
        &self,
        manifest: &Cid,
        mut options: StreamOptions,
    ) -> Result<StreamOptions, StreamError> {
        if self.manifest != *manifest || self.seed != options.seed {
            return Err(StreamError::StateMismatch(format!(
                "it is of {} with seed {}",
                self.manifest, self.seed
            )));
        }
        check_runs(&self.base)?;
        options.epoch = self.epoch;
        let same = self.world_size == options.partition.world_size
            && self.batch_size == options.batch_size;
        if same {
            options.base = (!self.base.is_empty()).then(|| self.base.clone());
            options.consumed = self.consumed;
        } else if self.base.is_empty() {
            return Err(StreamError::StateMismatch(format!(
                "it does not say which samples its job read: resume it with world size {} and batch size {}",
                self.world_size, self.batch_size
            )));
        } else {
            options.base = Some(rest(&self.base, self.world_size, self.consumed));
            options.consumed = 0;
        }
        Ok(options)
    }
}

/// Refuses runs that are not in order, empty or overlapping (a state file is input).
fn check_runs(runs: &[Run]) -> Result<(), StreamError> {
    let mut end = 0u64;
    for (i, &(a, b)) in runs.iter().enumerate() {
        if a >= b || (i > 0 && a < end) {
            return Err(StreamError::StateMismatch(format!(
                "its runs of samples are not in order: {a}..{b}"
            )));
        }
        end = b;
    }
    Ok(())
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
        let base = match &options.base {
            Some(base) => {
                check_runs(base)?;
                base.clone()
            }
            None => epoch_runs(
                order.total(),
                options.partition.world_size,
                options.batch_size,
                options.remainder,
            )?,
        };
        let split = Split::over(&base, options.partition, options.batch_size)?;
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
            batch_size: options.batch_size,
            parquet_limits: options.parquet_limits,
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
                base,
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
    batch_size: u64,
    parquet_limits: ParquetLimits,
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
        let first = FIRST_SEGMENT_BATCHES.saturating_mul(self.batch_size);
        let mut cap = usize::try_from(first)
            .unwrap_or(usize::MAX)
            .clamp(1, self.segment_samples);
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
                let (position, consecutive) = self.split.position(i);
                let position = position % self.order.total();
                let b = self.order.block_of(position);
                let room = cap.saturating_sub(samples.len());
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
                    .min(consecutive)
                    .min(found.len().saturating_sub(offset))
                    .min(u64::try_from(room).unwrap_or(u64::MAX))
                    .max(1);
                found.samples(offset, offset + run, &mut samples);
                next = i + run;
            }
            if samples.is_empty() && span_ends.is_empty() {
                return None;
            }
            cap = self.segment_samples;
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
    /// A shard the segment before used too: the decoder reads it through the handle it
    /// kept, checked then, and it is neither leased nor hashed again.
    Again,
}

async fn prefetch(plan: Arc<Plan>, cache: ShardCache, session: Session, steps: mpsc::Sender<Step>) {
    let session = Arc::new(session);
    let mut before: Vec<u32> = Vec::new();
    for segment in plan.segments() {
        let segment = Arc::new(segment);
        if steps.send(Step::Segment(segment.clone())).await.is_err() {
            return;
        }
        for &shard in &segment.shards {
            if before.contains(&shard) {
                if steps.send(Step::Again).await.is_err() {
                    return;
                }
                continue;
            }
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
        before.clone_from(&segment.shards);
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
    // The last segment's shards, leased and open, for the next one that reads them again.
    let mut held = Held::new();
    while let Some(step) = steps.recv().await {
        let Step::Segment(segment) = step else {
            let _ = decoded.send(Err(out_of_step())).await;
            return;
        };
        // Wait for room first, so at most one decoded segment waits beside the one emitted.
        let Ok(permit) = decoded.reserve().await else {
            return;
        };
        match read_segment(&plan, &segment, columns.clone(), &mut steps, &mut held).await {
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

fn out_of_step() -> StreamError {
    StreamError::io("prefetch")(std::io::Error::other("a shard arrived outside its segment"))
}

/// Shards of the last segment read, by index: their lease and an open handle to the file
/// whose bytes were checked.
type Held = std::collections::HashMap<u32, (Lease, File)>;

/// Reads the segment's needed rows from its shards (taken from `steps` in the order the
/// prefetcher reserved them, or from `held`), the shards in parallel on blocking threads.
/// Leaves the segment's shards in `held`.
async fn read_segment(
    plan: &Plan,
    segment: &Segment,
    columns: Option<Arc<Vec<String>>>,
    steps: &mut mpsc::Receiver<Step>,
    held: &mut Held,
) -> Result<Option<SegmentRows>, StreamError> {
    // Shards this segment does not read again are let go before it waits for any: a cache
    // with room for few shards needs their room for the ones it reads next.
    let mut before = std::mem::take(held);
    before.retain(|shard, _| segment.shards.contains(shard));
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
        let (lease, file) = match steps.recv().await {
            Some(Step::Shard(ready)) => {
                let (lease, file) = ready?
                    .await
                    .map_err(|e| StreamError::io("prefetch")(std::io::Error::other(e)))?;
                (lease, file?)
            }
            Some(Step::Again) => before.remove(&shard).ok_or_else(out_of_step)?,
            Some(Step::Segment(_)) => return Err(out_of_step()),
            None => {
                return Err(StreamError::io("prefetch")(std::io::Error::other(
                    "stopped",
                )));
            }
        };
        waited_for_shards += waiting.elapsed();
        // A second handle on the same checked file, for the next segment; reads of the two
        // never overlap (segments are read one after another).
        let keep = file
            .try_clone()
            .map_err(StreamError::io(format!("shard {shard}")))?;
        held.insert(shard, (lease, keep));
        let entry = plan.manifest.shards.get(shard as usize);
        let rows = needed_rows(order.clone(), entry.map_or(0, |s| s.rows));
        let name = entry.map(|s| s.name.clone()).unwrap_or_default();
        let columns = columns.clone();
        let limits = plan.parquet_limits;
        reads.push(tokio::task::spawn_blocking(move || {
            let columns = columns.as_deref().map(Vec::as_slice);
            let (batches, total) = read_rows(file, &name, &rows, columns, &limits)?;
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
