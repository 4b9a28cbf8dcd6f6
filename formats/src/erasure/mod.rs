//! Systematic Reed-Solomon erasure coding of shards into pieces, in stripes.
//!
//! ```text
//!  original:  | stripe 0: k*S bytes        | stripe 1 | ... | short last stripe |
//!                  |   split into k blocks of S, m parity blocks computed
//!                  v
//!  piece i:   [header][block i of stripe 0][block i of stripe 1]...[block i of last]
//! ```
//! Pieces `0..k` hold the original bytes as they are, so a reader with all of them copies
//! instead of decoding. Encoding and decoding hold one stripe, `(k + m) * S` bytes, in memory.

mod decode;
mod encode;
mod fill;
mod header;
mod params;
mod place;

pub use decode::{
    DecodeError, DecodeReport, PieceFault, Pieces, decode, decode_with, verify_piece,
};
pub use encode::{EncodeError, StripeCodec, encode, encode_to_vecs};
pub use fill::fill_placed;
pub use header::{FORMAT_VERSION, HEADER_LEN, HeaderError, MAGIC, PieceHeader};
pub use params::{
    DEFAULT_STRIPE_SIZE, ErasureParams, Geometry, MAX_PIECES, MAX_STRIPE_BYTES, MAX_STRIPE_SIZE,
    MIN_STRIPE_SIZE, ParamsError,
};
pub use place::Run;
