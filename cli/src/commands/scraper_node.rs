//! `tessera scraper-node`: run a scraper node until interrupted.
//!
//! Its settings are `tessera_scraper_node::ScraperConfig`, described once there with their
//! defaults and checks: read from a TOML file (`--config`), overridden by flags, and printed
//! whole by `--print-config`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_net::Multiaddr;
use tessera_scraper_node::node::{ScraperConfig, ScraperNode};

use super::{
    config::{flag, flags, read_settings},
    daemon::{self, say},
};

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
    /// Fetch from loopback, LAN, link-local and testbed (198.18/15) addresses too. For tests
    /// and demos only: it
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
    /// Print the settings the node would run with (the file's, the defaults and the flags),
    /// as a config file, and exit.
    #[arg(long)]
    print_config: bool,
}

/// The file's settings (or the defaults), with the flags given on top, checked.
fn node_config(args: Args) -> anyhow::Result<ScraperConfig> {
    let mut config: ScraperConfig = read_settings(args.config.as_deref())?;
    flag(&mut config.data_dir, args.data_dir);
    flags(&mut config.listen, args.listen);
    flags(&mut config.bootstrap, args.bootstrap);
    flag(&mut config.publisher_key, args.publisher_key.map(Some));
    flag(&mut config.http, args.http.map(Some));
    flag(&mut config.coordinator, args.coordinator.map(Some));
    flag(&mut config.min_delay, args.min_delay);
    flag(&mut config.max_body, args.max_body);
    flag(&mut config.max_timeout, args.max_timeout);
    flag(&mut config.pages_per_hour, args.pages_per_hour);
    flags(&mut config.api_hosts, args.api_host);
    config.coordinate &= !args.no_coordinate;
    config.allow_private_networks |= args.allow_private_networks;
    config.check()?;
    Ok(config)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let print = args.print_config;
    let mut config = node_config(args)?;
    if print {
        // The port a coordinator takes when none is given, written out.
        config.http = config.http_addr();
        print!(
            "{}",
            toml::to_string(&config).context("writing the settings as TOML")?
        );
        return Ok(());
    }
    if config.allow_private_networks {
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
            print_config: false,
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
        assert_eq!(c.min_delay, std::time::Duration::from_secs(2));
        assert_eq!(c.max_body, ByteSize::mib(1));
        assert_eq!(c.max_timeout, ScraperConfig::default().max_timeout);
        assert_eq!(c.pages_per_hour, 60);
        assert_eq!(c.api_hosts, ["scraper.lan"]);
        let c = node_config(Args {
            pages_per_hour: Some(10),
            ..args(path.clone())
        })
        .unwrap();
        assert_eq!(c.pages_per_hour, 10);
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
                "publisher-key", "allow-private-networks", "min-delay", "max-body", "max-timeout", "pages-per-hour",
                "api-hosts", "payout-address",
            ])
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("scraper.toml");
            std::fs::write(&path, text).unwrap();
            let _ = node_config(args(path));
        }
    }
}
