//! Fetching a dataset version into a directory: the manifest, then every shard in parallel,
//! each from its data pieces when they are there and rebuilt from any `k` when they are not,
//! verified against its CID and only then given its name. A shard already in place with the
//! right bytes is kept, so a second run after an interruption fetches only what is missing.

use std::{
    collections::HashSet,
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use tessera_formats::{
    Manifest, ShardLayout,
    address::{DAG_CBOR, HashFn, hash_reader},
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
    /// Shards fetched in place of a file of an older version of the dataset.
    pub replaced: Vec<String>,
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

/// What is at a shard's place in the output directory.
enum InPlace {
    /// Nothing.
    Absent,
    /// The shard itself.
    Same,
    /// A file with other bytes, whose content CID this is.
    Other(Cid),
}

/// What the file at `path` is, against the shard `layout`.
fn in_place(path: &Path, layout: &ShardLayout) -> Result<InPlace, DatasetError> {
    let read = || DatasetError::io(format!("reading {}", path.display()));
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(InPlace::Absent),
        Err(e) => return Err(DatasetError::io(format!("opening {}", path.display()))(e)),
    };
    // One pass: the file's CID under the shard's hash says both whether it is the shard and,
    // if not, which older version's file it may be.
    let hash = HashFn::of(&layout.content).unwrap_or(HashFn::Blake3);
    let (cid, len) = hash_reader(file, hash).map_err(read())?;
    Ok(if cid == layout.content && len == layout.size {
        InPlace::Same
    } else {
        InPlace::Other(cid)
    })
}

/// Fetches shard `layout` beside `path`, then renames it over the file there: the old file
/// stays whole until the new one is, and is never half replaced.
async fn replace_with_shard(
    session: &Session,
    layout: &ShardLayout,
    path: &Path,
    get: &GetOptions,
) -> Result<tessera_client::GetReport, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fresh = path.with_file_name(format!(".tessera-update-{file_name}"));
    let _ = std::fs::remove_file(&fresh);
    let got = fetch_shard(session, layout, &fresh, get)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::rename(&fresh, path).map_err(|e| format!("replacing {}: {e}", path.display()))?;
    Ok(got)
}

/// Most older versions whose files a fetch replaces in place.
pub const MAX_OLDER_VERSIONS: usize = 256;

/// The content CIDs of the shards of the versions before `manifest` (its parent, its
/// parent's, ...): files a fetch may replace, as they are the same dataset's.
async fn older_contents(
    session: &Session,
    manifest: &Manifest,
) -> Result<HashSet<Cid>, DatasetError> {
    let mut contents = HashSet::new();
    let mut next = manifest.parent;
    for _ in 0..MAX_OLDER_VERSIONS {
        let Some(cid) = next else { break };
        let older = fetch_manifest(session, cid).await?;
        contents.extend(older.shards.iter().map(|s| s.layout.content));
        next = older.parent;
    }
    Ok(contents)
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
    // (name, layout, path, whether it replaces an older version's file)
    let mut todo: Vec<(String, ShardLayout, PathBuf, bool)> = Vec::new();
    let (mut present, mut replaced) = (Vec::new(), Vec::new());
    let mut older = None;
    for shard in &manifest.shards {
        // Names were checked by the manifest's validation: relative, no `..`.
        let path = out.join(&shard.name);
        let (p, layout) = (path.clone(), shard.layout.clone());
        let there = tokio::task::spawn_blocking(move || in_place(&p, &layout))
            .await
            .map_err(|e| DatasetError::io("checking shards")(std::io::Error::other(e)))??;
        match there {
            InPlace::Same => present.push(shard.name.clone()),
            InPlace::Absent => todo.push((shard.name.clone(), shard.layout.clone(), path, false)),
            InPlace::Other(content) => {
                // A file of an older version of this dataset is updated; any other file is
                // someone else's, and stays.
                if older.is_none() {
                    older = Some(older_contents(session, &manifest).await?);
                }
                if !older.as_ref().is_some_and(|o| o.contains(&content)) {
                    return Err(DatasetError::Conflict {
                        path,
                        cid: Box::new(shard.layout.content),
                    });
                }
                replaced.push(shard.name.clone());
                todo.push((shard.name.clone(), shard.layout.clone(), path, true));
            }
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
    for (name, layout, path, replace) in todo {
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
            let result = if replace {
                replace_with_shard(&session, &layout, &path, &get).await
            } else {
                fetch_shard(&session, &layout, &path, &get)
                    .await
                    .map_err(|e| e.to_string())
            };
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
                Err(e) => (name, Err(e), false, 0),
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
        replaced,
        reconstructed,
        bytes,
    })
}
