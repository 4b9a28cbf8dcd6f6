//! A dataset version's files by name, read by byte range: what the fsspec filesystem
//! (`tessera://`) reads through. A file's bytes come from the shard cache, checked against
//! the shard's CID when the file is first opened; the checked file stays open, so ranges
//! read later come from the very bytes that were checked.

use std::{collections::HashMap, fs::File, os::unix::fs::FileExt as _, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use parking_lot::Mutex;
use pyo3::{
    prelude::*,
    types::{PyBytes, PyDict, PyList},
};
use tessera_client::Session;
use tessera_formats::{Cid, Manifest};
use tessera_stream::ShardCache;

use crate::{Join, Opened, TesseraError, block_on};

/// Most bytes one `read` returns: a reader asks for ranges, not whole datasets.
const MAX_READ: u64 = 1 << 30;
/// Checked files kept open.
const OPEN_FILES: usize = 64;

/// A dataset version's files.
#[pyclass(module = "tessera._native")]
pub(crate) struct Dataset {
    session: Session,
    cid: Cid,
    manifest: Arc<Manifest>,
    cache: ShardCache,
    open: Mutex<HashMap<String, Arc<File>>>,
}

impl Dataset {
    fn entry(&self, name: &str) -> PyResult<usize> {
        self.manifest
            .shards
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| TesseraError::new_err(format!("{} has no file {name:?}", self.cid)))
    }

    /// The file, checked against its CID (fetched first when not cached).
    fn file(&self, py: Python<'_>, name: &str) -> PyResult<Arc<File>> {
        if let Some(file) = self.open.lock().get(name) {
            return Ok(file.clone());
        }
        let layout = self.manifest.shards[self.entry(name)?].layout.clone();
        let (cache, session) = (self.cache.clone(), self.session.clone_handle());
        let file = block_on(py, async move {
            let lease = cache.reserve(&layout).await?;
            Ok(lease.ready(&session).await?)
        })?;
        let file = Arc::new(file);
        let mut open = self.open.lock();
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(name.to_owned(), file.clone());
        Ok(file)
    }
}

#[pymethods]
impl Dataset {
    /// Resolves `reference` and reads its manifest.
    #[new]
    #[pyo3(signature = (reference, *, cache=None, cache_limit=10 << 30, bootstrap=Vec::new(), network=None, config=None, key=None))]
    fn new(
        py: Python<'_>,
        reference: &str,
        cache: Option<PathBuf>,
        cache_limit: u64,
        bootstrap: Vec<String>,
        network: Option<String>,
        config: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> PyResult<Self> {
        let join = Join::new(bootstrap, network, config);
        let reference = reference.to_owned();
        block_on(py, async move {
            let Opened {
                session,
                cache,
                resolved: cid,
                ..
            } = Opened::open(&join, &reference, key, cache, cache_limit).await?;
            let manifest = tessera_dataset::fetch_manifest(&session, cid)
                .await
                .with_context(|| format!("fetching the manifest {cid}"))?;
            Ok(Self {
                session,
                cid,
                manifest: Arc::new(manifest),
                cache,
                open: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The version's manifest CID.
    #[getter]
    fn cid(&self) -> String {
        self.cid.to_string()
    }

    /// Its files: name, size, rows and content CID of each.
    fn files<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for shard in &self.manifest.shards {
            let d = PyDict::new(py);
            d.set_item("name", &shard.name)?;
            d.set_item("size", shard.layout.size)?;
            d.set_item("rows", shard.rows)?;
            d.set_item("cid", shard.layout.content.to_string())?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Bytes `start..end` of file `name` (cut at its end).
    fn read<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        start: u64,
        end: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let size = self.manifest.shards[self.entry(name)?].layout.size;
        let end = end.min(size);
        let len = end.saturating_sub(start);
        if len > MAX_READ {
            return Err(TesseraError::new_err(format!(
                "a read of {len} bytes; at most {MAX_READ} at once"
            )));
        }
        let file = self.file(py, name)?;
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        py.detach(|| file.read_exact_at(&mut buf, start))
            .map_err(|e| TesseraError::new_err(format!("reading {name}: {e}")))?;
        Ok(PyBytes::new(py, &buf))
    }
}
