//! Publishing a directory of Parquet files as one dataset version.
//!
//! ```text
//! list *.parquet ─▶ inspect footers (one schema) ─▶ hash each file
//!   ─▶ unchanged since the parent? reuse its layout : encode, store pieces (journaled)
//!   ─▶ manifest (DAG-CBOR) ─▶ stored on max(m) + 2 nodes ─▶ manifest CID
//! ```
//!
//! Files are encoded one at a time, so the spool needs room for one file's pieces; the pieces
//! of a file go out in parallel.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};
use tessera_formats::time::now_ms;

use cid::Cid;
use tessera_formats::{
    Manifest, ShardLayout,
    address::{HashFn, hash_reader},
    erasure::{DEFAULT_STRIPE_SIZE, ErasureParams},
    manifest::{MANIFEST_VERSION, Schema, ShardEntry},
};
use tessera_net::PeerId;
use tracing::info;

use super::{
    DatasetError, Progress, ProgressSink,
    inspect::{ParquetInfo, inspect_with, schema_bytes, schema_difference},
    journal::Journal,
    parquet_guard::ParquetLimits,
    report,
};
use tessera_client::{
    error::ClientError,
    placement::losses_survived,
    put::{StoreHooks, encode_to_files, store_block, store_pieces},
    session::Session,
};

/// How a dataset version is published.
#[derive(Clone, Default)]
pub struct PublishOptions {
    /// Erasure coding; `None` picks [`default_params`] for the nodes reachable.
    pub params: Option<ErasureParams>,
    /// Pieces uploaded at once.
    pub parallel: usize,
    /// The version this one derives from: its CID and manifest. Shards with the same content
    /// keep their layout and are not uploaded again.
    pub parent: Option<(Cid, Manifest)>,
    /// Free-form metadata for the manifest.
    pub metadata: BTreeMap<String, String>,
    /// Where pieces are written before they are sent (the system's temporary directory if
    /// `None`).
    pub spool_dir: Option<PathBuf>,
    /// The journal that makes an interrupted publish resumable; none if `None`.
    pub journal: Option<PathBuf>,
    /// Progress reports.
    pub progress: ProgressSink,
    /// What each file's Parquet may cost to read: a file past them is refused by name.
    pub parquet_limits: ParquetLimits,
    /// Refuse a shard that would survive fewer than `m` node losses (too few distinct
    /// working nodes), rather than report it ([`PublishReport::survives`]).
    pub refuse_degraded: bool,
}

impl std::fmt::Debug for PublishOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishOptions")
            .field("params", &self.params)
            .field("parallel", &self.parallel)
            .field("parent", &self.parent.as_ref().map(|p| p.0))
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The manifest's CID: the version's name.
    pub manifest_cid: Cid,
    /// The manifest.
    pub manifest: Manifest,
    /// Nodes holding the manifest block.
    pub manifest_holders: Vec<PeerId>,
    /// Shards taken unchanged from the parent version or another of the publisher's
    /// datasets, uploaded again by no one.
    pub reused: Vec<String>,
    /// Pieces sent in this run.
    pub pieces_sent: usize,
    /// Pieces an interrupted run had already stored.
    pub pieces_resumed: usize,
    /// Bytes of pieces sent in this run.
    pub bytes_sent: u64,
    /// The erasure coding new shards got.
    pub params: ErasureParams,
    /// The fewest node losses a shard stored in this run survives as placed (`m` when every
    /// piece is on its own node); none when no shard was stored.
    pub survives: Option<usize>,
    /// The storage nodes reached directly, when they chose `params`.
    pub nodes_reached: Option<usize>,
    /// The files are the parent version's, name for name and byte for byte, with the same
    /// metadata: nothing was stored, and `manifest_cid` is the parent's.
    pub unchanged: bool,
}

/// The storage nodes this session reaches directly, among the DHT's closest peers to two
/// keys: up to 40, so that a network larger than one lookup's 20 is told from one of 20 (the
/// layouts table asks for two nodes beyond the pieces, to repair onto).
async fn reachable_nodes(session: &Session) -> Result<usize, DatasetError> {
    let mut nodes = Vec::new();
    for key in [&b"tessera/publish"[..], b"tessera/publish/2"] {
        let found = session
            .net()
            .closest_peers(key.to_vec())
            .await
            .map_err(ClientError::from)?;
        for peer in found {
            if !nodes.contains(&peer) {
                nodes.push(peer);
            }
        }
    }
    Ok(
        tessera_client::put::directly_reachable(session.net(), nodes)
            .await
            .len(),
    )
}

/// Erasure parameters for a network of `nodes` reachable storage nodes: the durability
/// table's layout for that size (`tessera_proofs::durability::LAYOUTS`).
pub fn default_params(nodes: usize) -> ErasureParams {
    let (k, m) = tessera_proofs::durability::layout_for(nodes);
    ErasureParams {
        k: u16::from(k),
        m: u16::from(m),
        stripe_size: DEFAULT_STRIPE_SIZE,
    }
}

/// The Parquet files of `dir` (recursively, hidden entries skipped), by relative path with
/// `/` separators, sorted.
pub fn list_parquet(dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(DatasetError::io(format!("reading {}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(DatasetError::io(format!("reading {}", d.display())))?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(DatasetError::io(format!("reading {}", path.display())))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "parquet") {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    if out.is_empty() {
        return Err(DatasetError::NoFiles(dir.to_path_buf()));
    }
    out.sort();
    Ok(out)
}

/// Checks every file and that they share the first one's schema.
fn inspect_all(
    files: &[(String, PathBuf)],
    limits: &ParquetLimits,
) -> Result<Vec<ParquetInfo>, DatasetError> {
    let mut infos: Vec<ParquetInfo> = Vec::with_capacity(files.len());
    for (_, path) in files {
        let info = inspect_with(path, limits)?;
        if let Some(first) = infos.first()
            && let Some(difference) = schema_difference(&first.schema, &info.schema)
        {
            return Err(DatasetError::SchemaMismatch {
                path: path.clone(),
                first: files[0].1.clone(),
                difference,
            });
        }
        infos.push(info);
    }
    Ok(infos)
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, DatasetError> + Send + 'static,
) -> Result<T, DatasetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DatasetError::Io {
            what: what.to_string(),
            source: std::io::Error::other(e),
        })?
}

/// Publishes `files` (name, path) as one dataset version; see the module docs.
pub async fn publish(
    session: &Session,
    files: Vec<(String, PathBuf)>,
    options: &PublishOptions,
) -> Result<PublishReport, DatasetError> {
    publish_among(session, files, options, async || BTreeMap::new()).await
}

/// [`publish`], where `stored` names shards already stored in the network (under the
/// publisher's other datasets), by content CID: a file with one of these contents takes its
/// layout and is not uploaded. Asked only when some file is new to the parent version.
pub async fn publish_among(
    session: &Session,
    files: Vec<(String, PathBuf)>,
    options: &PublishOptions,
    stored: impl AsyncFnOnce() -> BTreeMap<Cid, ShardLayout>,
) -> Result<PublishReport, DatasetError> {
    let infos = {
        let (files, limits) = (files.clone(), options.parquet_limits);
        blocking("reading Parquet footers", move || {
            inspect_all(&files, &limits)
        })
        .await?
    };
    let nodes_reached = match options.params {
        Some(_) => None,
        // Counted among nodes this publisher reaches directly: one only a relay reaches is
        // given no piece, so it is no place for one either.
        None => Some(reachable_nodes(session).await?),
    };
    let params = options
        .params
        .unwrap_or_else(|| default_params(nodes_reached.unwrap_or(0)));
    params.validate().map_err(ClientError::from)?;
    let journal = match &options.journal {
        Some(path) => Some(Arc::new(Journal::open(path)?)),
        None => None,
    };
    // The parent's shards, then (for files new to it) the publisher's others: any content
    // already stored.
    let mut parent_layouts: BTreeMap<Cid, ShardLayout> = options
        .parent
        .iter()
        .flat_map(|(_, m)| {
            m.shards
                .iter()
                .map(|s| (s.layout.content, s.layout.clone()))
        })
        .collect();

    // Hash first: which shards changed decides the work, and the plan is shown before it.
    let mut contents = Vec::with_capacity(files.len());
    for (_, path) in &files {
        let path = path.clone();
        let (cid, _) = blocking("hashing", move || {
            let file = File::open(&path)
                .map_err(DatasetError::io(format!("opening {}", path.display())))?;
            hash_reader(file, HashFn::Blake3)
                .map_err(DatasetError::io(format!("reading {}", path.display())))
        })
        .await?;
        contents.push(cid);
    }
    if let Some((parent_cid, parent)) = &options.parent
        && same_files(parent, &files, &contents)
        && parent.metadata == options.metadata
    {
        return Ok(PublishReport {
            manifest_cid: *parent_cid,
            manifest: parent.clone(),
            manifest_holders: Vec::new(),
            reused: files.iter().map(|(name, _)| name.clone()).collect(),
            pieces_sent: 0,
            pieces_resumed: 0,
            bytes_sent: 0,
            params,
            survives: None,
            nodes_reached,
            unchanged: true,
        });
    }
    if contents.iter().any(|c| !parent_layouts.contains_key(c)) {
        for (content, layout) in stored().await {
            parent_layouts.entry(content).or_insert(layout);
        }
    }
    let new_bytes: u64 = infos
        .iter()
        .zip(&contents)
        .filter(|(_, c)| !parent_layouts.contains_key(c))
        .map(|(i, _)| i.size)
        .sum();
    let new_files = contents
        .iter()
        .filter(|c| !parent_layouts.contains_key(c))
        .count();
    report(
        &options.progress,
        Progress::Planned {
            shards: files.len(),
            bytes: infos.iter().map(|i| i.size).sum(),
            pieces: new_files * params.total(),
        },
    );

    let mut shards = Vec::with_capacity(files.len());
    let (mut reused, mut pieces_sent, mut pieces_resumed, mut bytes_sent) =
        (Vec::new(), 0, 0, 0u64);
    let mut survives: Option<usize> = None;
    for (((name, path), info), content) in files.iter().zip(&infos).zip(&contents) {
        let (layout, degraded) = match parent_layouts.get(content) {
            Some(layout) => {
                reused.push(name.clone());
                (layout.clone(), None)
            }
            None => {
                let stored = store_file(session, path, params, options, journal.as_ref()).await?;
                pieces_sent += stored.pieces_sent;
                pieces_resumed += stored.pieces_resumed;
                bytes_sent += stored.bytes_sent;
                survives = Some(survives.map_or(stored.survives, |s| s.min(stored.survives)));
                let degraded = (stored.survives < usize::from(params.m))
                    .then(|| u8::try_from(stored.survives).unwrap_or(u8::MAX));
                (stored.layout, degraded)
            }
        };
        report(
            &options.progress,
            Progress::ShardDone {
                name: name.clone(),
                bytes: info.size,
                reused: parent_layouts.contains_key(content),
            },
        );
        shards.push(ShardEntry {
            name: name.clone(),
            rows: info.rows,
            row_groups: info.row_groups.clone(),
            layout,
            degraded,
        });
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        schema: infos.first().map(|i| arrow_schema(&i.schema)),
        shards,
        parent: options.parent.as_ref().map(|(cid, _)| *cid),
        created_ms: now_ms(),
        metadata: options.metadata.clone(),
    };
    let (manifest_cid, manifest_holders) = store_manifest(session, &manifest, params.m).await?;
    info!(%manifest_cid, shards = manifest.shards.len(), new_files, new_bytes, "dataset stored");
    if let Some(journal) = journal
        && let Ok(journal) = Arc::try_unwrap(journal)
    {
        journal.finish();
    }
    Ok(PublishReport {
        manifest_cid,
        manifest,
        manifest_holders,
        reused,
        pieces_sent,
        pieces_resumed,
        bytes_sent,
        params,
        survives,
        nodes_reached,
        unchanged: false,
    })
}

/// Whether `files`, whose contents are `contents`, are `parent`'s shards in its order.
fn same_files(parent: &Manifest, files: &[(String, PathBuf)], contents: &[Cid]) -> bool {
    parent.shards.len() == files.len()
        && parent
            .shards
            .iter()
            .zip(files.iter().zip(contents))
            .all(|(s, ((name, _), content))| s.name == *name && s.layout.content == *content)
}

/// A file stored in the network as one erasure-coded shard.
#[derive(Debug, Clone)]
pub struct StoredShard {
    /// How it is stored.
    pub layout: ShardLayout,
    /// Pieces sent in this run.
    pub pieces_sent: usize,
    /// Pieces an interrupted run had already stored.
    pub pieces_resumed: usize,
    /// Bytes of pieces sent in this run.
    pub bytes_sent: u64,
    /// Node losses the shard survives as its pieces were placed.
    pub survives: usize,
}

/// Encodes the file at `path` and stores its `k + m` pieces on distinct nodes, for a caller
/// that builds its own manifest (a crawl's shards, stored as they close). Uses the options'
/// spool directory, parallelism and progress; never a journal.
pub async fn store_shard(
    session: &Session,
    path: &Path,
    params: ErasureParams,
    options: &PublishOptions,
) -> Result<StoredShard, DatasetError> {
    params.validate().map_err(ClientError::from)?;
    store_file(session, path, params, options, None).await
}

/// Stores a manifest on more nodes than any of its shards can lose pieces (`m` for a
/// manifest without shards): it is the only way to the data. Returns its CID and holders.
pub async fn store_manifest(
    session: &Session,
    manifest: &Manifest,
    default_m: u16,
) -> Result<(Cid, Vec<PeerId>), DatasetError> {
    let (cid, block) = manifest
        .to_block()
        .map_err(|source| DatasetError::Manifest {
            cid: Box::new(Cid::default()),
            source,
        })?;
    let max_m = manifest
        .shards
        .iter()
        .map(|s| s.layout.erasure.m)
        .max()
        .unwrap_or(default_m);
    let holders = store_block(session, cid, &block, usize::from(max_m) + 2).await?;
    Ok((cid, holders))
}

/// A manifest's schema entry for an Arrow schema.
pub fn arrow_schema(schema: &arrow::datatypes::Schema) -> Schema {
    Schema {
        format: "arrow-ipc".into(),
        bytes: schema_bytes(schema),
    }
}

/// Encodes one file and stores its pieces, skipping those the journal has.
async fn store_file(
    session: &Session,
    path: &Path,
    params: ErasureParams,
    options: &PublishOptions,
    journal: Option<&Arc<Journal>>,
) -> Result<StoredShard, DatasetError> {
    let spool_parent = options.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spool = tempfile::Builder::new()
        .prefix(".tessera-publish-")
        .tempdir_in(&spool_parent)
        .map_err(DatasetError::io(format!(
            "creating a spool directory in {}",
            spool_parent.display()
        )))?;
    let (layout, pieces) = {
        let (path, dir) = (path.to_path_buf(), spool.path().to_path_buf());
        blocking("encoding", move || {
            Ok(encode_to_files(&path, &dir, params)?)
        })
        .await?
    };
    let piece_len = layout.piece_len();
    let skip = journal.map(|j| j.stored().clone()).unwrap_or_default();
    let resumed = layout
        .pieces
        .iter()
        .filter(|p| skip.contains_key(p))
        .count();
    let progress = options.progress.clone();
    let journal = journal.cloned();
    let hooks = StoreHooks {
        refuse_degraded: options.refuse_degraded,
        skip,
        on_stored: Some(Arc::new(move |_, cid, holder| {
            if let Some(journal) = &journal {
                journal.record(&cid, &holder);
            }
            report(&progress, Progress::PieceStored { bytes: piece_len });
        })),
    };
    for _ in 0..resumed {
        report(
            &options.progress,
            Progress::PieceStored { bytes: piece_len },
        );
    }
    let (holders, _) =
        store_pieces(session, &layout, &pieces, options.parallel.max(1), &hooks).await?;
    let holders: Vec<PeerId> = holders.into_iter().flatten().collect();
    let sent = layout.pieces.len() - resumed;
    Ok(StoredShard {
        survives: losses_survived(&holders, layout.erasure.data()),
        layout,
        pieces_sent: sent,
        pieces_resumed: resumed,
        bytes_sent: sent as u64 * piece_len,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow::datatypes::DataType;

    use super::*;
    use crate::inspect::tests::write;

    #[test]
    fn the_file_with_another_schema_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.parquet"), 1_500, &DataType::Float64);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(&dir.path().join("sub/b.parquet"), 1_000, &DataType::Float64);
        write(&dir.path().join("sub/c.parquet"), 1_000, &DataType::Int64);
        std::fs::write(dir.path().join("notes.txt"), "not a shard").unwrap();
        std::fs::write(dir.path().join(".hidden.parquet"), "skipped").unwrap();
        let files = list_parquet(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.parquet", "sub/b.parquet", "sub/c.parquet"]);
        assert_eq!(
            inspect_all(&files[..2], &ParquetLimits::default())
                .unwrap()
                .iter()
                .map(|i| i.rows)
                .collect::<Vec<_>>(),
            [1_500, 1_000]
        );
        match inspect_all(&files, &ParquetLimits::default()) {
            Err(DatasetError::SchemaMismatch {
                path,
                first,
                difference,
            }) => {
                assert_eq!(path, dir.path().join("sub/c.parquet"));
                assert_eq!(first, dir.path().join("a.parquet"));
                assert!(difference.contains("\"score\": Int64"), "{difference}");
            }
            other => panic!("{other:?}"),
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            list_parquet(empty.path()),
            Err(DatasetError::NoFiles(_))
        ));
    }

    #[test]
    fn default_params_fit_the_network() {
        for nodes in 0..40 {
            let p = default_params(nodes);
            assert!(p.validate().is_ok());
            if nodes >= 4 {
                assert!(p.total() < nodes, "{nodes} nodes: {p:?} leaves no spare");
            }
            assert!(p.m >= 1);
        }
        assert_eq!((default_params(6).k, default_params(6).m), (2, 2));
        assert_eq!((default_params(40).k, default_params(40).m), (10, 10));
    }
}
