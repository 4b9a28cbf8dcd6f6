//! `tessera demo`: what Tessera does, shown end to end on this machine.
//!
//! Today that is the storage core every node builds on: a dataset file gets a content address,
//! is erasure-coded into pieces, survives the loss of pieces, and a holder of a piece proves it
//! still has it to a verifier that knows nothing but the piece's CID.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail, ensure};
use bytesize::ByteSize;
use tessera_formats::{
    Manifest,
    address::{HashFn, hash_reader},
    erasure::{self, ErasureParams},
    manifest::{MANIFEST_VERSION, ShardEntry},
};
use tessera_proofs::{Challenge, Outboard, pass_probability, prove, verify};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the sample dataset file.
    #[arg(long, default_value = "24MiB")]
    size: ByteSize,
    /// Data pieces per shard.
    #[arg(long, default_value_t = 4)]
    k: u16,
    /// Parity pieces per shard.
    #[arg(long, default_value_t = 2)]
    m: u16,
    /// Keep the working directory instead of deleting it.
    #[arg(long)]
    keep: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let params = ErasureParams::new(args.k, args.m, 256 * 1024).context("erasure parameters")?;
    let dir = tempfile::Builder::new()
        .prefix("tessera-demo-")
        .tempdir()
        .context("creating a working directory")?;
    let work = dir.path();
    println!("Tessera demo, working in {}", work.display());

    // 1. A dataset file and its content address.
    let original = work.join("shard-0000.bin");
    write_sample(&original, args.size.as_u64())?;
    let started = Instant::now();
    let (cid, len) = hash_reader(File::open(&original)?, HashFn::Blake3)?;
    println!(
        "\n[1/5] content address\n  {} ({}) -> {cid}\n  BLAKE3 over 1 KiB chunks, hashed in {:.0?}",
        original.display(),
        ByteSize::b(len),
        started.elapsed()
    );

    // 2. Erasure-code it into pieces, each with its own CID.
    let pieces_dir = work.join("pieces");
    fs::create_dir(&pieces_dir)?;
    let started = Instant::now();
    let layout = {
        let mut sinks = (0..params.total())
            .map(|i| File::create(piece_path(&pieces_dir, i)).map(BufWriter::new))
            .collect::<Result<Vec<_>, _>>()?;
        erasure::encode(
            params,
            len,
            BufReader::new(File::open(&original)?),
            &mut sinks,
        )?
    };
    let (layout_cid, _) = layout.to_block()?;
    println!(
        "\n[2/5] erasure coding: {} data + {} parity pieces of {} each, in {:.0?}",
        params.k,
        params.m,
        ByteSize::b(layout.piece_len()),
        started.elapsed()
    );
    for (i, piece) in layout.pieces.iter().enumerate() {
        let kind = if i < params.data() {
            "data  "
        } else {
            "parity"
        };
        println!("  piece {i} {kind} {piece}");
    }
    println!("  layout (file + how it is stored) {layout_cid}");

    // 3. Lose m pieces, one of them by silent corruption, and rebuild the exact bytes.
    let lost = piece_path(&pieces_dir, 0);
    fs::remove_file(&lost)?;
    let mut damaged_idx = Vec::from([0usize]);
    for i in 1..usize::from(params.m) {
        corrupt_byte(&piece_path(&pieces_dir, i), 1000)?;
        damaged_idx.push(i);
    }
    let rebuilt = work.join("rebuilt.bin");
    let started = Instant::now();
    let report = {
        let mut sources = (0..params.total())
            .map(|i| {
                File::open(piece_path(&pieces_dir, i))
                    .ok()
                    .map(BufReader::new)
            })
            .collect::<Vec<_>>();
        erasure::decode(
            &layout,
            &mut sources,
            BufWriter::new(File::create(&rebuilt)?),
        )?
    };
    let (rebuilt_cid, _) = hash_reader(File::open(&rebuilt)?, HashFn::Blake3)?;
    ensure!(
        rebuilt_cid == cid,
        "rebuilt file has CID {rebuilt_cid}, expected {cid}"
    );
    println!(
        "\n[3/5] losing pieces {damaged_idx:?}: piece 0 deleted, the others corrupted on disk\n  \
         missing {:?}, caught by CID {:?}; rebuilt from {:?} in {:.0?}\n  rebuilt file's CID \
         {rebuilt_cid}: identical",
        report.missing,
        report.corrupt.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        report.used,
        started.elapsed(),
    );

    // 4. Proof of storage against the piece CID alone.
    let held = usize::from(params.m);
    let piece_file = File::open(piece_path(&pieces_dir, held))?;
    let (outboard, root) = Outboard::compute(&piece_file)?;
    ensure!(
        tessera_formats::address::blake3_digest(&layout.pieces[held]) == Some(*root.as_bytes()),
        "stored piece {held} does not match its CID"
    );
    let challenge = Challenge::random(layout.pieces[held]);
    let started = Instant::now();
    let proof = prove(&challenge, &piece_file, &outboard)?;
    let proved_in = started.elapsed();
    let started = Instant::now();
    let verified = verify(&challenge, &proof)?;
    println!(
        "\n[4/5] proof of storage for piece {held}\n  challenge: {} samples from a fresh nonce; \
         proof {} built in {proved_in:.0?}, verified from the CID alone in {:.0?}\n  \
         ({} chunks shown; a holder that lost 1% of the piece passes with probability {:.5})\n  \
         outboard kept beside the piece: {} ({:.2}% of the piece)",
        challenge.samples,
        ByteSize::b(proof.body.len() as u64),
        started.elapsed(),
        verified.chunks,
        pass_probability(0.01, challenge.samples),
        ByteSize::b(outboard.to_bytes().len() as u64),
        100.0 * outboard.to_bytes().len() as f64 / layout.piece_len() as f64,
    );
    drop(piece_file);
    let sampled = challenge.chunk_indices(layout.piece_len());
    corrupt_byte(&piece_path(&pieces_dir, held), sampled[0] * 1024)?;
    let cheat = prove(
        &challenge,
        &File::open(piece_path(&pieces_dir, held))?,
        &outboard,
    )?;
    match verify(&challenge, &cheat) {
        Ok(_) => bail!("a proof from altered bytes verified"),
        Err(e) => println!("  after one bit of the piece flips on disk, the proof fails: {e}"),
    }

    // 5. The dataset version that names it all.
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        schema: None,
        shards: vec![ShardEntry {
            name: "shard-0000.bin".into(),
            rows: 0,
            row_groups: Vec::new(),
            layout,
        }],
        parent: None,
        created_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        metadata: BTreeMap::from([("source".to_string(), "tessera demo".to_string())]),
    };
    let (manifest_cid, manifest_bytes) = manifest.to_block()?;
    println!(
        "\n[5/5] dataset manifest (DAG-CBOR, {}): {manifest_cid}",
        ByteSize::b(manifest_bytes.len() as u64)
    );

    println!(
        "\nDone. Next, try:\n  tessera cid FILE\n  cargo run --release --example erasure -- FILE\n  \
         tessera storage-node --data-dir DIR --http 127.0.0.1:8080   (then open /status)"
    );
    if args.keep {
        let kept = dir.keep();
        println!("Kept the working directory: {}", kept.display());
    }
    Ok(())
}

fn piece_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("piece-{index:03}"))
}

/// Deterministic, incompressible-looking sample bytes (BLAKE3 in XOF mode).
fn write_sample(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut xof = blake3_xof();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

fn blake3_xof() -> blake3::OutputReader {
    blake3::Hasher::new_derive_key("tessera demo sample dataset").finalize_xof()
}

fn corrupt_byte(path: &Path, offset: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset)?;
    b[0] ^= 0x01;
    file.write_all_at(&b, offset)?;
    Ok(())
}
