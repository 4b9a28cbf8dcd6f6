//! Both ends of the crawl protocol over libp2p: a scraper node's [`RemoteCoordinator`], and
//! [`serve`], which answers scraper nodes from a [`Coordinator`].

use tessera_net::{Inbound, PeerId};
use tracing::debug;

use crate::{
    coordinator::{Completion, Coordinator, Fetched, Offer},
    crawl_store::ShardRecord,
    protocol::{CrawlCall, CrawlProtocol, CrawlReply, fit_completion},
    worker::{ApiError, CrawlApi},
};

/// A coordinator on another node, reached over the crawl protocol.
#[derive(Debug, Clone)]
pub struct RemoteCoordinator {
    net: tessera_net::Client,
    coordinator: PeerId,
}

impl RemoteCoordinator {
    /// The coordinator `coordinator`, reached through `net` (already connected or dialable).
    pub fn new(net: tessera_net::Client, coordinator: PeerId) -> Self {
        Self { net, coordinator }
    }

    async fn call(&self, call: CrawlCall) -> Result<CrawlReply, ApiError> {
        let reply = self
            .net
            .request::<CrawlProtocol>(self.coordinator, call)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        match reply {
            CrawlReply::Refused(why) => Err(ApiError::Refused(why)),
            CrawlReply::Unavailable(why) => Err(ApiError::Unavailable(why)),
            reply => Ok(reply),
        }
    }
}

fn unexpected(reply: &CrawlReply) -> ApiError {
    ApiError::Unavailable(format!("unexpected reply: {reply:?}"))
}

impl CrawlApi for RemoteCoordinator {
    async fn lease(&self, _node: &str) -> Result<Offer, ApiError> {
        match self.call(CrawlCall::Lease).await? {
            CrawlReply::Offer(offer) => Ok(offer),
            other => Err(unexpected(&other)),
        }
    }

    async fn complete(&self, completion: Completion) -> Result<Vec<String>, ApiError> {
        let call = fit_completion(completion).map_err(|e| ApiError::Local(e.to_string()))?;
        match self.call(call).await? {
            CrawlReply::Accepted(urls) => Ok(urls),
            other => Err(unexpected(&other)),
        }
    }

    async fn fetched(&self, fetched: Fetched) -> Result<(), ApiError> {
        let call = CrawlCall::Fetched {
            crawl: fetched.crawl,
            lease: fetched.lease,
            crawl_delay_ms: fetched.crawl_delay_ms,
        };
        match self.call(call).await? {
            CrawlReply::Recorded => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), ApiError> {
        let call = CrawlCall::Shard {
            crawl: crawl.to_string(),
            shard,
        };
        match self.call(call).await? {
            CrawlReply::Recorded => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// Answers crawl `requests` with `coordinator`, one at a time (the coordinator is one task
/// anyway), until the network stops.
pub async fn serve(coordinator: Coordinator, mut requests: Inbound<CrawlProtocol>) {
    while let Some(event) = requests.recv().await {
        let reply = answer(&coordinator, event.peer, event.request).await;
        if event.responder.respond(reply).await.is_err() {
            return;
        }
    }
}

async fn answer(coordinator: &Coordinator, peer: PeerId, call: CrawlCall) -> CrawlReply {
    // The node is the connection's peer, whatever the message says.
    let node = peer.to_string();
    debug!(%node, ?call, "crawl request");
    let result = match call {
        CrawlCall::Lease => coordinator.lease(&node).await.map(CrawlReply::Offer),
        CrawlCall::Fetched {
            crawl,
            lease,
            crawl_delay_ms,
        } => coordinator
            .fetched(Fetched {
                crawl,
                lease,
                node,
                crawl_delay_ms,
            })
            .await
            .map(|()| CrawlReply::Recorded),
        CrawlCall::Complete(completion) => coordinator
            .complete(Completion { node, ..completion })
            .await
            .map(CrawlReply::Accepted),
        CrawlCall::Shard { crawl, shard } => coordinator
            .shard(&crawl, ShardRecord { node, ..shard })
            .await
            .map(|()| CrawlReply::Recorded),
    };
    result.unwrap_or_else(|e| match ApiError::from(e) {
        ApiError::Unavailable(why) => CrawlReply::Unavailable(why),
        ApiError::Refused(why) | ApiError::Local(why) => CrawlReply::Refused(why),
    })
}
