//! Runnable examples of Tessera's crates; each lives in a file beside this one and runs with
//! `cargo run --release --example NAME`.
