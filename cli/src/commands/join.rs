//! How client commands (`put`, `get`) join the network: `--bootstrap` flags, or the
//! `bootstrap` list of a TOML file (`--config`, else `~/.config/tessera/client.toml` when it
//! exists).
//!
//! ```toml
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
//! ```

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use tessera_client::Session;
use tessera_net::Multiaddr;

use super::config::{default_path, read_toml};

#[derive(Debug, Clone, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct JoinArgs {
    /// Peer to join the network through, ending in /p2p/PEER_ID (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// The network's id (its charter's); nodes of a named network answer only under it
    /// [default: the file's `network`, else the unnamed network].
    #[arg(long, env = "TESSERA_NETWORK")]
    network: Option<String>,
    /// TOML file with `bootstrap = [...]` and `network = "ID"` [default:
    /// ~/.config/tessera/client.toml].
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    #[serde(default)]
    bootstrap: Vec<Multiaddr>,
    network: Option<String>,
}

impl JoinArgs {
    /// The client file's settings: the one named, else the default one if it exists.
    fn file(&self) -> anyhow::Result<ClientFile> {
        let file = match &self.config {
            Some(path) => Some(path.clone()),
            None => default_path("client.toml").filter(|p| p.exists()),
        };
        Ok(match file {
            Some(path) => read_toml::<ClientFile>(&path)?,
            None => ClientFile::default(),
        })
    }

    /// Joins the network as a short-lived peer.
    pub(crate) async fn join(&self) -> anyhow::Result<Session> {
        let file = self.file()?;
        let bootstrap = if self.bootstrap.is_empty() {
            file.bootstrap
        } else {
            self.bootstrap.clone()
        };
        let network = self.network.clone().or(file.network);
        Session::join_network(network, bootstrap)
            .await
            .context("joining the network")
    }
}
