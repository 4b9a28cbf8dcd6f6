//! Erasure parameters and the stripe geometry they imply.

use serde::{Deserialize, Serialize};

/// Most pieces one shard may have: Reed-Solomon over GF(2^8) has 256 distinct evaluation points.
pub const MAX_PIECES: usize = 256;
/// Smallest stripe block: below this the per-call overhead of the codec dominates.
pub const MIN_STRIPE_SIZE: u32 = 1024;
/// Largest stripe block per piece.
pub const MAX_STRIPE_SIZE: u32 = 16 * 1024 * 1024;
/// Most memory one stripe may take across all its pieces, so a hostile header cannot make a
/// decoder allocate gigabytes.
pub const MAX_STRIPE_BYTES: u64 = 256 * 1024 * 1024;
/// The default block size per piece and stripe.
pub const DEFAULT_STRIPE_SIZE: u32 = 1024 * 1024;

/// Erasure parameters that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// k is zero.
    #[error("k must be at least 1")]
    NoDataPieces,
    /// m is zero.
    #[error("m must be at least 1")]
    NoParityPieces,
    /// More pieces than the field allows.
    #[error("k + m = {total} pieces; at most {MAX_PIECES} are possible")]
    TooManyPieces {
        /// k + m.
        total: usize,
    },
    /// Stripe block outside the allowed range.
    #[error("stripe size {size} is outside {MIN_STRIPE_SIZE}..={MAX_STRIPE_SIZE} bytes")]
    StripeSize {
        /// The stripe size asked for.
        size: u32,
    },
    /// One stripe across all pieces would be too large.
    #[error("(k + m) x stripe size = {bytes} bytes; at most {MAX_STRIPE_BYTES} are allowed")]
    StripeTooLarge {
        /// The stripe's bytes across all pieces.
        bytes: u64,
    },
}

/// How a shard is erasure-coded: `k` data pieces and `m` parity pieces, coded in stripes of
/// `stripe_size` bytes per piece.
///
/// Stripe `s` takes `k * stripe_size` bytes of the original, starting at `s * k * stripe_size`,
/// and gives piece `i < k` its `i`-th block of `stripe_size` bytes as is. The last stripe may be
/// shorter: its block size is the remainder divided by `k`, rounded up, and the data is padded
/// with zeros to `k` such blocks. So the first `k` pieces hold the original bytes in order, and
/// small shards do not grow to a whole stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureParams {
    /// Data pieces.
    pub k: u16,
    /// Parity pieces.
    pub m: u16,
    /// Bytes per piece per stripe.
    pub stripe_size: u32,
}

impl ErasureParams {
    /// Checked parameters.
    pub fn new(k: u16, m: u16, stripe_size: u32) -> Result<Self, ParamsError> {
        let p = Self { k, m, stripe_size };
        p.validate()?;
        Ok(p)
    }

    /// Checks the parameters against Tessera's limits.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.k == 0 {
            return Err(ParamsError::NoDataPieces);
        }
        if self.m == 0 {
            return Err(ParamsError::NoParityPieces);
        }
        let total = self.total();
        if total > MAX_PIECES {
            return Err(ParamsError::TooManyPieces { total });
        }
        if !(MIN_STRIPE_SIZE..=MAX_STRIPE_SIZE).contains(&self.stripe_size) {
            return Err(ParamsError::StripeSize {
                size: self.stripe_size,
            });
        }
        let bytes = total as u64 * u64::from(self.stripe_size);
        if bytes > MAX_STRIPE_BYTES {
            return Err(ParamsError::StripeTooLarge { bytes });
        }
        Ok(())
    }

    /// k + m.
    pub fn total(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// k as a usize.
    pub fn data(&self) -> usize {
        usize::from(self.k)
    }

    /// Original bytes one full stripe holds.
    pub fn stripe_data_len(&self) -> u64 {
        u64::from(self.k) * u64::from(self.stripe_size)
    }

    /// The stripes of an original of `len` bytes.
    pub fn geometry(&self, len: u64) -> Geometry {
        let full = len / self.stripe_data_len();
        let rem = len % self.stripe_data_len();
        Geometry {
            k: u64::from(self.k),
            stripe_size: u64::from(self.stripe_size),
            full_stripes: full,
            last_block: rem.div_ceil(u64::from(self.k)),
            len,
        }
    }
}

impl Default for ErasureParams {
    /// 10 data + 4 parity pieces, 1 MiB per piece per stripe: a shard survives the loss of any
    /// four pieces at 1.4x the original size.
    fn default() -> Self {
        Self {
            k: 10,
            m: 4,
            stripe_size: DEFAULT_STRIPE_SIZE,
        }
    }
}

/// Where an original's bytes go: full stripes, then at most one short one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub(super) k: u64,
    pub(super) stripe_size: u64,
    /// Stripes with a block of `stripe_size` bytes per piece.
    pub full_stripes: u64,
    /// Block size of the short last stripe; 0 when there is none.
    pub last_block: u64,
    /// Original length.
    pub len: u64,
}

impl Geometry {
    /// Number of stripes, the short one included.
    pub fn stripes(&self) -> u64 {
        self.full_stripes + u64::from(self.last_block > 0)
    }

    /// Block size per piece of stripe `s`.
    pub fn block_len(&self, s: u64) -> u64 {
        if s < self.full_stripes {
            self.stripe_size
        } else {
            self.last_block
        }
    }

    /// Original bytes stripe `s` carries (without padding).
    pub fn data_len(&self, s: u64) -> u64 {
        if s < self.full_stripes {
            self.k * self.stripe_size
        } else {
            self.len - self.full_stripes * self.k * self.stripe_size
        }
    }

    /// Bytes of stripe blocks in every piece (the header not included).
    pub fn piece_body_len(&self) -> u64 {
        self.full_stripes * self.stripe_size + self.last_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            ErasureParams::new(0, 2, 4096),
            Err(ParamsError::NoDataPieces)
        );
        assert_eq!(
            ErasureParams::new(4, 0, 4096),
            Err(ParamsError::NoParityPieces)
        );
        assert_eq!(
            ErasureParams::new(200, 57, 4096),
            Err(ParamsError::TooManyPieces { total: 257 })
        );
        assert_eq!(
            ErasureParams::new(4, 2, 100),
            Err(ParamsError::StripeSize { size: 100 })
        );
        assert!(matches!(
            ErasureParams::new(100, 100, MAX_STRIPE_SIZE),
            Err(ParamsError::StripeTooLarge { .. })
        ));
        ErasureParams::default().validate().unwrap();
    }

    #[test]
    fn geometry_covers_every_byte_once() {
        let p = ErasureParams::new(4, 2, 1024).unwrap();
        for len in [0u64, 1, 1023, 4095, 4096, 4097, 3 * 4096 + 5] {
            let g = p.geometry(len);
            let total: u64 = (0..g.stripes()).map(|s| g.data_len(s)).sum();
            assert_eq!(total, len);
            for s in 0..g.stripes() {
                assert!(g.data_len(s) <= 4 * g.block_len(s));
                assert!(g.data_len(s) > 4 * g.block_len(s) - 4 || s < g.full_stripes);
            }
        }
        assert_eq!(p.geometry(0).stripes(), 0);
        assert_eq!(p.geometry(1).piece_body_len(), 1);
        assert_eq!(p.geometry(4097).piece_body_len(), 1025);
    }
}
