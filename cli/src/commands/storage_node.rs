//! `tessera storage-node`: run a storage node until interrupted.
//!
//! Settings come from a TOML file (`--config`), and flags override it:
//!
//! ```toml
//! data-dir = "/var/lib/tessera"
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
//! capacity = "50GiB"
//! http = "127.0.0.1:8080"
//! scrub-interval-secs = 86400   # re-hash every held piece once a day; 0 turns it off
//! audit-interval = "30m"        # an audit round every 30 minutes; "0s" turns the auditor off
//! audit-period = "24h"          # every known piece challenged once a day
//! audit-failures = 3            # failures in a row before a node fails a piece
//! audit-grace = "2h"            # how long a holder that does not answer is waited for
//! repair = true                 # rebuild lost pieces of the datasets audited
//! repair-spare = 0.5            # repair below k + ceil(0.5 * m) intact pieces
//! ```

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use bytesize::ByteSize;
use serde::Deserialize;
use tessera_net::Multiaddr;
use tessera_storage_node::{NodeConfig, StorageNode};

use super::{
    config::{duration, read_toml},
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
    /// Address for the HTTP port with /status and /metrics, like 127.0.0.1:8080.
    #[arg(long)]
    http: Option<SocketAddr>,
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
    capacity: Option<ByteSize>,
    http: Option<SocketAddr>,
    scrub_interval_secs: Option<u64>,
    registry: Option<bool>,
    audit_interval: Option<String>,
    audit_period: Option<String>,
    audit_failures: Option<u32>,
    audit_grace: Option<String>,
    repair: Option<bool>,
    repair_spare: Option<f64>,
}

fn node_config(args: Args) -> anyhow::Result<NodeConfig> {
    let file: FileConfig = match &args.config {
        Some(path) => read_toml(path)?,
        None => FileConfig::default(),
    };
    let data_dir = daemon::data_dir(args.data_dir, file.data_dir, "storage-node")?;
    let default_listen = vec![
        "/ip4/0.0.0.0/tcp/4001".parse()?,
        "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
    ];
    let listen = daemon::list(args.listen, file.listen, || default_listen);
    let bootstrap = daemon::list(args.bootstrap, file.bootstrap, Vec::new);
    let defaults = NodeConfig::with_defaults(data_dir.clone());
    let capacity = args
        .capacity
        .or(file.capacity)
        .unwrap_or(ByteSize::gib(10))
        .as_u64();
    Ok(NodeConfig {
        data_dir,
        listen,
        bootstrap,
        capacity,
        max_piece: 1 << 30,
        http: args.http.or(file.http),
        scrub_interval_secs: file
            .scrub_interval_secs
            .unwrap_or(tessera_storage_node::node::DEFAULT_SCRUB_INTERVAL_SECS),
        registry: !args.no_registry && file.registry.unwrap_or(true),
        audit_interval_secs: args
            .audit_interval
            .or(duration(file.audit_interval.as_deref(), "audit-interval")?)
            .map_or(defaults.audit_interval_secs, |d| d.as_secs()),
        audit_period_secs: args
            .audit_period
            .or(duration(file.audit_period.as_deref(), "audit-period")?)
            .map_or(defaults.audit_period_secs, |d| d.as_secs()),
        audit_failures: file.audit_failures.unwrap_or(defaults.audit_failures),
        audit_grace_secs: duration(file.audit_grace.as_deref(), "audit-grace")?
            .map_or(defaults.audit_grace_secs, |d| d.as_secs()),
        repair: !args.no_repair && file.repair.unwrap_or(defaults.repair),
        repair_spare: match file.repair_spare {
            Some(spare) if !(0.0..=1.0).contains(&spare) => {
                anyhow::bail!("repair-spare: {spare} is not between 0 and 1")
            }
            Some(spare) => spare,
            None => defaults.repair_spare,
        },
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let config = node_config(args)?;
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
        ByteSize::b(config.capacity)
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
            no_registry: false,
            audit_interval: None,
            audit_period: None,
            no_repair: false,
        };
        let c = node_config(args(None)).unwrap();
        assert_eq!((c.audit_interval_secs, c.audit_period_secs), (1800, 86_400));
        assert_eq!(c.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(c.capacity, 50 << 30);
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.http, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(c.registry);
        let c = node_config(args(Some(ByteSize::mib(5)))).unwrap();
        assert_eq!(c.capacity, 5 << 20);
        let c = node_config(Args {
            audit_interval: Some(std::time::Duration::from_secs(300)),
            ..args(None)
        })
        .unwrap();
        assert_eq!(c.audit_interval_secs, 300);

        std::fs::write(&path, "audit-interval = \"1h\"\naudit-failures = 5\n").unwrap();
        let c = node_config(args(None)).unwrap();
        assert_eq!((c.audit_interval_secs, c.audit_failures), (3600, 5));
        std::fs::write(&path, "audit-interval = \"often\"\n").unwrap();
        let err = format!("{:#}", node_config(args(None)).unwrap_err());
        assert!(err.contains("audit-interval"), "{err}");
        std::fs::write(
            &path,
            "audit-grace = \"10m\"\nrepair = false\nrepair-spare = 1.0\n",
        )
        .unwrap();
        let c = node_config(args(None)).unwrap();
        assert_eq!((c.audit_grace_secs, c.repair), (600, false));
        assert!((c.repair_spare - 1.0).abs() < f64::EPSILON);
        std::fs::write(&path, "repair-spare = 2.0\n").unwrap();
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
                "registry", "audit-interval", "audit-period", "audit-failures", "audit-grace",
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
                no_registry: false,
                audit_interval: None,
                audit_period: None,
                no_repair: false,
            });
        }
    }
}
