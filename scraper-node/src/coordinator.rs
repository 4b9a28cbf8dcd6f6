//! The crawl coordinator: one task owns the crawls' frontiers and their store; everyone else
//! holds a [`Coordinator`] handle.
//!
//! ```text
//! handle ──Command + oneshot──▶ actor ── frontier step ──▶ store.apply (synced) ──▶ reply
//!                                 └── every second: expire leases past their deadline
//! ```
//!
//! A reply is sent only after its records are durable, so a node never acts on a lease or an
//! acceptance that a restarted coordinator would not know.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    crawl_store::{CrawlState, CrawlStore, CrawlStoreError, ShardRecord},
    frontier::{Change, Frontier, FrontierError, Lease, Progress, UrlReport},
    lock,
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
    },
    /// Work is queued but no host may be visited yet: ask again after this long.
    Wait {
        /// Milliseconds.
        retry_ms: u64,
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
    Shard(
        String,
        ShardRecord,
        oneshot::Sender<Result<(), CoordinatorError>>,
    ),
    Status(oneshot::Sender<Vec<CrawlStatus>>),
    Stop(String, oneshot::Sender<Result<(), CoordinatorError>>),
}

/// A handle to the coordinator; clone it freely.
#[derive(Debug, Clone)]
pub struct Coordinator {
    commands: mpsc::Sender<Command>,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
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
}

struct Actor {
    store: Arc<CrawlStore>,
    crawls: BTreeMap<String, Crawl>,
}

/// Milliseconds since the Unix epoch: lease deadlines outlive a restart.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Coordinator {
    /// Opens the store in `dir`, restores its crawls and starts the coordinator task.
    pub fn start(dir: &Path) -> Result<Self, CoordinatorError> {
        let store = Arc::new(CrawlStore::open(dir)?);
        let mut crawls = BTreeMap::new();
        for stored in store.load()? {
            let frontier = Frontier::restore(&stored.spec, stored.changes);
            info!(crawl = %stored.id, progress = ?frontier.progress(), "crawl restored");
            crawls.insert(
                stored.id,
                Crawl {
                    spec: stored.spec,
                    state: stored.state,
                    frontier,
                    shards: stored.shards,
                },
            );
        }
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(Actor { store, crawls }.run(rx));
        Ok(Self {
            commands: tx,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        })
    }

    /// Stops the coordinator's task at once, as a crash would: whatever it had not persisted
    /// is lost, and every handle gets [`CoordinatorError::Gone`] from then on.
    pub async fn kill(&self) {
        let task = lock(&self.task).take();
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

    /// Records a shard a node finished.
    pub async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), CoordinatorError> {
        self.ask(|tx| Command::Shard(crawl.to_string(), shard, tx))
            .await?
    }

    /// Every crawl's status.
    pub async fn status(&self) -> Result<Vec<CrawlStatus>, CoordinatorError> {
        self.ask(Command::Status).await
    }

    /// Stops a crawl: no new leases.
    pub async fn stop(&self, crawl: &str) -> Result<(), CoordinatorError> {
        self.ask(|tx| Command::Stop(crawl.to_string(), tx)).await?
    }
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(EXPIRE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                _ = tick.tick() => self.expire().await,
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
            Command::Shard(crawl, shard, reply) => {
                let _ = reply.send(self.shard(&crawl, shard).await);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Stop(crawl, reply) => {
                let _ = reply.send(self.set_state(&crawl, CrawlState::Stopped).await);
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
            Crawl {
                spec,
                state: CrawlState::Running,
                frontier,
                shards: Vec::new(),
            },
        );
        Ok(id)
    }

    async fn lease(&mut self, node: &str) -> Result<Offer, CoordinatorError> {
        let now = now_ms();
        let mut soonest: Option<u64> = None;
        let mut granted = None;
        for (id, crawl) in &mut self.crawls {
            if crawl.state != CrawlState::Running {
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
        match granted {
            Some((crawl, spec, lease, changes)) => {
                self.persist(&crawl, changes).await?;
                Ok(Offer::Lease {
                    crawl,
                    spec: Box::new(spec),
                    lease,
                })
            }
            None => Ok(match soonest {
                Some(at) => Offer::Wait {
                    retry_ms: at.saturating_sub(now).clamp(10, 5000),
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

    async fn shard(&mut self, crawl: &str, shard: ShardRecord) -> Result<(), CoordinatorError> {
        let store = self.store.clone();
        let c = self.crawl_mut(crawl)?;
        if c.shards.iter().any(|s| s.name == shard.name) {
            return Ok(());
        }
        let (id, record) = (crawl.to_string(), shard.clone());
        on_store(&store, move |store| store.add_shard(&id, &record)).await?;
        c.shards.push(shard);
        Ok(())
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
                rows: c.shards.iter().map(|s| s.rows).sum(),
                finished: c.frontier.is_done(),
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
