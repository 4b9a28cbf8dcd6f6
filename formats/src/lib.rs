#![doc = include_str!("../README.md")]

pub mod address;
pub mod block;
pub mod charter;
pub mod claim;
pub mod dataset_ref;
pub mod erasure;
pub mod layout;
pub mod manifest;
pub mod payout;
pub mod receipt;
pub mod record;
pub mod report;
pub mod rotation;
mod signed;
pub mod time;

pub use cid::Cid;
pub use claim::{RepairClaim, SignedClaim};
pub use dataset_ref::{DatasetRef, VersionSel};
pub use layout::ShardLayout;
pub use manifest::Manifest;
pub use receipt::{AuditReceipt, AuditResult, SignedReceipt};
pub use record::{PublisherKey, SignedRecord, VersionRecord};
