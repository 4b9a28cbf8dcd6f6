//! The scraper node's loop: take a lease, fetch its URLs politely, extract and sign rows,
//! report, write the rows the coordinator accepted, and report each shard it closes.
//!
//! ```text
//! lease ─▶ for each URL: fetch (rules, spacing) ─▶ extract (blocking thread) ─▶ signed row
//!       ─▶ complete(reports) ─▶ accepted URLs ─▶ their rows into the crawl's shard writer
//!       ─▶ a shard closed ─▶ its CID and row count to the coordinator
//! idle  ─▶ open shards closed and reported
//! ```
//!
//! Rows wait in memory only between fetching and acceptance: one lease's worth, page bodies
//! dropped as soon as their hash and text are taken.

use std::{collections::HashMap, future::Future, path::PathBuf, time::Duration};

use libp2p::identity::Keypair;
use tessera_formats::address::{HashFn, hash_reader};
use tracing::{debug, info, warn};

use crate::{
    address::NetworkPolicy,
    coordinator::{Completion, Coordinator, CoordinatorError, Offer, now_ms},
    crawl_store::ShardRecord,
    extract::extract,
    fetch::{FetchConfig, Fetcher, Outcome, decode_html},
    frontier::{Lease, PageResult, UrlReport},
    lock,
    provenance::Row,
    shard::{Finished, ShardWriter},
    spec::CrawlSpec,
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
}

/// Pause between reports of a lease while the coordinator is unavailable.
const COMPLETE_RETRY: Duration = Duration::from_millis(200);

/// What one step of the loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Did a lease: URLs reported, rows written.
    Leased {
        /// URLs in the lease.
        urls: usize,
        /// Rows written.
        rows: usize,
    },
    /// Waited for a host's turn.
    Waited,
    /// No work; open shards were closed.
    Idle,
}

/// A scraper node's worker.
pub struct Worker<C> {
    api: C,
    key: Keypair,
    peer: String,
    config: WorkerConfig,
    fetchers: HashMap<String, Fetcher>,
    /// Behind a lock only so that the worker is `Sync`; one task uses it.
    writers: std::sync::Mutex<HashMap<String, ShardWriter>>,
}

impl<C> std::fmt::Debug for Worker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<C: CrawlApi> Worker<C> {
    /// A worker signing rows with `key`.
    pub fn new(api: C, key: Keypair, config: WorkerConfig) -> Self {
        let peer = key.public().to_peer_id().to_string();
        Self {
            api,
            key,
            peer,
            config,
            fetchers: HashMap::new(),
            writers: std::sync::Mutex::new(HashMap::new()),
        }
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
                Ok(Step::Idle) => true,
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

    /// Takes and does one lease, waits for a host's turn, or closes shards when idle.
    pub async fn step(&mut self) -> Result<Step, ApiError> {
        match self.api.lease(&self.peer).await? {
            Offer::Lease { crawl, spec, lease } => self.do_lease(&crawl, &spec, lease).await,
            Offer::Wait { retry_ms } => {
                tokio::time::sleep(Duration::from_millis(retry_ms)).await;
                Ok(Step::Waited)
            }
            Offer::Idle => {
                self.flush().await?;
                Ok(Step::Idle)
            }
        }
    }

    fn fetcher(&mut self, crawl: &str, spec: &CrawlSpec) -> Result<Fetcher, ApiError> {
        if let Some(f) = self.fetchers.get(crawl) {
            return Ok(f.clone());
        }
        let p = &spec.politeness;
        let fetcher = Fetcher::new(FetchConfig {
            user_agent: spec.user_agent.clone(),
            network: self.config.network.clone(),
            max_body: p.max_body.as_u64(),
            timeout: Duration::from_secs(p.timeout_seconds),
            ai_optouts: p.ai_optouts,
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
    ) -> Result<Step, ApiError> {
        let fetcher = self.fetcher(crawl, spec)?;
        let scope = spec.scope();
        let spacing = Duration::from_millis(lease.spacing_ms);
        let mut reports = Vec::with_capacity(lease.urls.len());
        let mut rows: HashMap<String, Row> = HashMap::new();
        let mut crawl_delay = None;
        for url in &lease.urls {
            let Ok(parsed) = url::Url::parse(url) else {
                reports.push(report(url, PageResult::Skipped("not a URL".into()), vec![]));
                continue;
            };
            let outcome = fetcher.fetch(&parsed, &scope, spacing).await;
            crawl_delay = crawl_delay.or(fetcher
                .crawl_delay(&parsed, spacing)
                .await
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
            let (report, row) = match outcome {
                Outcome::Page(page) => self.row_for(url, page, spec, crawl).await,
                Outcome::Skipped(skip) => (
                    report(url, PageResult::Skipped(skip.to_string()), vec![]),
                    None,
                ),
                Outcome::Failed(error) => (
                    report(url, PageResult::Failed(error.to_string()), vec![]),
                    None,
                ),
            };
            debug!(%url, result = ?report.result, check = lease.check, "fetched");
            // A check's row is never written: the page is another node's.
            if let Some(row) = row.filter(|_| !lease.check) {
                rows.insert(url.clone(), row);
            }
            reports.push(report);
        }
        let accepted = self.complete(crawl, &lease, reports, crawl_delay).await?;
        let mut written = 0;
        for url in accepted {
            if let Some(row) = rows.remove(&url) {
                self.write(crawl, spec, row).await?;
                written += 1;
            }
        }
        Ok(Step::Leased {
            urls: lease.urls.len(),
            rows: written,
        })
    }

    /// Reports a lease, retrying while the coordinator is unavailable (restarting) and the
    /// lease's deadline has not passed: the rows are kept until then.
    async fn complete(
        &self,
        crawl: &str,
        lease: &Lease,
        reports: Vec<UrlReport>,
        crawl_delay: Option<u64>,
    ) -> Result<Vec<String>, ApiError> {
        let completion = Completion {
            crawl: crawl.to_string(),
            lease: lease.id,
            node: self.peer.clone(),
            reports,
            crawl_delay_ms: crawl_delay,
        };
        loop {
            let result = self.api.complete(completion.clone()).await;
            match result {
                Err(ApiError::Unavailable(why)) if now_ms() < lease.deadline_ms => {
                    debug!(%why, lease = lease.id, "coordinator unavailable; reporting again");
                    tokio::time::sleep(COMPLETE_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// What came of a fetched page: its report (with its links and text hash) and its row.
    async fn row_for(
        &self,
        url: &str,
        page: crate::fetch::Page,
        spec: &CrawlSpec,
        crawl: &str,
    ) -> (UrlReport, Option<Row>) {
        let (key, agent, dump) = (self.key.clone(), spec.user_agent.clone(), crawl.to_string());
        let ai_optouts = spec.politeness.ai_optouts;
        let leased = url.to_string();
        let made = tokio::task::spawn_blocking(move || {
            let html = decode_html(&page.body, &page.content_type);
            let extracted = extract(&html, &page.url, &agent);
            let links: Vec<String> = extracted.links.iter().map(|u| u.to_string()).collect();
            let skipped =
                |why: &str| report(&leased, PageResult::Skipped(why.into()), links.clone());
            if ai_optouts && (!extracted.directives.keep() || extracted.tdm_reserved) {
                return (skipped("opted out in its meta tags"), None);
            }
            if extracted.text.is_empty() {
                return (skipped("no text"), None);
            }
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
                    (stored, Some(row))
                }
                Err(e) => (
                    report(&leased, PageResult::Failed(e.to_string()), links),
                    None,
                ),
            }
        })
        .await;
        made.unwrap_or_else(|e| {
            let failed = PageResult::Failed(format!("extraction: {e}"));
            (report(url, failed, vec![]), None)
        })
    }

    async fn write(&mut self, crawl: &str, spec: &CrawlSpec, mut row: Row) -> Result<(), ApiError> {
        let finished = {
            let mut writers = lock(&self.writers);
            if !writers.contains_key(crawl) {
                let writer = self.new_writer(crawl, spec)?;
                writers.insert(crawl.to_string(), writer);
            }
            let writer = writers
                .get_mut(crawl)
                .ok_or_else(|| ApiError::Local("no shard writer".into()))?;
            row.file_path = format!("{crawl}/{}", writer.current_name());
            writer
                .push(&row)
                .map_err(|e| ApiError::Local(e.to_string()))?
        };
        if let Some(f) = finished {
            self.report_shard(crawl, f).await?;
        }
        Ok(())
    }

    fn new_writer(&self, crawl: &str, spec: &CrawlSpec) -> Result<ShardWriter, ApiError> {
        let dir = self.config.out_dir.join(crawl);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::Local(format!("creating {}: {e}", dir.display())))?;
        // Shards are named after the node, numbered on from those already in the folder.
        let prefix = self
            .peer
            .get(self.peer.len().saturating_sub(12)..)
            .unwrap_or("node");
        let first = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0);
        Ok(ShardWriter::new(
            &dir,
            prefix,
            spec.shard_size.as_u64(),
            u32::try_from(first).unwrap_or(u32::MAX),
        ))
    }

    async fn report_shard(&self, crawl: &str, shard: Finished) -> Result<(), ApiError> {
        let path = shard.path.clone();
        let cid = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path).and_then(|f| hash_reader(f, HashFn::Blake3))
        })
        .await
        .map_err(|e| ApiError::Local(e.to_string()))?
        .map_err(|e| ApiError::Local(format!("hashing {}: {e}", shard.path.display())))?
        .0;
        info!(crawl, shard = %shard.name, rows = shard.rows, "shard written");
        self.api
            .shard(
                crawl,
                ShardRecord {
                    name: shard.name,
                    cid: cid.to_string(),
                    rows: shard.rows,
                    bytes: shard.bytes,
                    node: self.peer.clone(),
                },
            )
            .await
    }

    /// Closes every open shard and reports it.
    pub async fn flush(&mut self) -> Result<(), ApiError> {
        let writers: Vec<(String, ShardWriter)> = lock(&self.writers).drain().collect();
        for (crawl, writer) in writers {
            if let Some(f) = writer
                .finish()
                .map_err(|e| ApiError::Local(e.to_string()))?
            {
                self.report_shard(&crawl, f).await?;
            }
        }
        Ok(())
    }
}

fn report(url: &str, result: PageResult, links: Vec<String>) -> UrlReport {
    UrlReport {
        url: url.to_string(),
        result,
        links,
        text_blake3: None,
    }
}
