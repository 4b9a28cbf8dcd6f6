//! `tessera stream CID|NAME@VERSION --rank R --world-size W ...`: one worker's part of an
//! epoch, shuffled and verified, as an Arrow IPC stream on stdout, so that a training job in
//! any language reads it with its Arrow library.

use std::{
    io::{self, IsTerminal as _, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use arrow::ipc::writer::StreamWriter;
use bytesize::ByteSize;
use tessera_dataset::fetch_manifest;
use tessera_dataset_registry::remote;
use tessera_formats::DatasetRef;
use tessera_stream::{
    DEFAULT_SEGMENT_SAMPLES, DatasetStream, ParquetLimits, Partition, Remainder, ShardCache,
    StreamOptions, StreamState,
};
use tracing::debug;

use super::{
    config::{cache_path, read_bounded},
    reader::ReaderArgs,
};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// The Arrow IPC streaming format: a schema, then one message per batch.
    ArrowIpc,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RemainderArg {
    /// Leave out the samples that do not fill a batch on every rank.
    Drop,
    /// Fill the last batches up with samples from the start of the epoch's order.
    Pad,
}

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// A manifest CID, or [PUBLISHER/]NAME[@latest|@vN].
    reference: String,
    /// This rank, 0..WORLD_SIZE.
    #[arg(long, default_value_t = 0)]
    rank: u32,
    /// Ranks in the job.
    #[arg(long, default_value_t = 1)]
    world_size: u32,
    /// This data-loader worker within the rank, 0..WORKERS.
    #[arg(long, default_value_t = 0)]
    worker: u32,
    /// Data-loader workers per rank.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// The shuffle's seed: the same seed and epoch give the same order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: u64,
    /// Columns to read, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// What happens to the samples that do not fill a batch on every rank.
    #[arg(long, value_enum, default_value = "drop")]
    remainder: RemainderArg,
    /// Shards whose samples are shuffled together; memory grows with it.
    #[arg(long, default_value_t = 4)]
    block_shards: u32,
    /// Shards fetched ahead of the one being read.
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// Most samples decoded together: a block with more is decoded again for each part of
    /// this many; memory grows with it.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SAMPLES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    segment_samples: usize,
    /// The shard cache, shared by all versions [default: ~/.cache/tessera/shards].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The cache's byte limit; least recently used shards are removed past it.
    #[arg(long, default_value = "10GiB")]
    cache_limit: ByteSize,
    /// Samples of this rank already consumed: resume the epoch after them.
    #[arg(long, conflicts_with = "state")]
    consumed: Option<u64>,
    /// A JSON state file: resume from it when it exists, and keep it up to date after every
    /// batch written. It counts batches written to stdout; a consumer that can stop with
    /// batches unread should keep its own count and pass --consumed.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "arrow-ipc")]
    format: Format,
    #[command(flatten)]
    reader: ReaderArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    refuse_terminal(std::io::stdout().is_terminal())?;
    let reference: DatasetRef = args.reference.parse()?;
    let own = args.reader.preferred()?;
    let cache_dir = match &args.cache {
        Some(dir) => dir.clone(),
        None => cache_path("shards").context("no home directory for the cache; pass --cache")?,
    };
    let cache = ShardCache::open(&cache_dir, args.cache_limit.as_u64())
        .with_context(|| format!("opening the shard cache {}", cache_dir.display()))?;
    let session = args.reader.join().await?;
    let (cid, _) = remote::resolve(&session, &reference, own.as_ref())
        .await
        .with_context(|| format!("resolving {reference}"))?;
    let manifest = fetch_manifest(&session, cid)
        .await
        .with_context(|| format!("fetching the manifest {cid}"))?;

    let mut options = StreamOptions {
        partition: Partition {
            rank: args.rank,
            world_size: args.world_size,
            worker: args.worker,
            workers: args.workers,
        },
        seed: args.seed,
        epoch: args.epoch,
        batch_size: args.batch_size,
        block_shards: args.block_shards,
        remainder: match args.remainder {
            RemainderArg::Drop => Remainder::Drop,
            RemainderArg::Pad => Remainder::Pad,
        },
        columns: args.columns.clone(),
        prefetch_shards: args.prefetch,
        consumed: args.consumed.unwrap_or(0),
        base: None,
        segment_samples: args.segment_samples,
        parquet_limits: ParquetLimits::default(),
    };
    if let Some(path) = &args.state
        && let Some(saved) = read_state(path)?
    {
        options = saved
            .resume(&cid, options)
            .with_context(|| format!("resuming from {}", path.display()))?;
    }
    let mut stream =
        DatasetStream::open(&session, cid, Arc::new(manifest), cache.clone(), &options)
            .context("planning the stream")?;

    let started = Instant::now();
    let Format::ArrowIpc = args.format;
    let mut out = CountingWriter::new(io::BufWriter::with_capacity(1 << 20, io::stdout()));
    let (mut rows, mut batches) = (0u64, 0u64);
    let written = write_ipc(
        &mut stream,
        &mut out,
        args.state.as_deref(),
        &mut rows,
        &mut batches,
    )
    .await;
    match written {
        Ok(()) => {}
        // The reader closed the pipe: it has what it wanted.
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let stats = cache.stats();
    eprintln!(
        "streamed {cid} rank {}/{} worker {}/{} epoch {}: {rows} rows in {batches} batches, {} of Arrow IPC, {:.0} rows/s; cache: {} shards fetched ({}), {} hits, {} corrupt and refetched, {} evicted",
        args.rank,
        args.world_size,
        args.worker,
        args.workers,
        options.epoch,
        ByteSize::b(out.written),
        rows as f64 / seconds,
        stats.fetched,
        ByteSize::b(stats.bytes_fetched),
        stats.hits,
        stats.corrupt,
        stats.evicted,
    );
    Ok(())
}

async fn write_ipc<W: Write>(
    stream: &mut DatasetStream,
    out: &mut W,
    state: Option<&Path>,
    rows: &mut u64,
    batches: &mut u64,
) -> anyhow::Result<()> {
    let mut writer = StreamWriter::try_new(out, &stream.schema()).context("writing to stdout")?;
    // Where the time goes: waiting for the stream's next batch, or writing it out.
    let (mut waiting, mut writing) = (Duration::ZERO, Duration::ZERO);
    loop {
        let asked = Instant::now();
        let Some(batch) = stream.next_batch().await else {
            break;
        };
        let batch = batch.context("streaming")?;
        let got = Instant::now();
        waiting += got - asked;
        // Writing to a pipe blocks until the reader takes it; keep the runtime's other
        // tasks (the prefetcher) running meanwhile.
        tokio::task::block_in_place(|| writer.write(&batch).and_then(|()| writer.flush()))
            .context("writing to stdout")?;
        writing += got.elapsed();
        *rows += batch.num_rows() as u64;
        *batches += 1;
        if let Some(path) = state {
            write_state(path, &stream.state())?;
        }
    }
    tokio::task::block_in_place(|| writer.finish()).context("writing to stdout")?;
    debug!(batches = *batches, ?waiting, ?writing, "stream written");
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<arrow::error::ArrowError>()
                .is_some_and(|e| matches!(e, arrow::error::ArrowError::IoError(_, e) if e.kind() == io::ErrorKind::BrokenPipe))
    })
}

/// State files are tiny; anything larger is not one.
const MAX_STATE_BYTES: u64 = 64 * 1024;

fn read_state(path: &Path) -> anyhow::Result<Option<StreamState>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let text = read_bounded(path, MAX_STATE_BYTES, "stream state")?;
    let state = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stream state", path.display()))?;
    Ok(Some(state))
}

/// Replaces the state file whole, so a crash leaves the old state or the new one.
fn write_state(path: &Path, state: &StreamState) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing a state file in {}", dir.display()))?;
    serde_json::to_writer(&mut file, state)?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W> CountingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Arrow bytes on a terminal are noise that can upset it: the stream is for a reader.
fn refuse_terminal(is_terminal: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !is_terminal,
        "stream writes Arrow IPC bytes to stdout, which is a terminal here: pipe it into a \
         reader (`tessera stream REF | python train.py`) or redirect it to a file"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_terminal_gets_no_arrow_bytes() {
        let err = super::refuse_terminal(true).unwrap_err().to_string();
        assert!(err.contains("pipe it into a reader"), "{err}");
        assert!(super::refuse_terminal(false).is_ok());
    }
}
