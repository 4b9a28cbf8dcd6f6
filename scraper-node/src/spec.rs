//! A crawl, described once: what to crawl, how politely, and where the rows go.
//!
//! ```toml
//! name = "example-docs"                 # the dataset the crawl publishes
//! seeds = ["https://example.com/docs/"]
//! domains = ["example.com"]             # in scope, with subdomains (default: the seeds' hosts)
//! patterns = []                         # URL patterns in scope: `*` any characters, `$` the end
//! max_pages = 1000
//! max_depth = 3
//! user_agent = "TesseraBot/0.1 (+https://github.com/tessera-network/tessera)"
//! shard_size = "64MiB"
//! erasure = { k = 3, m = 2 }            # how shards are stored (default: from the nodes reachable)
//!
//! [politeness]
//! delay_seconds = 1.0                   # between requests to one host, whichever nodes send them
//! host_leases = 1                       # leases running against one host at once
//! lease_size = 16                       # URLs in one lease
//! lease_timeout_seconds = 300           # a lease not completed by then goes back to the frontier
//! max_attempts = 3                      # leases a URL may take before it counts as failed
//! max_body = "4MiB"
//! timeout_seconds = 30
//! ai_optouts = true                     # TDMRep and noai (on by default)
//! validate_fraction = 0.05              # pages re-fetched by another node and compared
//!
//! [quality]                             # FineWeb's pipeline; `enabled = false` keeps every page
//! max_link_density = 0.6               # pages of mostly link text (indexes) are dropped
//! max_article_link_density = 0.3
//! languages = ["en"]                    # [] keeps every language
//! language_threshold = 0.65
//! gopher_repetition = { enabled = true }  # each step's thresholds: FineWeb's, unless set here
//! gopher_quality = { min_doc_words = 50 }
//! c4 = { enabled = true }
//! fineweb = { enabled = true }
//! pii = { emails = true, ips = true }
//! dedup = { exact = true, minhash = true, n_grams = 5, buckets = 14, hashes_per_bucket = 8 }
//! ```

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use tessera_formats::{
    erasure::{DEFAULT_STRIPE_SIZE, ErasureParams},
    record::check_name,
};

use crate::{
    canonical::{Scope, canonicalize},
    fetch::DEFAULT_USER_AGENT,
    quality::Quality,
};

/// Most pages one crawl may fetch.
pub const MAX_PAGES: u64 = 10_000_000;
/// Deepest link depth a crawl may follow.
pub const MAX_DEPTH: u32 = 64;
/// Most seeds.
pub const MAX_SEEDS: usize = 10_000;
/// Most URLs in one lease.
pub const MAX_LEASE_SIZE: u32 = 1000;

/// A crawl's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlSpec {
    /// The dataset the crawl publishes.
    pub name: String,
    /// Where the crawl starts.
    pub seeds: Vec<String>,
    /// Hosts in scope, with their subdomains.
    #[serde(default)]
    pub domains: Vec<String>,
    /// URL patterns in scope.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Most pages fetched.
    pub max_pages: u64,
    /// Most links followed from a seed (seeds are depth 0).
    pub max_depth: u32,
    /// The user agent sent and matched against robots.txt.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Shards roll past this size.
    #[serde(default = "default_shard_size")]
    pub shard_size: ByteSize,
    /// How shards are erasure-coded in the network; chosen from the storage nodes reachable
    /// when absent.
    #[serde(default)]
    pub erasure: Option<Erasure>,
    /// How gently.
    #[serde(default)]
    pub politeness: Politeness,
    /// Which pages are kept: FineWeb's filters, PII anonymisation and deduplication.
    #[serde(default)]
    pub quality: Quality,
}

/// A crawl's erasure coding: any `k` of a shard's `k + m` pieces give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    /// Data pieces.
    pub k: u16,
    /// Parity pieces: how many of a shard's nodes may be lost.
    pub m: u16,
}

/// How gently a crawl treats the sites it visits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Politeness {
    /// Seconds between requests to one host, across all nodes (robots.txt `Crawl-delay`
    /// lengthens it).
    pub delay_seconds: f64,
    /// Leases running against one host at once.
    pub host_leases: u32,
    /// URLs in one lease.
    pub lease_size: u32,
    /// Seconds after which a lease not completed goes back to the frontier.
    pub lease_timeout_seconds: u64,
    /// Leases a URL may take before it counts as failed.
    pub max_attempts: u32,
    /// Largest page body.
    pub max_body: ByteSize,
    /// Seconds allowed for one request.
    pub timeout_seconds: u64,
    /// Honour TDMRep and `noai`.
    pub ai_optouts: bool,
    /// Share of pages re-fetched by another node and compared.
    pub validate_fraction: f64,
}

impl Default for Politeness {
    fn default() -> Self {
        Self {
            delay_seconds: 1.0,
            host_leases: 1,
            lease_size: 16,
            lease_timeout_seconds: 300,
            max_attempts: 3,
            max_body: ByteSize::mib(4),
            timeout_seconds: 30,
            ai_optouts: true,
            validate_fraction: 0.05,
        }
    }
}

fn default_user_agent() -> String {
    DEFAULT_USER_AGENT.into()
}

fn default_shard_size() -> ByteSize {
    ByteSize::mib(64)
}

/// A spec that cannot be crawled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crawl spec: {0}")]
pub struct SpecError(pub String);

impl CrawlSpec {
    /// Parses and checks a TOML spec.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let spec: Self = toml::from_str(text).map_err(|e| SpecError(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    /// Checks every field against its limits; the seeds must be URLs in scope.
    pub fn check(&self) -> Result<(), SpecError> {
        let fail = |m: String| Err(SpecError(m));
        // The name becomes a dataset name in the registry: checked now, not at the end.
        check_name(&self.name).map_err(|e| SpecError(e.to_string()))?;
        if self.seeds.is_empty() || self.seeds.len() > MAX_SEEDS {
            return fail(format!("seeds: 1 to {MAX_SEEDS} URLs"));
        }
        if self.max_pages == 0 || self.max_pages > MAX_PAGES {
            return fail(format!("max_pages must be 1 to {MAX_PAGES}"));
        }
        if self.max_depth > MAX_DEPTH {
            return fail(format!("max_depth must be at most {MAX_DEPTH}"));
        }
        if self.user_agent.trim().is_empty() || !self.user_agent.is_ascii() {
            return fail("user_agent must be non-empty ASCII".into());
        }
        if self.shard_size.as_u64() < 64 * 1024 || self.shard_size.as_u64() > 4 << 30 {
            return fail("shard_size must be 64 KiB to 4 GiB".into());
        }
        if let Some(e) = self.erasure {
            ErasureParams::new(e.k, e.m, DEFAULT_STRIPE_SIZE)
                .map_err(|why| SpecError(format!("erasure: {why}")))?;
        }
        self.quality.check().map_err(SpecError)?;
        let p = &self.politeness;
        if !(p.delay_seconds.is_finite() && (0.0..=3600.0).contains(&p.delay_seconds)) {
            return fail("politeness.delay_seconds must be 0 to 3600".into());
        }
        if p.host_leases == 0 || p.host_leases > 64 {
            return fail("politeness.host_leases must be 1 to 64".into());
        }
        if p.lease_size == 0 || p.lease_size > MAX_LEASE_SIZE {
            return fail(format!(
                "politeness.lease_size must be 1 to {MAX_LEASE_SIZE}"
            ));
        }
        if !(1..=86_400).contains(&p.lease_timeout_seconds) {
            return fail("politeness.lease_timeout_seconds must be 1 to 86400".into());
        }
        if !(1..=100).contains(&p.max_attempts) {
            return fail("politeness.max_attempts must be 1 to 100".into());
        }
        if !(1..=600).contains(&p.timeout_seconds) {
            return fail("politeness.timeout_seconds must be 1 to 600".into());
        }
        if p.max_body.as_u64() == 0 || p.max_body.as_u64() > 64 << 20 {
            return fail("politeness.max_body must be 1 byte to 64 MiB".into());
        }
        if !(p.validate_fraction.is_finite() && (0.0..=1.0).contains(&p.validate_fraction)) {
            return fail("politeness.validate_fraction must be 0 to 1".into());
        }
        let scope = self.scope();
        for seed in &self.seeds {
            let url =
                canonicalize(seed, None).map_err(|e| SpecError(format!("seed {seed}: {e}")))?;
            if !scope.admits(&url) {
                return fail(format!(
                    "seed {seed} is outside the crawl's domains and patterns"
                ));
            }
        }
        Ok(())
    }

    /// The crawl's scope: its domains and patterns, or the seeds' hosts when it names none.
    pub fn scope(&self) -> Scope {
        let mut scope = Scope {
            domains: self.domains.clone(),
            patterns: self.patterns.clone(),
        };
        if scope.domains.is_empty() && scope.patterns.is_empty() {
            scope.domains = self
                .seeds
                .iter()
                .filter_map(|s| canonicalize(s, None).ok())
                .filter_map(|u| u.host_str().map(str::to_string))
                .collect();
        }
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
        name = "docs"
        seeds = ["http://example.com/docs/"]
        max_pages = 100
        max_depth = 2
        [politeness]
        delay_seconds = 0.5
    "#;

    #[test]
    fn a_spec_parses_with_defaults_and_its_scope() {
        let spec = CrawlSpec::from_toml(SPEC).unwrap();
        assert_eq!(spec.politeness.delay_seconds, 0.5);
        assert_eq!(spec.politeness.lease_size, 16);
        assert!(spec.politeness.ai_optouts);
        assert_eq!(spec.shard_size, ByteSize::mib(64));
        assert_eq!(spec.scope().domains, ["example.com"]);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (change, expect) in [
            (("max_pages = 100", "max_pages = 0"), "max_pages"),
            (("max_depth = 2", "max_depth = 1000"), "max_depth"),
            (
                ("delay_seconds = 0.5", "delay_seconds = -1.0"),
                "delay_seconds",
            ),
            (
                ("delay_seconds = 0.5", "delay_seconds = nan"),
                "delay_seconds",
            ),
            (("http://example.com/docs/", "ftp://example.com/"), "seed"),
            (("max_depth = 2", "max_depth = 2\nsurprise = 1"), "surprise"),
            (("\"docs\"", "\"Docs Crawl\""), "name"),
            (
                ("max_depth = 2", "max_depth = 2\nerasure = { k = 0, m = 2 }"),
                "erasure",
            ),
            (
                ("max_depth = 2", "max_depth = 2\ndomains = [\"other.org\"]"),
                "outside",
            ),
        ] {
            let text = SPEC.replace(change.0, change.1);
            let err = CrawlSpec::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expect), "{expect}: {err}");
        }
    }
}
