//! The reader: a rank's (or worker's) part of an epoch as Arrow record batches.
//!
//! ```text
//! plan ─▶ segments: runs of the worker's samples that fall in one block
//!   prefetcher: for each segment's shards, in use order ─▶ cache.reserve ─▶ fetch or verify
//!               (spawned; at most `prefetch_shards` ahead, in a bounded queue)
//!   decoder:    for each segment ─▶ each shard's needed rows (Parquet row selection,
//!               projected columns) ─▶ interleaved into the epoch's order ─▶ cut at batch
//!               boundaries ─▶ bounded channel ─▶ next_batch()
//! ```
//!
//! Memory: the rows of one segment (at most one block's, capped at [`MAX_SEGMENT_SAMPLES`])
//! plus the batches in the channel. Rows come only from shard files whose bytes were just
//! checked against their CID.

use std::{collections::VecDeque, fs::File, path::PathBuf, sync::Arc};

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
    plan::{EpochOrder, Partition, Remainder, Sample, Split},
};

/// Most samples decoded together; a block with more is read in several segments.
pub const MAX_SEGMENT_SAMPLES: usize = 1 << 20;
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
        let spans: Vec<(u64, u64)> = split.spans(options.consumed).collect();
        let schema = output_schema(&manifest, options.columns.as_deref())?;
        let plan = Arc::new(Plan {
            order,
            split,
            spans,
            manifest,
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
        let decoder = tokio::spawn(decode(plan.clone(), columns, steps_rx, batches_tx));
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
            tasks: vec![prefetcher, decoder],
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
                if block.is_some_and(|x| x != b) || samples.len() >= MAX_SEGMENT_SAMPLES {
                    break;
                }
                block = Some(b);
                samples.push(self.order.sample_at(position));
                next = i + 1;
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

type Ready = JoinHandle<(Lease, Result<PathBuf, StreamError>)>;

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
                        let path = lease.ready(&session).await;
                        (lease, path)
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

async fn decode(
    plan: Arc<Plan>,
    columns: Option<Vec<String>>,
    mut steps: mpsc::Receiver<Step>,
    batches: mpsc::Sender<Result<(RecordBatch, u64), StreamError>>,
) {
    let columns = columns.map(Arc::new);
    let mut pending = VecDeque::new();
    while let Some(step) = steps.recv().await {
        let Step::Segment(segment) = step else {
            let _ = batches.send(Err(out_of_step())).await;
            return;
        };
        match read_segment(&plan, &segment, columns.clone(), &mut steps).await {
            Ok(Some(rows)) => pending.push_back(rows),
            Ok(None) => {}
            Err(e) => {
                let _ = batches.send(Err(e)).await;
                return;
            }
        }
        for &(start, end) in &segment.span_ends {
            let want = usize::try_from(end - start).unwrap_or(usize::MAX);
            let batch = take_front(&mut pending, want);
            if batches.send(batch.map(|b| (b, end))).await.is_err() {
                return;
            }
        }
    }
}

/// Cuts the first `want` rows off `pending`: slices, copied only when a batch spans two
/// segments.
fn take_front(
    pending: &mut VecDeque<RecordBatch>,
    want: usize,
) -> Result<RecordBatch, StreamError> {
    let mut parts = Vec::new();
    let mut taken = 0;
    while taken < want {
        let Some(front) = pending.pop_front() else {
            break;
        };
        let n = (want - taken).min(front.num_rows());
        if n < front.num_rows() {
            pending.push_front(front.slice(n, front.num_rows() - n));
        }
        parts.push(front.slice(0, n));
        taken += n;
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

/// Reads the segment's samples, in order, from its shards (taken from `steps` in the same
/// order the prefetcher reserved them).
async fn read_segment(
    plan: &Plan,
    segment: &Segment,
    columns: Option<Arc<Vec<String>>>,
    steps: &mut mpsc::Receiver<Step>,
) -> Result<Option<RecordBatch>, StreamError> {
    if segment.samples.is_empty() {
        return Ok(None);
    }
    let mut reads = Vec::with_capacity(segment.shards.len());
    for &shard in &segment.shards {
        let ready = match steps.recv().await {
            Some(Step::Shard(ready)) => ready?,
            Some(Step::Segment(_)) => return Err(out_of_step()),
            None => {
                return Err(StreamError::io("prefetch")(std::io::Error::other(
                    "stopped",
                )));
            }
        };
        let (lease, path) = ready
            .await
            .map_err(|e| StreamError::io("prefetch")(std::io::Error::other(e)))?;
        let path = path?;
        let mut rows: Vec<u64> = segment
            .samples
            .iter()
            .filter(|s| s.shard == shard)
            .map(|s| s.row)
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let name = plan
            .manifest
            .shards
            .get(shard as usize)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let columns = columns.clone();
        reads.push(tokio::task::spawn_blocking(move || {
            let batch = read_rows(&path, &name, &rows, columns.as_deref().map(Vec::as_slice));
            drop(lease);
            batch.map(|b| (shard, rows, b))
        }));
    }
    let mut parts = Vec::with_capacity(reads.len());
    for read in reads {
        parts.push(
            read.await
                .map_err(|e| StreamError::io("reading a shard")(std::io::Error::other(e)))??,
        );
    }
    // Each sample's (part, row within the part's batch), in output order.
    let mut indices = Vec::with_capacity(segment.samples.len());
    for sample in &segment.samples {
        let found = parts
            .iter()
            .position(|(s, _, _)| *s == sample.shard)
            .and_then(|p| {
                let rows = &parts[p].1;
                rows.binary_search(&sample.row).ok().map(|r| (p, r))
            });
        let Some(index) = found else {
            return Err(StreamError::Parquet {
                name: format!("shard {}", sample.shard),
                reason: format!("row {} is missing", sample.row),
            });
        };
        indices.push(index);
    }
    let batches: Vec<&RecordBatch> = parts.iter().map(|(_, _, b)| b).collect();
    let rows = interleave_record_batch(&batches, &indices).map_err(|e| StreamError::Parquet {
        name: "(segment)".into(),
        reason: e.to_string(),
    })?;
    debug!(
        samples = segment.samples.len(),
        shards = parts.len(),
        "segment read"
    );
    Ok(Some(rows))
}

/// Reads rows `rows` (sorted, distinct) of the Parquet file at `path`.
fn read_rows(
    path: &std::path::Path,
    name: &str,
    rows: &[u64],
    columns: Option<&[String]>,
) -> Result<RecordBatch, StreamError> {
    let bad = |reason: String| StreamError::Parquet {
        name: name.to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let mask = match columns {
        Some(names) => {
            let roots = root_indices(builder.schema(), names).map_err(bad)?;
            ProjectionMask::roots(builder.parquet_schema(), roots)
        }
        None => ProjectionMask::all(),
    };
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for &row in rows {
        if row >= total {
            return Err(bad(format!("row {row} of a {total}-row file")));
        }
        if row > at {
            selectors.push(RowSelector::skip(usize::try_from(row - at).unwrap_or(0)));
        }
        selectors.push(RowSelector::select(1));
        at = row + 1;
    }
    let reader = builder
        .with_projection(mask)
        .with_row_selection(RowSelection::from(selectors))
        .with_batch_size(rows.len().clamp(1, 65_536))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let parts: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let batch = concat_batches(&schema, &parts).map_err(|e| bad(e.to_string()))?;
    if batch.num_rows() != rows.len() {
        return Err(bad(format!(
            "{} rows read, {} asked for",
            batch.num_rows(),
            rows.len()
        )));
    }
    Ok(batch)
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
