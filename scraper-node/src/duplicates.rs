//! The texts a crawl kept, for deduplication across every node's pages: the BLAKE3 of each
//! kept text (exact duplicates) and the MinHash bucket hashes of each (near-duplicates). The
//! first page of a group is kept; a later one that shares its text or a bucket is dropped.
//! Sans-IO: the frontier owns it and rebuilds it from its records after a restart.
//!
//! Memory grows with the pages kept: 32 bytes and one bucket hash per bucket (14 by default)
//! each, about 400 bytes with the tables' overhead.

use std::collections::HashSet;

use crate::quality::Quality;

/// Why a page is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Its text is another kept page's.
    Exact,
    /// It shares a MinHash bucket with a kept page.
    Near,
}

impl Duplicate {
    /// The reason recorded for the dropped page.
    pub fn reason(self) -> &'static str {
        match self {
            Duplicate::Exact => "exact_duplicate",
            Duplicate::Near => "near_duplicate",
        }
    }
}

/// What a crawl kept.
#[derive(Debug, Default)]
pub struct Kept {
    exact: bool,
    minhash: bool,
    buckets_per_page: usize,
    texts: HashSet<[u8; 32]>,
    buckets: HashSet<u64>,
}

impl Kept {
    /// An empty set for a crawl deduplicated as `quality` says (not at all when its
    /// pipeline is off).
    pub fn new(quality: &Quality) -> Self {
        let dedup = &quality.dedup;
        Self {
            exact: quality.enabled && dedup.exact,
            minhash: quality.enabled && dedup.minhash,
            buckets_per_page: dedup.buckets,
            ..Self::default()
        }
    }

    /// Bucket hashes a page's signature has.
    pub fn buckets_per_page(&self) -> usize {
        self.buckets_per_page
    }

    /// Whether a page of text hash `text` (hex BLAKE3) and bucket hashes `buckets` repeats
    /// a kept one. Buckets of the wrong number (a node computing another setting, or lying)
    /// are not compared.
    pub fn duplicate(&self, text: &str, buckets: &[u64]) -> Option<Duplicate> {
        if self.exact && parse(text).is_some_and(|t| self.texts.contains(&t)) {
            return Some(Duplicate::Exact);
        }
        if self.minhash
            && buckets.len() == self.buckets_per_page
            && buckets.iter().any(|b| self.buckets.contains(b))
        {
            return Some(Duplicate::Near);
        }
        None
    }

    /// Records a kept page.
    pub fn keep(&mut self, text: &str, buckets: &[u64]) {
        if self.exact
            && let Some(t) = parse(text)
        {
            self.texts.insert(t);
        }
        if self.minhash && buckets.len() == self.buckets_per_page {
            self.buckets.extend(buckets);
        }
    }
}

fn parse(hex_hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_group_is_kept() {
        let mut kept = Kept::new(&Quality::default());
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let buckets: Vec<u64> = (0..14).collect();
        assert_eq!(kept.duplicate(&a, &buckets), None);
        kept.keep(&a, &buckets);
        assert_eq!(kept.duplicate(&a, &[]), Some(Duplicate::Exact));
        let mut near: Vec<u64> = (100..114).collect();
        assert_eq!(kept.duplicate(&b, &near), None);
        near[5] = 5;
        assert_eq!(kept.duplicate(&b, &near), Some(Duplicate::Near));
        // A wrong number of buckets is not compared.
        assert_eq!(kept.duplicate(&b, &[5]), None);
        let mut off = Kept::new(&Quality::off());
        off.keep(&a, &buckets);
        assert_eq!(off.duplicate(&a, &buckets), None);
        let mut exact_only = Quality::default();
        exact_only.dedup.minhash = false;
        let mut exact = Kept::new(&exact_only);
        exact.keep(&a, &buckets);
        assert_eq!(exact.duplicate(&b, &buckets), None);
        assert_eq!(exact.duplicate(&a, &buckets), Some(Duplicate::Exact));
    }
}
