//! `tessera peers`: how this machine reaches the network's storage nodes: directly (dialled,
//! or hole-punched through a relay), only through a relay, or not at all; and how long that
//! took. What a contributor at home checks first when reads or puts are slow.

use std::{io::Write as _, time::Instant};

use serde::Serialize;
use tessera_net::{PeerId, PeerPath};
use tokio::task::JoinSet;

use super::join::JoinArgs;

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// One JSON object per node (`peer`, `path`, `ms`) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    join: JoinArgs,
}

/// How one node was reached.
#[derive(Debug, Serialize)]
struct Reached {
    peer: String,
    path: PeerPath,
    ms: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let session = args.join.join().await?;
    let net = session.net().clone();
    // The DHT servers nearest this client's own id: every node of a small network, a sample
    // of a large one.
    let nodes: Vec<PeerId> = net.closest_peers(net.peer_id().to_bytes()).await?;
    let mut probes = JoinSet::new();
    for peer in nodes {
        let net = net.clone();
        probes.spawn(async move {
            let started = Instant::now();
            let path = net
                .paths(vec![peer])
                .await
                .ok()
                .and_then(|p| p.first().copied())
                .unwrap_or(PeerPath::None);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            Reached {
                peer: peer.to_string(),
                path,
                ms,
            }
        });
    }
    let mut reached = Vec::new();
    while let Some(done) = probes.join_next().await {
        reached.push(done?);
    }
    reached.sort_by(|a, b| a.peer.cmp(&b.peer));
    let mut out = std::io::stdout().lock();
    for r in &reached {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            writeln!(out, "{}  {:<8} {:>6} ms", r.peer, r.path.as_str(), r.ms)?;
        }
    }
    let count = |path| reached.iter().filter(|r| r.path == path).count();
    eprintln!(
        "{} storage nodes: {} direct, {} through a relay only, {} unreachable",
        reached.len(),
        count(PeerPath::Direct),
        count(PeerPath::Relayed),
        count(PeerPath::None),
    );
    Ok(())
}
