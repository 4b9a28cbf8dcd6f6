//! Rebuilding lost pieces of a shard.
//!
//! ```text
//! any k intact pieces (data first; every range verified against its piece CID)
//!   ─▶ decode, hashed against the shard's content CID
//!   ─▶ encode again with the layout's k, m and stripe size: encoding is deterministic, so
//!      every piece comes out with the CID the layout names (checked, piece by piece)
//!   ─▶ each missing piece to a node that holds no piece of the shard (`exclude`), in a
//!      subnet holding none while there is one
//! ```
//!
//! Decoding the whole shard and encoding it again costs CPU (hashing every piece) but no
//! network beyond the `k` pieces any Reed-Solomon repair must read, and it checks the whole
//! shard against its CID before anything is stored.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use tessera_formats::{ShardLayout, layout::LayoutError};
use tessera_net::PeerId;
use tracing::{debug, info};

use crate::{
    error::ClientError,
    get::{GetOptions, fetch_shard_with},
    put::{encode_to_files, placement_over, subnets},
    session::Session,
    upload::{Source, upload},
};

/// What a rebuild did.
#[derive(Debug, Clone, Default)]
pub struct RebuildReport {
    /// Each rebuilt piece's index and its new holder.
    pub stored: Vec<(usize, PeerId)>,
    /// Piece bytes fetched to rebuild them (the pieces decoded from).
    pub fetched_bytes: u64,
    /// Piece bytes sent to new holders.
    pub sent_bytes: u64,
    /// Pieces rebuilt but stored on no node (every other node was tried, or holds a piece
    /// of the shard already), each kept as a file in the spool directory for the caller,
    /// who removes it: a storage node keeps it itself when it holds no piece of the shard.
    pub unplaced: Vec<(usize, PathBuf)>,
}

/// Rebuilds the pieces `missing` (indices into `layout.pieces`) and stores each on a node not
/// in `exclude`, spooling in a temporary directory under `spool`. Pieces in `have`
/// (`(index, file)`, the caller's own) are read from disk instead of the network.
pub async fn rebuild(
    session: &Session,
    layout: &ShardLayout,
    missing: &[usize],
    exclude: &HashSet<PeerId>,
    have: &[(usize, PathBuf)],
    spool: &Path,
) -> Result<RebuildReport, ClientError> {
    let total = layout.erasure.total();
    if let Some(&index) = missing.iter().find(|i| **i >= total) {
        return Err(ClientError::Layout {
            cid: Box::new(layout.content),
            source: LayoutError::NoSuchPiece { index, total },
        });
    }
    std::fs::create_dir_all(spool)
        .map_err(ClientError::io(format!("creating {}", spool.display())))?;
    let dir = tempfile::Builder::new()
        .prefix(".tessera-repair-")
        .tempdir_in(spool)
        .map_err(ClientError::io(format!(
            "creating a spool directory in {}",
            spool.display()
        )))?;
    let shard = dir.path().join("shard");
    let options = GetOptions {
        durable: false,
        ..GetOptions::default()
    };
    let got = fetch_shard_with(session, layout, &shard, &options, have).await?;
    let piece_len = layout.piece_len();
    let from_network = got
        .used
        .iter()
        .filter(|i| have.iter().all(|(h, _)| h != *i))
        .count();
    let mut report = RebuildReport {
        fetched_bytes: piece_len * from_network as u64,
        ..RebuildReport::default()
    };

    let (params, out) = (layout.erasure, dir.path().to_path_buf());
    let (again, paths): (ShardLayout, Vec<PathBuf>) =
        tokio::task::spawn_blocking(move || encode_to_files(&shard, &out, params))
            .await
            .map_err(|e| ClientError::io("encoding")(std::io::Error::other(e)))??;
    for &index in missing {
        if again.pieces[index] != layout.pieces[index] {
            return Err(ClientError::RebuiltMismatch {
                shard: Box::new(layout.content),
                index,
                got: Box::new(again.pieces[index]),
                want: Box::new(layout.pieces[index]),
            });
        }
    }

    let candidates: Vec<PeerId> = session
        .net()
        .closest_peers(layout.content.to_bytes())
        .await?
        .into_iter()
        .filter(|p| !exclude.contains(p) && *p != session.peer_id())
        .collect();
    let candidates = crate::put::directly_reachable(session.net(), candidates).await;
    debug!(candidates = candidates.len(), "placing rebuilt pieces");
    // Each candidate gets at most one piece, in a subnet holding none of the shard while
    // there is one, and one that fails gets no other.
    let mut placement = placement_over(session.net(), candidates).await;
    let holders: Vec<PeerId> = exclude.iter().copied().collect();
    for (holder, subnet) in holders.iter().zip(subnets(session.net(), &holders).await) {
        placement.held_at(*holder, subnet);
    }
    for &index in missing {
        let cid = layout.pieces[index];
        loop {
            let Some(node) = placement.assign_fresh() else {
                debug!(index, "no node without a piece of the shard is left");
                let kept = spool.join(format!("{cid}.rebuilt"));
                std::fs::rename(&paths[index], &kept)
                    .map_err(ClientError::io(format!("keeping {}", kept.display())))?;
                report.unplaced.push((index, kept));
                break;
            };
            match upload(
                session.net(),
                node,
                cid,
                piece_len,
                Source::File(&paths[index]),
                session.timeouts(),
            )
            .await
            {
                Ok(()) => {
                    info!(index, %node, %cid, "rebuilt piece stored");
                    report.stored.push((index, node));
                    report.sent_bytes += piece_len;
                    break;
                }
                Err(e) => {
                    debug!(index, %node, error = %e, "rebuilt piece not stored; trying another node");
                    placement.fail(node);
                }
            }
        }
    }
    Ok(report)
}
