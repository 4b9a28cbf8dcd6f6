//! The crawl protocol, `/tessera/crawl/2`, between scraper nodes and a crawl coordinator.
//!
//! ```text
//! scraper node                          coordinator
//!   Lease                          ──▶    Offer (a lease, wait, or idle)
//!   Fetched { crawl, lease, .. }   ──▶    Recorded | Refused | Unavailable
//!   Complete(Completion)           ──▶    Accepted(urls) | Refused | Unavailable
//!   Shard { crawl, shard }         ──▶    Recorded | Refused | Unavailable
//! ```
//!
//! The coordinator knows a node by the peer id of its connection, never by what a message
//! says. Messages are DAG-CBOR of at most [`MAX_CRAWL_MESSAGE`] bytes, refused past it before
//! they are read further. (`/tessera/crawl/1` wrapped the same messages in a second envelope.)

use serde::{Deserialize, Serialize};
use tessera_net::{
    StreamProtocol,
    codec::{Message, to_cbor},
    rpc::Protocol,
};

use crate::{
    coordinator::{Completion, Offer},
    crawl_store::ShardRecord,
};

/// The crawl protocol.
#[derive(Debug)]
pub struct CrawlProtocol;

impl Protocol for CrawlProtocol {
    const NAME: StreamProtocol = StreamProtocol::new("/tessera/crawl/2");
    const MAX_REQUEST: u64 = MAX_CRAWL_MESSAGE;
    const MAX_RESPONSE: u64 = MAX_CRAWL_MESSAGE;
    type Request = CrawlCall;
    type Response = CrawlReply;

    fn busy(_: &CrawlCall) -> CrawlReply {
        CrawlReply::Unavailable("coordinator is busy".into())
    }
}

tessera_net::register_protocol!(CrawlProtocol);

/// Largest crawl message either way: a lease of 1,000 URLs, or a report of one with their
/// links.
pub const MAX_CRAWL_MESSAGE: u64 = 4 * 1024 * 1024;

/// What a scraper node asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CrawlCall {
    /// Work, please.
    Lease,
    /// Every URL of a lease is fetched: its host may be leased again.
    Fetched {
        /// The crawl.
        crawl: String,
        /// The lease.
        lease: u64,
        /// The host's `Crawl-delay`, as the node read it, in milliseconds.
        crawl_delay_ms: Option<u64>,
    },
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
    /// The shard, or the fetched lease, is recorded.
    Recorded,
    /// The request was refused for good (an expired lease, an unknown crawl).
    Refused(String),
    /// The coordinator cannot answer now; ask again.
    Unavailable(String),
}

impl Message for CrawlCall {}
impl Message for CrawlReply {}

/// A completion too large to send even without its links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crawl completion: {0}")]
pub struct TooLarge(pub String);

/// `completion` as a message within [`MAX_CRAWL_MESSAGE`]: links are left out (the last of
/// each page first) until it fits. The pages themselves are always reported.
pub fn fit_completion(mut completion: Completion) -> Result<CrawlCall, TooLarge> {
    loop {
        let len = to_cbor(&CompleteRef::Complete(&completion))
            .map_err(TooLarge)?
            .len() as u64;
        if len <= MAX_CRAWL_MESSAGE {
            return Ok(CrawlCall::Complete(completion));
        }
        if completion.reports.iter().all(|r| r.links.is_empty()) {
            return Err(TooLarge(format!(
                "{len} bytes; at most {MAX_CRAWL_MESSAGE}"
            )));
        }
        for r in &mut completion.reports {
            r.links.truncate(r.links.len() / 2);
        }
    }
}

/// [`CrawlCall::Complete`] as serde writes it, borrowing the completion to measure it.
#[derive(Serialize)]
enum CompleteRef<'a> {
    Complete(&'a Completion),
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
            final_url: None,
            buckets: Vec::new(),
        };
        let small = Completion {
            crawl: "c".into(),
            lease: 7,
            node: "n".into(),
            reports: vec![report(3)],
            crawl_delay_ms: Some(1500),
        };
        let call = fit_completion(small.clone()).unwrap();
        assert_eq!(call, CrawlCall::Complete(small.clone()));
        let bytes = call.into_cbor().unwrap();
        assert_eq!(bytes, to_cbor(&CompleteRef::Complete(&small)).unwrap());
        assert_eq!(
            CrawlCall::from_cbor(bytes).unwrap(),
            CrawlCall::Complete(small)
        );

        let big = Completion {
            reports: vec![report(1000), report(1000), report(1000)],
            crawl: "c".into(),
            lease: 7,
            node: "n".into(),
            crawl_delay_ms: None,
        };
        let bytes = fit_completion(big).unwrap().into_cbor().unwrap();
        assert!(bytes.len() as u64 <= MAX_CRAWL_MESSAGE);
        let CrawlCall::Complete(got) = CrawlCall::from_cbor(bytes).unwrap() else {
            panic!()
        };
        assert_eq!(got.reports.len(), 3);
        assert!(got.reports.iter().all(|r| !r.links.is_empty()));

        assert!(CrawlCall::from_cbor(b"\xff\x00garbage".to_vec()).is_err());
    }
}
