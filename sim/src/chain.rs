//! Loss rates too small for any run to see. The target (1e-9 shards lost per year) is a
//! billion shard-years per loss: no simulation counts that. What a run does see often is how
//! fast pieces are lost and how fast repairs lift a shard from each count of pieces held. A
//! continuous-time Markov chain over that count, with those rates, gives the rate at which a
//! shard falls below `k`.
//!
//! ```text
//!   n ──nλ──▶ n-1 ──(n-1)λ──▶ ... ──▶ k ──kλ──▶ lost
//!   ▲           │ repairs measured from each level, to the level they reached
//!   └───────────┘
//! ```
//!
//! Exponential repair times overstate the chance of several losses during one repair (a
//! repair's real delay, detection and transfer, varies less), so the chain errs towards loss.
//! A level no run reached, or reached too rarely to say, takes the rates of all levels in
//! need of repair (below the threshold) together. That errs towards loss too: a shard reaches
//! a lower level mostly while its repair is already under way, and is lifted sooner than the
//! pooled rate, which includes the wait for the loss to be noticed, says. (Borrowing the rate
//! of the level just above errs the other way: a level reached only while a repair is landing
//! is left within seconds, and that is no rate for the levels below it.) A level at or above
//! the threshold has only the repairs seen there (pieces moved, or holders given up before
//! their bytes were lost). Piece losses are counted per level too, and pooled the same way:
//! a shard whose repair waits on an offline holder may lose that holder's copy as well.
//! The upper bound takes the 95% Poisson bounds of every count the wrong way (more piece
//! losses, fewer repairs).

// Rates from bounded counts and times; f64 is the model's own precision.
#![allow(clippy::cast_precision_loss)]

use serde::{Deserialize, Serialize};

/// Repairs (or losses) from a level before its own rate is used: fewer say little (the lower
/// bound of one count is a fortieth of it), and the level takes the pooled rate instead.
const MIN_EVENTS: u64 = 10;

const YEAR_MS: f64 = 365.0 * 24.0 * 3_600_000.0;

/// What a run measured for the chain: piece losses over piece-time, time at each count of
/// pieces held, and the repairs from each count to the count they reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    /// Pieces per shard (`k + m`).
    pub width: usize,
    /// Piece-ms held, over shards not lost.
    pub piece_ms: u128,
    /// Pieces whose bytes left the network.
    pub pieces_lost: u64,
    /// Of those, by the count of pieces their shard held before (index 0..=width).
    pub lost_from: Vec<u64>,
    /// Shard-ms at each count of pieces held (index: the count, 0..=width).
    pub ms: Vec<u64>,
    /// Repairs by (count before, count after): `from * (width + 1) + to`.
    pub repaired: Vec<u64>,
}

impl Levels {
    /// Nothing measured yet, for shards of `width` pieces.
    pub fn new(width: usize) -> Self {
        Self {
            width,
            piece_ms: 0,
            pieces_lost: 0,
            lost_from: vec![0; width + 1],
            ms: vec![0; width + 1],
            repaired: vec![0; (width + 1) * (width + 1)],
        }
    }

    /// Adds another run's measurements (of shards as wide).
    pub fn add(&mut self, other: &Self) {
        if self.width != other.width {
            return;
        }
        self.piece_ms += other.piece_ms;
        self.pieces_lost += other.pieces_lost;
        for (a, b) in self.lost_from.iter_mut().zip(&other.lost_from) {
            *a += b;
        }
        for (a, b) in self.ms.iter_mut().zip(&other.ms) {
            *a += b;
        }
        for (a, b) in self.repaired.iter_mut().zip(&other.repaired) {
            *a += b;
        }
    }

    /// Counts a repair that took a shard from `from` pieces to `to`.
    pub fn repair(&mut self, from: usize, to: usize) {
        if from < to && to <= self.width {
            self.repaired[from * (self.width + 1) + to] += 1;
        }
    }

    /// Pieces lost per piece held per year, as counted.
    pub fn piece_loss_per_year(&self) -> f64 {
        self.piece_loss(Bound::Estimate) * YEAR_MS
    }

    /// Pieces lost per piece-ms.
    fn piece_loss(&self, bound: Bound) -> f64 {
        if self.piece_ms == 0 {
            return 0.0;
        }
        bound.more(self.pieces_lost) / self.piece_ms as f64
    }

    /// Repairs from the `levels` together, by the level reached.
    fn repairs(&self, levels: std::ops::Range<usize>) -> (u64, Vec<u64>) {
        let mut to = vec![0; self.width + 1];
        let mut time = 0;
        for level in levels {
            time += self.ms[level];
            let row = &self.repaired[level * (self.width + 1)..(level + 1) * (self.width + 1)];
            for (a, b) in to.iter_mut().zip(row) {
                *a += b;
            }
        }
        (time, to)
    }

    /// Shards lost per shard-year by the chain, for shards of `k` data pieces repaired below
    /// `below` pieces; none when too few repairs were seen to say how fast they are.
    pub fn loss_per_year(&self, k: usize, below: usize, bound: Bound) -> Option<f64> {
        let (_, pooled) = self.repairs(k..below.clamp(k, self.width));
        (pooled.iter().sum::<u64>() >= MIN_EVENTS)
            .then(|| self.loss_rate(k, below, bound) * YEAR_MS)
    }

    /// Shards lost per shard-ms by the chain, for shards of `k` data pieces repaired below
    /// `below` pieces.
    pub fn loss_rate(&self, k: usize, below: usize, bound: Bound) -> f64 {
        let n = self.width;
        if k == 0 || k > n {
            return 0.0;
        }
        let lambda = self.piece_loss(bound);
        if lambda == 0.0 {
            return 0.0;
        }
        // Transient states: k..n-1, as 0..n-k. Leaving them: back to n, or below k.
        let states = n - k;
        let mut chain = Excursions::new(states);
        let in_need = k..below.clamp(k, n);
        let pooled = self.repairs(in_need.clone());
        let pooled_hazard = {
            let lost: u64 = in_need.clone().map(|l| self.lost_from[l]).sum();
            let piece_ms: f64 = in_need.map(|l| self.ms[l] as f64 * l as f64).sum();
            if piece_ms > 0.0 {
                (bound.more(lost) / piece_ms).max(lambda)
            } else {
                lambda
            }
        };
        for level in (k..n).rev() {
            let i = level - k;
            let own = self.repairs(level..level + 1);
            let (time, to) = if own.1.iter().sum::<u64>() >= MIN_EVENTS {
                own
            } else if level >= below {
                // A healthy shard is not repaired (but for moves the run saw too seldom).
                (0, Vec::new())
            } else {
                pooled.clone()
            };
            let rates = to
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c > 0 && time > 0)
                .map(|(to, &c)| (to, bound.fewer(c) / time as f64));
            for (to, rate) in rates {
                let to = to.max(level + 1);
                if to >= n {
                    chain.home[i] += rate;
                } else {
                    chain.rate[i][to - k] += rate;
                }
            }
            // Each piece's hazard: the level's own where it lost pieces often (a shard whose
            // repair waits on an offline holder may lose that holder's copy too: pieces of a
            // shard in need are not lost independently), else that of all levels in need of
            // repair together, never less than the run's overall rate.
            let hazard = if self.lost_from[level] >= MIN_EVENTS && self.ms[level] > 0 {
                bound.more(self.lost_from[level]) / (self.ms[level] as f64 * level as f64)
            } else if level < below {
                pooled_hazard
            } else {
                lambda
            };
            let down = level as f64 * hazard;
            if level == k {
                chain.absorb[i] += down;
            } else {
                chain.rate[i][i - 1] += down;
            }
        }
        let (lost, duration) = chain.solve(states - 1);
        // A cycle: time at n until the first loss, then the excursion.
        let cycle = 1.0 / (n as f64 * lambda) + duration;
        lost / cycle
    }
}

/// Which way the counts are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// As counted.
    Estimate,
    /// The 95% Poisson bound that makes loss likelier.
    Upper,
}

impl Bound {
    const Z: f64 = 1.96;

    /// A count, or its upper Poisson bound (the score interval).
    pub(crate) fn more(self, count: u64) -> f64 {
        let c = count as f64;
        match self {
            Self::Estimate => c,
            Self::Upper => {
                c + Self::Z * Self::Z / 2.0 + Self::Z * (c + Self::Z * Self::Z / 4.0).sqrt()
            }
        }
    }

    /// A count, or its lower Poisson bound.
    fn fewer(self, count: u64) -> f64 {
        let c = count as f64;
        match self {
            Self::Estimate => c,
            Self::Upper => (c + Self::Z * Self::Z / 2.0
                - Self::Z * (c + Self::Z * Self::Z / 4.0).sqrt())
            .max(0.0),
        }
    }
}

/// Excursions of a shard below `n` pieces: from each transient state, rates to the others,
/// home (back to `n`) and below `k` (absorbed).
struct Excursions {
    rate: Vec<Vec<f64>>,
    home: Vec<f64>,
    absorb: Vec<f64>,
}

impl Excursions {
    fn new(states: usize) -> Self {
        Self {
            rate: vec![vec![0.0; states]; states],
            home: vec![0.0; states],
            absorb: vec![0.0; states],
        }
    }

    /// From `start`: the probability of being absorbed before getting home, and the expected
    /// time until one or the other. Grassmann-Taksar-Heyman elimination: every quantity is a
    /// sum of positive terms, so probabilities of 1e-15 keep their precision (`1 - p` is
    /// never formed).
    fn solve(self, start: usize) -> (f64, f64) {
        let states = self.home.len();
        // Row i: next-state probabilities over states, home, absorbed; and the mean time a
        // visit to i lasts.
        let mut next: Vec<Vec<f64>> = Vec::with_capacity(states);
        let mut home = Vec::with_capacity(states);
        let mut absorb = Vec::with_capacity(states);
        let mut time = Vec::with_capacity(states);
        for i in 0..states {
            let total: f64 = self.rate[i].iter().sum::<f64>() + self.home[i] + self.absorb[i];
            if total <= 0.0 {
                // Nothing leaves this state: it never ends (no repair, no loss).
                return (0.0, f64::INFINITY);
            }
            next.push(self.rate[i].iter().map(|r| r / total).collect());
            home.push(self.home[i] / total);
            absorb.push(self.absorb[i] / total);
            time.push(1.0 / total);
        }
        // Eliminate states from the last to the first, folding each into the rows that lead
        // to it.
        for e in (1..states).rev() {
            let (rows, rest) = next.split_at_mut(e);
            let via = &rest[0];
            for (i, row) in rows.iter_mut().enumerate() {
                let q = row[e];
                if q == 0.0 {
                    continue;
                }
                row[e] = 0.0;
                for (to, from) in row.iter_mut().zip(via).take(e) {
                    *to += q * from;
                }
                home[i] += q * home[e];
                absorb[i] += q * absorb[e];
                time[i] += q * time[e];
                // A loop back to i: divide it out by what leaves (a sum, not 1 - loop).
                if row[i] > 0.0 {
                    row[i] = 0.0;
                    let leave = row.iter().take(e).sum::<f64>() + home[i] + absorb[i];
                    let scale = 1.0 / leave;
                    for p in row.iter_mut().take(e) {
                        *p *= scale;
                    }
                    home[i] *= scale;
                    absorb[i] *= scale;
                    time[i] *= scale;
                }
            }
        }
        // Back-substitute upwards: state e depends only on states below it now.
        let mut lost = vec![0.0; states];
        let mut took = vec![0.0; states];
        for e in 0..states {
            lost[e] = absorb[e] + (0..e).map(|j| next[e][j] * lost[j]).sum::<f64>();
            took[e] = time[e] + (0..e).map(|j| next[e][j] * took[j]).sum::<f64>();
        }
        (lost[start], took[start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without repair, a shard of n pieces at per-piece rate λ is lost at its (m+1)-th
    /// loss: it lives Σ 1/(jλ) for j = k..=n on average, and the chain returns 1 / that.
    #[test]
    fn without_repair_the_lifetime_is_the_sum_of_the_waits() {
        let (k, n) = (4usize, 6usize);
        let mut levels = Levels::new(n);
        levels.piece_ms = 1_000_000;
        levels.pieces_lost = 10;
        levels.ms[n] = 1;
        let lambda = 10.0 / 1_000_000.0;
        let life: f64 = (k..=n).map(|j| 1.0 / (j as f64 * lambda)).sum();
        let rate = levels.loss_rate(k, n, Bound::Estimate);
        assert!((rate * life - 1.0).abs() < 1e-9, "{rate} vs {}", 1.0 / life);
    }

    /// One spare, repaired at rate μ from k to n: a birth-death chain with a closed form.
    /// From n: wait 1/(nλ), go to k (here n = k + 1); from k, lost with kλ/(kλ+μ).
    #[test]
    fn a_repaired_shard_matches_the_closed_form() {
        let (k, n) = (4usize, 5usize);
        let mut levels = Levels::new(n);
        levels.piece_ms = 1_000_000_000;
        levels.pieces_lost = 1_000;
        levels.ms[k] = 1_000_000;
        levels.repaired[k * (n + 1) + n] = 500;
        let lambda = 1e-6;
        let mu = 500.0 / 1e6;
        let p = k as f64 * lambda / (k as f64 * lambda + mu);
        let cycle = 1.0 / (n as f64 * lambda) + 1.0 / (k as f64 * lambda + mu);
        let rate = levels.loss_rate(k, n, Bound::Estimate);
        assert!((rate / (p / cycle) - 1.0).abs() < 1e-9);
        assert!(levels.loss_rate(k, n, Bound::Upper) > rate);
    }

    /// Rates far below f64's epsilon relative to 1 keep their precision: eight spares
    /// repaired fast, where the answer is near (λ/μ)^8.
    #[test]
    fn tiny_loss_rates_keep_their_precision() {
        let (k, n) = (10usize, 18usize);
        let mut levels = Levels::new(n);
        levels.piece_ms = 1_000_000_000_000;
        levels.pieces_lost = 1;
        for level in k..n {
            levels.ms[level] = 1;
            levels.repaired[level * (n + 1) + n] = 1_000;
        }
        let rate = levels.loss_rate(k, n, Bound::Estimate);
        assert!(rate > 0.0 && rate < 1e-50, "{rate}");
        // Eight levels, from n-1 down to k, each race a repair: doubling the repair rate
        // divides the loss by about 2^8.
        for level in k..n {
            levels.repaired[level * (n + 1) + n] = 2_000;
        }
        let faster = levels.loss_rate(k, n, Bound::Estimate);
        let ratio = rate / faster;
        assert!((200.0..300.0).contains(&ratio), "{ratio}");
    }

    /// A level seen too rarely takes the rates of all levels below the threshold together.
    #[test]
    fn a_rare_level_takes_the_pooled_rates() {
        let (k, n) = (4usize, 6usize);
        let mut seen = Levels::new(n);
        seen.piece_ms = 1_000_000_000;
        seen.pieces_lost = 1_000;
        seen.ms[5] = 1_000_000;
        seen.repaired[5 * (n + 1) + 6] = 100;
        let mut both = seen.clone();
        both.ms[4] = 1_000;
        both.repaired[4 * (n + 1) + 6] = 1;
        let mut same = seen.clone();
        same.ms[4] = 1_000_000;
        same.repaired[4 * (n + 1) + 6] = 100;
        // Level 4's one repair in 1 s is not read as a fast rate: it takes the pooled one,
        // 101 repairs in 1,001 s, about level 5's.
        let a = seen.loss_rate(k, n, Bound::Estimate);
        let b = both.loss_rate(k, n, Bound::Estimate);
        let c = same.loss_rate(k, n, Bound::Estimate);
        assert!(
            (a / c - 1.0).abs() < 1e-9 && (b / c - 1.0).abs() < 0.01,
            "{a} {b} {c}"
        );
        // A level at the threshold or above lends nothing and borrows nothing.
        let mut lazy = seen.clone();
        lazy.ms[4] = 1_000_000;
        lazy.repaired[4 * (n + 1) + 6] = 100;
        let repaired_at_5 = lazy.loss_rate(k, 5, Bound::Estimate);
        lazy.repaired[5 * (n + 1) + 6] = 0;
        let healthy_at_5 = lazy.loss_rate(k, 5, Bound::Estimate);
        assert!(
            healthy_at_5 > repaired_at_5,
            "{healthy_at_5} {repaired_at_5}"
        );
        // Too few repairs anywhere: the model is not fitted at all.
        let mut few = Levels::new(n);
        few.piece_ms = 1_000;
        few.pieces_lost = 1;
        few.ms[5] = 1_000;
        few.repaired[5 * (n + 1) + 6] = 3;
        assert!(few.loss_per_year(k, n, Bound::Estimate).is_none());
        assert!(seen.loss_per_year(k, n, Bound::Estimate).is_some());
    }
}
