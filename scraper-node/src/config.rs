//! A scraper node's settings, described once: read from its TOML file, overridden by flags,
//! printed whole by `tessera scraper-node --print-config`.
//!
//! ```toml
//! data-dir = "/var/lib/tessera/scraper"
//! listen = ["/ip4/0.0.0.0/tcp/4002"]
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]   # storage nodes
//! http = "127.0.0.1:8090"            # the dashboard, and the crawl API of a coordinator
//! charter = "/etc/tessera/charter.block"   # the storage network's founding charter
//! coordinate = true                  # coordinator role: accept crawls and lease them out
//! publisher-key = "/var/lib/tessera/scraper/publisher.key"   # signs published crawls
//! coordinator = "/ip4/203.0.113.9/tcp/4002/p2p/12D3KooW..."   # worker: scrape for this one
//! allow-private-networks = false     # fetch from loopback and LAN too (tests, demos)
//! min-delay = "1s"                   # the operator's limits, whatever a coordinator asks:
//! max-body = "8MiB"                  #   requests to one host spaced at least this much,
//! max-timeout = "60s"                #   bodies and request times at most this,
//! pages-per-hour = 3600              #   and this many pages an hour
//! api-hosts = ["scraper.lan"]        # names besides localhost that the crawl API takes changes under
//! payout-address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"   # where page rewards are paid
//! ```

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use tessera_net::{Multiaddr, PeerId, Protocol};
use tessera_node::config::{InvalidSetting, byte_size, check_data_dir, default_data_dir, duration};

use crate::{address::NetworkPolicy, limits::OperatorLimits};

/// Where a coordinator serves its crawl API unless told otherwise.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8090,
));

/// Everything a scraper node is started with; a field missing from a file takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScraperConfig {
    /// Where the node keeps its identity, database and shards.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Storage nodes to join through: closed shards are stored in their network, and the
    /// coordinator publishes finished crawls there. Without any, shards stay in the data
    /// directory and crawls are not published.
    pub bootstrap: Vec<Multiaddr>,
    /// The HTTP port's address: the dashboard, and a coordinator's crawl API. A coordinator
    /// serves on [`DEFAULT_HTTP`] when none is given; a worker serves nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// The network's founding charter (a DAG-CBOR block), whose network id the node speaks
    /// under; none: the unnamed network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charter: Option<PathBuf>,
    /// Run the coordinator role: accept crawls over HTTP and lease them to scraper nodes.
    pub coordinate: bool,
    /// The key that signs the dataset versions of finished crawls; `publisher.key` in the
    /// data directory (created on first use) when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_key: Option<PathBuf>,
    /// Another node's coordinator to take leases from (`…/p2p/PEER_ID`); this node's own if
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<Multiaddr>,
    /// Fetch from loopback, LAN and link-local addresses too: for tests and demos only.
    pub allow_private_networks: bool,
    /// Least time between two requests to one host, whatever a crawl asks.
    #[serde(with = "duration")]
    pub min_delay: Duration,
    /// Largest page body fetched.
    #[serde(with = "byte_size")]
    pub max_body: ByteSize,
    /// Longest time one request may take.
    #[serde(with = "duration")]
    pub max_timeout: Duration,
    /// Most pages fetched in any hour.
    pub pages_per_hour: u32,
    /// Host names, besides the loopback ones, under which the crawl API takes changes (for an
    /// HTTP port on another interface).
    pub api_hosts: Vec<String>,
    /// Where the node's rewards for validated pages are paid (an Ethereum-style address),
    /// declared on the network signed by the node's key.
    pub payout_address: Option<String>,
}

impl Default for ScraperConfig {
    fn default() -> Self {
        let limits = OperatorLimits::default();
        Self {
            data_dir: default_data_dir("scraper-node"),
            listen: "/ip4/0.0.0.0/tcp/4002".parse().into_iter().collect(),
            bootstrap: Vec::new(),
            http: None,
            charter: None,
            coordinate: true,
            publisher_key: None,
            coordinator: None,
            allow_private_networks: false,
            min_delay: limits.min_delay,
            max_body: limits.max_body,
            max_timeout: limits.max_timeout,
            pages_per_hour: limits.pages_per_hour,
            api_hosts: Vec::new(),
            payout_address: None,
        }
    }
}

impl ScraperConfig {
    /// A node in `data_dir` with every other setting at its default.
    pub fn with_defaults(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            ..Self::default()
        }
    }

    /// Refuses settings the node cannot run with, naming the first one.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        check_data_dir(&self.data_dir)?;
        if !self.coordinate && self.coordinator.is_none() {
            return Err(InvalidSetting::new(
                "coordinator",
                "a scraper node that does not coordinate needs a coordinator to scrape for",
            ));
        }
        self.remote_coordinator()?;
        if self.pages_per_hour == 0 {
            return Err(InvalidSetting::new("pages-per-hour", "must be at least 1"));
        }
        if self.max_body.as_u64() == 0 {
            return Err(InvalidSetting::new("max-body", "must be more than 0 bytes"));
        }
        if self.max_timeout.is_zero() {
            return Err(InvalidSetting::new("max-timeout", "must be more than 0s"));
        }
        self.payout()?;
        Ok(())
    }

    /// The payout address, read.
    pub fn payout(&self) -> Result<Option<tessera_formats::payout::PayoutAddress>, InvalidSetting> {
        tessera_node::payout::setting(self.payout_address.as_deref())
    }

    /// The HTTP port the node serves on: the configured one, or a coordinator's default.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.or(self.coordinate.then_some(DEFAULT_HTTP))
    }

    /// The peer id of the coordinator to scrape for, when it is another node's.
    pub fn remote_coordinator(&self) -> Result<Option<PeerId>, InvalidSetting> {
        match &self.coordinator {
            None => Ok(None),
            Some(addr) => match addr.iter().last() {
                Some(Protocol::P2p(peer)) => Ok(Some(peer)),
                _ => Err(InvalidSetting::new(
                    "coordinator",
                    format!("{addr} must end in /p2p/PEER_ID"),
                )),
            },
        }
    }

    /// The operator's limits on what the worker fetches.
    pub fn limits(&self) -> OperatorLimits {
        OperatorLimits {
            min_delay: self.min_delay,
            max_body: self.max_body,
            max_timeout: self.max_timeout,
            pages_per_hour: self.pages_per_hour,
        }
    }

    /// Which addresses the worker may fetch from.
    pub fn network_policy(&self) -> NetworkPolicy {
        if self.allow_private_networks {
            NetworkPolicy::allow_private()
        } else {
            NetworkPolicy::public_only()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScraperConfig, String> {
        toml::from_str::<ScraperConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_names_only_what_it_changes_and_bad_settings_are_named() {
        let c = parse("min-delay = \"2s\"\nmax-body = \"1MiB\"\npages-per-hour = 60\n").unwrap();
        assert_eq!(c.limits().min_delay, Duration::from_secs(2));
        assert_eq!(c.limits().max_body, ByteSize::mib(1));
        assert_eq!(
            c.limits().max_timeout,
            OperatorLimits::default().max_timeout
        );
        assert_eq!(c.http_addr(), Some(DEFAULT_HTTP));
        assert!(parse("colour = 1\n").unwrap_err().contains("colour"));
        assert!(
            parse("min-delay = \"soon\"\n")
                .unwrap_err()
                .contains("soon")
        );
        let check = |text: &str| parse(text).unwrap().check().unwrap_err().key;
        assert_eq!(
            check("data-dir = \"/t\"\npages-per-hour = 0\n"),
            "pages-per-hour"
        );
        assert_eq!(
            check("data-dir = \"/t\"\ncoordinate = false\n"),
            "coordinator"
        );
        assert_eq!(
            check("data-dir = \"/t\"\ncoordinator = \"/ip4/10.0.0.1/tcp/4002\"\n"),
            "coordinator"
        );
        let worker = parse(
            "data-dir = \"/t\"\ncoordinate = false\n\
             coordinator = \"/ip4/10.0.0.1/tcp/4002/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"\n",
        )
        .unwrap();
        worker.check().unwrap();
        assert_eq!(worker.http_addr(), None);
        assert!(worker.remote_coordinator().unwrap().is_some());
    }

    #[test]
    fn the_printed_config_reads_back_the_same() {
        let c = ScraperConfig {
            allow_private_networks: true,
            api_hosts: vec!["scraper.lan".into()],
            max_body: ByteSize::kib(1500),
            ..ScraperConfig::with_defaults("/srv/s".into())
        };
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c, "{text}");
    }
}
