//! `tessera scraper-node`: run a scraper node until interrupted.
//!
//! Settings come from a TOML file (`--config`), and flags override it:
//!
//! ```toml
//! data-dir = "/var/lib/tessera/scraper"
//! listen = ["/ip4/0.0.0.0/tcp/4002"]
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]   # storage nodes
//! publisher-key = "/var/lib/tessera/scraper/publisher.key"   # signs published crawls
//! http = "127.0.0.1:8090"            # the dashboard, and the crawl API of a coordinator
//! coordinator = "/ip4/203.0.113.9/tcp/4002/p2p/12D3KooW..."   # scrape for this coordinator
//! coordinate = true                  # accept crawls and lease them out
//! min-delay = "1s"                   # the operator's limits, whatever a coordinator asks:
//! max-body = "8MiB"                  #   requests to one host spaced at least this much,
//! max-timeout = "60s"                #   bodies and request times at most this,
//! pages-per-hour = 3600              #   and this many pages an hour
//! api-hosts = ["scraper.lan"]        # names besides localhost that the crawl API takes changes under
//! ```

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use bytesize::ByteSize;
use serde::Deserialize;
use tessera_net::Multiaddr;
use tessera_scraper_node::{
    address::NetworkPolicy,
    limits::OperatorLimits,
    node::{ScraperConfig, ScraperNode},
};

use super::{
    config::{duration, read_toml},
    daemon::{self, say},
    publisher_key,
};

/// The crawl API's address unless one is given.
pub(crate) const DEFAULT_HTTP: &str = "127.0.0.1:8090";

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// TOML file with the node's settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the node keeps its identity, crawls and shards
    /// [default: ~/.local/share/tessera/scraper-node].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// libp2p listen address (repeatable) [default: TCP on port 4002].
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Storage node to join through, ending in /p2p/PEER_ID (repeatable). Shards are stored
    /// in their network and finished crawls published there; without one, shards stay in
    /// the data directory.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// The key that signs the dataset versions of finished crawls
    /// [default: publisher.key in the data directory, created if missing].
    #[arg(long)]
    publisher_key: Option<PathBuf>,
    /// Address of the HTTP port: the dashboard, and the crawl API of a coordinator
    /// [default: 127.0.0.1:8090 for a coordinator, none for a worker].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Scrape for the coordinator at this address (ending in /p2p/PEER_ID) instead of this
    /// node's own.
    #[arg(long)]
    coordinator: Option<Multiaddr>,
    /// Do not run the coordinator role (no crawl API, no leases for others).
    #[arg(long)]
    no_coordinate: bool,
    /// Fetch from loopback, LAN and link-local addresses too. For tests and demos only: it
    /// lets crawled pages reach this machine's own network.
    #[arg(long)]
    allow_private_networks: bool,
    /// Least time between two requests to one host, whatever a crawl asks [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    min_delay: Option<std::time::Duration>,
    /// Largest page body fetched [default: 8MiB].
    #[arg(long)]
    max_body: Option<ByteSize>,
    /// Longest time one request may take [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    max_timeout: Option<std::time::Duration>,
    /// Most pages fetched in any hour [default: 3600].
    #[arg(long)]
    pages_per_hour: Option<u32>,
    /// A host name, besides localhost, under which the crawl API takes changes (repeatable):
    /// for an HTTP port on another interface. Changes always need the node's API token.
    #[arg(long)]
    api_host: Vec<String>,
}

/// The config file: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<Multiaddr>,
    #[serde(default)]
    bootstrap: Vec<Multiaddr>,
    http: Option<SocketAddr>,
    coordinator: Option<Multiaddr>,
    coordinate: Option<bool>,
    publisher_key: Option<PathBuf>,
    min_delay: Option<String>,
    max_body: Option<ByteSize>,
    max_timeout: Option<String>,
    pages_per_hour: Option<u32>,
    #[serde(default)]
    api_hosts: Vec<String>,
}

fn node_config(args: Args) -> anyhow::Result<ScraperConfig> {
    let file: FileConfig = match &args.config {
        Some(path) => read_toml(path)?,
        None => FileConfig::default(),
    };
    let data_dir = daemon::data_dir(args.data_dir, file.data_dir, "scraper-node")?;
    let default_listen = vec!["/ip4/0.0.0.0/tcp/4002".parse()?];
    let listen = daemon::list(args.listen, file.listen, || default_listen);
    let bootstrap = daemon::list(args.bootstrap, file.bootstrap, Vec::new);
    let coordinate = !args.no_coordinate && file.coordinate.unwrap_or(true);
    let publisher_key = match args.publisher_key.or(file.publisher_key) {
        Some(path) => Some(
            publisher_key::load(&path)?
                .with_context(|| format!("no publisher key at {}", path.display()))?,
        ),
        None => None,
    };
    let defaults = OperatorLimits::default();
    let limits = OperatorLimits {
        min_delay: args
            .min_delay
            .or(duration(file.min_delay.as_deref(), "min-delay")?)
            .unwrap_or(defaults.min_delay),
        max_body: args.max_body.or(file.max_body).unwrap_or(defaults.max_body),
        max_timeout: args
            .max_timeout
            .or(duration(file.max_timeout.as_deref(), "max-timeout")?)
            .unwrap_or(defaults.max_timeout),
        pages_per_hour: args
            .pages_per_hour
            .or(file.pages_per_hour)
            .unwrap_or(defaults.pages_per_hour),
    };
    anyhow::ensure!(
        limits.pages_per_hour > 0,
        "pages-per-hour must be at least 1"
    );
    Ok(ScraperConfig {
        limits,
        api_hosts: daemon::list(args.api_host, file.api_hosts, Vec::new),
        data_dir,
        listen,
        bootstrap,
        // A coordinator always serves its crawl API; a worker serves its dashboard when asked.
        http: match args.http.or(file.http) {
            Some(addr) => Some(addr),
            None if coordinate => Some(DEFAULT_HTTP.parse()?),
            None => None,
        },
        coordinator: args.coordinator.or(file.coordinator),
        coordinate,
        network: if args.allow_private_networks {
            NetworkPolicy::allow_private()
        } else {
            NetworkPolicy::public_only()
        },
        publisher_key,
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let config = node_config(args)?;
    if config.network.allow_private {
        eprintln!(
            "WARNING: --allow-private-networks is on: this node will fetch from loopback, LAN \
             and link-local addresses. Use it only for tests and demos."
        );
    }
    let node = ScraperNode::start(config.clone())
        .await
        .context("starting the scraper node")?;
    say(format_args!("peer id   {}", node.peer_id));
    for addr in &node.addresses {
        say(format_args!("listening {addr}"));
    }
    if let Some(http) = node.http {
        if node.coordinator.is_some() {
            say(format_args!("crawls    http://{http}/v1/crawls"));
        }
        say(format_args!("dashboard http://{http}/"));
    }
    say(format_args!("data      {}", config.data_dir.display()));
    match &node.publisher {
        Some(publisher) => say(format_args!("publishes as {publisher}")),
        None if config.coordinate => say(format_args!(
            "no storage nodes (--bootstrap): crawls stay on this node, unpublished"
        )),
        None => {}
    }
    daemon::until_stopped().await?;
    say(format_args!("stopping"));
    node.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: PathBuf) -> Args {
        Args {
            config: Some(config),
            data_dir: Some("/srv/scraper".into()),
            listen: vec![],
            bootstrap: vec![],
            publisher_key: None,
            http: None,
            coordinator: None,
            no_coordinate: false,
            allow_private_networks: false,
            min_delay: None,
            max_body: None,
            max_timeout: None,
            pages_per_hour: None,
            api_host: vec![],
        }
    }

    #[test]
    fn the_operators_limits_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scraper.toml");
        std::fs::write(
            &path,
            "min-delay = \"2s\"\nmax-body = \"1MiB\"\npages-per-hour = 60\napi-hosts = [\"scraper.lan\"]\n",
        )
        .unwrap();
        let c = node_config(args(path.clone())).unwrap();
        assert_eq!(c.limits.min_delay, std::time::Duration::from_secs(2));
        assert_eq!(c.limits.max_body, ByteSize::mib(1));
        assert_eq!(c.limits.max_timeout, OperatorLimits::default().max_timeout);
        assert_eq!(c.limits.pages_per_hour, 60);
        assert_eq!(c.api_hosts, ["scraper.lan"]);
        let c = node_config(Args {
            pages_per_hour: Some(10),
            ..args(path.clone())
        })
        .unwrap();
        assert_eq!(c.limits.pages_per_hour, 10);
        std::fs::write(&path, "pages-per-hour = 0\n").unwrap();
        assert!(node_config(args(path.clone())).is_err());
        std::fs::write(&path, "min-delay = \"soon\"\n").unwrap();
        let err = format!("{:#}", node_config(args(path)).unwrap_err());
        assert!(err.contains("min-delay"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_config_file_is_taken_or_refused_never_a_panic(
            text in super::super::config::any_config(&[
                "data-dir", "listen", "bootstrap", "http", "coordinator", "coordinate",
                "publisher-key", "min-delay", "max-body", "max-timeout", "pages-per-hour",
                "api-hosts",
            ])
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("scraper.toml");
            std::fs::write(&path, text).unwrap();
            let _ = node_config(args(path));
        }
    }
}
