//! The crawl protocol's messages, carried as DAG-CBOR bodies of `/tessera/crawl/1`.
//!
//! ```text
//! scraper node                          coordinator
//!   Lease                          ──▶    Offer (a lease, wait, or idle)
//!   Complete(Completion)           ──▶    Accepted(urls) | Refused | Unavailable
//!   Shard { crawl, shard }         ──▶    Recorded | Refused | Unavailable
//! ```
//!
//! The coordinator knows a node by the peer id of its connection, never by what a message
//! says, and decodes every body within [`MAX_CRAWL_BODY`] before looking at it.

use serde::{Deserialize, Serialize};
use tessera_formats::block;
pub use tessera_net::protocol::MAX_CRAWL_BODY;

use crate::{
    coordinator::{Completion, Offer},
    crawl_store::ShardRecord,
};

/// What a scraper node asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CrawlCall {
    /// Work, please.
    Lease,
    /// A lease is done.
    Complete(Completion),
    /// A shard is closed.
    Shard {
        /// The crawl.
        crawl: String,
        /// The shard.
        shard: ShardRecord,
    },
}

/// What the coordinator answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CrawlReply {
    /// Work, a wait, or none.
    Offer(Offer),
    /// The URLs whose rows the node writes.
    Accepted(Vec<String>),
    /// The shard is recorded.
    Recorded,
    /// The request was refused for good (an expired lease, an unknown crawl).
    Refused(String),
    /// The coordinator cannot answer now; ask again.
    Unavailable(String),
}

/// A message that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crawl message: {0}")]
pub struct WireError(pub String);

/// Encodes a message, refusing one over [`MAX_CRAWL_BODY`].
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let bytes = block::encode(message).map_err(|e| WireError(e.to_string()))?;
    if bytes.len() as u64 > MAX_CRAWL_BODY {
        return Err(WireError(format!(
            "{} bytes; at most {MAX_CRAWL_BODY}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes a message of at most [`MAX_CRAWL_BODY`] bytes.
pub fn decode<T: Serialize + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    let max = usize::try_from(MAX_CRAWL_BODY).unwrap_or(usize::MAX);
    block::decode(bytes, max).map_err(|e| WireError(e.to_string()))
}

/// Encodes a completion, leaving out links (the last of each page first) until it fits: the
/// pages themselves are always reported.
pub fn encode_completion(completion: &Completion) -> Result<Vec<u8>, WireError> {
    let mut c = completion.clone();
    loop {
        match encode(&CrawlCall::Complete(c.clone())) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if c.reports.iter().all(|r| r.links.is_empty()) => return Err(e),
            Err(_) => {
                for r in &mut c.reports {
                    r.links.truncate(r.links.len() / 2);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::{PageResult, UrlReport};

    #[test]
    fn messages_round_trip_and_oversized_links_are_trimmed() {
        let report = |links: usize| UrlReport {
            url: "http://example.com/".into(),
            result: PageResult::Stored,
            links: (0..links)
                .map(|i| format!("http://example.com/{i}/{}", "x".repeat(2000)))
                .collect(),
            text_blake3: Some("ab".repeat(32)),
        };
        let small = Completion {
            crawl: "c".into(),
            lease: 7,
            node: "n".into(),
            reports: vec![report(3)],
            crawl_delay_ms: Some(1500),
        };
        let bytes = encode_completion(&small).unwrap();
        assert_eq!(
            decode::<CrawlCall>(&bytes).unwrap(),
            CrawlCall::Complete(small)
        );

        let big = Completion {
            reports: vec![report(1000), report(1000), report(1000)],
            crawl: "c".into(),
            lease: 7,
            node: "n".into(),
            crawl_delay_ms: None,
        };
        let bytes = encode_completion(&big).unwrap();
        assert!(bytes.len() as u64 <= MAX_CRAWL_BODY);
        let CrawlCall::Complete(got) = decode::<CrawlCall>(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(got.reports.len(), 3);
        assert!(got.reports.iter().all(|r| !r.links.is_empty()));

        assert!(decode::<CrawlCall>(b"\xff\x00garbage").is_err());
        assert!(decode::<CrawlReply>(&vec![0u8; 5 << 20]).is_err());
    }
}
