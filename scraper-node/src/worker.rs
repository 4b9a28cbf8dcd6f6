//! The scraper node's loop: take a lease, fetch its URLs politely, extract and sign rows,
//! report, write the rows the coordinator accepted, and report each shard it closes.
//!
//! ```text
//! lease ─▶ for each URL: fetch (rules, spacing) ─▶ extract (a CPU thread) ─▶ signed row
//!       ─▶ fetched: the host is free for the next lease
//!       ─▶ the lease's end, a task beside the next lease's fetches: the last extractions,
//!          complete(reports) ─▶ accepted URLs
//!       ─▶ at the next step, their rows into the crawl's shard writer
//!       ─▶ a shard closed ─▶ pending ─▶ stored in the network (with storage nodes)
//!       ─▶ its CID, rows, row groups and layout to the coordinator ─▶ local file removed
//! idle, or the crawl's URLs all done ─▶ open shards closed
//! ```
//!
//! Pages are fetched one at a time and extracted on [`CpuPool`]'s threads, one per core, at
//! most a core's worth ahead of the fetches. Rows wait in memory only between fetching and
//! acceptance: at most two leases' worth (one being fetched, the last one's end), page
//! bodies dropped as soon as their hash and text are taken. A closed shard stays pending, on disk, until the coordinator has recorded it: a
//! failed upload or report is tried again at every step, and a restarted worker reports the
//! shards it finds on disk again (the coordinator takes a shard it already has as a repeat).

use backon::{ConstantBuilder, Retryable as _};
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tessera_dataset::{PublishOptions, default_params, inspect::inspect, store_shard};
use tessera_formats::time::now_ms;

use libp2p::identity::Keypair;
use tessera_client::Session;
use tessera_formats::{
    address::{HashFn, hash_reader},
    erasure::{DEFAULT_STRIPE_SIZE, ErasureParams},
};
use tokio::task::{self, JoinError, JoinSet};
use tracing::{debug, info, warn};

use crate::{
    address::NetworkPolicy,
    coordinator::{Completion, Coordinator, CoordinatorError, Fetched, Offer},
    cpu_pool::{CpuPool, Panicked},
    crawl_store::ShardRecord,
    extract::extract,
    fetch::{FetchConfig, Fetcher, Outcome, decode_html},
    frontier::{Lease, PageResult, UrlReport},
    limits::OperatorLimits,
    provenance::Row,
    quality::MinHasher,
    shard::{Finished, ShardWriter},
    spec::CrawlSpec,
    stats::WorkerStats,
};

/// A call to the coordinator failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The coordinator could not be reached or failed; worth trying again.
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The coordinator refused the request (an expired lease, an unknown crawl).
    #[error("coordinator refused: {0}")]
    Refused(String),
    /// This node failed (writing a shard).
    #[error("{0}")]
    Local(String),
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::Gone | CoordinatorError::Store(_) => {
                ApiError::Unavailable(e.to_string())
            }
            _ => ApiError::Refused(e.to_string()),
        }
    }
}

/// What a worker needs from a coordinator, in this process or across the network.
pub trait CrawlApi: Send + Sync {
    /// Work for `node`.
    fn lease(&self, node: &str) -> impl Future<Output = Result<Offer, ApiError>> + Send;
    /// Every URL of a lease is fetched: the host may be leased again.
    fn fetched(&self, fetched: Fetched) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Completes a lease; returns the URLs whose rows the node writes.
    fn complete(
        &self,
        completion: Completion,
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// Records a closed shard.
    fn shard(
        &self,
        crawl: &str,
        shard: ShardRecord,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

impl CrawlApi for Coordinator {
    async fn lease(&self, node: &str) -> Result<Offer, ApiError> {
        Ok(Coordinator::lease(self, node).await?)
    }

    async fn fetched(&self, fetched: Fetched) -> Result<(), ApiError> {
        Ok(Coordinator::fetched(self, fetched).await?)
    }

    async fn complete(&self, completion: Completion) -> Result<Vec<String>, ApiError> {
        Ok(Coordinator::complete(self, completion).await?)
    }

    async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), ApiError> {
        Ok(Coordinator::shard(self, crawl, shard).await?)
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where shards are written, a folder per crawl.
    pub out_dir: PathBuf,
    /// Which addresses may be fetched.
    pub network: NetworkPolicy,
    /// How long to wait when no crawl has work.
    pub idle_wait: Duration,
    /// The storage network that closed shards are stored in; without one they stay in
    /// `out_dir` and the crawl cannot be published.
    pub storage: Option<Arc<Session>>,
    /// The operator's limits, which every lease is checked against.
    pub limits: OperatorLimits,
}

/// Pause between reports of a lease while the coordinator is unavailable.
const COMPLETE_RETRY: Duration = Duration::from_millis(200);
/// Longest time a lease's report is tried again, whatever deadline the coordinator gave.
const MAX_COMPLETE_RETRIES: Duration = Duration::from_secs(24 * 3600);
/// Most pages of a lease extracted at once, whatever the machine: each holds its body.
const MAX_EXTRACT_AHEAD: usize = 16;
/// Pause before pending shards are tried again after an attempt left some.
const SETTLE_RETRY: Duration = Duration::from_secs(5);
/// Longest wait a coordinator may ask for before the next lease.
const MAX_OFFER_WAIT: Duration = Duration::from_secs(60);
/// The window of the operator's pages-per-hour limit.
const HOUR: Duration = Duration::from_secs(3600);

/// What one step of the loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Fetched a lease, whose end (extraction, report) runs on while the next step fetches;
    /// wrote the rows of the lease before it.
    Leased {
        /// URLs in the lease.
        urls: usize,
        /// Rows written: the lease before this one's.
        rows: usize,
    },
    /// Waited for a host's turn.
    Waited,
    /// No work; open shards were closed.
    Idle,
    /// The lease broke the operator's limits: nothing was fetched, and its URLs were
    /// reported failed with the reason.
    Refused(String),
}

/// A scraper node's worker.
pub struct Worker<C> {
    api: C,
    key: Keypair,
    peer: String,
    config: WorkerConfig,
    fetchers: HashMap<String, Fetcher>,
    /// Behind a lock only so that the worker is `Sync`; one task uses it.
    writers: parking_lot::Mutex<HashMap<String, ShardWriter>>,
    /// Closed shards the coordinator has not recorded yet.
    pending: Vec<Pending>,
    /// No new attempt at the pending shards before this.
    settle_after: tokio::time::Instant,
    /// Each crawl's erasure coding, chosen once.
    params: HashMap<String, ErasureParams>,
    /// Each crawl's next shard number in this run.
    next_shard: HashMap<String, u32>,
    /// Part of every shard name: shards of different runs never share a name.
    run_id: String,
    /// What it did, for the node's dashboard.
    stats: Arc<WorkerStats>,
    /// When each page of the last hour was fetched, for the operator's pages-per-hour limit.
    fetched: VecDeque<tokio::time::Instant>,
    /// Pages extracted at once while the next ones are fetched: enough to keep every core
    /// busy when a slow page holds one.
    extract_ahead: usize,
    /// Where pages are extracted.
    cpu: CpuPool,
    /// The last lease's end (its extraction, its report), running while the next lease is
    /// fetched; its rows are written when it is done.
    tail: Option<Tail>,
}

/// A lease's end as a task: the rows the coordinator accepted, or why it failed.
type Tail = task::JoinHandle<Result<Ended, ApiError>>;

/// What a lease's end leaves to write.
struct Ended {
    crawl: String,
    spec: CrawlSpec,
    rows: Vec<Row>,
}

impl<C> std::fmt::Debug for Worker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<C: CrawlApi + Clone + 'static> Worker<C> {
    /// A worker signing rows with `key`.
    pub fn new(api: C, key: Keypair, config: WorkerConfig) -> Self {
        let peer = key.public().to_peer_id().to_string();
        let pending = closed_shards(&config.out_dir, &shard_prefix(&peer));
        if !pending.is_empty() {
            info!(shards = pending.len(), "shards on disk to report again");
        }
        Self {
            api,
            key,
            peer,
            config,
            fetchers: HashMap::new(),
            writers: parking_lot::Mutex::new(HashMap::new()),
            pending,
            settle_after: tokio::time::Instant::now(),
            params: HashMap::new(),
            next_shard: HashMap::new(),
            run_id: format!("{:x}", now_ms()),
            stats: Arc::default(),
            fetched: VecDeque::new(),
            extract_ahead: std::thread::available_parallelism()
                .map_or(2, |n| n.get() + 1)
                .min(MAX_EXTRACT_AHEAD),
            cpu: CpuPool::per_core(),
            tail: None,
        }
    }

    /// The same worker, counting into `stats`.
    #[must_use]
    pub fn with_stats(self, stats: Arc<WorkerStats>) -> Self {
        Self { stats, ..self }
    }

    /// Runs until `stop` resolves, then closes and reports open shards. A lease under way is
    /// finished first: cutting it short could drop rows the coordinator already accepted.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            // Between steps only: is it time to stop?
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = std::future::ready(()) => {}
            }
            let pause = match self.step().await {
                Ok(Step::Idle | Step::Refused(_)) => true,
                Ok(_) => false,
                Err(e) => {
                    warn!(%e, "worker step failed");
                    true
                }
            };
            if pause {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(self.config.idle_wait) => {}
                }
            }
        }
        if let Err(e) = self.flush().await {
            warn!(%e, "closing shards failed");
        }
    }

    /// Takes and does one lease, waits for a host's turn, or closes shards when idle; then
    /// stores and reports the shards that are pending.
    pub async fn step(&mut self) -> Result<Step, ApiError> {
        let step = match self.api.lease(&self.peer).await? {
            Offer::Lease {
                crawl,
                spec,
                lease,
                close,
            } => {
                if !close.is_empty() {
                    self.finish_tail().await?;
                }
                self.close(&close)?;
                match self.config.limits.check_lease(&crawl, &spec, &lease) {
                    Ok(spacing) => self.do_lease(&crawl, &spec, lease, spacing).await?,
                    Err(refused) => self.refuse(&crawl, &lease, refused.to_string()).await?,
                }
            }
            Offer::Wait { retry_ms, close } => {
                // The last lease's report may bring the URLs this wait is for: it goes in
                // first, and the next step asks again at once.
                let reported = self.tail.is_some();
                self.finish_tail().await?;
                self.close(&close)?;
                if !reported {
                    tokio::time::sleep(Duration::from_millis(retry_ms).min(MAX_OFFER_WAIT)).await;
                }
                Step::Waited
            }
            Offer::Idle if self.tail.is_some() => {
                self.finish_tail().await?;
                Step::Waited
            }
            Offer::Idle => {
                let all: Vec<String> = self.writers.lock().keys().cloned().collect();
                self.close(&all)?;
                Step::Idle
            }
        };
        self.settle().await;
        Ok(step)
    }

    /// Closes the open shards of `crawls`; they join the pending ones.
    fn close(&mut self, crawls: &[String]) -> Result<(), ApiError> {
        for crawl in crawls {
            let Some(mut writer) = self.writers.lock().remove(crawl) else {
                continue;
            };
            let finished = writer
                .finish()
                .map_err(|e| ApiError::Local(e.to_string()))?;
            self.next_shard.insert(crawl.clone(), writer.next_index());
            if let Some(f) = finished {
                self.pending.push(Pending::new(crawl, f));
            }
        }
        Ok(())
    }

    /// Stores and reports every pending shard it can; what fails stays pending and is tried
    /// again after [`SETTLE_RETRY`].
    async fn settle(&mut self) {
        if self.pending.is_empty() || tokio::time::Instant::now() < self.settle_after {
            return;
        }
        for mut shard in std::mem::take(&mut self.pending) {
            match self.report_shard(&mut shard).await {
                Ok(()) => {
                    self.stats.shard();
                    // In the network now: the contributor's disk gets its space back.
                    if self.config.storage.is_some()
                        && let Err(e) = std::fs::remove_file(&shard.file.path)
                    {
                        warn!(path = %shard.file.path.display(), %e, "removing a stored shard");
                    }
                }
                Err(ApiError::Refused(why)) => {
                    warn!(crawl = %shard.crawl, shard = %shard.file.name, %why, "shard refused; kept on disk");
                }
                Err(e) => {
                    debug!(crawl = %shard.crawl, shard = %shard.file.name, %e, "shard not reported yet");
                    self.pending.push(shard);
                }
            }
        }
        if !self.pending.is_empty() {
            self.settle_after = tokio::time::Instant::now() + SETTLE_RETRY;
        }
    }

    /// Reports every URL of a refused lease failed, with the reason, so the coordinator
    /// hands them to other nodes now rather than when the lease expires.
    async fn refuse(&self, crawl: &str, lease: &Lease, why: String) -> Result<Step, ApiError> {
        warn!(%crawl, lease = lease.id, %why, "lease refused");
        let failed = PageResult::Failed(format!("node {} {why}", self.peer));
        let reports = lease
            .urls
            .iter()
            .map(|url| report(url, failed.clone(), vec![]))
            .collect();
        // Said once: a coordinator that cannot take the report loses nothing, the lease
        // expires.
        if let Err(e) = self
            .api
            .complete(self.completion(crawl, lease, reports, None))
            .await
        {
            debug!(%e, "reporting a refused lease");
        }
        Ok(Step::Refused(why))
    }

    /// This node's report of `lease`.
    fn completion(
        &self,
        crawl: &str,
        lease: &Lease,
        reports: Vec<UrlReport>,
        crawl_delay_ms: Option<u64>,
    ) -> Completion {
        Completion {
            crawl: crawl.to_string(),
            lease: lease.id,
            node: self.peer.clone(),
            reports,
            crawl_delay_ms,
        }
    }

    /// Waits until the operator's pages-per-hour limit leaves room for one more page.
    async fn pace(&mut self) {
        let now = tokio::time::Instant::now();
        while self
            .fetched
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.fetched.pop_front();
        }
        let most = usize::try_from(self.config.limits.pages_per_hour).unwrap_or(usize::MAX);
        if self.fetched.len() >= most
            && let Some(oldest) = self.fetched.pop_front()
        {
            debug!(
                pages = most,
                "the operator's hourly page limit reached; waiting"
            );
            tokio::time::sleep_until(oldest + HOUR).await;
        }
        self.fetched.push_back(tokio::time::Instant::now());
    }

    fn fetcher(&mut self, crawl: &str, spec: &CrawlSpec) -> Result<Fetcher, ApiError> {
        if let Some(f) = self.fetchers.get(crawl) {
            return Ok(f.clone());
        }
        let (p, limits) = (&spec.politeness, &self.config.limits);
        let fetcher = Fetcher::new(FetchConfig {
            user_agent: limits.user_agent(&self.peer, spec),
            network: self.config.network.clone(),
            max_body: p.max_body.min(limits.max_body).as_u64(),
            timeout: Duration::from_secs(p.timeout_seconds).min(limits.max_timeout),
            // Always on: a coordinator cannot turn them off (the lease was checked).
            ai_optouts: true,
            ..FetchConfig::default()
        })
        .map_err(|e| ApiError::Local(e.to_string()))?;
        self.fetchers.insert(crawl.to_string(), fetcher.clone());
        Ok(fetcher)
    }

    async fn do_lease(
        &mut self,
        crawl: &str,
        spec: &CrawlSpec,
        lease: Lease,
        spacing: Duration,
    ) -> Result<Step, ApiError> {
        let fetcher = self.fetcher(crawl, spec)?;
        let scope = spec.scope();
        let mut crawl_delay = None;
        // Pages are extracted on the CPU threads while the next ones are fetched, at most
        // `extract_ahead` at a time (their bodies wait in memory); each result goes to its
        // place in the lease, whichever page finishes first.
        let mut made: Vec<Option<Made>> = (0..lease.urls.len()).map(|_| None).collect();
        let mut extracting = JoinSet::new();
        let mut positions = HashMap::new();
        for (i, url) in lease.urls.iter().enumerate() {
            let Ok(parsed) = url::Url::parse(url) else {
                let skipped = report(url, PageResult::Skipped("not a URL".into()), vec![]);
                made[i] = Some((url.clone(), skipped, None));
                continue;
            };
            self.pace().await;
            let outcome = fetcher.fetch(&parsed, &scope, spacing).await;
            crawl_delay = crawl_delay.or(fetcher
                .crawl_delay(&parsed, spacing)
                .await
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
            let result = match outcome {
                Outcome::Page(page) => {
                    while extracting.len() >= self.extract_ahead {
                        if let Some(done) = extracting.join_next_with_id().await {
                            extracted(done, &positions, &lease.urls, &mut made);
                        }
                    }
                    let id = extracting
                        .spawn(self.cpu.run(self.row_maker(url, page, spec, crawl)))
                        .id();
                    positions.insert(id, i);
                    continue;
                }
                Outcome::Skipped(skip) => PageResult::Skipped(skip.to_string()),
                Outcome::Failed(error) => PageResult::Failed(error.to_string()),
            };
            made[i] = Some((url.clone(), report(url, result, vec![]), None));
        }
        // Every URL is fetched: the host is free for the next lease (this node's or
        // another's) while these pages are extracted and reported. Said once; if it is
        // lost, the report frees the host.
        let fetched = Fetched {
            crawl: crawl.to_string(),
            lease: lease.id,
            node: self.peer.clone(),
            crawl_delay_ms: crawl_delay,
        };
        if let Err(e) = self.api.fetched(fetched).await {
            debug!(%e, lease = lease.id, "telling the coordinator a lease is fetched");
        }
        // The last lease's end is written first, so rows reach the shards in lease order. Its
        // failure (a report refused, a shard not written) is that lease's: this one goes on.
        let written = self.finish_tail().await.unwrap_or_else(|e| {
            warn!(%e, "the last lease's end failed");
            0
        });
        let urls = lease.urls.len();
        let completion = self.completion(crawl, &lease, Vec::new(), crawl_delay);
        let (api, spec, crawl) = (self.api.clone(), spec.clone(), crawl.to_string());
        self.tail = Some(tokio::spawn(async move {
            while let Some(done) = extracting.join_next_with_id().await {
                extracted(done, &positions, &lease.urls, &mut made);
            }
            let mut reports = Vec::with_capacity(lease.urls.len());
            let mut rows: HashMap<String, Row> = HashMap::new();
            for (i, made) in made.into_iter().enumerate() {
                let (url, report_, row) = made.unwrap_or_else(|| {
                    let url = &lease.urls[i];
                    let lost = PageResult::Failed("extraction: no result".into());
                    (url.clone(), report(url, lost, vec![]), None)
                });
                debug!(%url, result = ?report_.result, check = lease.check, "fetched");
                if let Some(row) = row.filter(|_| !lease.check) {
                    rows.insert(url, row);
                }
                reports.push(report_);
            }
            let completion = Completion {
                reports,
                ..completion
            };
            let accepted = complete(&api, completion, &lease).await?;
            let rows = accepted.iter().filter_map(|url| rows.remove(url)).collect();
            Ok(Ended { crawl, spec, rows })
        }));
        Ok(Step::Leased {
            urls,
            rows: written,
        })
    }

    /// Waits for the last lease's end and writes its accepted rows; returns how many.
    async fn finish_tail(&mut self) -> Result<usize, ApiError> {
        let Some(tail) = self.tail.take() else {
            return Ok(0);
        };
        let ended = tail
            .await
            .map_err(|e| ApiError::Local(format!("a lease's end failed: {e}")))??;
        let written = ended.rows.len();
        for row in ended.rows {
            self.write(&ended.crawl, &ended.spec, row)?;
        }
        self.stats.lease(written as u64);
        Ok(written)
    }

    /// The work that makes a fetched page's report (with its links and text hash) and its
    /// row, to run on a CPU thread: extraction is the node's CPU work.
    fn row_maker(
        &self,
        url: &str,
        page: crate::fetch::Page,
        spec: &CrawlSpec,
        crawl: &str,
    ) -> impl FnOnce() -> (UrlReport, Option<Row>) + Send + 'static {
        let (key, dump) = (self.key.clone(), crawl.to_string());
        let agent = self.config.limits.user_agent(&self.peer, spec);
        let leased = url.to_string();
        let quality = spec.quality.clone();
        move || {
            let html = decode_html(&page.body, &page.content_type);
            let mut extracted = match extract(&html, &page.url, &agent) {
                Ok(extracted) => extracted,
                Err(too_deep) => {
                    let why = PageResult::Skipped(too_deep.to_string());
                    return (report(&leased, why, vec![]), None);
                }
            };
            let links: Vec<String> = extracted.links.iter().map(|u| u.to_string()).collect();
            let skipped =
                |why: &str| report(&leased, PageResult::Skipped(why.into()), links.clone());
            if !extracted.directives.keep() || extracted.tdm_reserved {
                return (skipped("opted out in its meta tags"), None);
            }
            if extracted.text.is_empty() {
                return (skipped("no text"), None);
            }
            if !quality.keeps_links(extracted.link_density, extracted.article_link_density) {
                let why = PageResult::Dropped("link_list".into());
                return (report(&leased, why, links), None);
            }
            let hasher = MinHasher::new(&quality.dedup);
            let kept = match quality.apply(
                &extracted.text,
                &extracted.language,
                extracted.language_score,
                &hasher,
            ) {
                Ok(kept) => kept,
                Err(why) => {
                    return (report(&leased, PageResult::Dropped(why), links), None);
                }
            };
            extracted.text = kept.text;
            let row = Row::for_page(
                &key,
                page.url.as_str(),
                page.fetched_at,
                page.status,
                &page.content_type,
                &page.body,
                &extracted,
                &format!("tessera-crawl:{dump}"),
                String::new(),
            );
            match row {
                Ok(row) => {
                    let mut stored = report(&leased, PageResult::Stored, links);
                    stored.text_blake3 =
                        Some(blake3::hash(extracted.text.as_bytes()).to_hex().to_string());
                    stored.final_url = (page.url.as_str() != leased).then(|| page.url.to_string());
                    stored.buckets = kept.buckets;
                    (stored, Some(row))
                }
                Err(e) => (
                    report(&leased, PageResult::Failed(e.to_string()), links),
                    None,
                ),
            }
        }
    }

    fn write(&mut self, crawl: &str, spec: &CrawlSpec, mut row: Row) -> Result<(), ApiError> {
        if !self.writers.lock().contains_key(crawl) {
            let writer = self.new_writer(crawl, spec)?;
            self.writers.lock().insert(crawl.to_string(), writer);
        }
        let finished = {
            let mut writers = self.writers.lock();
            let writer = writers
                .get_mut(crawl)
                .ok_or_else(|| ApiError::Local("no shard writer".into()))?;
            row.file_path = format!("{crawl}/{}", writer.current_name());
            writer
                .push(&row)
                .map_err(|e| ApiError::Local(e.to_string()))?
        };
        if let Some(f) = finished {
            self.pending.push(Pending::new(crawl, f));
        }
        Ok(())
    }

    fn new_writer(&mut self, crawl: &str, spec: &CrawlSpec) -> Result<ShardWriter, ApiError> {
        let dir = self.config.out_dir.join(crawl);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::Local(format!("creating {}: {e}", dir.display())))?;
        if let Some(e) = spec.erasure {
            let params = ErasureParams::new(e.k, e.m, DEFAULT_STRIPE_SIZE)
                .map_err(|e| ApiError::Local(e.to_string()))?;
            self.params.insert(crawl.to_string(), params);
        }
        // Named after the node and this run, numbered within the run: a name is never used
        // twice, even after the files of an earlier run were stored and removed.
        let prefix = format!("{}-{}", shard_prefix(&self.peer), self.run_id);
        let first = self.next_shard.get(crawl).copied().unwrap_or(0);
        Ok(ShardWriter::new(
            &dir,
            &prefix,
            spec.shard_size.as_u64(),
            first,
        ))
    }

    /// The erasure coding of `crawl`'s shards: its spec's, or the default for the storage
    /// nodes reachable when its first shard is stored.
    async fn params(&mut self, crawl: &str, storage: &Session) -> Result<ErasureParams, ApiError> {
        if let Some(p) = self.params.get(crawl) {
            return Ok(*p);
        }
        let nodes = storage
            .net()
            .closest_peers(b"tessera/publish".to_vec())
            .await
            .map_err(|e| ApiError::Unavailable(format!("finding storage nodes: {e}")))?;
        let params = default_params(nodes.len());
        self.params.insert(crawl.to_string(), params);
        Ok(params)
    }

    /// Stores `shard` in the network (when the node has storage nodes) and reports it. What
    /// is done is kept in `shard`, so a failed report does not upload it again.
    async fn report_shard(&mut self, shard: &mut Pending) -> Result<(), ApiError> {
        let record = match &shard.record {
            Some(record) => record.clone(),
            None => {
                let record = self.shard_record(&shard.crawl, &shard.file).await?;
                shard.record = Some(record.clone());
                record
            }
        };
        info!(
            crawl = %shard.crawl,
            shard = %record.name,
            rows = record.rows,
            stored = record.layout.is_some(),
            "shard written"
        );
        self.api.shard(&shard.crawl, record).await
    }

    /// The record of a closed shard: its CID and footer, and its layout once it is stored in
    /// the network.
    async fn shard_record(
        &mut self,
        crawl: &str,
        file: &Finished,
    ) -> Result<ShardRecord, ApiError> {
        let path = file.path.clone();
        let (cid, info) = tokio::task::spawn_blocking(move || {
            let cid = std::fs::File::open(&path)
                .and_then(|f| hash_reader(f, HashFn::Blake3))
                .map_err(|e| format!("hashing {}: {e}", path.display()))?
                .0;
            let info = inspect(&path).map_err(|e| e.to_string())?;
            Ok::<_, String>((cid, info))
        })
        .await
        .map_err(|e| ApiError::Local(e.to_string()))?
        .map_err(ApiError::Local)?;
        let layout = match self.config.storage.clone() {
            Some(storage) => {
                let params = self.params(crawl, &storage).await?;
                let options = PublishOptions {
                    parallel: 4,
                    spool_dir: Some(self.config.out_dir.clone()),
                    ..PublishOptions::default()
                };
                let stored = store_shard(&storage, &file.path, params, &options)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("storing {}: {e}", file.name)))?;
                let (_, block) = stored
                    .layout
                    .to_block()
                    .map_err(|e| ApiError::Local(e.to_string()))?;
                Some(block)
            }
            None => None,
        };
        Ok(ShardRecord {
            name: file.name.clone(),
            cid: cid.to_string(),
            rows: info.rows,
            bytes: info.size,
            node: self.peer.clone(),
            row_groups: info.row_groups,
            layout,
        })
    }

    /// Closes every open shard, then stores and reports what is pending.
    pub async fn flush(&mut self) -> Result<(), ApiError> {
        self.finish_tail().await?;
        let all: Vec<String> = self.writers.lock().keys().cloned().collect();
        self.close(&all)?;
        self.settle_after = tokio::time::Instant::now();
        self.settle().await;
        match self.pending.len() {
            0 => Ok(()),
            n => Err(ApiError::Unavailable(format!(
                "{n} shards not reported yet; they stay on disk and are reported at the next start"
            ))),
        }
    }
}

/// Reports a lease, retrying while the coordinator is unavailable (restarting) and the
/// lease's deadline has not passed: the rows are kept until then. The deadline is the
/// coordinator's word, so the retries end within [`MAX_COMPLETE_RETRIES`] all the same.
async fn complete<C: CrawlApi>(
    api: &C,
    completion: Completion,
    lease: &Lease,
) -> Result<Vec<String>, ApiError> {
    let until = lease.deadline_ms.min(
        now_ms()
            .saturating_add(u64::try_from(MAX_COMPLETE_RETRIES.as_millis()).unwrap_or(u64::MAX)),
    );
    let budget = Duration::from_millis(until.saturating_sub(now_ms()));
    let tries =
        usize::try_from(budget.as_millis() / COMPLETE_RETRY.as_millis()).unwrap_or(usize::MAX);
    (|| api.complete(completion.clone()))
        .retry(
            ConstantBuilder::new()
                .with_delay(COMPLETE_RETRY)
                .with_max_times(tries),
        )
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, ApiError::Unavailable(_)))
        .notify(
            |e, _| debug!(why = %e, lease = lease.id, "coordinator unavailable; reporting again"),
        )
        .await
}

/// A closed shard on its way to the coordinator.
#[derive(Debug)]
struct Pending {
    crawl: String,
    file: Finished,
    /// Its record, once made (and its pieces stored).
    record: Option<ShardRecord>,
}

impl Pending {
    fn new(crawl: &str, file: Finished) -> Self {
        Self {
            crawl: crawl.to_string(),
            file,
            record: None,
        }
    }
}

/// The start of the names of this node's shards: the end of its peer id.
fn shard_prefix(peer: &str) -> String {
    peer.get(peer.len().saturating_sub(12)..)
        .unwrap_or("node")
        .to_string()
}

/// Shards a node closed in an earlier run and may not have reported: `PREFIX-*.parquet` in
/// each crawl's folder of `out_dir`. Shards it left open are removed.
fn closed_shards(out_dir: &Path, prefix: &str) -> Vec<Pending> {
    let mut found = Vec::new();
    for crawl in std::fs::read_dir(out_dir).into_iter().flatten().flatten() {
        let crawl_name = crawl.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(crawl.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) {
                continue;
            }
            if name.ends_with(".partial") {
                // A shard an earlier run never closed: unreadable, its rows are gone.
                warn!(file = %file.path().display(), "removing a shard left open by an earlier run");
                let _ = std::fs::remove_file(file.path());
                continue;
            }
            if !name.ends_with(".parquet") {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let finished = Finished {
                path: file.path(),
                name,
                rows: 0,
                bytes: meta.len(),
            };
            found.push(Pending::new(&crawl_name, finished));
        }
    }
    found.sort_by(|a, b| a.file.name.cmp(&b.file.name));
    found
}

/// What a lease's page came to: its URL, report and row.
type Made = (String, UrlReport, Option<Row>);

/// An extraction task's end: its id, and its report and row unless it panicked.
type Extraction = Result<(task::Id, Result<(UrlReport, Option<Row>), Panicked>), JoinError>;

/// Puts a finished extraction's report and row in its place in the lease; one that panicked
/// is reported failed.
fn extracted(
    done: Extraction,
    positions: &HashMap<task::Id, usize>,
    urls: &[String],
    made: &mut [Option<Made>],
) {
    let (id, result) = match done {
        Ok((id, result)) => (id, result.map_err(|e| e.to_string())),
        Err(e) => (e.id(), Err(e.to_string())),
    };
    let Some(&i) = positions.get(&id) else { return };
    let url = urls[i].clone();
    made[i] = Some(match result {
        Ok((report_, row)) => (url, report_, row),
        Err(e) => {
            let failed = report(&url, PageResult::Failed(format!("extraction: {e}")), vec![]);
            (url, failed, None)
        }
    });
}

fn report(url: &str, result: PageResult, links: Vec<String>) -> UrlReport {
    UrlReport {
        url: url.to_string(),
        result,
        links,
        text_blake3: None,
        buckets: Vec::new(),
        final_url: None,
    }
}
