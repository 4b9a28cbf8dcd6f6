//! `tessera storage-node`: run a storage node until interrupted.
//!
//! Its settings are `tessera_storage_node::NodeConfig`, described once there with their
//! defaults and checks: read from a TOML file (`--config`), overridden by flags, and printed
//! whole by `--print-config`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_net::Multiaddr;
use tessera_storage_node::{NodeConfig, StorageNode};

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
    /// Where the node keeps its identity, index and pieces
    /// [default: ~/.local/share/tessera/storage-node].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// libp2p listen address (repeatable) [default: TCP and QUIC on port 4001].
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Peer to join through, ending in /p2p/PEER_ID (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Most bytes of pieces to keep, like 50GiB [default: 10GiB].
    #[arg(long)]
    capacity: Option<ByteSize>,
    /// Most bytes per second this node sends (ranges served), like 2MiB [default: no limit].
    #[arg(long)]
    upload_rate: Option<ByteSize>,
    /// Most bytes per second it receives (pieces stored here), like 5MiB [default: no limit].
    #[arg(long)]
    download_rate: Option<ByteSize>,
    /// Most bytes sent and received in a calendar month (UTC), like 500GiB; past it the node
    /// stops serving until the month ends [default: no cap].
    #[arg(long)]
    monthly_cap: Option<ByteSize>,
    /// Address for the HTTP port with the dashboard, /status and /metrics [default:
    /// 127.0.0.1:7320, another free loopback port when that one is taken].
    #[arg(long, conflicts_with = "no_http")]
    http: Option<SocketAddr>,
    /// No HTTP port: no dashboard, /status, /metrics or registry API.
    #[arg(long)]
    no_http: bool,
    /// Do not run the dataset registry role (records, /tessera/registry/1, HTTP /v1 API).
    #[arg(long)]
    no_registry: bool,
    /// Time between audit rounds, like 30m; 0s turns the auditor role off [default: 30m].
    #[arg(long, value_parser = humantime::parse_duration)]
    audit_interval: Option<std::time::Duration>,
    /// Time in which every known piece is challenged once, like 24h [default: 24h].
    #[arg(long, value_parser = humantime::parse_duration)]
    audit_period: Option<std::time::Duration>,
    /// Do not rebuild lost pieces (audits still run).
    #[arg(long)]
    no_repair: bool,
    /// Print the settings the node would run with (the file's, the defaults and the flags),
    /// as a config file, and exit.
    #[arg(long)]
    print_config: bool,
}

/// Where the dashboard goes when neither the file nor a flag says: loopback, so that only this
/// machine sees it; another free port when a second node on the machine has that one.
const DEFAULT_HTTP: &str = "127.0.0.1:7320";

/// The file's settings (or the defaults), with the flags given on top, checked.
fn node_config(args: Args) -> anyhow::Result<NodeConfig> {
    let mut config: NodeConfig = read_settings(args.config.as_deref())?;
    flag(&mut config.data_dir, args.data_dir);
    flags(&mut config.listen, args.listen);
    flags(&mut config.bootstrap, args.bootstrap);
    flag(&mut config.capacity, args.capacity);
    flag(&mut config.http, args.http.map(Some));
    flag(&mut config.upload_rate, args.upload_rate.map(Some));
    flag(&mut config.download_rate, args.download_rate.map(Some));
    flag(&mut config.monthly_cap, args.monthly_cap.map(Some));
    if args.no_http {
        config.http = None;
    } else if config.http.is_none() {
        config.http = DEFAULT_HTTP.parse().ok();
        config.http_any_port_if_taken = true;
    }
    flag(&mut config.audit_interval, args.audit_interval);
    flag(&mut config.audit_period, args.audit_period);
    config.registry &= !args.no_registry;
    config.repair &= !args.no_repair;
    config.check()?;
    Ok(config)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let print = args.print_config;
    let config = node_config(args)?;
    if print {
        print!(
            "{}",
            toml::to_string(&config).context("writing the settings as TOML")?
        );
        return Ok(());
    }
    let node = StorageNode::start(config.clone())
        .await
        .context("starting the storage node")?;
    say(format_args!("peer id   {}", node.client.peer_id()));
    for addr in &node.addresses {
        say(format_args!("listening {addr}"));
    }
    if let Some(http) = node.http {
        say(format_args!(
            "http      http://{http}/status  http://{http}/metrics  http://{http}/ (dashboard)"
        ));
    }
    say(format_args!(
        "data      {} ({} pieces, capacity {})",
        config.data_dir.display(),
        node.startup.pieces,
        config.capacity
    ));
    daemon::until_stopped().await?;
    say(format_args!("stopping"));
    node.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "data-dir = \"/srv/t\"\ncapacity = \"50GiB\"\nhttp = \"127.0.0.1:8080\"\n\
             listen = [\"/ip4/0.0.0.0/tcp/5001\"]\n",
        )
        .unwrap();
        let args = |capacity: Option<ByteSize>| Args {
            config: Some(path.clone()),
            data_dir: None,
            listen: vec![],
            bootstrap: vec![],
            capacity,
            http: None,
            upload_rate: None,
            download_rate: None,
            monthly_cap: None,
            no_http: false,
            no_registry: false,
            audit_interval: None,
            audit_period: None,
            no_repair: false,
            print_config: false,
        };
        let c = node_config(args(None)).unwrap();
        assert_eq!(
            (c.audit_interval.as_secs(), c.audit_period.as_secs()),
            (1800, 86_400)
        );
        assert_eq!(c.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(c.capacity, ByteSize::gib(50));
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.http, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(c.registry);
        let c = node_config(args(Some(ByteSize::mib(5)))).unwrap();
        assert_eq!(c.capacity, ByteSize::mib(5));
        let c = node_config(Args {
            audit_interval: Some(std::time::Duration::from_secs(300)),
            ..args(None)
        })
        .unwrap();
        assert_eq!(c.audit_interval.as_secs(), 300);

        std::fs::write(
            &path,
            "data-dir = \"/srv/t\"\naudit-interval = \"1h\"\naudit-failures = 5\n",
        )
        .unwrap();
        let c = node_config(args(None)).unwrap();
        assert_eq!((c.audit_interval.as_secs(), c.audit_failures), (3600, 5));
        std::fs::write(&path, "audit-interval = \"often\"\n").unwrap();
        let err = format!("{:#}", node_config(args(None)).unwrap_err());
        assert!(err.contains("audit-interval"), "{err}");
        std::fs::write(
            &path,
            "data-dir = \"/srv/t\"\naudit-grace = \"10m\"\nrepair = false\nrepair-spare = 1.0\n",
        )
        .unwrap();
        let c = node_config(args(None)).unwrap();
        assert_eq!((c.audit_grace.as_secs(), c.repair), (600, false));
        assert!((c.repair_spare - 1.0).abs() < f64::EPSILON);
        std::fs::write(&path, "data-dir = \"/srv/t\"\nrepair-spare = 2.0\n").unwrap();
        let err = format!("{:#}", node_config(args(None)).unwrap_err());
        assert!(err.contains("repair-spare"), "{err}");

        std::fs::write(&path, "capacity = \"lots\"\n").unwrap();
        let err = format!("{:#}", node_config(args(None)).unwrap_err());
        assert!(err.contains("parsing config"), "{err}");
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let err = format!("{:#}", node_config(args(None)).unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_config_file_is_taken_or_refused_never_a_panic(
            text in super::super::config::any_config(&[
                "data-dir", "listen", "bootstrap", "capacity", "http", "scrub-interval-secs",
                "scrub-interval", "max-piece", "registry", "audit-interval", "audit-period", "audit-failures", "audit-grace",
                "repair", "repair-spare",
            ])
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("node.toml");
            std::fs::write(&path, text).unwrap();
            let _ = node_config(Args {
                config: Some(path),
                data_dir: None,
                listen: vec![],
                bootstrap: vec![],
                capacity: None,
                http: None,
                upload_rate: None,
                download_rate: None,
                monthly_cap: None,
                no_http: false,
                no_registry: false,
                audit_interval: None,
                audit_period: None,
                no_repair: false,
                print_config: false,
            });
        }
    }
}
