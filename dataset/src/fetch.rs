//! Fetching a dataset version into a directory: the manifest, then every shard in parallel,
//! each from its data pieces when they are there and rebuilt from any `k` when they are not,
//! verified against its CID and only then given its name. A shard already in place with the
//! right bytes is kept, so a second run after an interruption fetches only what is missing.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use tessera_formats::{
    Manifest, ShardLayout,
    address::{DAG_CBOR, verify_reader},
    manifest::MAX_MANIFEST_BYTES,
};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::debug;

use super::{DatasetError, Progress, ProgressSink, report};
use tessera_client::{
    fetch::fetch_block,
    get::{GetOptions, fetch_shard},
    session::Session,
};

/// How a dataset is fetched.
#[derive(Clone)]
pub struct FetchOptions {
    /// Shards fetched at once.
    pub parallel_shards: usize,
    /// How each shard is read.
    pub get: GetOptions,
    /// Progress reports.
    pub progress: ProgressSink,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            parallel_shards: 4,
            get: GetOptions::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("parallel_shards", &self.parallel_shards)
            .field("get", &self.get)
            .finish_non_exhaustive()
    }
}

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The manifest.
    pub manifest: Manifest,
    /// Shards fetched in this run.
    pub fetched: Vec<String>,
    /// Shards that were in place already.
    pub present: Vec<String>,
    /// Shards rebuilt with parity pieces.
    pub reconstructed: Vec<String>,
    /// Bytes of shards fetched in this run.
    pub bytes: u64,
}

/// Fetches and checks the manifest block `cid`.
pub async fn fetch_manifest(session: &Session, cid: Cid) -> Result<Manifest, DatasetError> {
    if cid.codec() != DAG_CBOR {
        return Err(DatasetError::Manifest {
            cid: Box::new(cid),
            source: tessera_formats::manifest::ManifestError::Invalid {
                field: "cid".into(),
                reason: "a manifest is a DAG-CBOR block".into(),
            },
        });
    }
    let block = fetch_block(session, cid, MAX_MANIFEST_BYTES as u64).await?;
    Manifest::from_block(&block).map_err(|source| DatasetError::Manifest {
        cid: Box::new(cid),
        source,
    })
}

/// Whether the file at `path` is the shard `layout` (false when there is no file).
fn in_place(path: &Path, layout: &ShardLayout) -> Result<bool, DatasetError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DatasetError::io(format!("opening {}", path.display()))(e)),
    };
    let len = file
        .metadata()
        .map_err(DatasetError::io(format!("reading {}", path.display())))?
        .len();
    let same = len == layout.size && verify_reader(&layout.content, file).is_ok();
    if !same {
        return Err(DatasetError::Conflict {
            path: path.to_path_buf(),
            cid: Box::new(layout.content),
        });
    }
    Ok(true)
}

/// Fetches the dataset version with manifest `cid` into `out` (created if missing).
pub async fn fetch_dataset(
    session: &Session,
    cid: Cid,
    out: &Path,
    options: &FetchOptions,
) -> Result<FetchReport, DatasetError> {
    let manifest = fetch_manifest(session, cid).await?;
    std::fs::create_dir_all(out)
        .map_err(DatasetError::io(format!("creating {}", out.display())))?;
    // Which shards are in place already: checked before anything is fetched, so that a
    // conflicting file stops the run at once.
    let mut todo: Vec<(String, ShardLayout, PathBuf)> = Vec::new();
    let mut present = Vec::new();
    for shard in &manifest.shards {
        // Names were checked by the manifest's validation: relative, no `..`.
        let path = out.join(&shard.name);
        let (p, layout) = (path.clone(), shard.layout.clone());
        let there = tokio::task::spawn_blocking(move || in_place(&p, &layout))
            .await
            .map_err(|e| DatasetError::io("checking shards")(std::io::Error::other(e)))??;
        if there {
            present.push(shard.name.clone());
        } else {
            todo.push((shard.name.clone(), shard.layout.clone(), path));
        }
    }
    report(
        &options.progress,
        Progress::Planned {
            shards: manifest.shards.len(),
            bytes: manifest.total_bytes(),
            pieces: 0,
        },
    );
    for shard in manifest.shards.iter().filter(|s| present.contains(&s.name)) {
        report(
            &options.progress,
            Progress::ShardDone {
                name: shard.name.clone(),
                bytes: shard.layout.size,
                reused: true,
            },
        );
    }

    let permits = Arc::new(Semaphore::new(options.parallel_shards.max(1)));
    let mut tasks = JoinSet::new();
    for (name, layout, path) in todo {
        let (session, permits, get, progress) = (
            session.clone_handle(),
            permits.clone(),
            options.get.clone(),
            options.progress.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Some(dir) = path.parent()
                && let Err(e) = std::fs::create_dir_all(dir)
            {
                return (
                    name,
                    Err(format!("creating {}: {e}", dir.display())),
                    false,
                    0,
                );
            }
            let result = fetch_shard(&session, &layout, &path, &get).await;
            match result {
                Ok(got) => {
                    report(
                        &progress,
                        Progress::ShardDone {
                            name: name.clone(),
                            bytes: layout.size,
                            reused: false,
                        },
                    );
                    (name, Ok(()), got.reconstructed, layout.size)
                }
                Err(e) => (name, Err(e.to_string()), false, 0),
            }
        });
    }
    let (mut fetched, mut reconstructed, mut failed, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (name, result, rebuilt, size) = joined.map_err(|e| DatasetError::Io {
            what: "fetching".into(),
            source: std::io::Error::other(e),
        })?;
        match result {
            Ok(()) => {
                if rebuilt {
                    reconstructed.push(name.clone());
                }
                fetched.push(name);
                bytes += size;
            }
            Err(why) => {
                debug!(%name, %why, "shard not fetched");
                failed.push((name, why));
            }
        }
    }
    if !failed.is_empty() {
        failed.sort();
        return Err(DatasetError::Shards {
            total: manifest.shards.len(),
            failed,
        });
    }
    fetched.sort();
    reconstructed.sort();
    Ok(FetchReport {
        manifest,
        fetched,
        present,
        reconstructed,
        bytes,
    })
}
