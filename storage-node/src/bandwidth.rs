//! What a contributor lets the node use of their connection: an upload rate, a download rate
//! and a monthly cap on both together. Serving ranges and proofs counts as upload; pieces
//! received (uploads to this node, pieces fetched to repair) as download.
//!
//! Rates are GCRA buckets (governor) in KiB, one second deep: a transfer waits until its
//! bytes fit. The month's total (UTC calendar month) is kept in `traffic` in the data
//! directory, rewritten every [`SAVE_EVERY`] bytes, so a restart loses at most that much.

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The month's total is saved each time it grows by this much.
pub const SAVE_EVERY: u64 = 16 << 20;
const KIB: u64 = 1024;

/// The limits a node runs with; none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BandwidthLimits {
    /// Most bytes per second sent.
    pub upload: Option<u64>,
    /// Most bytes per second received.
    pub download: Option<u64>,
    /// Most bytes sent and received together in a calendar month (UTC).
    pub monthly_cap: Option<u64>,
}

/// The monthly cap is reached: nothing more is sent or received this month.
#[derive(Debug, Clone, thiserror::Error)]
#[error("this node has used its monthly cap of {cap} bytes; it serves again next month")]
pub struct OverCap {
    /// The cap.
    pub cap: u64,
}

/// What the node used of its connection, and its limits, as its status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandwidthStatus {
    /// Bytes the storage service sent since the node started.
    pub sent: u64,
    /// Bytes it received since the node started.
    pub received: u64,
    /// Bytes sent and received this month (UTC).
    pub month_bytes: u64,
    /// The monthly cap.
    pub monthly_cap: Option<u64>,
    /// The upload rate, bytes per second.
    pub upload_rate: Option<u64>,
    /// The download rate, bytes per second.
    pub download_rate: Option<u64>,
}

/// The node's bandwidth: its limits and what it used this month.
#[derive(Debug)]
pub struct Bandwidth {
    limits: BandwidthLimits,
    up: Option<Bucket>,
    down: Option<Bucket>,
    cap: Option<u64>,
    used: AtomicU64,
    month: Mutex<(String, u64)>,
    file: PathBuf,
    sent: AtomicU64,
    received: AtomicU64,
}

/// A rate in KiB per second, a second deep.
#[derive(Debug)]
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    depth: NonZeroU32,
}

fn bucket(rate: Option<u64>) -> Option<Bucket> {
    let kib = u32::try_from(rate?.div_ceil(KIB)).unwrap_or(u32::MAX);
    NonZeroU32::new(kib).map(|depth| Bucket {
        limiter: RateLimiter::direct(Quota::per_second(depth)),
        depth,
    })
}

/// The current UTC month, as `YYYY-MM`.
fn this_month() -> String {
    let now = i64::try_from(tessera_formats::time::now_ms()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(now)
        .map_or_else(|| "?".into(), |t| t.format("%Y-%m").to_string())
}

impl Bandwidth {
    /// The limits, with this month's use so far read from `dir`.
    pub fn new(dir: &Path, limits: BandwidthLimits) -> Self {
        let file = dir.join("traffic");
        let month = this_month();
        let used = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| {
                let (m, n) = text.trim().split_once(' ')?;
                (m == month).then(|| n.parse::<u64>().ok()).flatten()
            })
            .unwrap_or(0);
        Self {
            limits,
            up: bucket(limits.upload),
            down: bucket(limits.download),
            cap: limits.monthly_cap,
            used: AtomicU64::new(used),
            month: Mutex::new((month, used)),
            file,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// No limits, counting only (tests, nodes built in code).
    pub fn unlimited() -> Self {
        Self::new(Path::new(""), BandwidthLimits::default())
    }

    /// Counts `bytes` sent that are never refused nor waited for: proofs, which a node
    /// over its cap still answers (failing audits would cost it its pieces).
    pub fn count_sent(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` received that are never refused nor waited for: the proofs an
    /// auditor asked for.
    pub fn count_received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Waits until `bytes` may be sent, and counts them.
    pub async fn send(&self, bytes: u64) -> Result<(), OverCap> {
        self.take(self.up.as_ref(), bytes).await?;
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until `bytes` may be received, and counts them.
    pub async fn receive(&self, bytes: u64) -> Result<(), OverCap> {
        self.take(self.down.as_ref(), bytes).await?;
        self.received.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the monthly cap still leaves room.
    pub fn check(&self) -> Result<(), OverCap> {
        self.roll_month();
        match self.cap {
            Some(cap) if self.used.load(Ordering::Relaxed) >= cap => Err(OverCap { cap }),
            _ => Ok(()),
        }
    }

    /// Bytes sent and received since the node started.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// Bytes used this month, and the cap.
    pub fn month(&self) -> (u64, Option<u64>) {
        (self.used.load(Ordering::Relaxed), self.cap)
    }

    /// The figures and limits together.
    pub fn status(&self) -> BandwidthStatus {
        let (sent, received) = self.totals();
        BandwidthStatus {
            sent,
            received,
            month_bytes: self.used.load(Ordering::Relaxed),
            monthly_cap: self.cap,
            upload_rate: self.limits.upload,
            download_rate: self.limits.download,
        }
    }

    async fn take(&self, bucket: Option<&Bucket>, bytes: u64) -> Result<(), OverCap> {
        self.check()?;
        if let Some(bucket) = bucket {
            // In bites no larger than the bucket: a transfer of more than a second's worth
            // waits for each part in turn.
            let mut kib = bytes.div_ceil(KIB);
            while kib > 0 {
                let part = kib.min(u64::from(bucket.depth.get()));
                let n =
                    NonZeroU32::new(u32::try_from(part).unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
                // Never more than the depth, so never refused.
                let _ = bucket.limiter.until_n_ready(n).await;
                kib -= part;
            }
        }
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.save(used);
        Ok(())
    }

    /// A new month starts from zero.
    fn roll_month(&self) {
        let now = this_month();
        let mut month = self.month.lock();
        if month.0 != now {
            info!(from = %month.0, to = %now, "a new month: traffic counted from zero");
            *month = (now, 0);
            self.used.store(0, Ordering::Relaxed);
        }
    }

    fn save(&self, used: u64) {
        if self.cap.is_none() {
            return;
        }
        let mut month = self.month.lock();
        if used < month.1.saturating_add(SAVE_EVERY) {
            return;
        }
        month.1 = used;
        if let Err(e) = std::fs::write(&self.file, format!("{} {used}\n", month.0)) {
            warn!(file = %self.file.display(), error = %e, "could not save this month's traffic");
        }
        if let Some(cap) = self.cap
            && used >= cap
        {
            warn!(
                cap,
                "monthly cap reached: the node stops serving until next month"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_rate_makes_transfers_take_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let bw = Bandwidth::new(
            dir.path(),
            BandwidthLimits {
                upload: Some(1 << 20),
                ..BandwidthLimits::default()
            },
        );
        let started = Instant::now();
        // A second's worth is there at once; three more take three seconds.
        for _ in 0..4 {
            bw.send(1 << 20).await.unwrap();
        }
        assert!(
            started.elapsed().as_secs_f64() >= 2.9,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(bw.totals(), (4 << 20, 0));
        // Unlimited downloads do not wait.
        let started = Instant::now();
        bw.receive(100 << 20).await.unwrap();
        assert!(started.elapsed().as_secs_f64() < 1.0);
    }

    #[tokio::test]
    async fn the_monthly_cap_stops_traffic_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BandwidthLimits {
            monthly_cap: Some(3 * SAVE_EVERY),
            ..BandwidthLimits::default()
        };
        let bw = Bandwidth::new(dir.path(), limits);
        bw.receive(2 * SAVE_EVERY).await.unwrap();
        bw.send(SAVE_EVERY).await.unwrap();
        let over = bw.send(1).await.unwrap_err();
        assert!(over.to_string().contains("monthly cap"), "{over}");
        let again = Bandwidth::new(dir.path(), limits);
        assert_eq!(again.month(), (3 * SAVE_EVERY, Some(3 * SAVE_EVERY)));
        assert!(again.check().is_err());
    }
}
