//! Reading a shard back: fetch the layout block, then the pieces, and give the output its name
//! only when its bytes hash to the shard's CID.
//!
//! ```text
//! k data pieces asked ──▶ each verified range written where it lies in the shard
//!   one slow to start (hedge delay) or failed ──▶ a parity piece asked beside it, spooled
//!   the first k whole ──▶ the rest cancelled; missing data blocks rebuilt in place from parity
//! a storage node's repair, with pieces at hand ──▶ pieces spooled until k ─▶ decoded
//! ```

use parking_lot::Mutex;
use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{BufWriter, Seek as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use cid::Cid;
use tempfile::NamedTempFile;
use tessera_formats::{
    ShardLayout,
    address::{DAG_CBOR, VerifyError, verify_reader},
    erasure::{DecodeError, Pieces, decode_with, fill_placed},
    layout::{LayoutError, MAX_LAYOUT_BYTES},
};
use tessera_net::{PeerId, PeerStatus};
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::{
    error::{ClientError, attempts_text},
    fetch::{Holders, Placed, Sink, fetch_block, fetch_piece_found, new_piece_file},
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
    if have.is_empty() {
        return fetch_hedged(session, layout, out, options).await;
    }
    let mut failed = Vec::new();
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
            fetch_piece_found(
                &session,
                cid,
                size,
                Arc::new(file),
                in_flight,
                Holders::Patient,
            )
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

/// Reads the shard with its `k` data pieces written straight to their places in a temporary
/// file beside `out`. A piece that has not delivered a range within the hedge delay (from the
/// start times seen) gets another piece, a parity piece first, read beside it; a piece that
/// fails gets one in its place. Whichever `k` pieces are whole first are used and the rest
/// cancelled: the data pieces among them are in place already, and the blocks of the others
/// are rebuilt there from the parity pieces (spooled beside `out`). The file gets its name once
/// its bytes hash to the shard's CID.
async fn fetch_hedged(
    session: &Session,
    layout: &ShardLayout,
    out: &Path,
    options: &GetOptions,
) -> Result<GetReport, ClientError> {
    let tmp = output_beside(out)?;
    let what = || format!("preparing {}", tmp.path().display());
    tmp.as_file()
        .set_len(layout.size)
        .map_err(ClientError::io(what()))?;
    let file = Arc::new(tmp.as_file().try_clone().map_err(ClientError::io(what()))?);
    let spool = tempfile::Builder::new()
        .prefix(".tessera-get-")
        .tempdir_in(dir_of(out))
        .map_err(ClientError::io(format!(
            "creating a spool directory beside {}",
            out.display()
        )))?;
    let (k, total) = (layout.erasure.data(), layout.erasure.total());
    let (geometry, piece_len) = (layout.erasure.geometry(layout.size), layout.piece_len());
    let spooled = |index: usize| spool.path().join(format!("piece-{index}"));

    // Each piece is asked first avoiding holders that failed lately or stopped answering;
    // one that fails so goes to the back of the queue, to be asked again patiently.
    let mut queue: VecDeque<(usize, Holders)> = (0..total).map(|i| (i, Holders::Avoid)).collect();
    let mut running: HashMap<usize, (Arc<Started>, Holders)> = HashMap::new();
    let (mut done, mut failed) = (Vec::new(), Vec::<(usize, String)>::new());
    let mut tasks = JoinSet::new();
    loop {
        // Enough pieces going that are not overdue: each overdue one is hedged by another.
        let delay = session.hedge_delay();
        let unreachable = waiting_on_unreachable(session, &running).await;
        let lively = running
            .iter()
            .filter(|(i, (p, _))| !p.overdue(delay) && !unreachable.contains(i))
            .count();
        for _ in lively..k.saturating_sub(done.len()) {
            let Some((index, holders)) = queue.pop_front() else {
                break;
            };
            let sink: Box<dyn Sink> =
                if index < k {
                    Box::new(Placed {
                        file: file.clone(),
                        geometry,
                        index,
                    })
                } else {
                    // A piece asked again (patiently, after a first try failed) starts afresh: a
                    // new file, whatever the first try left.
                    let path = spooled(index);
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(ClientError::io(format!("removing {}", path.display()))(e));
                        }
                        _ => {}
                    }
                    Box::new(new_piece_file(&path, piece_len).map_err(|e| {
                        ClientError::io("spooling a piece")(std::io::Error::other(e))
                    })?)
                };
            let started = Arc::new(Started::new());
            let sink = Arc::new(Watched {
                sink,
                started: started.clone(),
                session: session.clone_handle(),
            });
            let (session, cid, in_flight) = (
                session.clone_handle(),
                layout.pieces[index],
                options.ranges_per_piece,
            );
            debug!(index, ?holders, ?delay, shard = %layout.content, "reading piece");
            tasks.spawn(async move {
                let read = fetch_piece_found(&session, cid, piece_len, sink, in_flight, holders);
                (
                    index,
                    read.await.map_err(|attempts| attempts_text(&attempts)),
                )
            });
            running.insert(index, (started, holders));
        }
        if done.len() == k || running.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok((index, Ok(())))) => {
                    running.remove(&index);
                    done.push(index);
                }
                Some(Ok((index, Err(why)))) => {
                    let holders = running.remove(&index).map(|(_, h)| h);
                    debug!(index, %why, "piece not read; reading another");
                    if holders == Some(Holders::Avoid) {
                        queue.push_back((index, Holders::Patient));
                    }
                    failed.retain(|(i, _)| *i != index);
                    failed.push((index, why));
                }
                Some(Err(e)) => return Err(ClientError::io("fetching")(std::io::Error::other(e))),
                None => break,
            },
            () = tokio::time::sleep((delay / 4).min(TICK)) => {}
        }
    }
    // Cancelled pieces write no more: a data piece's late range holds the bytes its place
    // gets anyway.
    tasks.shutdown().await;
    failed.retain(|(i, _)| !done.contains(i));
    failed.sort_unstable();
    if done.len() < k {
        return Err(ClientError::NotEnoughPieces {
            needed: k,
            fetched: done.len(),
            failures: failed,
        });
    }
    done.sort_unstable();
    drop(file);
    let placed: Vec<bool> = (0..k).map(|i| done.contains(&i)).collect();
    let parity: Vec<Option<PathBuf>> = (0..total)
        .map(|i| (i >= k && done.contains(&i)).then(|| spooled(i)))
        .collect();
    let reconstructed = placed.contains(&false);
    let (params, size, content) = (layout.erasure, layout.size, layout.content);
    let (out_path, durable) = (out.to_path_buf(), options.durable);
    tokio::task::spawn_blocking(move || {
        let mut written = tmp.as_file();
        if reconstructed {
            let mut sources = Vec::with_capacity(parity.len());
            for path in parity {
                sources.push(match path {
                    Some(p) => Some(
                        File::open(&p)
                            .map_err(ClientError::io(format!("opening {}", p.display())))?,
                    ),
                    None => None,
                });
            }
            fill_placed(params, size, &mut written, &placed, &mut sources)?;
        }
        let hashing = || format!("hashing {}", tmp.path().display());
        written.rewind().map_err(ClientError::io(hashing()))?;
        verify_reader(&content, written).map_err(|e| match e {
            // Every range matched its piece; a mismatch here is a layout whose content CID
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
        persist(tmp, &out_path, durable)
    })
    .await
    .map_err(|e| ClientError::io("hashing")(std::io::Error::other(e)))??;
    drop(spool);
    Ok(GetReport {
        layout: layout.clone(),
        used: done,
        failed,
        reconstructed,
    })
}

/// How often a reader looks at its pieces while none ends.
const TICK: Duration = Duration::from_millis(50);

/// The running pieces that have had no range yet and wait on a holder the network cannot
/// reach (dialled far longer than dials take): overdue now, whatever the hedge delay says.
async fn waiting_on_unreachable(
    session: &Session,
    running: &HashMap<usize, (Arc<Started>, Holders)>,
) -> Vec<usize> {
    let waiting: Vec<(usize, PeerId)> = running
        .iter()
        .filter_map(|(index, (started, _))| Some((*index, started.waiting_on()?)))
        .collect();
    if waiting.is_empty() {
        return Vec::new();
    }
    let peers = waiting.iter().map(|(_, peer)| *peer).collect();
    let Ok(statuses) = session.net().peer_status(peers).await else {
        return Vec::new();
    };
    waiting
        .into_iter()
        .zip(statuses)
        .filter(|(_, status)| matches!(status, PeerStatus::Unreachable(_)))
        .map(|((index, _), _)| index)
        .collect()
}

/// When a piece was asked for, whom it waits on, and when it last delivered a range.
#[derive(Debug)]
struct Started {
    at: Instant,
    asking: Mutex<Option<PeerId>>,
    last: Mutex<Option<Instant>>,
}

impl Started {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            asking: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// No range for longer than `delay`, since the piece was asked for or since its last one.
    fn overdue(&self, delay: Duration) -> bool {
        self.last.lock().unwrap_or(self.at).elapsed() > delay
    }

    /// The holder asked, while no range has come.
    fn waiting_on(&self) -> Option<PeerId> {
        if self.last.lock().is_some() {
            return None;
        }
        *self.asking.lock()
    }
}

/// A piece's sink that notes when each range arrives, and tells the session how long the
/// first took.
struct Watched {
    sink: Box<dyn Sink>,
    started: Arc<Started>,
    session: Session,
}

impl Sink for Watched {
    fn put(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.sink.put(offset, bytes)?;
        let now = Instant::now();
        let mut last = self.started.last.lock();
        if last.is_none() {
            self.session.observe_start(now - self.started.at);
        }
        *last = Some(now);
        Ok(())
    }

    fn asking(&self, peer: PeerId) {
        *self.started.asking.lock() = Some(peer);
    }
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
