#![doc = include_str!("../README.md")]

pub mod address;
pub mod block;
pub mod erasure;
pub mod layout;
pub mod manifest;

pub use cid::Cid;
pub use layout::ShardLayout;
pub use manifest::Manifest;
