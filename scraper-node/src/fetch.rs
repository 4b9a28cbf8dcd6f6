//! Fetching one page politely and safely, for a scraper node on someone's home connection.
//!
//! ```text
//! url ─▶ scope? ─▶ address allowed? (IP literal here; names in the resolver, which hands
//!        reqwest only the addresses it checked) ─▶ robots.txt allows? ─▶ TDMRep reserves?
//!     ─▶ wait the host's turn ─▶ GET ─▶ 3xx: the next hop goes through all of it again
//!                                 ─▶ 429/503: wait Retry-After (bounded), retry (bounded)
//!                                 ─▶ 5xx, connection error: back off, retry (bounded)
//!                                 ─▶ not HTML, or over the body limit: skipped unread
//!                                 ─▶ the body, read in chunks up to the limit
//! ```
//!
//! robots.txt and `tdmrep.json` are fetched through the same checks and the same per-host
//! turns, and cached per origin for at most a day.

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use reqwest::{
    StatusCode,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER},
    redirect,
};
use tracing::debug;
use url::{Host, Url};

use crate::{
    address::{NetworkPolicy, Reach},
    canonical::{Scope, canonicalize, host_key},
    optout::{Directives, TdmRep, tdm_reserved},
    robots::{MAX_ROBOTS_BYTES, Robots, Rule},
};

/// How a node fetches.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The `User-Agent` sent, whose product token robots.txt names.
    pub user_agent: String,
    /// Which addresses may be reached.
    pub network: NetworkPolicy,
    /// Largest body read; a larger page is skipped.
    pub max_body: u64,
    /// Time allowed for one request, body included.
    pub timeout: Duration,
    /// Redirect hops followed.
    pub max_redirects: usize,
    /// Retries after a 429, a 5xx or a connection error.
    pub retries: u32,
    /// Longest `Retry-After` waited for; a longer one fails the page for now.
    pub max_retry_after: Duration,
    /// Honour TDMRep and `noai` (on by default).
    pub ai_optouts: bool,
    /// How long robots.txt and `tdmrep.json` are cached (at most a day).
    pub rules_ttl: Duration,
    /// First wait after a 5xx or a connection error with no `Retry-After`; doubled each time.
    pub backoff: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.into(),
            network: NetworkPolicy::public_only(),
            max_body: 4 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            retries: 2,
            max_retry_after: Duration::from_secs(60),
            ai_optouts: true,
            rules_ttl: MAX_RULES_TTL,
            backoff: Duration::from_secs(1),
        }
    }
}

/// The user agent unless a crawl names its own.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "TesseraBot/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/tessera-network/tessera)"
);
/// robots.txt is cached at most this long (RFC 9309 2.4).
pub const MAX_RULES_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest robots.txt `Crawl-delay` honoured. A host that asks for more is not crawled at
/// all, rather than visited sooner than it asked.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(3600);
/// Rules that could not be fetched (so everything is refused) are tried again sooner.
const FAILED_RULES_TTL: Duration = Duration::from_secs(600);

/// A page fetched.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL asked for.
    pub requested: Url,
    /// The URL the body came from, after redirects.
    pub url: Url,
    /// The final HTTP status (2xx).
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body, at most the configured limit.
    pub body: Vec<u8>,
    /// When the response arrived.
    pub fetched_at: SystemTime,
    /// `X-Robots-Tag` directives for this crawler.
    pub directives: Directives,
    /// A `tdm-reservation: 1` header.
    pub tdm_reserved: bool,
}

/// Why a page was not fetched, or not kept. Nothing here is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Skip {
    /// robots.txt disallows it.
    #[error("robots.txt disallows {url} ({})", rule.as_ref().map_or("unreachable".to_string(), |r| format!("line {}: {}", r.line, r.text)))]
    Robots {
        /// The URL.
        url: Url,
        /// The rule that decided.
        rule: Option<Rule>,
    },
    /// TDMRep reserves the rights (header or `tdmrep.json`).
    #[error("TDM rights reserved for {0}")]
    TdmReserved(Url),
    /// `X-Robots-Tag` says `noai` or `noindex`.
    #[error("X-Robots-Tag opts {0} out")]
    OptedOut(Url),
    /// The address is not one the node may reach.
    #[error("{host} is {reach} ({ip}); not fetched")]
    Blocked {
        /// The host.
        host: String,
        /// The address.
        ip: IpAddr,
        /// What kind of address.
        reach: Reach,
    },
    /// A redirect leaves the crawl's scope.
    #[error("redirect to {0}, outside the crawl")]
    OutOfScope(Url),
    /// A redirect to something that is not a crawlable URL.
    #[error("bad redirect: {0}")]
    BadRedirect(String),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// robots.txt asks for more time between requests than a crawl ever waits.
    #[error("robots.txt Crawl-delay of {asked} s is longer than the {} s a crawl waits at most", MAX_CRAWL_DELAY.as_secs())]
    CrawlDelay {
        /// The delay asked, in seconds.
        asked: String,
    },
    /// Not HTML.
    #[error("not HTML: {0}")]
    NotHtml(String),
    /// Over the body limit.
    #[error("body over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A final 4xx (other than 429).
    #[error("HTTP {0}")]
    Status(u16),
}

/// A fetch that failed for now: the page may be tried again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Still 429, 5xx or unreachable after the retries.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Requests sent.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The server asked for a longer pause than the node waits.
    #[error("server asks to retry in {0:?}")]
    RetryLater(Duration),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// What one fetch came to.
#[derive(Debug)]
pub enum Outcome {
    /// An HTML page.
    Page(Page),
    /// Not fetched, or not to be kept.
    Skipped(Skip),
    /// Failed for now.
    Failed(FetchError),
}

/// A site's rules, cached per origin.
#[derive(Debug, Clone)]
struct SiteRules {
    robots: Robots,
    tdmrep: TdmRep,
    until: Instant,
}

/// Fetches pages. Clone it freely: clones share the connection pool, the rules cache and the
/// per-host turns.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    config: Arc<FetchConfig>,
    rules: Arc<Mutex<HashMap<String, SiteRules>>>,
    /// Per host: when its next request may leave; held while a request is in flight.
    turns: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Instant>>>>>,
}

impl Fetcher {
    /// A fetcher with `config`.
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .redirect(redirect::Policy::none())
            // A proxy would connect to addresses the resolver never saw.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: config.network.clone(),
            }))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            client,
            config: Arc::new(config),
            rules: Arc::new(Mutex::new(HashMap::new())),
            turns: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// The robots.txt `Crawl-delay` for `url`'s origin, fetching robots.txt if needed; at
    /// most [`MAX_CRAWL_DELAY`].
    pub async fn crawl_delay(&self, url: &Url, spacing: Duration) -> Option<Duration> {
        let rules = self.site_rules(url, spacing).await.ok()?;
        match self.host_delay(&rules) {
            Ok(delay) => delay,
            Err(_) => Some(MAX_CRAWL_DELAY),
        }
    }

    /// Fetches `url`, following redirects within `scope`, sending nothing to a host sooner
    /// than `spacing` (or its robots.txt `Crawl-delay`, if longer) after the last request.
    pub async fn fetch(&self, url: &Url, scope: &Scope, spacing: Duration) -> Outcome {
        match self.fetch_inner(url, scope, spacing).await {
            Ok(page) => Outcome::Page(page),
            Err(Stop::Skip(skip)) => Outcome::Skipped(*skip),
            Err(Stop::Fail(error)) => Outcome::Failed(error),
        }
    }

    async fn fetch_inner(&self, url: &Url, scope: &Scope, spacing: Duration) -> Result<Page, Stop> {
        let mut current = url.clone();
        for _hop in 0..=self.config.max_redirects {
            let rules = self.site_rules(&current, spacing).await?;
            let path = path_and_query(&current);
            let verdict = rules.robots.check(&self.config.user_agent, &path);
            if !verdict.allowed {
                return Err(Stop::from(Skip::Robots {
                    url: current,
                    rule: verdict.rule,
                }));
            }
            if self.config.ai_optouts && rules.tdmrep.reserved(&path) {
                return Err(Stop::from(Skip::TdmReserved(current)));
            }
            let delay = self.host_delay(&rules)?.map_or(spacing, |d| d.max(spacing));
            let response = self.send(&current, delay).await?;
            let status = response.status();
            if status.is_redirection() {
                let next = redirect_target(&current, response.headers())?;
                if !scope.admits(&next) {
                    return Err(Stop::from(Skip::OutOfScope(next)));
                }
                debug!(from = %current, to = %next, "redirect");
                current = next;
                continue;
            }
            if !status.is_success() {
                return Err(Stop::from(Skip::Status(status.as_u16())));
            }
            return self.read_page(url, current, response).await;
        }
        Err(Stop::from(Skip::TooManyRedirects(
            self.config.max_redirects,
        )))
    }

    async fn read_page(
        &self,
        requested: &Url,
        url: Url,
        mut response: reqwest::Response,
    ) -> Result<Page, Stop> {
        let headers = response.headers();
        let content_type = header_str(headers, CONTENT_TYPE).unwrap_or_default();
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(mime.as_str(), "text/html" | "application/xhtml+xml") {
            return Err(Stop::from(Skip::NotHtml(if content_type.is_empty() {
                "no content type".into()
            } else {
                content_type
            })));
        }
        let mut directives = Directives::default();
        for value in headers.get_all("x-robots-tag") {
            if let Ok(value) = value.to_str() {
                directives.add_header(value, &self.config.user_agent);
            }
        }
        let tdm = header_str(headers, "tdm-reservation").is_some_and(|v| tdm_reserved(&v));
        if self.config.ai_optouts {
            if tdm {
                return Err(Stop::from(Skip::TdmReserved(url)));
            }
            if !directives.keep() {
                return Err(Stop::from(Skip::OptedOut(url)));
            }
        }
        let limit = self.config.max_body;
        let status = response.status().as_u16();
        let fetched_at = SystemTime::now();
        let body = read_limited(&mut response, limit)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Stop::from(Skip::TooLarge { limit }),
                ReadError::Http(e) => Stop::Fail(FetchError::GaveUp {
                    attempts: 1,
                    last: e,
                }),
            })?;
        Ok(Page {
            requested: requested.clone(),
            url,
            status,
            content_type,
            body,
            fetched_at,
            directives,
            tdm_reserved: tdm,
        })
    }

    /// The host's `Crawl-delay`, refused past [`MAX_CRAWL_DELAY`] before any arithmetic.
    fn host_delay(&self, rules: &SiteRules) -> Result<Option<Duration>, Stop> {
        let Some(seconds) = rules.robots.crawl_delay(&self.config.user_agent) else {
            return Ok(None);
        };
        match Duration::try_from_secs_f64(seconds) {
            Ok(delay) if delay <= MAX_CRAWL_DELAY => Ok(Some(delay)),
            _ => Err(Stop::from(Skip::CrawlDelay {
                asked: seconds.to_string(),
            })),
        }
    }

    /// Sends a GET when the host's turn comes, retrying 429, 503, other 5xx and connection
    /// errors a bounded number of times. Returns the response of the last attempt otherwise.
    async fn send(&self, url: &Url, spacing: Duration) -> Result<reqwest::Response, Stop> {
        check_literal(url, &self.config.network)?;
        let mut attempts = 0;
        let mut backoff = self.config.backoff;
        loop {
            attempts += 1;
            let retry_in = match self.send_in_turn(url, spacing).await {
                Ok(response) => {
                    let status = response.status();
                    let limited = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    );
                    if !limited && !status.is_server_error() {
                        return Ok(response);
                    }
                    let asked = retry_after(response.headers());
                    if let Some(asked) = asked
                        && asked > self.config.max_retry_after
                    {
                        return Err(Stop::Fail(FetchError::RetryLater(asked)));
                    }
                    if attempts > self.config.retries {
                        return Err(Stop::Fail(FetchError::GaveUp {
                            attempts,
                            last: format!("HTTP {status}"),
                        }));
                    }
                    asked.unwrap_or(backoff)
                }
                Err(e) => {
                    if let Some(blocked) = blocked_in(&e) {
                        return Err(Stop::from(blocked));
                    }
                    if attempts > self.config.retries {
                        return Err(Stop::Fail(FetchError::GaveUp {
                            attempts,
                            last: error_chain(&e),
                        }));
                    }
                    backoff
                }
            };
            debug!(%url, ?retry_in, attempts, "retrying");
            tokio::time::sleep(retry_in).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    /// Sends one GET when the host's turn comes. A host has one request in flight at a time,
    /// and the next leaves `spacing` after the answer to the last came back, so connection
    /// set-up never eats into the spacing as the server sees it.
    async fn send_in_turn(
        &self,
        url: &Url,
        spacing: Duration,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let slot = self
            .turns
            .lock()
            .entry(host_key(url))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Instant::now())))
            .clone();
        let mut next = slot.lock().await;
        // A timer costs a tick of tokio's clock (about a millisecond) even when its time has
        // passed: with no spacing left, the request goes at once.
        if *next > Instant::now() {
            tokio::time::sleep_until((*next).into()).await;
        }
        let sent = self.client.get(url.clone()).send().await;
        // The spacing is bounded where it comes in; saturating all the same, since an
        // overflowing `Instant` panics.
        let now = Instant::now();
        *next = now.checked_add(spacing).unwrap_or(now + MAX_CRAWL_DELAY);
        sent
    }

    /// robots.txt and `tdmrep.json` of `url`'s origin, from the cache or fetched.
    async fn site_rules(&self, url: &Url, spacing: Duration) -> Result<SiteRules, Stop> {
        let origin = url.origin().ascii_serialization();
        let now = Instant::now();
        if let Some(rules) = self.rules.lock().get(&origin).filter(|r| r.until > now) {
            return Ok(rules.clone());
        }
        let (robots, robots_ok) = self.fetch_robots(url, spacing).await?;
        let (tdmrep, tdm_ok) = if self.config.ai_optouts {
            self.fetch_tdmrep(url, spacing).await?
        } else {
            (TdmRep::none(), true)
        };
        let ttl = if robots_ok && tdm_ok {
            self.config.rules_ttl.min(MAX_RULES_TTL)
        } else {
            FAILED_RULES_TTL.min(self.config.rules_ttl)
        };
        let rules = SiteRules {
            robots,
            tdmrep,
            until: now + ttl,
        };
        self.rules.lock().insert(origin, rules.clone());
        Ok(rules)
    }

    /// RFC 9309 2.3.1: 2xx parsed, 4xx allows everything, 5xx or unreachable disallows
    /// everything. A 429 is read as the server being unavailable, not as "no robots.txt".
    async fn fetch_robots(&self, url: &Url, spacing: Duration) -> Result<(Robots, bool), Stop> {
        let target = match url.join("/robots.txt") {
            Ok(t) => t,
            Err(_) => return Ok((Robots::disallow_all(), false)),
        };
        match self
            .get_small(&target, MAX_ROBOTS_BYTES as u64, spacing)
            .await?
        {
            Small::Body(bytes) => Ok((Robots::parse(&bytes), true)),
            Small::Status(s) if (400..500).contains(&s) && s != 429 => {
                Ok((Robots::allow_all(), true))
            }
            Small::Status(_) | Small::Unreachable => Ok((Robots::disallow_all(), false)),
        }
    }

    /// `/.well-known/tdmrep.json`: absent (4xx) reserves nothing; unreadable or unreachable
    /// reserves everything until it is tried again.
    async fn fetch_tdmrep(&self, url: &Url, spacing: Duration) -> Result<(TdmRep, bool), Stop> {
        let target = match url.join("/.well-known/tdmrep.json") {
            Ok(t) => t,
            Err(_) => return Ok((TdmRep::reserve_all(), false)),
        };
        let limit = crate::optout::MAX_TDMREP_BYTES as u64;
        match self.get_small(&target, limit, spacing).await? {
            Small::Body(bytes) => Ok(match TdmRep::parse(&bytes) {
                Ok(rep) => (rep, true),
                Err(_) => (TdmRep::reserve_all(), true),
            }),
            Small::Status(s) if (400..500).contains(&s) && s != 429 => Ok((TdmRep::none(), true)),
            Small::Status(_) | Small::Unreachable => Ok((TdmRep::reserve_all(), false)),
        }
    }

    /// A small file (robots.txt, tdmrep.json): redirects followed (up to five, each hop's
    /// address checked), at most `limit` bytes kept. A blocked address is the caller's
    /// page being blocked.
    async fn get_small(&self, url: &Url, limit: u64, spacing: Duration) -> Result<Small, Stop> {
        let mut current = url.clone();
        for _ in 0..5 {
            let mut response = match self.send(&current, spacing).await {
                Ok(r) => r,
                Err(Stop::Skip(skip)) if matches!(*skip, Skip::Blocked { .. }) => {
                    return Err(Stop::Skip(skip));
                }
                Err(_) => return Ok(Small::Unreachable),
            };
            let status = response.status();
            if status.is_redirection() {
                match redirect_target(&current, response.headers()) {
                    Ok(next) => {
                        current = next;
                        continue;
                    }
                    Err(_) => return Ok(Small::Status(status.as_u16())),
                }
            }
            if !status.is_success() {
                return Ok(Small::Status(status.as_u16()));
            }
            // Past the limit the rest is ignored; half a file could lack the lines that forbid,
            // so a broken read is no file read.
            return Ok(match read_up_to(&mut response, limit).await {
                Ok((body, _)) => Small::Body(body),
                Err(_) => Small::Unreachable,
            });
        }
        Ok(Small::Unreachable)
    }
}

enum Small {
    Body(Vec<u8>),
    Status(u16),
    Unreachable,
}

enum Stop {
    Skip(Box<Skip>),
    Fail(FetchError),
}

impl From<Skip> for Stop {
    fn from(skip: Skip) -> Self {
        Stop::Skip(Box::new(skip))
    }
}

enum ReadError {
    TooLarge,
    Http(String),
}

async fn read_limited(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let announced =
        header_str(response.headers(), CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(ReadError::TooLarge);
    }
    match read_up_to(response, limit).await {
        Ok((_, true)) => Err(ReadError::TooLarge),
        Ok((body, false)) => Ok(body),
        Err(e) => Err(ReadError::Http(error_chain(&e))),
    }
}

/// Reads the body, keeping at most `limit` bytes; says whether there was more.
async fn read_up_to(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let announced = header_str(response.headers(), CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(announced.min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn redirect_target(from: &Url, headers: &HeaderMap) -> Result<Url, Stop> {
    let location = header_str(headers, LOCATION)
        .ok_or_else(|| Skip::BadRedirect(format!("{from}: no Location")))?;
    canonicalize(&location, Some(from))
        .map_err(|e| Stop::from(Skip::BadRedirect(format!("{from} -> {location}: {e}"))))
}

/// An IP-literal URL never reaches the resolver, so its address is checked here.
fn check_literal(url: &Url, policy: &NetworkPolicy) -> Result<(), Stop> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    policy.admit(ip).map_err(|reach| {
        Stop::from(Skip::Blocked {
            host: ip.to_string(),
            ip,
            reach,
        })
    })
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, RETRY_AFTER)?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// The resolver reqwest uses: the system's answer, less every address the policy refuses.
#[derive(Debug)]
struct GuardedResolver {
    policy: NetworkPolicy,
}

/// A name that resolves only to addresses the node may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{host} is {reach} ({ip}); not fetched")]
struct Blocked {
    host: String,
    ip: IpAddr,
    reach: Reach,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.admit(a.ip()) {
                    Ok(()) => true,
                    Err(reach) => {
                        refused.get_or_insert((a.ip(), reach));
                        false
                    }
                })
                .collect();
            if allowed.is_empty()
                && let Some((ip, reach)) = refused
            {
                return Err(Box::new(Blocked { host, ip, reach }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal, found in a reqwest error's chain.
fn blocked_in(e: &reqwest::Error) -> Option<Skip> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(Skip::Blocked {
                host: b.host.clone(),
                ip: b.ip,
                reach: b.reach,
            });
        }
        source = err.source();
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Decodes an HTML body to text: the `Content-Type` charset, else a BOM, else UTF-8 (bad
/// bytes replaced).
pub fn decode_html(body: &[u8], content_type: &str) -> String {
    let label = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"'));
    let encoding = label
        .and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(body);
    text.into_owned()
}
