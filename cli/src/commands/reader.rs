//! What commands that read datasets by name share: the publisher key whose datasets win when a
//! name is ambiguous, and how to join the network.

use std::path::PathBuf;

use tessera_client::Session;
use tessera_formats::PublisherKey;

use super::{join::JoinArgs, publisher_key};

#[derive(Debug, Clone, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct ReaderArgs {
    /// A publisher key whose datasets win when a name is ambiguous [default: your own].
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    join: JoinArgs,
}

impl ReaderArgs {
    /// The preferred publisher: the key file's, when it exists.
    pub(crate) fn preferred(&self) -> anyhow::Result<Option<PublisherKey>> {
        let path = publisher_key::key_path(self.key.as_deref())?;
        Ok(publisher_key::load(&path)?.map(|s| s.publisher))
    }

    /// Joins the network as a short-lived peer.
    pub(crate) async fn join(&self) -> anyhow::Result<Session> {
        self.join.join().await
    }
}
