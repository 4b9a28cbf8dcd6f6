//! A deterministic discrete-event simulation of a Tessera network: thousands of home nodes
//! that go offline, come back, lose their disks and leave, datasets stored on them, and the
//! audit and repair policy the storage nodes run, taken from their own code
//! (`tessera_proofs::{schedule, health, placement}`), not re-implemented. One seed gives one
//! report, byte for byte.
//!
//! - [`config`]: the network, churn, data and policy of a run (TOML), each default sourced.
//! - [`world`]: the simulated nodes, pieces, auditor and repairs on a queue of timed events.
//! - [`report`]: one run's figures, and a summary over seeds.
//! - [`analytic`]: the binomial loss model a run without repair is checked against.
//! - [`chain`]: the loss model fitted to a run's rates, for losses too rare to count.

pub mod analytic;
pub mod chain;
pub mod config;
pub mod report;
pub mod world;

pub use config::SimConfig;
pub use report::{Report, Summary};

/// Runs `config` with the random stream of `seed`.
pub fn simulate(config: &SimConfig, seed: u64) -> Report {
    world::World::new(config.clone(), seed).run()
}
