//! The crawl frontier: which URLs are known, which are leased to which node, and when each
//! host may be visited next. Sans-IO: every call takes the time and returns the records to
//! persist; the coordinator writes them to RocksDB and can rebuild the frontier from them
//! after a restart.
//!
//! ```text
//! seeds, links ─▶ in scope? depth <= max? new? under max_pages? ─▶ queued (per host, FIFO)
//! lease(node, now): a host with queued URLs, fewer than `host_leases` leases running and its
//!                   spacing passed ─▶ up to `lease_size` of its URLs, due back by a deadline
//! complete(lease, reports, now): each URL still owed to this lease (or queued again) is
//!                   accepted once ─▶ stored / skipped / failed or queued again; links queued;
//!                   the host's next visit = now + spacing; URLs not accepted were already
//!                   done by another lease, and the node drops their rows
//! expire(now):      leases past their deadline ─▶ their URLs queued again (failed after
//!                   `max_attempts` leases)
//! ```
//!
//! A node writes a lease's rows only after the coordinator accepted them, so every page is in
//! the output once, whichever lease fetched it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    canonical::{Scope, canonicalize, host_key},
    duplicates::Kept,
    fetch::MAX_CRAWL_DELAY,
    row_check::StoredPages,
    spec::CrawlSpec,
    validation::{Check, Checks, Score, sampled},
};

/// The longest `Crawl-delay` a node's report may set for a host.
const MAX_CRAWL_DELAY_MS: u64 = MAX_CRAWL_DELAY.as_secs() * 1000;

/// Where one URL stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlState {
    /// Waiting for a lease.
    Queued,
    /// Leased.
    Leased(u64),
    /// Fetched and written to a shard.
    Stored,
    /// Not fetched or not kept, and why (robots.txt, an opt-out, not HTML, a 404...).
    Skipped(String),
    /// Failed every attempt, and the last reason.
    Failed(String),
    /// Fetched, and dropped by the crawl's quality pipeline or as a duplicate: the reason's
    /// code ("gopher_short_doc", "near_duplicate").
    Dropped(String),
}

/// One URL's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRecord {
    /// Links followed from a seed to reach it.
    pub depth: u32,
    /// Where it stands.
    pub state: UrlState,
    /// Leases it has taken.
    pub attempts: u32,
    /// Order of discovery, for a first-in first-out queue that survives a restart.
    pub seq: u64,
    /// The node that stored it: the rows of a node's shards are bounded by its pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// What that node committed to for its row: the URL the row names (after redirects) and
    /// the BLAKE3 of the row's text, hex. The shard's rows are checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<(String, String)>,
    /// The MinHash bucket hashes of the stored page's text, for deduplication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<u64>,
}

/// URLs handed to one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease.
    pub id: u64,
    /// The node holding it (its peer id).
    pub node: String,
    /// The host all its URLs are on.
    pub host: String,
    /// The URLs.
    pub urls: Vec<String>,
    /// The least time between two requests to the host, in milliseconds.
    pub spacing_ms: u64,
    /// When it must be completed by (ms since the Unix epoch).
    pub deadline_ms: u64,
    /// A check: its one URL was stored by another node and is fetched again to compare; the
    /// node writes no row for it.
    #[serde(default)]
    pub check: bool,
    /// Its node has fetched every URL: the host is free for the next lease while the node
    /// finishes extracting and reports.
    #[serde(default)]
    pub fetched: bool,
}

/// A host's politeness record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// No lease for the host before this time (ms since the Unix epoch).
    pub next_ms: u64,
    /// Its robots.txt `Crawl-delay`, as a node reported it, in milliseconds.
    pub crawl_delay_ms: u64,
}

/// A record to persist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A URL's record, new or changed.
    Url(String, UrlRecord),
    /// A lease handed out.
    Lease(Lease),
    /// A lease completed or expired.
    LeaseGone(u64),
    /// A host's politeness record.
    Host(String, HostRecord),
    /// The next lease id.
    NextLease(u64),
    /// A check queued (or queued again), on its host.
    Check(String, Check),
    /// A check settled: its URL.
    CheckGone(String),
    /// A node's validation score.
    Score(String, Score),
}

/// What a node reports for one URL of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlReport {
    /// The URL, as leased.
    pub url: String,
    /// What came of it.
    pub result: PageResult,
    /// Links found on the page (canonical, at most a page's worth).
    pub links: Vec<String>,
    /// BLAKE3 of the page's extracted text, hex, when it was stored (or checked).
    #[serde(default)]
    pub text_blake3: Option<String>,
    /// The URL its row names, when a redirect took the page away from the leased one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// The MinHash bucket hashes of the stored page's text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<u64>,
}

/// What came of one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageResult {
    /// Fetched; its row is ready to write.
    Stored,
    /// Not fetched or not kept, for good.
    Skipped(String),
    /// Failed for now; worth another attempt.
    Failed(String),
    /// Fetched and dropped by the crawl's quality pipeline: the reason's code.
    Dropped(String),
}

/// A lease that cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    /// No such lease: it expired (and its URLs may be done by another), or never existed.
    #[error("no lease {0} (expired or unknown)")]
    UnknownLease(u64),
    /// The lease belongs to another node.
    #[error("lease {0} is not this node's")]
    NotYours(u64),
}

/// Counts for `crawl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// URLs known.
    pub known: u64,
    /// Waiting for a lease.
    pub queued: u64,
    /// Leased now.
    pub leased: u64,
    /// Stored.
    pub stored: u64,
    /// Skipped.
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Fetched and dropped by the quality pipeline or as duplicates.
    #[serde(default)]
    pub dropped: u64,
    /// Dropped pages by reason.
    #[serde(default)]
    pub dropped_by: BTreeMap<String, u64>,
    /// Leases running.
    pub leases: u64,
    /// Queued URLs per host, largest backlog first (at most 20 hosts).
    pub backlog: Vec<(String, u64)>,
    /// Stored pages waiting to be fetched again by another node.
    pub checks_pending: u64,
    /// Per node that stored pages: how its pages fared when fetched again by others.
    pub validation: Vec<(String, Score)>,
    /// The latest pages skipped or failed for good (at most [`RECENT_SKIPS`]), newest last:
    /// the URL, and why ("skipped: no text", "failed: HTTP 404").
    #[serde(default)]
    pub skipped_pages: Vec<(String, String)>,
}

/// Pages skipped or failed that a crawl's status lists.
pub const RECENT_SKIPS: usize = 50;
/// Most distinct drop reasons counted; the rest count as `other`.
const MAX_REASONS: usize = 64;

#[derive(Debug, Default)]
struct Host {
    queue: VecDeque<String>,
    active: u32,
    record: HostRecord,
}

/// The frontier of one crawl.
#[derive(Debug)]
pub struct Frontier {
    scope: Scope,
    max_pages: u64,
    max_depth: u32,
    host_leases: u32,
    lease_size: usize,
    delay_ms: u64,
    lease_timeout_ms: u64,
    max_attempts: u32,
    urls: HashMap<String, UrlRecord>,
    hosts: BTreeMap<String, Host>,
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    next_seq: u64,
    /// The host after which the next lease search starts, so hosts take turns.
    cursor: String,
    validate_fraction: f64,
    checks: Checks,
    /// Checks out on leases, by lease.
    checking: HashMap<u64, Check>,
    /// URLs in each state, kept as they change: status and the coordinator's checks read
    /// them often, and a crawl may know millions of URLs.
    counts: Counts,
    /// The latest pages skipped or failed for good, with why.
    recent_skips: VecDeque<(String, String)>,
    /// Dropped pages by reason.
    dropped_by: BTreeMap<String, u64>,
    /// The texts kept so far, for deduplication.
    kept: Kept,
}

/// URLs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    queued: u64,
    leased: u64,
    stored: u64,
    skipped: u64,
    failed: u64,
    dropped: u64,
}

impl Counts {
    fn of(&mut self, state: &UrlState) -> &mut u64 {
        match state {
            UrlState::Queued => &mut self.queued,
            UrlState::Leased(_) => &mut self.leased,
            UrlState::Stored => &mut self.stored,
            UrlState::Skipped(_) => &mut self.skipped,
            UrlState::Failed(_) => &mut self.failed,
            UrlState::Dropped(_) => &mut self.dropped,
        }
    }

    /// A URL moved from `old` to `new`.
    fn moved(&mut self, old: &UrlState, new: &UrlState) {
        let from = self.of(old);
        *from = from.saturating_sub(1);
        *self.of(new) += 1;
    }
}

impl Frontier {
    /// An empty frontier for `spec`.
    pub fn new(spec: &CrawlSpec) -> Self {
        let p = &spec.politeness;
        Self {
            scope: spec.scope(),
            max_pages: spec.max_pages,
            max_depth: spec.max_depth,
            host_leases: p.host_leases.max(1),
            lease_size: usize::try_from(p.lease_size.max(1)).unwrap_or(1),
            // Whole milliseconds, rounded up: spacing is never shorter than asked.
            delay_ms: std::time::Duration::try_from_secs_f64(p.delay_seconds).map_or(0, |d| {
                u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
            }),
            lease_timeout_ms: p.lease_timeout_seconds.saturating_mul(1000),
            max_attempts: p.max_attempts.max(1),
            urls: HashMap::new(),
            hosts: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: 1,
            next_seq: 0,
            cursor: String::new(),
            validate_fraction: p.validate_fraction,
            checks: Checks::default(),
            checking: HashMap::new(),
            counts: Counts::default(),
            recent_skips: VecDeque::new(),
            dropped_by: BTreeMap::new(),
            kept: Kept::new(&spec.quality),
        }
    }

    /// Counts a page dropped for `why`. A reason is a short code; anything else a node
    /// reports, and reasons past the first [`MAX_REASONS`], count as `other`.
    fn count_drop(&mut self, why: &str) {
        let code = why.len() <= 40
            && !why.is_empty()
            && why
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let key =
            if code && (self.dropped_by.len() < MAX_REASONS || self.dropped_by.contains_key(why)) {
                why
            } else {
                "other"
            };
        *self.dropped_by.entry(key.to_string()).or_default() += 1;
    }

    /// Notes a page skipped or failed for good, keeping the latest [`RECENT_SKIPS`].
    fn note_skip(&mut self, url: &str, state: &UrlState) {
        let why = match state {
            UrlState::Skipped(why) => format!("skipped: {why}"),
            UrlState::Failed(why) => format!("failed: {why}"),
            UrlState::Dropped(why) => format!("dropped: {why}"),
            _ => return,
        };
        if self.recent_skips.len() >= RECENT_SKIPS {
            self.recent_skips.pop_front();
        }
        self.recent_skips.push_back((url.to_string(), why));
    }

    /// Rebuilds a frontier from every record it persisted (in any order; a later record of
    /// the same key replaces an earlier one, as in the store).
    pub fn restore(spec: &CrawlSpec, changes: impl IntoIterator<Item = Change>) -> Self {
        let mut f = Self::new(spec);
        let mut leases = HashMap::new();
        let mut hosts = HashMap::new();
        let mut checks: BTreeMap<String, (String, Check)> = BTreeMap::new();
        for change in changes {
            match change {
                Change::Url(url, record) => {
                    f.next_seq = f.next_seq.max(record.seq + 1);
                    f.urls.insert(url, record);
                }
                Change::Lease(lease) => {
                    leases.insert(lease.id, lease);
                }
                Change::LeaseGone(id) => {
                    leases.remove(&id);
                }
                Change::Host(key, record) => {
                    hosts.insert(key, record);
                }
                Change::NextLease(next) => f.next_lease = f.next_lease.max(next),
                Change::Check(host, check) => {
                    checks.insert(check.url.clone(), (host, check));
                }
                Change::CheckGone(url) => {
                    checks.remove(&url);
                }
                Change::Score(node, score) => f.checks.set_score(&node, score),
            }
        }
        for (key, record) in hosts {
            f.hosts.entry(key).or_default().record = record;
        }
        let mut queued: Vec<(u64, String)> = f
            .urls
            .iter()
            .filter(|(_, r)| r.state == UrlState::Queued)
            .map(|(u, r)| (r.seq, u.clone()))
            .collect();
        queued.sort_unstable();
        for (_, url) in queued {
            if let Some(key) = key_of(&url) {
                f.hosts.entry(key).or_default().queue.push_back(url);
            }
        }
        for (id, lease) in &leases {
            if lease.check
                && let Some((_, check)) = lease.urls.first().and_then(|u| checks.remove(u))
            {
                f.checking.insert(*id, check);
            }
        }
        for (host, check) in checks.into_values() {
            f.checks.push(&host, check);
        }
        for (id, lease) in leases {
            f.next_lease = f.next_lease.max(id + 1);
            let host = f.hosts.entry(lease.host.clone()).or_default();
            if !lease.fetched {
                host.active += 1;
            }
            f.leases.insert(id, lease);
        }
        let mut drops = Vec::new();
        for record in f.urls.values() {
            *f.counts.of(&record.state) += 1;
            match (&record.state, &record.row) {
                (UrlState::Stored, Some((_, text))) => f.kept.keep(text, &record.buckets),
                (UrlState::Dropped(why), _) => drops.push(why.clone()),
                _ => {}
            }
        }
        drops.sort_unstable();
        for why in drops {
            f.count_drop(&why);
        }
        let mut ended: Vec<(u64, String, UrlState)> = f
            .urls
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.state,
                    UrlState::Skipped(_) | UrlState::Failed(_) | UrlState::Dropped(_)
                )
            })
            .map(|(u, r)| (r.seq, u.clone(), r.state.clone()))
            .collect();
        ended.sort_unstable_by_key(|(seq, _, _)| *seq);
        let from = ended.len().saturating_sub(RECENT_SKIPS);
        for (_, url, state) in ended.drain(from..) {
            f.note_skip(&url, &state);
        }
        f
    }

    /// Adds the crawl's seeds (depth 0).
    pub fn seed(&mut self, seeds: &[String]) -> Vec<Change> {
        let mut changes = Vec::new();
        for seed in seeds {
            self.offer(seed, None, 0, &mut changes);
        }
        changes
    }

    /// Offers a URL found at `depth`; it is queued if it is new, in scope, not too deep and
    /// the crawl has room for it.
    fn offer(&mut self, link: &str, base: Option<&Url>, depth: u32, changes: &mut Vec<Change>) {
        if depth > self.max_depth || self.urls.len() as u64 >= self.max_pages {
            return;
        }
        let Ok(url) = canonicalize(link, base) else {
            return;
        };
        if !self.scope.admits(&url) || self.urls.contains_key(url.as_str()) {
            return;
        }
        let record = UrlRecord {
            depth,
            state: UrlState::Queued,
            attempts: 0,
            seq: self.next_seq,
            by: None,
            row: None,
            buckets: Vec::new(),
        };
        self.next_seq += 1;
        let key = host_key(&url);
        let url = url.to_string();
        self.hosts
            .entry(key)
            .or_default()
            .queue
            .push_back(url.clone());
        self.urls.insert(url.clone(), record.clone());
        self.counts.queued += 1;
        changes.push(Change::Url(url, record));
    }

    /// A lease for `node`, if some host has queued URLs and may be visited at `now_ms`.
    pub fn lease(&mut self, node: &str, now_ms: u64) -> Option<(Lease, Vec<Change>)> {
        let keys: Vec<String> = self
            .hosts
            .range::<String, _>((
                std::ops::Bound::Excluded(self.cursor.clone()),
                std::ops::Bound::Unbounded,
            ))
            .chain(self.hosts.range::<String, _>(..=self.cursor.clone()))
            .filter(|(k, h)| {
                h.active < self.host_leases
                    && h.record.next_ms <= now_ms
                    && (!h.queue.is_empty() || self.checks.has_for(k, node))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(check) = self.checks.take_for(&key, node) {
                return Some(self.check_lease(&key, node, check, now_ms));
            }
            let mut urls = Vec::new();
            let host = self.hosts.get_mut(&key)?;
            while urls.len() < self.lease_size {
                let Some(url) = host.queue.pop_front() else {
                    break;
                };
                // Entries whose URL was done meanwhile (a late completion) are dropped here.
                if self
                    .urls
                    .get(&url)
                    .is_some_and(|r| r.state == UrlState::Queued)
                {
                    urls.push(url);
                }
            }
            if urls.is_empty() {
                continue;
            }
            let (lease, mut changes) = self.issue(&key, node, urls, false, now_ms);
            for url in &lease.urls {
                if let Some(record) = self.urls.get_mut(url) {
                    let leased = UrlState::Leased(lease.id);
                    self.counts.moved(&record.state, &leased);
                    record.state = leased;
                    record.attempts += 1;
                    changes.push(Change::Url(url.clone(), record.clone()));
                }
            }
            return Some((lease, changes));
        }
        None
    }

    /// A lease of one check on `key` for `node`.
    fn check_lease(
        &mut self,
        key: &str,
        node: &str,
        check: Check,
        now_ms: u64,
    ) -> (Lease, Vec<Change>) {
        let (lease, mut changes) = self.issue(key, node, vec![check.url.clone()], true, now_ms);
        changes.push(Change::Check(key.to_string(), check.clone()));
        self.checking.insert(lease.id, check);
        (lease, changes)
    }

    /// Hands `urls` of host `key` to `node`, due back after the lease timeout plus the
    /// spacing of each URL.
    fn issue(
        &mut self,
        key: &str,
        node: &str,
        urls: Vec<String>,
        check: bool,
        now_ms: u64,
    ) -> (Lease, Vec<Change>) {
        let host = self.hosts.entry(key.to_string()).or_default();
        host.active += 1;
        let spacing_ms = self.delay_ms.max(host.record.crawl_delay_ms);
        let id = self.next_lease;
        self.next_lease += 1;
        let lease = Lease {
            id,
            node: node.to_string(),
            host: key.to_string(),
            deadline_ms: now_ms
                .saturating_add(self.lease_timeout_ms)
                .saturating_add(spacing_ms.saturating_mul(urls.len() as u64)),
            urls,
            spacing_ms,
            check,
            fetched: false,
        };
        self.cursor = key.to_string();
        self.leases.insert(id, lease.clone());
        let changes = vec![
            Change::NextLease(self.next_lease),
            Change::Lease(lease.clone()),
        ];
        (lease, changes)
    }

    /// Settles the check a lease carried: `found` is the text hash the checking node
    /// reported, `None` if it could not fetch the page.
    fn settle_check(
        &mut self,
        lease: &Lease,
        found: Option<(&str, &[u64])>,
        changes: &mut Vec<Change>,
    ) {
        let Some(check) = self.checking.remove(&lease.id) else {
            return;
        };
        let url = check.url.clone();
        let (again, scores) = self.checks.settle(check, &lease.node, found);
        changes.extend(
            scores
                .into_iter()
                .map(|(node, score)| Change::Score(node, score)),
        );
        match again {
            Some(check) => {
                changes.push(Change::Check(lease.host.clone(), check.clone()));
                self.checks.push(&lease.host, check);
            }
            None => changes.push(Change::CheckGone(url)),
        }
    }

    /// Lease `id` of `node` has had all its URLs fetched: its host may be leased again, after
    /// the spacing, while the node still extracts and reports. `crawl_delay_ms` is the
    /// host's `Crawl-delay` as the node read it. Saying it twice changes nothing.
    pub fn fetched(
        &mut self,
        id: u64,
        node: &str,
        crawl_delay_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Vec<Change>, FrontierError> {
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(FrontierError::UnknownLease(id))?;
        if lease.node != node {
            return Err(FrontierError::NotYours(id));
        }
        if lease.fetched {
            return Ok(Vec::new());
        }
        lease.fetched = true;
        let (host, lease) = (lease.host.clone(), lease.clone());
        let mut changes = vec![Change::Lease(lease)];
        self.host_done(&host, crawl_delay_ms, now_ms, &mut changes);
        Ok(changes)
    }

    /// Completes lease `id` of `node`: returns the URLs accepted (the node writes the rows
    /// of these and drops the rest) and the records to persist.
    pub fn complete(
        &mut self,
        id: u64,
        node: &str,
        reports: &[UrlReport],
        crawl_delay_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(Vec<String>, Vec<Change>), FrontierError> {
        let lease = self
            .leases
            .get(&id)
            .ok_or(FrontierError::UnknownLease(id))?;
        if lease.node != node {
            return Err(FrontierError::NotYours(id));
        }
        let lease = self
            .leases
            .remove(&id)
            .ok_or(FrontierError::UnknownLease(id))?;
        let mut changes = vec![Change::LeaseGone(id)];
        if lease.check {
            let found = reports
                .iter()
                .find(|r| lease.urls.contains(&r.url) && r.result == PageResult::Stored)
                .and_then(|r| Some((r.text_blake3.as_deref()?, r.buckets.as_slice())));
            self.settle_check(&lease, found, &mut changes);
            if !lease.fetched {
                self.host_done(&lease.host, crawl_delay_ms, now_ms, &mut changes);
            }
            return Ok((Vec::new(), changes));
        }
        let mut accepted = Vec::new();
        // Drawn now that the node has committed to its pages' hashes: it cannot know which of
        // them another node will fetch again.
        let seed: [u8; 32] = rand::random();
        for report in reports.iter().filter(|r| lease.urls.contains(&r.url)) {
            let Some(record) = self.urls.get_mut(&report.url) else {
                continue;
            };
            if !matches!(record.state, UrlState::Leased(l) if l == id) {
                continue;
            }
            let depth = record.depth;
            let duplicate = match (&report.result, &report.text_blake3) {
                (PageResult::Stored, Some(text)) => self.kept.duplicate(text, &report.buckets),
                _ => None,
            };
            let state = match (&report.result, duplicate) {
                (PageResult::Stored, Some(duplicate)) => {
                    UrlState::Dropped(duplicate.reason().into())
                }
                (PageResult::Stored, None) => UrlState::Stored,
                (PageResult::Skipped(why), _) => UrlState::Skipped(why.clone()),
                (PageResult::Dropped(why), _) => UrlState::Dropped(why.clone()),
                (PageResult::Failed(why), _) if record.attempts >= self.max_attempts => {
                    UrlState::Failed(why.clone())
                }
                (PageResult::Failed(_), _) => UrlState::Queued,
            };
            self.counts.moved(&record.state, &state);
            record.state = state;
            let ended = record.state.clone();
            if record.state == UrlState::Stored {
                record.by = Some(lease.node.clone());
                record.row = report.text_blake3.as_ref().map(|hash| {
                    let url = report.final_url.as_ref().unwrap_or(&report.url);
                    (url.clone(), hash.clone())
                });
                if let Some(hash) = &report.text_blake3 {
                    self.kept.keep(hash, &report.buckets);
                    if report.buckets.len() == self.kept.buckets_per_page() {
                        record.buckets = report.buckets.clone();
                    }
                }
            }
            let requeue = record.state == UrlState::Queued;
            changes.push(Change::Url(report.url.clone(), record.clone()));
            if record.state == UrlState::Stored
                && let Some(hash) = &report.text_blake3
                && sampled(&seed, &report.url, self.validate_fraction)
            {
                let check = Check {
                    url: report.url.clone(),
                    node: lease.node.clone(),
                    text_blake3: hash.clone(),
                    buckets: Some(report.buckets.clone()),
                    attempts: 0,
                };
                changes.push(Change::Check(lease.host.clone(), check.clone()));
                self.checks.push(&lease.host, check);
            }
            self.note_skip(&report.url, &ended);
            if let UrlState::Dropped(why) = &ended {
                self.count_drop(why);
            }
            // A duplicate's row is not written: the node is not told to keep it.
            if duplicate.is_none() {
                accepted.push(report.url.clone());
            }
            if requeue && let Some(h) = self.hosts.get_mut(&lease.host) {
                h.queue.push_back(report.url.clone());
            }
            if let Ok(base) = Url::parse(&report.url) {
                for link in &report.links {
                    self.offer(link, Some(&base), depth + 1, &mut changes);
                }
            }
        }
        // URLs the node did not report go back to the queue.
        self.release(&lease, "not reported", &mut changes);
        if !lease.fetched {
            self.host_done(&lease.host, crawl_delay_ms, now_ms, &mut changes);
        }
        Ok((accepted, changes))
    }

    /// Takes back every lease whose deadline passed.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Change> {
        let due: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.deadline_ms <= now_ms)
            .map(|l| l.id)
            .collect();
        let mut changes = Vec::new();
        for id in due {
            if let Some(lease) = self.leases.remove(&id) {
                changes.push(Change::LeaseGone(id));
                if lease.check {
                    self.settle_check(&lease, None, &mut changes);
                } else {
                    self.release(&lease, "lease expired", &mut changes);
                }
                if !lease.fetched {
                    self.host_done(&lease.host, None, now_ms, &mut changes);
                }
            }
        }
        changes
    }

    /// Puts a lease's URLs that are still owed to it back in the queue (or fails them).
    fn release(&mut self, lease: &Lease, why: &str, changes: &mut Vec<Change>) {
        for url in &lease.urls {
            let Some(record) = self.urls.get_mut(url) else {
                continue;
            };
            if !matches!(record.state, UrlState::Leased(l) if l == lease.id) {
                continue;
            }
            let state = if record.attempts >= self.max_attempts {
                UrlState::Failed(format!("{why} after {} attempts", record.attempts))
            } else {
                UrlState::Queued
            };
            self.counts.moved(&record.state, &state);
            record.state = state;
            if record.state == UrlState::Queued
                && let Some(h) = self.hosts.get_mut(&lease.host)
            {
                h.queue.push_back(url.clone());
            }
            changes.push(Change::Url(url.clone(), record.clone()));
        }
    }

    fn host_done(
        &mut self,
        key: &str,
        crawl_delay_ms: Option<u64>,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) {
        let host = self.hosts.entry(key.to_string()).or_default();
        host.active = host.active.saturating_sub(1);
        if let Some(d) = crawl_delay_ms {
            // A node's word, bounded: it spaces the host's leases for every node.
            host.record.crawl_delay_ms = d.min(MAX_CRAWL_DELAY_MS);
        }
        let spacing = self.delay_ms.max(host.record.crawl_delay_ms);
        host.record.next_ms = host.record.next_ms.max(now_ms.saturating_add(spacing));
        changes.push(Change::Host(key.to_string(), host.record));
    }

    /// When a lease could next be handed to `node`, if work is queued for it: the earliest
    /// time a host with queued URLs (or a check `node` may do) and room for a lease may be
    /// visited.
    pub fn next_ready_ms(&self, node: &str) -> Option<u64> {
        self.hosts
            .iter()
            .filter(|(k, h)| {
                h.active < self.host_leases
                    && (h.queue.iter().any(|u| self.is_queued(u)) || self.checks.has_for(k, node))
            })
            .map(|(_, h)| h.record.next_ms)
            .min()
    }

    fn is_queued(&self, url: &str) -> bool {
        self.urls
            .get(url)
            .is_some_and(|r| r.state == UrlState::Queued)
    }

    /// The earliest lease deadline.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.leases.values().map(|l| l.deadline_ms).min()
    }

    /// Whether every URL is done: none queued, none leased. Checks of stored pages may still
    /// be queued or out.
    pub fn is_done(&self) -> bool {
        self.counts.queued == 0 && self.counts.leased == 0
    }

    /// Pages stored.
    pub fn stored(&self) -> u64 {
        self.counts.stored
    }

    /// Pages `node` stored: the most rows its shards may hold.
    pub fn stored_by(&self, node: &str) -> u64 {
        self.urls
            .values()
            .filter(|r| r.state == UrlState::Stored && r.by.as_deref() == Some(node))
            .count() as u64
    }

    /// Checks out, and checks queued that one of `workers` may do (a node never checks its
    /// own page): those worth waiting for.
    pub fn checks_open(&self, workers: &[String]) -> u64 {
        self.checking.len() as u64 + self.checks.doable(workers)
    }

    /// What each node committed to for the rows of its stored pages.
    pub fn stored_pages(&self) -> StoredPages {
        let mut pages = StoredPages::default();
        for record in self.urls.values() {
            if let (UrlState::Stored, Some(node), Some((url, hash))) =
                (&record.state, &record.by, &record.row)
            {
                pages.insert(node, url, hash);
            }
        }
        pages
    }

    /// The record of `url`.
    pub fn record(&self, url: &str) -> Option<&UrlRecord> {
        self.urls.get(url)
    }

    /// Counts and backlogs.
    pub fn progress(&self) -> Progress {
        let c = self.counts;
        let mut p = Progress {
            known: self.urls.len() as u64,
            leases: self.leases.len() as u64,
            queued: c.queued,
            leased: c.leased,
            stored: c.stored,
            skipped: c.skipped,
            failed: c.failed,
            dropped: c.dropped,
            dropped_by: self.dropped_by.clone(),
            skipped_pages: self.recent_skips.iter().cloned().collect(),
            ..Progress::default()
        };
        let mut backlog: Vec<(String, u64)> = self
            .hosts
            .iter()
            .map(|(k, h)| {
                (
                    k.clone(),
                    h.queue.iter().filter(|u| self.is_queued(u)).count() as u64,
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        backlog.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        backlog.truncate(20);
        p.backlog = backlog;
        p.checks_pending = self.checks.pending() + self.checking.len() as u64;
        p.validation = self
            .checks
            .scores()
            .iter()
            .map(|(n, s)| (n.clone(), *s))
            .collect();
        p
    }
}

fn key_of(url: &str) -> Option<String> {
    Url::parse(url).ok().map(|u| host_key(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> CrawlSpec {
        CrawlSpec::from_toml(&format!(
            "name = \"t\"\nseeds = [\"http://a.test/\", \"http://b.test/\"]\ndomains = [\"a.test\", \"b.test\"]\nmax_pages = 50\nmax_depth = 2\n[politeness]\ndelay_seconds = 1.0\nlease_size = 2\nlease_timeout_seconds = 10\nmax_attempts = 2\n{extra}"
        ))
        .unwrap()
    }

    /// The counts kept as URLs move agree with counting them afresh.
    fn assert_counts(f: &Frontier) {
        let mut fresh = Counts::default();
        for record in f.urls.values() {
            *fresh.of(&record.state) += 1;
        }
        assert_eq!(f.counts, fresh);
    }

    fn stored(url: &str, links: &[&str]) -> UrlReport {
        UrlReport {
            url: url.into(),
            result: PageResult::Stored,
            links: links.iter().map(|l| l.to_string()).collect(),
            text_blake3: None,
            final_url: None,
            buckets: Vec::new(),
        }
    }

    /// Replays every change into a fresh frontier, as a restarted coordinator does.
    fn replay(spec: &CrawlSpec, log: &[Change]) -> Frontier {
        Frontier::restore(spec, log.iter().cloned())
    }

    #[test]
    fn a_fetched_lease_frees_its_host_before_its_report_also_after_a_restart() {
        let spec = spec("validate_fraction = 0.0\n");
        let mut f = Frontier::new(&spec);
        let mut log = f.seed(&spec.seeds);
        // Two hosts, one lease each at a time (host_leases = 1), spaced 1 s.
        let (a, changes) = f.lease("n1", 0).unwrap();
        log.extend(changes);
        let (b, changes) = f.lease("n1", 0).unwrap();
        log.extend(changes);
        assert_ne!(a.host, b.host);
        f.offer(&format!("http://{}/later", a.host), None, 0, &mut log);
        assert!(f.lease("n1", 5000).is_none(), "both hosts are leased");
        assert_eq!(
            f.fetched(a.id, "n2", None, 10),
            Err(FrontierError::NotYours(a.id))
        );
        assert_eq!(
            f.fetched(99, "n1", None, 10),
            Err(FrontierError::UnknownLease(99))
        );
        // a's URLs are all fetched at 10: its host rests the spacing, then is free.
        let changes = f.fetched(a.id, "n1", Some(2000), 10).unwrap();
        log.extend(changes);
        assert!(
            f.fetched(a.id, "n1", None, 20).unwrap().is_empty(),
            "said once"
        );
        assert!(f.lease("n1", 1000).is_none(), "the Crawl-delay holds");
        let after = replay(&spec, &log);
        // The report comes later, after the host's next lease was taken.
        let a_links: Vec<String> = (0..3)
            .map(|i| format!("http://{}/more{i}", a.host))
            .collect();
        let links: Vec<&str> = a_links.iter().map(String::as_str).collect();
        let reports: Vec<UrlReport> = a.urls.iter().map(|u| stored(u, &links)).collect();
        let (accepted, changes) = f.complete(a.id, "n1", &reports, None, 2100).unwrap();
        log.extend(changes);
        assert_eq!(accepted, a.urls);
        // The host was freed once: one lease again, not two.
        let (c, changes) = f.lease("n2", 2010).unwrap();
        log.extend(changes);
        assert_eq!(c.host, a.host);
        // The report did not free it again: a's host is c's now, b's still n1's.
        assert!(f.lease("n3", 9000).is_none());
        // A restart between the fetch and the report knows the host is free.
        let mut after = after;
        assert!(
            after
                .lease("n2", 2010)
                .is_some_and(|(l, _)| l.host == a.host)
        );
        assert_counts(&f);
    }

    #[test]
    fn pages_two_nodes_store_with_one_text_are_kept_once_also_after_a_restart() {
        // No checks drawn: a check of the kept page could take the lease the near-duplicate
        // is meant to get.
        let spec = spec("validate_fraction = 0.0\n");
        let mut f = Frontier::new(&spec);
        let mut log = f.seed(&spec.seeds);
        let (a, changes) = f.lease("n1", 0).unwrap();
        log.extend(changes);
        let (b, changes) = f.lease("n2", 0).unwrap();
        log.extend(changes);
        let page = |url: &str, text: &str, buckets: Vec<u64>| UrlReport {
            text_blake3: Some(text.repeat(32)),
            buckets,
            ..stored(url, &[])
        };
        let buckets: Vec<u64> = (0..14).collect();
        let (accepted, changes) = f
            .complete(
                a.id,
                "n1",
                &[page(&a.urls[0], "ab", buckets.clone())],
                None,
                10,
            )
            .unwrap();
        log.extend(changes);
        assert_eq!(accepted, a.urls);
        // The other node's page has the same text: dropped, its row not written.
        let (accepted, changes) = f
            .complete(b.id, "n2", &[page(&b.urls[0], "ab", vec![])], None, 10)
            .unwrap();
        log.extend(changes);
        assert!(accepted.is_empty());
        assert_eq!(
            f.record(&b.urls[0]).unwrap().state,
            UrlState::Dropped("exact_duplicate".into())
        );
        assert_counts(&f);
        // After a restart the kept texts and the counts are still known: a near-duplicate
        // (one shared bucket) of the first page is dropped too.
        let mut f = replay(&spec, &log);
        let mut near: Vec<u64> = (100..114).collect();
        near[3] = 3;
        f.offer("http://a.test/near", None, 0, &mut log);
        let (c, _) = f.lease("n2", 2000).unwrap();
        assert_eq!(c.urls, ["http://a.test/near"]);
        let (accepted, _) = f
            .complete(c.id, "n2", &[page(&c.urls[0], "cd", near)], None, 2010)
            .unwrap();
        assert!(accepted.is_empty());
        let p = f.progress();
        assert_eq!(p.dropped, 2);
        assert_eq!(
            p.dropped_by,
            BTreeMap::from([
                ("exact_duplicate".to_string(), 1),
                ("near_duplicate".to_string(), 1)
            ])
        );
        // A reason a node makes up counts as `other`, never as a new key.
        f.count_drop("Not A Code!");
        assert_eq!(f.progress().dropped_by["other"], 1);
    }

    #[test]
    fn hosts_get_one_lease_at_a_time_spaced_by_the_delay() {
        let spec = spec("");
        let mut f = Frontier::new(&spec);
        f.seed(&spec.seeds);
        let (a, _) = f.lease("n1", 0).unwrap();
        let (b, _) = f.lease("n2", 0).unwrap();
        assert_ne!(a.host, b.host);
        assert!(f.lease("n3", 0).is_none(), "each host has its lease");

        let (accepted, _) = f
            .complete(
                a.id,
                "n1",
                &[stored(&a.urls[0], &["/x", "/y", "/z", "http://c.test/"])],
                Some(3000),
                100,
            )
            .unwrap();
        assert_eq!(accepted, a.urls);
        // The host is rested for its Crawl-delay (3 s, longer than the spec's 1 s).
        assert!(f.lease("n1", 3099).is_none());
        assert_eq!(f.next_ready_ms("n1"), Some(3100));
        let (next, _) = f.lease("n1", 3100).unwrap();
        assert_eq!(next.host, a.host);
        assert_eq!(next.spacing_ms, 3000);
        assert_eq!(next.urls.len(), 2, "lease_size");
        // c.test is out of scope; nothing else was added.
        assert_eq!(f.progress().known, 5);
    }

    #[test]
    fn a_huge_crawl_delay_from_a_node_is_capped_not_an_overflow() {
        let spec = spec("");
        for now in [0, u64::MAX - 5] {
            let mut f = Frontier::new(&spec);
            f.seed(&spec.seeds);
            let (a, _) = f.lease("n1", now).unwrap();
            f.complete(a.id, "n1", &[], Some(u64::MAX), now).unwrap();
            let host = &f.hosts[&a.host].record;
            assert_eq!(host.crawl_delay_ms, MAX_CRAWL_DELAY_MS);
            assert_eq!(host.next_ms, now.saturating_add(MAX_CRAWL_DELAY_MS));
        }
    }

    #[test]
    fn links_respect_depth_dedup_and_max_pages() {
        let spec = spec("");
        let mut f = Frontier::new(&spec);
        f.seed(&spec.seeds);
        let (l, _) = f.lease("n", 0).unwrap();
        let url = l.urls[0].clone();
        f.complete(
            l.id,
            "n",
            &[stored(&url, &["/d1", "/d1#frag", "/D1"])],
            None,
            0,
        )
        .unwrap();
        assert_eq!(f.record("http://a.test/d1").unwrap().depth, 1);
        assert!(
            f.record("http://a.test/D1").is_some(),
            "paths are case-sensitive"
        );
        // Depth 2 is the last one followed.
        let mut now = 0;
        let mut depth3 = false;
        while let Some((l, _)) = {
            now += 10_000;
            f.lease("n", now)
        } {
            let reports: Vec<_> = l
                .urls
                .iter()
                .map(|u| stored(u, &[&format!("{u}/deeper")]))
                .collect();
            f.complete(l.id, "n", &reports, None, now).unwrap();
            depth3 |= f.urls.values().any(|r| r.depth > 2);
        }
        assert!(!depth3);
        assert!(f.is_done());

        let mut small = CrawlSpec {
            max_pages: 3,
            ..spec.clone()
        };
        small.politeness.lease_size = 10;
        let mut f = Frontier::new(&small);
        f.seed(&small.seeds);
        let (l, _) = f.lease("n", 0).unwrap();
        f.complete(
            l.id,
            "n",
            &[stored(&l.urls[0], &["/1", "/2", "/3"])],
            None,
            0,
        )
        .unwrap();
        assert_eq!(f.progress().known, 3);
        assert_counts(&f);
    }

    #[test]
    fn expired_leases_come_back_and_fail_after_max_attempts() {
        let spec = spec("");
        let mut f = Frontier::new(&spec);
        f.seed(&spec.seeds[..1]);
        let (l, _) = f.lease("n1", 0).unwrap();
        assert_eq!(l.deadline_ms, 10_000 + 1000);
        assert!(f.expire(10_999).is_empty());
        f.expire(11_000);
        assert_eq!(f.progress().queued, 1);
        let (l2, _) = f.lease("n2", 12_000).unwrap();
        assert_eq!(l2.urls, l.urls);
        // The first node comes back late: its lease is gone.
        assert_eq!(
            f.complete(l.id, "n1", &[stored(&l.urls[0], &[])], None, 12_001),
            Err(FrontierError::UnknownLease(l.id))
        );
        assert_eq!(
            f.complete(l2.id, "n1", &[], None, 12_001),
            Err(FrontierError::NotYours(l2.id))
        );
        f.expire(100_000);
        assert_eq!(f.progress().failed, 1);
        assert!(f.is_done());
        assert_counts(&f);
    }

    #[test]
    fn failures_are_retried_then_counted_and_unreported_urls_return() {
        let spec = spec("");
        let mut f = Frontier::new(&spec);
        let mut log = f.seed(&spec.seeds[..1]);
        let (l, changes) = f.lease("n", 0).unwrap();
        log.extend(changes);
        let (_, changes) = f
            .complete(l.id, "n", &[stored(&l.urls[0], &["/a", "/b"])], None, 0)
            .unwrap();
        log.extend(changes);
        let (l, changes) = f.lease("n", 1000).unwrap();
        log.extend(changes);
        assert_eq!(l.urls.len(), 2);
        let fail = UrlReport {
            url: l.urls[0].clone(),
            result: PageResult::Failed("HTTP 503".into()),
            links: vec![],
            text_blake3: None,
            final_url: None,
            buckets: Vec::new(),
        };
        // One failed, one not reported: both are queued again.
        let (_, changes) = f
            .complete(l.id, "n", std::slice::from_ref(&fail), None, 1000)
            .unwrap();
        log.extend(changes);
        assert_eq!(f.progress().queued, 2);
        assert!(
            f.progress().skipped_pages.is_empty(),
            "a retried page is not listed"
        );
        let (l, changes) = f.lease("n", 2000).unwrap();
        log.extend(changes);
        let fail = UrlReport {
            url: l.urls[0].clone(),
            ..fail
        };
        let skip = UrlReport {
            url: l.urls[1].clone(),
            result: PageResult::Skipped("robots.txt".into()),
            links: vec![],
            text_blake3: None,
            final_url: None,
            buckets: Vec::new(),
        };
        let (_, changes) = f.complete(l.id, "n", &[fail, skip], None, 2000).unwrap();
        log.extend(changes);
        let p = f.progress();
        assert_eq!((p.stored, p.skipped, p.failed, p.queued), (1, 1, 1, 0));
        // Which pages, and why; the same after a restart.
        let listed = vec![
            (l.urls[0].clone(), "failed: HTTP 503".to_string()),
            (l.urls[1].clone(), "skipped: robots.txt".to_string()),
        ];
        assert_eq!(p.skipped_pages, listed);
        let mut again = replay(&spec, &log).progress().skipped_pages;
        again.sort();
        assert_eq!(again, listed);
        assert_counts(&f);
    }

    /// A node that fabricates a fraction `r` of the `n` pages of a lease is caught (one of
    /// its fabricated pages is drawn for a check) at the rate sampling predicts,
    /// 1 - (1 - p)^(rn), about the 1 - (1 - r)^(pn) of expected draws, whatever it guesses:
    /// the liar here fabricates the pages a URL-hash sample would have skipped.
    #[test]
    fn a_fabricating_node_is_caught_at_the_rate_sampling_predicts() {
        let n = 200usize;
        let seeds: Vec<String> = (0..n).map(|i| format!("\"http://a.test/{i}\"")).collect();
        for (p, fabricated) in [(0.05f64, 10usize), (0.02, 20)] {
            let r = fabricated as f64 / n as f64;
            let spec = CrawlSpec::from_toml(&format!(
                "name = \"t\"\nseeds = [{}]\ndomains = [\"a.test\"]\nmax_pages = 1000\nmax_depth = 1\n[politeness]\ndelay_seconds = 1.0\nlease_size = {n}\nvalidate_fraction = {p}\n",
                seeds.join(", ")
            ))
            .unwrap();
            let rounds = 1500;
            let mut caught = 0;
            for _ in 0..rounds {
                let mut f = Frontier::new(&spec);
                f.seed(&spec.seeds);
                let (lease, _) = f.lease("liar", 0).unwrap();
                assert_eq!(lease.urls.len(), n);
                // The liar's best guess at pages nobody checks: those an unkeyed sample skips.
                let mut order: Vec<&String> = lease.urls.iter().collect();
                order.sort_by_key(|u| !sampled(&[0; 32], u, p));
                let fake: Vec<&String> = order.into_iter().take(fabricated).collect();
                let reports: Vec<UrlReport> = lease
                    .urls
                    .iter()
                    .map(|u| UrlReport {
                        text_blake3: Some(
                            if fake.contains(&u) { "made up" } else { "real" }.into(),
                        ),
                        ..stored(u, &[])
                    })
                    .collect();
                let (_, changes) = f.complete(lease.id, "liar", &reports, None, 0).unwrap();
                caught += usize::from(changes.iter().any(
                    |c| matches!(c, Change::Check(_, check) if check.text_blake3 == "made up"),
                ));
            }
            let measured = caught as f64 / f64::from(rounds);
            let exact = 1.0 - (1.0 - p).powf(r * n as f64);
            let issue = 1.0 - (1.0 - r).powf(p * n as f64);
            let sigma = (exact * (1.0 - exact) / f64::from(rounds)).sqrt();
            assert!(
                (measured - exact).abs() < 4.0 * sigma,
                "p {p} r {r}: caught {measured:.3}, predicted {exact:.3}"
            );
            assert!(
                (measured - issue).abs() < 4.0 * sigma + (exact - issue).abs(),
                "p {p} r {r}: caught {measured:.3}, 1-(1-r)^(pN) = {issue:.3}"
            );
        }
    }

    #[test]
    fn stored_pages_are_checked_by_another_node_and_scored() {
        let spec = spec("validate_fraction = 1.0\n");
        let mut f = Frontier::new(&spec);
        let mut log = f.seed(&spec.seeds[..1]);
        let (l, changes) = f.lease("A", 0).unwrap();
        log.extend(changes);
        let first = UrlReport {
            text_blake3: Some("h1".into()),
            final_url: Some("http://a.test/moved".into()),
            ..stored(&l.urls[0], &[])
        };
        let (_, changes) = f.complete(l.id, "A", &[first], None, 0).unwrap();
        log.extend(changes);
        assert_eq!(f.progress().checks_pending, 1);
        let (a, ab) = (["A".to_string()], ["A".to_string(), "B".to_string()]);
        assert_eq!(
            f.checks_open(&a),
            0,
            "only A asks for work: nobody can check"
        );
        assert_eq!(f.checks_open(&ab), 1);
        // A never checks its own page; the crawl is done for it.
        assert!(f.lease("A", 5000).is_none());
        assert_eq!(f.next_ready_ms("A"), None);
        assert_eq!(f.next_ready_ms("B"), Some(1000));
        assert!(f.is_done());

        // A restart keeps the check, and what A committed to for its row.
        let mut f = replay(&spec, &log);
        let mut expected = StoredPages::default();
        expected.insert("A", "http://a.test/moved", "h1");
        assert_eq!(f.stored_pages(), expected);
        let (check, _) = f.lease("B", 5000).unwrap();
        assert!(check.check);
        assert_eq!(f.checks_open(&a), 1, "the check is out");
        assert_eq!(check.urls, l.urls);
        let found = UrlReport {
            text_blake3: Some("h2".into()),
            ..stored(&l.urls[0], &["/never-followed"])
        };
        let (accepted, _) = f.complete(check.id, "B", &[found], None, 5000).unwrap();
        assert!(accepted.is_empty(), "no row is written for a check");
        let p = f.progress();
        assert_eq!(p.checks_pending, 0);
        assert_eq!(f.checks_open(&ab), 0);
        assert_eq!(p.known, 1, "a check's links are not followed");
        let scores: BTreeMap<_, _> = p.validation.into_iter().collect();
        assert_eq!(scores["A"].disagreed, 1);
        assert_eq!(scores["B"].checks_disagreed, 1);
    }

    #[test]
    fn a_restored_frontier_continues_where_the_first_stopped() {
        let spec = spec("");
        let mut f = Frontier::new(&spec);
        let mut log = f.seed(&spec.seeds);
        let (a, changes) = f.lease("n1", 0).unwrap();
        log.extend(changes);
        let (_, changes) = f
            .complete(a.id, "n1", &[stored(&a.urls[0], &["/next"])], None, 0)
            .unwrap();
        log.extend(changes);
        let (b, changes) = f.lease("n2", 0).unwrap();
        log.extend(changes);

        let mut g = replay(&spec, &log);
        assert_eq!(g.progress(), f.progress());
        // The running lease survives the restart and completes there.
        let (accepted, _) = g
            .complete(b.id, "n2", &[stored(&b.urls[0], &[])], None, 5)
            .unwrap();
        assert_eq!(accepted.len(), 1);
        // New leases get new ids, and the host's rest is kept.
        assert!(g.lease("n3", 999).is_none());
        let (c, _) = g.lease("n3", 1000).unwrap();
        assert!(c.id > b.id);
        assert_eq!(c.urls, ["http://a.test/next"]);
        assert_counts(&g);
    }
}
