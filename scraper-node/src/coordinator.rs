//! The crawl coordinator: one task owns the crawls' frontiers and their store; everyone else
//! holds a [`Coordinator`] handle.
//!
//! ```text
//! handle ──Command + oneshot──▶ actor ── frontier step ──▶ store.apply (synced) ──▶ reply
//!                                 └── every second: expire leases past their deadline;
//!                                     publish crawls whose URLs and shards are all in
//!                                     (a task; its result comes back to the actor)
//! ```
//!
//! A reply is sent only after its records are durable, so a node never acts on a lease or an
//! acceptance that a restarted coordinator would not know.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};
use tessera_formats::time::now_ms;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    crawl_store::{CrawlState, CrawlStore, CrawlStoreError, ShardRecord},
    frontier::{Change, Frontier, FrontierError, Lease, Progress, UrlReport},
    publish::{FinishedCrawl, PublishedCrawl, Publisher, publish_crawl, shard_entry},
    spec::CrawlSpec,
};

/// How often leases past their deadline are taken back.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// What a node asking for work gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Offer {
    /// A lease of one crawl.
    Lease {
        /// The crawl.
        crawl: String,
        /// Its spec: user agent, scope, politeness, output.
        spec: Box<CrawlSpec>,
        /// The URLs.
        lease: Lease,
        /// Crawls whose URLs are all done: the node closes and reports their open shards.
        #[serde(default)]
        close: Vec<String>,
    },
    /// Work is queued but no host may be visited yet: ask again after this long.
    Wait {
        /// Milliseconds.
        retry_ms: u64,
        /// Crawls whose URLs are all done, as for a lease.
        #[serde(default)]
        close: Vec<String>,
    },
    /// No crawl has work.
    Idle,
}

/// A node's report of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The crawl.
    pub crawl: String,
    /// The lease.
    pub lease: u64,
    /// The node that held it.
    pub node: String,
    /// What came of each URL.
    pub reports: Vec<UrlReport>,
    /// The host's robots.txt `Crawl-delay`, as the node read it, in milliseconds.
    pub crawl_delay_ms: Option<u64>,
}

/// A node has fetched every URL of a lease: the host is free for the next one while the
/// node extracts and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The crawl.
    pub crawl: String,
    /// The lease.
    pub lease: u64,
    /// The node that holds it.
    pub node: String,
    /// The host's robots.txt `Crawl-delay`, as the node read it, in milliseconds.
    pub crawl_delay_ms: Option<u64>,
}

/// A crawl's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlStatus {
    /// The crawl.
    pub id: String,
    /// Its dataset name.
    pub name: String,
    /// Its state.
    pub state: CrawlState,
    /// Its URL counts and backlog.
    pub progress: Progress,
    /// Shards written.
    pub shards: u64,
    /// Rows in them.
    pub rows: u64,
    /// Whether no URL is queued or leased.
    pub finished: bool,
    /// Stored pages that are in no recorded shard yet: rows still open on their nodes, or
    /// lost with a node that left before closing its shard.
    pub rows_pending: u64,
}

/// A coordinator request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// No such crawl.
    #[error("no crawl {0}")]
    UnknownCrawl(String),
    /// The lease cannot be completed.
    #[error(transparent)]
    Lease(#[from] FrontierError),
    /// The store failed; the request had no effect.
    #[error(transparent)]
    Store(#[from] CrawlStoreError),
    /// The coordinator has stopped.
    #[error("the coordinator has stopped")]
    Gone,
    /// A shard record that disagrees with itself or with a recorded shard.
    #[error("shard refused: {0}")]
    BadShard(String),
}

enum Command {
    Start(
        Box<CrawlSpec>,
        oneshot::Sender<Result<String, CoordinatorError>>,
    ),
    Lease(String, oneshot::Sender<Result<Offer, CoordinatorError>>),
    Complete(
        Completion,
        oneshot::Sender<Result<Vec<String>, CoordinatorError>>,
    ),
    Fetched(Fetched, oneshot::Sender<Result<(), CoordinatorError>>),
    Shard(
        String,
        ShardRecord,
        oneshot::Sender<Result<(), CoordinatorError>>,
    ),
    Status(oneshot::Sender<Vec<CrawlStatus>>),
    Workers(oneshot::Sender<Vec<String>>),
    Stop(String, oneshot::Sender<Result<(), CoordinatorError>>),
}

/// How long a crawl whose URLs are done waits for the shards of its stored pages before it is
/// published without the missing ones, in lease timeouts: a node that stopped answering
/// would otherwise hold the crawl back for ever.
const SHARD_GRACE_LEASES: u64 = 2;
/// How recently a node must have asked for work to count as one of the crawls' workers
/// (idle workers ask every second or so).
const WORKER_SEEN_MS: u64 = 30_000;
/// First wait before publishing is tried again; it doubles up to [`PUBLISH_RETRY_MAX`].
const PUBLISH_RETRY: Duration = Duration::from_secs(10);
/// Longest wait between attempts to publish.
const PUBLISH_RETRY_MAX: Duration = Duration::from_secs(600);

/// A handle to the coordinator; clone it freely.
#[derive(Debug, Clone)]
pub struct Coordinator {
    commands: mpsc::Sender<Command>,
    task: Arc<parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

struct Crawl {
    spec: CrawlSpec,
    state: CrawlState,
    frontier: Frontier,
    shards: Vec<ShardRecord>,
    /// When its URLs were first seen all done (since this start).
    done_since: Option<u64>,
    /// No attempt to publish before this time.
    publish_after: u64,
    /// A publish task is running.
    publishing: bool,
}

impl Crawl {
    fn new(
        spec: CrawlSpec,
        state: CrawlState,
        frontier: Frontier,
        shards: Vec<ShardRecord>,
    ) -> Self {
        Self {
            spec,
            state,
            frontier,
            shards,
            done_since: None,
            publish_after: 0,
            publishing: false,
        }
    }

    fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    fn rows_pending(&self) -> u64 {
        self.frontier.stored().saturating_sub(self.rows())
    }

    /// Whether it is time to publish: its URLs are done, and every stored page is in a shard
    /// and every check that can be done is settled, or the grace has passed. Returns the pages
    /// missing.
    fn ready_to_publish(&mut self, now: u64, workers: &[String]) -> Option<u64> {
        let waiting = matches!(
            self.state,
            CrawlState::Running | CrawlState::Unpublished { .. } | CrawlState::Unpublishable(_)
        );
        if !waiting || self.publishing || now < self.publish_after || !self.frontier.is_done() {
            return None;
        }
        let since = *self.done_since.get_or_insert(now);
        let missing = self.rows_pending();
        // The scores are published with the crawl and decide which pages are credited: the
        // checks still open are waited for, within the same grace.
        let checks = self.frontier.checks_open(workers);
        let grace = self
            .spec
            .politeness
            .lease_timeout_seconds
            .saturating_mul(1000 * SHARD_GRACE_LEASES);
        (missing == 0 && checks == 0 || now >= since.saturating_add(grace)).then_some(missing)
    }
}

type PublishResult = (String, Result<PublishedCrawl, String>);

struct Actor {
    store: Arc<CrawlStore>,
    crawls: BTreeMap<String, Crawl>,
    publisher: Option<Arc<Publisher>>,
    published: mpsc::Sender<PublishResult>,
    /// When each node last asked for work.
    workers: BTreeMap<String, u64>,
}

impl Coordinator {
    /// Opens the store in a database of its own in `dir`, restores its crawls and starts the
    /// coordinator task. Crawls that finish are published with `publisher`; without one they
    /// stay unpublished, their shards on the nodes that wrote them.
    pub fn start(dir: &Path, publisher: Option<Publisher>) -> Result<Self, CoordinatorError> {
        Self::start_with(CrawlStore::open(dir)?, publisher)
    }

    /// [`Coordinator::start`] on a store already open (a column of the node's database).
    pub fn start_with(
        store: CrawlStore,
        publisher: Option<Publisher>,
    ) -> Result<Self, CoordinatorError> {
        let store = Arc::new(store);
        let mut crawls = BTreeMap::new();
        for stored in store.load()? {
            let frontier = Frontier::restore(&stored.spec, stored.changes);
            info!(crawl = %stored.id, progress = ?frontier.progress(), "crawl restored");
            crawls.insert(
                stored.id,
                Crawl::new(stored.spec, stored.state, frontier, stored.shards),
            );
        }
        let (tx, rx) = mpsc::channel(256);
        let (published, results) = mpsc::channel(16);
        let actor = Actor {
            store,
            crawls,
            publisher: publisher.map(Arc::new),
            published,
            workers: BTreeMap::new(),
        };
        let task = tokio::spawn(actor.run(rx, results));
        Ok(Self {
            commands: tx,
            task: Arc::new(parking_lot::Mutex::new(Some(task))),
        })
    }

    /// Stops the coordinator's task at once, as a crash would: whatever it had not persisted
    /// is lost, and every handle gets [`CoordinatorError::Gone`] from then on.
    pub async fn kill(&self) {
        let task = self.task.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| CoordinatorError::Gone)?;
        rx.await.map_err(|_| CoordinatorError::Gone)
    }

    /// Starts a crawl; returns its id.
    pub async fn start_crawl(&self, spec: CrawlSpec) -> Result<String, CoordinatorError> {
        self.ask(|tx| Command::Start(Box::new(spec), tx)).await?
    }

    /// Work for `node`.
    pub async fn lease(&self, node: &str) -> Result<Offer, CoordinatorError> {
        self.ask(|tx| Command::Lease(node.to_string(), tx)).await?
    }

    /// Completes a lease; returns the URLs whose rows the node writes.
    pub async fn complete(&self, completion: Completion) -> Result<Vec<String>, CoordinatorError> {
        self.ask(|reply| Command::Complete(completion, reply))
            .await?
    }

    /// Frees the host of a lease whose URLs are all fetched.
    pub async fn fetched(&self, fetched: Fetched) -> Result<(), CoordinatorError> {
        self.ask(|reply| Command::Fetched(fetched, reply)).await?
    }

    /// Records a shard a node finished.
    pub async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), CoordinatorError> {
        self.ask(|tx| Command::Shard(crawl.to_string(), shard, tx))
            .await?
    }

    /// Every crawl's status.
    pub async fn status(&self) -> Result<Vec<CrawlStatus>, CoordinatorError> {
        self.ask(Command::Status).await
    }

    /// The nodes that asked for work lately, sorted.
    pub async fn workers(&self) -> Result<Vec<String>, CoordinatorError> {
        self.ask(Command::Workers).await
    }

    /// Stops a crawl: no new leases.
    pub async fn stop(&self, crawl: &str) -> Result<(), CoordinatorError> {
        self.ask(|tx| Command::Stop(crawl.to_string(), tx)).await?
    }
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut results: mpsc::Receiver<PublishResult>,
    ) {
        let mut tick = tokio::time::interval(EXPIRE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                Some((crawl, result)) = results.recv() => self.published(&crawl, result).await,
                _ = tick.tick() => {
                    self.expire().await;
                    self.publish_ready().await;
                }
            }
        }
    }

    async fn persist(&self, crawl: &str, changes: Vec<Change>) -> Result<(), CoordinatorError> {
        let crawl = crawl.to_string();
        on_store(&self.store, move |store| store.apply(&crawl, &changes)).await
    }

    fn crawl_mut(&mut self, crawl: &str) -> Result<&mut Crawl, CoordinatorError> {
        self.crawls
            .get_mut(crawl)
            .ok_or_else(|| CoordinatorError::UnknownCrawl(crawl.to_string()))
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Start(spec, reply) => {
                let _ = reply.send(self.start(*spec).await);
            }
            Command::Lease(node, reply) => {
                let _ = reply.send(self.lease(&node).await);
            }
            Command::Complete(completion, reply) => {
                let _ = reply.send(self.complete(completion).await);
            }
            Command::Fetched(fetched, reply) => {
                let _ = reply.send(self.fetched(fetched).await);
            }
            Command::Shard(crawl, shard, reply) => {
                let _ = reply.send(self.shard(&crawl, shard).await);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Workers(reply) => {
                let _ = reply.send(self.workers(now_ms()));
            }
            Command::Stop(crawl, reply) => {
                let _ = reply.send(self.stop(&crawl).await);
            }
        }
    }

    async fn start(&mut self, spec: CrawlSpec) -> Result<String, CoordinatorError> {
        let id = {
            let mut h = blake3::Hasher::new();
            h.update(&now_ms().to_be_bytes());
            h.update(spec.name.as_bytes());
            h.update(&(self.crawls.len() as u64).to_be_bytes());
            hex_prefix(h.finalize().as_bytes())
        };
        let mut frontier = Frontier::new(&spec);
        let changes = frontier.seed(&spec.seeds);
        let (id2, spec2) = (id.clone(), spec.clone());
        on_store(&self.store, move |store| {
            store.create(&id2, &spec2, &changes)
        })
        .await?;
        info!(crawl = %id, name = %spec.name, "crawl started");
        self.crawls.insert(
            id.clone(),
            Crawl::new(spec, CrawlState::Running, frontier, Vec::new()),
        );
        Ok(id)
    }

    /// The nodes seen asking for work within [`WORKER_SEEN_MS`] (forgetting the others).
    fn workers(&mut self, now: u64) -> Vec<String> {
        self.workers
            .retain(|_, seen| now.saturating_sub(*seen) <= WORKER_SEEN_MS);
        self.workers.keys().cloned().collect()
    }

    async fn lease(&mut self, node: &str) -> Result<Offer, CoordinatorError> {
        let now = now_ms();
        self.workers.insert(node.to_string(), now);
        let mut soonest: Option<u64> = None;
        let mut granted = None;
        // A finished crawl still leases the checks of its pages; only a stopped one rests.
        for (id, crawl) in &mut self.crawls {
            if crawl.state == CrawlState::Stopped {
                continue;
            }
            if let Some((lease, changes)) = crawl.frontier.lease(node, now) {
                granted = Some((id.clone(), crawl.spec.clone(), lease, changes));
                break;
            }
            if let Some(at) = crawl.frontier.next_ready_ms(node) {
                soonest = Some(soonest.map_or(at, |s: u64| s.min(at)));
            }
        }
        // Crawls waiting for their last shards, so that no node holds one open.
        let close: Vec<String> = self
            .crawls
            .iter()
            .filter(|(_, c)| c.state != CrawlState::Stopped && c.frontier.is_done())
            .filter(|(_, c)| c.rows_pending() > 0)
            .map(|(id, _)| id.clone())
            .collect();
        match granted {
            Some((crawl, spec, lease, changes)) => {
                self.persist(&crawl, changes).await?;
                Ok(Offer::Lease {
                    crawl,
                    spec: Box::new(spec),
                    lease,
                    close,
                })
            }
            None => Ok(match soonest {
                Some(at) => Offer::Wait {
                    retry_ms: at.saturating_sub(now).clamp(10, 5000),
                    close,
                },
                None => Offer::Idle,
            }),
        }
    }

    async fn complete(&mut self, c: Completion) -> Result<Vec<String>, CoordinatorError> {
        let crawl = self.crawl_mut(&c.crawl)?;
        let (accepted, changes) =
            crawl
                .frontier
                .complete(c.lease, &c.node, &c.reports, c.crawl_delay_ms, now_ms())?;
        self.persist(&c.crawl, changes).await?;
        Ok(accepted)
    }

    async fn fetched(&mut self, f: Fetched) -> Result<(), CoordinatorError> {
        let crawl = self.crawl_mut(&f.crawl)?;
        let changes = crawl
            .frontier
            .fetched(f.lease, &f.node, f.crawl_delay_ms, now_ms())?;
        self.persist(&f.crawl, changes).await
    }

    async fn shard(&mut self, crawl: &str, shard: ShardRecord) -> Result<(), CoordinatorError> {
        let store = self.store.clone();
        let c = self.crawl_mut(crawl)?;
        if let Some(known) = c.shards.iter().find(|s| s.name == shard.name) {
            // A report sent again after a lost reply is fine; other bytes under the same name
            // would drop rows from the dataset.
            return if known.cid == shard.cid {
                Ok(())
            } else {
                Err(CoordinatorError::BadShard(format!(
                    "shard {} is recorded with content {}, not {}",
                    shard.name, known.cid, shard.cid
                )))
            };
        }
        // Only a node that stored pages of the crawl adds rows, and no more than it stored:
        // a peer that knows the crawl's id adds nothing, a worker cannot pad its shards.
        let stored = c.frontier.stored_by(&shard.node);
        let written: u64 = c
            .shards
            .iter()
            .filter(|s| s.node == shard.node)
            .map(|s| s.rows)
            .sum();
        if shard.rows > stored.saturating_sub(written) {
            return Err(CoordinatorError::BadShard(format!(
                "node {} stored {stored} pages of this crawl and has {written} rows in shards; \
                 a shard of {} rows is more than it fetched",
                shard.node, shard.rows
            )));
        }
        if shard.layout.is_some() {
            shard_entry(crawl, &shard).map_err(CoordinatorError::BadShard)?;
        }
        let (id, record) = (crawl.to_string(), shard.clone());
        on_store(&store, move |store| store.add_shard(&id, &record)).await?;
        c.shards.push(shard);
        Ok(())
    }

    async fn stop(&mut self, crawl: &str) -> Result<(), CoordinatorError> {
        // A published crawl stays published: stopping it has nothing left to stop.
        if matches!(self.crawl_mut(crawl)?.state, CrawlState::Published { .. }) {
            return Ok(());
        }
        self.set_state(crawl, CrawlState::Stopped).await
    }

    async fn set_state(&mut self, crawl: &str, state: CrawlState) -> Result<(), CoordinatorError> {
        let store = self.store.clone();
        let c = self.crawl_mut(crawl)?;
        let (id, s) = (crawl.to_string(), state.clone());
        on_store(&store, move |store| store.set_state(&id, &s)).await?;
        c.state = state;
        Ok(())
    }

    fn status(&self) -> Vec<CrawlStatus> {
        self.crawls
            .iter()
            .map(|(id, c)| CrawlStatus {
                id: id.clone(),
                name: c.spec.name.clone(),
                state: c.state.clone(),
                progress: c.frontier.progress(),
                shards: c.shards.len() as u64,
                rows: c.rows(),
                finished: c.frontier.is_done(),
                rows_pending: c.rows_pending(),
            })
            .collect()
    }

    async fn expire(&mut self) {
        let now = now_ms();
        let mut due = Vec::new();
        for (id, c) in &mut self.crawls {
            let changes = c.frontier.expire(now);
            if !changes.is_empty() {
                due.push((id.clone(), changes));
            }
        }
        for (id, changes) in due {
            if let Err(e) = self.persist(&id, changes).await {
                warn!(crawl = %id, %e, "persisting expired leases failed");
            }
        }
    }
    /// Starts a publish task for every crawl that is ready.
    async fn publish_ready(&mut self) {
        let now = now_ms();
        let workers = self.workers(now);
        let mut unpublishable = Vec::new();
        for (id, c) in &mut self.crawls {
            let Some(missing) = c.ready_to_publish(now, &workers) else {
                continue;
            };
            // Nothing to try again: no storage network, or no page to publish.
            let cannot = match &self.publisher {
                None => Some(
                    "this node has no storage network to publish to: start it with \
                     --bootstrap and a storage node's address",
                ),
                Some(_) if c.frontier.stored() == 0 => Some("the crawl stored no pages"),
                Some(_) => None,
            };
            if let Some(why) = cannot {
                if c.state != CrawlState::Unpublishable(why.to_string()) {
                    unpublishable.push((id.clone(), why));
                }
                continue;
            }
            let Some(publisher) = self.publisher.clone() else {
                continue;
            };
            if missing > 0 {
                warn!(crawl = %id, missing, "publishing without pages whose shards never came");
            }
            c.publishing = true;
            let progress = c.frontier.progress();
            let finished = FinishedCrawl {
                id: id.clone(),
                spec: c.spec.clone(),
                shards: c.shards.clone(),
                missing_rows: missing,
                validation: progress.validation.into_iter().collect(),
                pages: c.frontier.stored_pages(),
                dropped: progress.dropped_by,
            };
            let results = self.published.clone();
            tokio::spawn(async move {
                let result = publish_crawl(&publisher, &finished).await;
                let id = finished.id;
                let _ = results.send((id, result)).await;
            });
        }
        for (id, why) in unpublishable {
            let state = CrawlState::Unpublishable(why.to_string());
            if let Err(e) = self.set_state(&id, state).await {
                warn!(crawl = %id, %e, "recording the crawl's state failed");
            }
        }
    }

    /// Records what a publish task did.
    async fn published(&mut self, crawl: &str, result: Result<PublishedCrawl, String>) {
        let Some(c) = self.crawls.get_mut(crawl) else {
            return;
        };
        c.publishing = false;
        let state = match result {
            Ok(done) => {
                info!(crawl, manifest = %done.manifest, version = done.version, "crawl published");
                CrawlState::Published {
                    manifest: done.manifest,
                    version: done.version,
                }
            }
            Err(reason) => {
                let attempts = match &c.state {
                    CrawlState::Unpublished { attempts, .. } => attempts + 1,
                    _ => 1,
                };
                let wait = PUBLISH_RETRY
                    .saturating_mul(1 << attempts.min(8))
                    .min(PUBLISH_RETRY_MAX);
                c.publish_after =
                    now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                warn!(crawl, %reason, attempts, "publishing the crawl failed");
                CrawlState::Unpublished { reason, attempts }
            }
        };
        // A crawl stopped while its publish ran stays stopped.
        if c.state == CrawlState::Stopped {
            return;
        }
        if let Err(e) = self.set_state(crawl, state).await {
            warn!(crawl, %e, "recording the crawl's state failed");
        }
    }
}

/// Runs a store call on a blocking thread: RocksDB's synced writes block.
async fn on_store(
    store: &Arc<CrawlStore>,
    call: impl FnOnce(&CrawlStore) -> Result<(), CrawlStoreError> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|_| CoordinatorError::Gone)?
        .map_err(CoordinatorError::from)
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
