//! Measures what a holder gains by outsourcing its storage: it keeps nothing, and when a
//! challenge comes it fetches from a node that does keep the piece and answers from that.
//! Against the honest holder's answer to the same kind of challenge, on a loopback network
//! of storage nodes in one process:
//!
//! - honest: a challenge answered by the node that stores the piece;
//! - whole piece: the outsourcer fetches the piece (verified 4 MiB ranges), computes its
//!   proof tree and proves: a proof the auditor accepts;
//! - sampled ranges: the outsourcer fetches only the sampled chunks (1 KiB ranges, verified,
//!   32 in flight), the least any answer needs (assembling the proof from them costs no
//!   more than a local proof).
//!
//! ```text
//! cargo run --release -p tessera-examples --example outsource -- [--piece-mib 64] [--runs 5]
//! ```
//! Printed: each time (median of the runs), the audit deadline, and the uplink an outsourcer
//! needs to fetch the whole piece within the deadline.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use clap::Parser;
use tessera_client::{PutOptions, Session, fetch::fetch_piece, put_file};
use tessera_examples::{Figure, record};
use tessera_formats::erasure::ErasureParams;
use tessera_proofs::{ByteRange, Challenge, Outboard, prove, verify};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig};
use tessera_storage_protocol::{
    ChallengeProtocol, ChallengeResponse, PieceProtocol, PieceRequest, PieceResponse,
};

/// What outsourcing a piece's storage gains against the audit deadline.
#[derive(Debug, Parser)]
struct Args {
    /// Size of the piece challenged, in MiB.
    #[arg(long, default_value_t = 64)]
    piece_mib: u64,
    /// Challenges per strategy.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 4 << 30).await?;
    let session = Session::join(network.bootstrap()).await?;
    // One data piece and one parity piece of the whole size: the piece is the file.
    let file = dir.path().join("file");
    let size = args.piece_mib << 20;
    std::fs::write(
        &file,
        (0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>(),
    )?;
    let put = put_file(
        &session,
        &file,
        &PutOptions {
            params: ErasureParams::new(1, 1, 1 << 20)?,
            ..PutOptions::default()
        },
    )
    .await?;
    let (piece, holder, piece_len) = (put.layout.pieces[0], put.holders[0], put.layout.piece_len());
    let samples = tessera_proofs::DEFAULT_SAMPLES;
    let challenge = || Challenge {
        piece,
        nonce: rand::random(),
        samples,
    };

    let (mut honest, mut whole, mut sampled) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        // Honest: the holder answers from its disk.
        let c = challenge();
        let started = Instant::now();
        let answer = session
            .net()
            .request::<ChallengeProtocol>(holder, c.clone())
            .await?;
        honest.push(started.elapsed());
        let ChallengeResponse::Proof(proof) = answer else {
            anyhow::bail!("the holder did not prove");
        };
        verify(&c, &proof)?;

        // Whole piece: fetched, its tree computed, proved.
        let c = challenge();
        let out = dir.path().join(format!("outsourced-{run}"));
        let started = Instant::now();
        fetch_piece(&session, piece, piece_len, vec![holder], &out, 4)
            .await
            .map_err(|e| anyhow::anyhow!("fetching: {e:?}"))?;
        let data = std::fs::File::open(&out)?;
        let (outboard, _) = Outboard::compute(&data)?;
        let proof = prove(&c, &data, &outboard)?;
        whole.push(started.elapsed());
        verify(&c, &proof)?;
        std::fs::remove_file(&out)?;

        // Sampled ranges: only the chunks the challenge names.
        let c = challenge();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let chunks = c.chunk_indices(piece_len);
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        for index in chunks {
            let (net, gate) = (session.net().clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let range = ByteRange {
                    start: index * 1024,
                    len: 1024.min(piece_len - index * 1024),
                };
                net.request::<PieceProtocol>(holder, PieceRequest::Get { piece, range })
                    .await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let PieceResponse::Range { .. } = joined?? else {
                anyhow::bail!("a range was refused");
            };
        }
        sampled.push(started.elapsed());
    }

    let deadline = AuditConfig::default().timeout;
    let (honest, whole, sampled) = (median(honest), median(whole), median(sampled));
    let mbit_needed = piece_len as f64 * 8.0 / 1e6 / deadline.as_secs_f64();
    println!(
        "piece {} MiB, {samples} samples, median of {} runs; audit deadline {} s",
        args.piece_mib,
        args.runs,
        deadline.as_secs()
    );
    println!(
        "honest holder answers:                {:>9.3} s",
        honest.as_secs_f64()
    );
    println!(
        "outsourcer, whole piece fetched:      {:>9.3} s",
        whole.as_secs_f64()
    );
    println!(
        "outsourcer, sampled chunks fetched:   {:>9.3} s",
        sampled.as_secs_f64()
    );
    println!(
        "the whole piece within the deadline needs a link of {mbit_needed:.1} Mbit/s to the node that keeps it"
    );
    record(&[
        Figure {
            section: "audits",
            name: format!(
                "outsourced answer: whole {} MiB piece fetched, then proved",
                args.piece_mib
            ),
            value: whole.as_secs_f64(),
            unit: "s",
            baseline: "the honest holder's answer",
            baseline_value: honest.as_secs_f64(),
        },
        Figure {
            section: "audits",
            name: "outsourced answer: only the sampled chunks fetched".into(),
            value: sampled.as_secs_f64(),
            unit: "s",
            baseline: "the honest holder's answer",
            baseline_value: honest.as_secs_f64(),
        },
    ])?;
    network.shutdown().await;
    Ok(())
}
