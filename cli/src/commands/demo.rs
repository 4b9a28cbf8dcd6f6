//! `tessera demo`: what Tessera does, shown end to end on this machine.
//!
//! It starts a small network of real storage nodes on 127.0.0.1 (libp2p, each node with its own
//! RocksDB and piece directory, in a temporary directory), stores a file in it erasure-coded
//! across the nodes, audits the nodes with storage proofs, catches a piece altered on disk, and
//! reads the file back with nodes stopped.

use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};
use bytesize::ByteSize;
use tessera_client::{GetOptions, PutOptions, Session, audit, get_file, put_file};
use tessera_formats::{
    Cid,
    address::{HashFn, hash_reader},
    erasure::ErasureParams,
};
use tessera_net::PeerId;
use tessera_proofs::{Challenge, DEFAULT_SAMPLES, pass_probability};
use tessera_storage_node::LocalNetwork;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the sample dataset file.
    #[arg(long, default_value = "24MiB")]
    size: ByteSize,
    /// Storage nodes to start; at least k + m.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
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

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let params = ErasureParams::new(args.k, args.m, 256 * 1024).context("erasure parameters")?;
    ensure!(
        args.nodes >= params.total(),
        "the demo needs at least k + m = {} nodes, one per piece; --nodes is {}",
        params.total(),
        args.nodes
    );
    let dir = tempfile::Builder::new()
        .prefix("tessera-demo-")
        .tempdir()
        .context("creating a working directory")?;
    let work = dir.path();
    println!("Tessera demo, working in {}", work.display());

    // 1. A network of storage nodes.
    let started = Instant::now();
    let capacity = args.size.as_u64().max(1 << 20) * 2;
    let mut network = LocalNetwork::start(&work.join("nodes"), args.nodes, capacity)
        .await
        .context("starting the storage nodes")?;
    println!(
        "\n[1/6] {} storage nodes on 127.0.0.1 (libp2p TCP + Noise + Yamux, Kademlia DHT, RocksDB \
         each), started in {:.0?}",
        args.nodes,
        started.elapsed()
    );
    for (i, peer) in network.peers().iter().enumerate() {
        println!("  node {i}  {peer}");
    }
    println!(
        "  everyone joined through node 0: {}",
        network.bootstrap()[0]
    );

    // 2. A dataset file and its content address.
    let original = work.join("shard-0000.bin");
    write_sample(&original, args.size.as_u64())?;
    let (cid, len) = hash_reader(File::open(&original)?, HashFn::Blake3)?;
    println!(
        "\n[2/6] a sample file: {} ({}), content address {cid}",
        original.display(),
        ByteSize::b(len)
    );

    // 3. Store it: erasure-coded, one piece per node.
    let session = Session::join(network.bootstrap()).await?;
    let started = Instant::now();
    let options = PutOptions {
        params,
        ..PutOptions::default()
    };
    let put = put_file(&session, &original, &options).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "\n[3/6] tessera put: {} data + {} parity pieces of {}, each on its own node, in \
         {seconds:.2} s ({:.0} MB/s)",
        params.k,
        params.m,
        ByteSize::b(put.layout.piece_len()),
        len as f64 / 1e6 / seconds.max(1e-9),
    );
    for (i, (piece, holder)) in put.layout.pieces.iter().zip(&put.holders).enumerate() {
        let kind = if i < params.data() {
            "data  "
        } else {
            "parity"
        };
        println!(
            "  piece {i} {kind} {piece} -> node {}",
            node_of(&network, holder)
        );
    }
    println!(
        "  layout CID (names the file and how it is stored) {}\n  layout block kept on nodes {:?}",
        put.layout_cid,
        put.layout_holders
            .iter()
            .map(|p| node_of(&network, p))
            .collect::<Vec<_>>()
    );

    // 4. Audit: every holder proves it still has its piece, checked from the CID alone.
    let started = Instant::now();
    let samples = DEFAULT_SAMPLES;
    for (piece, holder) in put.layout.pieces.iter().zip(&put.holders) {
        audit(&session, *holder, &Challenge::random(*piece)).await?;
    }
    println!(
        "\n[4/6] audit: {} challenges with fresh nonces, {samples} sampled chunks each, all \
         proofs verified in {:.0?}\n  (a node that lost 1% of a piece passes one challenge \
         with probability {:.5})",
        put.holders.len(),
        started.elapsed(),
        pass_probability(0.01, samples),
    );

    // 5. Part of piece 0 rots on its node's disk.
    let victim = network
        .index_of(&put.holders[0])
        .context("holder of piece 0")?;
    let node = network.node(victim).context("node holding piece 0")?;
    let piece0 = put.layout.pieces[0];
    let rotten = (put.layout.piece_len() / 4).max(1);
    corrupt_range(
        &node.store.piece_path(&piece0),
        put.layout.piece_len() / 2,
        rotten,
    )?;
    let verdict = match audit(&session, put.holders[0], &Challenge::random(piece0)).await {
        Ok(_) => bail!("a proof from altered bytes verified"),
        Err(e) => e,
    };
    let first = work.join("read-1.bin");
    let got = get_file(&session, put.layout_cid, &first, &GetOptions::default()).await?;
    same_file(&first, cid)?;
    ensure!(
        got.failed.iter().any(|(i, _)| *i == 0),
        "the read did not notice piece 0"
    );
    let scrubbed: Vec<String> = node.store.scrub()?.iter().map(Cid::to_string).collect();
    println!(
        "\n[5/6] {} in the middle of piece 0 rot on node {victim}'s disk\n  its next proof fails: \
         {verdict}\n  tessera get: the bad range was caught against the piece CID, pieces {:?} \
         used instead; {} is identical\n  the node's own check drops the piece: {scrubbed:?}",
        ByteSize::b(rotten),
        got.used,
        first.display(),
    );

    // 6. Two nodes go down: the one with the bad piece, and the holder of piece 1.
    let second = network
        .index_of(&put.holders[1])
        .context("holder of piece 1")?;
    network.stop(victim).await;
    network.stop(second).await;
    drop(session);
    let reader = Session::join(network.bootstrap()).await?;
    let out = work.join("read-2.bin");
    let started = Instant::now();
    let got = get_file(&reader, put.layout_cid, &out, &GetOptions::default()).await?;
    let seconds = started.elapsed().as_secs_f64();
    same_file(&out, cid)?;
    println!(
        "\n[6/6] nodes {victim} and {second} stopped; {} of {} running\n  tessera get rebuilt \
         the file from pieces {:?} in {seconds:.2} s ({:.0} MB/s): {} is identical",
        network.running(),
        args.nodes,
        got.used,
        len as f64 / 1e6 / seconds.max(1e-9),
        out.display(),
    );
    network.shutdown().await;

    println!(
        "\nDone. Next, try a network of your own:\n  \
         tessera storage-node --data-dir DIR --http 127.0.0.1:8080   (then open /status)\n  \
         tessera put FILE --bootstrap ADDR      prints the CID\n  \
         tessera get CID -o FILE --bootstrap ADDR"
    );
    if args.keep {
        let kept = dir.keep();
        println!("Kept the working directory: {}", kept.display());
    }
    Ok(())
}

fn node_of(network: &LocalNetwork, peer: &PeerId) -> String {
    network
        .index_of(peer)
        .map_or_else(|| peer.to_string(), |i| i.to_string())
}

fn same_file(path: &Path, expected: Cid) -> anyhow::Result<()> {
    let (got, _) = hash_reader(File::open(path)?, HashFn::Blake3)?;
    ensure!(
        got == expected,
        "{} has CID {got}, expected {expected}",
        path.display()
    );
    Ok(())
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

/// Flips every bit of `len` bytes at `offset`.
fn corrupt_range(path: &Path, offset: u64, len: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut bytes = vec![0u8; usize::try_from(len)?];
    file.read_exact_at(&mut bytes, offset)?;
    for b in &mut bytes {
        *b = !*b;
    }
    file.write_all_at(&bytes, offset)?;
    Ok(())
}
