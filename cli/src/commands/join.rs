//! How client commands (`put`, `get`) join the network: `--bootstrap` flags, or the
//! `bootstrap` list of a TOML file (`--config`, else `~/.config/tessera/client.toml` when it
//! exists).
//!
//! ```toml
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
//! ```

use std::path::PathBuf;

use anyhow::Context as _;
use tessera_client::{Session, local::ClientSettings};
use tessera_net::Multiaddr;

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

impl JoinArgs {
    /// Joins the network as a short-lived peer.
    pub(crate) async fn join(&self) -> anyhow::Result<Session> {
        let file = ClientSettings::load(self.config.as_deref())?;
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
