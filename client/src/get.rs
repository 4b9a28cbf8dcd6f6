//! Reading a shard back: fetch the layout block, then the pieces, and give the output its name
//! only when its bytes hash to the shard's CID.
//!
//! ```text
//! all k data pieces ──▶ each verified range written where it lies in the shard (one pass)
//!   a data piece lost ──▶ pieces spooled until k are whole (data first, then parity for
//!                         each that fails) ─▶ decoded into the output
//! ```

use std::{
    fs::File,
    io::{BufWriter, Seek as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use tempfile::NamedTempFile;
use tessera_formats::{
    ShardLayout,
    address::{DAG_CBOR, VerifyError, verify_reader},
    erasure::{DecodeError, Pieces, decode_with},
    layout::{LayoutError, MAX_LAYOUT_BYTES},
};
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::{
    error::{ClientError, attempts_text},
    fetch::{Placed, fetch_block, fetch_piece_found, new_piece_file},
    session::Session,
};

/// How a shard is read.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// Ranges of one piece in flight at once.
    pub ranges_per_piece: usize,
    /// Sync the output to disk before giving it its name. A cache that hashes what it finds
    /// after a restart does not need it.
    pub durable: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self {
            ranges_per_piece: 4,
            durable: true,
        }
    }
}

/// What a get did.
#[derive(Debug, Clone)]
pub struct GetReport {
    /// The shard's layout.
    pub layout: ShardLayout,
    /// The pieces the output was decoded from.
    pub used: Vec<usize>,
    /// Pieces that could not be fetched, and why.
    pub failed: Vec<(usize, String)>,
    /// Whether parity pieces stood in for lost data pieces.
    pub reconstructed: bool,
}

/// Fetches the shard named by the layout CID `layout_cid` into a new file at `out`.
pub async fn get_file(
    session: &Session,
    layout_cid: Cid,
    out: &Path,
    options: &GetOptions,
) -> Result<GetReport, ClientError> {
    if layout_cid.codec() != DAG_CBOR {
        return Err(ClientError::NotALayout {
            cid: Box::new(layout_cid),
        });
    }
    if out.exists() {
        return Err(ClientError::OutputExists(out.to_path_buf()));
    }
    let block = fetch_block(session, layout_cid, MAX_LAYOUT_BYTES as u64).await?;
    let layout = ShardLayout::from_block(&block).map_err(|source| ClientError::Layout {
        cid: Box::new(layout_cid),
        source,
    })?;
    info!(content = %layout.content, size = layout.size, k = layout.erasure.k, m = layout.erasure.m, "layout fetched");
    fetch_shard(session, &layout, out, options).await
}

/// Fetches the shard described by `layout` into a new file at `out`.
pub async fn fetch_shard(
    session: &Session,
    layout: &ShardLayout,
    out: &Path,
    options: &GetOptions,
) -> Result<GetReport, ClientError> {
    fetch_shard_with(session, layout, out, options, &[]).await
}

/// Like [`fetch_shard`], with some pieces at hand already (`(index, file)`: a storage node's
/// own pieces): those are used first and not fetched. They are not hashed on their own;
/// the decoded shard is hashed against its CID, so a bad one fails the whole.
pub async fn fetch_shard_with(
    session: &Session,
    layout: &ShardLayout,
    out: &Path,
    options: &GetOptions,
    have: &[(usize, PathBuf)],
) -> Result<GetReport, ClientError> {
    layout.validate().map_err(|source| ClientError::Layout {
        cid: Box::new(layout.content),
        source,
    })?;
    let mut failed = Vec::new();
    if have.is_empty() {
        match fetch_placed(session, layout, out, options).await? {
            Placement::Done => {
                return Ok(GetReport {
                    layout: layout.clone(),
                    used: (0..layout.erasure.data()).collect(),
                    failed,
                    reconstructed: false,
                });
            }
            // The spooled read below starts again without the piece that was lost.
            Placement::Lost(lost) => failed.push(lost),
        }
    }
    let dir = dir_of(out);
    // Pieces are spooled beside the output, on the same disk, never in memory.
    let spool = tempfile::Builder::new()
        .prefix(".tessera-get-")
        .tempdir_in(dir)
        .map_err(ClientError::io(format!(
            "creating a spool directory in {}",
            dir.display()
        )))?;

    let (k, total) = (layout.erasure.data(), layout.erasure.total());
    let size = layout.piece_len();
    let mut tasks = JoinSet::new();
    let spawn = |tasks: &mut JoinSet<_>, index: usize| {
        let (session, cid) = (session.clone_handle(), layout.pieces[index]);
        let path = spool.path().join(format!("piece-{index}"));
        let in_flight = options.ranges_per_piece;
        tasks.spawn(async move {
            debug!(index, "fetching piece");
            let file = new_piece_file(&path, size).map_err(|e| (index, e))?;
            fetch_piece_found(&session, cid, size, Arc::new(file), in_flight)
                .await
                .map_err(|attempts| (index, attempts_text(&attempts)))?;
            Ok::<_, (usize, String)>((index, path))
        })
    };
    let mut fetched: Vec<(usize, PathBuf)> = Vec::with_capacity(k);
    for (index, path) in have {
        if *index < total && fetched.len() < k && fetched.iter().all(|(i, _)| i != index) {
            fetched.push((*index, path.clone()));
        }
    }
    // Data pieces first, then parity, skipping those at hand.
    let at_hand: Vec<usize> = fetched.iter().map(|(i, _)| *i).collect();
    let lost: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
    let mut order = (0..total).filter(|i| !at_hand.contains(i) && !lost.contains(i));
    for index in order.by_ref().take(k - fetched.len()) {
        spawn(&mut tasks, index);
    }
    while fetched.len() < k
        && let Some(joined) = tasks.join_next().await
    {
        match joined {
            Ok(Ok(piece)) => {
                fetched.push(piece);
                if fetched.len() == k {
                    break;
                }
            }
            Ok(Err((index, why))) => {
                debug!(index, %why, "piece lost; fetching another instead");
                failed.push((index, why));
                if let Some(next) = order.next() {
                    spawn(&mut tasks, next);
                }
            }
            Err(e) => return Err(ClientError::io("fetching")(std::io::Error::other(e))),
        }
    }
    tasks.abort_all();
    if fetched.len() < k {
        failed.sort_unstable();
        return Err(ClientError::NotEnoughPieces {
            needed: k,
            fetched: fetched.len(),
            failures: failed,
        });
    }

    let layout_owned = layout.clone();
    let out_path = out.to_path_buf();
    let durable = options.durable;
    let report = tokio::task::spawn_blocking(move || {
        decode_into(&layout_owned, &fetched, &out_path, durable)
    })
    .await
    .map_err(|e| ClientError::io("decoding")(std::io::Error::other(e)))??;
    drop(spool);
    failed.sort_unstable();
    Ok(GetReport {
        layout: layout.clone(),
        used: report.used,
        failed,
        reconstructed: report.reconstructed,
    })
}

fn decode_into(
    layout: &ShardLayout,
    fetched: &[(usize, PathBuf)],
    out: &Path,
    durable: bool,
) -> Result<tessera_formats::erasure::DecodeReport, ClientError> {
    let mut sources: Vec<Option<File>> = (0..layout.erasure.total()).map(|_| None).collect();
    for (index, path) in fetched {
        let file =
            File::open(path).map_err(ClientError::io(format!("opening {}", path.display())))?;
        sources[*index] = Some(file);
    }
    let tmp = output_beside(out)?;
    // Every range was checked against its piece's CID as it arrived.
    let report = decode_with(
        layout,
        &mut sources,
        BufWriter::new(tmp.as_file()),
        Pieces::Checked,
    )?;
    persist(tmp, out, durable)?;
    Ok(report)
}

/// How a read of every data piece into place ended.
enum Placement {
    /// The output is in place, its bytes the shard's.
    Done,
    /// A data piece could not be fetched from any provider, and why.
    Lost((usize, String)),
}

/// Reads the shard from its `k` data pieces, each verified range written straight to its
/// place in a temporary file beside `out`, then hashes that file against the shard's CID and
/// gives it its name. Nothing is spooled and nothing decoded.
async fn fetch_placed(
    session: &Session,
    layout: &ShardLayout,
    out: &Path,
    options: &GetOptions,
) -> Result<Placement, ClientError> {
    let tmp = output_beside(out)?;
    let what = || format!("preparing {}", tmp.path().display());
    tmp.as_file()
        .set_len(layout.size)
        .map_err(ClientError::io(what()))?;
    let file = Arc::new(tmp.as_file().try_clone().map_err(ClientError::io(what()))?);
    let geometry = layout.erasure.geometry(layout.size);
    let piece_len = layout.piece_len();
    let mut tasks = JoinSet::new();
    for index in 0..layout.erasure.data() {
        let (session, cid) = (session.clone_handle(), layout.pieces[index]);
        let sink = Arc::new(Placed {
            file: file.clone(),
            geometry,
            index,
        });
        let in_flight = options.ranges_per_piece;
        tasks.spawn(async move {
            fetch_piece_found(&session, cid, piece_len, sink, in_flight)
                .await
                .map_err(|attempts| (index, attempts_text(&attempts)))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err((index, why))) => {
                debug!(index, %why, "data piece lost; reading through parity instead");
                return Ok(Placement::Lost((index, why)));
            }
            Err(e) => return Err(ClientError::io("fetching")(std::io::Error::other(e))),
        }
    }
    drop(file);
    let (content, out, durable) = (layout.content, out.to_path_buf(), options.durable);
    tokio::task::spawn_blocking(move || {
        let mut reader = tmp.as_file();
        let hashing = || format!("hashing {}", tmp.path().display());
        reader.rewind().map_err(ClientError::io(hashing()))?;
        verify_reader(&content, reader).map_err(|e| match e {
            // The ranges matched their pieces; a mismatch here is a layout whose content CID
            // does not belong to its pieces.
            VerifyError::Mismatch { expected, .. } => {
                ClientError::Decode(DecodeError::OutputMismatch { expected })
            }
            VerifyError::Io(e) => ClientError::io(hashing())(e),
            other => ClientError::Layout {
                cid: Box::new(content),
                source: LayoutError::Address(other.to_string()),
            },
        })?;
        persist(tmp, &out, durable)
    })
    .await
    .map_err(|e| ClientError::io("hashing")(std::io::Error::other(e)))??;
    Ok(Placement::Done)
}

/// A temporary file in the directory of `out`, on the same disk, to be renamed into place.
fn output_beside(out: &Path) -> Result<NamedTempFile, ClientError> {
    let dir = dir_of(out);
    tempfile::Builder::new()
        .prefix(".tessera-out-")
        .tempfile_in(dir)
        .map_err(ClientError::io(format!(
            "creating a file in {}",
            dir.display()
        )))
}

/// Gives the finished temporary file its name, synced first if `durable`.
fn persist(tmp: NamedTempFile, out: &Path, durable: bool) -> Result<(), ClientError> {
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(ClientError::io(format!("syncing {}", out.display())))?;
    }
    tmp.persist_noclobber(out)
        .map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => ClientError::OutputExists(out.to_path_buf()),
            _ => ClientError::Io {
                what: format!("naming {}", out.display()),
                source: e.error,
            },
        })?;
    Ok(())
}

/// The directory `out` goes in: spool and temporary output live there, on the same disk.
fn dir_of(out: &Path) -> &Path {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
