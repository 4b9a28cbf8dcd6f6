#![doc = include_str!("../README.md")]

pub mod assignment;
pub mod challenge;
pub mod durability;
pub mod health;
pub mod ledger;
pub mod outboard;
pub mod placement;
pub mod prove;
pub mod range;
pub mod schedule;
pub mod settlement;
pub mod tree;
pub mod trust;
pub mod verify;

pub use challenge::{
    Challenge, ChallengeError, DEFAULT_SAMPLES, MAX_SAMPLES, pass_probability, samples_for,
};
pub use health::{Rules, Standing, Standings, Verdict, repair_below, verdict};
pub use ledger::{Ledger, Proven, decode_blocks, ledger, ledger_since};
pub use outboard::{Outboard, OutboardError, PieceData};
pub use prove::{MAX_PROOF_BODY, Proof, ProveError, prove};
pub use range::{ByteRange, MAX_RANGE_LEN, RangeError, prove_range, verify_range, verify_range_in};
pub use schedule::Schedule;
pub use verify::{ProofError, Verified, verify};
