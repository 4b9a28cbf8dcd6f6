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

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use cid::Cid;
use tessera_client::{GetOptions, Session, get::fetch_shard};
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
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
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
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn settle(&self, cid: &Cid, fetched: Result<u64, ()>) {
        let mut state = self.lock();
        match fetched {
            Ok(bytes) => {
                if let Some(entry) = state.entries.get_mut(cid) {
                    entry.status = Status::Present;
                    entry.claimed = false;
                }
                state.stats.fetched += 1;
                state.stats.bytes_fetched += bytes;
            }
            Err(()) => {
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
    /// from the network if needed; returns the file's path.
    pub async fn ready(&self, session: &Session) -> Result<PathBuf, StreamError> {
        let cid = self.layout.content;
        let path = self.cache.path_of(&cid);
        loop {
            let notified = self.cache.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.cache.status(&cid) {
                Some(Status::Present) => {
                    if self.verify(&path).await? {
                        self.cache.lock().stats.hits += 1;
                        touch(&path);
                        return Ok(path);
                    }
                    warn!(%cid, "cached shard does not match its CID; fetching it again");
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

    async fn fetch(&self, session: &Session, path: &Path) -> Result<PathBuf, StreamError> {
        let cid = self.layout.content;
        let result = fetch_shard(session, &self.layout, path, &GetOptions::default()).await;
        match result {
            Ok(_) => {
                self.fetching.store(false, Ordering::Relaxed);
                self.cache.settle(&cid, Ok(self.layout.size));
                Ok(path.to_path_buf())
            }
            Err(e) => {
                self.fetching.store(false, Ordering::Relaxed);
                self.cache.settle(&cid, Err(()));
                Err(StreamError::Fetch {
                    shard: Box::new(cid),
                    source: e,
                })
            }
        }
    }

    async fn verify(&self, path: &Path) -> Result<bool, StreamError> {
        let (path, want) = (path.to_path_buf(), self.layout.content);
        tokio::task::spawn_blocking(move || {
            let Ok(file) = File::open(&path) else {
                return Ok(false);
            };
            Ok(hash_reader(file, HashFn::Blake3).is_ok_and(|(cid, _)| cid == want))
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
            self.cache.settle(&cid, Err(()));
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

/// Records a use in the file's mtime, so the order survives a restart; best effort.
fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
