//! The local shard cache: shard files named by their content CID, shared by every dataset
//! version (a new version brings only its changed shards), evicting the least recently used
//! past a byte limit.
//!
//! ```text
//! reserve(layout)  ── in the order shards will be used, one caller at a time ──▶ Lease
//!   present        ─▶ pinned; ready() hashes the file: bad bytes are fetched again
//!   being fetched  ─▶ pinned; ready() waits for it
//!   absent         ─▶ room made (LRU files that no lease pins are deleted, else wait),
//!                     pinned; ready() fetches it from the network, verified
//! Lease dropped    ─▶ unpinned: evictable again
//! ```
//!
//! Reservations taken in use order cannot deadlock: the shard needed next was reserved before
//! any shard after it, so the room it waits for is held only by shards used before it.
//!
//! Several processes (a data loader's workers) may share one directory. A fetch writes a
//! temporary file and renames it into place, so a shard another process fetched first is
//! simply there; temporary files are removed at open only once they are stale; and a shard is
//! handed to the reader as an open file, verified through that handle, so another process
//! evicting it cannot pull the bytes away mid-read. Each process keeps to the byte limit for
//! the shards it knows of: the directory can hold up to the limit times the processes.

use parking_lot::{Mutex, MutexGuard};
use std::{
    collections::HashMap,
    fs::File,
    io::Seek as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use cid::Cid;
use tessera_client::{ClientError, GetOptions, Session, get::fetch_shard};
use tessera_formats::{
    ShardLayout,
    address::{self, HashFn, hash_reader},
};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::error::StreamError;

/// What the cache has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Shards used from the cache, verified.
    pub hits: u64,
    /// Shards fetched from the network.
    pub fetched: u64,
    /// Bytes of those shards.
    pub bytes_fetched: u64,
    /// Cached shards whose bytes no longer matched their CID, fetched again.
    pub corrupt: u64,
    /// Shards deleted to make room.
    pub evicted: u64,
    /// The most bytes the cache held or had reserved at once.
    pub peak_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Present,
    Fetching,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    status: Status,
    /// Leases holding it.
    pins: u32,
    /// Whether a lease has taken on fetching it (while `Fetching`).
    claimed: bool,
    last_used: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Cid, Entry>,
    /// Bytes of present and reserved shards.
    used: u64,
    tick: u64,
    stats: CacheStats,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    changed: Notify,
}

/// A shard cache in one directory. Clones share it.
#[derive(Debug, Clone)]
pub struct ShardCache {
    inner: Arc<Inner>,
}

impl ShardCache {
    /// Opens the cache in `dir` (created if missing) with room for `limit` bytes. Shards
    /// already there are kept, least recently used first out, down to the limit; leftovers
    /// of interrupted fetches are removed.
    pub fn open(dir: &Path, limit: u64) -> Result<Self, StreamError> {
        std::fs::create_dir_all(dir)
            .map_err(StreamError::io(format!("creating {}", dir.display())))?;
        let mut found = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(StreamError::io(format!("reading {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(StreamError::io(format!("reading {}", dir.display())))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tessera-") {
                // Another process's fetch may be writing it; only an abandoned one goes.
                if is_stale(&path) {
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
                continue;
            }
            let Ok(cid) = address::parse(&name) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((used, cid, meta.len()));
            }
        }
        found.sort();
        let mut state = State::default();
        for (tick, (_, cid, size)) in found.into_iter().enumerate() {
            state.used += size;
            state.entries.insert(
                cid,
                Entry {
                    size,
                    status: Status::Present,
                    pins: 0,
                    claimed: false,
                    last_used: tick as u64,
                },
            );
            state.tick = tick as u64 + 1;
        }
        let cache = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                limit,
                state: Mutex::new(state),
                changed: Notify::new(),
            }),
        };
        {
            let mut state = cache.lock();
            cache.evict_until(&mut state, 0);
            state.stats.peak_bytes = state.used;
        }
        Ok(cache)
    }

    /// Takes the directory-wide lock on fetching `cid`, waiting while another process holds
    /// it. Lock files stay (they are empty) until a later open finds them stale.
    async fn lock_file(&self, cid: &Cid) -> Result<File, StreamError> {
        let path = self.inner.dir.join(format!(".tessera-lock-{cid}"));
        let what = || format!("locking {}", path.display());
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StreamError::io(what()))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(StreamError::io(what())(e)),
            }
        }
    }

    /// The byte limit.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    /// Bytes held and reserved now.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Where shard `cid` lives when present.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.inner.dir.join(cid.to_string())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// Deletes least recently used unpinned shards until `extra` more bytes fit. Returns
    /// whether they do.
    fn evict_until(&self, state: &mut State, extra: u64) -> bool {
        while state.used + extra > self.inner.limit {
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0 && e.status == Status::Present)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(cid, _)| *cid);
            let Some(cid) = victim else { return false };
            if let Some(entry) = state.entries.remove(&cid) {
                state.used -= entry.size;
                state.stats.evicted += 1;
                if let Err(e) = std::fs::remove_file(self.path_of(&cid)) {
                    warn!(%cid, error = %e, "evicting a cached shard");
                }
            }
        }
        true
    }

    /// Pins the shard of `layout`, making room for it if it is absent (waiting while shards
    /// that are pinned fill the cache). Call in the order the shards will be used.
    pub async fn reserve(&self, layout: &ShardLayout) -> Result<Lease, StreamError> {
        let (cid, size) = (layout.content, layout.size);
        if size > self.inner.limit {
            return Err(StreamError::CacheTooSmall {
                shard: Box::new(cid),
                size,
                limit: self.inner.limit,
            });
        }
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                state.tick += 1;
                let tick = state.tick;
                if let Some(entry) = state.entries.get_mut(&cid) {
                    entry.pins += 1;
                    entry.last_used = tick;
                    return Ok(self.lease(layout));
                }
                if self.evict_until(&mut state, size) {
                    state.used += size;
                    state.stats.peak_bytes = state.stats.peak_bytes.max(state.used);
                    state.entries.insert(
                        cid,
                        Entry {
                            size,
                            status: Status::Fetching,
                            pins: 1,
                            claimed: false,
                            last_used: tick,
                        },
                    );
                    return Ok(self.lease(layout));
                }
            }
            debug!(%cid, "cache full of pinned shards; waiting");
            notified.await;
        }
    }

    fn lease(&self, layout: &ShardLayout) -> Lease {
        Lease {
            cache: self.clone(),
            layout: layout.clone(),
            fetching: AtomicBool::new(false),
        }
    }

    fn status(&self, cid: &Cid) -> Option<Status> {
        self.lock().entries.get(cid).map(|e| e.status)
    }

    /// Marks `cid` present (`Ok`) or drops its reservation (`Err`), and wakes waiters.
    fn settle(&self, cid: &Cid, outcome: Settled) {
        let mut state = self.lock();
        match outcome {
            Settled::Fetched(_) | Settled::Found => {
                if let Some(entry) = state.entries.get_mut(cid) {
                    entry.status = Status::Present;
                    entry.claimed = false;
                }
                if let Settled::Fetched(bytes) = outcome {
                    state.stats.fetched += 1;
                    state.stats.bytes_fetched += bytes;
                } else {
                    state.stats.hits += 1;
                }
            }
            Settled::Failed => {
                if let Some(entry) = state.entries.remove(cid) {
                    state.used -= entry.size;
                }
            }
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Turns a present entry whose bytes are bad into one being fetched; returns whether this
    /// caller should fetch it (another may have seen it first).
    fn mark_corrupt(&self, cid: &Cid) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(cid) else {
            return false;
        };
        if entry.status != Status::Present {
            return false;
        }
        entry.status = Status::Fetching;
        entry.claimed = true;
        state.stats.corrupt += 1;
        true
    }
}

/// How a fetch a lease took on ended.
#[derive(Debug, Clone, Copy)]
enum Settled {
    /// Fetched from the network: so many bytes.
    Fetched(u64),
    /// Another process sharing the directory had fetched it.
    Found,
    /// Not fetched: its room is given back.
    Failed,
}

/// A pinned shard: not evicted while the lease lives.
#[derive(Debug)]
pub struct Lease {
    cache: ShardCache,
    layout: ShardLayout,
    /// Whether this lease is fetching the shard (so dropping it mid-fetch frees the room).
    fetching: AtomicBool,
}

impl Lease {
    /// The shard's layout.
    pub fn layout(&self) -> &ShardLayout {
        &self.layout
    }

    /// Waits until the shard's file is in the cache and its bytes are its CID's, fetching it
    /// from the network if needed; returns the file, open, its bytes just verified.
    pub async fn ready(&self, session: &Session) -> Result<File, StreamError> {
        let cid = self.layout.content;
        let path = self.cache.path_of(&cid);
        loop {
            let notified = self.cache.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.cache.status(&cid) {
                Some(Status::Present) => {
                    if let Some(file) = self.verify(&path).await? {
                        self.cache.lock().stats.hits += 1;
                        touch(&path);
                        return Ok(file);
                    }
                    warn!(%cid, "cached shard is missing or does not match its CID; fetching it again");
                    if self.cache.mark_corrupt(&cid) {
                        let _ = std::fs::remove_file(&path);
                        self.fetching.store(true, Ordering::Relaxed);
                        return self.fetch(session, &path).await;
                    }
                }
                Some(Status::Fetching) => {
                    // The first lease to get here fetches; the others wait for it.
                    if self.claim_fetch() {
                        return self.fetch(session, &path).await;
                    }
                    notified.await;
                }
                None => return Err(StreamError::FetchedElsewhere(Box::new(cid))),
            }
        }
    }

    /// Takes on fetching a shard no lease is fetching yet; returns whether this one does.
    fn claim_fetch(&self) -> bool {
        let mut state = self.cache.lock();
        let Some(entry) = state.entries.get_mut(&self.layout.content) else {
            return false;
        };
        if entry.claimed {
            return false;
        }
        entry.claimed = true;
        self.fetching.store(true, Ordering::Relaxed);
        true
    }

    async fn fetch(&self, session: &Session, path: &Path) -> Result<File, StreamError> {
        let cid = self.layout.content;
        // One process of those sharing the directory fetches a shard; the others wait for it
        // and then find the file in place.
        let _lock = self.cache.lock_file(&cid).await?;
        if let Some(file) = self.verify(path).await? {
            self.finish(Settled::Found);
            return Ok(file);
        }
        let _ = std::fs::remove_file(path);
        // Not synced: a shard found after a restart is hashed before it is used.
        let options = GetOptions {
            durable: false,
            ..GetOptions::default()
        };
        let started = Instant::now();
        let result = fetch_shard(session, &self.layout, path, &options).await;
        debug!(%cid, size = self.layout.size, took = ?started.elapsed(), ok = result.is_ok(), "shard fetched");
        let opened = match result {
            // The fetch hashed the bytes against the CID as it wrote them: no second pass.
            Ok(_) => Ok(File::open(path).ok()),
            // Another process sharing the directory fetched it first; its bytes are checked
            // like any cached file's.
            Err(ClientError::OutputExists(_)) => self.verify(path).await,
            Err(e) => Err(StreamError::Fetch {
                shard: Box::new(cid),
                source: e,
            }),
        };
        let opened = opened.and_then(|file| {
            file.ok_or_else(|| {
                StreamError::io(format!("shard {cid}"))(std::io::Error::other(
                    "fetched, but then missing or not its CID's bytes",
                ))
            })
        });
        self.finish(match &opened {
            Ok(_) => Settled::Fetched(self.layout.size),
            Err(_) => Settled::Failed,
        });
        opened
    }

    /// Ends this lease's fetch: the entry is settled and dropping the lease no longer frees it.
    fn finish(&self, outcome: Settled) {
        self.fetching.store(false, Ordering::Relaxed);
        self.cache.settle(&self.layout.content, outcome);
    }

    /// The file at `path`, open, if its bytes are the shard's; `None` if it is missing or
    /// they are not. Hashed through the handle that is returned, so what was checked is what
    /// is read.
    async fn verify(&self, path: &Path) -> Result<Option<File>, StreamError> {
        let (path, want) = (path.to_path_buf(), self.layout.content);
        tokio::task::spawn_blocking(move || {
            let Ok(mut file) = File::open(&path) else {
                return Ok(None);
            };
            let started = Instant::now();
            let matches = hash_reader(&mut file, HashFn::Blake3).is_ok_and(|(cid, _)| cid == want);
            debug!(cid = %want, matches, took = ?started.elapsed(), "cached shard hashed");
            Ok((matches && file.rewind().is_ok()).then_some(file))
        })
        .await
        .map_err(|e| StreamError::io("verifying a cached shard")(std::io::Error::other(e)))?
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let cid = self.layout.content;
        if self.fetching.load(Ordering::Relaxed) {
            // Dropped mid-fetch: nothing usable is on disk, so the reservation goes.
            self.cache.settle(&cid, Settled::Failed);
            return;
        }
        let mut state = self.cache.lock();
        if let Some(entry) = state.entries.get_mut(&cid) {
            entry.pins = entry.pins.saturating_sub(1);
        }
        drop(state);
        self.cache.inner.changed.notify_waiters();
    }
}

/// How often a process waiting for another's fetch of a shard looks again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// Temporary files untouched this long belong to no running fetch.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Whether `path` (a temporary file, or a directory of them) has not been written to for
/// [`STALE_AFTER`].
fn is_stale(path: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut newest = modified(path);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            newest = newest.max(modified(&entry.path()));
        }
    }
    newest.is_some_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER))
}

/// Records a use in the file's mtime, so the order survives a restart; best effort.
fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
