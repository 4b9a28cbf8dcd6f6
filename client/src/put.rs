//! Storing a file: erasure-code it into a spool directory, put each piece on its own node,
//! then put the layout block on several nodes. The layout's CID names the file and the way
//! it is stored.

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, BufWriter},
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use tessera_formats::{
    ShardLayout,
    erasure::{DEFAULT_STRIPE_SIZE, ErasureParams, encode},
};
use tessera_net::{PeerId, PeerPath};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::{debug, info, warn};

use crate::{
    error::ClientError,
    placement::{Placement, Subnet, losses_survived},
    session::Session,
    upload::{Source, upload},
};

/// How a file is stored.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// The erasure coding.
    pub params: ErasureParams,
    /// Pieces uploaded at once.
    pub parallel: usize,
    /// Copies of the layout block; `None` means `m + 1`, so it survives what the shard does.
    pub layout_copies: Option<usize>,
    /// Where the pieces are written before they are sent; the system's temporary directory
    /// if `None`. It needs room for the file's size times `(k + m) / k`.
    pub spool_dir: Option<PathBuf>,
    /// Refuse to store a shard that would survive fewer than `m` node losses (fewer distinct
    /// working nodes than pieces), rather than report it ([`PutReport::survives`]).
    pub refuse_degraded: bool,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            params: ErasureParams {
                k: 4,
                m: 2,
                stripe_size: DEFAULT_STRIPE_SIZE,
            },
            parallel: 8,
            layout_copies: None,
            spool_dir: None,
            refuse_degraded: false,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone)]
pub struct PutReport {
    /// The layout's CID: what `get` takes.
    pub layout_cid: Cid,
    /// The layout.
    pub layout: ShardLayout,
    /// The node that holds each piece, by index.
    pub holders: Vec<PeerId>,
    /// The nodes that hold the layout block.
    pub layout_holders: Vec<PeerId>,
    /// Whether some node holds two pieces (the network had fewer working nodes than pieces).
    pub shares_nodes: bool,
    /// How many node losses the shard survives as it is placed: `m` on distinct nodes, fewer
    /// when nodes hold several pieces.
    pub survives: usize,
}

/// Erasure-codes the file at `path` and stores it; see the module docs.
pub async fn put_file(
    session: &Session,
    path: &Path,
    options: &PutOptions,
) -> Result<PutReport, ClientError> {
    options.params.validate()?;
    let spool_parent = options.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spool = tempfile::Builder::new()
        .prefix(".tessera-put-")
        .tempdir_in(&spool_parent)
        .map_err(ClientError::io(format!(
            "creating a spool directory in {}",
            spool_parent.display()
        )))?;
    let (layout, pieces) = {
        let (path, dir, params) = (
            path.to_path_buf(),
            spool.path().to_path_buf(),
            options.params,
        );
        tokio::task::spawn_blocking(move || encode_to_files(&path, &dir, params))
            .await
            .map_err(|e| ClientError::io("encoding")(std::io::Error::other(e)))??
    };
    info!(content = %layout.content, size = layout.size, "encoded");
    let hooks = StoreHooks {
        refuse_degraded: options.refuse_degraded,
        ..StoreHooks::default()
    };
    let (holders, shares_nodes) =
        store_pieces(session, &layout, &pieces, options.parallel, &hooks).await?;
    let holders: Vec<PeerId> = holders.into_iter().flatten().collect();
    let survives = losses_survived(&holders, usize::from(layout.erasure.k));
    let (layout_cid, block) = layout.to_block().map_err(|source| ClientError::Layout {
        cid: Box::new(layout.content),
        source,
    })?;
    let copies = options
        .layout_copies
        .unwrap_or(usize::from(layout.erasure.m) + 1);
    let layout_holders = store_block(session, layout_cid, &block, copies).await?;
    Ok(PutReport {
        layout_cid,
        layout,
        holders,
        layout_holders,
        shares_nodes,
        survives,
    })
}

/// Erasure-codes the file at `path` into piece files in `dir`: its layout and the pieces' paths.
pub fn encode_to_files(
    path: &Path,
    dir: &Path,
    params: ErasureParams,
) -> Result<(ShardLayout, Vec<PathBuf>), ClientError> {
    let file = File::open(path).map_err(ClientError::io(format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(ClientError::io(format!("reading {}", path.display())))?
        .len();
    let paths: Vec<PathBuf> = (0..params.total())
        .map(|i| dir.join(format!("piece-{i}")))
        .collect();
    let mut sinks = paths
        .iter()
        .map(|p| File::create(p).map(BufWriter::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClientError::io(format!(
            "creating pieces in {}",
            dir.display()
        )))?;
    let layout = encode(params, len, BufReader::new(file), &mut sinks)?;
    Ok((layout, paths))
}

/// Called with a piece's index, CID and holder once it is stored.
pub type OnStored = Arc<dyn Fn(usize, Cid, PeerId) + Send + Sync>;

/// What a caller that resumes or reports progress adds to [`store_pieces`].
#[derive(Default)]
pub struct StoreHooks {
    /// Pieces stored before (by an interrupted run) and their holders: not sent again, and
    /// their holders count as holding a piece, so no other piece joins them while a node
    /// with none is left.
    pub skip: HashMap<Cid, PeerId>,
    /// Told about every piece stored.
    pub on_stored: Option<OnStored>,
    /// Refuse, before sending anything, when fewer nodes are found than the shard has
    /// pieces, and after, when the pieces ended on nodes whose loss the shard survives fewer
    /// than `m` times.
    pub refuse_degraded: bool,
}

impl std::fmt::Debug for StoreHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHooks")
            .field("skip", &self.skip.len())
            .finish_non_exhaustive()
    }
}

/// Stores the pieces of `layout` (piece `i` read from `pieces[i]`) on distinct nodes, `parallel`
/// at a time, except those in `hooks.skip`. Returns each piece's holder (a skipped piece's
/// from the hook) and whether a node got two pieces.
pub async fn store_pieces(
    session: &Session,
    layout: &ShardLayout,
    pieces: &[PathBuf],
    parallel: usize,
    hooks: &StoreHooks,
) -> Result<(Vec<Option<PeerId>>, bool), ClientError> {
    let key = layout.content.to_bytes();
    let mut candidates = session.net().closest_peers(key.clone()).await?;
    if candidates.len() < pieces.len() {
        // A routing table that has not caught up with nodes that joined a moment ago: refresh
        // it once before settling for fewer nodes than pieces.
        let _ = session.net().bootstrap().await;
        let again = session.net().closest_peers(key).await?;
        if again.len() > candidates.len() {
            candidates = again;
        }
    }
    let candidates = directly_reachable(session.net(), candidates).await;
    if candidates.is_empty() {
        return Err(ClientError::NoNodes);
    }
    let (k, m) = (layout.erasure.data(), usize::from(layout.erasure.m));
    if hooks.refuse_degraded && candidates.len() < pieces.len() {
        return Err(ClientError::Degraded {
            nodes: candidates.len(),
            pieces: pieces.len(),
            survives: losses_survived(&spread(candidates.len(), pieces.len()), k),
            m,
        });
    }
    debug!(candidates = candidates.len(), "placing pieces");
    let mut placement = placement_over(session.net(), candidates).await;
    let skipped: Vec<PeerId> = hooks
        .skip
        .iter()
        .filter(|(cid, _)| layout.pieces.contains(cid))
        .map(|(_, holder)| *holder)
        .collect();
    for (holder, subnet) in skipped.iter().zip(subnets(session.net(), &skipped).await) {
        placement.held_at(*holder, subnet);
    }
    let placement = Arc::new(Mutex::new(placement));
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let size = layout.piece_len();
    let mut tasks = JoinSet::new();
    for (index, (cid, path)) in layout.pieces.iter().zip(pieces).enumerate() {
        if hooks.skip.contains_key(cid) {
            continue;
        }
        let on_stored = hooks.on_stored.clone();
        let (net, cid, path) = (session.net().clone(), *cid, path.clone());
        let (placement, permits, timeouts) =
            (placement.clone(), permits.clone(), session.timeouts());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let mut attempts = Vec::new();
            loop {
                let Some(node) = placement.lock().assign() else {
                    return Err(ClientError::Unplaced { index, attempts });
                };
                match upload(&net, node, cid, size, Source::File(&path), timeouts).await {
                    Ok(()) => {
                        debug!(index, %node, "piece stored");
                        if let Some(on_stored) = on_stored {
                            on_stored(index, cid, node);
                        }
                        return Ok((index, node));
                    }
                    Err(e) => {
                        debug!(index, %node, error = %e, "piece not stored; trying another node");
                        placement.lock().fail(node);
                        attempts.push((node, e.0));
                    }
                }
            }
        });
    }
    let mut holders = vec![None; layout.pieces.len()];
    while let Some(joined) = tasks.join_next().await {
        let (index, node) =
            joined.map_err(|e| ClientError::io("uploading")(std::io::Error::other(e)))??;
        holders[index] = Some(node);
    }
    for (index, cid) in layout.pieces.iter().enumerate() {
        if let Some(holder) = hooks.skip.get(cid) {
            holders[index] = Some(*holder);
        }
    }
    let shares = placement.lock().shares_nodes();
    let placed: Vec<PeerId> = holders.iter().flatten().copied().collect();
    let survives = losses_survived(&placed, k);
    if hooks.refuse_degraded && survives < m {
        let nodes: std::collections::HashSet<&PeerId> = placed.iter().collect();
        return Err(ClientError::Degraded {
            nodes: nodes.len(),
            pieces: pieces.len(),
            survives,
            m,
        });
    }
    Ok((holders, shares))
}

/// `pieces` spread as evenly as they go over `nodes` nodes (node indices, one per piece).
fn spread(nodes: usize, pieces: usize) -> Vec<usize> {
    (0..pieces).map(|i| i % nodes.max(1)).collect()
}

/// The subnet each of `peers` is connected from, where this process has a direct connection
/// to it (none otherwise, or when the network is gone).
pub async fn subnets(net: &tessera_net::Client, peers: &[PeerId]) -> Vec<Option<Subnet>> {
    let ips = net.peer_ips(peers.to_vec()).await.unwrap_or_default();
    (0..peers.len())
        .map(|i| ips.get(i).copied().flatten().map(Subnet::of))
        .collect()
}

/// Those of `candidates` this process reaches over a direct connection (dialled, or
/// hole-punched from a relayed one), in their order. A node reached only through a relay
/// could take a piece but not serve it: a relay carries a hole punch's setup and small
/// requests, not pieces (`tessera_net::RelayBudget`). It is left out, and said so.
pub async fn directly_reachable(net: &tessera_net::Client, candidates: Vec<PeerId>) -> Vec<PeerId> {
    let Ok(paths) = net.paths(candidates.clone()).await else {
        return candidates;
    };
    let relayed: Vec<&PeerId> = candidates
        .iter()
        .zip(&paths)
        .filter(|(_, p)| **p == PeerPath::Relayed)
        .map(|(c, _)| c)
        .collect();
    if !relayed.is_empty() {
        warn!(
            nodes = ?relayed,
            "left out of placement: reachable only through a relay (no hole punch got through)"
        );
    }
    candidates
        .iter()
        .zip(paths)
        .filter(|(_, p)| *p == PeerPath::Direct)
        .map(|(c, _)| *c)
        .collect()
}

/// Placement over `candidates` in preference order, each with the subnet its connection
/// runs to.
pub async fn placement_over(
    net: &tessera_net::Client,
    candidates: Vec<PeerId>,
) -> Placement<PeerId> {
    let subnets = subnets(net, &candidates).await;
    Placement::with_subnets(candidates.into_iter().zip(subnets))
}

/// Stores a small block (a layout, a manifest) on up to `copies` distinct nodes, the ones
/// closest to its CID first. Returns the nodes that hold it: fewer than `copies` only when the
/// network has no more working nodes; an error when none took it.
pub async fn store_block(
    session: &Session,
    cid: Cid,
    block: &[u8],
    copies: usize,
) -> Result<Vec<PeerId>, ClientError> {
    let candidates = session.net().closest_peers(cid.to_bytes()).await?;
    let candidates = directly_reachable(session.net(), candidates).await;
    if candidates.is_empty() {
        return Err(ClientError::NoNodes);
    }
    let copies = copies.clamp(1, candidates.len());
    let mut placement = placement_over(session.net(), candidates).await;
    let mut holders = Vec::with_capacity(copies);
    let mut attempts = Vec::new();
    while holders.len() < copies {
        // Each round tries as many distinct nodes at once as copies are still missing.
        let round: Vec<PeerId> = (0..copies - holders.len())
            .map_while(|_| placement.assign())
            .filter(|node| !holders.contains(node))
            .collect();
        if round.is_empty() {
            break;
        }
        let mut tasks = JoinSet::new();
        for node in round {
            let (net, block, timeouts) =
                (session.net().clone(), block.to_vec(), session.timeouts());
            tasks.spawn(async move {
                let size = block.len() as u64;
                let result = upload(&net, node, cid, size, Source::Bytes(&block), timeouts).await;
                (node, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((node, Ok(()))) => holders.push(node),
                Ok((node, Err(e))) => {
                    placement.fail(node);
                    attempts.push((node, e.0));
                }
                Err(e) => return Err(ClientError::io("uploading")(std::io::Error::other(e))),
            }
        }
    }
    if holders.is_empty() {
        return Err(ClientError::Unplaced { index: 0, attempts });
    }
    Ok(holders)
}
