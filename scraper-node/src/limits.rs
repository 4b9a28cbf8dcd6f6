//! What a scraper node's operator allows, whatever a coordinator asks.
//!
//! A coordinator may be another contributor's node, and it may lie. Every lease arrives with
//! its crawl's spec, and the worker checks both here before it sends a request:
//!
//! ```text
//! lease + spec ─▶ crawl id: hex ─▶ spec within its own limits ─▶ AI opt-outs on
//!              ─▶ delay ≥ the operator's minimum, body and timeout ≤ the operator's maximum
//!              ─▶ lease no larger than an hour's pages ─▶ fetched, at the operator's pace
//!              ─▶ otherwise: refused, with the reason
//! ```
//!
//! The user agent is the node's own: it names Tessera and the node, and a crawl's agent can
//! only be added after it.

use std::time::Duration;

use bytesize::ByteSize;

use crate::{
    fetch::{DEFAULT_USER_AGENT, MAX_CRAWL_DELAY},
    frontier::Lease,
    spec::{CrawlSpec, MAX_LEASE_SIZE},
};

/// Longest crawl id: a BLAKE3 hash in hex.
pub const MAX_CRAWL_ID: usize = 64;
/// Longest user agent a crawl may add.
pub const MAX_AGENT_ADDITION: usize = 128;

/// The operator's limits, from the node's config file and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorLimits {
    /// Least time between two requests to one host, whatever a crawl asks.
    pub min_delay: Duration,
    /// Largest page body fetched.
    pub max_body: ByteSize,
    /// Longest time one request may take.
    pub max_timeout: Duration,
    /// Most pages fetched in any hour.
    pub pages_per_hour: u32,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_body: ByteSize::mib(8),
            max_timeout: Duration::from_secs(60),
            pages_per_hour: 3600,
        }
    }
}

/// A lease or crawl this node will not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

impl OperatorLimits {
    /// Checks a crawl's spec, as a coordinator sends it or as the operator submits it.
    pub fn check_spec(&self, spec: &CrawlSpec) -> Result<(), Refused> {
        spec.check().map_err(|e| Refused(e.to_string()))?;
        let p = &spec.politeness;
        if !p.ai_optouts {
            return Err(Refused("the crawl turns AI opt-outs off".into()));
        }
        let delay = Duration::try_from_secs_f64(p.delay_seconds).unwrap_or(Duration::MAX);
        if delay < self.min_delay {
            return Err(Refused(format!(
                "delay {} s is under this node's minimum of {} s",
                p.delay_seconds,
                self.min_delay.as_secs_f64()
            )));
        }
        if p.max_body > self.max_body {
            return Err(Refused(format!(
                "max_body {} is over this node's {}",
                p.max_body, self.max_body
            )));
        }
        if Duration::from_secs(p.timeout_seconds) > self.max_timeout {
            return Err(Refused(format!(
                "timeout {} s is over this node's {} s",
                p.timeout_seconds,
                self.max_timeout.as_secs()
            )));
        }
        if spec.user_agent != DEFAULT_USER_AGENT {
            check_agent_addition(&spec.user_agent)?;
        }
        Ok(())
    }

    /// Checks a lease of crawl `crawl` and its spec; returns the spacing the node keeps
    /// between requests to the lease's host.
    pub fn check_lease(
        &self,
        crawl: &str,
        spec: &CrawlSpec,
        lease: &Lease,
    ) -> Result<Duration, Refused> {
        check_crawl_id(crawl)?;
        self.check_spec(spec)?;
        let most = usize::try_from(self.pages_per_hour.min(MAX_LEASE_SIZE)).unwrap_or(0);
        if lease.urls.len() > most {
            return Err(Refused(format!(
                "a lease of {} URLs; this node takes at most {most}",
                lease.urls.len()
            )));
        }
        let asked = Duration::from_millis(lease.spacing_ms);
        Ok(asked.clamp(self.min_delay, MAX_CRAWL_DELAY.max(self.min_delay)))
    }

    /// The user agent this node sends for `spec`: Tessera's, naming the node `peer`, with the
    /// crawl's own agent after it when it has one.
    pub fn user_agent(&self, peer: &str, spec: &CrawlSpec) -> String {
        let own = DEFAULT_USER_AGENT.strip_suffix(')').map_or_else(
            || DEFAULT_USER_AGENT.to_string(),
            |s| format!("{s}; node {peer})"),
        );
        if spec.user_agent == DEFAULT_USER_AGENT {
            own
        } else {
            format!("{own} {}", spec.user_agent.trim())
        }
    }
}

/// A crawl id becomes a folder name: lowercase hex only, 1 to [`MAX_CRAWL_ID`] characters.
pub fn check_crawl_id(crawl: &str) -> Result<(), Refused> {
    let hex = crawl
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if crawl.is_empty() || crawl.len() > MAX_CRAWL_ID || !hex {
        return Err(Refused(format!(
            "crawl id {:?} is not 1 to {MAX_CRAWL_ID} lowercase hex digits",
            crawl.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// What a crawl may add to the user agent: printable ASCII, no longer than
/// [`MAX_AGENT_ADDITION`].
fn check_agent_addition(agent: &str) -> Result<(), Refused> {
    if agent.len() > MAX_AGENT_ADDITION || !agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Refused(format!(
            "user_agent must be printable ASCII of at most {MAX_AGENT_ADDITION} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CrawlSpec {
        CrawlSpec::from_toml(
            "name = \"t\"\nseeds = [\"http://a.test/\"]\nmax_pages = 5\nmax_depth = 1\n",
        )
        .unwrap()
    }

    fn lease(urls: usize, spacing_ms: u64) -> Lease {
        Lease {
            id: 1,
            node: "n".into(),
            host: "a.test".into(),
            urls: (0..urls).map(|i| format!("http://a.test/{i}")).collect(),
            spacing_ms,
            deadline_ms: u64::MAX,
            check: false,
            fetched: false,
        }
    }

    #[test]
    fn a_spec_within_the_limits_is_taken_and_each_excess_refused_with_its_reason() {
        let limits = OperatorLimits::default();
        assert_eq!(limits.check_spec(&spec()), Ok(()));
        let refused = |edit: &dyn Fn(&mut CrawlSpec), why: &str| {
            let mut s = spec();
            edit(&mut s);
            let Err(Refused(reason)) = limits.check_spec(&s) else {
                panic!("{why}: taken")
            };
            assert!(reason.contains(why), "{reason}");
        };
        refused(&|s| s.politeness.ai_optouts = false, "AI opt-outs");
        refused(&|s| s.politeness.delay_seconds = 0.0, "minimum");
        refused(&|s| s.politeness.max_body = ByteSize::mib(64), "max_body");
        refused(&|s| s.politeness.timeout_seconds = 600, "timeout");
        refused(&|s| s.politeness.timeout_seconds = u64::MAX, "timeout");
        refused(&|s| s.politeness.delay_seconds = f64::NAN, "delay");
        refused(
            &|s| s.user_agent = "Evil\r\nX-Injected: 1".into(),
            "user_agent",
        );
        refused(&|s| s.user_agent = "x".repeat(500), "user_agent");
        refused(&|s| s.max_pages = u64::MAX, "max_pages");
    }

    #[test]
    fn crawl_ids_are_hex_so_they_never_leave_the_shards_folder() {
        for good in ["0", "deadbeef", &"a".repeat(64)] {
            assert_eq!(check_crawl_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "..",
            "../../etc",
            "/etc/passwd",
            "ab/cd",
            "ABCD",
            "abc\0",
            "c:\\x",
            &"a".repeat(65),
        ] {
            assert!(check_crawl_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_lease_is_spaced_at_least_by_the_operator_and_at_most_by_the_cap() {
        let limits = OperatorLimits::default();
        let spaced = |ms| limits.check_lease("ab", &spec(), &lease(2, ms)).unwrap();
        assert_eq!(spaced(0), Duration::from_secs(1));
        assert_eq!(spaced(2500), Duration::from_millis(2500));
        assert_eq!(spaced(u64::MAX), MAX_CRAWL_DELAY);
        let small = OperatorLimits {
            pages_per_hour: 3,
            ..OperatorLimits::default()
        };
        assert!(small.check_lease("ab", &spec(), &lease(3, 0)).is_ok());
        assert!(small.check_lease("ab", &spec(), &lease(4, 0)).is_err());
        assert!(limits.check_lease("../x", &spec(), &lease(1, 0)).is_err());
    }

    #[test]
    fn the_user_agent_names_tessera_and_the_node_and_a_crawl_only_adds_to_it() {
        let limits = OperatorLimits::default();
        let own = limits.user_agent("12D3KooWPeer", &spec());
        assert!(own.starts_with("TesseraBot/"), "{own}");
        assert!(own.ends_with("; node 12D3KooWPeer)"), "{own}");
        let mut s = spec();
        s.user_agent = "ResearchCrawl/2.0".into();
        assert_eq!(
            limits.user_agent("12D3KooWPeer", &s),
            format!("{own} ResearchCrawl/2.0")
        );
    }
}
