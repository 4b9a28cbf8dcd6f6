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
    /// TOML file with `bootstrap = [...]` [default: ~/.config/tessera/client.toml].
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    #[serde(default)]
    bootstrap: Vec<Multiaddr>,
}

impl JoinArgs {
    fn bootstrap(&self) -> anyhow::Result<Vec<Multiaddr>> {
        if !self.bootstrap.is_empty() {
            return Ok(self.bootstrap.clone());
        }
        let file = match &self.config {
            Some(path) => Some(path.clone()),
            None => default_path("client.toml").filter(|p| p.exists()),
        };
        Ok(match file {
            Some(path) => read_toml::<ClientFile>(&path)?.bootstrap,
            None => Vec::new(),
        })
    }

    /// Joins the network as a short-lived peer.
    pub(crate) async fn join(&self) -> anyhow::Result<Session> {
        Session::join(self.bootstrap()?)
            .await
            .context("joining the network")
    }
}
