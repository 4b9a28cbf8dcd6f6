//! Fuzzing of every Tessera decoder of untrusted bytes, on stable Rust (cargo-fuzz needs a
//! nightly toolchain): seeds made in code, the demo's site and `fuzz/corpus/`, stacked
//! mutations, and a child process per target so that an abort (a stack overflow) is caught
//! and its input kept.
//!
//! ```text
//! tessera-fuzz ─▶ per target: a child process ─▶ seeds ─▶ mutate ─▶ run (catch_unwind)
//!                                                       panic ─▶ input saved, counted
//!              ◀─ "target execs panics" ───────────────┘
//!              child died ─▶ the same run again, each input written first ─▶ the input kept
//! ```
//!
//! `cargo test -p tessera-fuzz` runs every target briefly; `scripts/fuzz SECONDS` runs the
//! long campaign and reports executions per target.

pub mod mutate;
pub mod targets;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};

pub use targets::{TARGETS, Target, seeds_of, target};

/// The committed corpus.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// How long, and with which randomness, a target is fuzzed.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Executions at most.
    pub execs: u64,
    /// Time at most.
    pub time: Duration,
    /// The random seed: the same seed gives the same inputs.
    pub seed: u64,
    /// Every input is written here before it runs, to keep the one that kills the process.
    pub record: Option<PathBuf>,
}

/// What a run of one target found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs run.
    pub execs: u64,
    /// Inputs that panicked, each as it was.
    pub panics: Vec<Vec<u8>>,
}

/// Fuzzes `target` from `seeds` within `budget`; panics are caught and kept. The panic hook
/// is silenced while it runs.
pub fn fuzz(target: &Target, seeds: &[Vec<u8>], budget: &Budget) -> Report {
    let mut rng = StdRng::seed_from_u64(budget.seed);
    let started = Instant::now();
    let mut report = Report::default();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while report.execs < budget.execs && started.elapsed() < budget.time {
        // The seeds themselves first, then mutations of them.
        let input = match seeds.get(usize::try_from(report.execs).unwrap_or(usize::MAX)) {
            Some(seed) => seed.clone(),
            None => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate::mutate(&mut rng, seed, seeds, target.dictionary)
            }
        };
        if let Some(path) = &budget.record {
            let _ = std::fs::write(path, &input);
        }
        report.execs += 1;
        if catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
            report.panics.push(input);
        }
    }
    std::panic::set_hook(hook);
    report
}
