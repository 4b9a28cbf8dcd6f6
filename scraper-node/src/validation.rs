//! Checking scraper nodes against each other: a sample of stored pages is fetched again by a
//! different node, and the text hashes are compared.
//!
//! ```text
//! page stored by node A (text hash h, MinHash buckets b) ─▶ sampled? (BLAKE3 keyed by a seed drawn after A's
//!   report arrived, of the URL, against the fraction: A cannot know which pages are checked)
//!   ─▶ a check queued on the page's host ─▶ leased to a node B ≠ A, in the host's turn
//!   ─▶ B reports its text hash h' and buckets b' ─▶ h' == h and b' == b: A agreed; else A
//!      disagreed; B could not fetch it: tried again once, then left inconclusive
//! ```
//!
//! The buckets are checked with the text: they decide which later pages are near-duplicates
//! of this one, and the same text gives the same buckets on every node (the hash functions
//! are fixed), so a node that reports made-up buckets is caught like one that reports a
//! made-up text.
//!
//! ```text
//! ```
//!
//! Pure; the frontier drives it and persists its records. A page that changes between the two
//! fetches counts as a disagreement: the score is evidence, not a verdict.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Times a check is leased before it is left inconclusive.
const MAX_CHECK_ATTEMPTS: u32 = 2;

/// A stored page to fetch again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The page.
    pub url: String,
    /// The node that stored it.
    pub node: String,
    /// The BLAKE3 of its text, hex, as that node reported it.
    pub text_blake3: String,
    /// Its MinHash bucket hashes as that node reported them (empty when near-deduplication
    /// is off). `None` only in checks recorded before buckets were checked: those check the
    /// text alone.
    #[serde(default)]
    pub buckets: Option<Vec<u64>>,
    /// Times it was leased.
    pub attempts: u32,
}

/// How one node's pages fared when fetched again by others, and how its own checks of
/// others' pages came out. A node that lies shows up on both sides: its pages disagree with
/// every checker, and its checks disagree with every node it checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Score {
    /// Its pages whose check agreed.
    pub agreed: u64,
    /// Its pages whose check disagreed.
    pub disagreed: u64,
    /// Its pages that no other node could fetch again.
    pub inconclusive: u64,
    /// Its checks of others' pages that agreed.
    pub checks_agreed: u64,
    /// Its checks of others' pages that disagreed.
    pub checks_disagreed: u64,
    /// Its shards left out of the published crawl: rows that were not the pages it reported.
    pub shards_refused: u64,
}

/// Whether `url` is in the sample for `fraction` under `seed` (a secret the coordinator draws
/// once the report naming the page has arrived; the same seed and URL always give the same
/// answer, so a sample can be recomputed).
pub fn sampled(seed: &[u8; 32], url: &str, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let hash = blake3::keyed_hash(seed, url.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    // The top 53 bits as a number in [0, 1).
    let x = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    x < fraction
}

/// The checks of one crawl.
#[derive(Debug, Default)]
pub struct Checks {
    /// Waiting, per host.
    pending: HashMap<String, VecDeque<Check>>,
    /// Per node that stored pages.
    scores: BTreeMap<String, Score>,
}

impl Checks {
    /// Queues a check on `host`.
    pub fn push(&mut self, host: &str, check: Check) {
        self.pending
            .entry(host.to_string())
            .or_default()
            .push_back(check);
    }

    /// Sets a node's score (restoring).
    pub fn set_score(&mut self, node: &str, score: Score) {
        self.scores.insert(node.to_string(), score);
    }

    /// A check on `host` that `node` may do (one it did not store), counted as an attempt.
    pub fn take_for(&mut self, host: &str, node: &str) -> Option<Check> {
        let queue = self.pending.get_mut(host)?;
        let at = queue.iter().position(|c| c.node != node)?;
        let mut check = queue.remove(at)?;
        check.attempts += 1;
        Some(check)
    }

    /// Whether `host` has a check `node` may do.
    pub fn has_for(&self, host: &str, node: &str) -> bool {
        self.pending
            .get(host)
            .is_some_and(|q| q.iter().any(|c| c.node != node))
    }

    /// Settles a check that `checker` did, with the text hash and buckets it found (`None`: it
    /// could not fetch the page). Returns the check to queue again, if any, and the scores
    /// that changed.
    pub fn settle(
        &mut self,
        check: Check,
        checker: &str,
        found: Option<(&str, &[u64])>,
    ) -> (Option<Check>, Vec<(String, Score)>) {
        let agreed = match found {
            Some((hash, buckets)) => {
                hash == check.text_blake3 && check.buckets.as_deref().is_none_or(|b| b == buckets)
            }
            None => {
                if check.attempts < MAX_CHECK_ATTEMPTS {
                    return (Some(check), Vec::new());
                }
                let score = self.scores.entry(check.node.clone()).or_default();
                score.inconclusive += 1;
                return (None, vec![(check.node, *score)]);
            }
        };
        let stored = self.scores.entry(check.node.clone()).or_default();
        if agreed {
            stored.agreed += 1;
        } else {
            stored.disagreed += 1;
        }
        let stored = (check.node, *stored);
        let by = self.scores.entry(checker.to_string()).or_default();
        if agreed {
            by.checks_agreed += 1;
        } else {
            by.checks_disagreed += 1;
        }
        (None, vec![stored, (checker.to_string(), *by)])
    }

    /// Checks waiting that one of `workers` may do.
    pub fn doable(&self, workers: &[String]) -> u64 {
        self.pending
            .values()
            .flatten()
            .filter(|c| workers.iter().any(|w| *w != c.node))
            .count() as u64
    }

    /// Checks waiting.
    pub fn pending(&self) -> u64 {
        self.pending.values().map(|q| q.len() as u64).sum()
    }

    /// Every node's score.
    pub fn scores(&self) -> &BTreeMap<String, Score> {
        &self.scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, node: &str, hash: &str) -> Check {
        Check {
            url: url.into(),
            node: node.into(),
            text_blake3: hash.into(),
            buckets: Some(vec![1, 2, 3]),
            attempts: 0,
        }
    }

    #[test]
    fn made_up_buckets_disagree_like_a_made_up_text() {
        let mut c = Checks::default();
        c.push("h", check("u1", "A", "aa"));
        let u1 = c.take_for("h", "B").unwrap();
        // B finds the same text but other buckets: A's buckets were not its text's.
        let (_, scores) = c.settle(u1, "B", Some(("aa", &[1, 2, 4])));
        assert_eq!((scores[0].0.as_str(), scores[0].1.disagreed), ("A", 1));
        // No buckets reported where the checker finds some is made up too.
        c.push(
            "h",
            Check {
                buckets: Some(Vec::new()),
                ..check("u2", "A", "aa")
            },
        );
        let u2 = c.take_for("h", "B").unwrap();
        let (_, scores) = c.settle(u2, "B", Some(("aa", &[1, 2, 3])));
        assert_eq!(scores[0].1.disagreed, 2);
        // A check recorded before buckets were checked compares the text alone.
        c.push(
            "h",
            Check {
                buckets: None,
                ..check("u3", "A", "aa")
            },
        );
        let u3 = c.take_for("h", "B").unwrap();
        let (_, scores) = c.settle(u3, "B", Some(("aa", &[9])));
        assert_eq!(scores[0].1.agreed, 1);
        let old: Check = serde_json::from_str(
            r#"{"url": "u", "node": "A", "text_blake3": "aa", "attempts": 0}"#,
        )
        .unwrap();
        assert_eq!(old.buckets, None);
    }

    #[test]
    fn the_sample_is_stable_and_about_the_fraction() {
        let n = 10_000;
        let hits = (0..n)
            .filter(|i| sampled(&[7; 32], &format!("http://a.test/{i}"), 0.1))
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert_eq!(
            sampled(&[7; 32], "http://a.test/x", 0.5),
            sampled(&[7; 32], "http://a.test/x", 0.5)
        );
        assert!(!sampled(&[7; 32], "http://a.test/x", 0.0));
        assert!(sampled(&[7; 32], "http://a.test/x", 1.0));
    }

    #[test]
    fn checks_go_to_other_nodes_and_score_the_one_that_stored() {
        let mut c = Checks::default();
        c.push("h", check("u1", "A", "aa"));
        c.push("h", check("u2", "B", "bb"));
        assert!(c.take_for("x", "A").is_none());
        let got = c.take_for("h", "A").unwrap();
        assert_eq!(got.url, "u2", "A does not check its own page");
        assert!(!c.has_for("h", "A"));
        assert!(c.has_for("h", "B"));

        let (again, scores) = c.settle(got, "A", Some(("bb", &[1, 2, 3])));
        assert!(again.is_none());
        assert_eq!(scores[0].0, "B");
        assert_eq!(scores[0].1.agreed, 1);
        assert_eq!((scores[1].0.as_str(), scores[1].1.checks_agreed), ("A", 1));

        let u1 = c.take_for("h", "B").unwrap();
        let (again, _) = c.settle(u1.clone(), "B", None);
        let again = again.unwrap();
        assert_eq!(again.attempts, 1);
        c.push("h", again);
        let u1 = c.take_for("h", "C").unwrap();
        let (again, scores) = c.settle(u1, "C", None);
        assert!(again.is_none());
        assert_eq!(scores[0].1.inconclusive, 1);

        c.push("h", check("u3", "A", "aa"));
        let u3 = c.take_for("h", "B").unwrap();
        let (_, scores) = c.settle(u3, "B", Some(("different", &[1, 2, 3])));
        assert_eq!((scores[0].1.disagreed, scores[0].1.inconclusive), (1, 1));
        assert_eq!(c.scores()["B"].checks_disagreed, 1);
        assert_eq!(c.pending(), 0);
    }
}
