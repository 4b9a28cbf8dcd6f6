//! `tessera-fuzz [--seconds N] [--seed S] [--crashes DIR] [TARGET...]`: fuzzes each target in a
//! child process and prints, per target, the inputs run, the rate and what crashed.

#![allow(clippy::print_stdout)]

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use tessera_fuzz::{Budget, TARGETS, corpus_dir, fuzz, seeds_of, target};

/// The stack a node's extraction and decoding threads get (tokio's blocking threads).
const STACK: usize = 2 << 20;

struct Args {
    seconds: u64,
    seed: u64,
    crashes: PathBuf,
    targets: Vec<String>,
    child: bool,
    record: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seconds: 10,
        seed: 1,
        crashes: PathBuf::from("fuzz-crashes"),
        targets: Vec::new(),
        child: false,
        record: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                args.seconds = value("--seconds")?.parse().map_err(|e| format!("{e}"))?
            }
            "--seed" => args.seed = value("--seed")?.parse().map_err(|e| format!("{e}"))?,
            "--crashes" => args.crashes = value("--crashes")?.into(),
            "--record" => args.record = Some(value("--record")?.into()),
            "--child" => args.child = true,
            "-h" | "--help" => {
                return Err(format!(
                    "tessera-fuzz [--seconds N] [--seed S] [--crashes DIR] [TARGET...]\ntargets: {}",
                    TARGETS
                        .iter()
                        .map(|t| t.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            name if target(name).is_some() => args.targets.push(name.into()),
            other => return Err(format!("unknown target or flag {other:?}")),
        }
    }
    if args.targets.is_empty() {
        args.targets = TARGETS.iter().map(|t| t.name.to_string()).collect();
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.child {
        return child(&args);
    }
    let _ = std::fs::create_dir_all(&args.crashes);
    println!(
        "{:<12} {:>12} {:>10} {:>8}  result",
        "target", "inputs", "per s", "panics"
    );
    let mut bad = false;
    for name in &args.targets {
        let started = Instant::now();
        let run = |record: Option<&PathBuf>| {
            let mut command =
                Command::new(std::env::current_exe().unwrap_or_else(|_| "tessera-fuzz".into()));
            command
                .args([
                    "--child",
                    "--seconds",
                    &args.seconds.to_string(),
                    "--seed",
                    &args.seed.to_string(),
                ])
                .arg("--crashes")
                .arg(&args.crashes)
                .arg(name);
            if let Some(path) = record {
                command.arg("--record").arg(path);
            }
            command.output()
        };
        let output = match run(None) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{name}: cannot start the child: {e}");
                return ExitCode::FAILURE;
            }
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace();
        let execs: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let panics: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let rate = execs as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let result = if output.status.success() && panics == 0 {
            "ok".to_string()
        } else if output.status.success() {
            bad = true;
            format!("inputs that panicked are in {}", args.crashes.display())
        } else {
            bad = true;
            // Run it again writing each input first: the last one written killed it.
            let kept = args.crashes.join(format!("{name}-abort"));
            let _ = run(Some(&kept));
            format!(
                "the process died ({}); its last input is {}",
                output.status,
                kept.display()
            )
        };
        println!("{name:<12} {execs:>12} {rate:>10.0} {panics:>8}  {result}");
    }
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one target on a thread with a node's stack size; prints "execs panics".
fn child(args: &Args) -> ExitCode {
    let Some(t) = args.targets.first().and_then(|n| target(n)) else {
        return ExitCode::from(2);
    };
    let budget = Budget {
        execs: u64::MAX,
        time: Duration::from_secs(args.seconds),
        seed: args.seed,
        record: args.record.clone(),
    };
    let crashes = args.crashes.clone();
    let worker = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let seeds = seeds_of(&t, &corpus_dir());
            let report = fuzz(&t, &seeds, &budget);
            for (i, input) in report.panics.iter().enumerate() {
                let _ = std::fs::write(crashes.join(format!("{}-panic-{i}", t.name)), input);
            }
            report
        });
    match worker.map(|w| w.join()) {
        Ok(Ok(report)) => {
            println!("{} {}", report.execs, report.panics.len());
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}
