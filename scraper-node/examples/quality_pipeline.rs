//! Runs the crawl's quality pipeline (`Quality::default()`: FineWeb's defaults, English at a
//! score of 0.65 or more) over the texts of a JSON-lines file (`{"id": ..., "text": ...}` a
//! line) on one thread, each text's language identified first as extraction does, and prints
//! `{"pages", "seconds", "kept", "dropped": {reason: count}}` as JSON.
//! `scripts/bench-filters` runs it beside datatrove on the same texts.
//!
//! ```sh
//! cargo run --release -p tessera-scraper-node --example quality_pipeline -- docs.jsonl
//! ```

use std::{collections::BTreeMap, io::Write as _, path::PathBuf, time::Instant};

use serde::Deserialize;
use tessera_scraper_node::quality::{MinHasher, Quality, identify};

#[derive(Deserialize)]
struct Doc {
    text: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: quality_pipeline FILE.jsonl")?
        .into();
    let docs: Vec<Doc> = std::fs::read_to_string(&path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let quality = Quality::default();
    let hasher = MinHasher::new(&quality.dedup);
    // A first pass warms the caches; the second is timed.
    let run = || {
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        let mut kept = 0u64;
        for doc in &docs {
            let (language, score) = identify(&doc.text);
            match quality.apply(&doc.text, &language, score, &hasher) {
                Ok(_) => kept += 1,
                Err(reason) => *dropped.entry(reason).or_default() += 1,
            }
        }
        (kept, dropped)
    };
    run();
    let start = Instant::now();
    let (kept, dropped) = run();
    let seconds = start.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "pages": docs.len(),
        "seconds": seconds,
        "kept": kept,
        "dropped": dropped,
    });
    writeln!(std::io::stdout().lock(), "{out}")?;
    Ok(())
}
