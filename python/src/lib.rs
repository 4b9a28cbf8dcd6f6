//! `tessera._native`: the Rust half of the `tessera` Python package. The Python half
//! (`python/tessera/`) holds the PyTorch dataset, its checkpoint state and the fsspec
//! filesystem; this half joins the network and does the reading, verifying and publishing,
//! with the GIL released.
//!
//! Batches cross into Python through the Arrow C data interface (PyCapsules named
//! `arrow_schema` and `arrow_array`), so pyarrow takes Rust's buffers without copying them.

// Python functions take their options as keyword arguments, one parameter each.
#![allow(clippy::too_many_arguments)]

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use arrow::{
    array::{RecordBatch, StructArray},
    ffi::{FFI_ArrowArray, FFI_ArrowSchema},
};
use parking_lot::Mutex;
use pyo3::{
    create_exception,
    exceptions::PyException,
    prelude::*,
    types::{PyCapsule, PyDict, PyList},
};
use tessera_client::{
    Session,
    local::{ClientSettings, cache_path, config_path},
};
use tessera_dataset::{FetchOptions, PublishOptions, fetch_version, publish::list_parquet};
use tessera_dataset_registry::{publisher_key, remote};
use tessera_formats::{
    Cid, DatasetRef, PublisherKey, VersionSel,
    erasure::{DEFAULT_STRIPE_SIZE, ErasureParams},
};
use tessera_stream::{
    DEFAULT_SEGMENT_SAMPLES, DatasetStream, ParquetLimits, Partition, Remainder, ShardCache,
    StreamOptions, StreamState,
};
use tokio::runtime::Runtime;

mod range;

create_exception!(
    _native,
    TesseraError,
    PyException,
    "A Tessera operation failed; the message says what, why, and what to do."
);

/// One message per error, each cause said once, as the CLI says it.
fn error(e: &anyhow::Error) -> PyErr {
    TesseraError::new_err(tessera_formats::report::message(e.as_ref()))
}

/// The runtime of this process. A data loader forks its workers, and a fork keeps none of
/// the parent's threads: a child makes its own runtime, and leaves the parent's alone.
fn runtime() -> PyResult<Arc<Runtime>> {
    static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut held = RUNTIME.lock();
    if let Some((owner, rt)) = held.as_ref()
        && *owner == pid
    {
        return Ok(rt.clone());
    }
    if let Some((_, inherited)) = held.take() {
        // Its threads are the parent's; dropping it would wait for them forever.
        std::mem::forget(inherited);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tessera")
            .build()
            .map_err(|e| TesseraError::new_err(format!("starting Tessera's runtime: {e}")))?,
    );
    *held = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `work` on this process's runtime with the GIL released.
fn block_on<T: Send>(
    py: Python<'_>,
    work: impl Future<Output = anyhow::Result<T>> + Send,
) -> PyResult<T> {
    let rt = runtime()?;
    py.detach(|| rt.block_on(work)).map_err(|e| error(&e))
}

/// How to join the network: peers given, else the client settings file's.
#[derive(Debug, Clone, Default)]
struct Join {
    bootstrap: Vec<String>,
    network: Option<String>,
    config: Option<PathBuf>,
}

impl Join {
    fn new(bootstrap: Vec<String>, network: Option<String>, config: Option<PathBuf>) -> Self {
        Self {
            bootstrap,
            network,
            config,
        }
    }

    async fn session(&self) -> anyhow::Result<Session> {
        let settings = ClientSettings::load(self.config.as_deref())?;
        let bootstrap = if self.bootstrap.is_empty() {
            settings.bootstrap
        } else {
            self.bootstrap
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("bootstrap address {a:?}"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        anyhow::ensure!(
            !bootstrap.is_empty(),
            "no peer to join the network through: pass bootstrap=[\"/ip4/.../p2p/...\"], or list \
             them in ~/.config/tessera/client.toml"
        );
        let network = self.network.clone().or(settings.network);
        Session::join_network(network, bootstrap)
            .await
            .context("joining the network")
    }
}

/// A version to read: its reference resolved over the network, and the shard cache.
struct Opened {
    session: Session,
    cache: ShardCache,
    reference: DatasetRef,
    resolved: Cid,
}

impl Opened {
    async fn open(
        join: &Join,
        reference: &str,
        key: Option<PathBuf>,
        cache: Option<PathBuf>,
        cache_limit: u64,
    ) -> anyhow::Result<Self> {
        let reference: DatasetRef = reference.parse()?;
        let dir = match cache {
            Some(dir) => dir,
            None => cache_path("shards").context("no home directory for the cache; pass cache=")?,
        };
        let cache = ShardCache::open(&dir, cache_limit)
            .with_context(|| format!("opening the shard cache {}", dir.display()))?;
        let own = preferred(key)?;
        let session = join.session().await?;
        let (resolved, _) = remote::resolve(&session, &reference, own.as_ref())
            .await
            .with_context(|| format!("resolving {reference}"))?;
        Ok(Self {
            session,
            cache,
            reference,
            resolved,
        })
    }
}

/// The publisher key file: the one named, else `~/.config/tessera/publisher.key`.
fn key_path(key: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    key.or_else(|| config_path("publisher.key"))
        .context("no key given and no home directory")
}

/// The publisher whose datasets win when a name is ambiguous: the key file's, if any.
fn preferred(key: Option<PathBuf>) -> anyhow::Result<Option<PublisherKey>> {
    let path = key_path(key)?;
    Ok(publisher_key::load_signer(&path)?.map(|s| s.publisher))
}

/// A struct array's C data interface pair, as the PyCapsule protocol hands it over.
fn export<'py>(
    py: Python<'py>,
    batch: RecordBatch,
) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let schema = FFI_ArrowSchema::try_from(batch.schema().as_ref())
        .map_err(|e| TesseraError::new_err(format!("exporting a batch's schema: {e}")))?;
    let array = FFI_ArrowArray::new(&arrow::array::Array::into_data(StructArray::from(batch)));
    Ok((
        PyCapsule::new_with_value(py, schema, c"arrow_schema")?,
        PyCapsule::new_with_value(py, array, c"arrow_array")?,
    ))
}

/// One worker's part of an epoch, batch by batch.
#[pyclass(module = "tessera._native")]
struct Stream {
    inner: Mutex<DatasetStream>,
    cache: ShardCache,
    // The stream's tasks use the session's network handle: it lives as long as they do.
    _session: Session,
}

#[pymethods]
impl Stream {
    /// The next batch as `(schema, array)` capsules, or `None` at the end of the worker's part.
    fn next_batch<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)>> {
        let rt = runtime()?;
        let next = py.detach(|| rt.block_on(self.inner.lock().next_batch()));
        match next {
            None => Ok(None),
            Some(Ok(batch)) => export(py, batch).map(Some),
            Some(Err(e)) => Err(error(&anyhow::Error::new(e).context("streaming"))),
        }
    }

    /// Where the stream stands, as JSON (a `StreamState`).
    fn state(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.lock().state())
            .map_err(|e| TesseraError::new_err(e.to_string()))
    }

    /// Batches still to come.
    fn batches_left(&self) -> u64 {
        self.inner.lock().batches_left()
    }

    /// The shard cache's counters.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.cache.stats();
        let d = PyDict::new(py);
        d.set_item("fetched", s.fetched)?;
        d.set_item("bytes_fetched", s.bytes_fetched)?;
        d.set_item("hits", s.hits)?;
        d.set_item("corrupt", s.corrupt)?;
        d.set_item("evicted", s.evicted)?;
        Ok(d)
    }
}

/// Opens one worker's stream of `reference` (see `tessera.StreamingDataset`). With `state`
/// (a `StreamState` as JSON), it resumes that job: the version it read, the samples it had
/// not delivered.
#[pyfunction]
#[pyo3(signature = (
    reference, *, rank=0, world_size=1, worker=0, workers=1, seed=0, epoch=0,
    batch_size=1024, block_shards=4, remainder="drop", columns=None, prefetch=4,
    cache=None, cache_limit=10 << 30, state=None, bootstrap=Vec::new(), network=None,
    config=None, key=None,
))]
fn open_stream(
    py: Python<'_>,
    reference: &str,
    rank: u32,
    world_size: u32,
    worker: u32,
    workers: u32,
    seed: u64,
    epoch: u64,
    batch_size: u64,
    block_shards: u32,
    remainder: &str,
    columns: Option<Vec<String>>,
    prefetch: usize,
    cache: Option<PathBuf>,
    cache_limit: u64,
    state: Option<&str>,
    bootstrap: Vec<String>,
    network: Option<String>,
    config: Option<PathBuf>,
    key: Option<PathBuf>,
) -> PyResult<Stream> {
    let remainder = match remainder {
        "drop" => Remainder::Drop,
        "pad" => Remainder::Pad,
        other => {
            return Err(TesseraError::new_err(format!(
                "remainder {other:?}: \"drop\" or \"pad\""
            )));
        }
    };
    let join = Join::new(bootstrap, network, config);
    let reference = reference.to_owned();
    let state = state.map(str::to_owned);
    let work = async move {
        let saved: Option<StreamState> = state
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("reading the saved state")?;
        let Opened {
            session,
            cache,
            reference,
            resolved,
        } = Opened::open(&join, &reference, key, cache, cache_limit).await?;
        // A resumed job goes on with the version it was reading; a reference to a fixed
        // version must name that one.
        let cid = match &saved {
            Some(s) if s.manifest != resolved => match &reference {
                DatasetRef::Named {
                    version: VersionSel::Latest,
                    ..
                } => s.manifest,
                _ => anyhow::bail!(
                    "the saved state is of {}, and {reference} is {resolved}",
                    s.manifest
                ),
            },
            _ => resolved,
        };
        let manifest = tessera_dataset::fetch_manifest(&session, cid)
            .await
            .with_context(|| format!("fetching the manifest {cid}"))?;
        let mut options = StreamOptions {
            partition: Partition {
                rank,
                world_size,
                worker,
                workers,
            },
            seed,
            epoch,
            batch_size,
            block_shards,
            remainder,
            columns,
            prefetch_shards: prefetch,
            consumed: 0,
            base: None,
            segment_samples: DEFAULT_SEGMENT_SAMPLES,
            parquet_limits: ParquetLimits::default(),
        };
        if let Some(saved) = &saved {
            options = saved.resume(&cid, options).context("resuming")?;
        }
        let stream =
            DatasetStream::open(&session, cid, Arc::new(manifest), cache.clone(), &options)
                .context("planning the stream")?;
        Ok(Stream {
            inner: Mutex::new(stream),
            cache,
            _session: session,
        })
    };
    block_on(py, work)
}

/// Fetches a dataset version into `output`, every shard verified; files already there and
/// intact are kept. Returns what it did.
#[pyfunction]
#[pyo3(signature = (reference, output, *, parallel=4, bootstrap=Vec::new(), network=None, config=None, key=None))]
fn fetch<'py>(
    py: Python<'py>,
    reference: &str,
    output: PathBuf,
    parallel: usize,
    bootstrap: Vec<String>,
    network: Option<String>,
    config: Option<PathBuf>,
    key: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let join = Join::new(bootstrap, network, config);
    let reference = reference.to_owned();
    let (cid, report) = block_on(py, async move {
        let reference: DatasetRef = reference.parse()?;
        let own = preferred(key)?;
        let session = join.session().await?;
        let options = FetchOptions {
            parallel_shards: parallel,
            ..FetchOptions::default()
        };
        let (cid, _, report) = fetch_version(&session, &reference, &output, own.as_ref(), &options)
            .await
            .with_context(|| format!("fetching {reference}"))?;
        Ok((cid, report))
    })?;
    let d = PyDict::new(py);
    d.set_item("cid", cid.to_string())?;
    d.set_item("fetched", report.fetched)?;
    d.set_item("present", report.present)?;
    d.set_item("replaced", report.replaced)?;
    d.set_item("rebuilt", report.reconstructed)?;
    d.set_item("bytes", report.bytes)?;
    d.set_item("rows", report.manifest.total_rows())?;
    Ok(d)
}

/// Publishes the Parquet files of `directory` as the next version of the key's dataset
/// `name`. Returns the version's CIDs and name.
#[pyfunction]
#[pyo3(signature = (directory, name, *, message="", k=None, m=None, key=None, bootstrap=Vec::new(), network=None, config=None))]
fn publish<'py>(
    py: Python<'py>,
    directory: PathBuf,
    name: &str,
    message: &str,
    k: Option<u16>,
    m: Option<u16>,
    key: Option<PathBuf>,
    bootstrap: Vec<String>,
    network: Option<String>,
    config: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let join = Join::new(bootstrap, network, config);
    let (name, message) = (name.to_owned(), message.to_owned());
    let published = block_on(py, async move {
        let params = match (k, m) {
            (Some(k), Some(m)) => {
                Some(ErasureParams::new(k, m, DEFAULT_STRIPE_SIZE).context("erasure parameters")?)
            }
            (None, None) => None,
            _ => anyhow::bail!("give both k and m, or neither"),
        };
        let files = list_parquet(&directory)?;
        let (signer, _) = publisher_key::load_or_create_signer(&key_path(key)?)?;
        let session = join.session().await?;
        let options = PublishOptions {
            params,
            parallel: 8,
            refuse_degraded: true,
            ..PublishOptions::default()
        };
        tessera_dataset::publish_version(&session, files, &name, &message, &signer, options)
            .await
            .with_context(|| format!("publishing {}", directory.display()))
    })?;
    let record = &published.record.record;
    let report = &published.report;
    let d = PyDict::new(py);
    d.set_item("cid", report.manifest_cid.to_string())?;
    d.set_item("record", published.record_cid.to_string())?;
    d.set_item(
        "reference",
        format!("{}/{}@v{}", record.publisher, record.name, record.version),
    )?;
    d.set_item("version", record.version)?;
    d.set_item("unchanged", report.unchanged)?;
    d.set_item("shards", report.manifest.shards.len())?;
    d.set_item("rows", report.manifest.total_rows())?;
    d.set_item("bytes_sent", report.bytes_sent)?;
    Ok(d)
}

/// The latest version of every dataset the registry knows, as dicts.
#[pyfunction]
#[pyo3(signature = (*, limit=10_000, bootstrap=Vec::new(), network=None, config=None))]
fn datasets<'py>(
    py: Python<'py>,
    limit: usize,
    bootstrap: Vec<String>,
    network: Option<String>,
    config: Option<PathBuf>,
) -> PyResult<Bound<'py, PyList>> {
    let join = Join::new(bootstrap, network, config);
    let entries = block_on(py, async move {
        let session = join.session().await?;
        Ok(remote::list(&session, limit).await?)
    })?;
    let out = PyList::empty(py);
    for entry in entries {
        let r = &entry.record.record;
        let d = PyDict::new(py);
        d.set_item("publisher", r.publisher.to_string())?;
        d.set_item("name", r.name.clone())?;
        d.set_item("version", r.version)?;
        d.set_item("cid", r.manifest.to_string())?;
        d.set_item(
            "reference",
            format!("{}/{}@v{}", r.publisher, r.name, r.version),
        )?;
        d.set_item("time_ms", r.time_ms)?;
        d.set_item("message", r.message.clone())?;
        out.append(d)?;
    }
    Ok(out)
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Silent unless asked: a library does not write to a training job's stderr uninvited.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    m.add("TesseraError", m.py().get_type::<TesseraError>())?;
    m.add_class::<Stream>()?;
    m.add_class::<range::Dataset>()?;
    m.add_function(wrap_pyfunction!(open_stream, m)?)?;
    m.add_function(wrap_pyfunction!(fetch, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    m.add_function(wrap_pyfunction!(datasets, m)?)?;
    Ok(())
}
