//! Runnable examples of Tessera's crates; each lives in a file beside this one and runs with
//! `cargo run --release --example NAME`.

/// One figure of a benchmark and its baseline from the same run.
#[derive(Debug, Clone)]
pub struct Figure<'a> {
    /// The section of `docs/BENCHMARKS.md` it goes in.
    pub section: &'a str,
    /// What was measured.
    pub name: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: &'a str,
    /// What it is compared with.
    pub baseline: &'a str,
    /// The baseline's figure, in the same unit.
    pub baseline_value: f64,
}

/// Appends figures to `$TESSERA_BENCH_OUT` (JSON lines) for `scripts/bench`, when it is set.
pub fn record(figures: &[Figure<'_>]) -> std::io::Result<()> {
    use std::io::Write as _;
    let Ok(path) = std::env::var("TESSERA_BENCH_OUT") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    for f in figures {
        writeln!(
            file,
            "{{\"section\": {:?}, \"name\": {:?}, \"value\": {}, \"unit\": {:?}, \"baseline\": {:?}, \"baseline_value\": {}}}",
            f.section, f.name, f.value, f.unit, f.baseline, f.baseline_value
        )?;
    }
    Ok(())
}
